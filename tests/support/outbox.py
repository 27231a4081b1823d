"""The outbox as the tests inspect it: its rows read back from the database file, and an
old database's values as the current schema keeps them."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from bot.store.times import iso_time


def outbox(database: Path, **where: object) -> list[dict[str, Any]]:
    """The outbox rows of `database`, in id order, whose columns equal `where`'s values
    (`outbox(path, channel="x", status="pending")`); a finer choice is the caller's filter."""
    # The column names are keyword names, written by the tests; the values are parameters.
    condition = " and ".join(f"{column} = ?" for column in where) or "1"
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(f"select * from outbox where {condition} order by id", [*where.values()])
        return [dict(row) for row in rows]


def as_stored_now(table: str, column: str, value: Any) -> Any:
    """An old database's value as the current schema keeps it: the outbox's epoch seconds
    became ISO text (a retry rounded up to its second), every other value stays."""
    if table != "outbox" or value is None:
        return value
    if column == "next_attempt_at":
        return iso_time(value, round_up=True)
    return iso_time(value) if column == "failing_since" else value
