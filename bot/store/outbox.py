"""The `outbox`: every message to deliver, one row per channel, recipient and part, from
queued to sent (or given up). deliver.py drains it through the Outbox class.

Its times are ISO text like every other table's (times.py). Callers keep their clocks in
epoch seconds (deliver.py's injected clock): the Outbox converts at its edge, rounding a
time not to send before up to the next second and a time "now" down, so nothing is sent
early."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from typing import Any

import sqlite_utils

from bot.logs import redact
from bot.models import UNSENT_STATUSES, MessageKind, OutboxMessage, OutboxStatus
from bot.store.sql import UNSENT_SQL, to_json
from bot.store.times import DUE_AT_ONCE, epoch_time, iso_time, utc_now

PENDING, SENDING, SENT, FAILED = (
    OutboxStatus.PENDING,
    OutboxStatus.SENDING,
    OutboxStatus.SENT,
    OutboxStatus.FAILED,
)


# The columns an OutboxMessage fills, in its fields' order.
MESSAGE_COLUMNS = tuple(f.name for f in fields(OutboxMessage))


def _stored(message: OutboxMessage) -> list[Any]:
    """The message's fields as the outbox stores them: lists and dicts as JSON, and the
    text without a secret."""
    stored = {name: getattr(message, name) for name in MESSAGE_COLUMNS}
    stored.update(
        change_ids=to_json(list(message.change_ids)),
        text=redact(message.text),
        meta=to_json(message.meta) if message.meta else None,
    )
    return [stored[name] for name in MESSAGE_COLUMNS]


@dataclass(frozen=True)
class FailedMessage:
    """An outbox row that was given up on."""

    channel: str
    recipient: str
    created_at: str  # when it was queued
    last_error: str | None


@dataclass(frozen=True)
class Backlog:
    """A channel's messages not yet sent (pending or in flight)."""

    messages: int
    next_attempt_at: float | None  # epoch seconds when the first is due; None: nothing waits


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
        """Queue `messages` (those queued before, by dedupe_key, are left as they are);
        how many were new."""
        if not messages:
            return 0
        before = self.db.execute("select count(*) from outbox").fetchone()[0]
        queued = {"created_at": utc_now(), "poll_id": poll_id, "status": PENDING, "attempts": 0,
                  "next_attempt_at": DUE_AT_ONCE}  # fmt: skip
        columns = [*queued, *MESSAGE_COLUMNS, "dedupe_key"]
        with self.db.atomic():
            self.db.conn.executemany(
                f"insert or ignore into outbox ({', '.join(f'[{c}]' for c in columns)}) "
                f"values ({', '.join('?' * len(columns))})",
                ([*queued.values(), *_stored(m), m.dedupe_key] for m in messages),
            )
        return self.db.execute("select count(*) from outbox").fetchone()[0] - before

    def readdress(self, channel: str, old_recipient: str, new_recipient: str) -> None:
        """The recipient's pending messages follow it to its new id; part of
        Store.migrate_subscriber."""
        self.db.execute(
            "update or ignore outbox set recipient = ?, dedupe_key = "
            "channel || '|' || ? || '|' || group_key || '|' || part "
            f"where channel = ? and recipient = ? and status = '{PENDING}'",
            [new_recipient, new_recipient, channel, old_recipient],
        )

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
        by = iso_time(time.time() if now is None else now)
        return list(self.db.query(sql, [channel, by, limit]))

    def first_waiting(self, channel: str, now: float) -> dict[str, int]:
        """recipient → id of their oldest pending row that is not due yet (a retry)."""
        sql = f"""select recipient, min(id) from outbox where channel = ? and status = '{PENDING}'
            and next_attempt_at > ? group by recipient"""
        return dict(self.db.execute(sql, [channel, iso_time(now)]).fetchall())

    def next_retry(self, channel: str, now: float) -> float | None:
        """When the channel's first pending row that is not due yet becomes due (epoch
        seconds); None when nothing waits. What is due now was left by the round that
        just ran (it waits behind such a row), so only a later time wakes a drain."""
        sql = f"""select min(next_attempt_at) from outbox where channel = ?
            and status = '{PENDING}' and next_attempt_at > ?"""
        (found,) = self.db.execute(sql, [channel, iso_time(now)]).fetchone()
        return None if found is None else epoch_time(found)

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
                [iso_time(at, round_up=True), redact(error), 0 if count_attempt else 1, row_id],
            )
            if failing_at is not None:
                self.db.execute(
                    f"update outbox set failing_since = ? where {_SAME_RECIPIENT} "
                    f"and status = '{PENDING}' and failing_since is null",
                    [iso_time(failing_at), row_id],
                )

    def failing_since(self, row_id: int) -> float | None:
        """When the row's current failure streak began (None: it is not failing)."""
        sql = "select failing_since from outbox where id = ?"
        since = self.db.execute(sql, [row_id]).fetchone()[0]
        return None if since is None else epoch_time(since)

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
                f"update outbox set status = '{PENDING}', attempts = 0, next_attempt_at = ?, "
                f"failing_since = null where status = '{FAILED}' "
                "and (? is null or channel = ?) and (? is null or created_at >= ?)",
                [DUE_AT_ONCE, channel, channel, since, since],
            )
        return cursor.rowcount

    def queued_for_poll(self, poll_id: int) -> int:
        """How many messages one poll queued, for its summary line."""
        return self.db.execute(
            "select count(*) from outbox where poll_id = ?", [poll_id]
        ).fetchone()[0]

    def card_messages(self) -> list[tuple[MessageKind, tuple[int, ...]]]:
        """(kind, change ids) of every alert and digest still in the outbox: the messages
        whose map cards are kept."""
        sql = f"""select distinct kind, change_ids from outbox
            where kind in ('{MessageKind.ALERT}', '{MessageKind.DIGEST}')"""
        return [
            (MessageKind(kind), tuple(json.loads(ids or "[]")))
            for kind, ids in self.db.execute(sql)
        ]

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
                [
                    iso_time(until, round_up=True),
                    None if failing_at is None else iso_time(failing_at),
                    channel,
                ],
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

    def last_failures(self, limit: int, channel: str | None = None) -> list[FailedMessage]:
        """The newest rows (of `channel`) that were given up on, newest first."""
        sql = f"""select channel, recipient, created_at, last_error from outbox
            where status = '{FAILED}' and (? is null or channel = ?) order by id desc limit ?"""
        return [FailedMessage(*row) for row in self.db.execute(sql, [channel, channel, limit])]

    def backlog(self, channel: str) -> Backlog:
        """The channel's messages not yet sent, and when the first is due."""
        sql = f"""select count(*), min(next_attempt_at) from outbox
            where channel = ? and status in {UNSENT_SQL}"""
        messages, next_attempt_at = self.db.execute(sql, [channel]).fetchone()
        return Backlog(messages, None if next_attempt_at is None else epoch_time(next_attempt_at))

    def sent_since(self, channel: str, since_iso: str) -> list[dict[str, Any]]:
        sql = f"select * from outbox where channel = ? and status = '{SENT}' and sent_at >= ?"
        return list(self.db.query(sql, [channel, since_iso]))
