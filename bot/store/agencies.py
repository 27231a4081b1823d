"""The `agencies` table: every agency ever listed, active or ended, keyed by `key`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlite_utils

from bot.diff import Diff
from bot.models import Agency
from bot.normalise import city_key
from bot.store.sql import to_json


class Agencies:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def hash_index(self) -> dict[str, str]:
        """raw_hash → key of every active agency: what a fetch can skip re-reading."""
        return dict(self.db.execute("select raw_hash, key from agencies where active = 1"))

    def active_count(self) -> int:
        return self.db.execute("select count(*) from agencies where active = 1").fetchone()[0]

    def disambiguated_cities(self, shared_keys: Iterable[str]) -> dict[str, str]:
        """key → city_key for active agencies told apart by city ('…~city') and for
        the holders of `shared_keys`: what normalise.disambiguate needs to keep keys."""
        sql = "select key, city from agencies where active = 1 and key like '%~%'"
        cities = {key: city_key(city) for key, city in self.db.execute(sql)}
        cities |= {key: city_key(a.city) for key, a in self.active(shared_keys).items()}
        return cities

    def missing_streak(self) -> dict[str, int]:
        sql = "select key, missing_polls from agencies where active = 1 and missing_polls > 0"
        return dict(self.db.execute(sql))

    def active(self, keys: Iterable[str] | None = None) -> dict[str, Agency]:
        """Active agencies, all of them or those with the given keys."""
        if keys is None:
            rows = self.db.query("select * from agencies where active = 1")
            return {row["key"]: Agency.from_row(row) for row in rows}
        result: dict[str, Agency] = {}
        wanted = list(keys)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"select * from agencies where active = 1 and key in ({marks})"
            for row in self.db.query(sql, chunk):
                result[row["key"]] = Agency.from_row(row)
        return result

    def apply(self, diff: Diff, baseline: Iterable[Agency], now: str) -> None:
        """Write a poll's diff (and the first poll's baseline); part of Store.commit_poll."""

        def row(agency: Agency) -> dict[str, Any]:
            data = agency.as_row()
            extra = to_json(agency.extra) if agency.extra else "{}"  # most have none: skip json
            data.update(extra=extra, active=1, missing_polls=0, updated_at=now)
            data.update(ended_at=None, renamed_to=None)
            return data

        fresh = [*baseline, *diff.added, *(new for _, new in diff.renamed)]
        self._upsert([{**row(a), "first_seen": now} for a in fresh])
        updated = [*(new for _, new, _ in diff.changed), *diff.cosmetic]
        self._upsert([row(a) for a in updated])
        for old, new in diff.renamed:
            if old.key != new.key:
                self.db.execute(
                    "update agencies set active = 0, ended_at = ?, renamed_to = ? where key = ?",
                    [now, new.key, old.key],
                )
        self.db.conn.executemany(
            "update agencies set active = 0, ended_at = ?, missing_polls = missing_polls + 1 "
            "where key = ?",
            [(now, a.key) for a in diff.removed],
        )
        # Agencies seen again reset their clock; those still missing advance it.
        self.db.execute(
            "update agencies set missing_polls = 0 where active = 1 and missing_polls > 0"
        )
        self.db.conn.executemany(
            "update agencies set missing_polls = ? where key = ?",
            [(count, key) for key, count in diff.missing.items()],
        )

    def _upsert(self, rows: list[dict[str, Any]]) -> None:
        """Insert or update agency rows with one statement per row, run by executemany.

        sqlite-utils' upsert_all runs two statements per row and inspects every value, which
        made a 100,000-agency baseline spend seconds here.
        """
        if not rows:
            return
        columns = list(rows[0])
        names = ", ".join(f"[{c}]" for c in columns)
        updates = ", ".join(f"[{c}] = excluded.[{c}]" for c in columns if c != "key")
        self.db.conn.executemany(
            f"insert into agencies ({names}) values ({', '.join('?' * len(columns))}) "
            f"on conflict ([key]) do update set {updates}",
            [tuple(row[c] for c in columns) for row in rows],
        )
