"""The outbox as the tests inspect it: its rows read back, its retries made due for a CLI
that reads the real clock, and an old database's values as the current schema keeps them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.models import OutboxStatus
from bot.store import Store
from bot.store.times import DUE_AT_ONCE, iso_time


def outbox(database: Path | Store, **where: object) -> list[dict[str, Any]]:
    """The outbox rows of `database` (a file, or a store a test holds open), in id order,
    whose columns equal `where`'s values (`outbox(path, channel="x", status="pending")`);
    a finer choice is the caller's filter."""
    if isinstance(database, Path):
        store = Store.open(database, readonly=True)
        try:
            return outbox(store, **where)
        finally:
            store.close()
    # The column names are keyword names, written by the tests; the values are parameters.
    condition = " and ".join(f"{column} = ?" for column in where) or "1"
    sql = f"select * from outbox where {condition} order by id"
    return list(database.db.query(sql, [*where.values()]))


def make_due(database: Path) -> None:
    """Every pending row due now, for a test that delivers through the CLI: a subprocess
    reads the real clock, which the test cannot move. (In-process, move the `clock=` that
    deliver_pending takes instead: tests/support/clock.py.)"""
    store = Store.open(database)
    try:
        sql = "update outbox set next_attempt_at = ? where status = ?"
        store.db.execute(sql, [DUE_AT_ONCE, OutboxStatus.PENDING])
        store.db.conn.commit()
    finally:
        store.close()


def as_stored_now(table: str, column: str, value: Any) -> Any:
    """An old database's value as the current schema keeps it: the outbox's epoch seconds
    became ISO text (a retry rounded up to its second), every other value stays."""
    if table != "outbox" or value is None:
        return value
    if column == "next_attempt_at":
        return iso_time(value, round_up=True)
    return iso_time(value) if column == "failing_since" else value
