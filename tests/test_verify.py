"""`ringwatch verify`: snapshots hash to their names and replay into the stored change log."""

from __future__ import annotations

import hashlib
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
    assert result.stdout.strip() == (
        f"{snapshots} snapshots, {changes} changes verified, 0 differences"
    )
    assert snapshots == 4  # first, later, the error page, the short list
    kinds = {r["kind"] for r in history.rows("select kind from changes")}
    assert kinds == {"baseline", "added", "removed", "renamed", "changed"}


def test_a_config_tightened_afterwards_still_verifies_each_poll_as_it_was_judged(history):
    # Every guard at its strictest and the default alerting fields: under these the
    # history's polls would have been judged otherwise (the forced one suspect, the
    # changed count churn). Each poll recorded the settings it was judged with.
    text = history.config_path.read_text(encoding="utf-8")
    text = text.replace('alert_fields = ["coordinates", "video_requests"]', "")
    strict = "[guard]\nmax_missing_share = 0.0\nmax_added_share = 0.0\nremoval_confirmations = 5\n"
    history.config_path.write_text(text + strict, encoding="utf-8")

    result = verify(history)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("verified, 0 differences")
    assert "NOTE" not in result.stdout


def test_the_demo_database_verifies(tmp_path):
    demo = run_cli("demo", "--state-dir", str(tmp_path))
    assert demo.returncode == 0, demo.stderr

    result = run_cli("verify", "--config", str(tmp_path / "config.toml"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith("verified, 0 differences\n")


LENIENT = '"max_missing_share":0.9'


def test_a_poll_made_to_cite_settings_it_was_not_judged_by_is_caught(history):
    # The suspect poll, made to look judged by a guard that would have believed it: the
    # lenient settings are stored under their own name, as ringwatch would store them.
    (poll,) = history.rows("select id, settings from polls where outcome = 'suspect'")
    (text,) = [r["settings"] for r in history.rows("select settings from poll_settings")]
    lenient = text.replace('"max_missing_share":0.1', LENIENT)
    name = hashlib.sha256(lenient.encode()).hexdigest()
    sql(history, "insert into poll_settings (sha256, settings) values (?, ?)", (name, lenient))
    sql(history, "update polls set settings = ? where id = ?", (name, poll["id"]))

    result = verify(history)

    assert result.returncode == 1
    first = next(line for line in result.stdout.splitlines() if line.startswith("DIFFERENCE"))
    assert first.startswith(f"DIFFERENCE: poll {poll['id']} (")
    assert "was altered after it was recorded: its seal does not match" in first


def test_edited_settings_are_caught(history):
    sql(history, f"update poll_settings set settings = replace(settings, "
                 f"'\"max_missing_share\":0.1', '{LENIENT}')")  # fmt: skip

    result = verify(history)

    assert result.returncode == 1
    first = next(line for line in result.stdout.splitlines() if line.startswith("DIFFERENCE"))
    assert first.startswith("DIFFERENCE: poll 1 (") and "are missing or altered" in first


def test_a_poll_whose_seal_was_removed_is_caught(history):
    # So that today's config would judge it.
    (poll,) = history.rows("select id from polls where outcome = 'suspect'")
    sql(history, "update polls set seal = null where id = ?", (poll["id"],))

    result = verify(history)

    assert result.returncode == 1
    differences = [line for line in result.stdout.splitlines() if line.startswith("DIFFERENCE")]
    assert differences == [
        f"DIFFERENCE: poll {poll['id']} ({differences[0].split('(')[1].split(')')[0]}) has no "
        "seal, though an earlier poll has one: its recorded settings were removed"
    ]


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


DEMO_DUMP = Path(__file__).parent / "data" / "demo-before-poll-settings.sql"


def test_a_database_from_before_poll_settings_upgrades_and_verifies_with_todays_config(tmp_path):
    """The demo's database as the code before add_poll_settings_and_churn_ids wrote it: it
    upgrades keeping every row, its churn entry gets an id after the changes, and verify
    replays its polls with today's config (the demo's guard), saying so once."""
    from bot.snapshots import SnapshotStore
    from tests.support.cli import SAMPLES

    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "ringwatch.db") as old:
        old.executescript(DEMO_DUMP.read_text(encoding="utf-8"))
    for sample in ("baseline.kml", "later.kml"):
        SnapshotStore(state / "snapshots").put((SAMPLES / sample).read_bytes())
    config = tmp_path / "config.toml"
    config.write_text(f'[bot]\nstate_dir = "{state}"\n[guard]\nmax_added_share = 0.25\n')

    result = run_cli("verify", "--config", str(config))

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        "NOTE: polls 1..3 (3 polls) were recorded before ringwatch kept how each poll was "
        "judged: they were replayed with today's config (guard, alerts.alert_fields, "
        "source.format, records_path, fields)",
        "2 snapshots, 155 changes verified, 0 differences",
    ]
    listed = run_cli("changes", "--format", "json", "--config", str(config))
    changes = json.loads(listed.stdout)
    assert len(changes) == 32 and all(c["id"] and c["uuid"] for c in changes)
    (churn,) = [c for c in changes if c["fields"] == ["video_requests"]]
    assert churn["id"] == 155  # after the 154 change-log rows
    assert len({c["uuid"] for c in changes}) == len(changes)
