"""SQLite state through sqlite-utils: agencies, polls, the change log, the outbox.

One poll's agencies, change-log rows and outbox rows are written in one transaction
(commit_poll), so a crash leaves either all of them or none. The outbox is drained
by deliver.py through the Outbox class below.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from bot.diff import Diff
from bot.logs import redact
from bot.models import (
    BAD_OUTCOMES,
    GOOD_OUTCOMES,
    UNSENT_STATUSES,
    Agency,
    Change,
    ChangeKind,
    MessageKind,
    OutboxMessage,
    OutboxStatus,
    PollOutcome,
)
from bot.normalise import city_key
from bot.snapshots import SnapshotFile


def sql_list(values: Iterable[StrEnum]) -> str:
    """An SQL list of vocabulary values. They are constants of the code, never data, so
    they may be written into the SQL (where a query needs them in a subquery or a view)."""
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


GOOD_SQL, BAD_SQL, UNSENT_SQL = (
    sql_list(GOOD_OUTCOMES),
    sql_list(BAD_OUTCOMES),
    sql_list(UNSENT_STATUSES),
)
PENDING, SENDING, SENT, FAILED = (
    OutboxStatus.PENDING,
    OutboxStatus.SENDING,
    OutboxStatus.SENT,
    OutboxStatus.FAILED,
)


@dataclass(frozen=True)
class DatabaseProblem:
    """The database cannot be used now, said for a person: the file, what is wrong, what to do.

    `transient` problems (locked by another process, disk full) may pass on their own: try
    again later. The others (corrupt, read-only, cannot be opened) need a person.
    """

    path: Path
    what: str
    todo: str
    transient: bool

    def __str__(self) -> str:
        return f"database {self.path} {self.what}: {self.todo}"


_RESTORE = "restore it from a backup, or move it aside to record a new baseline on the next poll"
_PERMISSIONS = "make the file, its directory and its -wal and -shm files writable by this user"
# SQLite primary result code → (what is wrong, what to do, transient). Extended codes
# (SQLITE_IOERR_WRITE, SQLITE_READONLY_DBMOVED, SQLITE_BUSY_SNAPSHOT) share the low byte.
_PROBLEMS: dict[int, tuple[str, str, bool]] = {
    sqlite3.SQLITE_CORRUPT: ("is corrupt", _RESTORE, False),
    sqlite3.SQLITE_NOTADB: ("is not a SQLite database (corrupt or overwritten)", _RESTORE, False),
    sqlite3.SQLITE_READONLY: ("is read-only", _PERMISSIONS, False),
    sqlite3.SQLITE_CANTOPEN: ("cannot be opened", f"check it exists, and {_PERMISSIONS}", False),
    sqlite3.SQLITE_PERM: ("may not be written", _PERMISSIONS, False),
    sqlite3.SQLITE_BUSY: (
        "stayed locked by another process for longer than bot.busy_timeout",
        "nothing was written; try again later, and look for a process holding a write "
        "transaction (a sqlite3 shell, a backup script)",
        True,
    ),
    sqlite3.SQLITE_LOCKED: ("is locked", "nothing was written; try again later", True),
    sqlite3.SQLITE_FULL: (
        "cannot grow: its disk is full",
        "nothing was written; free some space on it, then try again",
        True,
    ),
    sqlite3.SQLITE_IOERR: (
        "could not be read or written (disk I/O error)",
        "nothing was written; check the disk (full? removed?), then try again",
        True,
    ),
}


class NewerSchema(sqlite3.DatabaseError):
    """The database has schema steps this ringwatch does not know: a newer one wrote it."""

    def __init__(self, steps: str) -> None:
        super().__init__(f"schema steps newer than this ringwatch ({steps})")
        self.steps = steps


def database_problem(path: Path, error: sqlite3.Error) -> DatabaseProblem | None:
    """What a SQLite error means for the person running ringwatch; None for errors that
    are bugs, not a state of the database or its disk (let those raise)."""
    if isinstance(error, NewerSchema):
        what = f"was written by a newer ringwatch (schema steps {error.steps})"
        return DatabaseProblem(path, what, "upgrade ringwatch (nothing was written)", False)
    code = getattr(error, "sqlite_errorcode", None)
    known = _PROBLEMS.get(code & 0xFF) if code is not None else None
    if known is None:
        return None
    what, todo, transient = known
    return DatabaseProblem(path, f"{what} ({error})", todo, transient)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def prune_before(retention: float) -> str:
    """The ISO time before which rows are pruned, keeping `retention` seconds."""
    cutoff = datetime.now(UTC) - timedelta(seconds=retention)
    return cutoff.isoformat(timespec="seconds").replace("+00:00", "Z")


def create_agencies_polls_changes_outbox(db: sqlite_utils.Database) -> None:
    db["agencies"].create(
        {
            "key": str,
            "name": str,
            "city": str,
            "state": str,
            "active_date": str,
            "video_requests": int,
            "profile_url": str,
            "lat": float,
            "lon": float,
            "extra": str,
            "raw_hash": str,
            "active": int,
            "missing_polls": int,
            "first_seen": str,
            "updated_at": str,
            "ended_at": str,
            "renamed_to": str,
        },
        pk="key",
        not_null={"name", "active", "missing_polls"},
        defaults={"active": 1, "missing_polls": 0},
    )
    db["agencies"].create_index(["raw_hash"])
    db["agencies"].create_index(["state"])
    db["polls"].create(
        {
            "id": int,
            "started_at": str,
            "finished_at": str,
            "outcome": str,
            "url": str,
            "http_status": int,
            "bytes": int,
            "content_hash": str,
            "etag": str,
            "last_modified": str,
            "records": int,
            "added": int,
            "removed": int,
            "renamed": int,
            "changed": int,
            "duration_ms": int,
            "error": str,
        },
        pk="id",
    )
    db["changes"].create(
        {
            "id": int,
            "poll_id": int,
            "detected_at": str,
            "kind": str,
            "key": str,
            "name": str,
            "city": str,
            "state": str,
            "active_date": str,
            "fields": str,
            "before": str,
            "after": str,
            "alert": int,
        },
        pk="id",
        foreign_keys=[("poll_id", "polls", "id")],
    )
    for columns in (["kind", "detected_at"], ["key"], ["state"], ["active_date"]):
        db["changes"].create_index(columns)
    db["outbox"].create(
        {
            "id": int,
            "created_at": str,
            "poll_id": int,
            "channel": str,
            "recipient": str,
            "kind": str,
            "group_key": str,
            "part": int,
            "dedupe_key": str,
            "change_ids": str,
            "text": str,
            "attachment": str,
            "meta": str,
            "status": str,
            "attempts": int,
            "next_attempt_at": float,
            "sent_at": str,
            "external_id": str,
            "last_error": str,
        },
        pk="id",
        not_null={"status", "attempts"},
        defaults={"status": OutboxStatus.PENDING, "attempts": 0, "next_attempt_at": 0.0},
    )
    db["outbox"].create_index(["dedupe_key"], unique=True)
    db["outbox"].create_index(["status", "channel", "next_attempt_at"])
    db["outbox"].create_index(["channel", "recipient", "group_key", "part"])


def add_subscribers_and_recent_changes_view(db: sqlite_utils.Database) -> None:
    db["subscribers"].create(
        {
            "channel": str,
            "chat_id": str,
            "chat_type": str,
            "title": str,
            "states": str,  # JSON list of USPS codes, NULL = every state
            "active": int,
            "subscribed_at": str,
            "updated_at": str,
            "reason": str,
        },
        pk=("channel", "chat_id"),
        defaults={"active": 1},
    )
    db.create_view(
        "recent_changes",
        """select detected_at, kind, name, city, state, active_date, fields, before, after
        from changes where kind != 'baseline' order by id desc""",
        replace=True,
    )


def add_snapshots_and_poll_origin(db: sqlite_utils.Database) -> None:
    """Snapshots: every distinct document fetched, referenced by the polls and changes it
    produced; `origin` says whether a row was polled live or imported (file, git, wayback)."""
    db["snapshots"].create(
        {
            "sha256": str,
            "first_seen": str,
            "last_seen": str,
            "bytes": int,
            "compressed_bytes": int,
            "polls": int,
        },
        pk="sha256",
    )
    db["polls"].add_column("snapshot", str)
    db["polls"].add_column("origin", str, not_null_default="live")
    db["polls"].add_column("forced", int)  # --force: verify replays it as forced
    db["polls"].create_index(["snapshot"])
    db["changes"].add_column("snapshot", str)
    db["changes"].add_column("before_snapshot", str)
    db["changes"].add_column("origin", str, not_null_default="live")


def add_outbox_failing_since(db: sqlite_utils.Database) -> None:
    # When the current streak of transient failures began (epoch seconds, NULL while a
    # message has not failed): alerts.give_up_after counts from there.
    db["outbox"].add_column("failing_since", float)


def add_poll_warning_missing_and_churn(db: sqlite_utils.Database) -> None:
    # A note for the maintainers about a poll that was believed (records listed twice).
    db["polls"].add_column("warning", str)
    # Agencies missing but not yet confirmed as ended after a good poll: a poll that
    # counted a confirmation is history that `prune` keeps (verify replays it).
    db["polls"].add_column("missing", int)
    # Field changes that do not alert (Ring updating every agency's video-request count),
    # one row per poll per field instead of one `changes` row per agency (_append_changes).
    db["churn"].create(
        {
            "id": int,
            "poll_id": int,
            "detected_at": str,
            "field": str,
            "agencies": int,
            "data": bytes,  # zlib-compressed JSON {agency key: [before, after]}
        },
        pk="id",
        foreign_keys=[("poll_id", "polls", "id")],
    )
    db["churn"].create_index(["detected_at"])


def add_change_uuids_and_install_id(db: sqlite_utils.Database) -> None:
    """Ids for the Atom feed that no other database reuses: an install id for this
    database and a UUID per change (row ids start again at 1 in every new database)."""
    db["changes"].add_column("uuid", str)
    ids = [row_id for (row_id,) in db.execute("select id from changes")]
    db.conn.executemany(
        "update changes set uuid = ? where id = ?", [(str(uuid.uuid4()), i) for i in ids]
    )
    db["changes"].create_index(["uuid"], unique=True)
    db["meta"].upsert({"key": "install_id", "value": str(uuid.uuid4())}, pk="key")


# The schema, step by step, in the order they run. Append-only: a step never changes once
# released (databases in the field have run it); a schema change is a new step at the end.
SCHEMA_STEPS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    create_agencies_polls_changes_outbox,
    add_subscribers_and_recent_changes_view,
    add_snapshots_and_poll_origin,
    add_outbox_failing_since,
    add_poll_warning_missing_and_churn,
    add_change_uuids_and_install_id,
)
SCHEMA_VERSION = len(SCHEMA_STEPS)
# sqlite-utils records each applied step by name in _sqlite_migrations.
MIGRATIONS = Migrations("ringwatch")
for _step in SCHEMA_STEPS:
    MIGRATIONS(name=_step.__name__)(_step)


def already_there(steps: Iterable[Callable[[sqlite_utils.Database], None]]) -> Migrations:
    """The same migration set with `steps` doing nothing: applying it records them as
    applied without running them (for a database that has them from before the record)."""
    recorded = Migrations(MIGRATIONS.name)
    for step in steps:
        recorded(name=step.__name__)(lambda db: None)
    return recorded


def churn_by_field(changes: Iterable[Change]) -> dict[str, dict[str, list[Any]]]:
    """field → agency key → [before, after], for field changes that do not alert."""
    by_field: dict[str, dict[str, list[Any]]] = {}
    for change in changes:
        for name in change.fields:
            values = [(change.before or {}).get(name), (change.after or {}).get(name)]
            by_field.setdefault(name, {})[change.key] = values
    return by_field


def pack_churn(values: dict[str, list[Any]]) -> bytes:
    # Sorted keys share long prefixes ("mn/", "-police-department") that zlib folds away:
    # 2,000 video counts take about 15 KB instead of 640 KB of change rows.
    text = json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return zlib.compress(text.encode("utf-8"), 9)


def unpack_churn(data: bytes) -> dict[str, list[Any]]:
    return json.loads(zlib.decompress(data))


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _insert_rows(db: sqlite_utils.Database, table: str, rows: Iterable[dict[str, Any]]) -> None:
    """Plain INSERTs of rows that all have the same keys, holding only SQLite types.

    Much faster than sqlite-utils' insert_all for the 100,000 rows of a large baseline.
    """
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return
    columns = list(first)
    db.conn.executemany(
        f"insert into [{table}] ({', '.join(f'[{c}]' for c in columns)}) "
        f"values ({', '.join('?' * len(columns))})",
        (tuple(row[c] for c in columns) for row in itertools.chain([first], rows)),
    )


@dataclass(frozen=True)
class Pruned:
    """What a prune removed, and the database's size before and after (bytes)."""

    messages: int
    polls: int
    size_before: int
    size_after: int


# PRAGMA auto_vacuum mode: freed pages are kept until `pragma incremental_vacuum`.
INCREMENTAL = 2


class Store:
    """The ringwatch database. One instance per thread (sqlite3 connections are not shared)."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self.outbox = Outbox(db)

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False, busy_timeout: float = 30) -> Store:
        """Open (creating and migrating) the database; sqlite3.Error when it cannot be used
        (database_problem says why). `busy_timeout` is how long a write waits for another
        process's write lock."""
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout)
            return cls(sqlite_utils.Database(conn))
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        conn = sqlite3.connect(str(path), timeout=busy_timeout)
        try:
            db = sqlite_utils.Database(conn)
            if new:  # an older database switches on its first prune (see Store.prune)
                db.execute(f"PRAGMA auto_vacuum={INCREMENTAL}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA busy_timeout={round(busy_timeout * 1000)}")
            store = cls(db)
            store.migrate()
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def empty(cls) -> Store:
        """A new database in memory: nothing stored, nothing kept."""
        store = cls(sqlite_utils.Database(memory=True))
        store.migrate()
        return store

    def close(self) -> None:
        self.db.close()

    # --- schema -------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        """How many of SCHEMA_STEPS this database has (the steps apply in order)."""
        applied = self._applied_steps()
        return len(applied) if applied is not None else self._legacy_schema_version()

    def _applied_steps(self) -> list[str] | None:
        """The steps sqlite-utils recorded as applied; None before the first recording."""
        names = [step.name for step in MIGRATIONS.applied(self.db)]
        return names or None

    def _legacy_schema_version(self) -> int:
        if "meta" not in self.db.table_names():
            return 0
        row = self.db.execute("select value from meta where key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def migrate(self) -> None:
        """Apply the missing schema steps, all in one transaction. A database written before
        the steps were recorded by name (only `schema_version` in `meta`) first records the
        steps it has as applied, so they do not run again."""
        known = {step.__name__ for step in SCHEMA_STEPS}
        applied = self._applied_steps()
        unknown = sorted(set(applied or ()) - known)
        legacy = self._legacy_schema_version() if applied is None else 0
        if unknown or legacy > SCHEMA_VERSION:
            raise NewerSchema(", ".join(unknown) if unknown else f"up to version {legacy}")
        if applied is not None and not MIGRATIONS.pending(self.db):
            return
        with self.db.atomic():
            already_there(SCHEMA_STEPS[:legacy]).apply(self.db)
            MIGRATIONS.apply(self.db)
            # Releases before the switch to named steps read only this key: keeping it
            # true makes them refuse a newer database instead of re-creating its tables.
            self.db["meta"].upsert(
                {"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key"
            )

    # --- agencies -----------------------------------------------------------------------

    def hash_index(self) -> dict[str, str]:
        """raw_hash → key of every active agency: what a fetch can skip re-reading."""
        return dict(self.db.execute("select raw_hash, key from agencies where active = 1"))

    def active_count(self) -> int:
        return self.db.execute("select count(*) from agencies where active = 1").fetchone()[0]

    def disambiguated_cities(self, shared_keys: Iterable[str]) -> dict[str, str]:
        """key → city_key for active agencies told apart by city ('…~city') and for
        the holders of `shared_keys`: what normalise.disambiguate needs to keep keys."""
        sql = "select key, city from agencies where active = 1 and key like '%~%'"
        cities = {key: city_key(city) for key, city in self.db.execute(sql)}
        cities |= {key: city_key(a.city) for key, a in self.agencies(shared_keys).items()}
        return cities

    def missing_streak(self) -> dict[str, int]:
        sql = "select key, missing_polls from agencies where active = 1 and missing_polls > 0"
        return dict(self.db.execute(sql))

    def agencies(self, keys: Iterable[str] | None = None) -> dict[str, Agency]:
        """Active agencies, all of them or those with the given keys."""
        if keys is None:
            rows = self.db.query("select * from agencies where active = 1")
            return {row["key"]: Agency.from_row(row) for row in rows}
        result: dict[str, Agency] = {}
        wanted = list(keys)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"select * from agencies where active = 1 and key in ({marks})"
            for row in self.db.query(sql, chunk):
                result[row["key"]] = Agency.from_row(row)
        return result

    # --- polls --------------------------------------------------------------------------

    def last_poll(self, *, good: bool = False) -> dict[str, Any] | None:
        where = f"where outcome in {GOOD_SQL}" if good else ""
        rows = list(self.db.query(f"select * from polls {where} order by id desc limit 1"))
        return rows[0] if rows else None

    def bad_streak(self) -> int:
        """Failed or suspect polls since the last good one."""
        sql = f"""select count(*) from polls where outcome in {BAD_SQL}
            and id > coalesce((select max(id) from polls where outcome in {GOOD_SQL}), 0)"""
        return self.db.execute(sql).fetchone()[0]

    def recent_polls(self, limit: int = 5) -> list[dict[str, Any]]:
        return list(self.db.query("select * from polls order by id desc limit ?", [limit]))

    def record_poll(
        self,
        poll: dict[str, Any],
        messages: Iterable[OutboxMessage] = (),
        *,
        snapshot: SnapshotFile | None = None,
    ) -> int:
        """A poll that changed no agencies (failed, suspect, unchanged) and its warnings."""
        with self.db.atomic():
            poll_id = self.db["polls"].insert(poll).last_pk
            self._count_snapshot(snapshot, poll)
            self.outbox.queue(poll_id, list(messages))
        return poll_id

    def _count_snapshot(self, snapshot: SnapshotFile | None, poll: dict[str, Any]) -> None:
        if snapshot is None:
            return
        self.db.execute(
            "insert into snapshots (sha256, first_seen, last_seen, bytes, compressed_bytes, polls) "
            "values (?, ?, ?, ?, ?, 1) on conflict (sha256) do update set "
            "last_seen = excluded.last_seen, polls = polls + 1",
            [snapshot.sha256, poll["started_at"], poll["started_at"], snapshot.bytes,
             snapshot.compressed_bytes],
        )  # fmt: skip

    # --- snapshots ----------------------------------------------------------------------

    def snapshot_file(self, sha256: str) -> SnapshotFile | None:
        rows = self.db.execute(
            "select sha256, bytes, compressed_bytes from snapshots where sha256 = ?", [sha256]
        ).fetchall()
        return SnapshotFile(*rows[0]) if rows else None

    def snapshots(self) -> list[dict[str, Any]]:
        """Every snapshot row, first seen first."""
        if "snapshots" not in self.db.table_names():  # a read-only look at an old database
            return []
        return list(self.db.query("select * from snapshots order by first_seen, rowid"))

    def snapshots_starting(self, prefix: str) -> list[str]:
        sql = "select sha256 from snapshots where sha256 >= ? and sha256 < ? order by sha256"
        return [row[0] for row in self.db.execute(sql, [prefix, prefix + "g"])]

    def polls_in_order(self) -> list[dict[str, Any]]:
        return list(self.db.query("select * from polls order by id"))

    def poll(self, poll_id: int) -> dict[str, Any] | None:
        rows = list(self.db.query("select * from polls where id = ?", [poll_id]))
        return rows[0] if rows else None

    def change_row(self, change_id: int) -> dict[str, Any] | None:
        rows = list(self.db.query("select * from changes where id = ?", [change_id]))
        return rows[0] if rows else None

    def polled_urls(self, origin: str) -> set[tuple[str, str]]:
        """(url, started_at) of every poll of this origin: what an import already brought in."""
        sql = "select url, started_at from polls where origin = ?"
        return {(url, at) for url, at in self.db.execute(sql, [origin])}

    def good_polls_back(self, poll_id: int) -> Iterator[dict[str, Any]]:
        """Good polls up to and including `poll_id`, newest first."""
        sql = f"select * from polls where id <= ? and outcome in {GOOD_SQL} order by id desc"
        yield from self.db.query(sql, [poll_id])

    def changes_in_order(self) -> list[dict[str, Any]]:
        """Every change-log row in order, then every churn entry as a row of its own (kind
        `changed`, one field, `before`/`after` as JSON; its id names the churn row): what
        `ringwatch verify` compares with a replay."""
        rows = list(self.db.query("select * from changes order by id"))
        names = dict(self.db.execute("select key, name from agencies"))
        for entry in self.db.query("select * from churn order by id"):
            name = entry["field"]
            for key, (before, after) in sorted(unpack_churn(entry["data"]).items()):
                rows.append({
                    "id": f"{entry['id']} (churn)", "poll_id": entry["poll_id"],
                    "detected_at": entry["detected_at"], "kind": "changed", "key": key,
                    "name": names.get(key, key), "city": None, "state": None,
                    "fields": _json([name]), "before": _json({name: before}),
                    "after": _json({name: after}),
                })  # fmt: skip
        return rows

    def commit_poll(
        self,
        poll: dict[str, Any],
        diff: Diff,
        changes: list[Change],
        plan: Callable[[int, list[tuple[int, Change]]], list[OutboxMessage]],
        *,
        baseline: Iterable[Agency] = (),
        snapshot: SnapshotFile | None = None,
    ) -> tuple[int, list[tuple[int, Change]]]:
        """Apply a diff: agencies, change log and outbox in one transaction.

        `plan` turns the numbered changes into outbox messages inside the transaction,
        so a message can never exist without its change nor a change without its message.
        """
        now = poll.get("finished_at") or utc_now()
        with self.db.atomic():
            poll_id = self.db["polls"].insert(poll).last_pk
            self._count_snapshot(snapshot, poll)
            self._apply_agencies(diff, baseline, now)
            numbered = self._append_changes(poll_id, poll, changes, now)
            self.outbox.queue(poll_id, plan(poll_id, numbered))
        return poll_id, numbered

    def _apply_agencies(self, diff: Diff, baseline: Iterable[Agency], now: str) -> None:
        def row(agency: Agency) -> dict[str, Any]:
            data = agency.as_row()
            extra = _json(agency.extra) if agency.extra else "{}"  # most have none: skip json
            data.update(extra=extra, active=1, missing_polls=0, updated_at=now)
            data.update(ended_at=None, renamed_to=None)
            return data

        fresh = [*baseline, *diff.added, *(new for _, new in diff.renamed)]
        self._upsert_agencies([{**row(a), "first_seen": now} for a in fresh])
        updated = [*(new for _, new, _ in diff.changed), *diff.cosmetic]
        self._upsert_agencies([row(a) for a in updated])
        for old, new in diff.renamed:
            if old.key != new.key:
                self.db.execute(
                    "update agencies set active = 0, ended_at = ?, renamed_to = ? where key = ?",
                    [now, new.key, old.key],
                )
        self.db.conn.executemany(
            "update agencies set active = 0, ended_at = ?, missing_polls = missing_polls + 1 "
            "where key = ?",
            [(now, a.key) for a in diff.removed],
        )
        # Agencies seen again reset their clock; those still missing advance it.
        self.db.execute(
            "update agencies set missing_polls = 0 where active = 1 and missing_polls > 0"
        )
        self.db.conn.executemany(
            "update agencies set missing_polls = ? where key = ?",
            [(count, key) for key, count in diff.missing.items()],
        )

    def _upsert_agencies(self, rows: list[dict[str, Any]]) -> None:
        """Insert or update agency rows with one statement per row, run by executemany.

        sqlite-utils' upsert_all runs two statements per row and inspects every value, which
        made a 100,000-agency baseline spend seconds here.
        """
        if not rows:
            return
        columns = list(rows[0])
        names = ", ".join(f"[{c}]" for c in columns)
        updates = ", ".join(f"[{c}] = excluded.[{c}]" for c in columns if c != "key")
        self.db.conn.executemany(
            f"insert into agencies ({names}) values ({', '.join('?' * len(columns))}) "
            f"on conflict ([key]) do update set {updates}",
            [tuple(row[c] for c in columns) for row in rows],
        )

    def _append_changes(
        self, poll_id: int, poll: dict[str, Any], changes: list[Change], now: str
    ) -> list[tuple[int, Change]]:
        """Log `changes`: one `changes` row each, except field changes that do not alert,
        which go to `churn` compactly; returns the logged rows, numbered."""
        churn = [c for c in changes if c.kind == ChangeKind.CHANGED and not c.alert]
        changes = [c for c in changes if c.kind != "changed" or c.alert]
        _insert_rows(
            self.db,
            "churn",
            (
                {"poll_id": poll_id, "detected_at": now, "field": name,
                 "agencies": len(values), "data": pack_churn(values)}
                for name, values in sorted(churn_by_field(churn).items())
            ),
        )  # fmt: skip
        start = (self.db.execute("select max(id) from changes").fetchone()[0] or 0) + 1
        # The document the stored agencies were last read from: where a "before" is found.
        previous = self.db.execute(
            f"select snapshot from polls where id < ? and outcome in {GOOD_SQL} "
            "and snapshot is not null order by id desc limit 1",
            [poll_id],
        ).fetchone()
        numbered = list(enumerate(changes, start))
        _insert_rows(
            self.db,
            "changes",
            (
                {
                    "id": change_id,
                    "uuid": str(uuid.uuid4()),
                    "poll_id": poll_id,
                    "detected_at": now,
                    "kind": change.kind,
                    "key": change.key,
                    "name": change.agency.name,
                    "city": change.agency.city,
                    "state": change.agency.state,
                    "active_date": change.agency.active_date,
                    "fields": _json(list(change.fields)) if change.fields else None,
                    "before": _json(change.before),
                    "after": _json(change.after),
                    "alert": int(change.alert),
                    "snapshot": poll.get("snapshot"),
                    "before_snapshot": previous[0] if previous else None,
                    "origin": poll.get("origin", "live"),
                }
                for change_id, change in numbered
            ),
        )
        return numbered

    # --- retention ----------------------------------------------------------------------

    def prune(self, before: str) -> Pruned:
        """Forget what is older than `before` (ISO time) and only costs space: sent messages,
        and polls that changed nothing and confirmed nothing (failed, suspect, or unchanged
        with no agency missing). The change log (every alerting change, the baseline, the
        churn) is history and stays, and so does every poll a replay needs to rebuild it
        (`ringwatch verify`): the good polls that read a new document or counted a missing
        agency, those the change log or the outbox refers to, the last good poll (its
        validators make the next fetch conditional) and every poll after it. Then the freed
        pages go back to the file system."""
        size = self.size()
        idle = f"""select id from polls where started_at < ?
            and id < coalesce((select max(id) from polls where outcome in {GOOD_SQL}), 0)
            and (outcome in {BAD_SQL}
                 or (outcome = '{PollOutcome.UNCHANGED}'
                     and coalesce(missing, added is not null) = 0))
            and id not in (select poll_id from changes where poll_id is not null)
            and id not in (select poll_id from churn)
            and id not in (select poll_id from outbox where poll_id is not null)"""
        # (`missing` is null in polls recorded before it existed: an unchanged poll then had
        # counts only when it confirmed a missing agency.)
        with self.db.atomic():
            sent = self.db.execute(
                f"delete from outbox where status = '{SENT}' and coalesce(sent_at, created_at) < ?",
                [before],
            ).rowcount
            doomed = [row[0] for row in self.db.execute(idle, [before])]
            for start in range(0, len(doomed), 500):
                chunk = doomed[start : start + 500]
                marks = ",".join("?" * len(chunk))
                self.db.execute(
                    "update snapshots set polls = polls - (select count(*) from polls "
                    f"where snapshot = snapshots.sha256 and id in ({marks})) "
                    f"where sha256 in (select snapshot from polls where id in ({marks}))",
                    chunk + chunk,
                )
                self.db.execute(f"delete from polls where id in ({marks})", chunk)
        self._give_back_free_pages()
        return Pruned(sent, len(doomed), size, self.size())

    def size(self) -> int:
        """Bytes the database takes: its pages (the write-ahead log apart)."""
        pages = self.db.execute("pragma page_count").fetchone()[0]
        return pages * self.db.execute("pragma page_size").fetchone()[0]

    def _give_back_free_pages(self) -> None:
        # A database made before auto_vacuum was set needs one VACUUM to switch; after that,
        # incremental_vacuum frees pages without rewriting the whole file.
        if self.db.execute("pragma auto_vacuum").fetchone()[0] == INCREMENTAL:
            self.db.execute("pragma incremental_vacuum")
        else:
            self.db.execute(f"pragma auto_vacuum = {INCREMENTAL}")
            self.db.execute("vacuum")
        self.db.execute("pragma wal_checkpoint(truncate)")

    # --- subscribers --------------------------------------------------------------------

    def subscribers(self, channel: str) -> list[dict[str, Any]]:
        sql = "select * from subscribers where channel = ? and active = 1 order by rowid"
        return list(self.db.query(sql, [channel]))

    def subscriber(self, channel: str, chat_id: str) -> dict[str, Any] | None:
        """One subscriber row, active or not."""
        sql = "select * from subscribers where channel = ? and chat_id = ?"
        rows = list(self.db.query(sql, [channel, chat_id]))
        return rows[0] if rows else None

    def subscribe(
        self,
        channel: str,
        chat_id: str,
        *,
        states: list[str] | None,
        chat_type: str | None = None,
        title: str | None = None,
    ) -> None:
        """(Re)activate a subscription; `states` None means every state."""
        now = utc_now()
        existing = self.subscriber(channel, chat_id)
        with self.db.atomic():
            self.db["subscribers"].upsert(
                {
                    "channel": channel,
                    "chat_id": chat_id,
                    "chat_type": chat_type,
                    "title": title,
                    "states": _json(sorted(states)) if states is not None else None,
                    "active": 1,
                    "subscribed_at": (existing or {}).get("subscribed_at") or now,
                    "updated_at": now,
                    "reason": None,
                },
                pk=("channel", "chat_id"),
            )

    def deactivate_subscriber(self, channel: str, chat_id: str, reason: str) -> bool:
        """Stop sending to a chat (it unsubscribed, blocked us, or is gone)."""
        with self.db.atomic():
            cursor = self.db.execute(
                "update subscribers set active = 0, reason = ?, updated_at = ? "
                "where channel = ? and chat_id = ? and active = 1",
                [reason, utc_now(), channel, chat_id],
            )
        return cursor.rowcount == 1

    def migrate_subscriber(self, channel: str, old_chat_id: str, new_chat_id: str) -> None:
        """A group became a supergroup: its subscription and pending messages follow it."""
        with self.db.atomic():
            self.db.execute(
                "update or replace subscribers set chat_id = ?, updated_at = ? "
                "where channel = ? and chat_id = ?",
                [new_chat_id, utc_now(), channel, old_chat_id],
            )
            self.db.execute(
                "update or ignore outbox set recipient = ?, dedupe_key = "
                "channel || '|' || ? || '|' || group_key || '|' || part "
                f"where channel = ? and recipient = ? and status = '{PENDING}'",
                [new_chat_id, new_chat_id, channel, old_chat_id],
            )


# Rows for the same channel and recipient as the row whose id is the parameter.
_SAME_RECIPIENT = "(channel, recipient) = (select channel, recipient from outbox where id = ?)"


class Outbox:
    """Deliveries waiting, in flight, done or given up. A row is claimed right before its
    request, so a crash repeats at most the messages that were on the wire.

    Every text written here (messages, errors, reasons) goes through logs.redact: no
    caller can store a channel's secret by forgetting to scrub an error first.
    """

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def queue(self, poll_id: int | None, messages: list[OutboxMessage]) -> int:
        if not messages:
            return 0
        before = self.db.execute("select count(*) from outbox").fetchone()[0]
        now = utc_now()
        self.db["outbox"].insert_all(
            (
                {
                    "created_at": now,
                    "poll_id": poll_id,
                    "channel": m.channel,
                    "recipient": m.recipient,
                    "kind": m.kind,
                    "group_key": m.group_key,
                    "part": m.part,
                    "dedupe_key": m.dedupe_key,
                    "change_ids": _json(list(m.change_ids)),
                    "text": redact(m.text),
                    "attachment": m.attachment,
                    "meta": _json(m.meta) if m.meta else None,
                    "status": OutboxStatus.PENDING,
                    "attempts": 0,
                    "next_attempt_at": 0.0,
                }
                for m in messages
            ),
            ignore=True,
            batch_size=1000,
        )
        return self.db.execute("select count(*) from outbox").fetchone()[0] - before

    def release_stale(self) -> int:
        """After a crash: whatever was in flight is pending again (it may repeat once)."""
        with self.db.atomic():
            cursor = self.db.execute(
                f"update outbox set status = '{PENDING}' where status = '{SENDING}'"
            )
        return cursor.rowcount

    def due(self, channel: str, now: float | None = None, limit: int = 100_000) -> list[dict]:
        """Pending rows of a channel whose time has come, oldest first."""
        sql = f"""select * from outbox where channel = ? and status = '{PENDING}'
            and next_attempt_at <= ? order by id limit ?"""
        return list(self.db.query(sql, [channel, time.time() if now is None else now, limit]))

    def first_waiting(self, channel: str, now: float) -> dict[str, int]:
        """recipient → id of their oldest pending row that is not due yet (a retry)."""
        sql = f"""select recipient, min(id) from outbox where channel = ? and status = '{PENDING}'
            and next_attempt_at > ? group by recipient"""
        return dict(self.db.execute(sql, [channel, now]).fetchall())

    def claim(self, row_id: int) -> bool:
        """Mark one row in flight, right before its request; False if another worker
        already has it."""
        with self.db.atomic():
            cursor = self.db.execute(
                f"update outbox set status = '{SENDING}', attempts = attempts + 1 "
                f"where id = ? and status = '{PENDING}'",
                [row_id],
            )
        return cursor.rowcount == 1

    def mark_sent(self, row_id: int, external_id: str | None, note: str | None = None) -> None:
        """Sent; and the recipient's failure streak, if any, is over."""
        with self.db.atomic():
            self.db.execute(
                f"update outbox set status = '{SENT}', sent_at = ?, external_id = ?, "
                "last_error = ? where id = ?",
                [utc_now(), external_id, note and redact(note), row_id],
            )
            self.db.execute(
                f"update outbox set failing_since = null where {_SAME_RECIPIENT} "
                f"and status = '{PENDING}' and failing_since is not null",
                [row_id],
            )

    def mark_retry(
        self,
        row_id: int,
        at: float,
        error: str,
        *,
        count_attempt: bool = True,
        failing_at: float | None = None,
    ) -> None:
        """Pending again from `at`. `failing_at`: this was a transient failure at that time.
        It starts the give-up clock (unless a failure streak already did) of this row and
        of the recipient's later rows, which wait behind it: they give up together."""
        with self.db.atomic():
            self.db.execute(
                f"update outbox set status = '{PENDING}', next_attempt_at = ?, last_error = ?, "
                "attempts = attempts - ? where id = ?",
                [at, redact(error), 0 if count_attempt else 1, row_id],
            )
            if failing_at is not None:
                self.db.execute(
                    f"update outbox set failing_since = ? where {_SAME_RECIPIENT} "
                    f"and status = '{PENDING}' and failing_since is null",
                    [failing_at, row_id],
                )

    def failing_since(self, row_id: int) -> float | None:
        """When the row's current failure streak began (None: it is not failing)."""
        sql = "select failing_since from outbox where id = ?"
        return self.db.execute(sql, [row_id]).fetchone()[0]

    def mark_failed(
        self, row_id: int, error: str, status: OutboxStatus = OutboxStatus.FAILED
    ) -> None:
        with self.db.atomic():
            self.db.execute(
                "update outbox set status = ?, last_error = ? where id = ?",
                [status, redact(error), row_id],
            )

    def requeue_failed(self, channel: str | None = None, since: str | None = None) -> int:
        """Failed rows (of `channel`, queued since `since`) are pending again with a fresh
        give-up clock. Rows are updated in place, never copied: what was sent stays sent."""
        with self.db.atomic():
            cursor = self.db.execute(
                f"update outbox set status = '{PENDING}', attempts = 0, next_attempt_at = 0, "
                f"failing_since = null where status = '{FAILED}' "
                "and (? is null or channel = ?) and (? is null or created_at >= ?)",
                [channel, channel, since, since],
            )
        return cursor.rowcount

    def queued_for_poll(self, poll_id: int) -> int:
        """How many messages one poll queued, for its summary line."""
        return self.db.execute(
            "select count(*) from outbox where poll_id = ?", [poll_id]
        ).fetchone()[0]

    def last_sent_id(self, channel: str) -> int:
        """The newest sent row of a channel (0: none), warnings aside: where a failure
        streak began, so that the streak's own warning does not start a new one."""
        sql = f"""select coalesce(max(id), 0) from outbox
            where channel = ? and status = '{SENT}' and kind != '{MessageKind.WARNING}'"""
        return self.db.execute(sql, [channel]).fetchone()[0]

    def oldest_waiting(self) -> dict[str, str]:
        """channel → created_at of its oldest row not yet sent (pending or in flight)."""
        sql = f"""select channel, min(created_at) from outbox
            where status in {UNSENT_SQL} group by channel"""
        return dict(self.db.execute(sql).fetchall())

    def defer_channel(self, channel: str, until: float, failing_at: float | None = None) -> None:
        """Nothing pending for `channel` is due before `until` (a flood wait, a budget).
        With `failing_at` the whole channel is failing (unreachable): every pending row's
        give-up clock runs from then, not only the one row that was tried."""
        with self.db.atomic():
            self.db.execute(
                "update outbox set next_attempt_at = max(next_attempt_at, ?), "
                "failing_since = coalesce(failing_since, ?) "
                f"where channel = ? and status = '{PENDING}'",
                [until, failing_at, channel],
            )

    def skip_recipient(self, channel: str, recipient: str, reason: str) -> int:
        """A recipient who is gone gets nothing more from the queue."""
        with self.db.atomic():
            cursor = self.db.execute(
                f"update outbox set status = '{OutboxStatus.SKIPPED}', last_error = ? "
                f"where channel = ? and recipient = ? and status = '{PENDING}'",
                [redact(reason), channel, recipient],
            )
        return cursor.rowcount

    def thread_parent(
        self, channel: str, recipient: str, group_key: str, part: int
    ) -> tuple[bool, str | None]:
        """(ready, id to reply to) for part `part` of a thread.

        It replies to the nearest earlier part that was sent; parts that failed for good
        are stepped over (the thread goes on without them), and a part still queued or
        in flight makes this one wait.
        """
        earlier = self.db.execute(
            "select status, external_id from outbox where channel = ? and recipient = ? "
            "and group_key = ? and part < ? order by part desc",
            [channel, recipient, group_key, part],
        )
        for status, external_id in earlier:
            if status in UNSENT_STATUSES:
                return False, None
            if status == SENT and external_id:
                return True, external_id
        return True, None

    def counts(self) -> dict[str, dict[str, int]]:
        """channel → status → rows."""
        result: dict[str, dict[str, int]] = {}
        sql = "select channel, status, count(*) from outbox group by channel, status"
        for channel, status, count in self.db.execute(sql):
            result.setdefault(channel, {})[status] = count
        return result

    def last_failures(self, limit: int) -> list[dict[str, Any]]:
        """The newest rows that were given up on, newest first."""
        sql = f"""select channel, recipient, last_error from outbox where status = '{FAILED}'
            order by id desc limit ?"""
        return list(self.db.query(sql, [limit]))

    def sent_since(self, channel: str, since_iso: str) -> list[dict[str, Any]]:
        sql = f"select * from outbox where channel = ? and status = '{SENT}' and sent_at >= ?"
        return list(self.db.query(sql, [channel, since_iso]))
