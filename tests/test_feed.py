"""The Atom feed written by `ringwatch poll` after every poll that changed something."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import feedparser

from bot.feed import build_feed, entry_id, write_feed
from bot.queries import ChangeFilter, install_id, query_changes
from bot.render import make_environment
from bot.store import Store
from bot.store.schema import SCHEMA_VERSION
from tests.support.cli import SAMPLES, run_cli, write_config
from tests.support.outbox import as_stored_now

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
    store = Store.open(tmp_path / "state" / "ringwatch.db", readonly=True)
    install = install_id(store.db)
    store.close()
    assert [e["id"] for e in second] == [entry_id(install, row["uuid"]) for row in reversed(news)]
    assert second[0]["id"].startswith(f"tag:ringwatch,2026:install/{install}/change/")
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
    install = install_id(store.db)
    assert [e["id"] for e in got] == [entry_id(install, r["uuid"]) for r in reversed(logged[-5:])]
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
    return {"id": change_id, "uuid": f"u{change_id}", "kind": "added", "key": f"pa/{change_id}",
            "name": name, "city": "Smith", "state": "PA",
            "detected_at": f"2026-01-0{change_id}T00:00:00Z", "active_date": "2020-06-01",
            "fields": [], "before": None, "after": after}  # fmt: skip


def test_build_feed_is_deterministic_and_escapes_text():
    rows = [_row(1, "Smith & Jones <Township> Police Department"), _row(2, "B PD")]
    env = make_environment()
    first = build_feed(rows, title="t", env=env, install="i",
                       source_url="https://example.org/map?x=1&y=2")  # fmt: skip
    assert first == build_feed(list(reversed(rows)), title="t", env=env, install="i",
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
    empty = ET.fromstring(build_feed([], title="t", env=env, install="i"))
    assert empty.findtext(f"{A}updated") == "1970-01-01T00:00:00Z"


def test_feed_ids_never_repeat_across_databases(source_server, tmp_path):
    """Two installs (or one database reset) polling the same snapshots: the same changes,
    numbered alike, yet no entry id of one feed appears in the other."""
    feeds = []
    for name in ("first", "second"):
        directory = tmp_path / name
        directory.mkdir()
        url = serve_samples(source_server, "baseline.kml", "later.kml")
        config = write_config(directory, f'[source]\nurl = "{url}"\n[feed]\npath = "feed.xml"\n'
                              'url = "https://example.org/ring/feed.xml"\n'
                              "[guard]\nmax_added_share = 0.25\n")  # fmt: skip
        poll(config)
        poll(config)
        parsed = feedparser.parse((directory / "feed.xml").read_bytes())
        assert not parsed.bozo, parsed.get("bozo_exception")
        feeds.append(parsed)
    ids = [[entry.id for entry in parsed.entries] for parsed in feeds]
    assert len(ids[0]) == len(set(ids[0])) == len(ids[1]) == 30
    assert not set(ids[0]) & set(ids[1])
    assert feeds[0].feed.id != feeds[1].feed.id
    assert [e.title for e in feeds[0].entries] == [e.title for e in feeds[1].entries]
    links = {link.rel: link.href for link in feeds[0].feed.links}
    assert links["self"] == "https://example.org/ring/feed.xml"
    assert links["alternate"] == "https://example.org/ring/"


RELEASE_DUMP = Path(__file__).parent / "data" / "release-0.1.0.sql"


def release_database(path: Path) -> Path:
    """A database as ringwatch 0.1.0 (schema 2) left it: 2 baseline rows, an addition, a
    rename, a subscriber, console deliveries (tests/data/release-0.1.0.sql, its .dump)."""
    db = sqlite3.connect(path)
    db.executescript(RELEASE_DUMP.read_text(encoding="utf-8"))
    db.close()
    return path


def test_a_release_database_upgrades_with_a_uuid_per_change(tmp_path):
    path = release_database(tmp_path / "ringwatch.db")
    old = sqlite3.connect(path)
    before = {table: old.execute(f"select * from {table}").fetchall()
              for table in ("agencies", "polls", "changes", "outbox", "subscribers")}  # fmt: skip
    old.close()

    store = Store.open(path)  # migrates
    assert store.schema_version == SCHEMA_VERSION
    install = install_id(store.db)
    uuids = {row_id: uuid for row_id, uuid in store.db.execute("select id, uuid from changes")}
    store.close()
    assert len(set(uuids.values())) == len(uuids) == 4 and None not in uuids.values()

    upgraded = sqlite3.connect(path)
    for table, rows in before.items():  # nothing lost: every old column of every row
        columns = old_columns(table)
        kept = upgraded.execute(f"select {', '.join(columns)} from {table}").fetchall()
        assert kept == [
            tuple(as_stored_now(table, c, v) for c, v in zip(columns, row, strict=True))
            for row in rows
        ]
    upgraded.close()

    store = Store.open(path)  # a second open changes nothing
    assert install_id(store.db) == install
    assert dict(store.db.execute("select id, uuid from changes").fetchall()) == uuids
    feed = tmp_path / "feed.xml"
    assert write_feed(store.db, feed, entries=10, title="t") == 2
    store.close()
    parsed = feedparser.parse(feed.read_bytes())
    assert not parsed.bozo
    assert [e.id for e in parsed.entries] == [entry_id(install, uuids[i]) for i in (4, 3)]


def old_columns(table: str) -> list[str]:
    """The columns `table` had in the release (those of the dump's CREATE TABLE)."""
    memory = sqlite3.connect(":memory:")
    statements = RELEASE_DUMP.read_text(encoding="utf-8").split(";\n")
    memory.execute(next(s for s in statements if s.startswith(f'CREATE TABLE "{table}"')))
    return [row[1] for row in memory.execute(f"pragma table_info({table})")]


def test_reading_commands_upgrade_a_release_database_first(tmp_path):
    release_database(tmp_path / "state.db")
    (tmp_path / "state").mkdir()
    (tmp_path / "state.db").rename(tmp_path / "state" / "ringwatch.db")
    config = write_config(tmp_path, "")
    result = run_cli("changes", "--config", str(config), "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["kind"] for row in rows] == ["added", "renamed"]
    assert all(row["uuid"] for row in rows)
