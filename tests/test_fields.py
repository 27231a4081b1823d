"""Every agency field, declared once in bot.models, followed from a source document to
everything a reader sees: the change log, the exports, the site's data, the webhook body
and the feed. FIELD_CASES is the test table a new field adds a row to
(docs/development.md, "Adding an agency field").

One module-wide run serves every case: a CSV source (its columns named by each field's
first alias) lists agencies; then each case changes one field of its own agency in the
same document; one poll, delivery to a webhook receiver, the feed and the site follow.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import typing
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from bot.channels import enabled_channels
from bot.config import SOURCE_FIELDS
from bot.deliver import deliver_pending
from bot.diff import SAME
from bot.export import agency_rows, change_rows, write_export
from bot.models import (
    AGENCY_FIELDS,
    DEFAULT_ALERT_FIELDS,
    LOGGED_BY_NAME,
    LOGGED_FIELDS,
    PUBLIC_FIELDS,
    READ_FIELDS,
    Agency,
    ChangeKind,
)
from bot.normalise import FIELD_ALIASES, PARSERS, PLACE_ALIASES, agency_key
from bot.poll import run_poll
from bot.publish import publish_after_poll
from bot.site import page_name
from bot.store import Store
from tests.support.bot import Bot
from tests.support.source_server import SourceServer
from tests.support.webhook_receiver import WebhookReceiver

ADDING_A_FIELD = 'docs/development.md, "Adding an agency field"'
ATOM = "{http://www.w3.org/2005/Atom}"


@dataclass(frozen=True)
class FieldCase:
    """One field's change: its text in the source before and after, its value as stored
    after, and how the change log records it. `{i}` in text stands for the agency's
    number, so that no two agencies look alike."""

    before: str
    after: str
    value: Any
    kind: ChangeKind = ChangeKind.CHANGED


# Every public field read from the source; the key, derived from name and state, is
# followed by the name and state cases (a new name or state is a new key).
FIELD_CASES = {
    "name": FieldCase(
        "Town {i} Police Department", "Town {i} Public Safety Department",
        "Town {i} Public Safety Department", ChangeKind.RENAMED,
    ),
    "city": FieldCase("Town {i}", "New Town {i}", "New Town {i}"),
    "state": FieldCase("MN", "Wisconsin", "WI", ChangeKind.ADDED),
    "active_date": FieldCase("2019-06-03", "06/09/2020", "2020-06-09"),
    "video_requests": FieldCase("3", "1,204", 1204),
    "profile_url": FieldCase(
        "https://ring.com/agency/town-{i}", " https://ring.com/agency/town-{i}-pd ",
        "https://ring.com/agency/town-{i}-pd",
    ),
    "lat": FieldCase("45.0327", "45.0627", 45.0627),
    "lon": FieldCase("-93.3602", "-93.3102", -93.3102),
}  # fmt: skip
CASE_INDEX = {name: index for index, name in enumerate(FIELD_CASES)}
# Enough agencies that the cases' alerting changes stay under the guard's 10%.
AGENCIES = 60


def source_text(index: int, changed: str | None = None) -> dict[str, str]:
    """Agency `index`'s record in the source (field → text): every case's `before`, and
    the `after` of the case `changed`."""
    text = {name: case.before for name, case in FIELD_CASES.items()}
    if changed is not None:
        text[changed] = FIELD_CASES[changed].after
    return {name: value.format(i=index) for name, value in text.items()}


def stored(field: str) -> Any:
    """The value a case's field has once its change is stored."""
    value = FIELD_CASES[field].value
    return value.format(i=CASE_INDEX[field]) if isinstance(value, str) else value


def stored_key(field: str) -> str:
    """The key of a case's agency after its change (a new name or state is a new key)."""
    after = {"name": FIELD_CASES["name"].before, "state": FIELD_CASES["state"].before}
    if field in after:
        after[field] = FIELD_CASES[field].value
    return agency_key(after["name"].format(i=CASE_INDEX[field]), after["state"])


def document(rows: list[dict[str, str]]) -> bytes:
    """A CSV whose columns are each field's first alias, as a source would name them (the
    fields of the table: one it lacks fails the test of its coverage, not this)."""
    columns = [spec for spec in READ_FIELDS if spec.name in FIELD_CASES]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([spec.aliases[0] for spec in columns])
    writer.writerows([[row[spec.name] for spec in columns] for row in rows])
    return out.getvalue().encode()


@dataclass(frozen=True)
class Followed:
    """What each reader saw after the poll that changed every case's field."""

    changes: list[dict[str, Any]]  # export --what changes --format json
    changes_csv: list[dict[str, str]]
    agencies: dict[str, dict[str, Any]]  # export --what agencies --format json, by key
    agencies_csv: dict[str, dict[str, str]]
    map: dict[str, Any]  # the site's data/map.json
    site_agencies: dict[str, dict[str, str]]  # the site's data/agencies.csv, by key
    webhook: list[dict[str, Any]]  # bodies the receiver accepted
    feed: list[ET.Element]  # the feed's entries


def _export(rows: list[dict[str, Any]], what: str, fmt: str) -> str:
    out = io.StringIO()
    write_export(rows, what, fmt, out)
    return out.getvalue()


def _by_key(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["key"]: row for row in rows}


@pytest.fixture(scope="module")
def followed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Followed]:
    server, receiver = SourceServer().start(), WebhookReceiver().start()
    directory = tmp_path_factory.mktemp("fields")
    first = [source_text(i) for i in range(AGENCIES)]
    changed = dict(enumerate(FIELD_CASES))
    later = [source_text(i, changed.get(i)) for i in range(AGENCIES)]
    url = server.serve("/agencies.csv", document(first), document(later))
    extra = (
        f'[webhook]\nenabled = true\nurls = ["{receiver.url("/hook")}"]\n'
        f'[feed]\npath = "{directory / "feed.xml"}"\n'
        f'[site]\nenabled = true\nout = "{directory / "site"}"\n'
    )
    bot = Bot.create(directory, url, extra)
    try:
        for _ in range(2):
            config = bot.config
            channels = enabled_channels(config)
            store = Store.open(config.db_path)
            try:
                result = run_poll(config, store, channels)
                publish_after_poll(config, store, changed=bool(result.changes))
                asyncio.run(deliver_pending(store, channels, alerts=config.alerts))
            finally:
                store.close()
        assert result.outcome == "ok", result.summary
        store = Store.open(config.db_path, readonly=True)
        try:
            changes, agencies = change_rows(store.db), agency_rows(store.db)
        finally:
            store.close()
        site = directory / "site" / "data"
        yield Followed(
            changes=json.loads(_export(changes, "changes", "json")),
            changes_csv=list(csv.DictReader(io.StringIO(_export(changes, "changes", "csv")))),
            agencies=_by_key(json.loads(_export(agencies, "agencies", "json"))),
            agencies_csv=_by_key(
                list(csv.DictReader(io.StringIO(_export(agencies, "agencies", "csv"))))
            ),
            map=json.loads((site / "map.json").read_text(encoding="utf-8")),
            site_agencies=_by_key(
                list(
                    csv.DictReader(io.StringIO((site / "agencies.csv").read_text(encoding="utf-8")))
                )
            ),
            webhook=[r.document for r in receiver.accepted("/hook")],
            feed=ET.parse(directory / "feed.xml").getroot().findall(f"{ATOM}entry"),
        )
    finally:
        receiver.stop()
        server.stop()


def alerts(field: str) -> bool:
    """Whether the declaration says a change of `field` is announced (or is churn)."""
    case = FIELD_CASES[field]
    return case.kind != ChangeKind.CHANGED or LOGGED_BY_NAME[logged_name(field)].alerts


def logged_name(field: str) -> str:
    return next(logged.name for logged in LOGGED_FIELDS if field in logged.members)


def logged_row(followed: Followed, field: str) -> dict[str, Any]:
    key = stored_key(field)
    kind = FIELD_CASES[field].kind
    (row,) = [r for r in followed.changes if r["key"] == key and r["kind"] == kind]
    return row


def test_the_table_covers_every_public_field_read_from_the_source():
    read = {spec.name for spec in READ_FIELDS if spec.public}
    assert set(FIELD_CASES) == read, f"FIELD_CASES needs a row of each ({ADDING_A_FIELD})"
    assert set(PUBLIC_FIELDS) - set(FIELD_CASES) == {"key"}  # followed by name and state


@pytest.mark.parametrize("field", FIELD_CASES)
def test_a_changed_field_is_logged_as_declared(followed: Followed, field: str):
    row = logged_row(followed, field)
    value = stored(field)
    if FIELD_CASES[field].kind == ChangeKind.CHANGED:
        name = logged_name(field)
        assert row["fields"] == [name]
        logged = row["after"][name]
        assert value == (logged[LOGGED_BY_NAME[name].members.index(field)]
                         if isinstance(logged, list) else logged)  # fmt: skip
        # Churn (a change that does not alert) is kept compactly, without a change id.
        assert (row["id"] is not None) == alerts(field)
    else:
        assert row["after"][field] == value
    (csv_row,) = [
        r for r in followed.changes_csv if r["key"] == row["key"] and r["kind"] == row["kind"]
    ]
    assert json.loads(csv_row["after"]) == row["after"]


@pytest.mark.parametrize("field", FIELD_CASES)
def test_a_changed_field_arrives_in_the_exports_and_the_site_data(followed: Followed, field: str):
    key, value = stored_key(field), stored(field)
    assert followed.agencies[key][field] == value
    assert followed.agencies_csv[key][field] == str(value)
    assert followed.site_agencies[key][field] == str(value)
    columns = followed.map["columns"]
    (point,) = [p for p in followed.map["agencies"] if p[columns.index("page")] == page_name(key)]
    assert field in columns
    shown = point[columns.index(field)]
    assert shown == (round(value, 5) if isinstance(value, float) else value)


@pytest.mark.parametrize("field", FIELD_CASES)
def test_a_changed_field_reaches_the_webhook_and_the_feed_only_when_it_alerts(
    followed: Followed, field: str
):
    row, key = logged_row(followed, field), stored_key(field)
    bodies = [b for b in followed.webhook if b["agency"]["key"] == key]
    # An entry's content begins with the agency's name and place.
    entries = [
        e for e in followed.feed if e.findtext(f"{ATOM}content").startswith(f"{row['name']} (")
    ]
    if not alerts(field):
        assert bodies == [] and entries == []
        return
    (body,) = bodies
    assert body["kind"] == row["kind"] and body["after"] == row["after"]
    if row["kind"] != ChangeKind.CHANGED:
        assert body["agency"][field] == stored(field)
    else:
        assert LOGGED_BY_NAME[logged_name(field)].label in body["text"]
    (entry,) = entries
    assert entry.findtext(f"{ATOM}title") == body["text"]
    assert entry.find(f"{ATOM}category").get("term") == row["kind"]


# --- the declaration and the database ----------------------------------------------------------

# What a column of each Python type is in SQLite (sqlite-utils' names); `extra` is JSON text.
COLUMN_TYPES = {str: str, int: int, float: float, dict: str}


def unstored_fields(db: sqlite_utils.Database) -> list[str]:
    """Agency fields the `agencies` table has no column of the declared type for."""
    columns = db["agencies"].columns_dict
    hints = typing.get_type_hints(Agency)
    wrong = []
    for spec in AGENCY_FIELDS:
        python_type = next(t for t in typing.get_args(hints[spec.name]) or (hints[spec.name],)
                           if t is not type(None))  # fmt: skip
        python_type = typing.get_origin(python_type) or python_type
        if columns.get(spec.name) is not COLUMN_TYPES[python_type]:
            wrong.append(spec.name)
    return wrong


def test_every_declared_field_has_a_column_in_the_agencies_table(tmp_path):
    store = Store.open(tmp_path / "ringwatch.db")  # every migration step, as a new install
    try:
        missing = unstored_fields(store.db)
    finally:
        store.close()
    assert missing == [], (
        f"Agency fields without a column of their type in the agencies table: {missing}. "
        f"A new field needs a new migration step adding it (see {ADDING_A_FIELD})"
    )


def test_a_field_without_its_column_is_named(tmp_path):
    store = Store.open(tmp_path / "ringwatch.db")
    try:
        store.db.execute("alter table agencies drop column video_requests")
        store.db["agencies"].transform(types={"lat": str})
        assert {"video_requests", "lat"} <= set(unstored_fields(store.db))
    finally:
        store.close()


def test_an_agency_survives_the_database_field_for_field(tmp_path):
    agency = Agency(
        **{
            name: stored(name) if name in FIELD_CASES else f"text of {name}"
            for name in (spec.name for spec in AGENCY_FIELDS if spec.name != "extra")
        },
        extra={"Phone": "555-0100"},
    )
    row = {**agency.as_row(), "extra": json.dumps(agency.extra)}
    assert Agency.from_row(row) == agency and Agency.from_row(row).as_row() == agency.as_row()


# --- the declaration itself --------------------------------------------------------------------


def test_no_source_column_names_two_fields():
    aliases = [alias for spec in READ_FIELDS for alias in spec.aliases]
    aliases += [alias for names in PLACE_ALIASES.values() for alias in names]
    assert len(aliases) == len(set(aliases)) == len(FIELD_ALIASES)


def test_every_kind_in_use_is_read_and_compared():
    assert {spec.kind for spec in READ_FIELDS} <= set(PARSERS)
    assert {logged.kind for logged in LOGGED_FIELDS} <= set(SAME)
    assert all(logged.label for logged in LOGGED_FIELDS)


def test_fields_logged_as_one_are_declared_alike():
    for logged in LOGGED_FIELDS:
        specs = [spec for spec in AGENCY_FIELDS if spec.name in logged.members]
        alike = {(s.kind, s.label, s.alerts, s.order, s.logged_as) for s in specs}
        assert len(alike) == 1, logged.name


def test_the_configuration_docs_name_the_declared_fields():
    """docs/configuration.md's [source] fields and [alerts] alert_fields rows."""
    lines = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    (mapped,) = [line for line in lines.splitlines() if line.startswith("| | `fields` |")]
    (alerting,) = [line for line in lines.splitlines() if line.startswith("| | `alert_fields` |")]
    assert set(re.findall(r"`(\w+)`", mapped.split("(", 1)[1])) == set(SOURCE_FIELDS)
    default, churn = alerting.split("|")[3:5]
    assert set(re.findall(r'"(\w+)"', default)) == set(DEFAULT_ALERT_FIELDS)
    assert set(re.findall(r"`(\w+)`", churn)) == set(LOGGED_BY_NAME) - set(DEFAULT_ALERT_FIELDS)
