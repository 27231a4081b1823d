"""Raw source fields → Agency: pure functions, no I/O.

Ring's map has drifted over the years (field names, "MN" vs "Minnesota", stray
whitespace and punctuation), so everything here is about seeing through noise:
two spellings of the same agency must give the same key and compare equal.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Container, Mapping
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from bot.models import READ_FIELDS, Agency, FieldKind

US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon",
    "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
    "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia",
    "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
    "PR": "Puerto Rico", "GU": "Guam", "VI": "U.S. Virgin Islands", "AS": "American Samoa",
    "MP": "Northern Mariana Islands",
}  # fmt: skip

_STATE_BY_NAME = {re.sub(r"[^a-z]", "", name.lower()): code for code, name in US_STATES.items()}
_STATE_BY_NAME |= {"washingtondc": "DC", "virginislands": "VI", "usvirginislands": "VI"}

# Source field names seen over the years → our field. Compared after _field_id(). Besides
# the Agency fields (declared in bot.models), two columns only fill in others: an address
# ("Crystal, MN") gives city and state, KML's "lon,lat" coordinates give lat and lon.
PLACE_ALIASES = {"address": ("address", "location", "citystate"), "coordinates": ("coordinates",)}
FIELD_ALIASES = {
    alias: name
    for name, aliases in [*((f.name, f.aliases) for f in READ_FIELDS), *PLACE_ALIASES.items()]
    for alias in aliases
}
# Present in exports but derived from the fields above: never a change of its own.
IGNORED_FIELDS = {"description", "styleurl", "gxmedialinks"}

# Words that mean the same thing in agency names, so "Crystal PD" and
# "Crystal Police Dept." are one key.
_NAME_SYNONYMS = {
    "pd": "police department",
    "dept": "department",
    "dpt": "department",
    "so": "sheriff office",
    "sheriffs": "sheriff",
    "fd": "fire department",
    "co": "county",
    "cnty": "county",
    "twp": "township",
    "dps": "department of public safety",
    "ft": "fort",
    "mt": "mount",
}

_DISPLAY_ABBREVIATIONS = [
    (re.compile(r"\bPolice Department\b", re.I), "PD"),
    (re.compile(r"\bPolice Dept\.?(?=\s|$|,)", re.I), "PD"),
    (re.compile(r"\bFire Department\b", re.I), "FD"),
    (re.compile(r"\bDepartment of Public Safety\b", re.I), "DPS"),
    (re.compile(r"\bPublic Safety Department\b", re.I), "DPS"),
]

_NON_WORD = re.compile(r"[^\w\s]+")
_INITIALISM = re.compile(r"\b[a-z](?:\.[a-z])+\b\.?")


def clean_text(value: Any) -> str:
    """Unicode-normalised, whitespace-collapsed text ('' for None)."""
    if value is None:
        return ""
    text = str(value)
    if not text.isascii():  # NFKC leaves ASCII as it is: skip it on the common path
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.split())


# The functions cached below are pure and see the same few thousand field names, cities,
# states and dates again and again in a 100,000-agency export.
@lru_cache(maxsize=1024)
def _field_id(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def name_key(name: str) -> str:
    """The comparison form of an agency name: case, punctuation and abbreviations removed."""
    text = clean_text(name)
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = text.lower().replace("&", " and ").replace("'", "")
    if "." in text:  # "p.d." → "pd"
        text = _INITIALISM.sub(lambda m: m.group(0).replace(".", ""), text)
    words = _NON_WORD.sub(" ", text).split()
    return " ".join(_NAME_SYNONYMS.get(word, word) for word in words)


@lru_cache(maxsize=1024)
def state_code(value: str) -> str:
    """'Minnesota', 'minn.', 'MN', ' mn ' → 'MN'; '' when it is not a US state."""
    text = clean_text(value)
    if not text:
        return ""
    if text.upper() in US_STATES:
        return text.upper()
    return _STATE_BY_NAME.get(re.sub(r"[^a-z]", "", text.lower()), "")


@lru_cache(maxsize=16384)
def split_address(address: str) -> tuple[str, str]:
    """'Crystal, MN' → ('Crystal', 'MN'); tolerates 'Crystal, Minnesota 55428, USA'."""
    parts = [p.strip() for p in clean_text(address).split(",") if p.strip()]
    if parts and parts[-1].upper() in ("USA", "US", "UNITED STATES"):
        parts = parts[:-1]
    if not parts:
        return "", ""
    last = re.sub(r"\s*\d{5}(-\d{4})?$", "", parts[-1])  # drop a ZIP code
    code = state_code(last)
    if code:
        return (", ".join(parts[:-1]) if len(parts) > 1 else ""), code
    return ", ".join(parts), ""


@lru_cache(maxsize=16384)
def city_key(city: str) -> str:
    return " ".join(_NON_WORD.sub(" ", clean_text(city).lower()).split())


_DATE_FORMATS = (
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%m/%d/%y",
    "%B %d, %Y",
    "%b %d, %Y",
    "%d %B %Y",
    "%Y/%m/%d",
)


@lru_cache(maxsize=16384)
def parse_date(value: str) -> str | None:
    """Any date spelling the map has used → 'YYYY-MM-DD'; unparseable text is kept as is."""
    text = clean_text(value).rstrip(".")
    if not text:
        return None
    text = re.sub(r"T.*$", "", text)  # ISO timestamps: keep the date
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return text


def parse_count(value: str) -> int | None:
    text = clean_text(value)
    if text.isascii() and text.isdigit():
        return int(text)
    digits = re.sub(r"[,\s]", "", text)
    return int(digits) if digits.isdigit() else None


def parse_coordinates(value: str) -> tuple[float | None, float | None]:
    """KML 'lon,lat[,alt]' → (lat, lon), rounded to ~10 cm."""
    parts = clean_text(value).replace(" ", ",").split(",")
    try:
        lon, lat = float(parts[0]), float(parts[1])
    except (ValueError, IndexError):
        return None, None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        return None, None
    return round(lat, 6), round(lon, 6)


def _float(value: str) -> float | None:
    if not value:  # most sources give coordinates instead: no exception per record
        return None
    try:
        return round(float(clean_text(value)), 6)
    except ValueError:
        return None


def display_name(name: str) -> str:
    """'Crystal Police Department' → 'Crystal PD', for alerts that must stay short."""
    text = clean_text(name)
    for pattern, short in _DISPLAY_ABBREVIATIONS:
        text = pattern.sub(short, text)
    return text


def agency_key(name: str, state: str) -> str:
    slug = name_key(name).replace(" ", "-") or "unnamed"
    return f"{(state or 'xx').lower()}/{slug}"


def _optional_text(value: str) -> str | None:
    return clean_text(value) or None


# How a field of each kind is read from the source's text ('' when the source lacks it).
PARSERS: dict[FieldKind, Callable[[str], Any]] = {
    FieldKind.NAME: clean_text,
    FieldKind.CITY: clean_text,
    FieldKind.STATE: state_code,
    FieldKind.DATE: parse_date,
    FieldKind.COUNT: parse_count,
    FieldKind.URL: _optional_text,
    FieldKind.DEGREES: _float,
}
_PARSED = tuple((f.name, PARSERS[f.kind]) for f in READ_FIELDS if f.kind is not None)


def normalise_record(fields: dict[str, str], raw_hash: str = "") -> Agency:
    """One source record (field name → text) → Agency. Unknown fields are kept in `extra`."""
    ours: dict[str, str] = {}
    extra: dict[str, str] = {}
    for source_name, value in fields.items():
        fid = _field_id(source_name)
        if fid in IGNORED_FIELDS:
            continue
        target = FIELD_ALIASES.get(fid)
        if target and target not in ours:
            ours[target] = value
        else:
            extra[clean_text(source_name)] = clean_text(value)
    values = {name: parse(ours.get(name, "")) for name, parse in _PARSED}
    city, state = split_address(ours.get("address", ""))
    if not ours.get("city"):
        values["city"] = city
    values["state"] = values["state"] or state
    if "coordinates" in ours:
        values["lat"], values["lon"] = parse_coordinates(ours["coordinates"])
    key = agency_key(values["name"], values["state"])
    return Agency(key=key, **values, extra=extra, raw_hash=raw_hash)


def disambiguate(
    agencies: list[Agency],
    taken: Container[str] = frozenset(),
    stored_city: Mapping[str, str] | None = None,
) -> dict[str, Agency]:
    """Index by key; a second agency with the same name in one state gets its city in the key.

    `taken` holds keys already used by records the caller kept without re-reading.
    `stored_city` (key → city_key) names the city of stored agencies whose key is shared
    or suffixed, so an agency keeps its key whatever order the source lists them in.
    """
    stored_city = stored_city or {}
    groups: dict[str, list[Agency]] = {}
    for agency in agencies:
        groups.setdefault(agency.key, []).append(agency)
    by_key: dict[str, Agency] = {}
    for base, group in groups.items():
        if len(group) > 1:  # the stored holder of the plain key keeps it
            home = stored_city.get(base)
            group.sort(key=lambda a: (city_key(a.city) != home, city_key(a.city)))
        for agency in group:
            city = city_key(agency.city)
            own = f"{base}~{city.replace(' ', '-') or 'x'}"
            if stored_city.get(own) == city and own not in by_key and own not in taken:
                key = own  # it was told apart before: it stays told apart
            elif base not in by_key and base not in taken:
                key = base
            else:
                key, n = own, 2
                while key in by_key or key in taken:
                    key = f"{base}~{n}"
                    n += 1
            by_key[key] = agency if key == base else replace(agency, key=key)
    return by_key
