"""The `subscribers` table: who asked a channel for alerts (Telegram chats), keyed by
(channel, chat_id); `active` = 0 keeps a row that stopped."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

import sqlite_utils

from bot.store.sql import to_json
from bot.store.times import utc_now


@dataclass(frozen=True)
class Subscriber:
    """One chat of a channel that asked for alerts; its fields are the columns."""

    channel: str
    chat_id: str
    chat_type: str | None = None
    title: str | None = None
    states: tuple[str, ...] | None = None  # USPS codes, sorted; None: every state
    active: bool = True
    subscribed_at: str | None = None
    updated_at: str | None = None
    reason: str | None = None  # why it stopped

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Subscriber:
        states = json.loads(row["states"]) if row["states"] is not None else None
        return cls(**{**row, "states": None if states is None else tuple(states),
                      "active": bool(row["active"])})  # fmt: skip

    def as_row(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**row, "states": None if self.states is None else to_json(list(self.states)),
                "active": int(self.active)}  # fmt: skip


class Subscribers:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def active(self, channel: str) -> list[Subscriber]:
        sql = "select * from subscribers where channel = ? and active = 1 order by rowid"
        return [Subscriber.from_row(row) for row in self.db.query(sql, [channel])]

    def get(self, channel: str, chat_id: str) -> Subscriber | None:
        """One subscriber, active or not."""
        sql = "select * from subscribers where channel = ? and chat_id = ?"
        rows = list(self.db.query(sql, [channel, chat_id]))
        return Subscriber.from_row(rows[0]) if rows else None

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
        existing = self.get(channel, chat_id)
        subscriber = Subscriber(
            channel,
            chat_id,
            chat_type,
            title,
            states=tuple(sorted(states)) if states is not None else None,
            subscribed_at=(existing and existing.subscribed_at) or now,
            updated_at=now,
        )
        with self.db.atomic():
            self.db["subscribers"].upsert(subscriber.as_row(), pk=("channel", "chat_id"))

    def deactivate(self, channel: str, chat_id: str, reason: str) -> bool:
        """Stop sending to a chat (it unsubscribed, blocked us, or is gone)."""
        with self.db.atomic():
            cursor = self.db.execute(
                "update subscribers set active = 0, reason = ?, updated_at = ? "
                "where channel = ? and chat_id = ? and active = 1",
                [reason, utc_now(), channel, chat_id],
            )
        return cursor.rowcount == 1

    def readdress(self, channel: str, old_chat_id: str, new_chat_id: str) -> None:
        """The chat's id changed (a group became a supergroup); part of
        Store.migrate_subscriber, which moves its pending messages along."""
        self.db.execute(
            "update or replace subscribers set chat_id = ?, updated_at = ? "
            "where channel = ? and chat_id = ?",
            [new_chat_id, utc_now(), channel, old_chat_id],
        )
