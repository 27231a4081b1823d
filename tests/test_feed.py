"""The Atom feed written by `ringwatch poll` after every poll that changed something."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from bot.feed import build_feed, entry_id, write_feed
from bot.queries import ChangeFilter, query_changes
from bot.render import make_environment
from bot.store import Store
from tests.support.cli import SAMPLES, run_cli, write_config

A = "{http://www.w3.org/2005/Atom}"


def parse(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == f"{A}feed"
    for tag in ("id", "title", "updated"):
        assert root.findtext(f"{A}{tag}"), tag
    assert root.find(f"{A}author/{A}name").text == "ringwatch"
    return root


def entries(root: ET.Element) -> list[dict[str, str]]:
    result = []
    for entry in root.findall(f"{A}entry"):
        for tag in ("id", "title", "updated", "content"):
            assert entry.findtext(f"{A}{tag}"), tag
        result.append(
            {
                "id": entry.findtext(f"{A}id"),
                "title": entry.findtext(f"{A}title"),
                "updated": entry.findtext(f"{A}updated"),
                "kind": entry.find(f"{A}category").get("term"),
            }
        )
    return result


def poll(config: Path) -> None:
    result = run_cli("poll", "--config", str(config))
    assert result.returncode == 0, result.stderr


def serve_samples(server, *names: str) -> str:
    return server.serve("/map.kml", *((SAMPLES / name).read_bytes() for name in names))


def test_feed_follows_the_change_log_with_stable_ids(source_server, tmp_path):
    url = serve_samples(source_server, "baseline.kml", "later.kml")
    config = write_config(
        tmp_path,
        f'[source]\nurl = "{url}"\n[feed]\npath = "public/feed.xml"\n'
        "[guard]\nmax_added_share = 0.25\n",  # the samples add 29 agencies to 123
    )
    feed = tmp_path / "public" / "feed.xml"

    poll(config)  # the baseline: no entries (it is not news), but the file now exists
    root = parse(feed)
    assert entries(root) == []

    poll(config)  # 29 added, 1 renamed, 1 changed (a video count: not in the feed)
    second = entries(parse(feed))
    logged = json.loads(run_cli("changes", "--config", str(config), "--format", "json").stdout)
    news = [row for row in logged if row["id"] is not None]
    assert len(second) == len(news) == 30 and len(logged) == 31
    assert [e["id"] for e in second] == [entry_id(row["id"]) for row in reversed(news)]
    assert second[0]["id"].startswith("tag:ringwatch,2026:change/")
    titles = {e["title"] for e in second}
    assert "New partnership: Crystal PD, MN (active since 2020-06-03)" in titles
    assert "Renamed: Mesa PD is now City of Mesa PD, AZ" in titles
    assert {e["kind"] for e in second} == {"added", "renamed"}

    poll(config)  # the same list again (304): Ridgeland's ending is confirmed
    root = parse(feed)
    third = entries(root)
    assert third[0]["title"].startswith("Partnership ended: Ridgeland PD, MS")
    assert third[1:] == second  # old entries keep their ids, titles and times
    assert root.findtext(f"{A}updated") == third[0]["updated"]

    before = feed.stat()
    poll(config)  # nothing changed: the feed is not rewritten
    after = feed.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_feed_keeps_only_the_newest_entries(sample_config, tmp_path):
    store = Store.open(sample_config.parent / "state" / "ringwatch.db", readonly=True)
    feed = tmp_path / "feed.xml"
    assert write_feed(store.db, feed, entries=5, title="Ring changes") == 5
    logged = query_changes(store.db, ChangeFilter(churn=False))
    got = entries(parse(feed))
    assert [e["id"] for e in got] == [entry_id(row["id"]) for row in reversed(logged[-5:])]
    assert parse(feed).findtext(f"{A}title") == "Ring changes"
    store.close()
    # The samples were polled without [feed]: no feed was written anywhere.
    assert not list(sample_config.parent.rglob("*.xml"))


def test_a_feed_that_cannot_be_written_does_not_fail_the_poll(source_server, tmp_path):
    url = serve_samples(source_server, "later.kml")
    (tmp_path / "feed.xml").mkdir()  # a directory where the file should go
    config = write_config(tmp_path, f'[source]\nurl = "{url}"\n[feed]\npath = "feed.xml"\n')
    result = run_cli("poll", "--config", str(config))
    assert result.returncode == 0
    assert "could not write the feed" in result.stderr
    assert "baseline: now tracking 151 agencies" in result.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".feed.xml.")]  # no temp left


def test_feed_config_errors_are_precise(tmp_path):
    config = write_config(tmp_path, "[feed]\nentries = 0\n")
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert "feed.entries must be at least 1" in result.stderr
    config = write_config(tmp_path, "[feed]\nentrys = 5\n")
    result = run_cli("check-config", "--config", str(config))
    assert "unknown key feed.entrys (did you mean 'entries'?)" in result.stderr


def _row(change_id: int, name: str) -> dict:
    after = {"name": name, "profile_url": "https://ring.com/agency/x?a=1&b=2"}
    return {"id": change_id, "kind": "added", "key": f"pa/{change_id}", "name": name,
            "city": "Smith", "state": "PA", "detected_at": f"2026-01-0{change_id}T00:00:00Z",
            "active_date": "2020-06-01", "fields": [], "before": None, "after": after}  # fmt: skip


def test_build_feed_is_deterministic_and_escapes_text():
    rows = [_row(1, "Smith & Jones <Township> Police Department"), _row(2, "B PD")]
    env = make_environment()
    first = build_feed(rows, title="t", env=env, source_url="https://example.org/map?x=1&y=2")
    assert first == build_feed(list(reversed(rows)), title="t", env=env,
                               source_url="https://example.org/map?x=1&y=2")  # fmt: skip
    root = ET.fromstring(first)
    assert root.findtext(f"{A}updated") == "2026-01-02T00:00:00Z"
    titles = [e.findtext(f"{A}title") for e in root.findall(f"{A}entry")]
    assert titles == [
        "New partnership: B PD, PA (active since 2020-06-01)",
        "New partnership: Smith & Jones <Township> PD, PA (active since 2020-06-01)",
    ]
    links = [e.find(f"{A}link").get("href") for e in root.findall(f"{A}entry")]
    assert links == ["https://ring.com/agency/x?a=1&b=2"] * 2
    empty = ET.fromstring(build_feed([], title="t", env=env))
    assert empty.findtext(f"{A}updated") == "1970-01-01T00:00:00Z"
