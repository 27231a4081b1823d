"""Map cards: the picture every alert and digest carries, and its alt text.

A card is a 1200 × 675 PNG: the agency's state from the bundled Census outlines
(bot/boundaries.py) with its neighbours faint, every partner listed in that state as a
dot, the agency highlighted and labelled, the headline, a line of context with the
numbers `ringwatch report` gives for the state, and the credit. A digest's card is the
whole country (Alaska and Hawaii as insets) with every agency of the digest marked.

What a card says is gathered once from the read models (`card_data`), and the picture
(`draw_card`) and the alt text (`alt_text`) are both pure functions of it, so they never
disagree. matplotlib and numpy are imported only inside `draw_card`: a poll that sends
no picture never loads them.

Cards are made before a message's first send (deliver.py, never inside the poll's
transaction), stored in the state directory's `cards/` by name (a change's uuid, or a
digest's hash of uuids) with their alt text beside them, and reused on every retry and by
every recipient; `ringwatch prune` removes the cards no remaining message refers to.
"""

from __future__ import annotations

import gc
import hashlib
import io
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.boundaries import Region, states
from bot.export import write_atomically
from bot.feed import change_from_row
from bot.models import CARD_DIR, CardFile, ChangeKind, MessageKind
from bot.normalise import US_STATES, clean_text, display_name
from bot.queries import agency_locations, changes_by_id, listed_agencies
from bot.reports import Report, count_phrase, headline_report, long_date, period_phrase
from bot.safe import plain_text
from bot.store import Store

if TYPE_CHECKING:
    import sqlite_utils
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WIDTH, HEIGHT = 1200, 675  # 16:9, what timelines show uncropped
MARGIN = 0.025  # of the width, kept clear at the right edge
DPI = 100
CREDIT = "Source: Ring's Active Agency Map · ringwatch"
MAX_ALT = 1000  # Bluesky and X take 1,000 characters of alt text, Mastodon 1,500
MAX_BYTES = 300_000

PAPER = "#f7f5f0"
INK = "#1d2430"
MUTED = "#5d6673"
STATE_FILL, STATE_EDGE = "#e4ddcf", "#7d7465"
NEIGHBOUR_FILL, NEIGHBOUR_EDGE = "#eeebe4", "#cfc9bd"
PARTNER = "#4d5f73"
KIND_COLOURS = {
    ChangeKind.ADDED: "#c8323f",
    ChangeKind.REMOVED: "#3a3f47",
    ChangeKind.RENAMED: "#1f5fa8",
    ChangeKind.CHANGED: "#c27c0e",
    ChangeKind.BASELINE: PARTNER,
}
KICKERS = {
    ChangeKind.ADDED: "New partnership",
    ChangeKind.REMOVED: "Partnership ended",
    ChangeKind.RENAMED: "Renamed",
    ChangeKind.CHANGED: "Changed",
    ChangeKind.BASELINE: "Listed at ringwatch's first look",
}
ALT_KINDS = {
    ChangeKind.ADDED: "a new partnership",
    ChangeKind.REMOVED: "a partnership that ended",
    ChangeKind.RENAMED: "renamed",
    ChangeKind.CHANGED: "its listing changed",
    ChangeKind.BASELINE: "listed when ringwatch began watching",
}
# The states drawn on the country card; territories have no partners and no room.
LOWER_48 = frozenset(US_STATES) - {"AK", "HI", "PR", "VI", "GU", "AS", "MP"}


@dataclass(frozen=True)
class Point:
    lon: float
    lat: float


@dataclass(frozen=True)
class Marked:
    """An agency a card points at."""

    name: str  # plain text, as the alert names it
    state: str
    kind: ChangeKind
    point: Point | None  # None: the source gives no location


@dataclass(frozen=True)
class CardData:
    """Everything a card shows, from the change log and the agencies listed now."""

    kicker: str  # "New partnership"
    title: str  # the agency, or the digest's headline
    subtitle: str  # "Crystal, Minnesota · active since June 3, 2020"
    context: str  # the report's numbers for the state (or the country)
    state: str | None  # the state drawn; None: the whole country
    marked: tuple[Marked, ...]
    partners: tuple[Point, ...]  # every agency listed now in the state (or country)
    listed: int  # partnerships listed now there: the context's count
    county: str | None = None  # the marked agency's county, from its coordinates


def unwrap(lon: float) -> float:
    """The Aleutians past the antimeridian continue Alaska westwards (lon -187, not 173)."""
    return lon - 360 if lon > 0 else lon


def _point(place: dict[str, Any] | None) -> Point | None:
    if not place or place.get("lat") is None or place.get("lon") is None:
        return None
    return Point(unwrap(float(place["lon"])), float(place["lat"]))


def _partners(db: sqlite_utils.Database, states_: Sequence[str] = ()) -> tuple[Point, ...]:
    rows = listed_agencies(db, ["lat", "lon"], states=states_)
    return tuple(point for point in map(_point, rows) if point is not None)


def _name(row: dict[str, Any]) -> str:
    return plain_text(clean_text(row["name"] or "")) or row["key"]


def _state_name(code: str) -> str:
    return US_STATES.get(code, code or "an unknown state")


def _report_line(report: Report, where: str, in_states: bool = False) -> str:
    """'Minnesota now lists 14 partnerships; 3 new since May 25, 2020': `ringwatch report`'s
    numbers (with `in_states`, '… 151 partnerships in 45 states; …')."""
    listed = count_phrase(report.listed_now, "partnership")
    if in_states:
        listed += f" in {count_phrase(report.listed_states, 'state')}"
    new = f"{len(report.additions):,} new {period_phrase(report.since, report.until)}"
    return f"{where} now lists {listed}; {new}"


def alert_card_data(db: sqlite_utils.Database, row: dict[str, Any], since: str = "") -> CardData:
    """The card of one change (a change-log object, as `changes_by_id` returns)."""
    kind = ChangeKind(row["kind"])
    state = row["state"] or ""
    point = _point(agency_locations(db, [row["key"]]).get(row["key"]))
    change = change_from_row(row)
    if kind == ChangeKind.RENAMED and row["before"]:
        detail = f"formerly {plain_text(row['before'].get('name') or '')}"
    elif kind == ChangeKind.REMOVED and row["active_date"]:
        detail = f"partner since {long_date(row['active_date'])}"
    elif row["active_date"]:
        detail = f"active since {long_date(row['active_date'])}"
    else:
        detail = f"seen {long_date(row['detected_at'])}"
    place = ", ".join(part for part in (change.agency.city, _state_name(state)) if part)
    report = headline_report(db, since, states=(state,) if state else ())
    return CardData(
        kicker=KICKERS[kind],
        title=_name(row),
        subtitle=f"{place} · {detail}",
        context=_report_line(report, _state_name(state)),
        state=state if state in states() else None,
        marked=(Marked(_name(row), state, kind, point),),
        partners=_partners(db, (state,)) if state else (),
        listed=report.listed_now,
        county=row.get("county"),  # as the change log has it (bot.places.locate)
    )


def _digest_title(rows: Sequence[dict[str, Any]]) -> str:
    """'27 new partnerships in 26 states, 1 ended, 1 renamed': the digest's first line."""
    kinds = [ChangeKind(row["kind"]) for row in rows]
    added = [row for row in rows if row["kind"] == ChangeKind.ADDED]
    if added:
        where = len({row["state"] for row in added})
        title = f"{count_phrase(len(added), 'new partnership')} in {count_phrase(where, 'state')}"
    else:
        title = f"{count_phrase(len(rows), 'change')} to Ring's police partnerships"
    for kind, word in ((ChangeKind.REMOVED, "ended"), (ChangeKind.RENAMED, "renamed")):
        if kinds.count(kind):
            title += f", {kinds.count(kind)} {word}"
    return title


def digest_card_data(
    db: sqlite_utils.Database, rows: Sequence[dict[str, Any]], since: str = ""
) -> CardData:
    """The country card of a digest's changes."""
    places = agency_locations(db, [row["key"] for row in rows])
    report = headline_report(db, since)
    detected = max(row["detected_at"] for row in rows)
    return CardData(
        kicker=f"Ring police partnerships · {long_date(detected)}",
        title=_digest_title(rows),
        subtitle="",
        context=_report_line(report, "Ring's map", in_states=True),
        state=None,
        marked=tuple(
            Marked(
                _name(row),
                row["state"] or "",
                ChangeKind(row["kind"]),
                _point(places.get(row["key"])),
            )
            for row in rows
        ),
        partners=_partners(db),
        listed=report.listed_now,
    )


# --- alt text ------------------------------------------------------------------------------


def where_in_state(point: Point, region: Region) -> str:
    """'in the south-east of the state', 'in the centre of the state': thirds of its box."""
    west, south, east, north = region.bbox
    if region.state == "AK":  # its box spans the antimeridian; unwrapped it is Alaska's
        west, east = -187.0, -129.9
    across = (point.lon - west) / ((east - west) or 1)
    up = (point.lat - south) / ((north - south) or 1)
    ns = "south" if up < 1 / 3 else "north" if up > 2 / 3 else ""
    ew = "west" if across < 1 / 3 else "east" if across > 2 / 3 else ""
    part = "-".join(word for word in (ns, ew) if word) or "centre"
    return f"in the {part} of the state"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip(" ,;") + "…"


def alt_text(data: CardData) -> str:
    """What the card shows, in words, under 1,000 characters."""
    if data.state is None:
        return _digest_alt(data)
    marked = data.marked[0]
    state = _state_name(data.state)
    region = states()[data.state]
    where = [ALT_KINDS[marked.kind]]
    if data.county:
        where.append(f"in {data.county}")
    if marked.point is not None and region.contains(marked.point.lon, marked.point.lat):
        where.append(where_in_state(marked.point, region))
    elif marked.point is None:
        where.append("its location not given by the source")
    lead = (
        f"Map of {state}, its neighbouring states faint, with a dot for each agency Ring "
        f"lists there as a partner ({data.listed:,} listed). Highlighted: "
    )
    tail = f", {', '.join(where)}. {data.context}. {CREDIT}."
    room = MAX_ALT - len(lead) - len(tail)
    return lead + _clip(marked.name, max(room, 40)) + _clip(tail, MAX_ALT - len(lead) - 40)


def _digest_alt(data: CardData) -> str:
    lead = (
        f"Map of the United States, with Alaska and Hawaii as insets, marking the "
        f"{count_phrase(len(data.marked), 'agency', 'agencies')} of this digest: {data.title}. "
        f"{data.context}. "
    )
    names: list[str] = []
    room = MAX_ALT - len(lead) - len(CREDIT) - 40
    for marked in data.marked:
        entry = f"{marked.name} ({marked.state}, {KICKERS[marked.kind].lower()})"
        if sum(len(n) + 2 for n in names) + len(entry) > room:
            names.append(f"and {len(data.marked) - len(names)} more")
            break
        names.append(entry)
    return _clip(lead + "Marked: " + "; ".join(names) + f". {CREDIT}.", MAX_ALT)


# --- drawing -------------------------------------------------------------------------------


def _albers(lon: Any, lat: Any, lon0: float, lat0: float, p1: float, p2: float) -> Any:
    """Albers equal-area conic projection (numpy arrays in degrees → x, y)."""
    import numpy as np

    lon, lat = np.radians(lon), np.radians(lat)
    lon0, lat0, p1, p2 = map(np.radians, (lon0, lat0, p1, p2))
    n = (np.sin(p1) + np.sin(p2)) / 2
    c = np.cos(p1) ** 2 + 2 * n * np.sin(p1)
    rho0 = np.sqrt(c - 2 * n * np.sin(lat0)) / n
    rho = np.sqrt(c - 2 * n * np.sin(lat)) / n
    theta = n * (lon - lon0)
    return rho * np.sin(theta), rho0 - rho * np.cos(theta)


@dataclass(frozen=True)
class Projection:
    lon0: float
    lat0: float
    p1: float
    p2: float

    @classmethod
    def around(cls, region: Region) -> Projection:
        west, south, east, north = region.bbox
        if region.state == "AK":
            west, east = -187.0, -129.9
        span = (north - south) / 6
        return cls((west + east) / 2, (south + north) / 2, south + span, north - span)

    def __call__(self, lon: Any, lat: Any) -> Any:
        return _albers(lon, lat, self.lon0, self.lat0, self.p1, self.p2)


CONUS = Projection(-96.0, 37.5, 29.5, 45.5)
ALASKA = Projection(-154.0, 50.0, 55.0, 65.0)
HAWAII = Projection(-157.0, 13.0, 8.0, 18.0)


def _region_path(region: Region, project: Projection) -> Any:
    """One compound path of every ring (holes fall out by the even-odd rule)."""
    import numpy as np
    from matplotlib.path import Path as MplPath

    vertices, codes = [], []
    for polygon in region.polygons:
        for ring in polygon:
            lonlat = np.array(ring)
            x, y = project(
                np.where(lonlat[:, 0] > 0, lonlat[:, 0] - 360, lonlat[:, 0]), lonlat[:, 1]
            )
            vertices.append(np.column_stack([x, y]))
            ring_codes = np.full(len(ring), MplPath.LINETO)
            ring_codes[0] = MplPath.MOVETO
            codes.append(ring_codes)
    return MplPath(np.concatenate(vertices), np.concatenate(codes))


def _draw_regions(
    ax: Axes, regions: Iterable[Region], project: Projection, fill: str, edge: str, width: float
) -> None:
    from matplotlib.collections import PathCollection

    paths = [_region_path(region, project) for region in regions]
    ax.add_collection(
        PathCollection(paths, facecolors=fill, edgecolors=edge, linewidths=width, zorder=1)
    )


def _fit(ax: Axes, box: tuple[float, float, float, float], pad: float = 0.06) -> None:
    """Show `box` (x0, y0, x1, y1), padded and widened to the axes' own shape, undistorted."""
    x0, y0, x1, y1 = box
    w, h = (x1 - x0) * (1 + 2 * pad), (y1 - y0) * (1 + 2 * pad)
    bbox = ax.get_position()
    fig_w, fig_h = ax.figure.get_size_inches()
    shape = (bbox.width * fig_w) / (bbox.height * fig_h)
    w, h = max(w, h * shape), max(h, w / shape)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ax.set_xlim(cx - w / 2, cx + w / 2)
    ax.set_ylim(cy - h / 2, cy + h / 2)


def _bare(ax: Axes) -> None:
    ax.set_axis_off()
    ax.set_facecolor(PAPER)


def _projected_box(region: Region, project: Projection) -> tuple[float, float, float, float]:
    path = _region_path(region, project)
    (x0, y0), (x1, y1) = path.vertices.min(axis=0), path.vertices.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def _dots(ax: Axes, points: Sequence[Point], project: Projection, **style: Any) -> None:
    if points:
        x, y = project([p.lon for p in points], [p.lat for p in points])
        ax.scatter(x, y, **style)


def _wrapped(text: str, width: int, lines: int) -> list[str]:
    wrapped = textwrap.wrap(text, width) or [""]
    if len(wrapped) > lines:
        wrapped = [*wrapped[: lines - 1], _clip(wrapped[lines - 1] + " …", width)]
    return wrapped


def _text(fig: Figure, x: float, y: float, text: str, **style: Any) -> None:
    """Text that ends before the card's right margin: a line of wide letters (a name
    from the source: "WWWW", CJK) is set smaller rather than cut off at the edge."""
    # parse_math=False: an agency's name is outside text, never mathtext ("$5$").
    artist = fig.text(x, y, text, parse_math=False, color=style.pop("color", INK), **style)
    if style.get("ha", "left") != "left":
        return
    room = (1 - MARGIN - x) * WIDTH
    width = artist.get_window_extent(fig.canvas.get_renderer()).width
    if width > room:
        artist.set_fontsize(artist.get_fontsize() * room / width)


def _state_map(fig: Figure, data: CardData) -> None:
    from matplotlib import patheffects

    assert data.state is not None
    region = states()[data.state]
    project = Projection.around(region)
    ax = fig.add_axes((0.015, 0.03, 0.56, 0.94))
    _bare(ax)
    box = _projected_box(region, project)
    _fit(ax, box)
    west, south, east, north = region.bbox
    reach = max(east - west, north - south)
    near = [
        other
        for code, other in states().items()
        if code != data.state
        and other.bbox[0] < east + reach
        and other.bbox[2] > west - reach
        and other.bbox[1] < north + reach
        and other.bbox[3] > south - reach
    ]
    _draw_regions(ax, near, project, NEIGHBOUR_FILL, NEIGHBOUR_EDGE, 0.8)
    _draw_regions(ax, [region], project, STATE_FILL, STATE_EDGE, 1.4)
    _dots(ax, data.partners, project, s=22, color=PARTNER, alpha=0.75, linewidths=0, zorder=3)
    marked = data.marked[0]
    if marked.point is None:
        return
    colour = KIND_COLOURS[marked.kind]
    (x,), (y,) = project([marked.point.lon], [marked.point.lat])
    ax.scatter([x], [y], s=420, color=colour, alpha=0.25, linewidths=0, zorder=4)
    ax.scatter([x], [y], s=130, color=colour, edgecolors="white", linewidths=2, zorder=5)
    x_min, x_max = ax.get_xlim()
    right = x < x_min + (x_max - x_min) * 0.6
    ax.annotate(
        "\n".join(_wrapped(display_name(marked.name), 20, 2)),  # the short name alerts use
        (x, y),
        xytext=(14 if right else -14, 8),
        textcoords="offset points",
        ha="left" if right else "right",
        fontsize=15,
        fontweight="bold",
        color=INK,
        zorder=6,
        annotation_clip=False,
        parse_math=False,
        path_effects=[patheffects.withStroke(linewidth=4, foreground="white")],
    )


def _country_map(fig: Figure, data: CardData) -> None:
    lower48 = [region for code, region in states().items() if code in LOWER_48]
    insets = (
        ("AK", ALASKA, (0.02, 0.05, 0.2, 0.24)),
        ("HI", HAWAII, (0.22, 0.05, 0.12, 0.14)),
    )
    ax = fig.add_axes((0.02, 0.03, 0.96, 0.72))
    _bare(ax)
    frames = [(ax, CONUS, lower48, ("AK", "HI"))]
    for code, project, rect in insets:
        inset = fig.add_axes(rect)
        _bare(inset)
        frames.append((inset, project, [states()[code]], ()))
    for axes, project, regions, _ in frames:
        boxes = [_projected_box(region, project) for region in regions]
        _fit(
            axes,
            (
                min(b[0] for b in boxes),
                min(b[1] for b in boxes),
                max(b[2] for b in boxes),
                max(b[3] for b in boxes),
            ),
            pad=0.02,
        )
        _draw_regions(axes, regions, project, STATE_FILL, "white", 0.9)
        codes = {region.state for region in regions}
        in_frame = [p for p in data.partners if _state_of(p, codes)]
        _dots(axes, in_frame, project, s=7, color=PARTNER, alpha=0.45, linewidths=0, zorder=3)
        for kind, colour in KIND_COLOURS.items():
            points = [
                m.point for m in data.marked if m.kind == kind and m.point and m.state in codes
            ]
            _dots(
                axes,
                points,
                project,
                s=70,
                color=colour,
                edgecolors="white",
                linewidths=1.2,
                zorder=5,
            )
    _legend(fig, data)


def _legend(fig: Figure, data: CardData) -> None:
    from matplotlib.lines import Line2D

    present = [kind for kind in KIND_COLOURS if any(m.kind == kind for m in data.marked)]
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markersize=10,
            color=KIND_COLOURS[kind],
            markeredgecolor="white",
        )
        for kind in present
    ]
    labels = [f"{KICKERS[k].lower()} ({sum(m.kind == k for m in data.marked)})" for k in present]
    fig.legend(
        handles,
        labels,
        loc="lower right",
        bbox_to_anchor=(0.985, 0.01),
        ncol=len(present),
        frameon=False,
        fontsize=13,
        labelcolor=MUTED,
        handletextpad=0.3,
    )


def _state_of(point: Point, codes: set[str]) -> bool:
    """Whether a partner dot belongs to a frame: Alaska and Hawaii are told by longitude."""
    if point.lon < -129:
        return ("AK" in codes) if point.lat > 45 else ("HI" in codes)
    return "AK" not in codes and "HI" not in codes


def draw_card(data: CardData) -> bytes:
    """The card as PNG bytes, 1200 × 675."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, facecolor=PAPER)
    FigureCanvasAgg(fig)
    if data.state is None:
        _country_map(fig, data)
        _text(
            fig,
            0.03,
            0.935,
            data.kicker.upper(),
            fontsize=14,
            fontweight="bold",
            color=KIND_COLOURS[ChangeKind.ADDED],
            va="center",
        )
        _text(
            fig,
            0.03,
            0.86,
            _wrapped(data.title, 60, 1)[0],
            fontsize=25,
            fontweight="bold",
            va="center",
        )
        _text(
            fig,
            0.03,
            0.795,
            _wrapped(data.context, 110, 1)[0],
            fontsize=15,
            color=MUTED,
            va="center",
        )
        _text(fig, 0.97, 0.935, CREDIT, fontsize=12, ha="right", va="center", color=MUTED)
    else:
        _state_map(fig, data)
        _text_panel(fig, data)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor=PAPER)
    # A figure is a web of cycles (artists and canvas point back at it) holding its
    # renderer's pixel buffer: left to the collector's rare full passes, a month of cards
    # piles up in `run`'s memory (the soak's finding). Freed now, with the figure's last use.
    del fig
    gc.collect()
    return buffer.getvalue()


def _text_panel(fig: Figure, data: CardData) -> None:
    left, y = 0.6, 0.88
    colour = KIND_COLOURS[data.marked[0].kind]
    fig.add_artist(_rule(fig, left, colour))
    _text(fig, left, y, data.kicker.upper(), fontsize=16, fontweight="bold", color=colour, va="top")
    y -= 0.08
    for line in _wrapped(data.title, 20, 3):
        _text(fig, left, y, line, fontsize=29, fontweight="bold", va="top")
        y -= 0.075
    y -= 0.02
    for part in data.subtitle.split(" · "):  # the place, then the dates
        _text(fig, left, y, _wrapped(part, 40, 1)[0], fontsize=16, color=MUTED, va="top")
        y -= 0.045
    y = min(y - 0.05, 0.36)
    for line in _wrapped(data.context + ".", 38, 3):
        _text(fig, left, y, line, fontsize=17, va="top")
        y -= 0.05
    _text(fig, left, 0.05, CREDIT, fontsize=12, color=MUTED, va="bottom")


def _rule(fig: Figure, left: float, colour: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((left, 0.91), 0.06, 0.008, transform=fig.transFigure, color=colour)


# --- storage -------------------------------------------------------------------------------


def card_name(kind: MessageKind, rows: Sequence[dict[str, Any]]) -> str:
    """A change's uuid; for a digest, a hash of its changes' uuids (recipients with
    different state filters get different digests, each its own card)."""
    if kind == MessageKind.DIGEST:
        uuids = "|".join(sorted(row["uuid"] for row in rows))
        return "digest-" + hashlib.sha256(uuids.encode()).hexdigest()[:20]
    return rows[0]["uuid"]


def card_paths(state_dir: Path, name: str) -> tuple[Path, Path]:
    """The PNG and its alt text."""
    folder = state_dir / CARD_DIR
    return folder / f"{name}.png", folder / f"{name}.txt"


def stored_card(state_dir: Path, name: str) -> CardFile | None:
    png, alt = card_paths(state_dir, name)
    if not png.is_file() or not alt.is_file():
        return None
    return CardFile(name, str(png), alt.read_text(encoding="utf-8"), WIDTH, HEIGHT)


def card_data(
    db: sqlite_utils.Database, kind: MessageKind, rows: Sequence[dict[str, Any]], since: str = ""
) -> CardData:
    if kind == MessageKind.DIGEST:
        return digest_card_data(db, rows, since)
    return alert_card_data(db, rows[0], since)


def make_card(
    db: sqlite_utils.Database,
    state_dir: Path,
    kind: MessageKind,
    change_ids: Sequence[int],
    since: str = "",
) -> CardFile | None:
    """The stored card of these changes, drawn and stored first if there is none yet.
    None for a message that has no card (no changes behind it)."""
    rows = changes_by_id(db, change_ids)
    if not rows or kind not in (MessageKind.ALERT, MessageKind.DIGEST):
        return None
    name = card_name(kind, rows)
    found = stored_card(state_dir, name)
    if found is not None:
        return found
    data = card_data(db, kind, rows, since)
    png, alt = card_paths(state_dir, name)
    # The alt text first: the PNG's presence means the card is whole.
    write_atomically(alt, alt_text(data).encode("utf-8"))
    write_atomically(png, draw_card(data))
    return stored_card(state_dir, name)


def change_card(
    db: sqlite_utils.Database, state_dir: Path, change_id: int, since: str = ""
) -> tuple[bytes, str] | None:
    """(PNG, alt text) of one change's card: the stored one if its alert was sent with it,
    otherwise drawn now and not stored (`ringwatch card` only reads). None: no such change."""
    rows = changes_by_id(db, [change_id])
    if not rows:
        return None
    stored = stored_card(state_dir, card_name(MessageKind.ALERT, rows))
    if stored is not None:
        return Path(stored.path).read_bytes(), stored.alt
    data = alert_card_data(db, rows[0], since)
    return draw_card(data), alt_text(data)


def prune_cards(store: Store, state_dir: Path) -> int:
    """Remove the cards no message in the outbox needs any more (after `prune`); how many."""
    messages = store.outbox.card_messages()
    ids = sorted({change_id for _, change_ids in messages for change_id in change_ids})
    rows = {row["id"]: row for row in changes_by_id(store.db, ids)} if ids else {}
    keep = {
        card_name(kind, [rows[i] for i in change_ids if i in rows])
        for kind, change_ids in messages
        if any(i in rows for i in change_ids)
    }
    return remove_cards(state_dir, keep)


def remove_cards(state_dir: Path, keep: set[str]) -> int:
    """Remove every stored card not named in `keep`; how many went."""
    folder = state_dir / CARD_DIR
    removed = 0
    for png in folder.glob("*.png") if folder.is_dir() else ():
        if png.stem not in keep:
            png.unlink(missing_ok=True)
            png.with_suffix(".txt").unlink(missing_ok=True)
            removed += 1
    return removed
