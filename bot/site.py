"""`ringwatch site`: a static public site (map, timeline, change log, agency pages, and
the evidence of every change).

Reading (site_data) is one pass over the database through the same queries as the CLI;
everything after it is pure: page contexts rendered by the Jinja2 templates in
bot/templates/site/ (autoescaped; `alerts.templates_dir` overrides them like the alerts),
plus the CLI's exports in data/. The evidence is the exception: each change's is read
(bot/evidence.py, from the snapshots) and written one at a time, so that a long history
never sits in memory. The build goes into a temporary folder beside the target and is
then swapped in, so a web server serves the old site or the new one, never half.

Safety: every value is escaped by the templates or set as text by the scripts (which
build the DOM with textContent, from JSON files); links must be http(s) (safe.http_url);
no inline scripts or styles; a Content-Security-Policy allows only the site itself (and
the tile host, when `[site] tiles` opts in to third-party tiles: by default the map's base
layer is the bundled state outlines, data/states.json, and no request leaves the site).
Each agency page's social card (`og:image`) is its latest change's map card, copied from
the state directory to cards/<change uuid>.png with every other stored card.
"""

from __future__ import annotations

import ctypes
import io
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2

from bot.boundaries import states_geojson
from bot.cards import stored_card
from bot.config import Config
from bot.export import agency_rows, write_export
from bot.models import (
    AGENCY_FIELDS,
    CARD_DIR,
    PUBLIC_FIELDS,
    AgencyField,
    CardFile,
    ChangeKind,
    FieldKind,
)
from bot.normalise import US_STATES, display_name
from bot.queries import (
    ChangeFilter,
    first_good_poll_time,
    install_id,
    last_change_time,
    last_good_poll_time,
    query_changes,
)
from bot.render import make_environment
from bot.reports import Report, headline_report, long_date, period_phrase
from bot.safe import http_url

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)

# A folder holding this file was built by ringwatch and may be replaced wholesale.
SITE_MARKER = ".ringwatch-site"
LAST_CHANGES = 10
# The year an agency joined, oldest to newest, along viridis (ordered and colour-blind-safe;
# markers are outlined dark, so the yellow end shows on light tiles): interpolated per year.
YEAR_ANCHORS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")
UNDATED_COLOUR = "#888888"
KIND_LABELS = {
    ChangeKind.ADDED: "new partnership",
    ChangeKind.REMOVED: "partnership ended",
    ChangeKind.RENAMED: "renamed",
    ChangeKind.CHANGED: "details changed",
    ChangeKind.BASELINE: "first recorded",
}

# What a change's evidence page shows, as its link on the agency page says.
EVIDENCE_TITLES = {
    ChangeKind.ADDED: "what the map said",
    ChangeKind.BASELINE: "what the map said",
    ChangeKind.REMOVED: "what the map said before",
    ChangeKind.RENAMED: "what the map said before and after",
    ChangeKind.CHANGED: "what the map said before and after",
}


class SiteError(Exception):
    """The site cannot be built where asked; worded for the person who asked."""


@dataclass(frozen=True)
class SiteBuild:
    path: Path
    pages: int
    agencies: int
    changes: int


# --- pure helpers ----------------------------------------------------------------------------


def page_name(key: str) -> str:
    """The file name (without .html) of an agency's page: its key with `/` as `-`, and the
    `~` that tells two agencies of one name apart as `--` (a key never holds two dashes in a
    row, so no two keys share a page). assets/changes.js applies the same rule."""
    name = key.lower().replace("~", "--").replace("/", "-")
    return re.sub(r"[^a-z0-9-]", "-", name)


def tile_source(tiles: str) -> str:
    """The CSP source for a tile URL template: its origin, `{s}` subdomains as a wildcard."""
    parts = urlsplit(tiles)
    host = re.sub(r"\{[a-z]\}", "*", parts.netloc)
    return f"{parts.scheme}://{host}"


def content_security_policy(tiles: str) -> str:
    tile_host = f" {tile_source(tiles)}" if tiles else ""
    return "; ".join(
        (
            "default-src 'self'",
            # data: because Leaflet blanks the tiles it drops with a data: GIF (emptyImageUrl,
            # not configurable); an image cannot run script.
            f"img-src 'self' data:{tile_host}",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


def _ramp(position: float) -> str:
    """The colour at `position` (0..1) along YEAR_ANCHORS."""
    anchors = [tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in YEAR_ANCHORS]
    scaled = position * (len(anchors) - 1)
    low = min(int(scaled), len(anchors) - 2)
    mix = scaled - low
    rgb = (round(a + (b - a) * mix) for a, b in zip(anchors[low], anchors[low + 1], strict=True))
    return "#" + "".join(f"{value:02x}" for value in rgb)


def year_colours(years: Sequence[str]) -> list[tuple[str, str]]:
    """(year, colour) for every year, oldest first; no year ("") last, in grey."""
    known = sorted({y for y in years if y})
    steps = max(len(known) - 1, 1)
    pairs = [(year, _ramp(i / steps)) for i, year in enumerate(known)]
    if any(not y for y in years):
        pairs.append(("", UNDATED_COLOUR))
    return pairs


# The map's columns besides its point, year and page: the public fields read from the
# source but the key (the page names it) and lat/lon (the point); the agency page shows
# the derived ones.
MAP_FIELDS = tuple(
    f for f in AGENCY_FIELDS if f.public and not f.derived and f.name not in ("key", "lat", "lon")
)


def _map_value(spec: AgencyField, value: Any) -> Any:
    """A count stays a number (or null); a link only when http(s); text '' when missing."""
    if spec.kind == FieldKind.COUNT:
        return value
    if spec.kind == FieldKind.URL:
        return http_url(value) or ""
    return value or ""


def map_points(agencies: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The compact JSON the map loads: one short array per agency, not per-marker HTML."""
    colours = year_colours([(a["active_date"] or "")[:4] for a in agencies])
    year_index = {year: i for i, (year, _) in enumerate(colours)}
    rows = [
        [
            round(a["lat"], 5),
            round(a["lon"], 5),
            year_index[(a["active_date"] or "")[:4]],
            *(_map_value(spec, a[spec.name]) for spec in MAP_FIELDS),
            page_name(a["key"]),
        ]
        for a in agencies
        if a["lat"] is not None and a["lon"] is not None
    ]
    return {
        "columns": ["lat", "lon", "year", *(spec.name for spec in MAP_FIELDS), "page"],
        "years": [{"year": y or "no date", "colour": c} for y, c in colours],
        "agencies": rows,
    }


def site_headline(report: Report) -> dict[str, Any]:
    """'1,331 partnerships listed now; 29 new since May 25, 2020 in 27 states', as parts
    the page can mark up (the numbers are `ringwatch report`'s)."""
    states = len(report.addition_states)
    return {
        "listed": report.listed_now,
        ChangeKind.ADDED: len(report.additions),
        "period": period_phrase(report.since, report.until),
        "states": states,
        "report_command": f"ringwatch report --since {report.since} --by {report.by}"
        if report.since
        else f"ringwatch report --by {report.by}",
    }


def change_detail(row: dict[str, Any]) -> str:
    """One line saying what a change was, beyond its kind."""
    before, after = row["before"] or {}, row["after"] or {}
    if row["kind"] == ChangeKind.RENAMED:
        return f"was {before.get('name')}"
    if row["kind"] == ChangeKind.CHANGED:
        return "; ".join(f"{f}: {before.get(f)} → {after.get(f)}" for f in row["fields"])
    if row["kind"] in (ChangeKind.ADDED, ChangeKind.BASELINE) and row["active_date"]:
        return f"active since {row['active_date']}"
    if row["kind"] == ChangeKind.REMOVED and before.get("active_date"):
        return f"partner since {before['active_date']}"
    return ""


def change_context(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "display_name": display_name(row["name"] or ""),
        "label": KIND_LABELS.get(row["kind"], row["kind"]),
        "detected_on": (row["detected_at"] or "")[:10],
        "detail": change_detail(row),
        "page": page_name(row["key"]),
    }


def agency_context(agency: dict[str, Any]) -> dict[str, Any]:
    return {
        **dict.fromkeys(PUBLIC_FIELDS),
        **agency,
        "display_name": display_name(agency["name"] or ""),
        "profile": http_url(agency.get("profile_url")),
        "page": page_name(agency["key"]),
        "state_name": US_STATES.get(agency["state"] or "", agency["state"] or ""),
    }


def growth_alt(data: Any) -> str:
    """Alt text for the growth chart, with its numbers (charts.GrowthData)."""
    listed = data.listed()
    if not listed:
        return "Growth chart: no partnerships with an Active Date yet."
    first_day, first_n = listed[0]
    years: dict[int, int] = {}
    for day, n in listed:
        years[day.year] = n
    by_year = ", ".join(f"{n:,} by the end of {year}" for year, n in years.items())
    text = (
        f"Line chart of Ring partnerships listed over time (begun by Active Date, less those "
        f"ended): {first_n:,} on {long_date(first_day.isoformat())}, {by_year}; "
        f"{data.listed_now:,} listed now."
    )
    if data.ended:
        text += f" {data.ended[-1][1]:,} ended, marked on the day ringwatch saw it."
    if data.observed:
        day, n = data.observed[-1]
        text += f" The source listed {n:,} when ringwatch checked on {long_date(day.isoformat())}."
    return text


def monthly_alt(data: Any) -> str:
    """Alt text for the monthly chart, with its numbers (charts.MonthlyData)."""
    if not data.months:
        return "Monthly chart: no partnerships with an Active Date yet."
    peak_month, peak = max(data.months, key=lambda item: item[1])
    recent = ", ".join(f"{m:%b %Y} {n:,}" for m, n in data.months[-6:])
    return (
        f"Bar chart of new Ring partnerships per month, {data.months[0][0]:%B %Y} to "
        f"{data.months[-1][0]:%B %Y}: most in {peak_month:%B %Y} ({peak:,}); "
        f"the last six months: {recent}."
    )


# --- reading the database ----------------------------------------------------------------------


@dataclass(frozen=True)
class SiteData:
    agencies: list[dict[str, Any]]  # listed now, by state and name (export.agency_rows)
    history: list[dict[str, Any]]  # the whole change log with the baseline, oldest first
    changes: list[dict[str, Any]]  # the change log as `ringwatch export --what changes`
    report: Report  # the headline's numbers
    first_poll: str | None
    last_checked: str | None
    last_changed: str | None


def site_data(config: Config, db: sqlite_utils.Database) -> SiteData:
    first_poll = first_good_poll_time(db)
    return SiteData(
        agencies=agency_rows(db),
        history=query_changes(db, ChangeFilter(kinds=tuple(ChangeKind))),
        changes=query_changes(db, ChangeFilter(churn=True)),  # as `export --what changes`
        report=headline_report(db, config.site.since),
        first_poll=first_poll,
        last_checked=last_good_poll_time(db),
        last_changed=last_change_time(db),
    )


# --- writing -----------------------------------------------------------------------------------


def _version() -> str:
    try:
        return metadata.version("ringwatch")
    except metadata.PackageNotFoundError:
        return "unknown"


class _Writer:
    """Renders pages into one build folder."""

    def __init__(self, config: Config, env: jinja2.Environment, root: Path) -> None:
        self.env = env
        self.root = root
        self.pages = 0
        url = config.site.url
        self.common = {
            "site_title": config.site.title,
            "csp": content_security_policy(config.site.tiles),
            "base_url": (url.rstrip("/") + "/") if url else "",
            "version": _version(),
            "tiles": config.site.tiles,
            "attribution": config.site.attribution,
        }

    def page(self, template: str, path: str, **context: Any) -> None:
        depth = path.count("/")
        html = self.env.get_template(f"site/{template}").render(
            **self.common, **context, path=path, root="../" * depth
        )
        self.write(path, html)
        self.pages += 1

    def write(self, path: str, text: str | bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)


def _export(rows: Sequence[dict[str, Any]], what: str, fmt: str) -> str:
    buffer = io.StringIO()
    write_export(rows, what, fmt, buffer)
    return buffer.getvalue()


def _copy_assets(root: Path) -> None:
    source = resources.files("bot") / "site_assets"
    with resources.as_file(source) as folder:
        shutil.copytree(folder, root / "assets")


def _charts(db: sqlite_utils.Database, root: Path) -> dict[str, str]:
    """Draw the growth and monthly charts as SVG; their alt texts."""
    import matplotlib

    from bot import charts

    growth = charts.growth_data(db)
    monthly = charts.monthly_data(db)
    figures = {"growth": charts.growth_chart(growth), "monthly": charts.monthly_chart(monthly)}

    # Text as text, not glyph outlines: smaller files that stay selectable.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        for kind, figure in figures.items():
            charts.save_figure(figure, root / "charts" / f"{kind}.svg", fmt="svg")
    return {"growth": growth_alt(growth), "monthly": monthly_alt(monthly)}


def render_site(
    config: Config, db: sqlite_utils.Database, env: jinja2.Environment, root: Path
) -> SiteBuild:
    """Write every page, asset and export of the site into the empty folder `root`."""
    data = site_data(config, db)
    writer = _Writer(config, env, root)
    _copy_assets(root)
    chart_alts = _charts(db, root)

    agencies = [agency_context(a) for a in data.agencies]
    newest_first = [change_context(row) for row in reversed(data.changes)]
    states = sorted({a["state"] for a in agencies if a["state"]})
    by_state = {st: [a for a in agencies if a["state"] == st] for st in states}
    times = {
        "first_poll": data.first_poll,
        "last_checked": data.last_checked,
        "last_changed": data.last_changed,
    }

    writer.write("data/map.json", json.dumps(map_points(data.agencies), ensure_ascii=False,
                                              separators=(",", ":")))  # fmt: skip
    writer.write("data/states.json", json.dumps(states_geojson(), separators=(",", ":")))
    cards = _publish_cards(config, root)
    writer.write("data/agencies.geojson", _export(data.agencies, "agencies", "geojson"))
    writer.write("data/agencies.csv", _export(data.agencies, "agencies", "csv"))
    writer.write("data/changes.json", _export(data.changes, "changes", "json"))
    writer.write("data/changes.csv", _export(data.changes, "changes", "csv"))
    feed = _feed(config, db, env)
    if feed is not None:
        writer.write("data/changes.atom", feed)

    writer.page(
        "index.html", "index.html",
        headline=site_headline(data.report),
        last_changes=newest_first[:LAST_CHANGES],
        states=[{"code": st, "name": US_STATES.get(st, st), "count": len(by_state[st])}
                for st in states],
        charts=chart_alts,
        has_feed=feed is not None,
        **times,
    )  # fmt: skip
    writer.page("changes.html", "changes.html",
                kinds=[k for k in ChangeKind if k != ChangeKind.BASELINE], kind_labels=KIND_LABELS,
                states=[(st, US_STATES.get(st, st)) for st in sorted(
                    {row["state"] for row in data.changes if row["state"]})])  # fmt: skip
    for st in states:
        writer.page(
            "state.html", f"states/{st.lower()}.html",
            state=st, state_name=US_STATES.get(st, st), agencies=by_state[st],
            changes=[row for row in newest_first if row["state"] == st],
        )  # fmt: skip
    current = {a["key"]: a for a in agencies}
    history = [change_context(row) for row in data.history]
    proof = _publish_evidence(config, db, writer, history)
    histories: dict[str, list[dict[str, Any]]] = {}
    for row in history:
        histories.setdefault(row["key"], []).append(row)
    for key, rows in histories.items():
        last = rows[-1]
        known = current.get(key) or agency_context(
            {**(last["after"] or last["before"] or {}), "key": key, "name": last["name"],
             "city": last["city"], "state": last["state"]}
        )  # fmt: skip
        card = next((cards[row["uuid"]] for row in reversed(rows) if row["uuid"] in cards), None)
        writer.page(
            "agency.html", f"agencies/{page_name(key)}.html",
            agency=known, listed=key in current, history=rows, state_pages=states,
            evidence=[proof[row["id"]] for row in rows if row["id"] in proof], card=card,
        )  # fmt: skip
    writer.page("about.html", "about.html", source_url=config.source.url,
                source_link=http_url(config.source.url), guard=config.guard, **times)  # fmt: skip
    (root / SITE_MARKER).write_text("built by ringwatch site; safe to replace wholesale\n")
    return SiteBuild(root, writer.pages, len(agencies), len(data.changes))


def _publish_cards(config: Config, root: Path) -> dict[str, CardFile]:
    """Every map card stored in the state directory, copied to cards/<name>.png (where
    webhook bodies' image_url points); by name."""
    folder = config.state_dir / CARD_DIR
    names = sorted(png.stem for png in folder.glob("*.png")) if folder.is_dir() else []
    published = {}
    for name in names:
        card = stored_card(config.state_dir, name)
        if card is not None:
            (root / CARD_DIR).mkdir(exist_ok=True)
            shutil.copyfile(card.path, root / CARD_DIR / f"{name}.png")
            published[name] = card
    return published


@dataclass(frozen=True)
class EvidenceLink:
    """Where a change's evidence is published (paths inside the site): a page for readers,
    and beside the other data the JSON of `ringwatch evidence ID --format json`."""

    title: str
    page: str
    data: str


def evidence_link(row: dict[str, Any]) -> EvidenceLink:
    """Named by the change's uuid, checked to be one: the name is a path."""
    name = str(uuid.UUID(row["uuid"]))
    return EvidenceLink(
        title=f"{row['detected_on']} · {row['label']}: {EVIDENCE_TITLES[row['kind']]}",
        page=f"evidence/{name}.html",
        data=f"data/evidence/{name}.json",
    )


def _publish_evidence(
    config: Config, db: sqlite_utils.Database, writer: _Writer, history: Sequence[dict[str, Any]]
) -> dict[int, EvidenceLink]:
    """Write every change's evidence (oldest first: one parse per snapshot); change id →
    its links. A change whose polls or snapshots cannot be read is left without one
    (`ringwatch verify` says why)."""
    from bot.evidence import EvidenceError, evidence_json, gather_evidence, record_reader
    from bot.snapshots import SnapshotError
    from bot.store import Store

    store, reader = Store(db), record_reader(config)
    links: dict[int, EvidenceLink] = {}
    unreadable = 0
    for row in history:
        try:
            found = gather_evidence(store, config, row["id"], reader)
        except (EvidenceError, SnapshotError):
            unreadable += 1
            continue
        link = links[row["id"]] = evidence_link(row)
        writer.write(link.data, evidence_json(found))
        writer.page("evidence.html", link.page, change=row, evidence=found,
                    agency_page=f"agencies/{row['page']}.html", data=link.data)  # fmt: skip
    if unreadable:
        log.warning("%d changes have no evidence page: a poll or snapshot they cite cannot "
                    "be read (ringwatch verify checks them all)", unreadable)  # fmt: skip
    return links


def _feed(config: Config, db: sqlite_utils.Database, env: jinja2.Environment) -> bytes | None:
    if config.feed_path is None:
        return None
    from bot.feed import build_feed

    rows = query_changes(db, ChangeFilter(limit=config.feed.entries))
    return build_feed(rows, title=config.feed.title, env=env, install=install_id(db),
                      feed_url=config.feed.url, source_url=config.source.url)  # fmt: skip


# --- the atomic swap ---------------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where that is not available."""
    rename = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if rename is None:
        return False
    result = rename(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _check_target(target: Path) -> None:
    """Refuse to replace a folder ringwatch did not build: swapping deletes what was there."""
    if not target.exists():
        return
    if not target.is_dir():
        raise SiteError(f"{target} is a file, not a folder: choose another site.out or --out")
    if any(target.iterdir()) and not (target / SITE_MARKER).exists():
        raise SiteError(
            f"{target} holds files that ringwatch did not build (no {SITE_MARKER} in it), and "
            "building the site would replace them: choose a new or empty folder "
            "for site.out or --out"
        )


def build_site(
    config: Config,
    db: sqlite_utils.Database,
    out: Path | None = None,
    env: jinja2.Environment | None = None,
) -> SiteBuild:
    """Build the site into a temporary folder beside `out` (default site.out), then swap it
    in: a server sees the old site or the new one, never a mix."""
    target = (out or config.site_path).absolute()
    _check_target(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    except OSError as exc:
        raise SiteError(f"cannot write beside {target}: {exc.strerror or exc}") from None
    try:
        os.chmod(building, 0o755)  # mkdtemp makes it private; a site is for serving
        result = render_site(config, db, env or make_environment(config.templates_path), building)
        if not target.exists():
            building.rename(target)
        elif not _exchange(building, target):
            # Without an atomic exchange, the old site is missing for one rename's time.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            target.rename(old / "site")
            building.rename(target)
            building = old
    except OSError as exc:
        raise SiteError(f"cannot build the site in {target}: {exc.strerror or exc}") from None
    except jinja2.TemplateError as exc:  # an override in alerts.templates_dir
        where = f"{exc.name}:{exc.lineno}: " if isinstance(exc, jinja2.TemplateSyntaxError) else ""
        raise SiteError(f"site template {where}{exc}") from None
    finally:
        shutil.rmtree(building, ignore_errors=True)  # the failed build, or the old site
    return SiteBuild(target, result.pages, result.agencies, result.changes)


def rebuild_after_poll(config: Config, db: sqlite_utils.Database, env: jinja2.Environment) -> None:
    """Rebuild the site after a poll that logged changes, when [site] is enabled.

    The change log is committed already: a site that cannot be built is logged, never a
    failed poll.
    """
    try:
        build = build_site(config, db, env=env)
    except SiteError as exc:
        log.warning("could not rebuild the site: %s", exc)
        return
    log.info("rebuilt the site in %s (%d pages)", build.path, build.pages)
