"""Reports and statistics from the change log: `ringwatch report` and `ringwatch stats`,
and the text of `ringwatch changes`, `status` and `snapshots`.

Queries (build_report, build_stats) read the database, always through
queries.query_changes for change-log numbers, so a report never disagrees with
`ringwatch changes` for the same filters. Everything after that is a pure function
of the Report/Stats objects: the headline, the Jinja context, the text/markdown/html
rendering (bot/templates/report/) and the JSON.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from bot.areas import Filter
from bot.models import ChangeKind
from bot.normalise import US_STATES, display_name
from bot.places import in_words
from bot.queries import (
    ChangeFilter,
    StatusReport,
    first_good_poll_time,
    last_good_poll_time,
    listed_agencies,
    listed_now,
    query_changes,
)
from bot.safe import http_url, markdown_text, plain_text

if TYPE_CHECKING:
    import sqlite_utils

FORMATS = ("text", "markdown", "json", "html")
TEMPLATE_EXTENSIONS = {"text": "txt", "markdown": "md", "html": "html"}
AGENCY_TYPES = ("police", "sheriff", "fire", "other")
# The sections of a report, in order (the baseline is not news).
REPORTED_KINDS = (ChangeKind.ADDED, ChangeKind.REMOVED, ChangeKind.RENAMED, ChangeKind.CHANGED)
# The credit every public format carries: the map ringwatch reads, as people view it.
SOURCE_NAME = "Amazon Ring's Active Agency Map"
SOURCE_MAP_URL = "https://www.google.com/maps/d/viewer?mid=1eYVDPh5itXq5acDT9b0BVeQwmESBa4cB"
# Every value a report template prints passes through its format's escaper (Jinja's
# finalize); HTML is autoescaped after that, so text there only loses invisible tricks.
FINALIZE = {"text": plain_text, "markdown": markdown_text, "html": plain_text}

BASIS_TEXT = {
    "detected": "Dates: when ringwatch detected each change.",
    "active-date": (
        "Dates: additions by Active Date, the start date the source gives (agencies already "
        "listed at ringwatch's first poll count too); endings and renames by when ringwatch "
        "detected them."
    ),
}


# --- queries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    since: str | None
    until: str | None
    states: tuple[str, ...]
    by: str
    additions: list[dict[str, Any]]
    endings: list[dict[str, Any]]
    renames: list[dict[str, Any]]
    field_changes: list[dict[str, Any]]
    listed_now: int
    listed_states: int
    as_of: str | None  # when the last good poll finished
    # Detected after `until` (a report of a past period): what its "listed now" includes.
    added_after: int = 0
    ended_after: int = 0
    area: Filter = field(default_factory=Filter)  # counties and places (--county, --near)

    @property
    def addition_states(self) -> list[str]:
        return sorted({row["state"] or "??" for row in self.additions})

    def changes_command(self, kind: str) -> str:
        """The `ringwatch changes` command that lists one section of this report."""
        words = ["ringwatch", "changes", "--kind", kind]
        if self.since:
            words += ["--since", self.since]
        if self.until:
            words += ["--until", self.until]
        for state in self.states:
            words += ["--state", state]
        if kind == ChangeKind.ADDED and self.by != "detected":
            words += ["--by", self.by]
        return shlex.join(words)


def _filter(report_by: str, kind: ChangeKind, **kwargs: Any) -> ChangeFilter:
    # Only additions have a source date; endings, renames and field changes are dated
    # by when ringwatch detected them, whichever basis the report uses.
    return ChangeFilter(kinds=(kind,), by=report_by if kind == ChangeKind.ADDED else "detected",
                        churn=True, **kwargs)  # fmt: skip


def build_report(
    db: sqlite_utils.Database,
    *,
    since: str | None = None,
    until: str | None = None,
    states: Sequence[str] = (),
    by: str = "detected",
    area: Filter | None = None,
) -> Report:
    states, area = tuple(s.upper() for s in states), area or Filter()
    window = {"since": since, "until": until, "states": states, "area": area}
    sections = {kind: query_changes(db, _filter(by, kind, **window)) for kind in REPORTED_KINDS}
    listed = listed_now(db, states, area)
    after: dict[str, int] = {ChangeKind.ADDED: 0, ChangeKind.REMOVED: 0}
    if until:
        next_day = (date.fromisoformat(until) + timedelta(days=1)).isoformat()
        later = query_changes(
            db, ChangeFilter(since=next_day, kinds=tuple(after), states=states, area=area)
        )
        after |= Counter(row["kind"] for row in later)
    return Report(
        since=since,
        until=until,
        states=states,
        by=by,
        additions=sections[ChangeKind.ADDED],
        endings=sections[ChangeKind.REMOVED],
        renames=sections[ChangeKind.RENAMED],
        field_changes=sections[ChangeKind.CHANGED],
        listed_now=listed.agencies,
        listed_states=listed.states,
        as_of=last_good_poll_time(db),
        added_after=after[ChangeKind.ADDED],
        ended_after=after[ChangeKind.REMOVED],
        area=area,
    )


def headline_report(
    db: sqlite_utils.Database, since: str = "", states: Sequence[str] = ()
) -> Report:
    """The report behind a public headline (the site's, a card's): with a configured date
    (`[site] since`) it asks about the past and counts by the source's Active Date; by
    default it counts what ringwatch saw begin since it started watching."""
    if since:
        return build_report(db, since=since, by="active-date", states=states)
    first_poll = (first_good_poll_time(db) or "")[:10] or None
    return build_report(db, since=first_poll, by="detected", states=states)


@dataclass(frozen=True)
class Stats:
    listed: int
    by_state: list[tuple[str, int]]  # most first
    by_type: dict[str, int]
    by_year: list[tuple[str, int]]  # oldest first
    by_month: list[tuple[str, int]]  # YYYY-MM, oldest first
    undated: int
    video_requests_total: int
    video_requests_agencies: int
    top_video_requests: list[dict[str, Any]] = field(default_factory=list)
    as_of: str | None = None


def agency_type(name: str) -> str:
    """police | sheriff | fire | other, from the agency's name."""
    text = name.lower()
    if "sheriff" in text:
        return "sheriff"
    if re.search(
        r"\bpolice\b|\bpd\b|public safety|\bmarshal|\bconstable|law enforcement|\btrooper", text
    ):
        return "police"
    if re.search(r"\bfire\b|\bfirefighters?\b|\bems\b", text):
        return "fire"
    return "other"


def build_stats(db: sqlite_utils.Database, *, top: int = 10) -> Stats:
    rows = listed_agencies(db, ("name", "city", "state", "active_date", "video_requests"))
    states = Counter(row["state"] or "??" for row in rows)
    dated = [row["active_date"] for row in rows if row["active_date"]]
    types = Counter(agency_type(row["name"]) for row in rows)
    with_videos = [row for row in rows if row["video_requests"] is not None]
    most_videos = sorted(with_videos, key=lambda r: (-r["video_requests"], r["name"]))[:top]
    return Stats(
        listed=len(rows),
        by_state=sorted(states.items(), key=lambda item: (-item[1], item[0])),
        by_type={kind: types.get(kind, 0) for kind in AGENCY_TYPES},
        by_year=sorted(Counter(d[:4] for d in dated).items()),
        by_month=sorted(Counter(d[:7] for d in dated).items()),
        undated=len(rows) - len(dated),
        video_requests_total=sum(row["video_requests"] for row in with_videos),
        video_requests_agencies=len(with_videos),
        top_video_requests=[
            {k: row[k] for k in ("name", "city", "state", "video_requests")} for row in most_videos
        ],
        as_of=last_good_poll_time(db),
    )


# --- pure formatting -----------------------------------------------------------------------


def long_date(iso: str) -> str:
    """'2020-05-25' → 'May 25, 2020'."""
    day = date.fromisoformat(iso[:10])
    return f"{day:%B} {day.day}, {day.year}"


def period_phrase(since: str | None, until: str | None) -> str:
    if since and until:
        return f"between {long_date(since)} and {long_date(until)}"
    if since:
        return f"since {long_date(since)}"
    if until:
        return f"up to {long_date(until)}"
    return "in ringwatch's whole record"


def count_phrase(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def headline(report: Report) -> str:
    """'29 new partnerships in 20 states since May 25, 2020; 1,333 in all'."""
    states = report.addition_states
    where = f" in {count_phrase(len(states), 'state')}" if report.additions else ""
    total = (
        f"{report.listed_now:,} in all"
        if not report.until
        else (f"{report.listed_now:,} listed now")
    )
    if report.states:
        total += f" in {', '.join(report.states)}"
    if report.area:
        total += f" ({in_words(report.area)})"
    new = count_phrase(len(report.additions), "new partnership")
    return f"{new}{where} {period_phrase(report.since, report.until)}; {total}"


def _row_context(row: dict[str, Any]) -> dict[str, Any]:
    before = row["before"] or {}
    record = row["after"] or before
    detected_on = (row["detected_at"] or "")[:10]
    return {
        **row,
        "display_name": display_name(row["name"] or ""),
        "detected_on": detected_on,
        "detected_on_long": long_date(detected_on) if detected_on else "",
        "active_date_long": long_date(row["active_date"]) if row["active_date"] else "",
        "profile_url": http_url(record.get("profile_url")),
        "previous_name": before.get("name"),
        "previous_display_name": display_name(before.get("name") or ""),
    }


def group_by_state(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows grouped by state: most rows first, then alphabetical."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["state"] or "??", []).append(row)
    ordered = sorted(
        groups.items(), key=lambda item: (-len(item[1]), US_STATES.get(item[0], item[0]))
    )
    return [
        {"state": state, "state_name": US_STATES.get(state, state), "count": len(items),
         "rows": sorted(items, key=lambda r: (r["active_date"] or "", r["name"]))}
        for state, items in ordered
    ]  # fmt: skip


def report_context(report: Report) -> dict[str, Any]:
    """Everything the report templates and the JSON need: one source for both."""
    additions = [_row_context(r) for r in report.additions]
    return {
        "headline": headline(report),
        "since": report.since,
        "until": report.until,
        "states": list(report.states),
        "area": str(report.area) if report.area else None,
        "by": report.by,
        "basis": BASIS_TEXT[report.by],
        "as_of": report.as_of,
        "as_of_long": long_date(report.as_of) if report.as_of else None,
        "source_name": SOURCE_NAME,
        "source_url": SOURCE_MAP_URL,
        "counts": {
            ChangeKind.ADDED: len(report.additions),
            "added_states": len(report.addition_states),
            ChangeKind.REMOVED: len(report.endings),
            ChangeKind.RENAMED: len(report.renames),
            ChangeKind.CHANGED: len(report.field_changes),
            "listed_now": report.listed_now,
            "listed_states": report.listed_states,
        },
        "additions_by_state": group_by_state(additions),
        "endings": [_row_context(r) for r in report.endings],
        "renames": [_row_context(r) for r in report.renames],
        "commands": {kind: report.changes_command(kind) for kind in REPORTED_KINDS},
    }  # fmt: skip


def report_json(report: Report) -> str:
    context = report_context(report)
    context["additions"] = report.additions
    return json.dumps(context, indent=2, ensure_ascii=False)


def render_report(env: jinja2.Environment, report: Report, fmt: str) -> str:
    """The report as text, markdown, html (templates in bot/templates/report/) or json."""
    if fmt == "json":
        return report_json(report)
    escaping = env.overlay(finalize=FINALIZE[fmt])
    template = escaping.get_template(f"report/report.{TEMPLATE_EXTENSIONS[fmt]}")
    return template.render(**report_context(report)).strip() + "\n"


def stats_dict(stats: Stats) -> dict[str, Any]:
    return {
        "listed": stats.listed,
        "as_of": stats.as_of,
        "by_state": dict(stats.by_state),
        "by_type": stats.by_type,
        "by_year": dict(stats.by_year),
        "by_month": dict(stats.by_month),
        "undated": stats.undated,
        "video_requests": {
            "total": stats.video_requests_total,
            "agencies_reporting": stats.video_requests_agencies,
            "most": stats.top_video_requests,
        },
    }


def _columns(pairs: Sequence[tuple[str, int]], per_line: int = 6) -> list[str]:
    cells = [f"{label} {count:,}" for label, count in pairs]
    return ["  " + ", ".join(cells[i : i + per_line]) for i in range(0, len(cells), per_line)]


def stats_text(stats: Stats) -> str:
    lines = [
        f"{count_phrase(stats.listed, 'partnership')} listed now in "
        f"{count_phrase(len(stats.by_state), 'state')}"
        + (f" (as of the poll at {stats.as_of})" if stats.as_of else ""),
        "",
        "By agency type (from the name):",
        "  " + ", ".join(f"{kind} {n:,}" for kind, n in stats.by_type.items()),
        "",
        "By state:",
        *_columns(stats.by_state, per_line=8),
        "",
        "By year joined (Active Date):",
        *_columns(stats.by_year),
    ]
    if stats.undated:
        lines.append(f"  no Active Date: {stats.undated:,}")
    lines += ["", "By month joined:", *_columns(stats.by_month)]
    if stats.video_requests_agencies:
        lines += [
            "",
            f"Video requests: {stats.video_requests_total:,} in all, from "
            f"{count_phrase(stats.video_requests_agencies, 'agency', 'agencies')} "
            "that list a count",
            *(
                f"  {row['video_requests']:>6,}  {row['name']}, {row['state']}"
                for row in stats.top_video_requests
            ),
        ]
    else:
        lines += ["", "Video requests: the source gives no counts"]
    return "\n".join(lines)


def changes_text(rows: Sequence[dict[str, Any]]) -> str:
    """`ringwatch changes` as a table: one line per change, then how many."""
    if not rows:
        return "no changes match"
    lines = []
    for row in rows:
        detail = ""
        if row["kind"] == ChangeKind.RENAMED and row["before"]:
            detail = f"  (was {row['before'].get('name')})"
        elif row["kind"] == ChangeKind.CHANGED:
            detail = "  " + ", ".join(
                f"{f}: {row['before'].get(f)} → {row['after'].get(f)}" for f in row["fields"]
            )
        lines.append(
            f"{row['detected_at'][:16]:16}  {row['kind']:8}  {row['state'] or '--':2}  "
            f"{row['name']}{', ' + row['city'] if row['city'] else ''}"
            f"{'  [' + row['active_date'] + ']' if row['active_date'] else ''}{detail}"
        )
    lines.append(f"{len(rows)} change{'' if len(rows) == 1 else 's'}")
    return "\n".join(lines)


def age_text(seconds: float) -> str:
    """'2d 3h 5m', '4m', '0m': a time span for people, to the minute."""
    days, rest = divmod(max(0, int(seconds)), 86400)
    hours, rest = divmod(rest, 3600)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{rest // 60}m"]
    return " ".join(parts)


def age(iso: str) -> str:
    """'2h 5m' since an ISO time in UTC."""
    return age_text((datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds())


def status_lines(report: StatusReport, database: Path) -> list[str]:
    """`ringwatch status` before each channel's own lines: the polls, the deliveries and
    the last failures (not yet redacted: the caller prints them through bot.logs.redact)."""
    streak = report.bad_streak
    lines = [
        f"database: {database}",
        f"agencies tracked: {report.agencies:,}",
        f"failed or suspect polls in a row: {streak}" + ("  <-- WARNING" if streak else ""),
        "last polls:",
    ]
    for poll in report.polls:
        detail = poll["error"] or (
            f"{poll['records'] or 0} listed: {poll[ChangeKind.ADDED] or 0} new, "
            f"{poll[ChangeKind.REMOVED] or 0} ended, {poll[ChangeKind.RENAMED] or 0} renamed, "
            f"{poll[ChangeKind.CHANGED] or 0} changed"
        )
        if poll.get("warning"):
            detail += f"; {poll['warning']}"
        lines.append(f"  {poll['started_at']}  {poll['outcome']:9}  {detail}")
    oldest = report.oldest_waiting
    lines.append("deliveries:")
    if not report.deliveries:
        lines.append("  none yet")
    for channel, by_status in sorted(report.deliveries.items()):
        text = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
        if channel in oldest:
            text += f"; oldest waiting {age(oldest[channel])} (queued {oldest[channel]})"
        lines.append(f"  {channel}: {text}")
    lines += [
        f"  last failure: {row.channel}:{row.recipient}: {row.last_error}"
        for row in report.failures
    ]
    return lines


def snapshots_text(rows: Sequence[dict[str, Any]]) -> str:
    """`ringwatch snapshots` as a table: one line per stored document, then the total."""
    lines = [
        f"{row['sha256']}  {row['first_seen']}  {row['last_seen']}  "
        f"{row['bytes']:>11,} B  {row['compressed_bytes']:>10,} B stored  "
        f"{row['polls']:>6} poll{'' if row['polls'] == 1 else 's'}"
        for row in rows
    ]
    stored = sum(row["compressed_bytes"] for row in rows)
    lines.append(f"{len(rows)} snapshot{'' if len(rows) == 1 else 's'}, {stored:,} bytes stored")
    return "\n".join(lines)
