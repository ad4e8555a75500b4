"""Catalog batches and their shared items, incoming-garment settings and the seen set; a job's batch, its
inferred category and where a batch job's result goes; a stage reused from the job's batch.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from orchestrator.migrations import ddl

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _create_batches()
    _create_incoming()
    _extend_jobs()


def _create_batches() -> None:
    ddl.create_table(
        "vton_batches",
        ddl.primary("id", ddl.ID),
        ddl.tenant(),
        ddl.optional("key_id", sa.String(16)),
        ddl.required("source", sa.String(16)),
        ddl.required("status", ddl.STATUS),
        ddl.optional("callback_url", ddl.URL),
        ddl.required("manifest_key", ddl.OBJECT_KEY),
        ddl.optional("error", sa.Text()),
        ddl.created_at(),
        ddl.optional("finished_at", ddl.TIME),
        *ddl.claim(),
        indexes={
            "ix_vton_batches_tenant_created": ["tenant_id", "created_at"],
            "ix_vton_batches_status": ["status"],
        },
    )
    ddl.create_table(
        "vton_batch_items",
        ddl.parent("batch_id", "vton_batches"),
        ddl.primary("kind", sa.String(8)),
        ddl.primary("position", sa.Integer()),
        ddl.required("name", sa.String(512)),
        ddl.required("key", ddl.OBJECT_KEY),
        ddl.optional("category", sa.String(32)),
        ddl.required("category_inferred", sa.Boolean()),
        ddl.required("status", ddl.STATUS),
        ddl.optional("owner", sa.String(255)),
        *ddl.claim(),
        ddl.optional("result", sa.JSON()),
        *ddl.failure(),
    )


def _create_incoming() -> None:
    ddl.create_table(
        "vton_incoming",
        ddl.tenant(primary_key=True),
        ddl.required("enabled", sa.Boolean()),
        ddl.required("prefix", ddl.OBJECT_KEY),
        ddl.optional("models_prefix", ddl.OBJECT_KEY),
        ddl.optional("model_keys", sa.JSON()),
        ddl.required("results_prefix", ddl.OBJECT_KEY),
        ddl.optional("callback_url", ddl.URL),
        ddl.required("updated_at", ddl.TIME),
    )
    ddl.create_table(
        "vton_incoming_seen",
        ddl.primary("tenant_id", sa.String(64)),
        ddl.primary("key", ddl.OBJECT_KEY),
        ddl.required("batch_id", ddl.ID),
        ddl.required("seen_at", ddl.TIME),
        indexes={"ix_vton_incoming_seen_recent": ["tenant_id", "seen_at"]},
    )


def _extend_jobs() -> None:
    """A job's batch, its inferred category and where a batch job's result goes; a stage reused from the batch."""
    # SQLite changes a column's nullability and adds a foreign key only by copying the table: batch mode.
    with op.batch_alter_table("vton_jobs") as batch:
        batch.alter_column("category", existing_type=sa.String(32), nullable=True)
        batch.add_column(ddl.required("category_inferred", sa.Boolean(), server_default=sa.false()))
        batch.add_column(ddl.optional("category_confidence", sa.Double()))
        batch.add_column(ddl.optional("category_scores", sa.JSON()))
        batch.add_column(ddl.optional("batch_id", ddl.ID))
        batch.add_column(ddl.optional("batch_person", sa.Integer()))
        batch.add_column(ddl.optional("batch_garment", sa.Integer()))
        batch.add_column(ddl.optional("output_key", ddl.OBJECT_KEY))
        batch.create_foreign_key("fk_vton_jobs_batch_id", "vton_batches", ["batch_id"], ["id"])
        batch.create_index("ix_vton_jobs_batch", ["batch_id", "status"])
    # The default filled the jobs that were there; a new job always says whether its category was inferred.
    with op.batch_alter_table("vton_jobs") as batch:
        batch.alter_column("category_inferred", existing_type=sa.Boolean(), server_default=None)
    op.add_column("vton_job_stages", ddl.optional("reused", sa.Boolean()))


def downgrade() -> None:
    with op.batch_alter_table("vton_job_stages") as batch:
        batch.drop_column("reused")
    with op.batch_alter_table("vton_jobs") as batch:
        batch.drop_index("ix_vton_jobs_batch")
        batch.drop_constraint("fk_vton_jobs_batch_id", type_="foreignkey")
        for column in (
            "output_key",
            "batch_garment",
            "batch_person",
            "batch_id",
            "category_scores",
            "category_confidence",
            "category_inferred",
        ):
            batch.drop_column(column)
        # jobs that inferred no category (they failed before) cannot go back: they get the old default
        batch.alter_column("category", existing_type=sa.String(32), nullable=False)
    ddl.drop_table("vton_incoming_seen", indexes=["ix_vton_incoming_seen_recent"])
    ddl.drop_table("vton_incoming")
    ddl.drop_table("vton_batch_items")
    ddl.drop_table("vton_batches", indexes=["ix_vton_batches_status", "ix_vton_batches_tenant_created"])
