"""Incoming garments: a garment photo dropped into a tenant's watched prefix is tried on its model photos.

Every tenant has a watched prefix (default `incoming/garments/` below `tenants/<tenant>/`), model photos (every
photo below `models/`, or a list of keys) and a results prefix (default `results/`), set with PUT /v1/incoming.
The catalog poller lists each watched prefix every VTON_INCOMING_POLL_S seconds (listing-based polling: any S3
works, no event notifications to set up). Each object not seen before becomes a batch of its own (one job per
model photo); its category is the first folder below the prefix when that names one
(`incoming/garments/lower_body/jeans.jpg`), else inferred from the photo. The results go to
`<results>/<path below the prefix, without extension>/<model name>.png` with `manifest.json` and `manifest.csv`
beside them.

Each garment is picked up once, across restarts and replicas: the seen set is a table whose primary key is
(tenant, key), written in the transaction that makes the garment's batch, so of two replicas that list the same
new object only one makes a batch, and an orchestrator that restarts finds what it had already taken. A garment
that cannot be processed (not a photo, too large, no model photos) still gets its batch and a manifest whose
row says why.
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from fastapi import UploadFile
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from orchestrator.batches import AlreadySeen, Batch, BatchPlan, BatchStore, new_batch_id, stem
from orchestrator.errors import ApiError
from orchestrator.limits import check_queue_room
from orchestrator.settings import Settings
from orchestrator.storage import Storage
from orchestrator.stores import SqlStore, from_row
from orchestrator.tables import IncomingRow, IncomingSeenRow, TenantRow
from orchestrator.tenants import RESERVED_PREFIXES, TenantError, check_relative_key, tenant_prefix
from orchestrator.uploads import checked_image
from vton.runtime.logs import log_event
from vton.runtime.options import OptionError, TryOnOptions
from vton.runtime.vocab import CATEGORIES

log = logging.getLogger("vton.orchestrator.incoming")

DEFAULT_PREFIX = "incoming/garments/"
DEFAULT_MODELS_PREFIX = "models/"
DEFAULT_RESULTS_PREFIX = "results/"
MAX_MODEL_KEYS = 200
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_PAGE = 1000
_RANDOM_SEEDS = 2**31


class IncomingConfigError(OptionError):
    """A setting of PUT /v1/incoming that cannot be used; `field` names it."""


@dataclass(frozen=True)
class IncomingConfig:
    """A tenant's incoming-garment settings; prefixes are relative to the tenant's prefix and end with `/`.
    Model photos: every photo below `models_prefix`, or exactly `model_keys` when that list is not empty."""

    enabled: bool = True
    prefix: str = DEFAULT_PREFIX
    models_prefix: str | None = DEFAULT_MODELS_PREFIX
    model_keys: tuple[str, ...] = ()
    results_prefix: str = DEFAULT_RESULTS_PREFIX
    callback_url: str | None = None

    def checked(self) -> IncomingConfig:
        """The same settings, or IncomingConfigError naming the first that cannot be used."""
        prefixes = {"prefix": self.prefix, "results_prefix": self.results_prefix}
        if not self.model_keys:
            if not self.models_prefix:
                raise IncomingConfigError(
                    "models_prefix", "name the model photos: a models_prefix or model_keys"
                )
            prefixes["models_prefix"] = self.models_prefix
        for name, value in prefixes.items():
            _check_prefix(name, value)
        for a, b in ((a, b) for a in prefixes for b in prefixes if a < b):
            if prefixes[a].startswith(prefixes[b]) or prefixes[b].startswith(prefixes[a]):
                raise IncomingConfigError(
                    a,
                    f"{a} {prefixes[a]!r} and {b} {prefixes[b]!r} overlap: results or model photos inside the "
                    "watched prefix would be taken for garments",
                )
        if len(self.model_keys) > MAX_MODEL_KEYS:
            raise IncomingConfigError("model_keys", f"at most {MAX_MODEL_KEYS} model photos")
        for key in self.model_keys:
            try:
                check_relative_key(key)
            except TenantError as exc:
                raise IncomingConfigError("model_keys", str(exc)) from None
            if key.startswith(self.prefix):
                raise IncomingConfigError("model_keys", f"{key!r} is inside the watched prefix")
        return self


def _check_prefix(name: str, value: str) -> None:
    if not value.endswith("/"):
        raise IncomingConfigError(name, f"{name} {value!r} must end with '/'")
    try:
        check_relative_key(value[:-1])
    except TenantError as exc:
        raise IncomingConfigError(name, f"{name}: {exc}") from None
    if value.startswith(RESERVED_PREFIXES):
        raise IncomingConfigError(name, f"{name} {value!r}: {value.split('/')[0]}/ is the platform's")


@dataclass(frozen=True)
class Pickup:
    """An incoming garment that was picked up, and the batch it became."""

    key: str  # below the tenant's prefix
    batch_id: str
    seen_at: float


class IncomingStore(SqlStore):
    """Tenants' incoming settings and the seen set, in the job database."""

    def config(self, tenant_id: str) -> IncomingConfig:
        return self._read(IncomingRow, tenant_id, _to_config) or IncomingConfig()

    def save(self, tenant_id: str, config: IncomingConfig) -> IncomingConfig:
        values = {
            **asdict(config),
            "models_prefix": None if config.model_keys else config.models_prefix,
            "model_keys": list(config.model_keys) or None,
            "updated_at": time.time(),
        }
        for _ in range(2):  # an insert racing another request's becomes an update
            with self._sessions.begin() as session:
                changed = session.execute(
                    update(IncomingRow)
                    .where(IncomingRow.tenant_id == tenant_id)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                ).rowcount
            if changed:
                break
            try:
                with self._sessions.begin() as session:
                    session.add(IncomingRow(tenant_id=tenant_id, **values))
                break
            except IntegrityError:
                continue
        return self.config(tenant_id)

    def watched(self) -> list[tuple[str, IncomingConfig]]:
        """Every tenant whose incoming prefix is watched, with its settings (the defaults where none are set)."""
        with self._sessions() as session:
            rows = session.execute(
                select(TenantRow.id, IncomingRow)
                .outerjoin(IncomingRow, IncomingRow.tenant_id == TenantRow.id)
                .order_by(TenantRow.id)
            ).all()
        configs = [(tenant, _to_config(row) if row else IncomingConfig()) for tenant, row in rows]
        return [(tenant, config) for tenant, config in configs if config.enabled]

    def unseen(self, tenant_id: str, keys: list[str]) -> list[str]:
        """Those of `keys` (full keys) not picked up yet, in their order."""
        if not keys:
            return []
        with self._sessions() as session:
            seen = set(
                session.scalars(
                    select(IncomingSeenRow.key).where(
                        IncomingSeenRow.tenant_id == tenant_id, IncomingSeenRow.key.in_(keys)
                    )
                )
            )
        return [key for key in keys if key not in seen]

    def recent(self, tenant_id: str, limit: int = 50) -> list[Pickup]:
        prefix = tenant_prefix(tenant_id)
        with self._sessions() as session:
            rows = session.scalars(
                select(IncomingSeenRow)
                .where(IncomingSeenRow.tenant_id == tenant_id)
                .order_by(IncomingSeenRow.seen_at.desc(), IncomingSeenRow.key)
                .limit(limit)
            ).all()
        return [Pickup(r.key.removeprefix(prefix), r.batch_id, r.seen_at) for r in rows]


@dataclass
class _Models:
    """A tenant's model photos as (name, key), listed once per scan, or why there are none."""

    photos: list[tuple[str, str]] = field(default_factory=list)
    problem: str | None = None


class IncomingWatcher:
    """Lists the watched prefixes and turns every new garment into a batch (`scan_all`, the poller's call)."""

    def __init__(
        self,
        store: IncomingStore,
        batches: BatchStore,
        storage: Storage,
        settings: Settings,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.store, self.batches, self.storage, self.settings, self.wake = (
            store,
            batches,
            storage,
            settings,
            wake,
        )

    def scan_all(self) -> list[Batch]:
        made = []
        for tenant_id, config in self.store.watched():
            try:
                made += self.scan(tenant_id, config)
            except Exception:  # one tenant's failure (S3 down, a bad object) must not stop the others
                log.exception("scanning the incoming garments of tenant %s failed", tenant_id)
        return made

    def scan(self, tenant_id: str, config: IncomingConfig) -> list[Batch]:
        """The batches made for the tenant's new garments; stops early when the queue is full (the rest wait
        for the next scan)."""
        watched = tenant_prefix(tenant_id) + config.prefix
        made: list[Batch] = []
        models: _Models | None = None
        after = None
        while True:
            page = self.storage.list(watched, limit=_PAGE, after=after)
            candidates = [o for o in page if _is_photo_key(o.key[len(watched) :])]
            sizes = {o.key: o.size for o in candidates}
            for key in self.store.unseen(tenant_id, list(sizes)):
                models = models or self._models(tenant_id, config)
                try:
                    batch = self._pick_up(tenant_id, config, key, sizes[key], models)
                except _QueueFull:
                    return made
                if batch is not None:
                    made.append(batch)
            if len(page) < _PAGE:
                return made
            after = page[-1].key

    def _models(self, tenant_id: str, config: IncomingConfig) -> _Models:
        base = tenant_prefix(tenant_id)
        if config.model_keys:
            missing = [k for k in config.model_keys if self.storage.head(base + k) is None]
            if missing:
                return _Models(problem=f"model photo {missing[0]!r} is not among your objects")
            return _Models([(k, base + k) for k in config.model_keys])
        prefix = base + (config.models_prefix or "")
        photos, after = [], None
        while True:
            page = self.storage.list(prefix, limit=_PAGE, after=after)
            photos += [(o.key[len(prefix) :], o.key) for o in page if _is_photo_key(o.key[len(prefix) :])]
            if len(page) < _PAGE:
                break
            after = page[-1].key
        if not photos:
            return _Models(problem=f"no model photos below {config.models_prefix}: put some there first")
        return _Models(photos)

    def _pick_up(
        self, tenant_id: str, config: IncomingConfig, key: str, size: int, models: _Models
    ) -> Batch | None:
        base = tenant_prefix(tenant_id)
        name = key[len(base + config.prefix) :]
        first, _, rest = name.partition("/")
        category = first if rest and first in CATEGORIES else None
        people = models.photos
        problem = models.problem or self._garment_problem(key, size)
        if problem is None:
            problem = self._room_for(tenant_id, len(people))
        results = f"{base}{config.results_prefix}"
        batch_id = new_batch_id()
        plan = BatchPlan(
            tenant_id=tenant_id,
            source="incoming",
            people=people,
            garments=[(name, key, category)],
            options=TryOnOptions(category="", seed=secrets.randbelow(_RANDOM_SEEDS)),
            # one garment: its folder of results holds every model's, named after the model, and the manifest
            results_prefix=results,
            manifest_key=f"{results}{stem(name)}/manifest.json",
            batch_id=batch_id,
            callback_url=config.callback_url,
            request_id=f"incoming-{batch_id}",
            error=problem,
        )
        try:
            batch = self.batches.create(plan, seen_key=key)
        except AlreadySeen:  # another replica took it between our listing and now
            return None
        log_event(
            log,
            "incoming garment picked up",
            tenant=tenant_id,
            key=name,
            batch=batch.id,
            category=category or "inferred",
            jobs=0 if problem else len(people),
            error=problem,
        )
        self.wake()
        return batch

    def _garment_problem(self, key: str, size: int) -> str | None:
        """Why the object is not a garment photo the platform can use, or None (the upload checks)."""
        limit = self.settings.max_upload_bytes
        if size > limit:
            return f"the garment is larger than the upload limit of {limit} bytes"
        data = self.storage.get(key)
        try:
            # the same checks as an upload's; this thread has no event loop of its own
            upload = UploadFile(io.BytesIO(data), filename=key)
            asyncio.run(checked_image(upload, "garment", limit, self.settings.max_working_pixels))
        except ApiError as exc:
            return exc.error
        return None

    def _room_for(self, tenant_id: str, jobs: int) -> str | None:
        """None when the queue takes `jobs` more; a problem when it never could; _QueueFull for later."""
        per_tenant = self.settings.max_queued_jobs_per_tenant
        if jobs > per_tenant:
            return f"{jobs} model photos are more try-ons than your queue holds ({per_tenant})"
        try:
            check_queue_room(
                *self.batches.jobs.queued_counts(tenant_id),
                per_tenant=per_tenant,
                in_all=self.settings.max_queued_jobs,
                adding=jobs,
            )
        except ApiError:
            raise _QueueFull from None
        return None


class _QueueFull(Exception):
    """The queue has no room for a garment's jobs now: it stays unseen until a later scan."""


def _is_photo_key(relative: str) -> bool:
    """Photos only: folder markers, hidden files (.DS_Store) and other files are not garments or models; nor is a
    key that is not a plain relative path (written past the API): results are named after these keys."""
    name = relative.rsplit("/", 1)[-1]
    if not name or name.startswith(".") or not name.lower().endswith(_IMAGE_SUFFIXES):
        return False
    try:
        check_relative_key(relative)
    except TenantError:
        log.warning("ignoring %r: not a plain relative key", relative)
        return False
    return True


def _to_config(row: IncomingRow) -> IncomingConfig:
    return from_row(IncomingConfig, row, model_keys=tuple(row.model_keys or ()))
