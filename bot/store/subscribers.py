"""The `subscribers` table: who asked a channel for alerts (Telegram chats, webhook URLs
switched off), keyed by (channel, chat_id); `active` = 0 keeps a row that stopped."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from bot.store.sql import to_json
from bot.store.times import utc_now


class Subscribers:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def active(self, channel: str) -> list[dict[str, Any]]:
        sql = "select * from subscribers where channel = ? and active = 1 order by rowid"
        return list(self.db.query(sql, [channel]))

    def get(self, channel: str, chat_id: str) -> dict[str, Any] | None:
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
        existing = self.get(channel, chat_id)
        with self.db.atomic():
            self.db["subscribers"].upsert(
                {
                    "channel": channel,
                    "chat_id": chat_id,
                    "chat_type": chat_type,
                    "title": title,
                    "states": to_json(sorted(states)) if states is not None else None,
                    "active": 1,
                    "subscribed_at": (existing or {}).get("subscribed_at") or now,
                    "updated_at": now,
                    "reason": None,
                },
                pk=("channel", "chat_id"),
            )

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
