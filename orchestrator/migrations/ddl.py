"""The building blocks the revisions write the schema with (`from orchestrator.migrations import ddl`): a
column by its nullability, the types a kind of value always has, the columns many tables have (the owning tenant,
the parent row, when a row was made, a replica's claim on it, why the work failed) and a table with its indexes.

Frozen: a revision must build the same schema for as long as it exists (a database upgraded long ago and one
upgraded today may not differ), so nothing here may change what it builds once a revision uses it. A later
revision that needs another column or table writes it with these building blocks or adds a helper of its own
here; it never edits one that a revision already calls.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

# The types a kind of value has wherever the schema stores one.
ID = sa.String(32)  # an id or a claim token: 32 hex digits
STATUS = sa.String(16)
OBJECT_KEY = sa.String(512)  # a key or prefix in the bucket
URL = sa.String(2048)
TIME: sa.Double[float] = sa.Double()  # seconds since the epoch


def primary(name: str, type_: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    """A column of the table's primary key (one of several where a table names more)."""
    return sa.Column(name, type_, primary_key=True)


def required(name: str, type_: sa.types.TypeEngine[Any], **kwargs: Any) -> sa.Column[Any]:
    return sa.Column(name, type_, nullable=False, **kwargs)


def optional(name: str, type_: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    return sa.Column(name, type_, nullable=True)


def tenant(*, primary_key: bool = False) -> sa.Column[Any]:
    """`tenant_id`: the tenant the row belongs to (`vton_tenants`)."""
    return sa.Column(
        "tenant_id", sa.String(64), sa.ForeignKey("vton_tenants.id"), primary_key=primary_key, nullable=False
    )


def parent(name: str, table: str) -> sa.Column[Any]:
    """The id of the row of `table` this one belongs to, first in its key: the row goes when its parent does."""
    return sa.Column(name, ID, sa.ForeignKey(f"{table}.id", ondelete="CASCADE"), primary_key=True)


def created_at() -> sa.Column[Any]:
    """When the row was made."""
    return required("created_at", TIME)


def claim() -> list[sa.Column[Any]]:
    """Which replica works on the row (its token), and until when, when it stops renewing the claim."""
    return [optional("claim_token", ID), optional("claimed_until", TIME)]


def failure() -> list[sa.Column[Any]]:
    """Why the work failed: the message, the platform's error code and the stage it failed in."""
    return [
        optional("error", sa.Text()),
        optional("error_code", sa.String(64)),
        optional("error_stage", sa.String(32)),
    ]


def create_table(
    name: str, *columns: sa.Column[Any], indexes: dict[str, list[str]] | None = None
) -> sa.Table:
    """The table, then each of `indexes` (its name: the columns it covers, in order)."""
    table = op.create_table(name, *columns)
    for index, covered in (indexes or {}).items():
        op.create_index(index, name, covered)
    return table


def drop_table(name: str, indexes: list[str] | None = None) -> None:
    """What `create_table` made, undone: the indexes named, then the table."""
    for index in indexes or []:
        op.drop_index(index, table_name=name)
    op.drop_table(name)
