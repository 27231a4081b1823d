"""`ringwatch site`: the static site, built from real databases and checked in a real browser.

The browser tests drive Debian's Chromium through chromedriver (Selenium), against the
built folder served by http.server on 127.0.0.1 and a tile stub on another port (so the
Content-Security-Policy's tile host is exercised). They assert what a visitor sees: the
map and its markers, the headline's numbers (those of `ringwatch report`), hostile names
shown as text and never run, no console errors, no request to any other host.
Screenshots at 1280 and 390 px go to $RINGWATCH_ARTIFACTS (or the test's temp folder).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import struct
import zlib
from collections.abc import Iterator
from html import unescape
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bot.boundaries import states_geojson
from bot.cards import make_card
from bot.config import load_config
from bot.models import MessageKind
from bot.site import SITE_MARKER, build_site, content_security_policy, page_name
from bot.snapshots import SnapshotStore
from bot.store import Store
from tests.support.bot import Bot
from tests.support.cli import run_cli, write_config
from tests.support.http import StubHandler, StubServer, closed_port_url
from tests.support.source_server import SourceServer
from tests.support.synthetic import generate_agencies, mutate, to_kml

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Names that would set window.pwned if a page ever parsed them as HTML or ran them.
HOSTILE_NAMES = (
    '<img src=x onerror="window.pwned=1">Pwned Police Department',
    "</script><script>window.pwned=2</script> Sheriff's Office",
)
HOSTILE_PROFILE = "javascript:window.pwned=3"
WAIT = 60  # seconds; generous, for a shared, loaded machine


# --- building ----------------------------------------------------------------------------


def _hostile(agencies: list[Any]) -> list[Any]:
    """The list with its first agencies renamed to HOSTILE_NAMES, one with a js: profile."""
    out = list(agencies)
    for index, name in enumerate(HOSTILE_NAMES):
        out[index] = dataclasses.replace(out[index], name=name)
    out[0] = dataclasses.replace(out[0], profile_url=HOSTILE_PROFILE)
    return out


def _polled_bot(directory: Path, server: SourceServer, n: int, extra: str = "") -> Bot:
    """A database holding a baseline of n synthetic agencies and one poll of changes (with
    hostile names among the additions)."""
    first = generate_agencies(n, seed=7)
    later = mutate(first, seed=8, add=12, remove=3, rename=3, change=3)
    later[-len(HOSTILE_NAMES) :] = _hostile(later[-len(HOSTILE_NAMES) :])
    url = server.serve("/map.kml", to_kml(first), to_kml(later), to_kml(later))
    # 12 new among 40 (30%): more than the default additions guard believes.
    bot = Bot.create(directory, url, "[guard]\nmax_added_share = 0.5\n" + extra)
    for _ in range(3):  # baseline, changes, the removals confirmed
        assert bot.poll(deliver=False).outcome in ("baseline", "ok", "unchanged")
    return bot


@pytest.fixture(scope="module")
def big_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """2,000 agencies (plus additions, hostile ones among them), built into a site."""
    directory = tmp_path_factory.mktemp("big")
    server = SourceServer().start()
    try:
        bot = _polled_bot(directory, server, 2000)
    finally:
        server.stop()
    yield {"config": bot.config_path, "bot": bot, "out": directory / "site"}


def _build(config_path: Path, out: Path, tiles: str) -> Path:
    """Build with `tiles` set (in a copy of the config: others share it); return the folder."""
    copy = out.parent / f"{out.name}-config.toml"
    text = config_path.read_text(encoding="utf-8") + f'\n[site]\ntiles = "{tiles}"\n'
    copy.write_text(text, encoding="utf-8")  # state_dir is absolute: the same database
    result = run_cli("site", "--config", str(copy), "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    return out


# --- serving -----------------------------------------------------------------------------


def _png() -> bytes:
    """A 1×1 grey PNG: a map tile that loads."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\xcc")) + chunk(b"IEND", b""))  # fmt: skip


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class _Tiles(StubHandler):
    def do_GET(self) -> None:
        self.send(200, _png(), {"Content-Type": "image/png"})


@pytest.fixture(scope="module")
def tiles() -> Iterator[StubServer]:
    with StubServer(_Tiles) as server:
        yield server


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[StubServer] = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietFiles, directory=str(directory))
        servers.append(StubServer(handler).start())
        return servers[-1].base_url

    yield start
    for server in servers:
        server.stop()


# --- the browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = (
            "the browser tests need Debian's Chromium and chromedriver: "
            "apt-get install -y chromium chromium-driver"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--window-size=1280,900",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def _visit(driver: Any, url: str) -> None:
    """Open url with fresh logs, and wait until its scripts have done their work."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(url)
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script(
            "var m = document.getElementById('map'); var c = document.getElementById('count');"
            "return (!m || m.dataset.markers !== undefined) && (!c || c.textContent !== '');"
        )
    )


def _console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _requests(driver: Any) -> list[dict[str, Any]]:
    """Every network request of the page: url and bytes received (from the performance log)."""
    sent: dict[str, str] = {}
    sizes: dict[str, float] = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            sent[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFinished":
            sizes[params["requestId"]] = params["encodedDataLength"]
    return [{"url": url, "bytes": sizes.get(rid, 0)} for rid, url in sent.items()]


def _screenshots(driver: Any, url: str, name: str, tmp_path: Path) -> None:
    """The page at 1280 and at 390 px wide (as a phone: Chrome's windows are never that
    narrow), loaded at that width, whole length."""
    folder = Path(os.environ.get("RINGWATCH_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    for width in (1280, 390):
        metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        _visit(driver, url)
        assert driver.execute_script("return document.documentElement.clientWidth") <= width
        height = driver.execute_script("return document.documentElement.scrollHeight")
        metrics["height"] = min(height, 8000)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        driver.save_screenshot(str(folder / f"{name}-{width}.png"))
        assert _console_errors(driver) == []
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _report_counts(config: Path, since: str, by: str) -> dict[str, int]:
    result = run_cli("report", "--config", str(config), "--since", since, "--by", by,
                     "--format", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["counts"]


def _headline_numbers(driver: Any) -> dict[str, int]:
    def number(selector: str) -> int:
        from selenium.webdriver.common.by import By

        found = driver.find_elements(By.CSS_SELECTOR, f"#headline {selector}")
        return int(found[0].text.replace(",", "")) if found else 0

    return {"listed": number(".n-listed"), "added": number(".n-added"),
            "states": number(".n-states")}  # fmt: skip


def _markers(driver: Any) -> int:
    return driver.execute_script("return document.querySelectorAll('path.agency-marker').length")


# --- browser tests -----------------------------------------------------------------------


def test_sample_site_in_a_browser(sample_config, browser, serve, tiles, tmp_path):
    site = _build(sample_config, tmp_path / "site", tiles.base_url + "/{z}/{x}/{y}.png")
    origin = serve(site)

    _visit(browser, origin + "/index.html")

    assert browser.execute_script(
        "return document.querySelector('#map.leaflet-container .leaflet-map-pane') !== null"
    )
    store = Store.open(load_config(sample_config).db_path, readonly=True)
    listed = store.agencies.active_count()
    first_poll = store.db.execute("select min(finished_at) from polls").fetchone()[0][:10]
    store.close()
    assert _markers(browser) == listed == 151
    counts = _report_counts(sample_config, first_poll, "detected")
    assert _headline_numbers(browser) == {
        "listed": counts["listed_now"], "added": counts["added"],
        "states": counts["added_states"],
    }  # fmt: skip
    assert _headline_numbers(browser) == {"listed": 151, "added": 29, "states": 27}
    legend = browser.execute_script("return document.getElementById('legend').textContent")
    assert "2018" in legend and "2020" in legend
    tile_requests = [r for r in _requests(browser) if r["url"].startswith(tiles.base_url)]
    assert tile_requests, "the map loaded no tiles"
    assert _console_errors(browser) == []
    _screenshots(browser, origin + "/index.html", "samples-index", tmp_path)

    # The samples' own hostile name, on the changes page, filtered to its state.
    _visit(browser, origin + "/changes.html")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    total = len(browser.find_elements(By.CSS_SELECTOR, "#changes tbody tr"))
    assert total == 32  # 29 added, 1 renamed, 1 changed, 1 removed
    links = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "tbody a")]
    assert len(links) == total
    assert all((site / urlsplit(link).path.lstrip("/")).is_file() for link in links)
    Select(browser.find_element(By.ID, "kind")).select_by_value("added")
    Select(browser.find_element(By.ID, "state")).select_by_value("MN")
    rows = browser.find_elements(By.CSS_SELECTOR, "#changes tbody tr")
    assert rows and all("MN" in row.text and "new partnership" in row.text for row in rows)
    assert browser.find_element(By.ID, "count").text == f"{len(rows)} of {total} changes"
    assert _console_errors(browser) == []
    _screenshots(browser, origin + "/changes.html", "samples-changes", tmp_path)
    _screenshots(browser, origin + "/states/mn.html", "samples-state", tmp_path)
    _screenshots(browser, origin + "/agencies/pa-smith-and-jones-township-police-department.html",
                 "samples-agency", tmp_path)  # fmt: skip


def _state_outlines(driver: Any) -> int:
    """The state shapes drawn in the map's base layer, once they have loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script("return document.getElementById('map').dataset.states")
    )
    return driver.execute_script(
        "return document.querySelectorAll('.leaflet-outlines-pane svg path.state-outline').length"
    )


def test_big_site_in_a_browser(big_site, browser, serve, tmp_path):
    # By default: no tiles, the bundled state outlines, nothing from another host.
    site = _build(big_site["config"], big_site["out"], tiles="")
    origin = serve(site)
    listed = len(big_site["bot"].agencies())
    assert listed > 2000

    _visit(browser, origin + "/index.html")

    assert _markers(browser) == listed
    assert _state_outlines(browser) >= 50
    requests = _requests(browser)
    served = (origin + "/", "data:")
    foreign = [r["url"] for r in requests if not r["url"].startswith(served)]
    assert foreign == []
    weight = sum(r["bytes"] for r in requests if r["url"].startswith(origin + "/"))
    assert 0 < weight < 1_000_000, f"index.html and what it loads weigh {weight:,} bytes"
    assert browser.execute_script("return window.pwned") is None
    _screenshots(browser, origin + "/index.html", "big-index", tmp_path)
    _visit(browser, origin + "/index.html")

    # A hostile agency's popup: its name as text, its javascript: profile not a link.
    points = json.loads((site / "data" / "map.json").read_text(encoding="utf-8"))
    index = next(i for i, row in enumerate(points["agencies"]) if row[3] == HOSTILE_NAMES[0])
    browser.execute_script(
        "document.querySelectorAll('path.agency-marker')[arguments[0]]"
        ".dispatchEvent(new MouseEvent('click', {bubbles: true}));",
        index,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    popup = WebDriverWait(browser, WAIT).until(  # shown once Leaflet's fade-in is over
        lambda d: [p for p in d.find_elements(By.CSS_SELECTOR, ".leaflet-popup-content") if p.text]
    )[0]
    assert HOSTILE_NAMES[0] in popup.text
    assert "Ring profile" not in popup.text
    hrefs = [a.get_attribute("href") for a in popup.find_elements(By.TAG_NAME, "a")]
    assert hrefs == [f"{origin}/agencies/{points['agencies'][index][9]}.html"]
    assert _console_errors(browser) == []

    for name in HOSTILE_NAMES:
        _visit(browser, f"{origin}/changes.html")
        cells = browser.find_elements(By.XPATH, "//tbody/tr/td[3]/a")
        assert name in [cell.text for cell in cells]
        link = next(cell for cell in cells if cell.text == name)
        link.click()
        WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.TAG_NAME, "h1"))
        assert browser.find_element(By.TAG_NAME, "h1").text == name
        assert browser.execute_script("return window.pwned") is None
        assert _console_errors(browser) == []


def test_a_reader_follows_an_agency_page_to_what_the_map_said(
    sample_config, browser, serve, tiles, tmp_path
):
    site = _build(sample_config, tmp_path / "site", tiles.base_url + "/{z}/{x}/{y}.png")
    origin = serve(site)
    from selenium.webdriver.common.by import By

    def follow_evidence(agency_page: str, label: str) -> dict[str, str]:
        """Open the agency's page, follow its `label` evidence link; the page's parts."""
        _visit(browser, f"{origin}/agencies/{agency_page}.html")
        link = browser.find_element(By.PARTIAL_LINK_TEXT, f"{label}: what the map said")
        link.click()
        _visit(browser, browser.current_url)
        records = browser.find_elements(By.CSS_SELECTOR, "pre.record")
        sections = {s.find_element(By.TAG_NAME, "h2").text: s.text
                    for s in browser.find_elements(By.CSS_SELECTOR, "main section")}  # fmt: skip
        assert _console_errors(browser) == []
        assert (
            browser.execute_script("return document.getElementsByTagName('township').length") == 0
        )
        return {"h1": browser.find_element(By.TAG_NAME, "h1").text, **sections,
                "records": [r.text for r in records]}  # fmt: skip

    hostile = "Smith & Jones <Township> Police Department"
    first = follow_evidence("pa-smith-and-jones-township-police-department", "first recorded")
    assert first["h1"] == f"Source record: {hostile}"
    assert "This is the first poll ringwatch made." in first["Before"]
    [after] = first["records"]
    assert "<name>Smith &amp; Jones &lt;Township&gt; Police Department</name>" in after

    renamed = follow_evidence("az-city-of-mesa-police-department", "renamed")
    before, after = renamed["records"]
    assert "<name>Mesa Police Department</name>" in before
    assert "<name>City of Mesa Police Department</name>" in after
    proof = browser.find_element(By.LINK_TEXT, "JSON").get_attribute("href")
    data = json.loads((site / urlsplit(proof).path.lstrip("/")).read_text(encoding="utf-8"))
    assert data["before"]["record"].split() == before.split()  # the page shows the JSON's record
    assert data["after"]["record"].split() == after.split()
    served = (origin + "/", tiles.base_url + "/", "data:")
    foreign = [r["url"] for r in _requests(browser) if not r["url"].startswith(served)]
    assert foreign == []
    _screenshots(browser, browser.current_url, "samples-evidence", tmp_path)


def test_markers_show_when_tiles_fail(big_site, browser, serve, tmp_path):
    dead = closed_port_url()  # every tile is refused
    site = _build(big_site["config"], tmp_path / "site", dead + "/{z}/{x}/{y}.png")
    origin = serve(site)

    _visit(browser, origin + "/index.html")

    assert _markers(browser) == len(big_site["bot"].agencies())
    errors = _console_errors(browser)
    assert any(e.startswith(dead + "/") for e in errors), "the tiles did not fail"
    assert [e for e in errors if not e.startswith(dead + "/")] == []


def test_state_page_maps_only_its_state(sample_config, browser, serve, tiles, tmp_path):
    site = _build(sample_config, tmp_path / "site", tiles.base_url + "/{z}/{x}/{y}.png")
    origin = serve(site)

    _visit(browser, origin + "/states/mn.html")

    rows = browser.execute_script(
        "return document.querySelectorAll('main table')[0].tBodies[0].rows.length"
    )
    assert _markers(browser) == rows > 0
    assert _console_errors(browser) == []


# --- building, without a browser --------------------------------------------------------


def _html_files(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def _tags(html: str) -> list[tuple[str, str, str]]:
    """(tag, attribute, value) for every attribute of every tag, as a browser parses them."""
    found: list[tuple[str, str, str]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend((tag, name, value or "") for name, value in attrs)

    Collect().feed(html)
    return found


def test_site_command_builds_pages_and_the_clis_exports(sample_config, tmp_path):
    out = tmp_path / "public"

    result = run_cli("site", "--config", str(sample_config), "--out", str(out))

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("built ") and str(out) in result.stdout
    for page in ("index.html", "changes.html", "about.html", "states/mn.html",
                 "agencies/mn-crystal-police-department.html",
                 "agencies/ms-ridgeland-police-department.html",  # ended: history kept
                 "charts/growth.svg", "charts/monthly.svg", "assets/leaflet/leaflet.js",
                 "assets/leaflet/LICENSE", SITE_MARKER):  # fmt: skip
        assert (out / page).is_file(), page
    for name, args in (
        ("agencies.csv", ["--format", "csv"]),
        ("agencies.geojson", ["--format", "geojson"]),
        ("changes.json", ["--what", "changes", "--format", "json"]),
        ("changes.csv", ["--what", "changes", "--format", "csv"]),
    ):
        exported = run_cli("export", "--config", str(sample_config), *args)
        assert (out / "data" / name).read_text(encoding="utf-8") == exported.stdout, name
    for page in _html_files(out):  # every link inside the site leads to a file
        for tag, attribute, value in _tags(page.read_text(encoding="utf-8")):
            if attribute in ("href", "src") and ":" not in value and not value.startswith("#"):
                target = (page.parent / value.split("#")[0]).resolve()
                assert target.is_file(), f"{page.relative_to(out)}: <{tag} {attribute}={value}>"
    crystal = (out / "agencies/mn-crystal-police-department.html").read_text(encoding="utf-8")
    assert "new partnership" in crystal and "2020-06-03" in crystal
    assert "<dt>County</dt><dd>Hennepin County</dd>" in crystal
    about = (out / "about.html").read_text(encoding="utf-8")
    for source in ("Census Bureau", "us-atlas", "ISC", "zipcodes", "MIT"):
        assert source in about
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'alt="Line chart of Ring partnerships listed over time' in index
    assert "151 listed now. 1 ended" in index  # the growth chart's numbers, in its alt text


def test_an_agency_page_shares_its_latest_map_card(sample_config, tmp_path):
    bot = Bot(sample_config).copy(tmp_path / "copy")  # the card goes into its own state dir
    store = Store.open(bot.config.db_path)
    try:
        crystal = store.db.execute(
            "select id, uuid from changes where name = 'Crystal Police Department' "
            "and kind = 'added'"
        ).fetchone()
        card = make_card(store.db, bot.config.state_dir, MessageKind.ALERT, [crystal[0]])
    finally:
        store.close()
    assert card is not None
    text = bot.config_path.read_text(encoding="utf-8")
    bot.config_path.write_text(text + '\n[site]\nurl = "https://ring.example/watch/"\n')
    out = tmp_path / "public"

    assert run_cli("site", "--config", str(bot.config_path), "--out", str(out)).returncode == 0

    published = out / "cards" / f"{crystal[1]}.png"
    assert published.read_bytes() == Path(card.path).read_bytes()
    page = (out / "agencies/mn-crystal-police-department.html").read_text(encoding="utf-8")
    tags = re.findall(r'<meta (?:property|name)="([^"]+)" content="([^"]*)">', page)
    found = {name: unescape(content) for name, content in tags}
    assert found["og:image"] == f"https://ring.example/watch/cards/{crystal[1]}.png"
    assert found["og:image:alt"] == card.alt
    assert found["twitter:card"] == "summary_large_image"
    other = (out / "agencies/ms-ridgeland-police-department.html").read_text(encoding="utf-8")
    assert "og:image" not in other  # no card stored for it


def test_each_change_on_an_agency_page_links_its_evidence_as_the_cli_shows_it(
    sample_config, tmp_path
):
    site = _build(sample_config, tmp_path / "site", "https://tile.example/{z}/{x}/{y}.png")
    store = Store.open(load_config(sample_config).db_path, readonly=True)
    logged = list(store.db.query("select id, uuid, kind, key from changes order by id"))
    store.close()

    published = sorted(p.stem for p in (site / "data" / "evidence").glob("*.json"))
    assert published == sorted(row["uuid"] for row in logged)  # the baseline's too
    [renamed] = [row for row in logged if row["kind"] == "renamed"]
    page = site / "agencies" / f"{page_name(renamed['key'])}.html"
    links = {v for t, a, v in _tags(page.read_text(encoding="utf-8")) if a == "href"}
    assert {
        f"../evidence/{renamed['uuid']}.html",
        f"../data/evidence/{renamed['uuid']}.json",
    } <= links
    shown = run_cli("evidence", str(renamed["id"]), "--config", str(sample_config),
                    "--format", "json")  # fmt: skip
    data = site / "data" / "evidence" / f"{renamed['uuid']}.json"
    assert data.read_text(encoding="utf-8") + "\n" == shown.stdout
    proof = json.loads(shown.stdout)
    html = (site / "evidence" / f"{renamed['uuid']}.html").read_text(encoding="utf-8")
    quoted = [
        unescape(r) for r in re.findall(r'<pre class="record"><code>(.*?)</code>', html, re.S)
    ]
    assert quoted == [proof["before"]["record"], proof["after"]["record"]]
    assert "<name>Mesa Police Department</name>" in quoted[0]
    assert "<name>City of Mesa Police Department</name>" in quoted[1]


def test_changes_whose_snapshot_is_lost_are_published_without_evidence(sample_config, tmp_path):
    config = write_config(tmp_path, "")
    shutil.copytree(sample_config.parent / "state", tmp_path / "state")
    store = Store.open(tmp_path / "state" / "ringwatch.db", readonly=True)
    later = store.db.execute("select snapshot from polls order by id desc").fetchone()[0]
    logged = list(store.db.query("select uuid, kind from changes order by id"))
    store.close()
    SnapshotStore(tmp_path / "state" / "snapshots").path(later).unlink()

    result = run_cli("site", "--config", str(config), "--out", str(tmp_path / "site"))

    assert result.returncode == 0, result.stderr
    lost = [row for row in logged if row["kind"] != "baseline"]  # each cites the later poll
    assert len(lost) == 31 and f"{len(lost)} changes have no evidence page" in result.stderr
    published = {p.stem for p in (tmp_path / "site" / "data" / "evidence").glob("*.json")}
    assert published == {row["uuid"] for row in logged} - {row["uuid"] for row in lost}
    mesa = tmp_path / "site" / "agencies" / "az-city-of-mesa-police-department.html"
    assert "renamed: what the map said" not in mesa.read_text(encoding="utf-8")


def test_pages_escape_every_value_and_link_only_over_http(tmp_path, source_server):
    bot = _polled_bot(tmp_path, source_server, 40)
    site = build_site(bot.config, Store.open(bot.config.db_path, readonly=True).db).path

    pages = {path: path.read_text(encoding="utf-8") for path in _html_files(site)}
    everything = "\n".join(pages.values())
    for name in HOSTILE_NAMES:
        assert name not in everything
    assert "&lt;img src=x onerror=&#34;window.pwned=1&#34;&gt;Pwned Police Department" in everything
    # A source record is quoted whole on its evidence page, its javascript: profile as text;
    # everywhere else the profile is left out.
    quoted = re.findall(r'<pre class="record"><code>(.*?)</code></pre>', everything, re.S)
    assert any("javascript:window.pwned=3" in record for record in quoted)
    assert "javascript:" not in re.sub(r'<pre class="record">.*?</pre>', "", everything, flags=re.S)
    for path, html in pages.items():
        tags = _tags(html)
        assert ("meta", "http-equiv", "Content-Security-Policy") in tags, path
        for tag, attribute, value in tags:
            assert not attribute.startswith("on"), f"{path}: <{tag} {attribute}=…>"
            assert attribute != "style", f"{path}: <{tag} style=…>"
            if attribute in ("href", "src"):
                assert value.startswith(("http://", "https://")) or ":" not in value, (
                    f"{path}: <{tag} {attribute}={value!r}>"
                )
        scripts = [(a, v) for t, a, v in tags if t == "script"]
        assert all(a == "src" for a, _ in scripts), f"{path}: a script without src"
        assert html.count("<script") == len(scripts), f"{path}: an inline script"
    points = json.loads((site / "data" / "map.json").read_text(encoding="utf-8"))
    profiles = [row[points["columns"].index("profile_url")] for row in points["agencies"]]
    assert HOSTILE_PROFILE not in profiles and "" in profiles


def test_a_rebuild_replaces_the_site_in_one_swap_and_leaves_nothing_behind(sample_config, tmp_path):
    out = tmp_path / "site"
    assert run_cli("site", "--config", str(sample_config), "--out", str(out)).returncode == 0
    (out / "stale.html").write_text("from an older build")

    result = run_cli("site", "--config", str(sample_config), "--out", str(out))

    assert result.returncode == 0, result.stderr
    assert not (out / "stale.html").exists()
    assert (out / "index.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_a_failed_rebuild_keeps_the_old_site(sample_config, tmp_path):
    out = tmp_path / "out" / "site"
    assert run_cli("site", "--config", str(sample_config), "--out", str(out)).returncode == 0
    before = (out / "index.html").read_bytes()
    overrides = tmp_path / "templates"
    (overrides / "site").mkdir(parents=True)
    (overrides / "site" / "about.html").write_text("{% if %}", encoding="utf-8")
    config = tmp_path / "config.toml"
    config.write_text(
        sample_config.read_text(encoding="utf-8") + f'\n[alerts]\ntemplates_dir = "{overrides}"\n'
    )

    result = run_cli("site", "--config", str(config), "--out", str(out))

    assert result.returncode == 2
    assert "site template" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (out / "index.html").read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["site"]


def test_refuses_to_replace_a_folder_it_did_not_build(sample_config, tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("mine")

    result = run_cli("site", "--config", str(sample_config), "--out", str(tmp_path))

    assert result.returncode == 2
    assert "ringwatch did not build" in result.stderr and "--out" in result.stderr
    assert precious.read_text() == "mine"


def test_poll_rebuilds_the_site_when_enabled(source_server, tmp_path):
    from tests.support.cli import poll_samples

    config = poll_samples(source_server, tmp_path, '[site]\nenabled = true\nout = "public"\n')

    changes = json.loads((tmp_path / "public" / "data" / "changes.json").read_text())
    assert [row["kind"] for row in changes].count("added") == 29
    assert any(row["kind"] == "removed" for row in changes)  # the third poll's ending
    assert run_cli("check-config", "--config", str(config)).stdout.count("public") == 1


def test_poll_leaves_the_site_alone_when_disabled(source_server, tmp_path):
    from tests.support.cli import poll_samples

    poll_samples(source_server, tmp_path)

    assert not (tmp_path / "site").exists()


BAD_SITE_CONFIG = [
    # (the [site] table, what the one-line error must say)
    ('tiles = "javascript:alert(1)//{z}/{x}/{y}"', "site.tiles must be an http(s) tile URL"),
    ('tiles = "https://tiles.example.org/map.png"', "site.tiles must be an http(s) tile URL"),
    ('tiles = "https://a.org;script-src *;/{z}/{x}/{y}.png"', "site.tiles must be an http(s) tile"),
    ('url = "ftp://example.org/"', "site.url must be an http(s) URL"),
    ('since = "May 25"', "site.since must be a date like 2020-05-25"),
    ('out = " "', "site.out must name a folder"),
    ("enable = true", "unknown key site.enable (did you mean 'enabled'?)"),
]


@pytest.mark.parametrize(("table", "message"), BAD_SITE_CONFIG)
def test_bad_site_config_is_one_clear_line(tmp_path, table, message):
    config = write_config(tmp_path, f"[site]\n{table}\n")

    result = run_cli("check-config", "--config", str(config))

    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_headline_counts_since_the_configured_date_by_active_date(sample_config, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        sample_config.read_text(encoding="utf-8")
        + '\n[site]\nsince = "2020-05-25"\nurl = "https://example.org/ring"\n'
    )

    result = run_cli("site", "--config", str(config), "--out", str(tmp_path / "site"))

    assert result.returncode == 0, result.stderr
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))
    assert "151 partnerships listed now; 29 new since May 25, 2020 in 27 states." in text
    counts = _report_counts(config, "2020-05-25", "active-date")
    assert (counts["listed_now"], counts["added"], counts["added_states"]) == (151, 29, 27)
    assert "ringwatch report --since 2020-05-25 --by active-date" in text
    assert '<link rel="canonical" href="https://example.org/ring/index.html">' in html


def test_the_feed_is_published_with_the_site_when_configured(sample_config, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(sample_config.read_text(encoding="utf-8") + '\n[feed]\npath = "feed.atom"\n')

    result = run_cli("site", "--config", str(config), "--out", str(tmp_path / "site"))

    assert result.returncode == 0, result.stderr
    feed = (tmp_path / "site" / "data" / "changes.atom").read_text(encoding="utf-8")
    assert feed.count("<entry>") == 31  # a video count changing (churn) is not news
    index = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert 'type="application/atom+xml"' in index and 'href="data/changes.atom"' in index


@pytest.mark.parametrize(
    ("tiles", "source"),
    [
        ("https://tile.openstreetmap.org/{z}/{x}/{y}.png", "https://tile.openstreetmap.org"),
        ("https://{s}.tile.example.org/{z}/{x}/{y}.png", "https://*.tile.example.org"),
        ("http://127.0.0.1:8080/tiles/{z}/{x}/{y}.png", "http://127.0.0.1:8080"),
    ],
)
def test_the_csp_allows_images_from_the_tile_host_only(tiles, source):
    policy = content_security_policy(tiles)

    assert f"img-src 'self' data: {source}" in policy
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe" not in policy


def test_a_site_that_cannot_be_rebuilt_is_logged_and_the_poll_still_counts(source_server, tmp_path):
    from tests.support.cli import SAMPLES

    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "notes.txt").write_text("mine")
    url = source_server.serve("/map.kml", (SAMPLES / "baseline.kml").read_bytes())
    config = write_config(
        tmp_path, f'[source]\nurl = "{url}"\n[site]\nenabled = true\nout = "public"\n'
    )

    result = run_cli("poll", "--config", str(config))

    assert result.returncode == 0
    assert "baseline: now tracking 123 agencies" in result.stdout
    assert "could not rebuild the site" in result.stderr and "notes.txt" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "public").iterdir()) == ["notes.txt"]


def test_every_agency_key_has_its_own_page_name():
    assert page_name("mn/crystal-police-department") == "mn-crystal-police-department"
    assert page_name("mn/edina-pd~edina") == "mn-edina-pd--edina"
    assert page_name("mn/edina-pd~2") == "mn-edina-pd--2"
    assert page_name("mn/edina-pd-edina") != page_name("mn/edina-pd~edina")


def test_the_base_map_is_every_state_small_and_alaska_in_one_piece():
    outlines = states_geojson()
    codes = {feature["id"] for feature in outlines["features"]}
    assert len(codes) >= 51 and {"AK", "HI", "DC", "MN"} <= codes
    assert len(json.dumps(outlines, separators=(",", ":"))) < 200_000
    alaska = next(f for f in outlines["features"] if f["id"] == "AK")
    points = [p for polygon in alaska["geometry"]["coordinates"] for ring in polygon for p in ring]
    # The Aleutians past the antimeridian continue westwards, never across the world.
    assert all(-190 < lon < -129 for lon, _ in points)
    assert all(round(value, 2) == value for point in points for value in point)
