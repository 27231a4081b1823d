"""Times as the database keeps them: ISO 8601 text in UTC to the second, `2026-11-29T16:34:26Z`.

One fixed-width format in every table, so comparing the text compares the times.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def prune_before(retention: float) -> str:
    """The ISO time before which rows are pruned, keeping `retention` seconds."""
    cutoff = datetime.now(UTC) - timedelta(seconds=retention)
    return cutoff.isoformat(timespec="seconds").replace("+00:00", "Z")
