"""The database file: opening it (pragmas), the schema's migration steps, and what a SQLite
error means for the person running ringwatch.

The steps are history: a released step never changes (databases in the field have run it).
A schema change is a new function appended to SCHEMA_STEPS.
"""

from __future__ import annotations

import math
import sqlite3
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from bot.models import ChangeKind, OutboxStatus


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
        f"""select detected_at, kind, name, city, state, active_date, fields, before, after
        from changes where kind != '{ChangeKind.BASELINE}' order by id desc""",
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


def outbox_times_as_iso_text(db: sqlite_utils.Database) -> None:
    """The outbox's retry clock (next_attempt_at, failing_since) as the ISO text of every
    other time column instead of epoch seconds: readable in Datasette, and fixed width, so
    comparing the text compares the times. A retry time rounds up to the next whole second
    (never sent early); 0, due at once, becomes the start of epoch time."""

    def iso(epoch: float | None, round_up: bool) -> str | None:
        if epoch is None:
            return None
        second = math.ceil(epoch) if round_up else math.floor(epoch)
        return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    rows = db.execute("select id, next_attempt_at, failing_since from outbox").fetchall()
    # Converted while the columns are still REAL: the TEXT columns would store numbers as
    # their decimal text.
    db.conn.executemany(
        "update outbox set next_attempt_at = ?, failing_since = ? where id = ?",
        [(iso(at, True), iso(since, False), row_id) for row_id, at, since in rows],
    )
    db["outbox"].transform(
        types={"next_attempt_at": str, "failing_since": str},
        # (attempts named again: transform would re-quote its default as the text '0')
        defaults={"attempts": 0, "next_attempt_at": "1970-01-01T00:00:00Z"},
    )


def disabled_webhooks_apart_from_subscribers(db: sqlite_utils.Database) -> None:
    """The webhook URLs a 410 Gone switched off get a table of their own: they were rows of
    `subscribers` (channel 'webhook', any row meaning off), which holds people who asked
    for alerts. Each keeps its reason, and the time its row was made as the time it was
    switched off (the key of its maintainer warning)."""
    db["disabled_webhooks"].create({"url": str, "reason": str, "disabled_at": str}, pk="url")
    # 'webhook' written out: a released step means what it meant, whatever channels come.
    db.execute(
        "insert into disabled_webhooks (url, reason, disabled_at) "
        "select chat_id, reason, subscribed_at from subscribers where channel = 'webhook'"
    )
    db.execute("delete from subscribers where channel = 'webhook'")


# The schema, step by step, in the order they run. Append-only: a step never changes once
# released (databases in the field have run it); a schema change is a new step at the end.
SCHEMA_STEPS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    create_agencies_polls_changes_outbox,
    add_subscribers_and_recent_changes_view,
    add_snapshots_and_poll_origin,
    add_outbox_failing_since,
    add_poll_warning_missing_and_churn,
    add_change_uuids_and_install_id,
    outbox_times_as_iso_text,
    disabled_webhooks_apart_from_subscribers,
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


# PRAGMA auto_vacuum mode: freed pages are kept until `pragma incremental_vacuum`.
INCREMENTAL = 2


def connect(path: Path, *, busy_timeout: float) -> sqlite_utils.Database:
    """The database at `path` for reading and writing, created if need be, in WAL mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    conn = sqlite3.connect(str(path), timeout=busy_timeout)
    try:
        db = sqlite_utils.Database(conn)
        if new:  # an older database switches on its first prune (see Retention.prune)
            db.execute(f"PRAGMA auto_vacuum={INCREMENTAL}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={round(busy_timeout * 1000)}")
    except BaseException:
        conn.close()
        raise
    return db


def connect_readonly(path: Path, *, busy_timeout: float) -> sqlite_utils.Database:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=busy_timeout)
    return sqlite_utils.Database(conn)


def schema_version(db: sqlite_utils.Database) -> int:
    """How many of SCHEMA_STEPS this database has (the steps apply in order)."""
    applied = _applied_steps(db)
    return len(applied) if applied is not None else _legacy_schema_version(db)


def _applied_steps(db: sqlite_utils.Database) -> list[str] | None:
    """The steps sqlite-utils recorded as applied; None before the first recording."""
    names = [step.name for step in MIGRATIONS.applied(db)]
    return names or None


def _legacy_schema_version(db: sqlite_utils.Database) -> int:
    if "meta" not in db.table_names():
        return 0
    row = db.execute("select value from meta where key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(db: sqlite_utils.Database) -> None:
    """Apply the missing schema steps, all in one transaction. A database written before
    the steps were recorded by name (only `schema_version` in `meta`) first records the
    steps it has as applied, so they do not run again."""
    known = {step.__name__ for step in SCHEMA_STEPS}
    applied = _applied_steps(db)
    unknown = sorted(set(applied or ()) - known)
    legacy = _legacy_schema_version(db) if applied is None else 0
    if unknown or legacy > SCHEMA_VERSION:
        raise NewerSchema(", ".join(unknown) if unknown else f"up to version {legacy}")
    if applied is not None and not MIGRATIONS.pending(db):
        return
    with db.atomic():
        already_there(SCHEMA_STEPS[:legacy]).apply(db)
        MIGRATIONS.apply(db)
        # Releases before the switch to named steps read only this key: keeping it
        # true makes them refuse a newer database instead of re-creating its tables.
        db["meta"].upsert({"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key")
