"""What keeps one client from taking the platform for itself: per-key request rates and the queue's bounds.

Both answer 429 with `Retry-After`. The token buckets live in each orchestrator process: with N replicas
behind a load balancer a key may make up to N times its rate; the queue bounds are counted in the database
and hold across replicas (up to the few requests that pass the count at the same moment).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from orchestrator.errors import ApiError

# A full queue drains at the pace of the jobs, seconds each: a client should not come back at once.
QUEUE_FULL_RETRY_AFTER_S = 10


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per API key: `burst` requests at once, refilled at `rate` per second."""

    def __init__(self, rate_per_s: float, burst: int, clock=time.monotonic) -> None:
        self.rate_per_s, self.burst, self.clock = rate_per_s, burst, clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str, rate_per_s: float | None = None, burst: int | None = None) -> float:
        """Spend one token of `key_id`'s bucket: 0.0 when there was one, else the seconds until there is."""
        rate = rate_per_s or self.rate_per_s
        capacity = float(burst or self.burst)
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = _Bucket(capacity, now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate


def rate_limited(key_id: str, wait_s: float) -> ApiError:
    retry_after = max(1, math.ceil(wait_s))
    return ApiError(
        429,
        f"too many requests for API key {key_id}: retry after {retry_after} s",
        {"reason": "rate_limit", "retry_after_s": retry_after},
        {"Retry-After": str(retry_after)},
    )


def check_queue_room(
    queued_of_tenant: int, queued_in_all: int, per_tenant: int, in_all: int, adding: int = 1
) -> None:
    """429 when `adding` more queued jobs (a batch's) would pass the tenant's bound or the platform's."""
    if queued_of_tenant + adding > per_tenant:
        reason, message = (
            "tenant_queue_full",
            f"you have {queued_of_tenant} jobs queued, the limit is {per_tenant}",
        )
    elif queued_in_all + adding > in_all:
        reason, message = "queue_full", f"the platform has {queued_in_all} jobs queued, its limit"
    else:
        return
    raise ApiError(
        429,
        f"{message}: retry after {QUEUE_FULL_RETRY_AFTER_S} s",
        {"reason": reason, "retry_after_s": QUEUE_FULL_RETRY_AFTER_S},
        {"Retry-After": str(QUEUE_FULL_RETRY_AFTER_S)},
    )
