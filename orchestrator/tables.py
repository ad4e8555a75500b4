"""The job database's tables as SQLAlchemy models.

The schema itself changes only through the Alembic migrations in `orchestrator/migrations/versions/`; a test
checks that upgrading an empty database to head gives exactly these tables (autogenerate finds no difference).
A change here therefore comes with a new migration: `python -m orchestrator.migrations revision "what changed"`.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Double, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "vton_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
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

    __table_args__ = (Index("ix_vton_jobs_status_created", "status", "created_at"),)


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


class ArtifactRow(Base):
    __tablename__ = "vton_job_artifacts"

    job_id: Mapped[str] = mapped_column(ForeignKey("vton_jobs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[float] = mapped_column(Double)
