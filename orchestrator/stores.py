"""What the SQL stores beside the job store share: short sessions on the job database, and the one way a row
is read back as the frozen dataclass a store hands out (a detached value, safe to keep after the session)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from orchestrator.tables import Base

T = TypeVar("T")
R = TypeVar("R", bound=Base)


def from_row(cls: type[T], row: Base, **differing: Any) -> T:
    """The dataclass `cls` with each field read from the row's column of the same name; `differing` gives
    the fields that are no plain column (relationships, or values the row stores in another form)."""
    copied = {f.name: getattr(row, f.name) for f in fields(cls) if f.name not in differing}
    return cls(**copied, **differing)


class SqlStore:
    """A store in the job database. Thread-safe: each method opens its own short session."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def _read(self, table: type[R], key: Any, convert: Callable[[R], T]) -> T | None:
        """The row of that primary key, converted inside its session (relationships load there), or None."""
        with self._sessions() as session:
            row = session.get(table, key)
            return convert(row) if row is not None else None
