"""The job tables: jobs, their per-stage progress and their artifacts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa

from orchestrator.migrations import ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    ddl.create_table(
        "vton_jobs",
        ddl.primary("id", ddl.ID),
        ddl.required("status", ddl.STATUS),
        ddl.required("category", sa.String(32)),
        ddl.required("seed", sa.BigInteger()),
        ddl.optional("steps", sa.Integer()),
        ddl.optional("guidance_scale", sa.Double()),
        ddl.required("person_key", ddl.OBJECT_KEY),
        ddl.required("garment_key", ddl.OBJECT_KEY),
        ddl.required("request_id", sa.String(128)),
        ddl.created_at(),
        ddl.required("updated_at", ddl.TIME),
        ddl.optional("started_at", ddl.TIME),
        ddl.optional("finished_at", ddl.TIME),
        ddl.optional("heartbeat_at", ddl.TIME),
        ddl.optional("owner", sa.String(255)),
        ddl.optional("claim_token", ddl.ID),
        ddl.required("attempts", sa.Integer()),
        ddl.optional("result_key", ddl.OBJECT_KEY),
        *ddl.failure(),
        indexes={"ix_vton_jobs_status_created": ["status", "created_at"]},
    )
    ddl.create_table(
        "vton_job_stages",
        ddl.parent("job_id", "vton_jobs"),
        ddl.primary("stage", sa.String(32)),
        ddl.required("position", sa.Integer()),
        ddl.required("status", ddl.STATUS),
        ddl.optional("backend", sa.JSON()),
        ddl.optional("seconds", sa.Double()),
        ddl.optional("error", sa.Text()),
        ddl.optional("people_detected", sa.Integer()),
    )
    ddl.create_table(
        "vton_job_artifacts",
        ddl.parent("job_id", "vton_jobs"),
        ddl.primary("name", sa.String(64)),
        ddl.required("key", ddl.OBJECT_KEY),
        ddl.created_at(),
    )


def downgrade() -> None:
    ddl.drop_table("vton_job_artifacts")
    ddl.drop_table("vton_job_stages")
    ddl.drop_table("vton_jobs", indexes=["ix_vton_jobs_status_created"])
