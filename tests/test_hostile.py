"""Every output format, rendered from a change log full of hostile names and links, read
the way its consumer reads it: Python-Markdown's HTML, a browser's DOM (lxml), a feed
reader (feedparser), a spreadsheet (the csv module), a map (GeoJSON)."""

from __future__ import annotations

import csv
import io
import json

import feedparser
import lxml.etree
import lxml.html
import markdown
import pytest

from bot.normalise import display_name
from bot.safe import FORMULA_STARTS, http_url, plain_text
from tests.support.cli import run_cli, write_config
from tests.support.hostile import (
    FORMULA_CITY,
    HOSTILE_NAMES,
    RTL_OVERRIDE,
    SAFE_URL,
    UNSAFE_URLS,
    poll_hostile,
)

# What a reader must see: each name as text, with the invisible direction trick gone.
SHOWN_NAMES = [plain_text(name) for name in HOSTILE_NAMES]


def number(cell: str) -> bool:
    """A longitude like -77.0 is a number to a spreadsheet, not a formula."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def cli(config, *args: str) -> str:
    result = run_cli(*args, "--config", str(config))
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_inert_html(document: lxml.html.HtmlElement) -> None:
    """Nothing in the page runs or loads, and every link goes to an http(s) address."""
    assert document.xpath("//script | //img | //iframe | //object | //embed | //style[@src]") == []
    for element in document.iter():
        if not isinstance(element.tag, str):
            continue
        assert not [a for a in element.attrib if a.lower().startswith("on")], element.attrib
    for href in document.xpath("//a/@href"):
        assert http_url(href) == href, href


def test_markdown_report_renders_names_as_text(hostile_config):
    text = cli(hostile_config, "report", "--format", "markdown")
    html = markdown.markdown(text, extensions=["tables"])
    document = lxml.html.fromstring(f"<div>{html}</div>")
    assert_inert_html(document)
    assert document.xpath("//a/@href") == [
        "https://www.google.com/maps/d/viewer?mid=1eYVDPh5itXq5acDT9b0BVeQwmESBa4cB"
    ]
    assert document.xpath("//strong/text()") == ["Pennsylvania"]  # no **Bold** of the source
    assert document.xpath("//em | //code") == []
    items = [li.text_content() for li in document.xpath("//li")]
    for name in SHOWN_NAMES:
        assert any(item.startswith(name + ",") for item in items), name
    assert RTL_OVERRIDE not in document.text_content()
    assert f"<script>alert(1)</script> Police Department, {FORMULA_CITY}" in items[2]
    assert "ringwatch changes" not in text  # the operator's hint is for the text format


def test_html_report_renders_names_as_text_and_links_only_http(hostile_config):
    page = cli(hostile_config, "report", "--format", "html")
    document = lxml.html.document_fromstring(page)
    assert_inert_html(document)
    links = {a.text_content(): a.get("href") for a in document.xpath("//a")}
    assert links.pop("Amazon Ring's Active Agency Map").startswith("https://www.google.com/maps/")
    # The three agencies whose profile URL is http(s) link to it; the others are plain text.
    assert links == {name: SAFE_URL for name in SHOWN_NAMES[len(UNSAFE_URLS) :]}
    cells = document.xpath("//table//td[1]")
    assert sorted(cell.text_content() for cell in cells[:8]) == sorted(SHOWN_NAMES)
    assert document.xpath("//h3/text()") == ["Pennsylvania: 8"]
    assert "June 1, 2020" in document.text_content()  # dates for people, not 2020-06-01
    assert "ringwatch changes" not in page


def test_text_report_keeps_names_and_drops_the_direction_trick(hostile_config):
    text = cli(hostile_config, "report")
    for name in SHOWN_NAMES:
        assert name in text
    assert RTL_OVERRIDE not in text
    assert "ringwatch changes --kind added" in text  # the operator's hint stays here


def test_feed_links_only_http_and_titles_are_text(source_server, tmp_path):
    config = poll_hostile(source_server, tmp_path, '[feed]\npath = "feed.atom"\n')
    data = (tmp_path / "feed.atom").read_bytes()
    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    root = lxml.etree.fromstring(data)
    hrefs = root.xpath("//*[local-name()='link']/@href")
    assert hrefs and all(http_url(href) == href for href in hrefs)
    assert not any(url in data.decode() for url in UNSAFE_URLS[:3])
    titles = [entry.title for entry in parsed.entries]
    assert len(titles) == len(HOSTILE_NAMES)  # the calm agency's count change is churn
    for name in HOSTILE_NAMES:  # the alert's wording: "Police Department" shortened to PD
        assert any(display_name(plain_text(name)) in title for title in titles), name
    assert RTL_OVERRIDE not in data.decode()
    entry_links = root.xpath("//*[local-name()='entry']/*[local-name()='link']/@href")
    assert entry_links == [SAFE_URL] * 3
    assert cli(config, "changes", "--kind", "added").count("\n") == len(HOSTILE_NAMES) + 1


@pytest.mark.parametrize(
    "args",
    [("export",), ("export", "--what", "changes"), ("changes", "--format", "csv")],
)
def test_csv_cells_never_start_a_formula(hostile_config, args):
    text = cli(hostile_config, *args, *(("--format", "csv") if args[0] == "export" else ()))
    rows = list(csv.reader(io.StringIO(text)))
    cells = [cell for row in rows[1:] for cell in row]
    assert cells and not [c for c in cells if c.startswith(FORMULA_STARTS) and not number(c)]
    assert any(cell == "'" + HOSTILE_NAMES[3] for cell in cells)  # =HYPERLINK(…), shown as text
    assert "'" + FORMULA_CITY in cells


def test_agency_exports_carry_only_http_profile_urls(hostile_config):
    rows = list(csv.DictReader(io.StringIO(cli(hostile_config, "export"))))
    assert {row["profile_url"] for row in rows} == {"", SAFE_URL}
    listed = json.loads(cli(hostile_config, "export", "--format", "json"))
    assert {row["profile_url"] for row in listed} == {None, SAFE_URL}
    features = json.loads(cli(hostile_config, "export", "--format", "geojson"))["features"]
    assert {f["properties"]["profile_url"] for f in features} == {None, SAFE_URL}
    assert sorted(f["id"] for f in features) == sorted(row["key"] for row in listed)


def test_change_geojson_places_every_change_and_gives_it_an_id(hostile_config):
    document = json.loads(cli(hostile_config, "export", "--what", "changes", "--format",
                              "geojson"))  # fmt: skip
    features = document["features"]
    logged = json.loads(cli(hostile_config, "changes", "--format", "json"))
    # A churn row (a count that moved, not a change-log row) has no change id.
    assert [f.get("id") for f in features] == [row["uuid"] for row in logged]
    assert all(f["geometry"] for f in features)
    changed = next(f for f in features if f["properties"]["kind"] == "changed")
    assert changed["properties"]["fields"] == ["video_requests"]
    assert changed["geometry"] == {"type": "Point", "coordinates": [-77.0, 40.0]}


def test_export_since_applies_to_agencies(source_server, tmp_path):
    config = poll_hostile(source_server, tmp_path)
    everyone = json.loads(cli(config, "export", "--format", "json"))
    assert len(everyone) == len(HOSTILE_NAMES) + 1
    later = json.loads(cli(config, "export", "--format", "json", "--since", "2999-01-01"))
    assert later == []
    today = everyone[0]["first_seen"][:10]
    assert len(json.loads(cli(config, "export", "--format", "json", "--since", today))) == 9


def test_feed_url_must_be_http(tmp_path):
    config = write_config(tmp_path, '[feed]\nurl = "javascript:alert(1)"\n')
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert "feed.url must be an absolute http(s) URL, got 'javascript:alert(1)'" in result.stderr
