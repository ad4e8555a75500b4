"""A job's denoising scheduler (ddim, dpm-solver++); null: the backend's default.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from orchestrator.migrations import ddl

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("vton_jobs", ddl.optional("scheduler", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("vton_jobs") as batch:
        batch.drop_column("scheduler")
