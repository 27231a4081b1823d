"""Read the change log: the one query behind `ringwatch changes` and every report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from bot.models import GOOD_OUTCOMES, ChangeKind
from bot.store import Store, unpack_churn


@dataclass(frozen=True)
class ChangeFilter:
    since: str | None = None  # YYYY-MM-DD (inclusive)
    until: str | None = None  # YYYY-MM-DD (inclusive)
    kinds: Sequence[ChangeKind] = ()
    states: Sequence[str] = ()
    by: str = "detected"  # detected | active-date
    limit: int | None = None
    # Also field changes that do not alert (stored compactly in `churn`), one object per
    # agency, without an id: for readers of the whole log (`changes`, exports, reports), not
    # for news (feed, site, bot commands).
    churn: bool = False


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
        if not kinds or ChangeKind.ADDED in kinds:  # the baseline's rows are additions too
            kinds = [ChangeKind.ADDED, ChangeKind.BASELINE]
        where.append("active_date is not null")
    else:
        column = "detected_at"
        if not kinds:
            kinds = [k for k in ChangeKind if k != ChangeKind.BASELINE]
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
    logged = db.query(sql, params)
    if flt.churn and flt.by == "detected" and "changed" in kinds:
        rows = _with_churn(list(logged), db, flt)
    else:
        rows = [change_object(row) for row in logged]
    return rows[-flt.limit :] if flt.limit else rows


def _with_churn(
    logged: list[dict[str, Any]], db: sqlite_utils.Database, flt: ChangeFilter
) -> list[dict[str, Any]]:
    """Change objects for the `logged` rows and for the churn of the same window, each
    poll's churn after its logged rows.

    A churn object has no id (it is not a `changes` row); name, city and state are the
    agency's as stored now.
    """
    where, params = ["1"], []
    if flt.since:
        where.append("substr(detected_at, 1, 10) >= ?")
        params.append(flt.since)
    if flt.until:
        where.append("substr(detected_at, 1, 10) <= ?")
        params.append(flt.until)
    sql = f"select * from churn where {' and '.join(where)} order by id"
    churn = list(db.query(sql, params))
    if not churn:
        return [change_object(row) for row in logged]
    sql = "select key, name, city, state, active_date from agencies"
    agencies = {row["key"]: row for row in db.query(sql)}
    states = {s.upper() for s in flt.states}
    merged = [(row["poll_id"] or 0, 0, change_object(row)) for row in logged]
    for entry in churn:
        field = entry["field"]
        for key, (before, after) in sorted(unpack_churn(entry["data"]).items()):
            agency = agencies.get(key, {})
            if states and agency.get("state") not in states:
                continue
            merged.append((entry["poll_id"], 1, {
                "id": None, "uuid": None, "kind": "changed", "key": key, "name": agency.get("name"),
                "city": agency.get("city"), "state": agency.get("state"),
                "detected_at": entry["detected_at"], "active_date": agency.get("active_date"),
                "fields": [field], "before": {field: before}, "after": {field: after},
            }))  # fmt: skip
    merged.sort(key=lambda item: item[:2])  # stable: each side keeps its own order
    return [row for *_, row in merged]


def change_object(row: dict[str, Any]) -> dict[str, Any]:
    """A change-log row as the JSON object `ringwatch changes --format json` prints."""
    return {
        "id": row["id"],
        "uuid": row["uuid"],
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


def first_good_poll_time(db: sqlite_utils.Database) -> str | None:
    """When the first poll that was believed finished: when ringwatch began watching."""
    marks = ",".join("?" * len(GOOD_OUTCOMES))
    sql = f"select min(finished_at) from polls where outcome in ({marks})"
    return db.execute(sql, GOOD_OUTCOMES).fetchone()[0]


def last_change_time(db: sqlite_utils.Database) -> str | None:
    """When ringwatch last recorded a change to the list (the baseline counts as one)."""
    return db.execute("select max(detected_at) from changes").fetchone()[0]


def install_id(db: sqlite_utils.Database) -> str:
    """The id created once for this database (migration 6): the feed's ids start with it."""
    return db.execute("select value from meta where key = 'install_id'").fetchone()[0]


@dataclass(frozen=True)
class StatusReport:
    """What `ringwatch status` and the bot's /status tell a maintainer: one read of the
    database, shown two ways."""

    agencies: int  # tracked now
    bad_streak: int  # failed or suspect polls since the last good one
    polls: tuple[dict[str, Any], ...]  # the most recent, newest first
    deliveries: dict[str, dict[str, int]]  # channel → outbox status → rows
    oldest_waiting: dict[str, str]  # channel → created_at of its oldest unsent row
    failures: tuple[dict[str, Any], ...]  # the newest failed rows, newest first


def read_status(store: Store, *, polls: int, failures: int = 3) -> StatusReport:
    return StatusReport(
        agencies=store.active_count(),
        bad_streak=store.bad_streak(),
        polls=tuple(store.recent_polls(polls)),
        deliveries=store.outbox.counts(),
        oldest_waiting=store.outbox.oldest_waiting(),
        failures=tuple(store.outbox.last_failures(failures)),
    )
