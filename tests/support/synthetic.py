"""Synthetic Ring "Active Agency Map" data for tests and benchmarks (not installed).

Everything here is deterministic for a given seed and uses only the standard library.

* :func:`generate_agencies` builds ``n`` realistic-looking agencies, unique per ``(name, state)``.
* :func:`mutate` derives a later snapshot (additions, removals, renames, field changes).
* :func:`to_kml` serialises a snapshot in the shape of a Google My Maps KML export.
* :func:`networklink_kml` builds the tiny ``<NetworkLink>`` document Google returns for ``&nl=1``.
"""

from __future__ import annotations

import gc
import random
import re
import unicodedata
from bisect import bisect
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import cache
from itertools import accumulate
from math import log

__all__ = [
    "STATE_BOXES",
    "SyntheticAgency",
    "generate_agencies",
    "mutate",
    "networklink_kml",
    "to_kml",
]

DOCUMENT_NAME = "Ring Active Agency Map"
FOLDER_NAME = "Active Agencies"
STYLE_ID = "icon-1"

FIRST_DATE = date(2018, 3, 1)
LAST_DATE = date(2024, 12, 31)


@dataclass(frozen=True)
class SyntheticAgency:
    name: str
    city: str
    state: str  # USPS code
    active_date: str  # YYYY-MM-DD
    video_requests: int
    profile_url: str
    lon: float
    lat: float


# --------------------------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------------------------

# Rough (lon_min, lat_min, lon_max, lat_max) boxes; good enough to land inside or near a state.
STATE_BOXES: dict[str, tuple[float, float, float, float]] = {
    "AL": (-88.47, 30.22, -84.89, 35.01),
    "AK": (-165.0, 55.0, -141.0, 70.0),
    "AZ": (-114.82, 31.33, -109.05, 37.0),
    "AR": (-94.62, 33.0, -89.64, 36.5),
    "CA": (-124.41, 32.53, -114.13, 42.01),
    "CO": (-109.06, 36.99, -102.04, 41.0),
    "CT": (-73.73, 40.98, -71.79, 42.05),
    "DE": (-75.79, 38.45, -75.05, 39.84),
    "DC": (-77.12, 38.79, -76.91, 38.99),
    "FL": (-87.63, 24.52, -80.03, 31.0),
    "GA": (-85.61, 30.36, -80.84, 35.0),
    "HI": (-160.25, 18.91, -154.81, 22.24),
    "ID": (-117.24, 41.99, -111.04, 49.0),
    "IL": (-91.51, 36.97, -87.5, 42.51),
    "IN": (-88.1, 37.77, -84.78, 41.76),
    "IA": (-96.64, 40.38, -90.14, 43.5),
    "KS": (-102.05, 36.99, -94.59, 40.0),
    "KY": (-89.57, 36.5, -81.96, 39.15),
    "LA": (-94.04, 28.93, -88.82, 33.02),
    "ME": (-71.08, 43.06, -66.95, 47.46),
    "MD": (-79.49, 37.91, -75.05, 39.72),
    "MA": (-73.51, 41.24, -69.93, 42.89),
    "MI": (-90.42, 41.7, -82.41, 48.19),
    "MN": (-97.24, 43.5, -89.49, 49.38),
    "MS": (-91.66, 30.17, -88.1, 34.99),
    "MO": (-95.77, 35.99, -89.1, 40.61),
    "MT": (-116.05, 44.36, -104.04, 49.0),
    "NE": (-104.05, 40.0, -95.31, 43.0),
    "NV": (-120.01, 35.0, -114.04, 42.0),
    "NH": (-72.56, 42.7, -70.61, 45.31),
    "NJ": (-75.56, 38.93, -73.89, 41.36),
    "NM": (-109.05, 31.33, -103.0, 37.0),
    "NY": (-79.76, 40.5, -71.86, 45.02),
    "NC": (-84.32, 33.84, -75.46, 36.59),
    "ND": (-104.05, 45.94, -96.55, 49.0),
    "OH": (-84.82, 38.4, -80.52, 41.98),
    "OK": (-103.0, 33.62, -94.43, 37.0),
    "OR": (-124.57, 41.99, -116.46, 46.29),
    "PA": (-80.52, 39.72, -74.69, 42.27),
    "RI": (-71.86, 41.15, -71.12, 42.02),
    "SC": (-83.35, 32.03, -78.54, 35.22),
    "SD": (-104.06, 42.48, -96.44, 45.95),
    "TN": (-90.31, 34.98, -81.65, 36.68),
    "TX": (-106.65, 25.84, -93.51, 36.5),
    "UT": (-114.05, 37.0, -109.04, 42.0),
    "VT": (-73.44, 42.73, -71.46, 45.02),
    "VA": (-83.68, 36.54, -75.24, 39.47),
    "WA": (-124.85, 45.54, -116.92, 49.0),
    "WV": (-82.64, 37.2, -77.72, 40.64),
    "WI": (-92.89, 42.49, -86.25, 47.31),
    "WY": (-111.06, 40.99, -104.05, 45.01),
}

# Very rough relative weights (population in millions, floor of 0.7) so that big states host more
# agencies, as on the real map.
_STATE_WEIGHTS: dict[str, float] = {
    "AL": 5.0, "AK": 0.7, "AZ": 7.2, "AR": 3.0, "CA": 39.0, "CO": 5.8, "CT": 3.6, "DE": 1.0,
    "DC": 0.7, "FL": 21.5, "GA": 10.7, "HI": 1.4, "ID": 1.8, "IL": 12.8, "IN": 6.8, "IA": 3.2,
    "KS": 2.9, "KY": 4.5, "LA": 4.6, "ME": 1.4, "MD": 6.2, "MA": 7.0, "MI": 10.1, "MN": 5.7,
    "MS": 3.0, "MO": 6.2, "MT": 1.1, "NE": 2.0, "NV": 3.1, "NH": 1.4, "NJ": 9.3, "NM": 2.1,
    "NY": 20.2, "NC": 10.4, "ND": 0.8, "OH": 11.8, "OK": 4.0, "OR": 4.2, "PA": 13.0, "RI": 1.1,
    "SC": 5.1, "SD": 0.9, "TN": 6.9, "TX": 29.1, "UT": 3.3, "VT": 0.7, "VA": 8.6, "WA": 7.7,
    "WV": 1.8, "WI": 5.9, "WY": 0.7,
}  # fmt: skip

# ~300 plausible place names, grouped by the state they belong to.
_CITIES: dict[str, tuple[str, ...]] = {
    "AL": ("Hoover", "Huntsville", "Tuscaloosa", "Auburn", "Dothan", "Madison"),
    "AK": ("Anchorage", "Fairbanks", "Juneau", "Wasilla", "Kenai"),
    "AZ": ("Mesa", "Chandler", "Gilbert", "Scottsdale", "Surprise", "Flagstaff", "Yuma"),
    "AR": ("Rogers", "Bentonville", "Conway", "Fayetteville", "Jonesboro", "Springdale"),
    "CA": (
        "Huntington Beach", "Fontana", "Chula Vista", "Fresno", "Modesto", "Long Beach",
        "Pasadena", "Riverside", "Irvine", "Bakersfield", "Roseville", "Santa Rosa",
    ),
    "CO": ("Aurora", "Lakewood", "Pueblo", "Greeley", "Longmont", "Arvada", "Loveland"),
    "CT": ("Greenwich", "Stamford", "Danbury", "Norwalk", "Milford", "Enfield"),
    "DE": ("Dover", "Newark", "Smyrna", "Milford", "Seaford"),
    "DC": ("Washington",),
    "FL": (
        "Lakeland", "Fort Lauderdale", "Cape Coral", "Sarasota", "Ocala", "Palm Bay",
        "Port St. Lucie", "Coral Springs", "Kissimmee", "Naples",
    ),
    "GA": ("Sandy Springs", "Savannah", "Johns Creek", "Alpharetta", "Roswell", "Macon"),
    "HI": ("Honolulu", "Hilo", "Kailua", "Kapolei", "Lihue"),
    "ID": ("Meridian", "Nampa", "Idaho Falls", "Pocatello", "Caldwell", "Post Falls"),
    "IL": ("Naperville", "Schaumburg", "Aurora", "Joliet", "Peoria", "Elgin", "Orland Park"),
    "IN": ("Westfield", "Carmel", "Fishers", "Noblesville", "Greenwood", "Evansville"),
    "IA": ("Ames", "Cedar Rapids", "Davenport", "Ankeny", "Urbandale", "Dubuque"),
    "KS": ("Overland Park", "Olathe", "Wichita", "Topeka", "Lenexa", "Lawrence"),
    "KY": ("Lexington", "Bowling Green", "Florence", "Owensboro", "Richmond", "Georgetown"),
    "LA": ("Lafayette", "Baton Rouge", "Slidell", "Kenner", "Bossier City", "Lake Charles"),
    "ME": ("Portland", "Bangor", "Lewiston", "Saco", "Biddeford"),
    "MD": ("Frederick", "Rockville", "Gaithersburg", "Bowie", "Hagerstown", "Annapolis"),
    "MA": ("Braintree", "Framingham", "Quincy", "Plymouth", "Worcester", "Newton"),
    "MI": ("Farmington Hills", "Grand Rapids", "Troy", "Novi", "Sterling Heights", "Canton"),
    "MN": ("Crystal", "Bloomington", "Eagan", "Maple Grove", "Rochester", "Brooklyn Park"),
    "MS": ("Ridgeland", "Southaven", "Hattiesburg", "Tupelo", "Olive Branch", "Madison"),
    "MO": ("Lee's Summit", "O'Fallon", "Springfield", "Columbia", "Joplin", "Independence"),
    "MT": ("Billings", "Bozeman", "Missoula", "Great Falls", "Helena", "Kalispell"),
    "NE": ("Omaha", "Lincoln", "Bellevue", "Grand Island", "Kearney", "Papillion"),
    "NV": ("Henderson", "Reno", "Sparks", "North Las Vegas", "Las Vegas", "Carson City"),
    "NH": ("Nashua", "Manchester", "Concord", "Dover", "Salem", "Derry"),
    "NJ": ("Toms River", "Edison", "Cherry Hill", "Woodbridge", "Clifton", "Hamilton"),
    "NM": ("Las Cruces", "Rio Rancho", "Santa Fe", "Roswell", "Farmington", "Hobbs"),
    "NY": ("Greece", "Yonkers", "Clarkstown", "Amherst", "Ramapo", "Colonie", "Syracuse"),
    "NC": ("Cary", "Greensboro", "Apex", "Wilmington", "Concord", "Huntersville"),
    "ND": ("Fargo", "Bismarck", "Grand Forks", "Minot", "West Fargo"),
    "OH": ("Dublin", "Westerville", "Mason", "Hilliard", "Toledo", "Akron", "Lorain"),
    "OK": ("Tulsa", "Edmond", "Norman", "Broken Arrow", "Lawton", "Moore"),
    "OR": ("Hillsboro", "Salem", "Gresham", "Beaverton", "Bend", "Medford"),
    "PA": ("Cranberry", "Lower Merion", "Upper Darby", "Allentown", "Erie", "Lancaster"),
    "RI": ("Warwick", "Cranston", "Pawtucket", "Coventry", "Newport"),
    "SC": ("Greenville", "Rock Hill", "Summerville", "Mount Pleasant", "Spartanburg", "Aiken"),
    "SD": ("Sioux Falls", "Rapid City", "Aberdeen", "Brookings", "Watertown"),
    "TN": ("Franklin", "Clarksville", "Murfreesboro", "Chattanooga", "Brentwood", "Jackson"),
    "TX": (
        "Fort Worth", "Arlington", "Plano", "Round Rock", "McKinney", "Frisco", "Lubbock",
        "Denton", "Sugar Land", "League City", "Allen", "Killeen",
    ),
    "UT": ("Orem", "Provo", "Lehi", "Sandy", "Ogden", "St. George"),
    "VT": ("Burlington", "Rutland", "Essex", "Colchester", "Bennington"),
    "VA": ("Chesapeake", "Virginia Beach", "Leesburg", "Suffolk", "Lynchburg", "Roanoke"),
    "WA": ("Spokane", "Kent", "Yakima", "Everett", "Renton", "Vancouver", "Kirkland"),
    "WV": ("Charleston", "Huntington", "Morgantown", "Parkersburg", "Wheeling"),
    "WI": ("Waukesha", "Brookfield", "Madison", "Green Bay", "Kenosha", "Appleton"),
    "WY": ("Casper", "Cheyenne", "Gillette", "Laramie", "Rock Springs"),
}  # fmt: skip

# County-level jurisdictions (with their real suffix: County / Parish / Borough) for sheriffs.
_COUNTIES: dict[str, tuple[str, ...]] = {
    "AL": ("Jefferson County", "Madison County", "Baldwin County"),
    "AK": ("Matanuska-Susitna Borough", "Kenai Peninsula Borough"),
    "AZ": ("Maricopa County", "Pinal County", "Yavapai County"),
    "AR": ("Benton County", "Pulaski County", "Washington County"),
    "CA": ("Riverside County", "San Bernardino County", "Sacramento County", "Orange County"),
    "CO": ("Arapahoe County", "El Paso County", "Douglas County"),
    "CT": ("Fairfield County", "Hartford County"),
    "DE": ("Kent County", "Sussex County"),
    "DC": (),
    "FL": ("Orange County", "Pinellas County", "Polk County", "Lee County", "Volusia County"),
    "GA": ("Cherokee County", "Henry County", "Forsyth County"),
    "HI": ("Maui County", "Kauai County"),
    "ID": ("Ada County", "Canyon County", "Kootenai County"),
    "IL": ("DuPage County", "Will County", "Lake County"),
    "IN": ("Hamilton County", "Hendricks County", "Johnson County"),
    "IA": ("Polk County", "Linn County", "Story County"),
    "KS": ("Johnson County", "Sedgwick County", "Shawnee County"),
    "KY": ("Boone County", "Kenton County", "Warren County"),
    "LA": ("St. Tammany Parish", "Jefferson Parish", "Lafourche Parish"),
    "ME": ("Cumberland County", "York County"),
    "MD": ("Harford County", "Frederick County", "Charles County"),
    "MA": ("Plymouth County", "Bristol County"),
    "MI": ("Macomb County", "Oakland County", "Kent County"),
    "MN": ("Hennepin County", "Dakota County", "Anoka County", "Washington County"),
    "MS": ("DeSoto County", "Madison County", "Rankin County"),
    "MO": ("Jackson County", "Greene County", "Jefferson County"),
    "MT": ("Yellowstone County", "Gallatin County"),
    "NE": ("Douglas County", "Sarpy County", "Lancaster County"),
    "NV": ("Washoe County", "Nye County", "Elko County"),
    "NH": ("Hillsborough County", "Rockingham County"),
    "NJ": ("Ocean County", "Monmouth County", "Bergen County"),
    "NM": ("Doña Ana County", "Sandoval County", "San Juan County"),
    "NY": ("Suffolk County", "Monroe County", "Onondaga County"),
    "NC": ("Wake County", "Union County", "Iredell County"),
    "ND": ("Cass County", "Burleigh County"),
    "OH": ("Franklin County", "Butler County", "Delaware County", "Lake County"),
    "OK": ("Tulsa County", "Oklahoma County", "Cleveland County"),
    "OR": ("Washington County", "Clackamas County", "Deschutes County"),
    "PA": ("Bucks County", "Chester County", "Lancaster County"),
    "RI": ("Kent County", "Newport County"),
    "SC": ("Charleston County", "Greenville County", "Horry County"),
    "SD": ("Minnehaha County", "Pennington County"),
    "TN": ("Knox County", "Williamson County", "Rutherford County"),
    "TX": ("El Paso County", "Harris County", "Collin County", "Montgomery County"),
    "UT": ("Utah County", "Davis County", "Weber County"),
    "VT": ("Chittenden County", "Rutland County"),
    "VA": ("Loudoun County", "Prince William County", "Henrico County"),
    "WA": ("Snohomish County", "Pierce County", "Spokane County"),
    "WV": ("Kanawha County", "Berkeley County"),
    "WI": ("Waukesha County", "Dane County", "Brown County"),
    "WY": ("Natrona County", "Laramie County"),
}  # fmt: skip

# Agency kinds: (label, weight). Police ~70%, sheriff ~20%, fire ~8%, other ~2%.
_KIND_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("police", 70.0),
    ("sheriff", 20.0),
    ("fire", 8.0),
    ("other", 2.0),
)

# Base name patterns per kind; "{p}" is the place (city, or county for sheriffs).
_BASE_PATTERNS: dict[str, tuple[str, ...]] = {
    "police": ("{p} Police Department",),
    "sheriff": ("{p} Sheriff's Office",),
    "fire": ("{p} Fire Department", "{p} Fire Rescue"),
    "other": (
        "{p} Public Safety Department",
        "{p} Marshal's Office",
        "{p} Department of Public Safety",
    ),
}

# Once a base name is taken in a state it is disambiguated realistically: first with nearby
# place names built from the city ("North Crystal", "Crystal Township", ...), and once those are
# used up, by numbering ("Crystal Police Department District 7").
_PLACE_PREFIXES = ("North", "South", "East", "West", "New", "Lake", "Mount", "Port")
_PLACE_SUFFIXES = ("Township", "Heights", "Village", "Springs", "Park", "Hills", "Borough")
_PLACE_VARIANT_ORDER = (
    "North {p}",
    "{p} Township",
    "South {p}",
    "East {p}",
    "West {p}",
    "{p} Heights",
    "{p} Village",
    "Lake {p}",
    "{p} Springs",
    "{p} Park",
    "New {p}",
    "{p} Hills",
    "Mount {p}",
    "{p} Borough",
    "Port {p}",
)
_SHERIFF_VARIANTS = (
    "{p} Sheriff's Department",
    "{p} Sheriff's Office North Precinct",
    "{p} Sheriff's Office South Precinct",
    "{p} Sheriff's Office East Precinct",
    "{p} Sheriff's Office West Precinct",
)

_place_variant_cache: dict[str, tuple[str, ...]] = {}


def _place_variants(place: str) -> tuple[str, ...]:
    """Nearby-sounding places for ``place``, skipping doubled words ("North North Las Vegas")."""
    cached = _place_variant_cache.get(place)
    if cached is None:
        words = set(place.split())
        cached = tuple(
            v.format(p=place)
            for v in _PLACE_VARIANT_ORDER
            if not words.intersection(v.replace("{p}", "").split())
        )
        _place_variant_cache[place] = cached
    return cached


_SLUG_RE = re.compile(r"[^a-z0-9]+")


def _slug(text: str) -> str:
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _SLUG_RE.sub("-", text.lower()).strip("-")


class _Namer:
    """Hands out names that are unique per (name, state), disambiguating realistically."""

    __slots__ = ("_next_number", "_used", "_variant_pos")

    def __init__(self, existing: Iterable[tuple[str, str]] = ()) -> None:
        self._used: set[tuple[str, str]] = set(existing)
        self._next_number: dict[tuple[str, str], int] = {}
        self._variant_pos: dict[tuple[str, str], int] = {}

    def claim(self, name: str, state: str) -> bool:
        key = (name, state)
        if key in self._used:
            return False
        self._used.add(key)
        return True

    def disambiguate(
        self, key: tuple[str, str], pattern: str, place: str, kind: str, base_slug: str
    ) -> tuple[str, str | None, str]:
        """Next free name for the base name ``key = (base, state)``, which is already taken.

        Returns ``(name, variant_place, slug)``: ``variant_place`` is the nearby place the name
        was built from ("North Crystal"), or ``None`` when the caller's city stands.
        """
        base, state = key
        number = self._next_number.get(key)
        if number is None:
            pos = self._variant_pos.get(key, 0)
            places = _place_variants(place) if kind != "sheriff" else _SHERIFF_VARIANTS
            while pos < len(places):
                if kind == "sheriff":
                    variant_place, candidate = None, _SHERIFF_VARIANTS[pos].format(p=place)
                else:
                    variant_place = places[pos]
                    candidate = pattern.format(p=variant_place)
                pos += 1
                if self.claim(candidate, state):
                    self._variant_pos[key] = pos
                    return candidate, variant_place, _slug(candidate)
            number = 2
        while True:
            candidate = f"{base} District {number}"
            if self.claim(candidate, state):
                self._next_number[key] = number + 1
                return candidate, None, f"{base_slug}-district-{number}"
            number += 1


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while allocating many acyclic objects (halves generation time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_new_object = object.__new__
_set_attribute = object.__setattr__


def _agency(
    name: str,
    city: str,
    state: str,
    active_date: str,
    video_requests: int,
    profile_url: str,
    lon: float,
    lat: float,
) -> SyntheticAgency:
    """Build a SyntheticAgency ~3x faster than the frozen dataclass ``__init__`` (same result)."""
    agency = _new_object(SyntheticAgency)
    _set_attribute(
        agency,
        "__dict__",
        {
            "name": name,
            "city": city,
            "state": state,
            "active_date": active_date,
            "video_requests": video_requests,
            "profile_url": profile_url,
            "lon": lon,
            "lat": lat,
        },
    )
    return agency


# One slot per (state, kind, base-name pattern, place), weighted so that a single draw picks the
# state (by population), the kind (police 70 / sheriff 20 / fire 8 / other 2) and the place.
# Slot: ((base, state), pattern, place, kind, county_cities or None, base_slug, "-st-", box).
_Slot = tuple[
    tuple[str, str],
    str,
    str,
    str,
    tuple[str, ...] | None,
    str,
    str,
    tuple[int, int, int, int],
]


@cache
def _slots() -> tuple[tuple[_Slot, ...], tuple[float, ...]]:
    slots: list[_Slot] = []
    weights: list[float] = []
    for state, state_weight in _STATE_WEIGHTS.items():
        b = STATE_BOXES[state]
        # Boxes in integer micro-degrees: dividing by 1e6 yields short, 6-decimal floats.
        box = (
            round(b[0] * 1e6),
            round((b[2] - b[0]) * 1e6),
            round(b[1] * 1e6),
            round((b[3] - b[1]) * 1e6),
        )
        kinds = [(k, w) for k, w in _KIND_WEIGHTS if k != "sheriff" or _COUNTIES[state]]
        kind_total = sum(w for _, w in kinds)
        for kind, kind_weight in kinds:
            places = _COUNTIES[state] if kind == "sheriff" else _CITIES[state]
            patterns = _BASE_PATTERNS[kind]
            weight = state_weight * kind_weight / kind_total / len(places) / len(patterns)
            for place in places:
                for pattern in patterns:
                    base = pattern.format(p=place)
                    cities = _CITIES[state] if kind == "sheriff" else None
                    slots.append(
                        (
                            (base, state),
                            pattern,
                            place,
                            kind,
                            cities,
                            _slug(base),
                            f"-{state.lower()}-",
                            box,
                        )
                    )
                    weights.append(weight)
    return tuple(slots), tuple(accumulate(weights))


class _Generator:
    """Shared machinery for :func:`generate_agencies` and the additions made by :func:`mutate`."""

    def __init__(self, rng: random.Random, namer: _Namer, last_id: int = 1000) -> None:
        self.rand = rng.random
        self.used = namer._used
        self.disambiguate = namer.disambiguate
        self.slots, self.cum = _slots()
        self.total = self.cum[-1]
        self.next_id = last_id

    def agency(self, day: str) -> SyntheticAgency:
        rand = self.rand
        key, pattern, place, kind, county_cities, slug, url_state, box = self.slots[
            bisect(self.cum, rand() * self.total)
        ]
        state = key[1]
        # A sheriff's address is some city of the county's state.
        city = place if county_cities is None else county_cities[int(rand() * len(county_cities))]
        used = self.used
        if key in used:
            name, variant_place, slug = self.disambiguate(key, pattern, place, kind, slug)
            if variant_place is not None:
                city = variant_place
        else:
            used.add(key)
            name = key[0]
        lon0, lon_span, lat0, lat_span = box
        # Sparse ids, like database ids leaking into public URLs; strictly increasing, so unique.
        self.next_id += 1 + int(rand() * 39)
        return _agency(
            name,
            city,
            state,
            day,
            # Most agencies report a handful of requests; a few are very active.
            0 if rand() < 0.3 else int(-25.0 * log(1.0 - rand())),
            f"https://ring.com/agency/{slug}{url_state}{self.next_id}",
            (lon0 + int(rand() * lon_span)) / 1e6,
            (lat0 + int(rand() * lat_span)) / 1e6,
        )


def generate_agencies(n: int, seed: int = 0) -> list[SyntheticAgency]:
    """Return ``n`` deterministic synthetic agencies, unique per ``(name, state)``.

    Active dates lie between 2018-03-01 and 2024-12-31; the list is in active-date order, like
    the layer the real map grows from.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    gen = _Generator(rng, _Namer())
    span = (LAST_DATE - FIRST_DATE).days + 1
    first = FIRST_DATE.toordinal()
    rand = rng.random
    offsets = sorted(int(rand() * span) for _ in range(n))
    days: dict[int, str] = {}
    agency = gen.agency
    out: list[SyntheticAgency] = []
    append = out.append
    with _gc_paused():
        for offset in offsets:
            day = days.get(offset)
            if day is None:
                day = days[offset] = date.fromordinal(first + offset).isoformat()
            append(agency(day))
    return out


# --------------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------------

_ID_RE = re.compile(r"-(\d+)$")


def _normalised(name: str) -> str:
    return " ".join(name.casefold().replace(".", " ").split())


def _rename_candidates(agency: SyntheticAgency) -> list[str]:
    """Plausible new names, most realistic first (the first free one is used)."""
    name, city = agency.name, agency.city
    out: list[str] = []
    if name.endswith(" Police Department"):
        place = name[: -len(" Police Department")]
        out.append(f"Police Dept. of {place}")
        out.append(f"City of {name}")
    if "Sheriff's Office" in name:
        out.append(name.replace("Sheriff's Office", "Sheriff's Department"))
    elif "Sheriff's Department" in name:
        out.append(name.replace("Sheriff's Department", "Sheriff's Office"))
    if " Fire Department" in name:
        out.append(name.replace(" Fire Department", " Fire Rescue"))
    elif " Fire Rescue" in name:
        out.append(name.replace(" Fire Rescue", " Fire Department"))
    if not name.startswith("City of "):
        out.append(f"City of {name}")
    out.append(f"{name} ({city})")
    return out


def _renamed(agency: SyntheticAgency, namer: _Namer) -> SyntheticAgency:
    old = _normalised(agency.name)
    for candidate in _rename_candidates(agency):
        if _normalised(candidate) != old and namer.claim(candidate, agency.state):
            return replace(agency, name=candidate)
    number = 2
    while not namer.claim(f"{agency.name} ({agency.city} {number})", agency.state):
        number += 1
    return replace(agency, name=f"{agency.name} ({agency.city} {number})")


def _changed(agency: SyntheticAgency, rng: random.Random) -> SyntheticAgency:
    if rng.random() < 0.6:
        return replace(agency, video_requests=agency.video_requests + rng.randint(1, 25))
    # Moved pin: 0.005-0.05 degrees, never a no-op.
    dlon = rng.uniform(0.005, 0.05) * rng.choice((-1, 1))
    dlat = rng.uniform(0.005, 0.05) * rng.choice((-1, 1))
    return replace(agency, lon=round(agency.lon + dlon, 6), lat=round(agency.lat + dlat, 6))


def mutate(
    agencies: Sequence[SyntheticAgency],
    seed: int,
    *,
    add: int = 0,
    remove: int = 0,
    rename: int = 0,
    change: int = 0,
) -> list[SyntheticAgency]:
    """Return a later snapshot of ``agencies``; the input is not modified.

    ``remove`` agencies are dropped, ``rename`` get a different name (same city, state,
    coordinates, profile URL, date and counts), ``change`` get more video requests or a moved pin,
    and ``add`` new agencies (active within ~45 days after the newest date in the input) are
    appended. The affected agencies are disjoint, so the counts are exact.
    """
    if min(add, remove, rename, change) < 0:
        raise ValueError("counts must be >= 0")
    if remove + rename + change > len(agencies):
        raise ValueError("remove + rename + change exceeds the number of agencies")
    rng = random.Random(f"mutate:{seed}")
    picked = rng.sample(range(len(agencies)), remove + rename + change)
    removed = set(picked[:remove])
    renamed = set(picked[remove : remove + rename])
    changed = set(picked[remove + rename :])

    namer = _Namer((a.name, a.state) for a in agencies)
    out: list[SyntheticAgency] = []
    for i, agency in enumerate(agencies):
        if i in removed:
            continue
        if i in renamed:
            agency = _renamed(agency, namer)
        elif i in changed:
            agency = _changed(agency, rng)
        out.append(agency)

    if add:
        ids = (_ID_RE.search(a.profile_url) for a in agencies)
        last_id = max((int(m.group(1)) for m in ids if m), default=1000)
        gen = _Generator(rng, namer, last_id)
        newest = max((a.active_date for a in agencies), default=LAST_DATE.isoformat())
        start = date.fromisoformat(newest)
        for day_offset in sorted(rng.randint(1, 45) for _ in range(add)):
            out.append(gen.agency((start + timedelta(days=day_offset)).isoformat()))
    return out


# --------------------------------------------------------------------------------------------
# KML
# --------------------------------------------------------------------------------------------


def _esc(text: str) -> str:
    """Escape character data (and double-quoted attribute values)."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if '"' in text:
        text = text.replace('"', "&quot;")
    return text


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _style_lines(one_line: bool) -> list[str]:
    if one_line:
        return [
            f'<Style id="{STYLE_ID}"><IconStyle><color>ff0288d1</color><scale>1</scale><Icon>'
            "<href>https://www.gstatic.com/mapspro/images/stock/503-wht-blank_maps.png</href>"
            "</Icon></IconStyle><LabelStyle><scale>0</scale></LabelStyle></Style>"
        ]
    return [
        f'    <Style id="{STYLE_ID}">',
        "      <IconStyle>",
        "        <color>ff0288d1</color>",
        "        <scale>1</scale>",
        "        <Icon>",
        "          <href>https://www.gstatic.com/mapspro/images/stock/503-wht-blank_maps.png</href>",
        "        </Icon>",
        "      </IconStyle>",
        "      <LabelStyle>",
        "        <scale>0</scale>",
        "      </LabelStyle>",
        "    </Style>",
    ]


def _networklink_lines(href: str, indent: str, one_line: bool) -> list[str]:
    name = _esc(DOCUMENT_NAME)
    href = _esc(href)
    if one_line:
        return [f"<NetworkLink><name>{name}</name><Link><href>{href}</href></Link></NetworkLink>"]
    i = indent
    return [
        f"{i}<NetworkLink>",
        f"{i}  <name>{name}</name>",
        f"{i}  <Link>",
        f"{i}    <href>{href}</href>",
        f"{i}  </Link>",
        f"{i}</NetworkLink>",
    ]


def _placemark_one_line(a: SyntheticAgency) -> str:
    count = str(a.video_requests)
    return (
        f"<Placemark><name>{_esc(a.name)}</name>"
        f"<address>{_esc(a.city)}, {_esc(a.state)}</address>"
        f"<description>{_cdata(f'Active Date: {a.active_date}<br>Video Requests: {count}')}"
        f"</description><styleUrl>#{STYLE_ID}</styleUrl><ExtendedData>"
        f'<Data name="Active Date"><value>{_esc(a.active_date)}</value></Data>'
        f'<Data name="Video Requests"><value>{count}</value></Data>'
        f'<Data name="Agency Profile"><value>{_esc(a.profile_url)}</value></Data>'
        f"</ExtendedData><Point><coordinates>{a.lon!r},{a.lat!r},0</coordinates></Point>"
        "</Placemark>"
    )


def _placemark_multi_line(a: SyntheticAgency, i: str) -> str:
    count = str(a.video_requests)
    return (
        f"{i}<Placemark>\n"
        f"{i}  <name>{_esc(a.name)}</name>\n"
        f"{i}  <address>{_esc(a.city)}, {_esc(a.state)}</address>\n"
        f"{i}  <description>"
        f"{_cdata(f'Active Date: {a.active_date}<br>Video Requests: {count}')}</description>\n"
        f"{i}  <styleUrl>#{STYLE_ID}</styleUrl>\n"
        f"{i}  <ExtendedData>\n"
        f'{i}    <Data name="Active Date">\n'
        f"{i}      <value>{_esc(a.active_date)}</value>\n"
        f"{i}    </Data>\n"
        f'{i}    <Data name="Video Requests">\n'
        f"{i}      <value>{count}</value>\n"
        f"{i}    </Data>\n"
        f'{i}    <Data name="Agency Profile">\n'
        f"{i}      <value>{_esc(a.profile_url)}</value>\n"
        f"{i}    </Data>\n"
        f"{i}  </ExtendedData>\n"
        f"{i}  <Point>\n"
        f"{i}    <coordinates>\n"
        f"{i}      {a.lon!r},{a.lat!r},0\n"
        f"{i}    </coordinates>\n"
        f"{i}  </Point>\n"
        f"{i}</Placemark>"
    )


def to_kml(
    agencies: Iterable[SyntheticAgency],
    *,
    layout: str = "folder",
    one_line: bool = True,
    networklink_href: str | None = None,
) -> bytes:
    """Serialise agencies as a Google My Maps-shaped KML document (UTF-8 bytes).

    ``layout="folder"`` nests the Placemarks in ``Document/Folder``; ``layout="flat"`` puts them
    directly in ``Document``. ``one_line=True`` writes each Placemark on a single line;
    ``one_line=False`` uses Google's two-space indented shape (coordinates on their own line).
    ``networklink_href``, if given, adds a ``<NetworkLink>`` to that URL inside the Document,
    before the Placemarks, as seen in exports that mix a live link with static features.
    """
    if layout not in ("folder", "flat"):
        raise ValueError(f"layout must be 'folder' or 'flat', not {layout!r}")
    folder = layout == "folder"
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<kml xmlns="http://www.opengis.net/kml/2.2">',
        "  <Document>" if not one_line else "<Document>",
        ("    " if not one_line else "") + f"<name>{_esc(DOCUMENT_NAME)}</name>",
    ]
    lines.extend(_style_lines(one_line))
    if networklink_href is not None:
        lines.extend(_networklink_lines(networklink_href, "    ", one_line))
    if one_line:
        if folder:
            lines.append(f"<Folder><name>{_esc(FOLDER_NAME)}</name>")
        lines.extend(map(_placemark_one_line, agencies))
        if folder:
            lines.append("</Folder>")
        lines.append("</Document>")
    else:
        indent = "      " if folder else "    "
        if folder:
            lines.append("    <Folder>")
            lines.append(f"      <name>{_esc(FOLDER_NAME)}</name>")
        lines.extend(_placemark_multi_line(a, indent) for a in agencies)
        if folder:
            lines.append("    </Folder>")
        lines.append("  </Document>")
    lines.append("</kml>")
    lines.append("")
    return "\n".join(lines).encode("utf-8")


def networklink_kml(href: str) -> bytes:
    """The small KML Google serves for ``…/kml?mid=…&nl=1``: one NetworkLink to ``href``."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<kml xmlns="http://www.opengis.net/kml/2.2">',
        "  <Document>",
        f"    <name>{_esc(DOCUMENT_NAME)}</name>",
        *_networklink_lines(href, "    ", one_line=False),
        "  </Document>",
        "</kml>",
        "",
    ]
    return "\n".join(lines).encode("utf-8")
