"""The job store: try-on jobs, their per-stage progress and artifacts, in SQL (SQLite file or PostgreSQL).

A job is `queued` once committed, so an accepted job is never lost. Workers take queued jobs with an
atomic claim (`UPDATE ... WHERE status = 'queued'`: of two claimers only one sees a row change) and every
later write of a worker carries the claim's token, so a worker that lost its job (its lease ran out and
another took over) cannot overwrite the new run. Jobs left `running` by a dead worker go back to the queue.
Every write transaction starts with its write (never read-then-write): on SQLite that takes the single
writer's lock at once instead of failing a later upgrade, on PostgreSQL it locks the job's row.

Every job belongs to a tenant (orchestrator.tenants) and keeps its objects under the tenant's prefix. A job
created with an `Idempotency-Key` records the key in the same transaction, and a job that names a callback
URL gets its webhook delivery queued in the transaction that finishes it (orchestrator.webhooks delivers it).

A job created without a category has it inferred from the garment photo when it runs (its first step,
`category`); a job of a catalog batch (orchestrator.batches) names the batch, its person and garment there, and
where its result goes.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.idempotency import Idempotency, IdempotencyTaken, PriorRequest
from orchestrator.migrations import upgrade_to_head
from orchestrator.tables import ArtifactRow, IdempotencyRow, JobRow, StageRow
from orchestrator.tenants import DEFAULT_TENANT, job_prefix
from orchestrator.webhooks import queue_delivery
from vton.runtime.options import TryOnOptions
from vton.runtime.vocab import JOB_STEPS

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
JOB_STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED)
FINISHED = (SUCCEEDED, FAILED)
# A stage of a job: pending (not reached), running, succeeded, failed, or skipped (an earlier one failed).
PENDING, SKIPPED = "pending", "skipped"
# The step of a job that came without a category: the warp stage infers it from the garment photo, first.
CATEGORY_STEP = "category"


@dataclass(frozen=True)
class StageState:
    status: str
    backend: dict | None = None
    seconds: float | None = None
    error: str | None = None
    people_detected: int | None = None  # the person stages say how many people the photo holds
    reused: bool | None = None  # True: done once for the job's batch and reused, not called by this job


@dataclass(frozen=True)
class Job:
    """A try-on job as stored: what the client asked for (None: the backend's default), where it stands.
    `category` is "" while it is still to be inferred from the garment."""

    id: str
    status: str
    category: str
    seed: int
    steps: int | None
    guidance_scale: float | None
    scheduler: str | None
    person_key: str
    garment_key: str
    request_id: str
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    result_key: str | None
    error: str | None
    error_code: str | None
    error_stage: str | None
    stages: dict[str, StageState] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> storage key
    claim_token: str | None = None
    owner: str | None = None
    tenant_id: str = DEFAULT_TENANT
    key_id: str | None = None  # the API key that created it
    callback_url: str | None = None
    category_inferred: bool = False
    category_confidence: float | None = None  # an inferred category's score, in [0, 1]
    category_scores: dict[str, float] | None = None  # every category's score
    batch_id: str | None = None
    batch_person: int | None = None  # positions of the person and the garment in the batch
    batch_garment: int | None = None
    output_key: str | None = None  # a batch job's result goes here instead of under its own prefix

    @property
    def storage_prefix(self) -> str:
        """Where the job's inputs, artifacts and result go: `tenants/<tenant>/jobs/<id>/`."""
        return job_prefix(self.tenant_id, self.id)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def options(self) -> TryOnOptions:
        """The options as the stages take them (0 and "" for the backend's default)."""
        return TryOnOptions(
            category=self.category,
            seed=self.seed,
            steps=self.steps or 0,
            guidance_scale=self.guidance_scale or 0.0,
            scheduler=self.scheduler or "",
        )


def new_job_id() -> str:
    return uuid.uuid4().hex


def process_owner_id() -> str:
    """host:pid:token. The token tells this process from an earlier one that had the same pid (a container's 1)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# Owners registered by the stores of this process: alive by definition.
_LIVE_OWNERS: set[str] = set()


def owner_is_gone(owner: str | None) -> bool:
    """Whether the process that wrote `owner` certainly no longer runs: it lived on this host and its pid is
    gone, or the pid is ours but the token is not (a container restarted as pid 1 again). A process on
    another host is judged by its heartbeat alone."""
    if not owner:
        return True
    try:
        host, pid_text, _token = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return owner not in _LIVE_OWNERS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class JobStore:
    """Jobs in SQL. Thread-safe: each method opens its own short session."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = _make_engine(url, echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.owner = process_owner_id()
        _LIVE_OWNERS.add(self.owner)

    # --- schema ------------------------------------------------------------------------------------------

    def upgrade_schema(self) -> None:
        """Migrate the database to the newest schema (a no-op when it is there already)."""
        upgrade_to_head(self.engine)

    def close(self) -> None:
        _LIVE_OWNERS.discard(self.owner)
        self.engine.dispose()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    # --- clients -----------------------------------------------------------------------------------------

    def create(
        self,
        job_id: str,
        options: TryOnOptions,
        *,
        person_key: str,
        garment_key: str,
        request_id: str = "",
        tenant_id: str = DEFAULT_TENANT,
        key_id: str | None = None,
        callback_url: str | None = None,
        idempotency: Idempotency | None = None,
    ) -> Job:
        """Insert a queued job (its inputs already stored under the two keys) with every step pending;
        committed when this returns. Options at the backend's default are stored as null.

        With `idempotency`, the key is recorded with the job in one transaction; IdempotencyTaken (and no
        job) when the tenant's key is already taken by a request of the window (a concurrent retry)."""
        now = time.time()
        row = job_row(
            job_id,
            options,
            person_key=person_key,
            garment_key=garment_key,
            request_id=request_id,
            tenant_id=tenant_id,
            key_id=key_id,
            callback_url=callback_url,
            now=now,
        )
        try:
            with self._sessions.begin() as session:
                if idempotency is not None:
                    record_idempotency(session, tenant_id, idempotency, job_id, now)
                session.add(row)
        except IntegrityError:
            prior = (
                self.prior_request(tenant_id, idempotency.key, idempotency.window_s) if idempotency else None
            )
            if prior is None:
                raise
            raise IdempotencyTaken(prior) from None
        job = self.get(job_id)
        assert job is not None, "a committed job reads back"
        return job

    def prior_request(self, tenant_id: str, key: str, window_s: float) -> PriorRequest | None:
        """What the tenant's `Idempotency-Key` was first sent with, if that was less than `window_s` ago."""
        with self._sessions() as session:
            row = session.get(IdempotencyRow, (tenant_id, key))
            if row is None or row.created_at < time.time() - window_s:
                return None
            return PriorRequest(fingerprint=row.fingerprint, resource_id=row.resource_id)

    def get_for_tenant(self, job_id: str, tenant_id: str) -> Job | None:
        """The job if it is `tenant_id`'s; None for another tenant's job as for a job that does not exist."""
        job = self.get(job_id)
        return job if job is not None and job.tenant_id == tenant_id else None

    def queued_counts(self, tenant_id: str) -> tuple[int, int]:
        """Queued jobs of the tenant and of all tenants."""
        with self._sessions() as session:
            rows = session.execute(
                select(JobRow.tenant_id == tenant_id, func.count())
                .where(JobRow.status == QUEUED)
                .group_by(JobRow.tenant_id == tenant_id)
            ).all()
        counts = {bool(mine): n for mine, n in rows}
        return counts.get(True, 0), sum(counts.values())

    def get(self, job_id: str) -> Job | None:
        with self._sessions() as session:
            row = session.get(JobRow, job_id)
            return _to_job(row) if row is not None else None

    def batch_jobs(self, batch_id: str) -> list[Job]:
        """The jobs of a batch, garment by garment, person by person."""
        with self._sessions() as session:
            rows = session.scalars(
                select(JobRow)
                .where(JobRow.batch_id == batch_id)
                .order_by(JobRow.batch_garment, JobRow.batch_person)
            ).all()
            return [_to_job(row) for row in rows]

    def counts_by_status(self) -> dict[str, int]:
        with self._sessions() as session:
            rows = session.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all()
        counts = dict.fromkeys(JOB_STATUSES, 0)
        counts.update({status: n for status, n in rows})
        return counts

    # --- workers -----------------------------------------------------------------------------------------

    def claim(self, owner: str | None = None, candidates: int = 8) -> Job | None:
        """Take the oldest queued job for `owner` (default: this process); None when the queue is empty.

        Of several claimers racing for one job exactly one's UPDATE matches (`status` is re-checked by the
        database at write time, on SQLite and PostgreSQL alike); the others move on to the next candidate.
        """
        owner = owner or self.owner
        while True:
            with self._sessions() as session:
                ids = session.scalars(
                    select(JobRow.id)
                    .where(JobRow.status == QUEUED)
                    .order_by(JobRow.created_at, JobRow.id)
                    .limit(candidates)
                ).all()
            if not ids:
                return None
            for job_id in ids:
                token = uuid.uuid4().hex
                now = time.time()
                with self._sessions.begin() as session:
                    won = session.execute(
                        update(JobRow)
                        .where(JobRow.id == job_id, JobRow.status == QUEUED)
                        .values(
                            status=RUNNING,
                            owner=owner,
                            claim_token=token,
                            attempts=JobRow.attempts + 1,
                            started_at=now,
                            heartbeat_at=now,
                            updated_at=now,
                        )
                        .execution_options(synchronize_session=False)
                    ).rowcount
                if won == 1:
                    return self.get(job_id)

    def heartbeat(self, claims: Iterable[tuple[str, str]]) -> None:
        """Tell other replicas these running jobs (id, claim token) still have a live worker."""
        now = time.time()
        with self._sessions.begin() as session:
            for job_id, token in claims:
                session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.claim_token == token, JobRow.status == RUNNING)
                    .values(heartbeat_at=now)
                    .execution_options(synchronize_session=False)
                )

    def set_stage(self, job_id: str, token: str, stage: str, state: StageState) -> bool:
        """Record a stage's progress (what `state` leaves None keeps its earlier value, but for the error);
        False (and nothing written) when the claim is no longer this worker's."""
        values: dict = {"status": state.status, "error": state.error}
        for name in ("backend", "seconds", "people_detected", "reused"):
            if getattr(state, name) is not None:
                values[name] = getattr(state, name)
        with self._sessions.begin() as session:
            if not self._touch(session, job_id, token):
                return False
            session.execute(
                update(StageRow)
                .where(StageRow.job_id == job_id, StageRow.stage == stage)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        return True

    def set_category(
        self, job_id: str, token: str, category: str, confidence: float, scores: dict[str, float]
    ) -> bool:
        """Record the category inferred from the garment (the job's options take it from now on); False when
        the claim is no longer this worker's."""
        with self._sessions.begin() as session:
            if not self._touch(session, job_id, token):
                return False
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(
                    category=category,
                    category_inferred=True,
                    category_confidence=confidence,
                    category_scores=scores,
                )
                .execution_options(synchronize_session=False)
            )
        return True

    def add_artifact(self, job_id: str, token: str, name: str, key: str) -> bool:
        """Record a stored artifact (a re-run after a restart overwrites its earlier key)."""
        now = time.time()
        with self._sessions.begin() as session:
            if not self._touch(session, job_id, token):
                return False
            changed = session.execute(
                update(ArtifactRow)
                .where(ArtifactRow.job_id == job_id, ArtifactRow.name == name)
                .values(key=key, created_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if not changed:
                session.execute(insert(ArtifactRow).values(job_id=job_id, name=name, key=key, created_at=now))
        return True

    def finish(
        self,
        job_id: str,
        token: str,
        status: str,
        *,
        result_key: str | None = None,
        error: str | None = None,
        error_code: str | None = None,
        error_stage: str | None = None,
    ) -> bool:
        """Set the final status; stages never reached become `skipped`. False when the claim was lost."""
        if status not in FINISHED:
            raise ValueError(f"a job finishes as {' or '.join(FINISHED)}, not {status!r}")
        now = time.time()
        with self._sessions.begin() as session:
            changed = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.claim_token == token, JobRow.status == RUNNING)
                .values(**_final_values(status, now, result_key, error, error_code, error_stage))
                .execution_options(synchronize_session=False)
            ).rowcount
            if changed and status == FAILED:
                _skip_unreached_stages(session, job_id)
            if changed:
                _queue_callback(session, job_id)
        return changed == 1

    def release(self, job_id: str, token: str) -> bool:
        """Put a job this worker started back in the queue (a graceful shutdown), not counting the attempt."""
        with self._sessions.begin() as session:
            changed = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.claim_token == token, JobRow.status == RUNNING)
                .values(
                    status=QUEUED,
                    owner=None,
                    claim_token=None,
                    attempts=JobRow.attempts - 1,
                    updated_at=time.time(),
                )
                .execution_options(synchronize_session=False)
            ).rowcount
            if changed:
                _reset_stages(session, job_id)
        return changed == 1

    def fail_queued_before(
        self, created_before: float, error: str, error_code: str, error_stage: str | None
    ) -> list[str]:
        """Fail the queued jobs accepted before `created_before` (their deadline passed while they waited for
        a dependency), naming what they waited for. Returns their ids."""
        now = time.time()
        with self._sessions() as session:
            ids = session.scalars(
                select(JobRow.id).where(JobRow.status == QUEUED, JobRow.created_at < created_before)
            ).all()
        failed = []
        for job_id in ids:
            with self._sessions.begin() as session:
                changed = session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.status == QUEUED)  # unless a worker took it meanwhile
                    .values(**_final_values(FAILED, now, None, error, error_code, error_stage))
                    .execution_options(synchronize_session=False)
                ).rowcount
                if changed:
                    _skip_unreached_stages(session, job_id)
                    _queue_callback(session, job_id)
            if changed:
                failed.append(job_id)
        return failed

    def requeue_orphans(
        self,
        lease_s: float,
        max_attempts: int = 3,
        owner_gone: Callable[[str | None], bool] = owner_is_gone,
    ) -> list[str]:
        """Running jobs whose worker is gone go back to `queued` (or fail after `max_attempts` runs).

        A worker is gone when its heartbeat is older than `lease_s`, or at once when it was a process of
        this host that no longer exists (the orchestrator restarted). Returns the ids requeued or failed.
        """
        now = time.time()
        with self._sessions() as session:
            rows = session.execute(
                select(
                    JobRow.id, JobRow.owner, JobRow.claim_token, JobRow.heartbeat_at, JobRow.attempts
                ).where(JobRow.status == RUNNING)
            ).all()
        taken: list[str] = []
        for job_id, owner, token, heartbeat_at, attempts in rows:
            stale = heartbeat_at is None or now - heartbeat_at > lease_s
            if not (stale or owner_gone(owner)):
                continue
            exhausted = attempts >= max_attempts
            values: dict = {"owner": None, "claim_token": None, "updated_at": now}
            if exhausted:
                values |= {
                    "status": FAILED,
                    "finished_at": now,
                    "error": f"the job's worker stopped {attempts} times while running it; giving up",
                    "error_code": "interrupted",
                }
            else:
                values["status"] = QUEUED
            with self._sessions.begin() as session:
                changed = session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.claim_token == token, JobRow.status == RUNNING)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                ).rowcount
                if changed and exhausted:
                    _skip_unreached_stages(session, job_id)
                    _queue_callback(session, job_id)
                elif changed:
                    _reset_stages(session, job_id)
            if changed:
                taken.append(job_id)
        return taken

    @staticmethod
    def _touch(session: Session, job_id: str, token: str) -> bool:
        """Refresh the job's heartbeat if it still runs under `token`. Being the first write of the
        transaction, it also locks the job row (PostgreSQL) or the database (SQLite) for what follows."""
        now = time.time()
        return (
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.claim_token == token, JobRow.status == RUNNING)
                .values(updated_at=now, heartbeat_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            == 1
        )


def job_row(
    job_id: str,
    options: TryOnOptions,
    *,
    person_key: str,
    garment_key: str,
    request_id: str,
    tenant_id: str,
    now: float,
    key_id: str | None = None,
    callback_url: str | None = None,
    batch: tuple[str, int, int] | None = None,
    output_key: str | None = None,
) -> JobRow:
    """A queued job's row with every step pending (a first `category` step when the category is to be
    inferred). `batch` is (batch id, person position, garment position) for a job of a catalog batch."""
    steps = ([CATEGORY_STEP] if not options.category else []) + list(JOB_STEPS)
    batch_id, batch_person, batch_garment = batch or (None, None, None)
    return JobRow(
        id=job_id,
        tenant_id=tenant_id,
        key_id=key_id,
        callback_url=callback_url,
        request_id=request_id,
        person_key=person_key,
        garment_key=garment_key,
        **_option_values(options),
        batch_id=batch_id,
        batch_person=batch_person,
        batch_garment=batch_garment,
        output_key=output_key,
        **_new_values(now),
        stages=[StageRow(stage=name, position=i, status=PENDING) for i, name in enumerate(steps)],
    )


def _option_values(options: TryOnOptions) -> dict[str, Any]:
    """The options as a job's row stores them (Job.options reads them back): options at the backend's default
    are stored as null, a category left "" as null (it is inferred, in a first `category` step)."""
    return {
        "category": options.category or None,
        "seed": options.seed,
        "steps": options.steps or None,
        "guidance_scale": options.guidance_scale or None,
        "scheduler": options.scheduler or None,
    }


def record_idempotency(
    session: Session, tenant_id: str, idempotency: Idempotency, resource_id: str, now: float
) -> None:
    """Record a tenant's Idempotency-Key in the caller's transaction, before what it creates: a key taken by a
    concurrent request fails the flush (IntegrityError) and so the transaction."""
    # an expired use of the key frees it (the write first: it takes SQLite's lock)
    session.execute(
        delete(IdempotencyRow).where(
            IdempotencyRow.tenant_id == tenant_id,
            IdempotencyRow.key == idempotency.key,
            IdempotencyRow.created_at < now - idempotency.window_s,
        )
    )
    session.add(
        IdempotencyRow(
            tenant_id=tenant_id,
            key=idempotency.key,
            fingerprint=idempotency.fingerprint,
            resource_id=resource_id,
            created_at=now,
        )
    )
    session.flush()  # the key's uniqueness is checked before anything else is written


def _new_values(now: float) -> dict[str, Any]:
    """The columns a job starts with: queued, never run, its category not inferred yet."""
    return {"status": QUEUED, "attempts": 0, "category_inferred": False, "created_at": now, "updated_at": now}


def _final_values(
    status: str,
    now: float,
    result_key: str | None,
    error: str | None,
    error_code: str | None,
    error_stage: str | None,
) -> dict:
    """The columns a finished job gets (its claim released)."""
    return {
        "status": status,
        "result_key": result_key,
        "error": error,
        "error_code": error_code,
        "error_stage": error_stage,
        "finished_at": now,
        "updated_at": now,
        "claim_token": None,
    }


def _queue_callback(session: Session, job_id: str) -> None:
    """A job that has just finished and names a callback URL: its delivery is queued in the same transaction,
    so a crash cannot finish a job and lose its callback."""
    tenant_id, url = session.execute(
        select(JobRow.tenant_id, JobRow.callback_url).where(JobRow.id == job_id)
    ).one()
    if url:
        queue_delivery(session, "job", job_id, tenant_id, url)


def _reset_stages(session: Session, job_id: str) -> None:
    """A job back in the queue runs from the start again: its stages show as not yet reached."""
    session.execute(
        update(StageRow)
        .where(StageRow.job_id == job_id)
        .values(status=PENDING, backend=None, seconds=None, error=None, reused=None)
        .execution_options(synchronize_session=False)
    )


def _skip_unreached_stages(session: Session, job_id: str) -> None:
    """A failed job's stages that never finished show as skipped."""
    session.execute(
        update(StageRow)
        .where(StageRow.job_id == job_id, StageRow.status.in_((PENDING, RUNNING)))
        .values(status=SKIPPED)
        .execution_options(synchronize_session=False)
    )


def _to_job(row: JobRow) -> Job:
    return Job(
        id=row.id,
        status=row.status,
        category=row.category or "",
        seed=row.seed,
        steps=row.steps,
        guidance_scale=row.guidance_scale,
        scheduler=row.scheduler,
        person_key=row.person_key,
        garment_key=row.garment_key,
        request_id=row.request_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        attempts=row.attempts,
        result_key=row.result_key,
        error=row.error,
        error_code=row.error_code,
        error_stage=row.error_stage,
        stages={
            s.stage: StageState(
                status=s.status,
                backend=s.backend,
                seconds=s.seconds,
                error=s.error,
                people_detected=s.people_detected,
                reused=s.reused,
            )
            for s in row.stages
        },
        artifacts={a.name: a.key for a in row.artifacts},
        claim_token=row.claim_token,
        owner=row.owner,
        tenant_id=row.tenant_id,
        key_id=row.key_id,
        callback_url=row.callback_url,
        category_inferred=row.category_inferred,
        category_confidence=row.category_confidence,
        category_scores=row.category_scores,
        batch_id=row.batch_id,
        batch_person=row.batch_person,
        batch_garment=row.batch_garment,
        output_key=row.output_key,
    )


def _make_engine(url: str, echo: bool) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pre_ping: a PostgreSQL failover or idle-connection reap must not fail the next request.
        return create_engine(url, echo=echo, pool_pre_ping=True, future=True)
    if parsed.database and parsed.database != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
    engine = create_engine(
        url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False}, future=True
    )

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: readers (GET /v1/jobs) never wait for the workers' writes; foreign keys for the cascades.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine
