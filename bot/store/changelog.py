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


class ChangeLog:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def row(self, change_id: int) -> dict[str, Any] | None:
        rows = list(self.db.query("select * from changes where id = ?", [change_id]))
        return rows[0] if rows else None

    def in_order(self) -> list[dict[str, Any]]:
        """Every change-log row in order, then every churn entry as a row of its own (kind
        `changed`, one field, `before`/`after` as JSON; its id names the churn row): what
        `ringwatch verify` compares with a replay."""
        rows = list(self.db.query("select * from changes order by id"))
        names = dict(self.db.execute("select key, name from agencies"))
        for entry in self.db.query("select * from churn order by id"):
            name = entry["field"]
            for key, (before, after) in sorted(unpack_churn(entry["data"]).items()):
                rows.append({
                    "id": f"{entry['id']} (churn)", "poll_id": entry["poll_id"],
                    "detected_at": entry["detected_at"], "kind": ChangeKind.CHANGED, "key": key,
                    "name": names.get(key, key), "city": None, "state": None,
                    "fields": to_json([name]), "before": to_json({name: before}),
                    "after": to_json({name: after}),
                })  # fmt: skip
        return rows

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
        insert_rows(
            self.db,
            "churn",
            (
                {"poll_id": poll_id, "detected_at": now, "field": name,
                 "agencies": len(values), "data": pack_churn(values)}
                for name, values in sorted(churn_by_field(churn).items())
            ),
        )  # fmt: skip
        start = (self.db.execute("select max(id) from changes").fetchone()[0] or 0) + 1
        numbered = list(enumerate(changes, start))
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
