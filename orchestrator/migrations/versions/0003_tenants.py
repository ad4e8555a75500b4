"""Tenants, their hashed API keys, idempotency keys and webhook deliveries; every job belongs to a tenant.

Jobs from before tenants belong to the tenant `default`, which this revision creates.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import secrets
import time

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DEFAULT_TENANT = "default"


def upgrade() -> None:
    tenants = op.create_table(
        "vton_tenants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("webhook_secret", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
    )
    op.bulk_insert(
        tenants,
        [{"id": DEFAULT_TENANT, "webhook_secret": secrets.token_hex(32), "created_at": time.time()}],
    )
    op.create_table(
        "vton_api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("vton_tenants.id"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("rate_per_s", sa.Double(), nullable=True),
        sa.Column("burst", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("last_used_at", sa.Double(), nullable=True),
        sa.Column("revoked_at", sa.Double(), nullable=True),
    )
    op.create_index("ix_vton_api_keys_tenant_id", "vton_api_keys", ["tenant_id"])
    op.create_table(
        "vton_idempotency_keys",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
    )
    op.create_table(
        "vton_webhook_deliveries",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(32), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("claimed_until", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
    )
    op.create_index(
        "ix_vton_webhook_deliveries_due", "vton_webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index("ix_vton_webhook_deliveries_subject", "vton_webhook_deliveries", ["kind", "subject_id"])
    op.create_table(
        "vton_webhook_attempts",
        sa.Column(
            "delivery_id",
            sa.String(32),
            sa.ForeignKey("vton_webhook_deliveries.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("number", sa.Integer(), primary_key=True),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Double(), nullable=False),
    )
    # SQLite adds a column with a foreign key only by copying the table: batch mode does that there.
    with op.batch_alter_table("vton_jobs") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(64), nullable=False, server_default=DEFAULT_TENANT))
        batch.add_column(sa.Column("key_id", sa.String(16), nullable=True))
        batch.add_column(sa.Column("callback_url", sa.String(2048), nullable=True))
        batch.create_foreign_key("fk_vton_jobs_tenant_id", "vton_tenants", ["tenant_id"], ["id"])
        batch.create_index("ix_vton_jobs_tenant_status", ["tenant_id", "status"])
    # The default filled the jobs that were there; a new job always names its tenant.
    with op.batch_alter_table("vton_jobs") as batch:
        batch.alter_column("tenant_id", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("vton_jobs") as batch:
        batch.drop_index("ix_vton_jobs_tenant_status")
        batch.drop_constraint("fk_vton_jobs_tenant_id", type_="foreignkey")
        batch.drop_column("callback_url")
        batch.drop_column("key_id")
        batch.drop_column("tenant_id")
    op.drop_table("vton_webhook_attempts")
    op.drop_index("ix_vton_webhook_deliveries_subject", table_name="vton_webhook_deliveries")
    op.drop_index("ix_vton_webhook_deliveries_due", table_name="vton_webhook_deliveries")
    op.drop_table("vton_webhook_deliveries")
    op.drop_table("vton_idempotency_keys")
    op.drop_index("ix_vton_api_keys_tenant_id", table_name="vton_api_keys")
    op.drop_table("vton_api_keys")
    op.drop_table("vton_tenants")
