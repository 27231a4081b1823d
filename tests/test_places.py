"""Where agencies are (coordinates and county, found once and never a change by itself),
and the one filter: reading what people type, distances and what a filter matches."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from bot.areas import County, Filter, Place, matches, miles_between
from bot.models import Agency, Change, ChangeKind
from bot.places import PlaceError, in_words, locate, parse_county, parse_point, parse_radius
from bot.store import Store
from tests.support.cli import run_cli

BEFORE_PLACES_DUMP = Path(__file__).parent / "data" / "agencies-before-places.sql"
CRYSTAL = Agency("mn/crystal-police-department", "Crystal Police Department", "Crystal", "MN",
                 lat=45.03, lon=-93.36)  # fmt: skip
AUSTIN = Agency("tx/austin-police-department", "Austin Police Department", "Austin", "TX",
                lat=30.27, lon=-97.74)  # fmt: skip


def independent_miles(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The spherical law of cosines: another formula for the same great circle."""
    a, b = math.radians(lat1), math.radians(lat2)
    cos = math.sin(a) * math.sin(b) + math.cos(a) * math.cos(b) * math.cos(
        math.radians(lon2 - lon1)
    )
    return 3958.8 * math.acos(max(-1.0, min(1.0, cos)))


@pytest.mark.parametrize(
    ("agency", "county"),
    [
        (CRYSTAL, "Hennepin County"),
        (Agency("mn/duluth", "Duluth Police Department", "Duluth", "MN", lat=46.78, lon=-92.1),
         "St. Louis County"),
        (Agency("la/nopd", "New Orleans Police Department", "New Orleans", "LA", lat=29.95,
                lon=-90.07), "Orleans Parish"),
        (Agency("ak/apd", "Anchorage Police Department", "Anchorage", "AK", lat=61.22,
                lon=-149.9), "Anchorage Municipality"),
        (Agency("va/rpd", "Richmond Police Department", "Richmond", "VA", lat=37.54,
                lon=-77.43), "Richmond City"),
    ],
)  # fmt: skip
def test_an_agency_is_in_its_county_named_as_people_say_it(agency, county):
    assert locate(agency).county == county
    assert locate(agency).approximate is False


def test_an_agency_without_a_point_gets_its_towns_centre_marked_approximate():
    placed = locate(Agency("mn/crystal", "Crystal Police Department", "Crystal", "MN"))
    assert placed.approximate and placed.county == "Hennepin County"
    assert miles_between(placed.lat, placed.lon, 45.0325, -93.3602) < 3  # Crystal's city hall


def test_a_county_agencys_name_wins_over_its_point_and_is_logged(caplog):
    # A sheriff's office whose point is in Minneapolis (Hennepin)
    sheriff = Agency("mn/dakota", "Dakota County Sheriff's Office", "Hastings", "MN",
                     lat=44.98, lon=-93.27)  # fmt: skip
    with caplog.at_level("INFO", logger="bot.places"):
        assert locate(sheriff).county == "Dakota County"
    assert [r.getMessage() for r in caplog.records] == [
        "Dakota County Sheriff's Office's name says Dakota County, its point is in "
        "Hennepin County: the name wins"
    ]


def test_a_known_place_is_kept_while_the_record_keeps_it():
    known = locate(CRYSTAL)
    # the point vanished from the source: the last one known stays, not the town's centre
    again = locate(Agency(CRYSTAL.key, CRYSTAL.name, "Crystal", "MN"), known)
    assert (again.lat, again.lon, again.approximate) == (45.03, -93.36, False)
    assert again.county == "Hennepin County"


def test_an_old_database_gets_places_without_a_change_row_and_keeps_its_subscribers(tmp_path):
    path = tmp_path / "ringwatch.db"
    with sqlite3.connect(path) as old:
        old.executescript(BEFORE_PLACES_DUMP.read_text(encoding="utf-8"))
    store = Store.open(path)
    try:
        rows = store.db.execute(
            "select key, lat, lon, approximate, county from agencies order by key"
        ).fetchall()
        changes = store.db.execute("select kind, key, county from changes order by id").fetchall()
        churn = store.db.execute("select count(*) from churn").fetchone()[0]
        subscribers = store.subscribers.active("telegram")
    finally:
        store.close()
    (crystal, dakota, plymouth) = rows
    assert crystal == ("mn/crystal-police-department", 45.03, -93.36, 0, "Hennepin County")
    assert dakota[3:] == (0, "Dakota County")  # its name wins over a point in Minneapolis
    assert plymouth[0] == "mn/plymouth-police-department" and plymouth[3:] == (1, "Hennepin County")
    assert miles_between(plymouth[1], plymouth[2], 45.0105, -93.4555) < 5  # Plymouth's centre
    assert changes == [  # the same three baseline rows, with their county; nothing new
        ("baseline", "mn/crystal-police-department", "Hennepin County"),
        ("baseline", "mn/plymouth-police-department", "Hennepin County"),
        ("baseline", "mn/dakota-county-sheriffs-office", "Dakota County"),
    ]
    assert churn == 0
    # What they followed is kept: states, and no county or place yet (add_subscriber_places)
    assert [(s.chat_id, s.states, s.counties, s.places, s.title) for s in subscribers] == [
        ("101", ("MN", "WI"), (), (), "Reader"),
        ("102", None, (), (), "All"),
    ]
    assert [in_words(s.follows) for s in subscribers] == ["Minnesota; Wisconsin", "everything"]


# --- reading what people type ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "miles"),
    [("10", 10), ("10mi", 10), ("25 miles", 25), ("40km", 24.85), ("250", 250), ("1.5 mi", 1.5)],
)
def test_a_radius_reads_in_miles_or_kilometres(text, miles):
    assert parse_radius(text) == miles


@pytest.mark.parametrize("text", ["0", "-5", "251", "500km", "far", "10 parsecs", ""])
def test_a_radius_that_is_no_distance_or_out_of_bounds_is_refused(text):
    with pytest.raises(PlaceError, match="try a distance such as"):
        parse_radius(text)


@pytest.mark.parametrize(
    "text", ["Hennepin MN", "Hennepin County, Minnesota", "hennepin, mn", "Hennepin County MN"]
)
def test_a_county_is_read_as_people_write_it(text):
    assert parse_county(text) == County("MN", "Hennepin County")


def test_saint_and_st_are_one_county():
    assert parse_county("Saint Louis County, MN") == County("MN", "St. Louis County")
    assert parse_county("Orleans LA") == County("LA", "Orleans Parish")


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Hennipen MN", "No Hennipen County in MN; did you mean Hennepin?"),
        ("Atlantis MN", "No Atlantis County in MN: name a county"),
        ("Hennepin", 'Name a county and its state, like "Hennepin MN"'),
    ],
)
def test_an_unknown_county_is_refused_with_a_suggestion(text, answer):
    with pytest.raises(PlaceError) as refused:
        parse_county(text)
    assert str(refused.value).startswith(answer)


def test_a_point_is_a_zip_code_or_latitude_and_longitude_in_the_united_states():
    assert parse_point("55427") == Place(45.0, -93.391, 25.0, "55427")
    assert parse_point("45.03, -93.36", 10) == Place(45.03, -93.36, 10)
    for text, answer in [("00000", "No US ZIP code 00000"), ("48.85,2.35", "not in the United")]:
        with pytest.raises(PlaceError, match=answer):
            parse_point(text)


# --- the filter ------------------------------------------------------------------------------


def test_distances_agree_with_an_independent_formula():
    for a, b in [((45.0, -93.391), (45.03, -93.36)), ((46.78, -92.1), (30.27, -97.74))]:
        assert miles_between(*a, *b) == pytest.approx(independent_miles(*a, *b), rel=1e-6)


def test_a_filter_matches_by_state_county_or_place():
    crystal, austin = locate(CRYSTAL), locate(AUSTIN)
    added = [Change(ChangeKind.ADDED, crystal), Change(ChangeKind.ADDED, austin)]
    near = Filter(places=(parse_point("55427", 10),))
    assert [matches(near, c) for c in added] == [True, False]
    county = Filter(counties=frozenset({County("MN", "Hennepin County")}))
    assert [matches(county, c) for c in added] == [True, False]
    assert [matches(Filter(states=frozenset({"TX"})), c) for c in added] == [False, True]
    assert [matches(Filter(), c) for c in added] == [True, True]  # no filter: everything


def test_a_rename_or_ending_matches_on_the_place_before():
    moved = locate(Agency(CRYSTAL.key, "Crystal PD", "Austin", "TX", lat=30.27, lon=-97.74))
    before = {"name": CRYSTAL.name, "state": "MN", "lat": 45.03, "lon": -93.36}
    renamed = Change(ChangeKind.RENAMED, moved, before=before)
    assert matches(Filter(places=(parse_point("55427", 10),)), renamed)
    assert matches(Filter(states=frozenset({"MN"})), renamed)
    renamed_in_town = Change(ChangeKind.RENAMED, locate(CRYSTAL), before={**before, "lat": None})
    hennepin = Filter(counties=frozenset({County("MN", "Hennepin County")}))
    assert matches(hennepin, renamed_in_town)
    assert not matches(hennepin, Change(ChangeKind.ADDED, locate(AUSTIN)))


def test_a_filter_says_what_it_follows_in_words():
    flt = Filter(
        states=frozenset({"MN"}),
        counties=frozenset({County("MN", "Hennepin County")}),
        places=(parse_point("55427"),),
    )
    assert in_words(flt) == "Minnesota; Hennepin County, MN; within 25 miles of ZIP 55427"


# --- the CLI: near, and changes/report by place --------------------------------------------


def test_near_lists_the_agencies_within_the_radius_nearest_first(sample_config):
    result = run_cli("near", "55427", "--radius", "10mi", "--format", "json",
                     "--config", str(sample_config))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    db = sqlite3.connect(sample_config.parent / "state" / "ringwatch.db")
    listed = db.execute("select name, lat, lon from agencies where active = 1").fetchall()
    # The ZIP's centre as zipcodes gives it; the distances computed another way
    expected = sorted(
        (independent_miles(45.0, -93.391, lat, lon), name)
        for name, lat, lon in listed
        if independent_miles(45.0, -93.391, lat, lon) <= 10
    )
    assert [row["name"] for row in rows] == [name for _, name in expected]
    assert [row["miles"] for row in rows] == [round(miles, 1) for miles, _ in expected]
    assert "Crystal Police Department" in [row["name"] for row in rows]
    assert {row["county"] for row in rows} == {"Hennepin County"}
    assert {row["state"] for row in rows} == {"MN"}

    text = run_cli("near", "55427", "--radius", "10", "--config", str(sample_config)).stdout
    assert "Crystal Police Department (Crystal, MN, Hennepin County), since 2020-06-03" in text
    assert text.endswith(f"{len(rows)} agencies within 10 miles of ZIP 55427\n")


def test_changes_by_county_and_place_list_only_theirs(sample_config):
    config = ("--config", str(sample_config), "--format", "json")
    by_county = json.loads(run_cli("changes", "--county", "Hennepin, MN", *config).stdout)
    assert by_county and {row["county"] for row in by_county} == {"Hennepin County"}
    near = json.loads(run_cli("changes", "--near", "55427", "--radius", "10", *config).stdout)
    assert "Crystal Police Department" in {row["name"] for row in near}
    assert {row["state"] for row in near} == {"MN"}
    everything = json.loads(run_cli("changes", *config).stdout)
    assert len(everything) > len(by_county) and all("county" in row for row in everything)
    report = run_cli("report", "--county", "Hennepin MN", "--config", str(sample_config))
    assert "(Hennepin County, MN)" in report.stdout


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("near", "00000"), "No US ZIP code 00000"),
        (("near", "55427", "--radius", "0"), "above 0 and at most 250 miles"),
        (("changes", "--county", "Hennipen, MN"), "did you mean Hennepin?"),
        (("changes", "--radius", "10"), "--radius goes with --near"),
    ],
)
def test_a_bad_place_is_one_clear_error(sample_config, args, error):
    result = run_cli(*args, "--config", str(sample_config))
    assert result.returncode == 2 and error in result.stderr
    assert "Traceback" not in result.stderr
