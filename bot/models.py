"""The records that flow through the pipeline."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class Agency:
    """One partner agency, normalised. `key` is stable across cosmetic edits of the source."""

    key: str
    name: str
    city: str
    state: str
    active_date: str | None = None
    video_requests: int | None = None
    profile_url: str | None = None
    lat: float | None = None
    lon: float | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)
    # Hash of the source bytes this record came from: equal hash ⇒ nothing to normalise.
    raw_hash: str = field(default="", compare=False)

    def as_row(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "city": self.city,
            "state": self.state,
            "active_date": self.active_date,
            "video_requests": self.video_requests,
            "profile_url": self.profile_url,
            "lat": self.lat,
            "lon": self.lon,
            "extra": self.extra,
            "raw_hash": self.raw_hash,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Agency:
        extra = row.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra)
        return cls(
            key=row["key"],
            name=row["name"],
            city=row["city"] or "",
            state=row["state"] or "",
            active_date=row.get("active_date"),
            video_requests=row.get("video_requests"),
            profile_url=row.get("profile_url"),
            lat=row.get("lat"),
            lon=row.get("lon"),
            extra=extra,
            raw_hash=row.get("raw_hash") or "",
        )


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change log, before it has an id.

    kind: baseline | added | removed | renamed | changed.
    `fields` names what changed (for `changed` and `renamed`); `alert` says whether
    the change is announced or only logged.
    """

    kind: str
    agency: Agency
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    fields: tuple[str, ...] = ()
    alert: bool = True

    @property
    def key(self) -> str:
        return self.agency.key


class Origin(StrEnum):
    """Where a poll's document came from: fetched live, or imported from the past."""

    LIVE = "live"
    FILE = "file"
    GIT = "git"
    WAYBACK = "wayback"
