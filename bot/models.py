"""The records that flow through the pipeline."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any


class ExitCode(IntEnum):
    """How a ringwatch command ends, for scripts and supervisors (README: "Exit codes")."""

    OK = 0
    CHECK_FAILED = 1  # `verify` found a difference, or a stored snapshot is damaged
    USAGE = 2  # usage or configuration error, or a database that needs a person
    TRANSIENT = 3  # a fetch, parse or delivery failed, or the database was busy or full
    GUARD = 4  # a guard tripped: the fetch was not believed
    LOCKED = 5  # another ringwatch holds the state directory


class ChangeKind(StrEnum):
    """What happened to an agency between two polls (the `changes.kind` column)."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"
    RENAMED = "renamed"
    BASELINE = "baseline"  # listed by the first poll: logged, never announced


class PollOutcome(StrEnum):
    """How a poll ended (the `polls.outcome` column)."""

    BASELINE = "baseline"
    OK = "ok"
    UNCHANGED = "unchanged"
    FAILED = "failed"  # the fetch or the parse failed
    SUSPECT = "suspect"  # a guard held the diff back
    ABANDONED = "abandoned"  # stopped mid-poll: nothing is written


# A good poll's list is trusted as the state of the map.
GOOD_OUTCOMES = (PollOutcome.BASELINE, PollOutcome.OK, PollOutcome.UNCHANGED)
BAD_OUTCOMES = (PollOutcome.FAILED, PollOutcome.SUSPECT)


class OutboxStatus(StrEnum):
    """Where an outbox row is in its delivery (the `outbox.status` column)."""

    PENDING = "pending"
    SENDING = "sending"  # committed right before the send: release_stale retries it
    SENT = "sent"
    FAILED = "failed"  # given up
    SKIPPED = "skipped"  # the recipient is gone


UNSENT_STATUSES = (OutboxStatus.PENDING, OutboxStatus.SENDING)


class MessageKind(StrEnum):
    """What an outbox message is (the `outbox.kind` column)."""

    ALERT = "alert"
    DIGEST = "digest"
    NOTICE = "notice"
    WARNING = "warning"
    SUMMARY = "summary"
    TEST = "test"


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

    `fields` names what changed (for `changed` and `renamed`); `alert` says whether
    the change is announced or only logged.
    """

    kind: ChangeKind
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


@dataclass(frozen=True)
class OutboxMessage:
    """One message for one recipient of one channel, before it has an outbox id.

    `group_key` + `part` identify it (with channel and recipient) so queueing twice
    inserts once; parts of one group are sent in order, and a threaded channel
    replies each part to the one before.
    """

    channel: str
    recipient: str
    kind: MessageKind
    group_key: str
    text: str
    part: int = 0
    change_ids: tuple[int, ...] = ()
    attachment: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        return f"{self.channel}|{self.recipient}|{self.group_key}|{self.part}"
