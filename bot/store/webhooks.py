"""`disabled_webhooks`: the webhook targets a 410 Gone switched off, until `ringwatch
enable-webhook` switches them on again. (Not subscribers: nobody asked for these.) The
`url` column holds the target's name: its URL, or for a url_env target (whose URL is a
secret) "route2:NEWSROOM_HOOK"."""

from __future__ import annotations

import sqlite_utils

from bot.store.times import utc_now


class DisabledWebhooks:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def among(self, urls: list[str]) -> set[str]:
        """Which of these URLs are switched off."""
        off = {url for (url,) in self.db.execute("select url from disabled_webhooks")}
        return off & set(urls)

    def disable(self, url: str, reason: str) -> str:
        """Switch a URL off; the time it was switched off (the first time, when it already
        was: a second 410 of the same episode changes nothing)."""
        with self.db.atomic():
            self.db.execute(
                "insert or ignore into disabled_webhooks (url, reason, disabled_at) "
                "values (?, ?, ?)",
                [url, reason, utc_now()],
            )
            (since,) = self.db.execute(
                "select disabled_at from disabled_webhooks where url = ?", [url]
            ).fetchone()
        return since

    def enable(self, url: str) -> bool:
        """Switch a URL on again; False when it was not off."""
        with self.db.atomic():
            cursor = self.db.execute("delete from disabled_webhooks where url = ?", [url])
        return cursor.rowcount == 1
