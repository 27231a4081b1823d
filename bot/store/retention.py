"""Retention: what `prune` forgets (sent messages, idle polls) and the space it gives back."""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

from bot.models import OutboxStatus, PollOutcome
from bot.store.schema import INCREMENTAL
from bot.store.sql import BAD_SQL, GOOD_SQL


@dataclass(frozen=True)
class Pruned:
    """What a prune removed, and the database's size before and after (bytes)."""

    messages: int
    polls: int
    size_before: int
    size_after: int


class Retention:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

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
                f"delete from outbox where status = '{OutboxStatus.SENT}' "
                "and coalesce(sent_at, created_at) < ?",
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
