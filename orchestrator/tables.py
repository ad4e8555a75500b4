"""The job database's tables as SQLAlchemy models.

The schema itself changes only through the Alembic migrations in `orchestrator/migrations/versions/`; a test
checks that upgrading an empty database to head gives exactly these tables (autogenerate finds no difference).
A change here therefore comes with a new migration: `python -m orchestrator.migrations revision "what changed"`.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Double, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class TenantRow(Base):
    """A platform customer: its jobs, objects (under `tenants/<id>/` in the bucket) and keys are its own."""

    __tablename__ = "vton_tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    webhook_secret: Mapped[str] = mapped_column(String(64))  # signs the tenant's callbacks (HMAC-SHA256)
    created_at: Mapped[float] = mapped_column(Double)


class ApiKeyRow(Base):
    """An API key of a tenant: only its HMAC-SHA256 (keyed with the server's pepper) is stored."""

    __tablename__ = "vton_api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # the public part of the key
    tenant_id: Mapped[str] = mapped_column(ForeignKey("vton_tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    hash: Mapped[str] = mapped_column(String(64))
    rate_per_s: Mapped[float | None] = mapped_column(Double)  # None: the settings' default
    burst: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Double)
    last_used_at: Mapped[float | None] = mapped_column(Double)
    revoked_at: Mapped[float | None] = mapped_column(Double)


class IdempotencyRow(Base):
    """An `Idempotency-Key` a tenant sent: the request it came with (a digest) and what that request made."""

    __tablename__ = "vton_idempotency_keys"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Double)


class DeliveryRow(Base):
    """A callback to deliver: the JSON of a finished job (kind "job") POSTed to the URL its client named."""

    __tablename__ = "vton_webhook_deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    created_at: Mapped[float] = mapped_column(Double)
    next_attempt_at: Mapped[float] = mapped_column(Double)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[float | None] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)

    attempts: Mapped[list[DeliveryAttemptRow]] = relationship(
        order_by="DeliveryAttemptRow.number", lazy="selectin", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_vton_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_vton_webhook_deliveries_subject", "kind", "subject_id"),
    )


class DeliveryAttemptRow(Base):
    __tablename__ = "vton_webhook_attempts"

    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("vton_webhook_deliveries.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Double)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    seconds: Mapped[float] = mapped_column(Double)


class BatchRow(Base):
    """A catalog batch: every garment on every person, one job each (orchestrator.batches). Made by POST
    /v1/batches (source "api") or by a garment dropped into a tenant's incoming prefix (source "incoming")."""

    __tablename__ = "vton_batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("vton_tenants.id"))
    key_id: Mapped[str | None] = mapped_column(String(16))  # the API key that created it (none: incoming)
    source: Mapped[str] = mapped_column(String(16))  # api | incoming
    status: Mapped[str] = mapped_column(String(16))  # running | finished (its manifest is written)
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    manifest_key: Mapped[str] = mapped_column(String(512))  # manifest.json; manifest.csv beside it
    error: Mapped[str | None] = mapped_column(Text)  # why it made no jobs (an unreadable garment, no models)
    created_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)
    claim_token: Mapped[str | None] = mapped_column(String(32))  # the replica writing the manifest
    claimed_until: Mapped[float | None] = mapped_column(Double)

    items: Mapped[list[BatchItemRow]] = relationship(
        order_by="BatchItemRow.position", lazy="selectin", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_vton_batches_tenant_created", "tenant_id", "created_at"),
        Index("ix_vton_batches_status", "status"),
    )


class BatchItemRow(Base):
    """A person or a garment of a batch, and the work its jobs share: the person's analysis (pose, densepose,
    parsing) or the garment's inferred category, done by the first job that needs it, read by the others."""

    __tablename__ = "vton_batch_items"

    batch_id: Mapped[str] = mapped_column(ForeignKey("vton_batches.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # person | garment
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(512))  # what the manifest calls it
    key: Mapped[str] = mapped_column(String(512))  # the photo in the bucket
    category: Mapped[str | None] = mapped_column(String(32))  # a garment's, given or (once inferred) inferred
    category_inferred: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(
        String(16)
    )  # of the shared work: pending | running | succeeded | failed
    owner: Mapped[str | None] = mapped_column(String(255))
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[float | None] = mapped_column(Double)
    result: Mapped[dict | None] = mapped_column(JSON)  # what the shared work made (stages, artifacts, scores)
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))  # the gRPC status code's name
    error_stage: Mapped[str | None] = mapped_column(String(32))


class IncomingRow(Base):
    """A tenant's incoming-garment settings (orchestrator.incoming); a tenant without a row has the defaults."""

    __tablename__ = "vton_incoming"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("vton_tenants.id"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    prefix: Mapped[str] = mapped_column(String(512))
    models_prefix: Mapped[str | None] = mapped_column(String(512))
    model_keys: Mapped[list | None] = mapped_column(JSON)
    results_prefix: Mapped[str] = mapped_column(String(512))
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    updated_at: Mapped[float] = mapped_column(Double)


class IncomingSeenRow(Base):
    """An incoming garment that was picked up: the primary key makes one replica, once, the one that takes it."""

    __tablename__ = "vton_incoming_seen"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(32))
    seen_at: Mapped[float] = mapped_column(Double)

    __table_args__ = (Index("ix_vton_incoming_seen_recent", "tenant_id", "seen_at"),)


class JobRow(Base):
    __tablename__ = "vton_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("vton_tenants.id"))
    key_id: Mapped[str | None] = mapped_column(String(16))  # the API key that created it
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(32))  # null: to be inferred from the garment
    category_inferred: Mapped[bool] = mapped_column(Boolean)
    category_confidence: Mapped[float | None] = mapped_column(Double)
    category_scores: Mapped[dict | None] = mapped_column(JSON)
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("vton_batches.id"))
    batch_person: Mapped[int | None] = mapped_column(Integer)  # positions of the batch's items
    batch_garment: Mapped[int | None] = mapped_column(Integer)
    output_key: Mapped[str | None] = mapped_column(String(512))  # a batch job's result goes here
    seed: Mapped[int] = mapped_column(BigInteger)
    steps: Mapped[int | None] = mapped_column(Integer)
    guidance_scale: Mapped[float | None] = mapped_column(Double)
    scheduler: Mapped[str | None] = mapped_column(String(32))
    person_key: Mapped[str] = mapped_column(String(512))
    garment_key: Mapped[str] = mapped_column(String(512))
    request_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)
    started_at: Mapped[float | None] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)
    heartbeat_at: Mapped[float | None] = mapped_column(Double)
    owner: Mapped[str | None] = mapped_column(String(255))
    claim_token: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer)
    result_key: Mapped[str | None] = mapped_column(String(512))
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_stage: Mapped[str | None] = mapped_column(String(32))

    stages: Mapped[list[StageRow]] = relationship(
        order_by="StageRow.position", lazy="selectin", cascade="all, delete-orphan"
    )
    artifacts: Mapped[list[ArtifactRow]] = relationship(
        order_by="ArtifactRow.created_at", lazy="selectin", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_vton_jobs_status_created", "status", "created_at"),
        Index("ix_vton_jobs_tenant_status", "tenant_id", "status"),
        Index("ix_vton_jobs_batch", "batch_id", "status"),
    )


class StageRow(Base):
    __tablename__ = "vton_job_stages"

    job_id: Mapped[str] = mapped_column(ForeignKey("vton_jobs.id", ondelete="CASCADE"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    backend: Mapped[dict | None] = mapped_column(JSON)
    seconds: Mapped[float | None] = mapped_column(Double)
    error: Mapped[str | None] = mapped_column(Text)
    people_detected: Mapped[int | None] = mapped_column(Integer)
    reused: Mapped[bool | None] = mapped_column(Boolean)  # done once for the job's batch, not by this job


class ArtifactRow(Base):
    __tablename__ = "vton_job_artifacts"

    job_id: Mapped[str] = mapped_column(ForeignKey("vton_jobs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[float] = mapped_column(Double)
