"""Catalog batches and their shared items, incoming-garment settings and the seen set; a job's batch, its
inferred category and where a batch job's result goes; a stage reused from the job's batch.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vton_batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("vton_tenants.id"), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("callback_url", sa.String(2048), nullable=True),
        sa.Column("manifest_key", sa.String(512), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("claimed_until", sa.Double(), nullable=True),
    )
    op.create_index("ix_vton_batches_tenant_created", "vton_batches", ["tenant_id", "created_at"])
    op.create_index("ix_vton_batches_status", "vton_batches", ["status"])
    op.create_table(
        "vton_batch_items",
        sa.Column(
            "batch_id",
            sa.String(32),
            sa.ForeignKey("vton_batches.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("category_inferred", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("claimed_until", sa.Double(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_stage", sa.String(32), nullable=True),
    )
    op.create_table(
        "vton_incoming",
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("vton_tenants.id"), primary_key=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("prefix", sa.String(512), nullable=False),
        sa.Column("models_prefix", sa.String(512), nullable=True),
        sa.Column("model_keys", sa.JSON(), nullable=True),
        sa.Column("results_prefix", sa.String(512), nullable=False),
        sa.Column("callback_url", sa.String(2048), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
    )
    op.create_table(
        "vton_incoming_seen",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("seen_at", sa.Double(), nullable=False),
    )
    op.create_index("ix_vton_incoming_seen_recent", "vton_incoming_seen", ["tenant_id", "seen_at"])
    # SQLite changes a column's nullability and adds a foreign key only by copying the table: batch mode.
    with op.batch_alter_table("vton_jobs") as batch:
        batch.alter_column("category", existing_type=sa.String(32), nullable=True)
        batch.add_column(
            sa.Column("category_inferred", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("category_confidence", sa.Double(), nullable=True))
        batch.add_column(sa.Column("category_scores", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("batch_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("batch_person", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("batch_garment", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("output_key", sa.String(512), nullable=True))
        batch.create_foreign_key("fk_vton_jobs_batch_id", "vton_batches", ["batch_id"], ["id"])
        batch.create_index("ix_vton_jobs_batch", ["batch_id", "status"])
    # The default filled the jobs that were there; a new job always says whether its category was inferred.
    with op.batch_alter_table("vton_jobs") as batch:
        batch.alter_column("category_inferred", existing_type=sa.Boolean(), server_default=None)
    op.add_column("vton_job_stages", sa.Column("reused", sa.Boolean(), nullable=True))


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
    op.drop_index("ix_vton_incoming_seen_recent", table_name="vton_incoming_seen")
    op.drop_table("vton_incoming_seen")
    op.drop_table("vton_incoming")
    op.drop_table("vton_batch_items")
    op.drop_index("ix_vton_batches_status", table_name="vton_batches")
    op.drop_index("ix_vton_batches_tenant_created", table_name="vton_batches")
    op.drop_table("vton_batches")
