"""The one filter every recipient and read command uses: states, counties and places (a
point and a radius), and whether a change falls within it. Plain values and arithmetic:
this module imports nothing of ours but bot/models.py, so a `Recipient` (bot/messages.py)
can carry its filter. Reading what people type (ZIP codes, radii, county names) and
where agencies are lives in bot/places.py; the filter's SQL form in bot/queries.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bot.models import Change, ChangeKind

EARTH_RADIUS_MILES = 3958.8
KM_PER_MILE = 1.609344
DEFAULT_RADIUS_MILES = 25.0
MAX_RADIUS_MILES = 250.0
# A subscriber's point is kept to 0.01° (about 1 km), nothing finer: it says where they live.
STORED_DECIMALS = 2


@dataclass(frozen=True, slots=True, order=True)
class County:
    state: str  # "MN"
    name: str  # "Hennepin County", "Orleans Parish", "Anchorage Municipality"

    def __str__(self) -> str:
        return f"{self.name}, {self.state}"


@dataclass(frozen=True, slots=True)
class Place:
    """A point and a radius: everything within `radius_miles` of it (great-circle)."""

    lat: float
    lon: float
    radius_miles: float = DEFAULT_RADIUS_MILES
    zip: str | None = None  # the ZIP code it was named by, if any

    def __str__(self) -> str:
        where = f"ZIP {self.zip}" if self.zip else "a shared location"
        return f"within {distance_text(self.radius_miles)} of {where}"

    def stored(self) -> Place:
        """The same place as it may be kept: rounded to 0.01°."""
        return Place(round(self.lat, STORED_DECIMALS), round(self.lon, STORED_DECIMALS),
                     self.radius_miles, self.zip)  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {"lat": self.lat, "lon": self.lon, "radius_miles": self.radius_miles,
                "zip": self.zip}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Place:
        return cls(data["lat"], data["lon"], data["radius_miles"], data.get("zip"))


@dataclass(frozen=True, slots=True)
class Filter:
    """What a recipient follows: a change matches when any part does (empty: everything)."""

    states: frozenset[str] = frozenset()
    counties: frozenset[County] = frozenset()
    places: tuple[Place, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.states or self.counties or self.places)


@dataclass(frozen=True, slots=True)
class Spot:
    """Where an agency is, as a filter reads it."""

    state: str
    county: str | None
    lat: float | None
    lon: float | None


def spots(change: Change) -> list[Spot]:
    """The agency's place, and for an ending, a rename or a move its place before. A
    record before has no county (derived fields are not logged there): a rename stays in
    its town, so the agency's county stands for it in the same state."""
    agency = change.agency
    found = [Spot(agency.state, agency.county, agency.lat, agency.lon)]
    before = change.before or {}
    if change.kind in (ChangeKind.RENAMED, ChangeKind.REMOVED) and before:
        state = before.get("state") or agency.state
        county = agency.county if state == agency.state else None
        found.append(Spot(state, county, before.get("lat"), before.get("lon")))
    elif before.get("coordinates"):
        lat, lon = before["coordinates"]
        found.append(Spot(agency.state, agency.county, lat, lon))
    return found


def admits(flt: Filter, spot: Spot) -> bool:
    if spot.state in flt.states:
        return True
    if spot.county and County(spot.state, spot.county) in flt.counties:
        return True
    if spot.lat is None or spot.lon is None:
        return False
    return any(
        miles_between(place.lat, place.lon, spot.lat, spot.lon) <= place.radius_miles
        for place in flt.places
    )


def matches(flt: Filter, change: Change) -> bool:
    """Whether a recipient with this filter receives the change (no filter: every change)."""
    return not flt or any(admits(flt, spot) for spot in spots(change))


def miles_between(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in miles (haversine)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_MILES * math.asin(math.sqrt(min(1.0, a)))


def distance_text(miles: float) -> str:
    """ "6 miles", "1 mile", "0.4 miles"."""
    shown = f"{miles:.1f}" if miles < 1 else f"{miles:.0f}"
    return f"{shown} mile{'' if shown == '1' else 's'}"
