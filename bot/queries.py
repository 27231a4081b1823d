"""The read models: the change log (the one query behind `ringwatch changes` and every
report), what is listed now, the polls' timeline, and the status of the whole bot.

Reports, charts, exports, the feed and the site read the database only through these."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.areas import Filter, Place, Spot, admits, miles_between
from bot.models import ChangeKind
from bot.normalise import city_key
from bot.store import Store
from bot.store.changelog import ChangeLog
from bot.store.outbox import FailedMessage
from bot.store.sql import GOOD_SQL, UNSENT_SQL, sql_list
from bot.store.times import iso_time

if TYPE_CHECKING:
    import sqlite_utils


@dataclass(frozen=True)
class ChangeFilter:
    since: str | None = None  # YYYY-MM-DD (inclusive)
    until: str | None = None  # YYYY-MM-DD (inclusive)
    kinds: Sequence[ChangeKind] = ()
    states: Sequence[str] = ()
    by: str = "detected"  # detected | active-date
    limit: int | None = None
    # Also field changes that do not alert (stored compactly in `churn`), one object per
    # agency, with its own id: for readers of the whole log (`changes`, exports, reports), not
    # for news (feed, site, bot commands).
    churn: bool = False
    # Only changes of agencies the filter matches, where they are or were (bot.places).
    area: Filter = field(default_factory=Filter)


def _register_distance(db: sqlite_utils.Database) -> None:
    """miles_between(lat, lon, lat, lon) in SQL: the filter's great-circle distance."""
    db.conn.create_function("miles_between", 4, _miles_or_null, deterministic=True)


def _miles_or_null(lat1: Any, lon1: Any, lat2: float, lon2: float) -> float | None:
    return None if lat1 is None or lon1 is None else miles_between(lat1, lon1, lat2, lon2)


def filter_sql(db: sqlite_utils.Database, flt: Filter, table: str) -> tuple[str, list[Any]]:
    """The filter as a condition on rows of `table` with state, county, lat and lon columns
    (what bot.places.admits says of one place): "(… or …)" and its parameters."""
    _register_distance(db)
    parts, params = [], []
    if flt.states:
        parts.append(f"{table}.state in ({','.join('?' * len(flt.states))})")
        params += sorted(flt.states)
    for county in sorted(flt.counties):
        parts.append(f"({table}.state = ? and {table}.county = ?)")
        params += [county.state, county.name]
    for place in flt.places:
        parts.append(f"miles_between({table}.lat, {table}.lon, ?, ?) <= ?")
        params += [place.lat, place.lon, place.radius_miles]
    return f"({' or '.join(parts) or '1'})", params


def _area_sql(db: sqlite_utils.Database, flt: Filter) -> tuple[str, list[Any]]:
    """Changes of agencies the filter matches: where the agency is, or where the agency it
    was renamed from was (bot.places.matches: before or after)."""
    where, params = filter_sql(db, flt, "a")
    sql = (
        f"(key in (select a.key from agencies a where {where}) or key in (select a.renamed_to"
        f" from agencies a where a.renamed_to is not null and {where}))"
    )
    return sql, params * 2


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
    if flt.area:
        area, area_params = _area_sql(db, flt.area)
        where.append(area)
        params += area_params
    order = "active_date, id" if flt.by == "active-date" else "id"
    sql = f"select * from changes where {' and '.join(where)} order by {order}"
    logged = db.query(sql, params)
    if flt.churn and flt.by == "detected" and ChangeKind.CHANGED in kinds:
        rows = _with_churn(list(logged), db, flt)
    else:
        rows = [change_object(row) for row in logged]
    return rows[-flt.limit :] if flt.limit else rows


def changes_by_id(db: sqlite_utils.Database, ids: Sequence[int]) -> list[dict[str, Any]]:
    """The change-log objects with these ids, in id order (ids not logged are left out)."""
    sql = f"select * from changes where id in ({','.join('?' * len(ids))}) order by id"
    return [change_object(row) for row in db.query(sql, list(ids))]


def _with_churn(
    logged: list[dict[str, Any]], db: sqlite_utils.Database, flt: ChangeFilter
) -> list[dict[str, Any]]:
    """Change objects for the `logged` rows and for the churn of the same window, each
    poll's churn after its logged rows.

    A churn object's id and uuid are its entry's (ChangeLog.churn_rows); name, city and
    state are the agency's as stored now.
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
    # Where each agency is now, for a place filter (churn rows carry state and county).
    sql = "select key, lat, lon from agencies"
    located = {row["key"]: row for row in db.query(sql)} if flt.area else {}
    states = {s.upper() for s in flt.states}

    def outside(row: dict[str, Any]) -> bool:
        where = located.get(row["key"], {})
        spot = Spot(row["state"] or "", row["county"], where.get("lat"), where.get("lon"))
        return bool(states and row["state"] not in states) or bool(
            flt.area and not admits(flt.area, spot)
        )

    merged = [(row["poll_id"] or 0, 0, change_object(row)) for row in logged]
    merged += [
        (row["poll_id"], 1, change_object(row))
        for row in ChangeLog(db).churn_rows(churn)
        if not outside(row)
    ]
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
        "county": row["county"],
        "fields": json.loads(row["fields"]) if row["fields"] else [],
        "before": json.loads(row["before"]) if row["before"] else None,
        "after": json.loads(row["after"]) if row["after"] else None,
    }


def last_good_poll_time(db: sqlite_utils.Database) -> str | None:
    """When the last poll that was believed finished: how fresh the data is."""
    sql = f"select max(finished_at) from polls where outcome in {GOOD_SQL}"
    return db.execute(sql).fetchone()[0]


def daily_records(db: sqlite_utils.Database) -> list[tuple[str, int]]:
    """(YYYY-MM-DD, records listed) by the last good poll of each day that counted them,
    oldest first: the size of the map as observed."""
    sql = f"""select substr(finished_at, 1, 10), records from polls
        where id in (select max(id) from polls
                     where outcome in {GOOD_SQL} and records is not null
                     group by substr(finished_at, 1, 10))
        order by id"""
    return db.execute(sql).fetchall()


@dataclass(frozen=True)
class Listed:
    """How many agencies are listed now, in how many states."""

    agencies: int
    states: int


def listed_now(
    db: sqlite_utils.Database, states: Sequence[str] = (), area: Filter | None = None
) -> Listed:
    """Agencies listed now (of `states`, USPS codes in upper case, if any; that `area`
    matches, if any)."""
    where, params = "active = 1", list(states)
    if states:
        where += f" and state in ({','.join('?' * len(states))})"
    if area:
        condition, area_params = filter_sql(db, area, "agencies")
        where += f" and {condition}"
        params += area_params
    sql = f"select count(*), count(distinct state) from agencies where {where}"
    return Listed(*db.execute(sql, params).fetchone())


def agencies_by_state(db: sqlite_utils.Database) -> list[tuple[str, int]]:
    """(state, agencies listed now) for every state, most first, then by code; `??` for
    agencies without a state."""
    sql = """select coalesce(state, '??'), count(*) as n from agencies where active = 1
        group by 1 order by n desc, 1"""
    return db.execute(sql).fetchall()


def listed_agencies(
    db: sqlite_utils.Database,
    columns: Sequence[str],
    states: Sequence[str] = (),
    since: str | None = None,
) -> list[dict[str, Any]]:
    """`columns` of the agencies listed now (of `states`, USPS codes in upper case; first
    seen by ringwatch on or after `since`, YYYY-MM-DD), by state and name."""
    where, params = ["active = 1"], list(states)
    if states:
        where.append(f"state in ({','.join('?' * len(states))})")
    if since:
        where.append("substr(first_seen, 1, 10) >= ?")
        params.append(since)
    names = ", ".join(f"[{column}]" for column in columns)
    sql = f"select {names} from agencies where {' and '.join(where)} order by state, name"
    return list(db.query(sql, params))


def agency_locations(db: sqlite_utils.Database, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """key → {"lat", "lon"} of the agencies with these keys, listed now or not."""
    places: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        sql = f"select key, lat, lon from agencies where key in ({','.join('?' * len(chunk))})"
        places |= {
            row["key"]: {"lat": row["lat"], "lon": row["lon"]} for row in db.query(sql, chunk)
        }
    return places


def agencies_near(
    db: sqlite_utils.Database, place: Place, limit: int | None = None
) -> list[dict[str, Any]]:
    """The agencies listed now within the place's radius, nearest first, each with `miles`."""
    _register_distance(db)
    sql = """select key, name, city, state, county, active_date, lat, lon, approximate,
        miles_between(lat, lon, ?, ?) as miles from agencies
        where active = 1 and lat is not null and miles <= ? order by miles, name"""
    params: list[Any] = [place.lat, place.lon, place.radius_miles]
    if limit:
        sql += " limit ?"
        params.append(limit)
    return list(db.query(sql, params))


def agencies_in_town(db: sqlite_utils.Database, city: str, state: str) -> list[dict[str, Any]]:
    """The agencies listed now in a town (its name compared as normalise.city_key does)."""
    wanted = city_key(city)
    sql = "select * from agencies where active = 1 and state = ? order by name"
    return [row for row in db.query(sql, [state]) if city_key(row["city"] or "") == wanted]


def first_good_poll_time(db: sqlite_utils.Database) -> str | None:
    """When the first poll that was believed finished: when ringwatch began watching."""
    sql = f"select min(finished_at) from polls where outcome in {GOOD_SQL}"
    return db.execute(sql).fetchone()[0]


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
    failures: tuple[FailedMessage, ...]  # the newest failed rows, newest first


def read_status(store: Store, *, polls: int, failures: int = 3) -> StatusReport:
    return StatusReport(
        agencies=store.agencies.active_count(),
        bad_streak=store.polls.bad_streak(),
        polls=tuple(store.polls.recent(polls)),
        deliveries=store.outbox.counts(),
        oldest_waiting=store.outbox.oldest_waiting(),
        failures=tuple(store.outbox.last_failures(failures)),
    )


@dataclass(frozen=True)
class Waiting:
    """A channel's messages that should have gone out and were queued before a time."""

    channel: str
    messages: int
    oldest: str  # created_at of the oldest


def messages_waiting(db: sqlite_utils.Database, queued_before: str, now: str) -> list[Waiting]:
    """Per channel, the unsent messages queued before `queued_before` that are due by `now`
    or being retried after failures; those held back on purpose (a flood wait, a spent
    budget: not due, no failure) do not count."""
    sql = f"""select channel, count(*), min(created_at) from outbox
        where status in {UNSENT_SQL} and created_at < ?
        and (next_attempt_at <= ? or failing_since is not null)
        group by channel order by channel"""
    return [Waiting(*row) for row in db.execute(sql, [queued_before, now])]


@dataclass(frozen=True)
class HealthFacts:
    """What `ringwatch health` judges (bot/health.py), read at one moment."""

    last_good_poll: str | None  # finished_at of the last good poll; None: none yet
    waiting: tuple[Waiting, ...]  # messages waiting longer than health.max_backlog_age


def read_health_facts(db: sqlite_utils.Database, now: float, max_backlog_age: float) -> HealthFacts:
    waiting = messages_waiting(db, iso_time(now - max_backlog_age), iso_time(now))
    return HealthFacts(last_good_poll_time(db), tuple(waiting))


def snapshots_stored_bytes(db: sqlite_utils.Database) -> int:
    """The compressed size of every snapshot kept: what the evidence takes on disk."""
    if "snapshots" not in db.table_names():  # a read-only look at an old database
        return 0
    return db.execute("select coalesce(sum(compressed_bytes), 0) from snapshots").fetchone()[0]


# --- canned queries for Datasette (`ringwatch datasette`) ---------------------------------
# Arbitrary SQL is off there (the metadata's allow_sql), so these are what a reader can ask
# beyond browsing the public tables. Their vocabulary comes from the enums, like every
# query here; bot/datasette.py puts them into the metadata Datasette is started with.

CANNED_QUERIES: dict[str, dict[str, Any]] = {
    "added_since": {
        "title": "Partnerships begun since a date",
        "description": "Agencies whose Active Date is on or after :since (YYYY-MM-DD), "
        "including those listed at the first poll; the same list as "
        "`ringwatch changes --kind added --since DATE --by active-date`.",
        "sql": "select active_date, name, city, state, detected_at, kind from changes "
        f"where kind in {sql_list((ChangeKind.ADDED, ChangeKind.BASELINE))} "
        "and active_date is not null and substr(active_date, 1, 10) >= :since "
        "order by active_date, id",
    },
    "ended_partnerships": {
        "title": "Ended partnerships",
        "description": "Agencies that left the map, newest first (after "
        "guard.removal_confirmations polls missing).",
        "sql": "select detected_at as ended_at, name, city, state, active_date as "
        f"partner_since from changes where kind = '{ChangeKind.REMOVED}' order by id desc",
    },
    "by_state": {
        "title": "Partnerships by state",
        "description": "Agencies listed now, per state, with the first and latest Active Date.",
        "sql": "select state, count(*) as partnerships, min(active_date) as first_active, "
        "max(active_date) as latest_active from agencies where active = 1 group by state "
        "order by partnerships desc, state",
    },
    "agency_history": {
        "title": "History of one agency",
        "description": "Every change of an agency across its renames, by its key (e.g. "
        "az/mesa-police-department) or a part of its current or former name. Required: an "
        "empty agency lists nothing.",
        "params": ["agency"],
        # Start from the changes that name the agency, then follow `renamed_to` both ways.
        "sql": "with recursive keys(key) as (select key from changes where :agency != '' and "
        "(key = :agency or name like '%' || :agency || '%' or json_extract(before, '$.name') "
        "like '%' || :agency || '%') union select case when agencies.key = keys.key then "
        "agencies.renamed_to else agencies.key end from agencies join keys on "
        "(agencies.key = keys.key and agencies.renamed_to is not null) or "
        "agencies.renamed_to = keys.key) select id, detected_at, kind, name, city, state, "
        "active_date, fields, before, after from changes where key in (select key from keys) "
        "order by id",
    },
}
