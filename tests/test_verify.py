"""`ringwatch verify`: snapshots hash to their names and replay into the stored change log."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agencies import agencies
from tests.support.bot import Bot
from tests.support.cli import run_cli
from tests.support.source_server import Reply, SourceServer
from tests.support.synthetic import mutate, to_kml

PATH = "/map.kml"


@pytest.fixture(scope="module")
def honest_history(tmp_path_factory) -> Iterator[Bot]:
    """A bot whose history holds every kind of poll: baseline, a failed fetch, changes, an
    HTML error page, a 304 that confirms a removal, a suspect fetch, the same one forced and
    a repeat that confirms what the forced one lacked. Built once; tests get a copy."""
    with SourceServer() as source_server:
        yield record_history(tmp_path_factory.mktemp("history"), source_server)


@pytest.fixture
def history(honest_history, tmp_path) -> Bot:
    """A copy of the honest history, for the test to tamper with."""
    return honest_history.copy(tmp_path)


def record_history(directory: Path, source_server: SourceServer) -> Bot:
    first = agencies(30)
    later = mutate(first, seed=2, add=2, remove=1, rename=1, change=1)
    page = b"<!doctype html><html><body>Service Unavailable</body></html>"
    replies = [
        Reply(to_kml(first)),
        Reply(b"gone", status=404),
        Reply(to_kml(later)),
        Reply(page),
        Reply(to_kml(later)),
        Reply(to_kml(later[:15])),
    ]
    # The changed agency's field alerts, so it is a change-log row (the test edits it by id).
    alerting = '[alerts]\nalert_fields = ["coordinates", "video_requests"]\n'
    bot = Bot.create(directory, source_server.serve(PATH, *replies), alerting, format="kml")
    outcomes = [bot.poll().outcome for _ in range(6)]
    forced = run_cli("poll", "--force", "--config", str(bot.config_path))
    outcomes.append(bot.poll().outcome)
    assert forced.returncode == 0, forced.stderr
    assert outcomes == ["baseline", "failed", "ok", "failed", "unchanged", "suspect", "unchanged"]
    assert [p["http_status"] for p in bot.polls()][4] == 304
    return bot


def verify(bot: Bot):
    return run_cli("verify", "--config", str(bot.config_path), timeout=120)


def sql(bot: Bot, statement: str, params: tuple = ()) -> None:
    with sqlite3.connect(bot.config.db_path) as conn:
        conn.execute(statement, params)


def snapshot_paths(bot: Bot) -> list[Path]:
    return sorted((bot.config.state_dir / "snapshots").rglob("*.zst"))


def test_an_honest_history_verifies(history):
    changes = len(history.rows("select id from changes"))
    snapshots = len(history.rows("select sha256 from snapshots"))

    result = verify(history)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{snapshots} snapshots, {changes} changes verified"
    assert snapshots == 4  # first, later, the error page, the short list
    kinds = {r["kind"] for r in history.rows("select kind from changes")}
    assert kinds == {"baseline", "added", "removed", "renamed", "changed"}


@pytest.mark.parametrize("index", range(4))
def test_a_byte_flipped_in_any_snapshot_is_caught(history, index):
    path = snapshot_paths(history)[index]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))

    result = verify(history)

    assert result.returncode == 1
    assert f"DIFFERENCE: snapshot {path.stem}: " in result.stdout
    assert "Traceback" not in result.stderr


def test_a_snapshot_file_that_is_gone_is_named(history):
    path = snapshot_paths(history)[0]
    path.unlink()

    result = verify(history)

    assert result.returncode == 1
    assert f"snapshot {path.stem}: file {path} is missing" in result.stdout


def test_an_edited_change_is_not_produced_and_the_true_one_is_missing(history):
    (row,) = history.rows("select * from changes where kind = 'changed'")
    after = json.loads(row["after"])
    forged = {field: 999 for field in after}
    sql(history, "update changes set after = ? where id = ?", (json.dumps(forged), row["id"]))

    result = verify(history)

    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith("DIFFERENCE")]
    assert len(lines) == 2
    assert f"change #{row['id']} (changed {row['name']}" in lines[0]
    assert lines[0].endswith("is not produced by the snapshots")
    assert "the snapshots produce a change missing from the log: changed" in lines[1]


def test_a_deleted_change_is_missing_from_the_log(history):
    (row,) = history.rows("select * from changes where kind = 'removed' limit 1")
    sql(history, "delete from changes where id = ?", (row["id"],))

    result = verify(history)

    assert result.returncode == 1
    assert (
        f"DIFFERENCE: the snapshots produce a change missing from the log: removed {row['name']}"
        in result.stdout
    )
    assert f"at poll {row['poll_id']} (" in result.stdout


def test_a_change_citing_no_poll_is_named_without_a_traceback(history):
    sql(
        history,
        "insert into changes (poll_id, detected_at, kind, key, name, state) "
        "values (999, '2026-01-01T00:00:00Z', 'added', 'mn/ghost-pd', 'Ghost PD', 'MN')",
    )

    result = verify(history)

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "(added Ghost PD, MN [mn/ghost-pd] at poll 999 (no such poll))" in result.stdout


def test_an_invented_change_is_not_produced_by_the_snapshots(history):
    poll_id = history.rows("select max(id) as id from polls")[0]["id"]
    sql(
        history,
        "insert into changes (poll_id, detected_at, kind, key, name, state) "
        "values (?, '2026-01-01T00:00:00Z', 'added', 'mn/invented-pd', 'Invented PD', 'MN')",
        (poll_id,),
    )

    result = verify(history)

    assert result.returncode == 1
    assert "(added Invented PD, MN [mn/invented-pd]" in result.stdout
    assert "is not produced by the snapshots" in result.stdout


def test_polls_from_before_snapshots_are_named_not_believed(history):
    sql(history, "update polls set snapshot = null where id in (1, 3)")

    result = verify(history)

    assert result.returncode == 1
    assert "polls 1..3 (2 good polls) were recorded before snapshots were kept" in result.stdout


def test_a_snapshot_name_that_is_not_a_hash_never_leaves_the_directory(history):
    sql(history, "update snapshots set sha256 = '../../../etc/passwd' where rowid = 1")

    result = verify(history)

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "DIFFERENCE: '../../../etc/passwd' is not a SHA-256 (64 hex digits)" in result.stdout
