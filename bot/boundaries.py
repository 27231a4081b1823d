"""US state and county outlines from the bundled Census boundaries: pure data, no network.

The file is us-atlas's `counties-10m.json` (bot/data/us-atlas/README.md: provenance and
licences), TopoJSON whose shared arcs are decoded here once per process into plain
longitude/latitude rings. Cards, the site's base map and the places of agencies all read
these same shapes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

ATLAS = files("bot") / "data" / "us-atlas" / "counties-10m.json"

# The Census Bureau's two-digit state FIPS codes (the atlas's state ids) → postal codes.
STATE_BY_FIPS = {
    "01": "AL", "02": "AK", "04": "AZ", "05": "AR", "06": "CA", "08": "CO", "09": "CT",
    "10": "DE", "11": "DC", "12": "FL", "13": "GA", "15": "HI", "16": "ID", "17": "IL",
    "18": "IN", "19": "IA", "20": "KS", "21": "KY", "22": "LA", "23": "ME", "24": "MD",
    "25": "MA", "26": "MI", "27": "MN", "28": "MS", "29": "MO", "30": "MT", "31": "NE",
    "32": "NV", "33": "NH", "34": "NJ", "35": "NM", "36": "NY", "37": "NC", "38": "ND",
    "39": "OH", "40": "OK", "41": "OR", "42": "PA", "44": "RI", "45": "SC", "46": "SD",
    "47": "TN", "48": "TX", "49": "UT", "50": "VT", "51": "VA", "53": "WA", "54": "WV",
    "55": "WI", "56": "WY", "60": "AS", "66": "GU", "69": "MP", "72": "PR", "78": "VI",
}  # fmt: skip

Ring = tuple[tuple[float, float], ...]  # (lon, lat) points, closed
Polygon = tuple[Ring, ...]  # the outer ring, then its holes


@dataclass(frozen=True, slots=True)
class Region:
    """A state or a county: its FIPS code, name, state (postal code) and outline."""

    fips: str
    name: str  # "Minnesota"; for a county the atlas's name without its kind: "Hennepin"
    state: str  # "MN"
    polygons: tuple[Polygon, ...]
    bbox: tuple[float, float, float, float]  # west, south, east, north

    def contains(self, lon: float, lat: float) -> bool:
        """Whether the point lies inside (even-odd rule, so holes are outside)."""
        west, south, east, north = self.bbox
        if not (west <= lon <= east and south <= lat <= north):
            return False
        inside = False
        for polygon in self.polygons:
            for ring in polygon:
                inside ^= _crosses_odd(ring, lon, lat)
        return inside


def _crosses_odd(ring: Ring, x: float, y: float) -> bool:
    """Whether a ray from (x, y) eastwards crosses the ring an odd number of times."""
    odd = False
    x1, y1 = ring[-1]
    for x2, y2 in ring:
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            odd = not odd
        x1, y1 = x2, y2
    return odd


@cache
def _topology() -> dict[str, Any]:
    return json.loads(ATLAS.read_bytes())


@cache
def _arcs() -> tuple[Ring, ...]:
    """Every arc as absolute lon/lat points (TopoJSON stores quantised deltas)."""
    topology = _topology()
    (scale_x, scale_y), (shift_x, shift_y) = (
        topology["transform"]["scale"],
        topology["transform"]["translate"],
    )
    decoded = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x += dx
            y += dy
            points.append((x * scale_x + shift_x, y * scale_y + shift_y))
        decoded.append(tuple(points))
    return tuple(decoded)


def _ring(indices: list[int]) -> Ring:
    """Arcs joined into a ring; a negative index ~i is arc i reversed. Consecutive arcs
    share their end point, which is kept once."""
    arcs = _arcs()
    points: list[tuple[float, float]] = []
    for index in indices:
        arc = arcs[~index][::-1] if index < 0 else arcs[index]
        points.extend(arc[1:] if points else arc)
    return tuple(points)


def _regions(kind: str) -> Iterator[Region]:
    for geometry in _topology()["objects"][kind]["geometries"]:
        arcs = geometry.get("arcs")
        if not arcs:
            continue
        shapes = [arcs] if geometry["type"] == "Polygon" else arcs
        polygons = tuple(tuple(_ring(ring) for ring in shape) for shape in shapes)
        lons = [lon for polygon in polygons for lon, _ in polygon[0]]
        lats = [lat for polygon in polygons for _, lat in polygon[0]]
        fips = geometry["id"]
        yield Region(
            fips=fips,
            name=geometry["properties"]["name"],
            state=STATE_BY_FIPS[fips[:2]],
            polygons=polygons,
            bbox=(min(lons), min(lats), max(lons), max(lats)),
        )


@cache
def states() -> dict[str, Region]:
    """Every state, DC and territory by postal code ("MN")."""
    return {region.state: region for region in _regions("states")}


@cache
def counties() -> tuple[Region, ...]:
    """Every county and county equivalent (parish, borough, independent city)."""
    return tuple(_regions("counties"))


@cache
def _grid() -> dict[tuple[int, int], tuple[Region, ...]]:
    """1° cells → the counties whose bounding box touches them: a point is tested against
    a handful of outlines instead of 3,231."""
    cells: dict[tuple[int, int], list[Region]] = {}
    for region in counties():
        west, south, east, north = region.bbox
        for x in range(math.floor(west), math.floor(east) + 1):
            for y in range(math.floor(south), math.floor(north) + 1):
                cells.setdefault((x, y), []).append(region)
    return {cell: tuple(regions) for cell, regions in cells.items()}


def county_at(lon: float, lat: float) -> Region | None:
    """The county whose outline holds the point, or None (at sea, abroad)."""
    candidates = _grid().get((math.floor(lon), math.floor(lat)), ())
    return next((county for county in candidates if county.contains(lon, lat)), None)


def _simplified(ring: Ring, tolerance: float, digits: int) -> list[list[float]]:
    """A ring with points nearer than `tolerance` degrees to the last kept one dropped,
    rounded to `digits` decimals; Alaska's Aleutians past the antimeridian continue it
    westwards (lon -187, not 173), so a map never draws them across the world."""
    kept: list[list[float]] = []
    for index, (lon, lat) in enumerate(ring):
        last = index == len(ring) - 1
        if lon > 0:
            lon -= 360
        if kept and not last:
            previous = kept[-1]
            if abs(lon - previous[0]) < tolerance and abs(lat - previous[1]) < tolerance:
                continue
        kept.append([round(lon, digits), round(lat, digits)])
    return kept


def states_geojson(tolerance: float = 0.08, digits: int = 2) -> dict[str, Any]:
    """Every state's outline as a small GeoJSON FeatureCollection (the site's base map):
    points closer than `tolerance` degrees merged, coordinates rounded to `digits`
    decimals (0.01° is about a kilometre), rings left with fewer than 4 points dropped."""
    features = []
    for code, region in sorted(states().items()):
        polygons = []
        for polygon in region.polygons:
            rings = [_simplified(ring, tolerance, digits) for ring in polygon]
            rings = [ring for ring in rings if len(ring) >= 4]
            if rings:
                polygons.append(rings)
        features.append({
            "type": "Feature",
            "id": code,
            "properties": {"name": region.name},
            "geometry": {"type": "MultiPolygon", "coordinates": polygons},
        })  # fmt: skip
    return {"type": "FeatureCollection", "features": features}
