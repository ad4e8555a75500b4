"""Catalog batches: every garment on every person, one try-on job each, and what those jobs share.

A batch is written in one transaction with its items (its people and garments: a name and the photo's key) and
its jobs, so it is never half made. The jobs are queued garment by garment: the first ones the workers take are
of different people, so their analyses run side by side instead of one job waiting for another's.

What the jobs of a batch share (a person's pose, densepose and parsing; a garment's inferred category) is done
once, by the first job that needs it, and read by the others: orchestrator.batch_steps, over the items' claims
kept here. The item row is the lock: a job claims it (pending -> running, with a lease and its process as owner),
the others wait for it to end.

A batch is finished when every job is: the catalog poller (orchestrator.catalog_poller) then writes its manifest
(orchestrator.manifest), marks it finished and queues its callback in the same transaction.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError

from orchestrator.idempotency import Idempotency, IdempotencyTaken
from orchestrator.jobs import (
    FINISHED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    JobStore,
    job_row,
    new_job_id,
    record_idempotency,
)
from orchestrator.stages import StageError
from orchestrator.stores import SqlStore, from_row
from orchestrator.tables import BatchItemRow, BatchRow, IncomingSeenRow, JobRow
from orchestrator.tenants import tenant_prefix
from orchestrator.webhooks import queue_delivery
from vton.runtime.options import TryOnOptions

PERSON, GARMENT = "person", "garment"
# A batch runs until its manifest is written.
BATCH_RUNNING, BATCH_FINISHED = "running", "finished"
# Jobs of one batch are queued in order: created_at grows by this much from one to the next.
_ORDER_STEP_S = 1e-6
# What a batch's row keeps of its plan, column for column.
_PLAN_COLUMNS = ("tenant_id", "key_id", "source", "callback_url", "manifest_key", "error")


def batch_prefix(tenant_id: str, batch_id: str) -> str:
    """Where a batch's uploads, shared analyses and (API batches) results and manifest live."""
    return f"{tenant_prefix(tenant_id)}batches/{batch_id}/"


def new_batch_id() -> str:
    return uuid.uuid4().hex


def stem(name: str) -> str:
    """A photo's name without its extension: `lower_body/jeans.jpg` -> `lower_body/jeans`."""
    folder, _, base = name.rpartition("/")
    base = base.rsplit(".", 1)[0] if "." in base[1:] else base
    return f"{folder}/{base}" if folder else base


@dataclass(frozen=True)
class BatchItem:
    """A person or a garment of a batch; `status` is that of the work its jobs share."""

    kind: str
    position: int
    name: str
    key: str
    category: str | None
    category_inferred: bool
    status: str
    owner: str | None
    claim_token: str | None
    result: dict[str, Any] | None
    error: str | None
    error_code: str | None
    error_stage: str | None


@dataclass(frozen=True)
class Batch:
    id: str
    tenant_id: str
    key_id: str | None
    source: str
    status: str
    callback_url: str | None
    manifest_key: str
    error: str | None
    created_at: float
    finished_at: float | None
    people: tuple[BatchItem, ...]
    garments: tuple[BatchItem, ...]

    @property
    def manifest_csv_key(self) -> str:
        return self.manifest_key.rsplit(".", 1)[0] + ".csv"


@dataclass(frozen=True)
class BatchPlan:
    """What a new batch is made of. Every garment goes on every person; the result of garment g on person p
    goes to `<results_prefix><stem of g>/<stem of p>.png`. With `error` (a garment that cannot be read, no
    model photos) the batch makes no job and its manifest says why."""

    tenant_id: str
    source: str
    people: list[tuple[str, str]]  # (name, key)
    garments: list[tuple[str, str, str | None]]  # (name, key, category; None: inferred)
    options: TryOnOptions  # its category is each garment's
    results_prefix: str
    manifest_key: str
    batch_id: str = ""  # "" : a new id
    key_id: str | None = None
    callback_url: str | None = None
    request_id: str = ""
    error: str | None = None

    def result_key(self, garment: int, person: int) -> str:
        return f"{self.results_prefix}{stem(self.garments[garment][0])}/{stem(self.people[person][0])}.png"


class AlreadySeen(Exception):
    """Another replica picked up the incoming garment first."""


class BatchStore(SqlStore):
    """Batches, their items and the items' claims, in the job database."""

    def __init__(self, jobs: JobStore) -> None:
        super().__init__(jobs.engine)
        self.jobs = jobs

    # --- making and reading ------------------------------------------------------------------------------

    def create(
        self, plan: BatchPlan, *, idempotency: Idempotency | None = None, seen_key: str | None = None
    ) -> Batch:
        """Write the batch, its items and its queued jobs at once. With `idempotency` the tenant's key is
        recorded with it (IdempotencyTaken when a concurrent request took it); with `seen_key` the incoming
        garment is marked as picked up in the same transaction (AlreadySeen when another replica did)."""
        batch_id = plan.batch_id or new_batch_id()
        now = time.time()
        row = BatchRow(
            id=batch_id,
            status=BATCH_RUNNING,
            created_at=now,
            items=[_item_row(PERSON, i, name, key, None) for i, (name, key) in enumerate(plan.people)]
            + [_item_row(GARMENT, i, *garment) for i, garment in enumerate(plan.garments)],
            **{column: getattr(plan, column) for column in _PLAN_COLUMNS},
        )
        jobs = [] if plan.error else _job_rows(plan, batch_id, now)
        try:
            with self._sessions.begin() as session:
                if idempotency is not None:
                    record_idempotency(session, plan.tenant_id, idempotency, batch_id, now)
                if seen_key is not None:
                    session.add(
                        IncomingSeenRow(
                            tenant_id=plan.tenant_id, key=seen_key, batch_id=batch_id, seen_at=now
                        )
                    )
                    session.flush()  # the pickup's uniqueness is checked before anything else is written
                session.add(row)
                session.flush()  # the jobs' foreign key needs the batch
                session.add_all(jobs)
        except IntegrityError:
            if idempotency is not None:
                prior = self.jobs.prior_request(plan.tenant_id, idempotency.key, idempotency.window_s)
                if prior is not None:
                    raise IdempotencyTaken(prior) from None
            if seen_key is not None:
                raise AlreadySeen(seen_key) from None
            raise
        batch = self.get(batch_id)
        assert batch is not None, "a committed batch reads back"
        return batch

    def get(self, batch_id: str) -> Batch | None:
        return self._read(BatchRow, batch_id, _to_batch)

    def get_for_tenant(self, batch_id: str, tenant_id: str) -> Batch | None:
        """The batch if it is `tenant_id`'s; None for another tenant's batch as for one that does not exist."""
        batch = self.get(batch_id)
        return batch if batch is not None and batch.tenant_id == tenant_id else None

    def item(self, batch_id: str, kind: str, position: int) -> BatchItem | None:
        return self._read(BatchItemRow, (batch_id, kind, position), _to_item)

    # --- the work the jobs of a batch share ----------------------------------------------------------------

    def claim_item(
        self, batch_id: str, kind: str, position: int, owner: str, lease_s: float, stale: str | None = None
    ) -> str | None:
        """Take an item's shared work: a claim token when it was pending, its lease had run out, or it was
        claimed with `stale` (a claim whose process is gone); None when another job has it or it is done."""
        token, now = uuid.uuid4().hex, time.time()
        takeable = (BatchItemRow.status == PENDING) | (
            (BatchItemRow.status == RUNNING)
            & ((BatchItemRow.claimed_until < now) | (BatchItemRow.claim_token == (stale or "")))
        )
        with self._sessions.begin() as session:
            won = session.execute(
                update(BatchItemRow)
                .where(_item_key(batch_id, kind, position), takeable)
                .values(status=RUNNING, owner=owner, claim_token=token, claimed_until=now + lease_s)
                .execution_options(synchronize_session=False)
            ).rowcount
        return token if won == 1 else None

    def finish_item(
        self,
        batch_id: str,
        kind: str,
        position: int,
        token: str,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        category: str | None = None,
        error: StageError | None = None,
    ) -> bool:
        """End a claimed item's work: succeeded with what it made (a garment: its inferred category), or failed
        with the photo's error. False when the claim was lost (another job took the item over)."""
        values: dict[str, Any] = {
            "status": status,
            "result": result,
            "claim_token": None,
            "claimed_until": None,
        }
        if category is not None:
            values |= {"category": category, "category_inferred": True}
        if error is not None:  # the job's error code beside the gRPC one: a step may name it otherwise
            values |= {"error": error.message, "error_code": error.code.name, "error_stage": error.step}
            values["result"] = {"job_error_code": error.error_code}
        with self._sessions.begin() as session:
            changed = session.execute(
                update(BatchItemRow)
                .where(_item_key(batch_id, kind, position), BatchItemRow.claim_token == token)
                .values(**values)
                .execution_options(synchronize_session=False)
            ).rowcount
        return changed == 1

    def release_item(self, batch_id: str, kind: str, position: int, token: str) -> None:
        """Hand a claimed item back (a stage unavailable, a shutdown): the next job that needs it tries again."""
        with self._sessions.begin() as session:
            session.execute(
                update(BatchItemRow)
                .where(_item_key(batch_id, kind, position), BatchItemRow.claim_token == token)
                .values(status=PENDING, owner=None, claim_token=None, claimed_until=None)
                .execution_options(synchronize_session=False)
            )

    # --- finishing -----------------------------------------------------------------------------------------

    def ready_to_finish(self, limit: int = 20) -> list[str]:
        """Running batches none of whose jobs is still queued or running, and that no replica is finishing."""
        now = time.time()
        unfinished = exists().where(JobRow.batch_id == BatchRow.id, JobRow.status.not_in(FINISHED))
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(BatchRow.id)
                    .where(BatchRow.status == BATCH_RUNNING, ~unfinished)
                    .where(BatchRow.claimed_until.is_(None) | (BatchRow.claimed_until < now))
                    .order_by(BatchRow.created_at)
                    .limit(limit)
                )
            )

    def claim_finish(self, batch_id: str, lease_s: float) -> str | None:
        """Take the writing of a batch's manifest (one replica does it); a token, or None."""
        token, now = uuid.uuid4().hex, time.time()
        with self._sessions.begin() as session:
            won = session.execute(
                update(BatchRow)
                .where(BatchRow.id == batch_id, BatchRow.status == BATCH_RUNNING)
                .where(BatchRow.claimed_until.is_(None) | (BatchRow.claimed_until < now))
                .values(claim_token=token, claimed_until=now + lease_s)
                .execution_options(synchronize_session=False)
            ).rowcount
        return token if won == 1 else None

    def mark_finished(self, batch_id: str, token: str) -> bool:
        """The manifest is written: the batch is finished, and its callback (if any) queued with it."""
        now = time.time()
        with self._sessions.begin() as session:
            changed = session.execute(
                update(BatchRow)
                .where(
                    BatchRow.id == batch_id, BatchRow.claim_token == token, BatchRow.status == BATCH_RUNNING
                )
                .values(status=BATCH_FINISHED, finished_at=now, claim_token=None, claimed_until=None)
                .execution_options(synchronize_session=False)
            ).rowcount
            if changed:
                tenant_id, url = session.execute(
                    select(BatchRow.tenant_id, BatchRow.callback_url).where(BatchRow.id == batch_id)
                ).one()
                if url:
                    queue_delivery(session, "batch", batch_id, tenant_id, url)
        return changed == 1

    def release_finish(self, batch_id: str, token: str) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(BatchRow)
                .where(BatchRow.id == batch_id, BatchRow.claim_token == token)
                .values(claim_token=None, claimed_until=None)
                .execution_options(synchronize_session=False)
            )


def _item_key(batch_id: str, kind: str, position: int):
    return (
        (BatchItemRow.batch_id == batch_id)
        & (BatchItemRow.kind == kind)
        & (BatchItemRow.position == position)
    )


def _item_row(kind: str, position: int, name: str, key: str, category: str | None) -> BatchItemRow:
    """A new item: a person's analysis is pending; a garment's category too unless the batch named it."""
    return BatchItemRow(
        kind=kind,
        position=position,
        name=name,
        key=key,
        category=category,
        category_inferred=False,
        status=PENDING if kind == PERSON or category is None else SUCCEEDED,
    )


def _job_rows(plan: BatchPlan, batch_id: str, now: float) -> list[JobRow]:
    rows = []
    for g, (_name, garment_key, category) in enumerate(plan.garments):
        options = replace(plan.options, category=category or "")
        for p, (_person, person_key) in enumerate(plan.people):
            rows.append(
                job_row(
                    new_job_id(),
                    options,
                    person_key=person_key,
                    garment_key=garment_key,
                    request_id=plan.request_id,
                    tenant_id=plan.tenant_id,
                    key_id=plan.key_id,
                    now=now + len(rows) * _ORDER_STEP_S,
                    batch=(batch_id, p, g),
                    output_key=plan.result_key(g, p),
                )
            )
    return rows


def _to_item(row: BatchItemRow) -> BatchItem:
    return from_row(BatchItem, row)


def _to_batch(row: BatchRow) -> Batch:
    items = sorted((_to_item(item) for item in row.items), key=lambda i: i.position)
    people, garments = (tuple(i for i in items if i.kind == kind) for kind in (PERSON, GARMENT))
    return from_row(Batch, row, people=people, garments=garments)
