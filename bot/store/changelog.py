"""The change log: `changes` (one row per alerting change, and the first poll's baseline)
and `churn` (field changes that do not alert, one compressed row per poll per field)."""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Iterable
from typing import Any

import sqlite_utils

from bot.models import Change, ChangeKind
from bot.store.polls import PollRecord
from bot.store.sql import insert_rows, to_json


def churn_by_field(changes: Iterable[Change]) -> dict[str, dict[str, list[Any]]]:
    """field → agency key → [before, after], for field changes that do not alert."""
    by_field: dict[str, dict[str, list[Any]]] = {}
    for change in changes:
        for name in change.fields:
            values = [(change.before or {}).get(name), (change.after or {}).get(name)]
            by_field.setdefault(name, {})[change.key] = values
    return by_field


def pack_churn(values: dict[str, list[Any]]) -> bytes:
    # Sorted keys share long prefixes ("mn/", "-police-department") that zlib folds away:
    # 2,000 video counts take about 15 KB instead of 640 KB of change rows.
    text = json.dumps(values, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return zlib.compress(text.encode("utf-8"), 9)


def unpack_churn(data: bytes) -> dict[str, list[Any]]:
    return json.loads(zlib.decompress(data))


def churn_uuid(install_id: str, change_id: int) -> str:
    """A churn entry's UUID: derived, not stored (2,000 random UUIDs would not compress),
    the same on every read, and like a `changes` row's unique to this database."""
    return str(uuid.uuid5(uuid.UUID(install_id), f"churn/{change_id}"))


class ChangeLog:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def row(self, change_id: int) -> dict[str, Any] | None:
        """The change with this id: a `changes` row, or a churn entry as one (churn_rows)."""
        rows = list(self.db.query("select * from changes where id = ?", [change_id]))
        if rows:
            return rows[0]
        sql = "select * from churn where first_id <= ? order by first_id desc limit 1"
        entries = list(self.db.query(sql, [change_id]))
        if not entries or change_id >= entries[0]["first_id"] + entries[0]["agencies"]:
            return None
        return self.churn_rows(entries)[change_id - entries[0]["first_id"]]

    def churn_rows(self, entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Churn rows' entries as change-log rows (kind `changed`, one field, `before` and
        `after` as JSON), in key order: id `first_id` + their place, uuid churn_uuid. Name,
        city, state, county and Active Date are the agency's as stored now."""
        entries = list(entries)
        if not entries:
            return []
        sql = "select key, name, city, state, county, active_date from agencies"
        agencies = {row["key"]: row for row in self.db.query(sql)}
        install = self.db.execute("select value from meta where key = 'install_id'").fetchone()[0]
        rows = []
        for entry in entries:
            name = entry["field"]
            values = sorted(unpack_churn(entry["data"]).items())
            for change_id, (key, (before, after)) in enumerate(values, entry["first_id"]):
                agency = agencies.get(key, {})
                rows.append({
                    "id": change_id, "uuid": churn_uuid(install, change_id),
                    "poll_id": entry["poll_id"], "detected_at": entry["detected_at"],
                    "kind": ChangeKind.CHANGED, "key": key, "name": agency.get("name", key),
                    "city": agency.get("city"), "state": agency.get("state"),
                    "county": agency.get("county"), "active_date": agency.get("active_date"),
                    "fields": to_json([name]),
                    "before": to_json({name: before}), "after": to_json({name: after}),
                    "alert": 0, "snapshot": None, "before_snapshot": None, "origin": None,
                })  # fmt: skip
        return rows

    def in_order(self) -> list[dict[str, Any]]:
        """Every change-log row in order, then every churn entry as a row of its own: what
        `ringwatch verify` compares with a replay."""
        rows = list(self.db.query("select * from changes order by id"))
        return rows + self.churn_rows(self.db.query("select * from churn order by id"))

    def next_id(self) -> int:
        """The next change id: `changes` rows and churn entries are numbered in one sequence."""
        sql = """select max(coalesce((select max(id) from changes), 0),
            coalesce((select first_id + agencies - 1 from churn order by id desc limit 1), 0))"""
        return self.db.execute(sql).fetchone()[0] + 1

    def append(
        self,
        poll_id: int,
        poll: PollRecord,
        changes: list[Change],
        now: str,
        before_snapshot: str | None,
    ) -> list[tuple[int, Change]]:
        """Log `changes`: one `changes` row each, except field changes that do not alert,
        which go to `churn` compactly; returns the logged rows, numbered. `before_snapshot`
        is the document the stored agencies were last read from: where a "before" is found."""
        churn = [c for c in changes if c.kind == ChangeKind.CHANGED and not c.alert]
        changes = [c for c in changes if c.kind != ChangeKind.CHANGED or c.alert]
        start = self.next_id()
        numbered = list(enumerate(changes, start))
        first_id = start + len(changes)  # the churn's entries follow the poll's rows
        churn_rows = []
        for name, values in sorted(churn_by_field(churn).items()):
            churn_rows.append({"poll_id": poll_id, "detected_at": now, "field": name,
                               "agencies": len(values), "data": pack_churn(values),
                               "first_id": first_id})  # fmt: skip
            first_id += len(values)
        insert_rows(self.db, "churn", churn_rows)
        insert_rows(
            self.db,
            "changes",
            (
                {
                    "id": change_id,
                    "uuid": str(uuid.uuid4()),
                    "poll_id": poll_id,
                    "detected_at": now,
                    "kind": change.kind,
                    "key": change.key,
                    "name": change.agency.name,
                    "city": change.agency.city,
                    "state": change.agency.state,
                    "active_date": change.agency.active_date,
                    "county": change.agency.county,
                    "fields": to_json(list(change.fields)) if change.fields else None,
                    "before": to_json(change.before),
                    "after": to_json(change.after),
                    "alert": int(change.alert),
                    "snapshot": poll.snapshot,
                    "before_snapshot": before_snapshot,
                    "origin": poll.origin,
                }
                for change_id, change in numbered
            ),
        )
        return numbered
