"""Snapshots: every distinct document fetched is kept once, and polls and changes cite it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import sqlite_utils

from bot.store import Store
from bot.store.schema import SCHEMA_STEPS, SCHEMA_VERSION
from tests.support.agencies import agencies
from tests.support.bot import Bot
from tests.support.cli import REPO, cli_env, run_cli
from tests.support.source_server import Reply
from tests.support.synthetic import mutate, to_kml

PATH = "/map.kml"


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def snapshot_bytes(bot: Bot, prefix: str) -> subprocess.CompletedProcess[bytes]:
    """`ringwatch snapshot PREFIX` with stdout kept binary."""
    return subprocess.run(
        [sys.executable, "-m", "bot", "snapshot", prefix, "--config", str(bot.config_path)],
        capture_output=True,
        env=cli_env(None),
        cwd=REPO,
        timeout=60,
    )


def test_twenty_identical_polls_keep_one_snapshot(tmp_path, source_server):
    body = to_kml(agencies(20))
    # 200 with the same bytes and no ETag, then with an ETag: the rest are 304 Not Modified.
    replies = [Reply(body, etag=i >= 10) for i in range(20)]
    bot = Bot.create(tmp_path, source_server.serve(PATH, *replies))

    outcomes = [bot.poll().outcome for _ in range(20)]

    assert outcomes == ["baseline"] + ["unchanged"] * 19
    assert {p["http_status"] for p in bot.polls()} == {200, 304}
    rows = bot.rows("select * from snapshots")
    assert [(r["sha256"], r["bytes"], r["polls"]) for r in rows] == [(sha(body), len(body), 20)]
    assert {p["snapshot"] for p in bot.polls()} == {sha(body)}
    files = [p for p in (bot.config.state_dir / "snapshots").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].stat().st_size == rows[0]["compressed_bytes"]
    assert rows[0]["compressed_bytes"] < len(body) / 3


def test_changes_cite_the_snapshot_they_came_from_and_the_one_before(tmp_path, source_server):
    first = agencies(20)
    second = mutate(first, seed=2, add=2)
    bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml(first), to_kml(second)))
    bot.poll()
    bot.poll()

    added = bot.changes(kinds=("added",))
    rows = bot.rows("select snapshot, before_snapshot, origin from changes where kind = 'added'")

    assert len(added) == 2
    assert {tuple(r.values()) for r in rows} == {(sha(to_kml(second)), sha(to_kml(first)), "live")}
    baseline = bot.rows(
        "select distinct snapshot, before_snapshot from changes where kind = 'baseline'"
    )
    assert baseline == [{"snapshot": sha(to_kml(first)), "before_snapshot": None}]


def test_a_document_that_fails_to_parse_is_kept_and_cited_by_its_failed_poll(
    tmp_path, source_server
):
    page = b"<!doctype html><html><body>Service Unavailable</body></html>"
    bot = Bot.create(tmp_path, source_server.serve(PATH, page), format="kml")

    assert bot.poll().outcome == "failed"

    assert [(p["outcome"], p["snapshot"]) for p in bot.polls()] == [("failed", sha(page))]


def test_snapshot_writes_the_original_bytes_for_a_unique_prefix(tmp_path, source_server):
    body = to_kml(agencies(30))
    bot = Bot.create(tmp_path, source_server.serve(PATH, body))
    bot.poll()

    result = snapshot_bytes(bot, sha(body)[:8].upper())

    assert result.returncode == 0, result.stderr
    assert result.stdout == body and sha(result.stdout) == sha(body)


def test_snapshot_refuses_short_unknown_and_damaged_with_one_line(tmp_path, source_server):
    body = to_kml(agencies(10))
    bot = Bot.create(tmp_path, source_server.serve(PATH, body))
    bot.poll()
    path = bot.config.state_dir / "snapshots" / sha(body)[:2] / f"{sha(body)}.zst"

    short = snapshot_bytes(bot, "abc")
    unknown = snapshot_bytes(bot, "0" * 8 if not sha(body).startswith("0" * 8) else "f" * 8)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    damaged = snapshot_bytes(bot, sha(body))

    assert short.returncode == 2 and b"8 to 64 hex digits" in short.stderr
    assert unknown.returncode == 2 and b"no snapshot match" in unknown.stderr
    assert damaged.returncode == 1 and damaged.stdout == b""
    assert b"Traceback" not in short.stderr + unknown.stderr + damaged.stderr
    assert len(damaged.stderr.decode().strip().splitlines()) == 1


def test_snapshots_lists_each_document_with_its_polls(tmp_path, source_server):
    first, second = to_kml(agencies(10)), to_kml(mutate(agencies(10), seed=3, add=1))
    bot = Bot.create(tmp_path, source_server.serve(PATH, first, second, second))
    for _ in range(3):
        bot.poll()

    listed = run_cli("snapshots", "--format", "json", "--config", str(bot.config_path))
    table = run_cli("snapshots", "--config", str(bot.config_path))

    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["sha256"], r["bytes"], r["polls"]) for r in rows] == [
        (sha(first), len(first), 1),
        (sha(second), len(second), 2),
    ]
    assert {"first_seen", "last_seen", "compressed_bytes"} <= set(rows[0])
    assert table.returncode == 0 and sha(second) in table.stdout
    assert "2 snapshots" in table.stdout


def test_a_version_2_database_upgrades_keeping_its_polls_and_changes(tmp_path):
    path = tmp_path / "ringwatch.db"
    old = sqlite_utils.Database(path)
    for migration in SCHEMA_STEPS[:2]:
        migration(old)
    old["meta"].insert({"key": "schema_version", "value": "2"}, pk="key")
    poll_id = old["polls"].insert({"started_at": "2020-06-03T00:00:00Z", "outcome": "ok"}).last_pk
    old["changes"].insert(
        {"poll_id": poll_id, "kind": "added", "key": "mn/x", "name": "X", "state": "MN",
         "detected_at": "2020-06-03T00:00:00Z"}
    )  # fmt: skip
    old.close()

    store = Store.open(path)

    assert store.schema_version == SCHEMA_VERSION
    assert [(p["outcome"], p["origin"], p["snapshot"]) for p in store.polls.in_order()] == [
        ("ok", "live", None)
    ]
    assert [(c["kind"], c["origin"]) for c in store.changes.in_order()] == [("added", "live")]
    assert store.polls.snapshots() == []
    store.close()


def test_a_document_that_cannot_be_kept_fails_the_poll_and_the_next_one_recovers(
    tmp_path, source_server
):
    body = to_kml(agencies(10))
    bot = Bot.create(tmp_path, source_server.serve(PATH, body))
    blocker = bot.config.state_dir / "snapshots"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")  # the snapshot store cannot be created

    failed = bot.poll()
    blocker.unlink()
    recovered = bot.poll()

    assert failed.outcome == "failed" and "cannot store the snapshot" in failed.summary
    assert recovered.outcome == "baseline"
    assert [(p["outcome"], p["snapshot"]) for p in bot.polls()] == [
        ("failed", None),
        ("baseline", sha(body)),
    ]
    assert len(bot.changes(kinds=("baseline",))) == 10
