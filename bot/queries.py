"""Read the change log: the one query behind `ringwatch changes` and every report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlite_utils

KINDS = ("added", "removed", "changed", "renamed", "baseline")


@dataclass(frozen=True)
class ChangeFilter:
    since: str | None = None  # YYYY-MM-DD (inclusive)
    until: str | None = None  # YYYY-MM-DD (inclusive)
    kinds: Sequence[str] = ()
    states: Sequence[str] = ()
    by: str = "detected"  # detected | active-date
    limit: int | None = None


def query_changes(db: sqlite_utils.Database, flt: ChangeFilter) -> list[dict[str, Any]]:
    """Change-log rows matching the filter, oldest first.

    With by="active-date" the dates filter the source's own activation date and only
    additions count, where the first poll's baseline rows count as additions too:
    that is how a fresh install answers "how many joined since May 25, 2020?".
    """
    where: list[str] = []
    params: list[Any] = []
    kinds = list(flt.kinds)
    if flt.by == "active-date":
        column = "active_date"
        if not kinds or "added" in kinds:
            kinds = sorted({*kinds, "added", "baseline"} - {"removed", "changed", "renamed"})
        where.append("active_date is not null")
    else:
        column = "detected_at"
        if not kinds:
            kinds = [k for k in KINDS if k != "baseline"]
    where.append(f"kind in ({','.join('?' * len(kinds))})")
    params += kinds
    if flt.since:
        where.append(f"substr({column}, 1, 10) >= ?")
        params.append(flt.since)
    if flt.until:
        where.append(f"substr({column}, 1, 10) <= ?")
        params.append(flt.until)
    if flt.states:
        where.append(f"state in ({','.join('?' * len(flt.states))})")
        params += [s.upper() for s in flt.states]
    order = "active_date, id" if flt.by == "active-date" else "id"
    sql = f"select * from changes where {' and '.join(where)} order by {order}"
    rows = [change_object(row) for row in db.query(sql, params)]
    return rows[-flt.limit :] if flt.limit else rows


def change_object(row: dict[str, Any]) -> dict[str, Any]:
    """A change-log row as the JSON object `ringwatch changes --format json` prints."""
    return {
        "id": row["id"],
        "kind": row["kind"],
        "key": row["key"],
        "name": row["name"],
        "city": row["city"],
        "state": row["state"],
        "detected_at": row["detected_at"],
        "active_date": row["active_date"],
        "fields": json.loads(row["fields"]) if row["fields"] else [],
        "before": json.loads(row["before"]) if row["before"] else None,
        "after": json.loads(row["after"]) if row["after"] else None,
    }


GOOD_OUTCOMES = ("baseline", "ok", "unchanged")


def first_good_poll_time(db: sqlite_utils.Database) -> str | None:
    """When the first poll that was believed finished: when ringwatch began watching."""
    marks = ",".join("?" * len(GOOD_OUTCOMES))
    sql = f"select min(finished_at) from polls where outcome in ({marks})"
    return db.execute(sql, GOOD_OUTCOMES).fetchone()[0]


def last_change_time(db: sqlite_utils.Database) -> str | None:
    """When ringwatch last recorded a change to the list (the baseline counts as one)."""
    return db.execute("select max(detected_at) from changes").fetchone()[0]
