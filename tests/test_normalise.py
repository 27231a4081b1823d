"""Normalisation: one stable key per agency through every kind of noise."""

from __future__ import annotations

import pytest

from bot.normalise import (
    disambiguate,
    display_name,
    normalise_record,
    parse_coordinates,
    parse_count,
    parse_date,
    split_address,
    state_code,
)


def record(**fields: str):
    base = {
        "name": "Crystal Police Department",
        "address": "Crystal, MN",
        "Active Date": "2020-06-03",
        "Video Requests": "12",
        "Agency Profile": "https://ring.com/agency/crystal-police-department-mn-4242",
        "coordinates": "-93.3602,45.0327,0",
    }
    return normalise_record({**base, **fields})


def test_a_placemark_becomes_an_agency():
    agency = record()

    assert agency.key == "mn/crystal-police-department"
    assert (agency.name, agency.city, agency.state) == (
        "Crystal Police Department",
        "Crystal",
        "MN",
    )
    assert (agency.active_date, agency.video_requests) == ("2020-06-03", 12)
    assert agency.profile_url == "https://ring.com/agency/crystal-police-department-mn-4242"
    assert (agency.lat, agency.lon) == (45.0327, -93.3602)
    assert agency.extra == {}


@pytest.mark.parametrize(
    "name",
    [
        "CRYSTAL POLICE DEPARTMENT",
        "  Crystal   Police\tDepartment ",
        "Crystal Police Department.",
        "Crystal Police Dept.",
        "Crystal Police Dept",
        "Crystal PD",
        "Crystal P.D.",
        "Crystal Police-Department",
    ],
)
def test_name_noise_keeps_the_key(name):
    assert record(name=name).key == "mn/crystal-police-department"


@pytest.mark.parametrize(
    "address",
    ["Crystal, MN", "Crystal, Minnesota", "Crystal,  minnesota ", "Crystal, MN 55428",
     "Crystal, Minnesota 55428, USA", "crystal, mn"],
)  # fmt: skip
def test_address_noise_keeps_city_and_state(address):
    agency = record(address=address)

    assert agency.state == "MN"
    assert agency.city.lower() == "crystal"
    assert agency.key == "mn/crystal-police-department"


def test_sheriffs_office_spellings_share_a_key():
    a = record(name="Hennepin County Sheriff's Office")
    b = record(name="Hennepin Co. Sheriffs Office")

    assert a.key == b.key


def test_different_agencies_keep_different_keys():
    assert record(name="Crystal Fire Department").key != record().key
    assert record(address="Crystal, MI").key != record().key


@pytest.mark.parametrize(
    ("value", "code"),
    [("MN", "MN"), ("mn", "MN"), ("Minnesota", "MN"), (" minnesota ", "MN"),
     ("District of Columbia", "DC"), ("New York", "NY"), ("Ontario", ""), ("", "")],
)  # fmt: skip
def test_state_codes(value, code):
    assert state_code(value) == code


def test_an_address_without_a_state_keeps_the_text_as_city():
    assert split_address("Somewhere") == ("Somewhere", "")


@pytest.mark.parametrize(
    ("name", "short"),
    [("Crystal Police Department", "Crystal PD"), ("Ames Fire Department", "Ames FD"),
     ("Crystal Police Dept.", "Crystal PD"),
     ("Hennepin County Sheriff's Office", "Hennepin County Sheriff's Office"),
     ("Sandy Springs Department of Public Safety", "Sandy Springs DPS")],
)  # fmt: skip
def test_display_names_are_short(name, short):
    assert display_name(name) == short


@pytest.mark.parametrize(
    ("value", "iso"),
    [("2020-06-03", "2020-06-03"), ("6/3/2020", "2020-06-03"), ("06/03/20", "2020-06-03"),
     ("June 3, 2020", "2020-06-03"), ("Jun 3, 2020", "2020-06-03"),
     ("2020-06-03T00:00:00Z", "2020-06-03"), ("", None), ("soon", "soon")],
)  # fmt: skip
def test_dates(value, iso):
    assert parse_date(value) == iso


def test_counts_and_coordinates():
    assert parse_count("1,204") == 1204
    assert parse_count("n/a") is None
    assert parse_coordinates(" -93.2650000,44.9778000,0 ") == (44.9778, -93.265)
    assert parse_coordinates("999,999") == (None, None)


def test_field_names_are_matched_loosely_and_unknown_fields_are_kept():
    agency = normalise_record(
        {"Agency Name": "Crystal PD", "Location": "Crystal, MN", "Date Joined": "2020-06-03",
         "Latitude": "45.0327", "Longitude": "-93.3602", "Liaison": " Sgt.  Pepper "}
    )  # fmt: skip

    assert agency.key == "mn/crystal-police-department"
    assert agency.active_date == "2020-06-03"
    assert (agency.lat, agency.lon) == (45.0327, -93.3602)
    assert agency.extra == {"Liaison": "Sgt. Pepper"}


def test_the_description_and_style_are_not_kept_as_fields():
    agency = record(description="Active Date: 2020-06-03<br>Video Requests: 12", styleUrl="#i")

    assert agency.extra == {}


def test_two_agencies_with_one_name_in_one_state_get_distinct_keys():
    a = record(address="Washington, PA")
    b = record(address="Franklin, PA")

    by_key = disambiguate([a, b])

    assert {key: agency.city for key, agency in by_key.items()} == {
        "pa/crystal-police-department": "Franklin",
        "pa/crystal-police-department~washington": "Washington",
    }
    assert disambiguate([b, a]) == by_key  # the source's order does not decide


def test_the_stored_holder_of_a_shared_key_keeps_it():
    a = record(address="Washington, PA")
    b = record(address="Franklin, PA")
    stored = {"pa/crystal-police-department": "washington"}

    by_key = disambiguate([b, a], stored_city=stored)

    assert by_key["pa/crystal-police-department"].city == "Washington"
    assert by_key["pa/crystal-police-department~franklin"].city == "Franklin"
