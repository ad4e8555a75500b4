"""`Idempotency-Key` on a POST: a retried request (same key, same tenant, within the window) gets the job the
first one made instead of a second job; the same key with a different request is refused (422).

A request is compared by its fingerprint: SHA-256 of what the client sent as it matters (the route, the
fields, a digest of each file), not of the raw bytes, so a retry whose multipart boundary differs matches.
The key is recorded in the transaction that creates the job (orchestrator.jobs), so two concurrent retries
make one job: the second one's insert fails and it answers with the first's job.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ApiError

HEADER = "Idempotency-Key"
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces: what fits a header and the column


@dataclass(frozen=True)
class Idempotency:
    """What a request's `Idempotency-Key` records: the key, the request's fingerprint, for how long."""

    key: str
    fingerprint: str
    window_s: float


@dataclass(frozen=True)
class PriorRequest:
    fingerprint: str
    resource_id: str  # what the first request created (a job id)


class IdempotencyTaken(Exception):
    """A concurrent request took the key first: answer with what it made."""

    def __init__(self, prior: PriorRequest) -> None:
        super().__init__(prior.resource_id)
        self.prior = prior


def checked_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _KEY_RE.match(value):
        raise ApiError(
            400,
            f"the {HEADER} header must be 1 to 255 printable ASCII characters without spaces",
            {"header": HEADER},
        )
    return value


def fingerprint(route: str, fields: dict[str, Any], files: dict[str, bytes] | None = None) -> str:
    """The digest a retry must match: the route, the fields as sent (JSON values) and each file's SHA-256."""
    content = {
        "route": route,
        "fields": fields,
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in (files or {}).items()},
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def replayed(prior: PriorRequest, request: Idempotency) -> str:
    """The id of what the first request made; 422 when the key came with a different request."""
    if prior.fingerprint != request.fingerprint:
        raise ApiError(
            422,
            f"{HEADER} {request.key!r} was used with a different request; use a new key for a new request",
            {"header": HEADER, "value": request.key, "resource_id": prior.resource_id},
        )
    return prior.resource_id
