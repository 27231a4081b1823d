"""The data layer: SQLite state through sqlite-utils, one module per table family.

    schema.py       opening the file, the migration steps, what a SQLite error means
    agencies.py     `agencies`: every agency listed, active or ended
    polls.py        `polls` and the `snapshots` they read
    changelog.py    `changes` and `churn`: the change log
    outbox.py       `outbox`: messages from queued to sent
    subscribers.py  `subscribers`: who asked a channel for alerts
    webhooks.py     `disabled_webhooks`: webhook URLs a 410 Gone switched off
    retention.py    prune, size, giving pages back
    sql.py, times.py  what they share: vocabulary in SQL, JSON columns, ISO times

`Store` is the one object a caller opens and closes: it holds the connection and one
object per table family (`store.agencies`, `store.polls`, …). One poll's agencies,
change-log rows and outbox rows are written in one transaction (commit_poll), so a crash
leaves either all of them or none. Nothing outside this package and bot/queries.py (the
read models) writes SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import sqlite_utils

from bot.diff import Diff
from bot.models import Agency, Change, OutboxMessage
from bot.snapshots import SnapshotFile
from bot.store import schema
from bot.store.agencies import Agencies
from bot.store.changelog import ChangeLog
from bot.store.outbox import Outbox
from bot.store.polls import PollRecord, Polls
from bot.store.retention import Retention
from bot.store.subscribers import Subscribers
from bot.store.times import utc_now
from bot.store.webhooks import DisabledWebhooks


class Store:
    """The ringwatch database. One instance per thread (sqlite3 connections are not shared)."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self.agencies = Agencies(db)
        self.polls = Polls(db)
        self.changes = ChangeLog(db)
        self.outbox = Outbox(db)
        self.subscribers = Subscribers(db)
        self.disabled_webhooks = DisabledWebhooks(db)
        self.retention = Retention(db)

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False, busy_timeout: float = 30) -> Store:
        """Open (creating and migrating) the database; sqlite3.Error when it cannot be used
        (schema.database_problem says why). `busy_timeout` is how long a write waits for
        another process's write lock."""
        if readonly:
            return cls(schema.connect_readonly(path, busy_timeout=busy_timeout))
        db = schema.connect(path, busy_timeout=busy_timeout)
        try:
            schema.migrate(db)
        except BaseException:
            db.close()
            raise
        return cls(db)

    @classmethod
    def empty(cls) -> Store:
        """A new database in memory: nothing stored, nothing kept."""
        db = sqlite_utils.Database(memory=True)
        schema.migrate(db)
        return cls(db)

    def close(self) -> None:
        self.db.close()

    @property
    def schema_version(self) -> int:
        """How many of schema.SCHEMA_STEPS this database has."""
        return schema.schema_version(self.db)

    # --- the transactions that span table families ----------------------------------------

    def record_poll(
        self,
        poll: PollRecord,
        messages: Iterable[OutboxMessage] = (),
        *,
        snapshot: SnapshotFile | None = None,
    ) -> int:
        """A poll that changed no agencies (failed, suspect, unchanged) and its warnings."""
        with self.db.atomic():
            poll_id = self.polls.insert(poll, snapshot)
            self.outbox.queue(poll_id, list(messages))
        return poll_id

    def commit_poll(
        self,
        poll: PollRecord,
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
        now = poll.finished_at or utc_now()
        with self.db.atomic():
            poll_id = self.polls.insert(poll, snapshot)
            self.agencies.apply(diff, baseline, now)
            before_snapshot = self.polls.snapshot_before(poll_id)
            numbered = self.changes.append(poll_id, poll, changes, now, before_snapshot)
            self.outbox.queue(poll_id, plan(poll_id, numbered))
        return poll_id, numbered

    def migrate_subscriber(self, channel: str, old_chat_id: str, new_chat_id: str) -> None:
        """A group became a supergroup: its subscription and pending messages follow it."""
        with self.db.atomic():
            self.subscribers.readdress(channel, old_chat_id, new_chat_id)
            self.outbox.readdress(channel, old_chat_id, new_chat_id)
