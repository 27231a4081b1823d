"""Tests for tests.support.synthetic and the bundled sample snapshots in bot/samples/."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from tests.support.synthetic import (
    STATE_BOXES,
    SyntheticAgency,
    generate_agencies,
    mutate,
    networklink_kml,
    to_kml,
)

NS = {"k": "http://www.opengis.net/kml/2.2"}
SAMPLES = Path(__file__).resolve().parents[1] / "bot" / "samples"
PROFILE_RE = re.compile(r"^https://ring\.com/agency/[a-z0-9]+(?:-[a-z0-9]+)*-[a-z]{2}-\d+$")


@pytest.fixture(scope="module")
def big() -> list[SyntheticAgency]:
    return generate_agencies(100_000, seed=7)


def _placemarks(kml: bytes) -> list[dict[str, object]]:
    """Parse Placemarks the way a consumer would (ElementTree, whitespace-tolerant)."""
    root = ET.fromstring(kml)
    out = []
    for pm in root.iter("{http://www.opengis.net/kml/2.2}Placemark"):
        data = {
            d.get("name"): (d.findtext("k:value", namespaces=NS) or "").strip()
            for d in pm.iterfind("k:ExtendedData/k:Data", NS)
        }
        coords = pm.findtext("k:Point/k:coordinates", namespaces=NS) or ""
        lon, lat, _alt = (float(x) for x in coords.strip().split(","))
        out.append(
            {
                "name": pm.findtext("k:name", namespaces=NS),
                "address": pm.findtext("k:address", namespaces=NS),
                "description": pm.findtext("k:description", namespaces=NS),
                "style": pm.findtext("k:styleUrl", namespaces=NS),
                "date": data["Active Date"],
                "video": int(data["Video Requests"]),
                "profile": data["Agency Profile"],
                "coords_text": coords.strip(),
                "lon": lon,
                "lat": lat,
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# generate_agencies
# --------------------------------------------------------------------------------------------


def test_generate_is_deterministic_per_seed() -> None:
    assert generate_agencies(500, seed=3) == generate_agencies(500, seed=3)
    assert generate_agencies(500, seed=3) != generate_agencies(500, seed=4)
    assert generate_agencies(0) == []
    with pytest.raises(ValueError):
        generate_agencies(-1)


def test_generated_fields_are_plausible() -> None:
    agencies = generate_agencies(5_000, seed=1)
    assert len(agencies) == 5_000
    assert {a.state for a in agencies} == set(STATE_BOXES)  # all 50 states + DC
    assert len(STATE_BOXES) == 51
    for a in agencies:
        assert "2018-03-01" <= a.active_date <= "2024-12-31"
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", a.active_date)
        assert a.video_requests >= 0
        assert PROFILE_RE.match(a.profile_url), a.profile_url
        assert a.profile_url.endswith(f"-{a.state.lower()}-" + a.profile_url.rsplit("-", 1)[1])
        lon_min, lat_min, lon_max, lat_max = STATE_BOXES[a.state]
        assert lon_min <= a.lon <= lon_max and lat_min <= a.lat <= lat_max
        assert a.city and a.name == a.name.strip()
    kinds = Counter(
        "sheriff"
        if "Sheriff" in a.name
        else "police"
        if "Police" in a.name
        else "fire"
        if "Fire" in a.name
        else "other"
        for a in agencies
    )
    assert 0.62 < kinds["police"] / 5_000 < 0.78
    assert 0.15 < kinds["sheriff"] / 5_000 < 0.25
    assert 0.05 < kinds["fire"] / 5_000 < 0.11
    assert 0.005 < kinds["other"] / 5_000 < 0.04
    names = {a.name for a in agencies}
    assert "Crystal Police Department" in names
    assert "Hennepin County Sheriff's Office" in names
    assert any(a.name.endswith(("Public Safety Department", "Marshal's Office")) for a in agencies)


@pytest.mark.slow
def test_names_unique_per_state_at_100k(big: list[SyntheticAgency]) -> None:
    assert len(big) == 100_000
    assert len({(a.name, a.state) for a in big}) == 100_000
    assert len({a.profile_url for a in big}) == 100_000
    names = [a.name for a in big]
    # Exhausted combinations are disambiguated realistically before being numbered.
    assert any(n.startswith("North ") for n in names)
    assert any(" Township " in n for n in names)
    assert any(re.search(r" District \d+$", n) for n in names)


# --------------------------------------------------------------------------------------------
# mutate
# --------------------------------------------------------------------------------------------


def test_mutate_counts_and_semantics() -> None:
    before = generate_agencies(2_000, seed=5)
    snapshot = list(before)
    after = mutate(before, 9, add=40, remove=25, rename=15, change=30)
    assert before == snapshot  # input untouched
    assert after == mutate(before, 9, add=40, remove=25, rename=15, change=30)
    assert after != mutate(before, 10, add=40, remove=25, rename=15, change=30)
    assert len(after) == 2_000 - 25 + 40

    old = {a.profile_url: a for a in before}
    new = {a.profile_url: a for a in after}
    assert len(new) == len(after)
    assert len(old.keys() - new.keys()) == 25
    added = [new[p] for p in new.keys() - old.keys()]
    assert len(added) == 40
    newest = max(a.active_date for a in before)
    assert all(a.active_date > newest for a in added)

    renamed = changed = 0
    for url in old.keys() & new.keys():
        o, n = old[url], new[url]
        if o == n:
            continue
        if o.name != n.name:
            renamed += 1
            assert (n.city, n.state, n.lon, n.lat, n.profile_url) == (
                o.city,
                o.state,
                o.lon,
                o.lat,
                o.profile_url,
            )
            assert (n.active_date, n.video_requests) == (o.active_date, o.video_requests)
            assert " ".join(n.name.casefold().split()) != " ".join(o.name.casefold().split())
        else:
            changed += 1
            assert (n.city, n.state, n.active_date) == (o.city, o.state, o.active_date)
            assert n.video_requests > o.video_requests or (n.lon, n.lat) != (o.lon, o.lat)
    assert (renamed, changed) == (15, 30)
    assert len({(a.name, a.state) for a in after}) == len(after)


def test_mutate_renames_look_realistic() -> None:
    before = generate_agencies(300, seed=2)
    after = mutate(before, 1, rename=60)
    old = {a.profile_url: a.name for a in before}
    pairs = [(old[a.profile_url], a.name) for a in after if old[a.profile_url] != a.name]
    assert len(pairs) == 60
    assert any(n.startswith("Police Dept. of ") for _, n in pairs)
    assert any(
        o.endswith("Sheriff's Office") and n.endswith("Sheriff's Department") for o, n in pairs
    )


def test_mutate_validates_counts() -> None:
    agencies = generate_agencies(10)
    with pytest.raises(ValueError):
        mutate(agencies, 0, remove=6, rename=5)
    with pytest.raises(ValueError):
        mutate(agencies, 0, add=-1)
    assert mutate(agencies, 0) == agencies
    assert len(mutate([], 0, add=3)) == 3


# --------------------------------------------------------------------------------------------
# KML
# --------------------------------------------------------------------------------------------

TRICKY = SyntheticAgency(
    name='Smith & Jones <Township> "Police" Department',
    city="Smith & Jones",
    state="PA",
    active_date="2020-06-03",
    video_requests=12,
    profile_url="https://ring.com/agency/smith-jones-township-police-department-pa-1234",
    lon=-80.3887,
    lat=40.3854,
)


@pytest.mark.parametrize("layout", ["folder", "flat"])
@pytest.mark.parametrize("one_line", [True, False])
def test_to_kml_round_trips(layout: str, one_line: bool) -> None:
    agencies = [*generate_agencies(250, seed=4), TRICKY]
    kml = to_kml(agencies, layout=layout, one_line=one_line)
    assert kml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<kml xmlns=')

    root = ET.fromstring(kml)
    doc = root.find("k:Document", NS)
    assert doc is not None
    assert doc.findtext("k:name", namespaces=NS) == "Ring Active Agency Map"
    if layout == "folder":
        assert doc.findall("k:Placemark", NS) == []
        folder = doc.find("k:Folder", NS)
        assert folder is not None and folder.findtext("k:name", namespaces=NS)
        assert len(folder.findall("k:Placemark", NS)) == len(agencies)
    else:
        assert doc.find("k:Folder", NS) is None
        assert len(doc.findall("k:Placemark", NS)) == len(agencies)

    parsed = _placemarks(kml)
    assert len(parsed) == len(agencies)
    for a, p in zip(agencies, parsed, strict=True):
        assert p["name"] == a.name
        assert p["address"] == f"{a.city}, {a.state}"
        assert p["date"] == a.active_date
        assert p["video"] == a.video_requests
        assert p["profile"] == a.profile_url
        assert (p["lon"], p["lat"]) == (a.lon, a.lat)
        assert p["style"] == "#icon-1"
        assert p["description"] == (
            f"Active Date: {a.active_date}<br>Video Requests: {a.video_requests}"
        )

    lines = kml.decode().splitlines()
    one_line_placemarks = [x for x in lines if x.startswith("<Placemark>")]
    if one_line:
        assert len(one_line_placemarks) == len(agencies)
        assert all(x.endswith("</Placemark>") for x in one_line_placemarks)
    else:
        assert one_line_placemarks == []
        assert sum(x.strip() == "<Placemark>" for x in lines) == len(agencies)


def test_one_line_kml_is_compact() -> None:
    agencies = generate_agencies(1_000, seed=8)
    per_agency = len(to_kml(agencies)) / 1_000
    assert 300 < per_agency < 650
    assert len(to_kml(agencies, one_line=False)) > len(to_kml(agencies))


def test_to_kml_rejects_unknown_layout() -> None:
    with pytest.raises(ValueError):
        to_kml([], layout="nested")


HREF = 'https://www.google.com/maps/d/kml?mid=1abc<x>&forcekml=1&lid="q"'


def test_networklink_kml_href_round_trips() -> None:
    root = ET.fromstring(networklink_kml(HREF))
    assert root.tag == "{http://www.opengis.net/kml/2.2}kml"
    link = root.find("k:Document/k:NetworkLink", NS)
    assert link is not None
    assert link.findtext("k:name", namespaces=NS)
    assert link.findtext("k:Link/k:href", namespaces=NS) == HREF
    assert root.findall(".//k:Placemark", NS) == []


@pytest.mark.parametrize("one_line", [True, False])
def test_to_kml_with_networklink(one_line: bool) -> None:
    agencies = generate_agencies(5, seed=1)
    kml = to_kml(agencies, one_line=one_line, networklink_href=HREF)
    root = ET.fromstring(kml)
    assert root.findtext("k:Document/k:NetworkLink/k:Link/k:href", namespaces=NS) == HREF
    assert len(_placemarks(kml)) == 5


# --------------------------------------------------------------------------------------------
# Bundled samples
# --------------------------------------------------------------------------------------------

STATE_NAMES = {"Texas": "TX"}


def _norm_name(name: str) -> str:
    return " ".join(name.casefold().split()).rstrip(".,;: ")


def _norm_address(address: str) -> str:
    city, _, state = address.rpartition(", ")
    return f"{city}, {STATE_NAMES.get(state, state)}"


def _state(address: str) -> str:
    return _norm_address(address).rsplit(", ", 1)[1]


def _sample(name: str) -> list[dict[str, object]]:
    kml = (SAMPLES / name).read_bytes()
    root = ET.fromstring(kml)
    # Folder layout, Google's multi-line shape.
    assert root.find("k:Document/k:Folder", NS) is not None
    assert root.findall("k:Document/k:Placemark", NS) == []
    assert b"\n      <Placemark>\n" in kml
    return _placemarks(kml)


def test_samples_document_their_differences() -> None:
    base_list, later_list = _sample("baseline.kml"), _sample("later.kml")
    base = {p["profile"]: p for p in base_list}
    later = {p["profile"]: p for p in later_list}
    assert (len(base), len(later)) == (len(base_list), len(later_list)) == (123, 151)

    assert all(str(p["date"]) < "2020-05-25" for p in base_list)
    assert len({_state(str(p["address"])) for p in base_list}) >= 30
    base_names = {str(p["name"]) for p in base_list}
    assert {
        "Hennepin County Sheriff's Office",
        "Ames Police Department",
        "Huntington Beach Police Department",
        "Fort Worth Police Department",
        "Sandy Springs Police Department",
        "Smith & Jones <Township> Police Department",
    } <= base_names

    # 29 added, in at least 20 states, dated 2020-05-26 .. 2020-06-15.
    added = [later[u] for u in later.keys() - base.keys()]
    assert len(added) == 29
    assert not {str(p["name"]) for p in added} & base_names
    assert len({_state(str(p["address"])) for p in added}) >= 20
    assert all("2020-05-26" <= str(p["date"]) <= "2020-06-15" for p in added)
    by_name = {p["name"]: p for p in added}
    crystal = by_name["Crystal Police Department"]
    assert (crystal["address"], crystal["date"]) == ("Crystal, MN", "2020-06-03")
    assert by_name["Las Cruces Police Department"]["address"] == "Las Cruces, NM"

    # 1 removed.
    removed = [base[u] for u in base.keys() - later.keys()]
    assert [(p["name"], p["address"]) for p in removed] == [
        ("Ridgeland Police Department", "Ridgeland, MS")
    ]

    # 1 renamed (everything else identical), 1 changed; everything else only cosmetic.
    renamed, changed, cosmetic = [], [], set()
    for url in base.keys() & later.keys():
        b, lt = base[url], later[url]
        assert b["date"] == lt["date"]
        assert (b["lon"], b["lat"]) == (lt["lon"], lt["lat"])
        assert _norm_address(str(b["address"])) == _norm_address(str(lt["address"]))
        if _norm_name(str(b["name"])) != _norm_name(str(lt["name"])):
            renamed.append((b, lt))
        if b["video"] != lt["video"]:
            changed.append((b, lt))
        if (b["name"], b["address"], b["coords_text"]) != (
            lt["name"],
            lt["address"],
            lt["coords_text"],
        ):
            cosmetic.add(str(b["name"]))
    assert [(b["name"], lt["name"]) for b, lt in renamed] == [
        ("Mesa Police Department", "City of Mesa Police Department")
    ]
    b, lt = renamed[0]
    assert (lt["profile"], lt["address"], lt["coords_text"], lt["video"]) == (
        b["profile"],
        b["address"],
        b["coords_text"],
        b["video"],
    )
    assert [(b["name"], b["video"], lt["video"]) for b, lt in changed] == [
        ("Westfield Police Department", 12, 19)
    ]
    assert cosmetic - {"Mesa Police Department"} == {
        "Ames Police Department",
        "Huntington Beach Police Department",
        "Lakeland Police Department",
        "Sandy Springs Police Department",
        "Fort Worth Police Department",
        "Hennepin County Sheriff's Office",
    }
    later_names = {str(p["name"]) for p in later_list}
    assert {"AMES POLICE DEPARTMENT", "Sandy Springs Police Department."} <= later_names
    assert any(p["address"] == "Fort Worth, Texas" for p in later_list)

    # Placemark order was shuffled a little among the agencies present in both.
    common = base.keys() & later.keys()
    base_order = [p["profile"] for p in base_list if p["profile"] in common]
    later_order = [p["profile"] for p in later_list if p["profile"] in common]
    assert base_order != later_order and sorted(base_order) == sorted(later_order)
