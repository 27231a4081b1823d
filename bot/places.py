"""Where things are: counties named as people say them, ZIP codes and towns, distances,
and the one filter (states, counties, places) every recipient and read command uses.

Offline data only: county outlines from the bundled Census boundaries (bot.boundaries)
and ZIP code centroids from the `zipcodes` package (MIT), both loaded on first use.
A ZIP code is a delivery route, not an area: it stands for its centroid. The filter's
SQL form, for the read commands, is `bot.queries.filter_sql`.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import zipcodes

from bot import boundaries
from bot.areas import (
    DEFAULT_RADIUS_MILES,
    KM_PER_MILE,
    MAX_RADIUS_MILES,
    County,
    Filter,
    Place,
)
from bot.models import Agency
from bot.normalise import US_STATES, city_key, clean_text, state_code

log = logging.getLogger(__name__)


class PlaceError(ValueError):
    """Input that names no place, county or distance: its text is the short answer for a
    person (the caller escapes and caps the user's words it quotes)."""


def in_words(flt: Filter) -> str:
    """What a filter follows: "Minnesota; Hennepin County, MN; within 25 miles of ZIP 55427"."""
    parts = [US_STATES.get(code, code) for code in sorted(flt.states)]
    parts += [str(county) for county in sorted(flt.counties)]
    parts += [str(place) for place in flt.places]
    return "; ".join(parts) or "everything"


# --- reading what people type --------------------------------------------------------------

_RADIUS = re.compile(
    r"^\s*(?P<n>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>mi|mile|miles|km|kms|kilometers?|kilometres?)?\s*$",
    re.IGNORECASE,
)
RADIUS_EXAMPLE = 'a distance such as "10", "10mi", "25 miles" or "40km"'


def parse_radius(text: str) -> float:
    """ "10", "10mi", "25 miles", "40km" → miles (above 0, at most MAX_RADIUS_MILES)."""
    found = _RADIUS.match(text or "")
    if not found:
        raise PlaceError(f"That is not a distance: try {RADIUS_EXAMPLE}.")
    miles = float(found["n"])
    if (found["unit"] or "mi").lower().startswith("k"):
        miles /= KM_PER_MILE
    if miles <= 0 or miles > MAX_RADIUS_MILES:
        raise PlaceError(
            f"The radius must be above 0 and at most {MAX_RADIUS_MILES:.0f} miles: try "
            f"{RADIUS_EXAMPLE}."
        )
    return round(miles, 2)


_POINT = re.compile(r"^\s*(-?[0-9]+(?:\.[0-9]+)?)\s*,\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$")
_ZIP = re.compile(r"^\s*([0-9]{5})(?:-[0-9]{4})?\s*$")


@dataclass(frozen=True, slots=True)
class ZipPlace:
    """One ZIP code's centroid and where the Postal Service puts it."""

    zip: str
    lat: float
    lon: float
    city: str
    state: str
    county: str
    towns: tuple[str, ...] = field(default=())  # the city and the other names it accepts


def _zip_place(row: dict[str, Any]) -> ZipPlace:
    towns = (row["city"], *row["acceptable_cities"])
    return ZipPlace(row["zip_code"], float(row["lat"]), float(row["long"]), row["city"],
                    row["state"], row["county"], tuple(towns))  # fmt: skip


def zip_place(text: str) -> ZipPlace:
    found = _ZIP.match(text or "")
    rows = zipcodes.matching(found[1]) if found else []
    if not rows or not rows[0]["lat"] or rows[0]["state"] not in US_STATES:
        shown = clean_text(text)[:20]
        raise PlaceError(f"No US ZIP code {shown}: try a five-digit one like 55427.")
    return _zip_place(rows[0])


def parse_point(text: str, radius_miles: float = DEFAULT_RADIUS_MILES) -> Place:
    """A ZIP code ("55427") or "lat,lon" ("45.03,-93.36") → a Place in the United States."""
    found = _POINT.match(text or "")
    if found is None:
        place = zip_place(text)
        return Place(place.lat, place.lon, radius_miles, place.zip)
    return point_in_us(float(found[1]), float(found[2]), radius_miles)


def point_in_us(lat: float, lon: float, radius_miles: float = DEFAULT_RADIUS_MILES) -> Place:
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or county_at(lat, lon) is None:
        raise PlaceError(
            "That point is not in the United States: try a ZIP code like 55427 or "
            "latitude,longitude like 45.03,-93.36."
        )
    return Place(lat, lon, radius_miles)


def state_and_rest(text: str) -> tuple[str, str]:
    """ "Hennepin County, Minnesota" → ("MN", "Hennepin County"); "St. Louis MN" too."""
    text = clean_text(text)
    if "," in text:
        rest, _, state = text.rpartition(",")
        return state_code(state), rest.strip()
    words = text.split()
    for size in (3, 2, 1):  # "New Hampshire", "District of Columbia"
        if len(words) > size and (code := state_code(" ".join(words[-size:]))):
            return code, " ".join(words[:-size])
    return "", text


_KIND_WORDS = re.compile(
    r"\s+(county|parish|borough|census area|municipality|city and borough|municipio)$",
    re.IGNORECASE,
)
COUNTY_EXAMPLE = 'a county and its state, like "Hennepin MN" or "Hennepin County, Minnesota"'


def parse_county(text: str) -> County:
    """ "Hennepin MN", "Hennepin County, Minnesota" → County("MN", "Hennepin County"); an
    unknown one is refused with the closest names of that state."""
    state, rest = state_and_rest(text)
    if not state or not rest:
        raise PlaceError(f"Name {COUNTY_EXAMPLE}.")
    bare = _KIND_WORDS.sub("", rest)
    by_bare = {_county_key(name): name for name in counties_of(state)}
    found = by_bare.get(_county_key(bare)) or by_bare.get(_county_key(rest))
    if found:
        return County(state, found)
    close = difflib.get_close_matches(_county_key(bare), list(by_bare), n=1, cutoff=0.6)
    hint = f"; did you mean {_KIND_WORDS.sub('', by_bare[close[0]])}?" if close else ""
    missing = f"No {clean_text(bare)[:40]} County in {state}"
    raise PlaceError(missing + (hint or f": name {COUNTY_EXAMPLE}."))


def _county_key(name: str) -> str:
    """Compared without case, punctuation, "Saint"/"St." or the kind word."""
    name = _KIND_WORDS.sub("", clean_text(name)).lower()
    name = re.sub(r"\bsaint\b|\bste?\b", "st", name)
    return re.sub(r"[^a-z0-9ñ]", "", name)


# --- counties --------------------------------------------------------------------------

# Alaska's county equivalents that are not boroughs (Census names; the rest are boroughs).
_ALASKA_KINDS = {
    "Anchorage": "Municipality", "Juneau": "City and Borough", "Sitka": "City and Borough",
    "Wrangell": "City and Borough", "Yakutat": "City and Borough",
    "Skagway": "Municipality", "Aleutians West": "Census Area", "Bethel": "Census Area",
    "Dillingham": "Census Area", "Hoonah-Angoon": "Census Area", "Kusilvak": "Census Area",
    "Nome": "Census Area", "Prince of Wales-Hyder": "Census Area",
    "Southeast Fairbanks": "Census Area", "Valdez-Cordova": "Census Area",
    "Yukon-Koyukuk": "Census Area",
}  # fmt: skip


def county_name(region: boundaries.Region) -> str:
    """The atlas's bare name as people say it: "Hennepin County", "Orleans Parish",
    "Anchorage Municipality", "Baltimore City" (an independent city: FIPS 5xx and up)."""
    name, state = region.name, region.state
    if state == "DC":
        return name
    if state == "LA":
        return f"{name} Parish"
    if state == "AK":
        return f"{name} {_ALASKA_KINDS.get(name, 'Borough')}"
    if state == "PR":
        return f"{name} Municipio"
    if region.fips[2:] >= "500" and state in ("VA", "MD", "MO", "NV"):
        return name if name.endswith("City") else f"{name} City"
    return f"{name} County"


@cache
def counties_of(state: str) -> tuple[str, ...]:
    return tuple(sorted({county_name(r) for r in boundaries.counties() if r.state == state}))


def county_at(lat: float, lon: float) -> County | None:
    """The county holding the point, or None (at sea, abroad)."""
    region = boundaries.county_at(lon, lat)
    return County(region.state, county_name(region)) if region else None


# --- towns --------------------------------------------------------------------------------


@cache
def _towns(state: str) -> dict[str, tuple[ZipPlace, ...]]:
    """city_key → a state's ZIP codes whose city, or a name they accept, is that town."""
    towns: dict[str, list[ZipPlace]] = {}
    for row in zipcodes.filter_by(state=state) if state else ():
        place = _zip_place(row)
        for town in place.towns:
            towns.setdefault(city_key(town), []).append(place)
    return {key: tuple(places) for key, places in towns.items()}


def town_point(city: str, state: str) -> tuple[float, float] | None:
    """The centroid of a town's ZIP codes (those named after it first), or None."""
    places = _towns(state).get(city_key(city), ())
    named = [p for p in places if city_key(p.city) == city_key(city)] or list(places)
    if not named:
        return None
    return (round(sum(p.lat for p in named) / len(named), 4),
            round(sum(p.lon for p in named) / len(named), 4))  # fmt: skip


_COUNTY_IN_NAME = re.compile(
    r"^(?:the\s+)?(?P<county>.+?)\s+(?:county|parish|borough)\b", re.IGNORECASE
)


def named_county(agency: Agency) -> str | None:
    """The county a county agency's own name gives ("Dakota County Sheriff's Office" →
    "Dakota County"), when that county exists in its state."""
    found = _COUNTY_IN_NAME.match(agency.name or "")
    if not found or not agency.state:
        return None
    wanted = _county_key(found["county"])
    return next((n for n in counties_of(agency.state) if _county_key(n) == wanted), None)


# --- where an agency is ------------------------------------------------------------------


def _same_place(agency: Agency, known: Agency) -> bool:
    """Whether the stored record's place still holds: same name, town and point, or no
    point at all."""
    if (agency.name, agency.city, agency.state) != (known.name, known.city, known.state):
        return False
    # A point that vanished from the source says nothing about a move (bot.diff): the
    # last one known stays.
    return (agency.lat, agency.lon) in ((None, None), (known.lat, known.lon))


def locate(agency: Agency, known: Agency | None = None) -> Agency:
    """The agency with its coordinates (the source's point; else its town's centroid,
    marked approximate) and its county. `known` is the stored record of the same key:
    while its place holds, its coordinates and county are reused (no look-up)."""
    if known is not None and _same_place(agency, known):
        return replace(agency, lat=known.lat, lon=known.lon, approximate=known.approximate,
                       county=known.county)  # fmt: skip
    lat, lon, approximate = agency.lat, agency.lon, False
    if lat is None or lon is None:
        point = town_point(agency.city, agency.state)
        lat, lon, approximate = (*point, True) if point else (None, None, False)
    found = county_at(lat, lon) if lat is not None and lon is not None else None
    county = found.name if found and found.state == agency.state else None
    named = named_county(agency)
    if named and named != county:
        if county:  # the name is the agency's own word; the point may be its office's
            log.info("%s's name says %s, its point is in %s: the name wins",
                     agency.name, named, county)  # fmt: skip
        county = named
    return replace(agency, lat=lat, lon=lon, approximate=approximate, county=county)
