"""Time as `deliver_pending` reads it (`clock=`), moved by the test: hours of retries and
give-ups pass in no time, and no test edits the outbox's times to fake them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from bot.models import OutboxStatus
from bot.store import Store
from bot.store.times import epoch_time
from tests.support.outbox import outbox


@dataclass
class Clock:
    """Epoch seconds that stand still until the test moves them."""

    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now

    def until_due(self, database: Path | Store) -> Clock:
        """Move on to when every pending row of `database`'s outbox is due (a retry's wait,
        a rate limit's reset, is over); returns the clock, to pass on."""
        pending = outbox(database, status=OutboxStatus.PENDING)
        self.now = max([self.now, *(epoch_time(row["next_attempt_at"]) for row in pending)])
        return self
