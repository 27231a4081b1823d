"""The bundled Census outlines: decoded shapes put known places in their state and county."""

import pytest

from bot import boundaries
from bot.normalise import US_STATES


@pytest.mark.parametrize(
    ("lon", "lat", "county", "state"),
    [
        (-93.36, 45.03, "Hennepin", "MN"),  # Crystal, MN
        (-93.05, 44.70, "Dakota", "MN"),
        (-92.10, 46.78, "St. Louis", "MN"),  # Duluth
        (-97.74, 30.27, "Travis", "TX"),  # Austin
        (-157.86, 21.31, "Honolulu", "HI"),
        (-149.90, 61.22, "Anchorage", "AK"),
    ],
)
def test_a_point_lies_in_its_county_and_state(lon, lat, county, state):
    found = boundaries.county_at(lon, lat)
    assert (found.name, found.state) == (county, state)
    assert boundaries.states()[state].contains(lon, lat)
    assert not boundaries.states()["WI" if state != "WI" else "MN"].contains(lon, lat)


def test_every_state_and_county_is_there():
    assert len(boundaries.states()) == 56
    assert len(boundaries.counties()) == 3231
    assert boundaries.states()["MN"].name == "Minnesota"
    # every state the sources may name has an outline
    assert set(boundaries.STATE_BY_FIPS.values()) == set(US_STATES)


def test_a_point_at_sea_is_in_no_county():
    assert boundaries.county_at(-30.0, 30.0) is None
