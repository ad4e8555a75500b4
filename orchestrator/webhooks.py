"""Webhooks: a finished job's JSON POSTed to the callback URL its client named, signed, retried, recorded.

A delivery is a row of the database (queued by the transaction that finishes the job, see orchestrator.jobs),
so it survives a restart of the orchestrator; each attempt is recorded on it (time, HTTP status or error,
seconds) and shown in the job's JSON. The dispatcher threads claim due deliveries with a lease, as workers
claim jobs, so several replicas deliver each callback once and a delivery whose replica died is taken over.
A replica with VTON_WORKERS=0 (an API-only one) leaves deliveries to the replicas that run jobs.

Every request carries
    X-Vton-Timestamp: <unix seconds>
    X-Vton-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the tenant's webhook secret>
    X-Vton-Delivery: <delivery id>   (the same on every retry: receivers can drop duplicates)
    X-Vton-Event: job.finished
and counts as delivered on any 2xx answer. Anything else (another status, a refused address, a timeout, a
connection error) is retried after `backoff * 2^(n-1)` seconds (at most `max_backoff`) until `retry_for_s`
after the job finished; then the delivery is given up as failed. Redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from orchestrator.callback_urls import CallbackPolicy, CallbackRefused, CallbackTarget
from orchestrator.settings import Settings
from orchestrator.stores import SqlStore, from_row
from orchestrator.tables import DeliveryAttemptRow, DeliveryRow
from orchestrator.tenants import TenantStore
from vton.runtime.logs import log_event

log = logging.getLogger("vton.orchestrator.webhooks")

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
SIGNATURE_HEADER = "X-Vton-Signature"
TIMESTAMP_HEADER = "X-Vton-Timestamp"
DELIVERY_HEADER = "X-Vton-Delivery"
EVENT_HEADER = "X-Vton-Event"
_ERROR_CHARS = 500


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: `v1=` and the hex HMAC-SHA256 of `<timestamp>.<body>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


@dataclass(frozen=True)
class Attempt:
    number: int
    at: float
    status_code: int | None
    error: str | None
    seconds: float


@dataclass(frozen=True)
class Delivery:
    id: str
    tenant_id: str
    kind: str  # "job"
    subject_id: str
    url: str
    status: str
    created_at: float
    next_attempt_at: float
    finished_at: float | None
    attempts: list[Attempt] = field(default_factory=list)
    claim_token: str | None = None


def queue_delivery(session: Session, kind: str, subject_id: str, tenant_id: str, url: str) -> None:
    """Queue a delivery inside the caller's transaction (the one that finishes the job)."""
    now = time.time()
    session.execute(
        insert(DeliveryRow).values(
            id=uuid.uuid4().hex,
            tenant_id=tenant_id,
            kind=kind,
            subject_id=subject_id,
            url=url,
            status=PENDING,
            created_at=now,
            next_attempt_at=now,
        )
    )


class DeliveryStore(SqlStore):
    """Deliveries and their attempts in SQL."""

    def get(self, delivery_id: str) -> Delivery | None:
        return self._read(DeliveryRow, delivery_id, _to_delivery)

    def for_subject(self, kind: str, subject_id: str) -> Delivery | None:
        with self._sessions() as session:
            row = session.scalars(
                select(DeliveryRow)
                .where(DeliveryRow.kind == kind, DeliveryRow.subject_id == subject_id)
                .order_by(DeliveryRow.created_at.desc())
                .limit(1)
            ).first()
            return _to_delivery(row) if row is not None else None

    def claim_due(self, limit: int, lease_s: float) -> list[Delivery]:
        """Up to `limit` pending deliveries whose time has come, each claimed by this caller for `lease_s`."""
        now = time.time()
        with self._sessions() as session:
            ids = session.scalars(
                select(DeliveryRow.id)
                .where(DeliveryRow.status == PENDING, DeliveryRow.next_attempt_at <= now)
                .where((DeliveryRow.claimed_until.is_(None)) | (DeliveryRow.claimed_until < now))
                .order_by(DeliveryRow.next_attempt_at)
                .limit(limit)
            ).all()
        claimed = []
        for delivery_id in ids:
            token = uuid.uuid4().hex
            with self._sessions.begin() as session:
                won = session.execute(
                    update(DeliveryRow)
                    .where(DeliveryRow.id == delivery_id, DeliveryRow.status == PENDING)
                    .where((DeliveryRow.claimed_until.is_(None)) | (DeliveryRow.claimed_until < now))
                    .values(claim_token=token, claimed_until=now + lease_s)
                    .execution_options(synchronize_session=False)
                ).rowcount
            if won == 1:
                delivery = self.get(delivery_id)
                if delivery is not None:
                    claimed.append(delivery)
        return claimed

    def record(self, delivery: Delivery, attempt: Attempt, status: str, next_attempt_at: float) -> bool:
        """Record an attempt and the delivery's new status under its claim; False when the claim was lost."""
        now = time.time()
        with self._sessions.begin() as session:
            changed = session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery.id, DeliveryRow.claim_token == delivery.claim_token)
                .values(
                    status=status,
                    next_attempt_at=next_attempt_at,
                    claim_token=None,
                    claimed_until=None,
                    finished_at=now if status != PENDING else None,
                )
                .execution_options(synchronize_session=False)
            ).rowcount
            if changed:
                session.execute(insert(DeliveryAttemptRow).values(delivery_id=delivery.id, **asdict(attempt)))
        return changed == 1


@dataclass(frozen=True)
class RetrySchedule:
    backoff_s: float
    max_backoff_s: float
    retry_for_s: float

    def next_attempt(self, delivery: Delivery, attempts_made: int, now: float) -> float | None:
        """When to try again after `attempts_made` failed attempts; None when the time for retries is over."""
        wait = min(self.max_backoff_s, self.backoff_s * 2 ** (attempts_made - 1))
        when = now + wait
        return when if when <= delivery.created_at + self.retry_for_s else None


Payload = Callable[[Delivery], dict[str, Any] | None]


class WebhookDispatcher:
    """Threads that deliver due callbacks: a poller that claims them and a small pool that sends them.

    `payloads[delivery.kind](delivery)` gives the JSON to send (None when its subject is gone);
    `secret(tenant_id)` the tenant's signing secret.
    """

    def __init__(
        self,
        deliveries: DeliveryStore,
        policy: CallbackPolicy,
        payloads: dict[str, Payload],
        secret: Callable[[str], str],
        schedule: RetrySchedule,
        *,
        timeout_s: float,
        concurrency: int = 4,
        poll_s: float = 0.5,
    ) -> None:
        self.deliveries, self.policy, self.payloads, self.secret = deliveries, policy, payloads, secret
        self.schedule, self.timeout_s, self.concurrency, self.poll_s = (
            schedule,
            timeout_s,
            concurrency,
            poll_s,
        )
        # A claim outlives the request's deadline: a live dispatcher is never overtaken by another replica.
        self.lease_s = timeout_s + 30.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight = threading.Semaphore(concurrency)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="vton-webhook")
        self._thread = threading.Thread(target=self._poll, name="vton-webhook-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop claiming; deliveries in flight end within their timeout (a later start delivers the rest)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 5)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # at most `concurrency` deliveries were claimed: all are running
            self._pool = None

    def _poll(self) -> None:
        while not self._stop.is_set():
            free = 0
            while self._in_flight.acquire(blocking=False):
                free += 1
            try:
                due = self.deliveries.claim_due(free, self.lease_s) if free else []
            except Exception:  # the database is down: say so, try again later
                log.exception("claiming webhook deliveries failed")
                due = []
            for _ in range(free - len(due)):
                self._in_flight.release()
            for delivery in due:
                self._pool.submit(self._deliver_and_release, delivery)
            self._stop.wait(self.poll_s)

    def _deliver_and_release(self, delivery: Delivery) -> None:
        try:
            self.deliver(delivery)
        except Exception:
            log.exception("webhook delivery %s failed unexpectedly", delivery.id)
        finally:
            self._in_flight.release()

    def deliver(self, delivery: Delivery) -> Attempt:
        """One attempt at a claimed delivery, recorded with the delivery's next status."""
        number = len(delivery.attempts) + 1
        started_at, started = time.time(), time.monotonic()
        status_code, error = None, None
        build = self.payloads.get(delivery.kind)
        payload = build(delivery) if build is not None else None
        if payload is None:
            error = f"the {delivery.kind} {delivery.subject_id} no longer exists"
        else:
            try:
                target = self.policy.check(delivery.url)
                status_code = self._post(delivery, target, payload)
                if not 200 <= status_code < 300:
                    error = f"the receiver answered HTTP {status_code}"
            except CallbackRefused as exc:
                error = f"refused: {exc}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS] or type(exc).__name__
        attempt = Attempt(number, started_at, status_code, error, round(time.monotonic() - started, 4))
        now = time.time()
        if error is None:
            status, next_at = DELIVERED, now
        elif payload is None:
            status, next_at = FAILED, now
        else:
            retry_at = self.schedule.next_attempt(delivery, number, now)
            status, next_at = (PENDING, retry_at) if retry_at is not None else (FAILED, now)
        self.deliveries.record(delivery, attempt, status, next_at)
        log_event(
            log,
            f"webhook {status}",
            logging.INFO if error is None else logging.WARNING,
            delivery=delivery.id,
            subject=f"{delivery.kind}:{delivery.subject_id}",
            attempt=number,
            status_code=status_code,
            error=error,
        )
        return attempt

    def _post(self, delivery: Delivery, target: CallbackTarget, payload: dict[str, Any]) -> int:
        body = json.dumps(payload, separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "vton-webhooks/1",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.secret(delivery.tenant_id), timestamp, body),
            DELIVERY_HEADER: delivery.id,
            EVENT_HEADER: f"{delivery.kind}.finished",
        }
        url, extensions = _pinned(target, headers)
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False, trust_env=False) as client:
            return client.post(url, content=body, headers=headers, extensions=extensions).status_code


def webhook_dispatcher(
    settings: Settings, deliveries: DeliveryStore, tenants: TenantStore, payloads: dict[str, Payload]
) -> WebhookDispatcher:
    """The dispatcher `settings` describe; each tenant's callbacks signed with the tenant's secret."""

    def secret(tenant_id: str) -> str:
        tenant = tenants.tenant(tenant_id)
        assert tenant is not None, "a delivery's tenant exists"
        return tenant.webhook_secret

    return WebhookDispatcher(
        deliveries,
        CallbackPolicy(settings.webhook_allowed_hosts, settings.webhook_allowed_networks),
        payloads,
        secret,
        RetrySchedule(
            settings.webhook_backoff_s, settings.webhook_max_backoff_s, settings.webhook_retry_for_s
        ),
        timeout_s=settings.webhook_timeout_s,
    )


def _pinned(target: CallbackTarget, headers: dict[str, str]) -> tuple[httpx.URL, dict[str, Any]]:
    """The request goes to the first checked address, not to whatever the name resolves to by then; the Host
    header and (https) the TLS server name stay the URL's host, so virtual hosts and certificates work."""
    address = target.addresses[0]
    url = httpx.URL(target.url)
    default_port = 443 if target.scheme == "https" else 80
    headers["Host"] = target.host if target.port == default_port else f"{target.host}:{target.port}"
    extensions: dict[str, Any] = {}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host
    return url.copy_with(host=address), extensions


def _to_delivery(row: DeliveryRow) -> Delivery:
    return from_row(Delivery, row, attempts=[from_row(Attempt, a) for a in row.attempts])
