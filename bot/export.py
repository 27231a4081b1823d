"""`ringwatch export`: the current list of agencies or the change log, as CSV, JSON or GeoJSON.

Reading (agency_rows here, queries.query_changes for the log) is separate from
writing (write_export), a pure function of the rows and a text stream. GeoJSON
coordinates are [lon, lat] as RFC 7946 requires; a record without coordinates is a
Feature with a null geometry.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import sqlite_utils

FORMATS = ("csv", "json", "geojson")
AGENCY_COLUMNS = ("key", "name", "city", "state", "active_date", "video_requests", "profile_url",
                  "lat", "lon", "first_seen", "updated_at", "extra")  # fmt: skip
CHANGE_COLUMNS = ("id", "detected_at", "kind", "key", "name", "city", "state", "active_date",
                  "fields", "before", "after")  # fmt: skip


def agency_rows(db: sqlite_utils.Database, states: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Agencies listed now, by state and name; `extra` decoded."""
    where, params = "active = 1", [s.upper() for s in states]
    if states:
        where += f" and state in ({','.join('?' * len(states))})"
    columns = ", ".join(AGENCY_COLUMNS)
    rows = db.query(f"select {columns} from agencies where {where} order by state, name", params)
    return [{**row, "extra": json.loads(row["extra"]) if row["extra"] else {}} for row in rows]


def _cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value


def write_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    """One header row, then the rows; nested values (before/after, extra) as JSON."""
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])


def _point(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if not record or record.get("lat") is None or record.get("lon") is None:
        return None
    return {"type": "Point", "coordinates": [record["lon"], record["lat"]]}


def geojson(rows: Sequence[dict[str, Any]], what: str) -> dict[str, Any]:
    """A FeatureCollection; a change is placed where its agency is (or was, for an ending)."""
    features = []
    for row in rows:
        if what == "agencies":
            geometry = _point(row)
            properties = {k: v for k, v in row.items() if k not in ("lat", "lon")}
        else:
            geometry = _point(row["after"]) or _point(row["before"])
            properties = dict(row)
        features.append({"type": "Feature", "geometry": geometry, "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def write_export(rows: Sequence[dict[str, Any]], what: str, fmt: str, out: TextIO) -> None:
    if fmt == "csv":
        write_csv(rows, AGENCY_COLUMNS if what == "agencies" else CHANGE_COLUMNS, out)
    elif fmt == "json":
        json.dump(list(rows), out, indent=2, ensure_ascii=False)
        out.write("\n")
    elif fmt == "geojson":
        json.dump(geojson(rows, what), out, ensure_ascii=False)
        out.write("\n")
    else:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def write_atomically(path: Path, data: bytes) -> None:
    """Replace path with data so a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # feeds, charts and exports are for sharing: world-readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
