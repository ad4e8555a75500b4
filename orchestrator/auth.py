"""API keys: their format, how they are stored, and the FastAPI dependencies that check them.

A key reads `vton_<id>_<secret>`: the 12-hex-digit id is public (it names the key in `vton keys list` and
in the logs), the secret is 32 random bytes. The database keeps HMAC-SHA256(pepper, key) only, the pepper
being a server-side secret from the environment (VTON_KEY_PEPPER): a copy of the database alone lets no one
use or recover a key. A request's key is looked up by its id and its HMAC compared in constant time.

`authenticated` is the one dependency of every `/v1` route: it yields the `Principal` (the key and its
tenant) or answers 401 (no key, a malformed or unknown one), 403 (a revoked key) or 429 (the key's rate).
`admin` guards `/v1/admin/*` with the admin key from the environment (VTON_ADMIN_KEY).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orchestrator.errors import ApiError
from orchestrator.limits import TokenBuckets, rate_limited
from orchestrator.settings import Settings, SettingsError
from orchestrator.tenants import ApiKey, Tenant, TenantStore

KEY_RE = re.compile(r"^vton_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
# last_used_at is a write: once a minute per key is enough to tell keys in use from forgotten ones.
_TOUCH_EVERY_S = 60.0
_CHALLENGE = {"WWW-Authenticate": "Bearer"}

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An API key (`vton keys create`, or the one `vton up` prints): `Authorization: Bearer vton_...`",
)


def new_key() -> tuple[str, str]:
    """A fresh key: (its id, the whole key). The whole key is shown once and never stored."""
    key_id = secrets.token_hex(6)
    return key_id, f"vton_{key_id}_{secrets.token_urlsafe(32)}"


def hash_key(pepper: bytes, key: str) -> str:
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who sent a request: the API key and the tenant it belongs to."""

    key: ApiKey
    tenant: Tenant

    @property
    def tenant_id(self) -> str:
        return self.tenant.id


class Authenticator:
    """Checks keys against the tenant store and spends their rate; creates keys for the admin routes."""

    def __init__(self, settings: Settings, tenants: TenantStore) -> None:
        if settings.key_pepper is None:
            raise SettingsError(
                "VTON_KEY_PEPPER is not set: API keys are stored as HMACs keyed with it; give every replica "
                'the same secret, e.g. the output of `python -c "import secrets; print(secrets.token_urlsafe(32))"`'
            )
        self._pepper = settings.key_pepper.get_secret_value().encode()
        self._admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
        self.tenants = tenants
        self.buckets = TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst)
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def create_key(
        self, tenant_id: str, name: str = "", rate_per_s: float | None = None, burst: int | None = None
    ) -> tuple[ApiKey, str]:
        """A new key of `tenant_id` (created with its first key): (the stored key, the whole key)."""
        key_id, key = new_key()
        stored = self.tenants.add_key(key_id, tenant_id, hash_key(self._pepper, key), name, rate_per_s, burst)
        return stored, key

    def authenticate(self, credentials: HTTPAuthorizationCredentials | None) -> Principal:
        if credentials is None:
            raise ApiError(
                401, "missing API key: send the header `Authorization: Bearer <key>`", None, _CHALLENGE
            )
        match = KEY_RE.match(credentials.credentials)
        stored = self.tenants.key(match.group(1)) if match else None
        # compare_digest on the HMACs: the time taken says nothing about how much of a guess was right
        given = hash_key(self._pepper, credentials.credentials)
        if stored is None or not hmac.compare_digest(stored.hash, given):
            raise ApiError(401, "invalid API key", None, _CHALLENGE)
        if stored.revoked:
            raise ApiError(403, f"API key {stored.id} was revoked", {"key_id": stored.id})
        wait_s = self.buckets.take(stored.id, stored.rate_per_s, stored.burst)
        if wait_s > 0:
            raise rate_limited(stored.id, wait_s)
        self._touch(stored.id)
        tenant = self.tenants.tenant(stored.tenant_id)
        assert tenant is not None, "a key's tenant exists (foreign key)"
        return Principal(stored, tenant)

    def check_admin(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        if self._admin_key is None:
            raise ApiError(403, "the admin routes are off: the orchestrator has no VTON_ADMIN_KEY")
        if credentials is None:
            raise ApiError(
                401,
                "missing admin key: send the header `Authorization: Bearer <admin key>`",
                None,
                _CHALLENGE,
            )
        if not hmac.compare_digest(credentials.credentials.encode(), self._admin_key.encode()):
            raise ApiError(401, "invalid admin key", None, _CHALLENGE)

    def _touch(self, key_id: str) -> None:
        now = time.time()
        with self._lock:
            if now - self._touched.get(key_id, 0.0) < _TOUCH_EVERY_S:
                return
            self._touched[key_id] = now
        self.tenants.touch(key_id, now)


def _authenticator(request: Request) -> Authenticator:
    return request.app.state.ctx.auth


def authenticated(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
) -> Principal:
    """The dependency of every /v1 route: the request's key and tenant (401/403/429 otherwise)."""
    return _authenticator(request).authenticate(credentials)


def admin(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
) -> None:
    """The dependency of the /v1/admin routes: the admin key (401 otherwise, 403 when there is none)."""
    _authenticator(request).check_admin(credentials)
