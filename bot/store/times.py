"""Times as the database keeps them: ISO 8601 text in UTC to the second, `2026-11-29T16:34:26Z`.

One fixed-width format in every table, so comparing the text compares the times.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime


def utc_now() -> str:
    return iso_time(time.time())


def prune_before(retention: float) -> str:
    """The ISO time before which rows are pruned, keeping `retention` seconds."""
    return iso_time(time.time() - retention)


# When a message that may go at once is due: the start of epoch time, before any clock.
DUE_AT_ONCE = "1970-01-01T00:00:00Z"


def iso_time(epoch: float, *, round_up: bool = False) -> str:
    """Epoch seconds as the database's ISO text, to the second: rounded down (a time
    something happened, a time "now" that rows are due by) or `round_up` (a time not to
    act before: a retry rounded down could go early)."""
    second = math.ceil(epoch) if round_up else math.floor(epoch)
    return datetime.fromtimestamp(second, UTC).isoformat().replace("+00:00", "Z")


def epoch_time(iso: str) -> float:
    """The database's ISO text as epoch seconds."""
    return datetime.fromisoformat(iso).timestamp()
