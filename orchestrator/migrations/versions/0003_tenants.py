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

from orchestrator.migrations import ddl

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DEFAULT_TENANT = "default"


def upgrade() -> None:
    tenants = ddl.create_table(
        "vton_tenants",
        ddl.primary("id", sa.String(64)),
        ddl.required("webhook_secret", sa.String(64)),
        ddl.created_at(),
    )
    op.bulk_insert(
        tenants,
        [{"id": DEFAULT_TENANT, "webhook_secret": secrets.token_hex(32), "created_at": time.time()}],
    )
    ddl.create_table(
        "vton_api_keys",
        ddl.primary("id", sa.String(16)),
        ddl.tenant(),
        ddl.required("name", sa.String(128)),
        ddl.required("hash", sa.String(64)),
        ddl.optional("rate_per_s", sa.Double()),
        ddl.optional("burst", sa.Integer()),
        ddl.created_at(),
        ddl.optional("last_used_at", ddl.TIME),
        ddl.optional("revoked_at", ddl.TIME),
        indexes={"ix_vton_api_keys_tenant_id": ["tenant_id"]},
    )
    ddl.create_table(
        "vton_idempotency_keys",
        ddl.primary("tenant_id", sa.String(64)),
        ddl.primary("key", sa.String(255)),
        ddl.required("fingerprint", sa.String(64)),
        ddl.required("resource_id", ddl.ID),
        ddl.created_at(),
    )
    ddl.create_table(
        "vton_webhook_deliveries",
        ddl.primary("id", ddl.ID),
        ddl.required("tenant_id", sa.String(64)),
        ddl.required("kind", sa.String(16)),
        ddl.required("subject_id", ddl.ID),
        ddl.required("url", ddl.URL),
        ddl.required("status", ddl.STATUS),
        ddl.created_at(),
        ddl.required("next_attempt_at", ddl.TIME),
        *ddl.claim(),
        ddl.optional("finished_at", ddl.TIME),
        indexes={
            "ix_vton_webhook_deliveries_due": ["status", "next_attempt_at"],
            "ix_vton_webhook_deliveries_subject": ["kind", "subject_id"],
        },
    )
    ddl.create_table(
        "vton_webhook_attempts",
        ddl.parent("delivery_id", "vton_webhook_deliveries"),
        ddl.primary("number", sa.Integer()),
        ddl.required("at", ddl.TIME),
        ddl.optional("status_code", sa.Integer()),
        ddl.optional("error", sa.Text()),
        ddl.required("seconds", sa.Double()),
    )
    # SQLite adds a column with a foreign key only by copying the table: batch mode does that there.
    with op.batch_alter_table("vton_jobs") as batch:
        batch.add_column(ddl.required("tenant_id", sa.String(64), server_default=DEFAULT_TENANT))
        batch.add_column(ddl.optional("key_id", sa.String(16)))
        batch.add_column(ddl.optional("callback_url", ddl.URL))
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
    ddl.drop_table("vton_webhook_attempts")
    ddl.drop_table(
        "vton_webhook_deliveries",
        indexes=["ix_vton_webhook_deliveries_subject", "ix_vton_webhook_deliveries_due"],
    )
    ddl.drop_table("vton_idempotency_keys")
    ddl.drop_table("vton_api_keys", indexes=["ix_vton_api_keys_tenant_id"])
    ddl.drop_table("vton_tenants")
