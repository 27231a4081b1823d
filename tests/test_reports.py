"""`ringwatch report` and `ringwatch stats` on the bundled snapshots, polled for real.

The expected numbers come from reading the sample KML files directly (an oracle
independent of ringwatch's parser), and every report section is checked against
`ringwatch changes` with the same filters.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from markupsafe import escape

from bot.normalise import US_STATES
from bot.queries import ChangeFilter, query_changes
from bot.render import make_environment
from bot.reports import (
    Report,
    agency_type,
    build_report,
    build_stats,
    headline,
    render_report,
    stats_text,
)
from bot.store import Store
from tests.support.cli import SAMPLES, run_cli

KML = "{http://www.opengis.net/kml/2.2}"
TODAY = datetime.now(UTC).date().isoformat()
TOMORROW = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()


def kml_agencies(name: str) -> dict[tuple[str, str], dict[str, str]]:
    """(name, address) → fields, straight from a sample file."""
    agencies = {}
    for placemark in ET.parse(SAMPLES / name).iter(f"{KML}Placemark"):
        fields = {
            data.get("name"): data.findtext(f"{KML}value") for data in placemark.iter(f"{KML}Data")
        }
        key = (placemark.findtext(f"{KML}name"), placemark.findtext(f"{KML}address"))
        agencies[key] = fields
    return agencies


STATE_CODES = {name: code for code, name in US_STATES.items()}


def state_of(address: str) -> str:
    """'Crystal, MN' → 'MN'; the samples spell a few states out ('Fort Worth, Texas')."""
    state = address.rsplit(", ", 1)[1]
    return STATE_CODES.get(state, state)


LATER = kml_agencies("later.kml")
# Agencies in the later snapshot with an Active Date on or after May 25, 2020.
SINCE_MAY_25 = {key for key, f in LATER.items() if f["Active Date"] >= "2020-05-25"}


def cli_json(*args: str):
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def report(config: Path, *args: str) -> dict:
    return cli_json("report", "--config", str(config), "--format", "json", *args)


def changes(config: Path, *args: str) -> list[dict]:
    return cli_json("changes", "--config", str(config), "--format", "json", *args)


def ids(rows) -> list[int]:
    return sorted(row["id"] for row in rows)


def test_the_oracle_matches_the_known_dataset():
    assert len(SINCE_MAY_25) == 29
    assert len({state_of(address) for _, address in SINCE_MAY_25}) >= 20


def test_report_by_active_date_answers_the_question(sample_config):
    result = report(sample_config, "--since", "2020-05-25", "--by", "active-date")
    states = {state_of(address) for _, address in SINCE_MAY_25}
    counts = result["counts"]
    assert counts["added"] == 29
    assert counts["added_states"] == len(states)
    assert counts["listed_now"] == len(LATER) == 151
    assert result["headline"] == (
        f"29 new partnerships in {len(states)} states since May 25, 2020; 151 in all"
    )
    assert result["by"] == "active-date" and "Active Date" in result["basis"]
    listed = [row for group in result["additions_by_state"] for row in group["rows"]]
    assert len(listed) == 29
    assert {(r["name"], f"{r['city']}, {r['state']}") for r in listed} == SINCE_MAY_25
    for group in result["additions_by_state"]:
        assert group["count"] == len(group["rows"])
        assert {row["state"] for row in group["rows"]} == {group["state"]}
    same = changes(sample_config, "--kind", "added", "--since", "2020-05-25", "--by", "active-date")
    assert ids(result["additions"]) == ids(listed) == ids(same)


def test_report_by_detected_date_matches_changes_for_every_section(sample_config):
    result = report(sample_config, "--since", TODAY)
    assert result["by"] == "detected"
    counts = result["counts"]
    assert (counts["added"], counts["removed"], counts["renamed"], counts["changed"]) == (
        29, 1, 1, 1,
    )  # fmt: skip
    logged = changes(sample_config, "--since", TODAY)
    for kind, section in (("added", "additions"), ("removed", "endings"), ("renamed", "renames")):
        assert ids(result[section]) == ids(row for row in logged if row["kind"] == kind)
    assert result["endings"][0]["name"] == "Ridgeland Police Department"
    assert result["renames"][0]["previous_name"] == "Mesa Police Department"
    # The baseline is not "new": with no date filter the detected report still says 29.
    assert report(sample_config)["counts"]["added"] == 29


@pytest.fixture(scope="module")
def sample_db(sample_config):
    store = Store.open(sample_config.parent / "state" / "ringwatch.db", readonly=True)
    yield store.db
    store.close()


@pytest.mark.parametrize(
    "since, until, states, by",
    [
        ("2020-05-25", None, ("MN",), "active-date"),
        (None, None, ("mn", "TX"), "detected"),
        ("2020-05-25", "2020-06-05", (), "active-date"),
        (None, "2019-12-31", (), "active-date"),
        (TOMORROW, None, (), "detected"),
    ],
)
def test_report_filters_match_the_change_query(sample_db, since, until, states, by):
    result = build_report(sample_db, since=since, until=until, states=states, by=by)
    same = query_changes(sample_db, ChangeFilter(since, until, ("added",), states, by))
    assert ids(result.additions) == ids(same)
    wanted = {s.upper() for s in states}
    if wanted:
        assert {row["state"] for row in result.additions} <= wanted
        assert result.listed_now == len([key for key in LATER if state_of(key[1]) in wanted])
    else:
        assert result.listed_now == 151
    # The command the report prints for its additions lists exactly these rows.
    assert result.changes_command("added").split()[:4] == [
        "ringwatch",
        "changes",
        "--kind",
        "added",
    ]


def test_text_report_lists_every_addition_and_says_which_dates(sample_config):
    result = run_cli("report", "--config", str(sample_config), "--since", "2020-05-25",
                     "--by", "active-date")  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("29 new partnerships in ")
    assert "since May 25, 2020; 151 in all." in text.splitlines()[0]
    assert "Dates: additions by Active Date" in text
    for name, address in SINCE_MAY_25:
        assert f"{name}, {address.rsplit(', ', 1)[0]}" in text
    assert "Ridgeland Police Department, Ridgeland, MS" in text
    assert "Mesa Police Department → City of Mesa Police Department, AZ" in text
    assert "new partnerships:  29 in" in text
    assert "ringwatch changes --kind added --since 2020-05-25 --by active-date" in text


@pytest.mark.parametrize("fmt, marker", [("markdown", "## 29 new"), ("html", "<h1>29 new")])
def test_markdown_and_html_reports(sample_db, fmt, marker):
    result = build_report(sample_db, since="2020-05-25", by="active-date")
    text = render_report(make_environment(), result, fmt)
    assert marker in text
    for name, _ in SINCE_MAY_25:
        assert (str(escape(name)) if fmt == "html" else name) in text


def _row(name: str, state: str, active: str, kind: str = "added") -> dict:
    return {"id": 1, "kind": kind, "key": "k", "name": name, "city": "Town", "state": state,
            "detected_at": "2026-01-02T03:04:05Z", "active_date": active, "fields": [],
            "before": None, "after": None}  # fmt: skip


def test_html_report_escapes_names_and_headline_wording():
    rows = [
        _row("Smith & Jones <Township> PD", "PA", "2020-06-01"),
        _row("B PD", "PA", "2020-06-02"),
    ]
    result = Report("2020-05-25", None, (), "active-date", rows, [], [], [], 1333, 50, None)
    assert headline(result) == "2 new partnerships in 1 state since May 25, 2020; 1,333 in all"
    html = render_report(make_environment(), result, "html")
    assert "Smith &amp; Jones &lt;Township&gt; PD" in html
    assert "<Township>" not in html
    until = Report(None, "2020-06-30", ("PA",), "detected", [], [], [], [], 7, 1, None)
    assert headline(until) == "0 new partnerships up to June 30, 2020; 7 listed now in PA"


@pytest.mark.parametrize(
    "name, kind",
    [
        ("Crystal Police Department", "police"),
        ("Dakota County Sheriff's Office", "sheriff"),
        ("Ames Fire Department", "fire"),
        ("Town of Hamden PD", "police"),
        ("Department of Public Safety", "police"),
        ("Harris County Constable Precinct 4", "police"),
        ("County Emergency Management Agency", "other"),
        ("Fireside Village", "other"),
    ],
)
def test_agency_type(name, kind):
    assert agency_type(name) == kind


def test_stats_match_the_sample(sample_config):
    stats = cli_json("stats", "--config", str(sample_config), "--format", "json")
    assert stats["listed"] == 151
    assert sum(stats["by_state"].values()) == 151
    assert sum(stats["by_type"].values()) == 151
    sheriffs = [key for key in LATER if "Sheriff" in key[0]]
    assert stats["by_type"]["sheriff"] == len(sheriffs)
    years = {}
    for fields in LATER.values():
        years[fields["Active Date"][:4]] = years.get(fields["Active Date"][:4], 0) + 1
    # The rename keeps its date and the change only moved a count: the years are the file's.
    assert stats["by_year"] == dict(sorted(years.items()))
    assert sum(stats["by_month"].values()) + stats["undated"] == 151
    videos = [int(f["Video Requests"]) for f in LATER.values() if f.get("Video Requests")]
    assert stats["video_requests"]["total"] == sum(videos)
    assert stats["video_requests"]["agencies_reporting"] == len(videos)
    most = stats["video_requests"]["most"]
    assert most[0]["video_requests"] == max(videos)


def test_stats_text(sample_db):
    text = stats_text(build_stats(sample_db))
    assert text.startswith("151 partnerships listed now in ")
    assert "By agency type (from the name):" in text
    assert "Video requests: " in text


def test_report_rejects_a_bad_date_without_a_traceback(sample_config):
    result = run_cli("report", "--config", str(sample_config), "--since", "2020-13-01")
    assert result.returncode == 2
    assert "is not a date like 2020-05-25" in result.stderr
    assert "Traceback" not in result.stderr
