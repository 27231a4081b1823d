"""An Atom feed of the change log, for feed readers and for other sites to embed.

build_feed is a pure function of change-log rows (as queries.query_changes returns
them); write_feed reads the last N changes and replaces the file atomically. Entry ids
are tag URIs of the database's install id and the change's UUID
(`tag:ringwatch,2026:install/<install id>/change/<uuid>`): a reader never sees an entry
twice however often the file is rewritten, and never mistakes a change of a new or
reset database for one it has seen (row ids start again at 1 there). The feed's
<updated> is the newest change's time, so rewriting without new changes gives the same
bytes. The poll writes it after every commit that logged a change (bot/poll.py).

Only http(s) links are emitted (bot/safe.py); an agency's other "profile URL" is left out.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import jinja2
import sqlite_utils

from bot.export import write_atomically
from bot.messages import Style
from bot.models import DETAIL_FIELDS, URL_FIELDS, Agency, Change, ChangeKind
from bot.queries import ChangeFilter, install_id, query_changes
from bot.render import make_environment, render_change
from bot.safe import http_url, plain_text

ATOM = "http://www.w3.org/2005/Atom"
TAG = "tag:ringwatch,2026:"
EPOCH = "1970-01-01T00:00:00Z"
# Entry titles are rendered with the alert templates (feed/ overrides text/), links apart.
FEED_STYLE = Style(templates=("feed", "text"), extension="txt", max_length=10_000,
                   include_links=False)  # fmt: skip
KIND_LABELS = {
    ChangeKind.ADDED: "new partnership",
    ChangeKind.REMOVED: "partnership ended",
    ChangeKind.RENAMED: "renamed",
    ChangeKind.CHANGED: "changed",
}


def feed_id(install: str) -> str:
    return f"{TAG}install/{install}/feed"


def entry_id(install: str, change_uuid: str) -> str:
    return f"{TAG}install/{install}/change/{change_uuid}"


def change_from_row(row: dict[str, Any]) -> Change:
    """A change-log object back into the Change the alert templates render: text as one
    plain line (no bidi overrides), a profile URL only when it is http(s)."""
    kind = ChangeKind(row["kind"])
    record = row["after"] if kind != ChangeKind.REMOVED else row["before"]
    details = (
        record
        if kind in (ChangeKind.ADDED, ChangeKind.REMOVED, ChangeKind.RENAMED) and record
        else {}
    )
    detail = {name: details.get(name) for name in DETAIL_FIELDS}
    detail["active_date"] = row["active_date"]  # the log's own column, set for every kind
    detail.update({name: http_url(detail[name]) for name in URL_FIELDS})
    agency = Agency(
        key=row["key"],
        name=plain_text(row["name"] or ""),
        city=plain_text(row["city"] or ""),
        state=row["state"] or "",
        **detail,
    )
    return Change(kind, agency, row["before"], row["after"], tuple(row["fields"]))


def _summary(row: dict[str, Any], change: Change) -> str:
    agency = change.agency
    where = ", ".join(part for part in (agency.city, agency.state) if part)
    lines = [f"{agency.name} ({where})" if where else agency.name]
    if agency.active_date:
        lines.append(f"Active Date in the source: {agency.active_date}")
    lines.append(f"Detected by ringwatch: {row['detected_at']}")
    if agency.profile_url:
        lines.append(f"Agency profile: {agency.profile_url}")
    return "\n".join(lines)


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def build_feed(
    rows: Sequence[dict[str, Any]],
    *,
    title: str,
    env: jinja2.Environment,
    install: str,
    feed_url: str | None = None,
    source_url: str | None = None,
) -> bytes:
    """Atom XML for change-log rows (any order; written newest first) of the database
    whose install id is `install`; `feed_url` is where the feed is published."""
    ET.register_namespace("", ATOM)
    newest_first = sorted(rows, key=lambda r: r["id"], reverse=True)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _add(feed, "id", feed_id(install))
    _add(feed, "title", title)
    _add(feed, "subtitle", "Every change ringwatch recorded on Ring's Active Agency Map")
    _add(feed, "updated", newest_first[0]["detected_at"] if newest_first else EPOCH)
    author = _add(feed, "author")
    _add(author, "name", "ringwatch")
    _add(feed, "generator", "ringwatch")
    if feed_url := http_url(feed_url):
        _add(feed, "link", rel="self", href=feed_url, type="application/atom+xml")
        # The page of the site the feed is published with: its folder's index.
        _add(feed, "link", rel="alternate", href=urljoin(feed_url, "./"), type="text/html")
    if source_url := http_url(source_url):
        _add(feed, "link", rel="related", href=source_url)
    for row in newest_first:
        change = change_from_row(row)
        entry = _add(feed, "entry")
        _add(entry, "id", entry_id(install, row["uuid"]))
        _add(entry, "title", render_change(env, FEED_STYLE, change))
        _add(entry, "updated", row["detected_at"])
        _add(entry, "published", row["detected_at"])
        _add(entry, "category", term=row["kind"], label=KIND_LABELS.get(row["kind"], row["kind"]))
        if row["state"]:
            _add(entry, "category", term=row["state"], scheme=f"{TAG}state")
        if change.agency.profile_url:
            _add(entry, "link", rel="alternate", href=change.agency.profile_url)
        _add(entry, "content", _summary(row, change), type="text")
    ET.indent(feed)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n"


def write_feed(
    db: sqlite_utils.Database,
    path: Path,
    *,
    entries: int,
    title: str,
    env: jinja2.Environment | None = None,
    feed_url: str | None = None,
    source_url: str | None = None,
) -> int:
    """Write the last `entries` changes to path; return how many entries it holds."""
    rows = query_changes(db, ChangeFilter(limit=entries))
    data = build_feed(rows, title=title, env=env or make_environment(), install=install_id(db),
                      feed_url=feed_url, source_url=source_url)  # fmt: skip
    write_atomically(path, data)
    return len(rows)
