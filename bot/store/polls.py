"""The `polls` table (one row per poll, good or bad) and the `snapshots` it cites (one row
per distinct document fetched, counting the polls that read it)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import sqlite_utils

from bot.models import Origin, PollOutcome
from bot.snapshots import SnapshotFile
from bot.store.sql import BAD_SQL, GOOD_SQL


@dataclass
class PollRecord:
    """One poll as the polls table keeps it, filled in as the poll goes (bot/poll.py);
    its fields are the columns Polls.insert writes."""

    started_at: str
    url: str
    origin: Origin
    forced: int
    finished_at: str | None = None
    outcome: PollOutcome | None = None
    http_status: int | None = None
    bytes: int | None = None
    content_hash: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    snapshot: str | None = None
    records: int | None = None
    warning: str | None = None
    added: int | None = None
    removed: int | None = None
    renamed: int | None = None
    changed: int | None = None
    missing: int | None = None
    duration_ms: int | None = None
    error: str | None = None
    # How it was judged (bot.config.PollSettings.to_json()): kept once per distinct text in
    # `poll_settings`, named by its SHA-256, which is the `settings` column.
    judged_by: str | None = None
    settings: str | None = None  # written by Polls.insert
    seal: str | None = None  # poll_seal(), written by Polls.insert


# What a poll's seal covers: how it was judged and what it read. An edit of any of them
# afterwards (a forged setting, outcome or snapshot) no longer matches the seal.
SEALED_COLUMNS = ("started_at", "url", "origin", "forced", "outcome", "http_status",
                  "snapshot", "content_hash", "etag", "last_modified", "settings")  # fmt: skip


def settings_name(text: str) -> str:
    """The name of a poll's settings in `poll_settings`: their SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def poll_seal(poll: Mapping[str, Any]) -> str:
    """SHA-256 of a poll's SEALED_COLUMNS, as `ringwatch verify` recomputes it."""
    text = json.dumps([poll[column] for column in SEALED_COLUMNS], separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# The columns of a polls row, in PollRecord's order (the settings' text has a table).
POLL_COLUMNS = tuple(f.name for f in fields(PollRecord) if f.name != "judged_by")


class Polls:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def insert(self, poll: PollRecord, snapshot: SnapshotFile | None) -> int:
        """Record a poll (sealed, with the settings it was judged by) and count it for the
        snapshot it read; its id."""
        if poll.judged_by is not None:
            poll.settings = settings_name(poll.judged_by)
            self.db.execute("insert or ignore into poll_settings (sha256, settings) values (?, ?)",
                            [poll.settings, poll.judged_by])  # fmt: skip
        poll.seal = poll_seal(asdict(poll))
        poll_id = self.db.execute(
            f"insert into polls ({', '.join(f'[{c}]' for c in POLL_COLUMNS)}) "
            f"values ({', '.join('?' * len(POLL_COLUMNS))})",
            [getattr(poll, column) for column in POLL_COLUMNS],
        ).lastrowid
        if snapshot is not None:
            self.db.execute(
                "insert into snapshots (sha256, first_seen, last_seen, bytes, compressed_bytes, "
                "polls) values (?, ?, ?, ?, ?, 1) on conflict (sha256) do update set "
                "last_seen = excluded.last_seen, polls = polls + 1",
                [snapshot.sha256, poll.started_at, poll.started_at, snapshot.bytes,
                 snapshot.compressed_bytes],
            )  # fmt: skip
        return poll_id

    def last(self, *, good: bool = False) -> dict[str, Any] | None:
        where = f"where outcome in {GOOD_SQL}" if good else ""
        rows = list(self.db.query(f"select * from polls {where} order by id desc limit 1"))
        return rows[0] if rows else None

    def bad_streak(self) -> int:
        """Failed or suspect polls since the last good one."""
        sql = f"""select count(*) from polls where outcome in {BAD_SQL}
            and id > coalesce((select max(id) from polls where outcome in {GOOD_SQL}), 0)"""
        return self.db.execute(sql).fetchone()[0]

    def recent(self, limit: int = 5) -> list[dict[str, Any]]:
        return list(self.db.query("select * from polls order by id desc limit ?", [limit]))

    def in_order(self) -> list[dict[str, Any]]:
        return list(self.db.query("select * from polls order by id"))

    def get(self, poll_id: int) -> dict[str, Any] | None:
        rows = list(self.db.query("select * from polls where id = ?", [poll_id]))
        return rows[0] if rows else None

    def polled_urls(self, origin: str) -> set[tuple[str, str]]:
        """(url, started_at) of every poll of this origin: what an import already brought in."""
        sql = "select url, started_at from polls where origin = ?"
        return {(url, at) for url, at in self.db.execute(sql, [origin])}

    def good_back(self, poll_id: int) -> Iterator[dict[str, Any]]:
        """Good polls up to and including `poll_id`, newest first."""
        sql = f"select * from polls where id <= ? and outcome in {GOOD_SQL} order by id desc"
        yield from self.db.query(sql, [poll_id])

    def snapshot_before(self, poll_id: int) -> str | None:
        """The document the stored agencies were last read from before poll `poll_id`: where
        a change's "before" is found."""
        previous = self.db.execute(
            f"select snapshot from polls where id < ? and outcome in {GOOD_SQL} "
            "and snapshot is not null order by id desc limit 1",
            [poll_id],
        ).fetchone()
        return previous[0] if previous else None

    def settings(self, name: str) -> str | None:
        """The text of the settings named `name` (settings_name), or None."""
        row = self.db.execute("select settings from poll_settings where sha256 = ?", [name])
        found = row.fetchone()
        return found[0] if found else None

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
