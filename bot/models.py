"""The records that flow through the pipeline."""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any


class ExitCode(IntEnum):
    """How a ringwatch command ends, for scripts and supervisors (README: "Exit codes")."""

    OK = 0
    CHECK_FAILED = 1  # `verify` found a difference, a stored snapshot is damaged, or
    # `health` found ringwatch unhealthy
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


class FieldKind(StrEnum):
    """What an agency field holds: how normalise reads it from the source's text
    (normalise.PARSERS), how diff tells a real change from noise (diff.SAME), and how
    it is published (a URL leaves ringwatch only when it is http(s): safe.http_url)."""

    NAME = "name"  # text; the same when name_key is (case, punctuation, "PD" aside)
    CITY = "city"  # text; the same when city_key is
    STATE = "state"  # a USPS code
    DATE = "date"  # YYYY-MM-DD, or the source's text when it is no date
    COUNT = "count"  # a whole number ("1,204")
    URL = "url"  # the same when it differs only in case or a trailing slash
    DEGREES = "degrees"  # latitude or longitude; lat and lon are compared as one point
    EXTRA = "extra"  # the source's columns ringwatch does not know, compared case aside


@dataclass(frozen=True, slots=True)
class AgencyField:
    """The one declaration of an Agency field (its dataclass field's metadata).

    `kind` None: the field is not read from the source nor compared (the key, the hash).
    A compared field is logged in `changes.fields` as `logged_as` (lat and lon together
    as "coordinates") or else its own name; `label` names it in alerts, `alerts` is its
    default in alerts.alert_fields (False: churn, logged but not announced), and `order`
    is its place among a change's fields (the change log's order predates this
    declaration; a new field can keep the default and come last). `public` fields are
    exported, published on the site and sent in webhook bodies, in declaration order.
    """

    kind: FieldKind | None = None
    aliases: tuple[str, ...] = ()  # source columns, lower case without punctuation
    label: str = ""
    alerts: bool = False
    order: int = 99
    logged_as: str = ""
    public: bool = False
    # Found by ringwatch from the other fields (bot.places.locate), not read from the source:
    # kept with the agency and the change log's rows, never in a change's before or after.
    derived: bool = False
    name: str = ""  # the dataclass field's name (filled in by AGENCY_FIELDS)


def declared(spec: AgencyField, **options: Any) -> Any:
    """A dataclass field of Agency with its declaration (`options` go to field())."""
    return field(metadata={AgencyField: spec}, **options)


def point_field(aliases: tuple[str, ...]) -> Any:
    """lat or lon: compared as one point, logged as "coordinates", announced as a new
    "location"."""
    spec = AgencyField(FieldKind.DEGREES, aliases, "location", alerts=True, order=3,
                       logged_as="coordinates", public=True)  # fmt: skip
    return declared(spec, default=None)


@dataclass(frozen=True, slots=True)
class Agency:
    """One partner agency, normalised. `key` is stable across cosmetic edits of the source.

    Each field is declared once, here: docs/development.md, "Adding an agency field".
    """

    key: str = declared(AgencyField(public=True))
    name: str = declared(
        AgencyField(
            FieldKind.NAME,
            aliases=("name", "agency", "agencyname", "title"),
            label="name",
            alerts=True,
            order=0,
            public=True,
        )
    )
    city: str = declared(
        AgencyField(
            FieldKind.CITY, aliases=("city",), label="city", alerts=True, order=2, public=True
        )
    )
    state: str = declared(
        AgencyField(
            FieldKind.STATE, aliases=("state",), label="state", alerts=True, order=1, public=True
        )
    )
    active_date: str | None = declared(
        AgencyField(
            FieldKind.DATE,
            aliases=("activedate", "active", "datejoined", "startdate", "launchdate",
                     "partnershipdate"),
            label="active date",
            order=5,
            public=True,
        ),
        default=None,
    )  # fmt: skip
    video_requests: int | None = declared(
        AgencyField(
            FieldKind.COUNT,
            aliases=("videorequests", "requests", "numberofvideorequests"),
            label="video requests",
            order=6,
            public=True,
        ),
        default=None,
    )
    profile_url: str | None = declared(
        AgencyField(
            FieldKind.URL,
            aliases=("agencyprofile", "profile", "profileurl", "url", "link"),
            label="profile",
            alerts=True,
            order=4,
            public=True,
        ),
        default=None,
    )
    lat: float | None = point_field(("latitude", "lat"))
    lon: float | None = point_field(("longitude", "lon", "lng"))
    # Derived, never read from the source nor compared, so never a change by itself
    # (bot.places.locate): `approximate` marks lat/lon as the centroid of the agency's
    # town, for a record without a point of its own; `county` is where the point lies, or
    # the county a county agency's name gives ("Dakota County").
    approximate: bool = declared(
        AgencyField(public=True, derived=True), default=False, compare=False
    )
    county: str | None = declared(
        AgencyField(public=True, derived=True), default=None, compare=False
    )
    # The source's other columns: exported (as JSON, last), never published on the site.
    extra: dict[str, str] = field(
        default_factory=dict,
        compare=False,
        metadata={AgencyField: AgencyField(FieldKind.EXTRA, label="other fields", order=7)},
    )
    # Hash of the source bytes this record came from: equal hash ⇒ nothing to normalise.
    raw_hash: str = declared(AgencyField(), default="", compare=False)

    def as_row(self) -> dict[str, Any]:
        return dict(zip(_COLUMNS, _read_columns(self), strict=True))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Agency:
        """A row of the `agencies` table (or as_row's dict); NULL reads as the field's
        default, and `extra` as stored (JSON text) is decoded."""
        values = {}
        for name, when_null in _COLUMNS.items():
            value = row.get(name)
            values[name] = when_null() if value is None else value
        values["approximate"] = bool(values["approximate"])  # SQLite stores 0 or 1
        if isinstance(values["extra"], str):
            values["extra"] = json.loads(values["extra"] or "{}")
        return cls(**values)


def _when_null(f: dataclasses.Field[Any]) -> Callable[[], Any]:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory
    default = "" if f.default is dataclasses.MISSING else f.default
    return lambda: default


# Column → what a NULL in it reads as: the fields Agency stores, in declaration order.
_COLUMNS: dict[str, Callable[[], Any]] = {f.name: _when_null(f) for f in dataclasses.fields(Agency)}
_read_columns = operator.attrgetter(*_COLUMNS)  # all at once: as_row runs once per agency
# Every field of Agency with its declaration, in declaration order.
AGENCY_FIELDS = tuple(
    dataclasses.replace(f.metadata[AgencyField], name=f.name) for f in dataclasses.fields(Agency)
)
# The fields exported, published on the site and sent in webhook bodies, in this order.
PUBLIC_FIELDS = tuple(f.name for f in AGENCY_FIELDS if f.public)
# The fields every record has, which the change log names its agency by (key, name, city,
# state): those without a default.
REQUIRED_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(Agency)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)
# The public fields a record may lack: what a change-log record adds to its columns.
DETAIL_FIELDS = tuple(name for name in PUBLIC_FIELDS if name not in REQUIRED_FIELDS)
# Found by ringwatch, not read from the source (bot.places.locate).
DERIVED_FIELDS = tuple(f.name for f in AGENCY_FIELDS if f.derived)
# Public fields that hold a link: only an http(s) one leaves ringwatch (safe.http_url).
URL_FIELDS = tuple(f.name for f in AGENCY_FIELDS if f.public and f.kind == FieldKind.URL)


def public_defaults() -> dict[str, Any]:
    """Each public field as a record that lacks it reads ('' for the required text)."""
    return {name: _COLUMNS[name]() for name in PUBLIC_FIELDS}


# Read from the source by normalise (the rest are derived: the key, the hash).
READ_FIELDS = tuple(f for f in AGENCY_FIELDS if f.aliases)


@dataclass(frozen=True, slots=True)
class LoggedField:
    """A name `changes.fields` and alerts.alert_fields use: one compared Agency field, or
    several logged as one (lat and lon as "coordinates")."""

    name: str
    kind: FieldKind
    members: tuple[str, ...]  # the Agency fields it covers
    label: str
    alerts: bool

    @property
    def read(self) -> Callable[[Agency], Any]:
        """Agency → its value: one field's, or a tuple of the members' (lat, lon)."""
        return operator.attrgetter(*self.members)

    def value(self, agency: Agency) -> Any:
        """What the change log records as before or after: [lat, lon] for a point."""
        value = self.read(agency)
        return list(value) if len(self.members) > 1 else value


def _logged_fields() -> tuple[LoggedField, ...]:
    groups: dict[str, list[AgencyField]] = {}
    for spec in AGENCY_FIELDS:
        if spec.kind is not None:
            groups.setdefault(spec.logged_as or spec.name, []).append(spec)
    logged = []
    for name, specs in sorted(groups.items(), key=lambda item: item[1][0].order):
        first = specs[0]
        assert first.kind is not None
        members = tuple(spec.name for spec in specs)
        logged.append(LoggedField(name, first.kind, members, first.label, first.alerts))
    return tuple(logged)


# In the order a change lists them (name, state, city, coordinates, profile_url, …).
LOGGED_FIELDS = _logged_fields()
LOGGED_BY_NAME = {logged.name: logged for logged in LOGGED_FIELDS}
DEFAULT_ALERT_FIELDS = tuple(logged.name for logged in LOGGED_FIELDS if logged.alerts)


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


CARD_DIR = "cards"  # where cards are kept, in the state directory and on the site


@dataclass(frozen=True)
class CardFile:
    """A message's map card as stored in the state directory (bot/cards.py): the PNG,
    its alt text, and its name, which is also its file name on the site (`cards/<name>.png`)."""

    name: str  # a change's uuid, or "digest-" and a hash of the digest's change uuids
    path: str
    alt: str
    width: int
    height: int


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
