"""The job tables: jobs, their per-stage progress and their artifacts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vton_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=True),
        sa.Column("guidance_scale", sa.Double(), nullable=True),
        sa.Column("person_key", sa.String(512), nullable=False),
        sa.Column("garment_key", sa.String(512), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("heartbeat_at", sa.Double(), nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result_key", sa.String(512), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_stage", sa.String(32), nullable=True),
    )
    op.create_index("ix_vton_jobs_status_created", "vton_jobs", ["status", "created_at"])
    op.create_table(
        "vton_job_stages",
        sa.Column(
            "job_id", sa.String(32), sa.ForeignKey("vton_jobs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("stage", sa.String(32), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("backend", sa.JSON(), nullable=True),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("people_detected", sa.Integer(), nullable=True),
    )
    op.create_table(
        "vton_job_artifacts",
        sa.Column(
            "job_id", sa.String(32), sa.ForeignKey("vton_jobs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("vton_job_artifacts")
    op.drop_table("vton_job_stages")
    op.drop_index("ix_vton_jobs_status_created", table_name="vton_jobs")
    op.drop_table("vton_jobs")
