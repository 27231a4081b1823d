"""Why a change was recorded: the polls behind it and the source's own record, before and after.

The record is found by re-reading the stored snapshot with the poll's own code (source.parse,
normalise.normalise_record, normalise.disambiguate) and matching the change's key, then
quoting the bytes the source wrote: the `<Placemark>` element, the JSON object, the CSV row.
"""

from __future__ import annotations

import json
import unicodedata
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.config import Config, SourceConfig
from bot.models import ChangeKind
from bot.normalise import city_key, disambiguate, normalise_record
from bot.queries import change_object
from bot.snapshots import SnapshotStore
from bot.source import Fetched
from bot.source.formats import FORMATS, infer_format
from bot.store import Store


class EvidenceError(Exception):
    """The evidence cannot be shown (no such change); worded for the reader."""


@dataclass(frozen=True)
class PollFacts:
    """What one poll fetched: enough to fetch it again, or to check its snapshot."""

    id: int
    at: str
    outcome: str
    origin: str
    url: str | None
    http_status: int | None
    etag: str | None
    last_modified: str | None
    snapshot: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PollFacts:
        return cls(row["id"], row["started_at"], row["outcome"], row.get("origin") or "live",
                   row["url"], row["http_status"], row["etag"], row["last_modified"],
                   row.get("snapshot"))  # fmt: skip


@dataclass(frozen=True)
class SourceRecord:
    """One agency's record as the source wrote it, and the snapshot it was read from."""

    snapshot: str
    poll_id: int
    seen_at: str
    format: str  # kml | json | csv
    record: str


@dataclass(frozen=True)
class Evidence:
    change: dict[str, Any]
    polls: list[PollFacts]
    before: SourceRecord | None
    after: SourceRecord | None
    missing_in: list[PollFacts] | None  # endings: one good poll per confirmation
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "change": self.change,
            "polls": [asdict(p) for p in self.polls],
            "before": asdict(self.before) if self.before else None,
            "after": asdict(self.after) if self.after else None,
        }
        if self.missing_in is not None:
            data["missing_in"] = [asdict(p) for p in self.missing_in]
        if self.notes:
            data["notes"] = self.notes
        return data


# --- the pure part: records of a document, by key ---------------------------------------


def source_records(body: bytes, url: str, config: SourceConfig) -> tuple[str, dict[str, str]]:
    """(format, key → the record as written) of a document, keyed as a poll keys agencies."""
    fetched = Fetched(url=url, status=200, body=body)
    fmt = infer_format(config, fetched)
    reader = FORMATS[fmt]
    fields = [f for _, f in reader.records(body, config, scan=False)]
    texts = reader.quotes(body, config, len(fields))
    agencies = [normalise_record(f or {}) for f in fields]
    if texts is None:  # the byte scan cannot delimit the records: quote the fields read
        texts = [json.dumps(f, indent=2, ensure_ascii=False) for f in fields]
    position = {id(agency): i for i, agency in enumerate(agencies)}
    keyed = disambiguate(agencies)
    by_key = {key: texts[position[id(agency)]] for key, agency in keyed.items()}
    # A key told apart by city ("…~city") may have been given in another order: its city says.
    for key, agency in keyed.items():
        base = key.split("~", 1)[0]
        by_key.setdefault(f"{base}~{city_key(agency.city).replace(' ', '-') or 'x'}", by_key[key])
    return fmt, by_key


# --- the shell: walk the polls behind a change --------------------------------------------


class RecordReader:
    """The records of the snapshots read last, each parsed once. A walk through the change
    log in order (the site) keeps coming back to the same few polls, so only the last
    KEEP parsed documents are kept: memory stays that of a few documents, however long
    the history."""

    KEEP = 4

    def __init__(self, snapshots: SnapshotStore, config: SourceConfig) -> None:
        self.snapshots, self.config = snapshots, config
        self._cache: OrderedDict[str, tuple[str, dict[str, str]]] = OrderedDict()

    def records(self, poll: dict[str, Any]) -> tuple[str, dict[str, str]]:
        sha256 = poll["snapshot"]
        if sha256 in self._cache:
            self._cache.move_to_end(sha256)
        else:
            body = self.snapshots.read(sha256)
            self._cache[sha256] = source_records(body, poll["url"] or "", self.config)
            if len(self._cache) > self.KEEP:
                self._cache.popitem(last=False)
        return self._cache[sha256]

    def find(self, poll: dict[str, Any], key: str) -> SourceRecord | None:
        fmt, by_key = self.records(poll)
        text = by_key.get(key)
        if text is None:
            return None
        return SourceRecord(poll["snapshot"], poll["id"], poll["started_at"], fmt, text)


def record_reader(config: Config) -> RecordReader:
    return RecordReader(SnapshotStore(config.snapshots_dir), config.source)


def _before_key(row: dict[str, Any]) -> str:
    """A rename's record before carries the old key; every other change keeps its key."""
    before = json.loads(row["before"]) if row["before"] else {}
    return before.get("key") or row["key"]


def gather_evidence(
    store: Store, config: Config, change_id: int, reader: RecordReader | None = None
) -> Evidence:
    """The evidence of one change; `reader` shares parsed snapshots across many changes."""
    row = store.changes.row(change_id)
    if row is None:
        raise EvidenceError(f"no change #{change_id} (ringwatch changes --format json lists ids)")
    poll = store.polls.get(row["poll_id"])
    if poll is None:
        raise EvidenceError(
            f"change #{change_id} cites poll {row['poll_id']}, which is not in the database "
            "(ringwatch verify checks the log)"
        )
    reader = reader or record_reader(config)
    notes: list[str] = []
    involved: dict[int, dict[str, Any]] = {poll["id"]: poll}
    kind = row["kind"]

    after = None
    if kind != ChangeKind.REMOVED:
        if poll.get("snapshot"):
            after = reader.find(poll, row["key"])
        else:
            notes.append(f"poll {poll['id']} predates snapshots: the record after is not kept")

    # The good polls before this one (an ending: from this one) are what the diff compared
    # against: the record before is in the newest that lists the agency; for an ending,
    # the ones after it are the confirmations that it was gone.
    before, missing = None, []
    if kind != ChangeKind.BASELINE:
        key = _before_key(row)
        start = poll["id"] if kind == ChangeKind.REMOVED else poll["id"] - 1
        for earlier in store.polls.good_back(start):
            if not earlier.get("snapshot"):
                notes.append(f"poll {earlier['id']} predates snapshots: the search stops there")
                break
            involved[earlier["id"]] = earlier
            if kind == ChangeKind.ADDED:  # the poll before shows the agency was not listed
                break
            before = reader.find(earlier, key)
            if before is not None:
                break
            missing.append(earlier)
    endings = (
        [PollFacts.from_row(p) for p in reversed(missing)] if kind == ChangeKind.REMOVED else None
    )
    return Evidence(
        change=change_object(row),
        polls=[PollFacts.from_row(involved[i]) for i in sorted(involved)],
        before=before,
        after=after,
        missing_in=endings,
        notes=notes,
    )


# --- text for a journalist's note -----------------------------------------------------------


def _poll_line(p: PollFacts) -> str:
    parts = [f"poll {p.id}", p.at, f"{p.outcome}", f"HTTP {p.http_status or '-'}"]
    if p.origin != "live":
        parts.append(f"imported from {p.origin}")
    parts.append(p.url or "-")
    if p.etag:
        parts.append(f"ETag {p.etag}")
    if p.last_modified:
        parts.append(f"Last-Modified {p.last_modified}")
    parts.append(f"snapshot {p.snapshot or '(not kept)'}")
    return "  " + "  ".join(parts)


def _record_block(title: str, record: SourceRecord | None, absent: str) -> list[str]:
    if record is None:
        return [f"{title}: {absent}"]
    head = f"{title} (snapshot {record.snapshot}, poll {record.poll_id}, {record.seen_at}):"
    return [head, *("    " + line for line in record.record.splitlines())]


def _terminal_safe(text: str) -> str:
    """Control characters from the source (an escape sequence in a CSV cell) shown, not run."""
    return "".join(
        ch if ch in "\n\t" or unicodedata.category(ch) != "Cc" else f"\\x{ord(ch):02x}"
        for ch in text
    )


def evidence_json(evidence: Evidence) -> str:
    """`ringwatch evidence --format json`, and the site's data/evidence/<uuid>.json."""
    return json.dumps(evidence.as_json(), indent=2, ensure_ascii=False)


def evidence_text(evidence: Evidence) -> str:
    c = evidence.change
    place = ", ".join(x for x in (c["city"], c["state"]) if x)
    lines = [f"Change #{c['id']}: {c['kind']} - {c['name']}" + (f", {place}" if place else "")]
    lines.append(f"Detected {c['detected_at']}" + (
        f"; Active Date {c['active_date']}" if c["active_date"] else ""))  # fmt: skip
    if c["fields"]:
        lines.append("Fields: " + ", ".join(
            f"{f}: {(c['before'] or {}).get(f)} -> {(c['after'] or {}).get(f)}" for f in c["fields"]
        ))  # fmt: skip
    lines += ["", "Polls:", *(_poll_line(p) for p in evidence.polls), ""]
    before_absent = (
        "not listed" if c["kind"] == ChangeKind.ADDED else "not found in the stored snapshots"
    )
    lines += _record_block("Before", evidence.before, before_absent)
    lines.append("")
    after_absent = (
        "not listed" if c["kind"] == ChangeKind.REMOVED else "not found in the stored snapshot"
    )
    lines += _record_block("After", evidence.after, after_absent)
    if evidence.missing_in is not None:
        lines += ["", f"Missing in {len(evidence.missing_in)} polls in a row:"]
        lines += [_poll_line(p) for p in evidence.missing_in]
    lines += [*("Note: " + n for n in evidence.notes)]
    lines += ["", "Check any snapshot: ringwatch snapshot SHA256 | sha256sum"]
    return _terminal_safe("\n".join(lines)) + "\n"
