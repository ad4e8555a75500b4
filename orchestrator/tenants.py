"""Tenants and their API keys: the model every other part of the platform keys its data by.

A tenant is a platform customer (a shop). Everything it makes is its own:
- its API keys (`vton_api_keys`, the hashes only: see orchestrator.auth), each one the tenant's;
- its jobs (`vton_jobs.tenant_id`): another tenant asking for one gets 404, as for a job that does not exist;
- its objects in the bucket, all under `tenants/<tenant>/` (`tenant_prefix`): the inputs, artifacts and result
  of each job under `tenants/<tenant>/jobs/<job>/` (`job_prefix`), and whatever the tenant uploads
  (`PUT /v1/objects/<key>`) anywhere else below its prefix. `jobs/` and `batches/` are the platform's.
- the secret its callbacks are signed with (`webhook_secret`).

A tenant comes into being with its first key (`vton keys create --tenant NAME`); jobs from before tenants
existed belong to the tenant `default`, which `vton up` also gives its first key to.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import asdict, dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from orchestrator.stores import SqlStore, from_row
from orchestrator.tables import ApiKeyRow, TenantRow

DEFAULT_TENANT = "default"
# A tenant id is a path segment of every S3 key of the tenant: lowercase, no separators, no dots.
TENANT_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
# Sub-prefixes of a tenant's prefix that the platform writes; tenants read them, never write them.
RESERVED_PREFIXES = ("jobs/", "batches/")
# An object key below a tenant's prefix: path segments of printable characters, no `.`/`..` segments.
_KEY_SEGMENT_RE = re.compile(r"^[A-Za-z0-9!_.*'()=+,;:@ -]+$")
MAX_OBJECT_KEY_CHARS = 512


class TenantError(ValueError):
    """A tenant id or an object key that cannot be used; the message says why."""


def check_tenant_id(tenant_id: str) -> str:
    if not TENANT_ID_RE.match(tenant_id):
        raise TenantError(
            f"tenant {tenant_id!r} is not a valid tenant id: 1-64 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return tenant_id


def tenant_prefix(tenant_id: str) -> str:
    """The S3 prefix of everything a tenant owns: `tenants/<tenant>/`."""
    return f"tenants/{check_tenant_id(tenant_id)}/"


def job_prefix(tenant_id: str, job_id: str) -> str:
    """Where a job's inputs, artifacts and result live: `tenants/<tenant>/jobs/<job>/`."""
    return f"{tenant_prefix(tenant_id)}jobs/{job_id}/"


def check_relative_key(key: str) -> str:
    """An object key below a tenant's prefix, refused when it could leave the prefix or is not plain text."""
    if not key or len(key) > MAX_OBJECT_KEY_CHARS:
        raise TenantError(f"an object key has 1 to {MAX_OBJECT_KEY_CHARS} characters")
    segments = key.split("/")
    for segment in segments:
        if segment in ("", ".", "..") or not _KEY_SEGMENT_RE.match(segment):
            raise TenantError(
                f"object key {key!r} is not a plain relative path: segments of letters, digits and "
                "-_.!*'()=+,;:@ and spaces, separated by single '/', no '.' or '..' segments"
            )
    return key


class NotTheTenantsObject(LookupError):
    """A reference to an object outside the tenant's prefix: answered like an object that does not exist."""


def object_key(tenant_id: str, reference: str, bucket: str) -> str:
    """The S3 key a tenant means by `reference`: `s3://<bucket>/tenants/<tenant>/<key>` or `<key>` relative to
    its prefix. TenantError for another bucket, a URL or a malformed key; NotTheTenantsObject for a key
    outside the tenant's prefix (another tenant's included), so that no one learns what others store."""
    prefix = tenant_prefix(tenant_id)
    if reference.startswith("s3://"):
        named_bucket, _, key = reference[len("s3://") :].partition("/")
        if named_bucket != bucket:
            raise TenantError(
                f"{reference!r} is in bucket {named_bucket!r}; only objects in the platform's bucket "
                f"{bucket!r} can be named"
            )
        if not key.startswith(prefix):
            raise NotTheTenantsObject(reference)
        return prefix + check_relative_key(key[len(prefix) :])
    if "://" in reference:
        raise TenantError(
            f"{reference!r} is a URL: name an object in the platform's bucket (s3://{bucket}/{prefix}... or a "
            "key relative to your prefix); URLs are not fetched"
        )
    return prefix + check_relative_key(reference)


@dataclass(frozen=True)
class Tenant:
    id: str
    webhook_secret: str
    created_at: float

    @property
    def prefix(self) -> str:
        return tenant_prefix(self.id)


@dataclass(frozen=True)
class ApiKey:
    """A key as stored: never the key itself, only its HMAC (see orchestrator.auth)."""

    id: str
    tenant_id: str
    name: str
    hash: str
    rate_per_s: float | None
    burst: int | None
    created_at: float
    last_used_at: float | None = None  # a new key: never used, not revoked
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class TenantStore(SqlStore):
    """Tenants and API keys in the job database."""

    def tenant(self, tenant_id: str) -> Tenant | None:
        return self._read(TenantRow, tenant_id, _to_tenant)

    def ensure_tenant(self, tenant_id: str) -> Tenant:
        """The tenant, created (with a new webhook secret) when it does not exist yet."""
        check_tenant_id(tenant_id)
        existing = self.tenant(tenant_id)
        if existing is not None:
            return existing
        try:
            with self._sessions.begin() as session:
                session.add(
                    TenantRow(id=tenant_id, webhook_secret=secrets.token_hex(32), created_at=time.time())
                )
        except IntegrityError:  # another request created it meanwhile
            pass
        created = self.tenant(tenant_id)
        assert created is not None, "a committed tenant reads back"
        return created

    def add_key(
        self,
        key_id: str,
        tenant_id: str,
        key_hash: str,
        name: str = "",
        rate_per_s: float | None = None,
        burst: int | None = None,
    ) -> ApiKey:
        self.ensure_tenant(tenant_id)
        key = ApiKey(key_id, tenant_id, name, key_hash, rate_per_s, burst, created_at=time.time())
        with self._sessions.begin() as session:
            session.add(ApiKeyRow(**asdict(key)))
        return key

    def key(self, key_id: str) -> ApiKey | None:
        return self._read(ApiKeyRow, key_id, _to_key)

    def keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if tenant_id is not None:
            query = query.where(ApiKeyRow.tenant_id == tenant_id)
        with self._sessions() as session:
            return [_to_key(row) for row in session.scalars(query)]

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke a key (a revoked key stays revoked; its first revocation time is kept)."""
        with self._sessions.begin() as session:
            session.execute(
                update(ApiKeyRow)
                .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
                .values(revoked_at=time.time())
                .execution_options(synchronize_session=False)
            )
        return self.key(key_id)

    def touch(self, key_id: str, when: float) -> None:
        """Record that the key was used (callers throttle this: it is a write)."""
        with self._sessions.begin() as session:
            session.execute(
                update(ApiKeyRow)
                .where(ApiKeyRow.id == key_id)
                .values(last_used_at=when)
                .execution_options(synchronize_session=False)
            )


def _to_tenant(row: TenantRow) -> Tenant:
    return from_row(Tenant, row)


def _to_key(row: ApiKeyRow) -> ApiKey:
    return from_row(ApiKey, row)
