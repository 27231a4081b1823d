"""`ringwatch export`: the current list of agencies or the change log, as CSV, JSON or GeoJSON.

Reading (agency_rows, change_rows here; queries.query_changes underneath) is separate
from writing (write_export), a pure function of the rows and a text stream. GeoJSON
coordinates are [lon, lat] as RFC 7946 requires; a record without coordinates is a
Feature with a null geometry. Every Feature has a top-level `id`: the agency's key, or
the change's UUID.

What others open in a spreadsheet or a map must not act: every CSV cell goes through
safe.csv_cell (no formulas) and the `profile_url` column holds http(s) URLs only
(safe.http_url); the change log's before/after keep the source's record as it was.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bot.models import PUBLIC_FIELDS, URL_FIELDS
from bot.queries import ChangeFilter, agency_locations, listed_agencies, query_changes
from bot.safe import csv_cell, http_url

if TYPE_CHECKING:
    import sqlite_utils

FORMATS = ("csv", "json", "geojson")
# The declared public fields, when ringwatch first saw the agency and last updated it, and
# the source's other columns (as JSON).
AGENCY_COLUMNS = (*PUBLIC_FIELDS, "first_seen", "updated_at", "extra")
CHANGE_COLUMNS = ("id", "uuid", "detected_at", "kind", "key", "name", "city", "state", "county",
                  "active_date", "fields", "before", "after")  # fmt: skip


def agency_rows(
    db: sqlite_utils.Database, states: Sequence[str] = (), since: str | None = None
) -> list[dict[str, Any]]:
    """Agencies listed now (first seen by ringwatch on or after `since`, YYYY-MM-DD), by
    state and name; `extra` decoded, `profile_url` only when it is an http(s) URL."""
    listed = listed_agencies(db, AGENCY_COLUMNS, [s.upper() for s in states], since)
    return [
        {**row, **{name: http_url(row[name]) for name in URL_FIELDS},
         "extra": json.loads(row["extra"]) if row["extra"] else {}}
        for row in listed
    ]  # fmt: skip


def change_rows(
    db: sqlite_utils.Database, states: Sequence[str] = (), since: str | None = None
) -> list[dict[str, Any]]:
    """The change log as `ringwatch changes` lists it, each row with `location`: where its
    agency is (or was, for an ending), from the record or, for a field change that did
    not move it, from the agency's row."""
    rows = query_changes(db, ChangeFilter(since=since, states=states, churn=True))
    places = agency_locations(db, sorted({row["key"] for row in rows}))
    return [
        {**row, "location": _point(row["after"]) or _point(row["before"])
         or _point(places.get(row["key"]))}
        for row in rows
    ]  # fmt: skip


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    return csv_cell(value)


def write_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    """One header row, then the rows; nested values (before/after, extra) as JSON, and no
    cell that a spreadsheet would run as a formula."""
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
            feature_id, geometry = row["key"], _point(row)
            properties = {k: v for k, v in row.items() if k not in ("lat", "lon")}
        else:
            feature_id, geometry = row["uuid"], row["location"]
            properties = {k: v for k, v in row.items() if k != "location"}
        features.append({"type": "Feature", "id": feature_id, "geometry": geometry,
                         "properties": properties})  # fmt: skip
    return {"type": "FeatureCollection", "features": features}


def write_export(rows: Sequence[dict[str, Any]], what: str, fmt: str, out: TextIO) -> None:
    if fmt == "csv":
        write_csv(rows, AGENCY_COLUMNS if what == "agencies" else CHANGE_COLUMNS, out)
    elif fmt == "json":
        plain = [{k: v for k, v in row.items() if k != "location"} for row in rows]
        json.dump(plain, out, indent=2, ensure_ascii=False)
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
