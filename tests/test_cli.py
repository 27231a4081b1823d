"""The `ringwatch` command line as a user runs it: a subprocess, its output, its exit code."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import pytest

from bot.cli import cli
from bot.lock import state_lock
from bot.store import Store
from tests.helpers import Bot, agencies, config_text, kml
from tests.support.cli import REPO, run_cli, write_config
from tests.support.source_server import Reply
from tests.support.synthetic import mutate

PATH = "/map.kml"


def ringwatch(bot: Bot, *args: str):
    """Run `ringwatch COMMAND --config … ARGS`."""
    command, *rest = args
    return run_cli(command, "--config", str(bot.config_path), *rest)


def assert_clean_exit(result, code: int) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.fixture
def bot(tmp_path, source_server) -> Bot:
    """A bot with a baseline of 20 agencies recorded."""
    made = Bot.create(tmp_path, source_server.serve(PATH, kml(agencies(20))))
    made.poll()
    return made


# --- poll exit codes ------------------------------------------------------------------------


def test_poll_prints_alerts_and_a_summary_and_exits_0(bot, source_server):
    later = mutate(agencies(20), seed=2, add=1)
    source_server.serve(PATH, kml(later))

    result = ringwatch(bot, "poll")

    assert_clean_exit(result, 0)
    assert "New partnership: " in result.stdout
    assert "ok: 21 agencies listed; 1 added" in result.stdout
    assert "console: 1 sent" in result.stdout


def test_poll_exits_3_after_retrying_a_server_error(bot, source_server):
    source_server.serve(PATH, Reply(b"oops", status=500))
    before = len(source_server.requests)

    result = ringwatch(bot, "poll")

    assert_clean_exit(result, 3)
    assert "failed: HTTP 500" in result.stdout
    assert len(source_server.requests) - before == 2  # retries = 1 in the test config
    assert bot.polls()[-1]["outcome"] == "failed"
    assert bot.polls()[-1]["http_status"] == 500


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE kml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<kml><Document><Placemark><name>&b;</name></Placemark></Document></kml>",
        b"<html><body>Sign in to continue</body></html>",
    ],
    ids=["entity bomb", "html page"],
)
def test_poll_exits_3_on_a_document_it_will_not_parse(bot, source_server, body):
    source_server.serve(PATH, body)

    result = ringwatch(bot, "poll")

    assert_clean_exit(result, 3)
    assert len(bot.agencies()) == 20


def test_poll_exits_3_when_the_body_is_cut_short(bot, source_server):
    body = kml(mutate(agencies(20), seed=2, add=1))
    source_server.serve(PATH, Reply(body, declared_length=len(body) + 1000))

    assert_clean_exit(ringwatch(bot, "poll"), 3)
    assert bot.kinds() == []


@pytest.mark.parametrize("kept", [0, 14], ids=["empty list", "missing 30%"])
def test_poll_exits_4_when_a_guard_trips(bot, source_server, kept):
    source_server.serve(PATH, kml(agencies(20)[:kept]))

    result = ringwatch(bot, "poll")

    assert_clean_exit(result, 4)
    assert "suspect: " in result.stdout
    assert "ringwatch warning:" in result.stdout
    assert "Partnership ended" not in result.stdout
    assert len(bot.agencies()) == 20


def test_poll_force_believes_a_fetch_a_share_guard_refused(bot, source_server):
    listed = agencies(20)
    source_server.serve(PATH, kml(listed[:14]))
    assert_clean_exit(ringwatch(bot, "poll"), 4)

    for _ in range(2):  # an ending still needs its confirmations
        result = ringwatch(bot, "poll", "--force")
        assert_clean_exit(result, 0)

    assert len(bot.agencies()) == 14
    assert [kind for kind, _ in bot.kinds()] == ["removed"] * 6


def test_poll_force_never_believes_an_empty_list(bot, source_server):
    source_server.serve(PATH, kml([]))

    assert_clean_exit(ringwatch(bot, "poll", "--force"), 4)
    assert len(bot.agencies()) == 20


def test_a_second_process_on_the_same_state_dir_exits_5(bot):
    with state_lock(bot.config.state_dir):
        result = ringwatch(bot, "poll")

    assert_clean_exit(result, 5)
    assert "another ringwatch" in result.stderr
    assert len(bot.polls()) == 1


@pytest.mark.parametrize("command", ["poll", "deliver", "summary"])
def test_a_state_dir_that_cannot_be_created_exits_2(tmp_path, source_server, command):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state dir should be", encoding="utf-8")
    url = source_server.serve(PATH, kml(agencies(5)))
    config = tmp_path / "config.toml"
    config.write_text(f'[bot]\nstate_dir = "{blocker}"\n[source]\nurl = "{url}"\n')

    result = run_cli(command, "--config", str(config))

    assert_clean_exit(result, 2)
    assert f"cannot use the state directory {blocker}" in result.stderr


# --- dry run -------------------------------------------------------------------------------


def test_dry_run_of_a_first_poll_creates_no_database(tmp_path, source_server):
    fresh = Bot.create(tmp_path, source_server.serve(PATH, kml(agencies(5))))

    result = ringwatch(fresh, "poll", "--dry-run")

    assert_clean_exit(result, 0)
    assert "ringwatch is now tracking 5" in result.stdout
    assert "nothing written" in result.stdout
    assert not fresh.config.state_dir.exists() or not any(fresh.config.state_dir.iterdir())


def _files(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (snapshots included) by relative path → bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*")
            if p.is_file()}  # fmt: skip


def test_dry_run_prints_the_alerts_and_leaves_the_database_byte_for_byte(bot, source_server):
    source_server.serve(PATH, kml(mutate(agencies(20), seed=2, add=2)))
    state = bot.config.state_dir
    before = _files(state)

    result = ringwatch(bot, "poll", "--dry-run")

    assert_clean_exit(result, 0)
    assert result.stdout.count("New partnership: ") == 2
    after = _files(state)
    assert {name: after[name] for name in before} == before
    # A read-only SQLite connection may leave its (empty) write-ahead log beside the file.
    assert set(after) - set(before) <= {"ringwatch.db-wal", "ringwatch.db-shm"}
    assert not after.get("ringwatch.db-wal")


# --- deliver ---------------------------------------------------------------------------------


def test_deliver_sends_what_a_poll_recorded_once(bot, source_server):
    source_server.serve(PATH, kml(mutate(agencies(20), seed=2, add=3)))
    bot.poll(deliver=False)  # as if the process died right after the commit

    first = ringwatch(bot, "deliver")
    second = ringwatch(bot, "deliver")

    assert_clean_exit(first, 0)
    assert first.stdout.count("New partnership: ") == 3
    assert "console: 3 sent" in first.stdout
    assert_clean_exit(second, 0)
    assert "New partnership" not in second.stdout
    assert "nothing to deliver" in second.stdout


# --- changes ---------------------------------------------------------------------------------


@pytest.fixture
def history(bot, source_server) -> Bot:
    """Baseline of 20, then 2 added, 1 renamed, 1 changed; then 1 removed."""
    first = agencies(20)
    later = mutate(first, seed=7, add=2, rename=1, change=1)
    source_server.serve(PATH, kml(later))
    bot.poll()
    dropped = [a for a in later if a.name != later[0].name]
    source_server.serve(PATH, kml(dropped))
    bot.poll()
    bot.poll()
    return bot


def changes_json(bot: Bot, *args: str) -> list[dict]:
    result = ringwatch(bot, "changes", "--format", "json", *args)
    assert_clean_exit(result, 0)
    return json.loads(result.stdout)


def test_changes_json_objects_have_the_documented_keys(history):
    rows = changes_json(history)

    assert sorted(row["kind"] for row in rows) == [
        "added",
        "added",
        "changed",
        "removed",
        "renamed",
    ]
    keys = {"kind", "key", "name", "city", "state", "detected_at", "active_date", "before", "after"}
    for row in rows:
        assert keys <= set(row)
    added = next(row for row in rows if row["kind"] == "added")
    assert added["after"]["name"] == added["name"] and added["before"] is None


def test_changes_kind_added_never_lists_the_baseline(history):
    rows = changes_json(history, "--kind", "added")

    assert [row["kind"] for row in rows] == ["added", "added"]


def test_changes_kind_baseline_lists_the_first_poll(history):
    assert len(changes_json(history, "--kind", "baseline")) == 20


# The filters themselves are the change-log query the command runs (bot.queries).


def test_changes_state_filter(history):
    every = history.changes(kinds=())
    state = every[0]["state"]

    filtered = history.changes(kinds=(), states=(state.lower(),))

    assert filtered and {row["state"] for row in filtered} == {state}
    assert len(filtered) == sum(row["state"] == state for row in every)


def test_changes_since_filters_on_detection_date(history):
    assert len(history.changes(kinds=(), since="2000-01-01")) == 5
    assert history.changes(kinds=(), since="2999-01-01") == []
    assert history.changes(kinds=(), until="2000-01-01") == []


def test_changes_by_active_date_counts_the_baseline_as_additions(history):
    every = history.changes(kinds=(), by="active-date")
    recent = history.changes(kinds=(), by="active-date", since="2024-06-01")

    assert {row["kind"] for row in every} == {"added", "baseline"}
    assert len(every) == 22
    assert recent and all(row["active_date"] >= "2024-06-01" for row in recent)
    assert len(recent) == sum(row["active_date"] >= "2024-06-01" for row in every)


def test_changes_by_active_date_from_the_command_line(history):
    rows = changes_json(history, "--by", "active-date", "--since", "2024-06-01", "--kind", "added")

    assert rows and all(row["active_date"] >= "2024-06-01" for row in rows)


def test_changes_limit_keeps_the_most_recent(history):
    assert [row["kind"] for row in history.changes(kinds=(), limit=1)] == ["removed"]


def test_changes_csv_and_table(history):
    as_csv = ringwatch(history, "changes", "--format", "csv", "--kind", "removed")
    table = ringwatch(history, "changes", "--kind", "renamed")

    (row,) = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert row["kind"] == "removed" and json.loads(row["before"])["name"] == row["name"]
    assert "renamed" in table.stdout and "(was " in table.stdout and "1 change\n" in table.stdout


def test_changes_rejects_a_bad_date_with_exit_2(history):
    result = ringwatch(history, "changes", "--since", "last tuesday")

    assert_clean_exit(result, 2)
    assert "not a date like 2020-05-25" in result.stderr


# --- status, check-config, demo --------------------------------------------------------------


def test_status_shows_failures_in_a_row_and_deliveries(bot, source_server):
    source_server.serve(PATH, Reply(b"", status=502))
    bot.poll()  # the notice and a warning are sent
    source_server.serve(PATH, kml(mutate(agencies(20), seed=2, add=1)))
    bot.poll(deliver=False)  # a recovery warning and an alert wait in the outbox

    result = ringwatch(bot, "status")

    assert_clean_exit(result, 0)
    assert "failed or suspect polls in a row: 0" in result.stdout
    assert "console: 2 pending, 2 sent" in result.stdout
    assert "agencies tracked: 21" in result.stdout


def test_status_warns_about_a_failure_streak_and_failed_deliveries(bot, source_server):
    source_server.serve(PATH, Reply(b"", status=502))
    bot.poll()
    bot.poll()
    store = Store.open(bot.config.db_path)
    row_id = store.db.execute("select max(id) from outbox").fetchone()[0]
    store.outbox.mark_failed(row_id, "chat not found")
    store.close()

    result = ringwatch(bot, "status")

    assert "failed or suspect polls in a row: 2  <-- WARNING" in result.stdout
    assert "HTTP 502" in result.stdout
    assert "1 failed" in result.stdout
    assert "last failure: console:stdout: chat not found" in result.stdout


def test_check_config_says_what_is_enabled(bot):
    result = ringwatch(bot, "check-config")

    assert_clean_exit(result, 0)
    assert "channels: console" in result.stdout
    assert "config ok" in result.stdout


def test_demo_shows_the_alerts_offline(tmp_path):
    result = run_cli("demo", "--state-dir", str(tmp_path / "demo"))

    assert_clean_exit(result, 0)
    assert "New partnership: Crystal PD, MN" in result.stdout
    assert "Partnership ended: Ridgeland PD, MS" in result.stdout
    assert "Renamed: Mesa PD is now City of Mesa PD, AZ" in result.stdout
    assert (tmp_path / "demo" / "ringwatch.db").exists()


def test_demo_never_mixes_samples_into_an_existing_database(bot):
    before = bot.polls()

    result = run_cli("demo", "--state-dir", str(bot.config.state_dir))

    assert_clean_exit(result, 2)
    assert "already holds a ringwatch database" in result.stderr
    assert bot.polls() == before


def test_state_filters_take_codes_or_names_and_refuse_the_rest(bot):
    by_code = ringwatch(bot, "changes", "--kind", "baseline", "--state", "MN", "--format", "json")
    by_name = ringwatch(bot, "changes", "--kind", "baseline", "--state", "minnesota",
                        "--format", "json")  # fmt: skip
    assert by_code.stdout == by_name.stdout

    result = ringwatch(bot, "changes", "--state", "Narnia")
    assert_clean_exit(result, 2)
    assert "'Narnia' is not a US state" in result.stderr


def test_by_active_date_refuses_kinds_other_than_additions(bot):
    result = ringwatch(bot, "changes", "--by", "active-date", "--kind", "removed")

    assert_clean_exit(result, 2)
    assert "--by active-date lists additions" in result.stderr


def test_check_config_reports_the_feed_and_the_summary(tmp_path, source_server):
    path = write_config(
        tmp_path,
        config_text(
            source_server.url(PATH), '[feed]\npath = "feed.xml"\n[summary]\nenabled = true\n'
        ),
    )

    result = run_cli("check-config", "--config", str(path))

    assert_clean_exit(result, 0)
    assert f"feed: {tmp_path / 'feed.xml'} (50 entries)" in result.stdout
    assert "summary: 0 9 * * MON (UTC)" in result.stdout


# --- documentation ---------------------------------------------------------------------------


def _command_lines(readme: str, name: str) -> str:
    return "\n".join(line for line in readme.splitlines() if f"ringwatch {name}" in line)


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_and_option_is_in_the_readme(name):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    lines = _command_lines(readme, name)
    assert lines, f"README.md does not mention `ringwatch {name}`"
    command = cli.commands[name]
    for param in command.params:
        if not isinstance(param, click.Option) or param.name == "config_path":
            continue  # --config is documented once for every command
        assert any(opt in lines for opt in param.opts), (
            f"README.md: no line mentioning `ringwatch {name}` documents {param.opts[0]}"
        )


def test_exit_codes_in_the_readme_match_the_code():
    from bot import poll

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for code in (poll.EXIT_USAGE, poll.EXIT_FETCH, poll.EXIT_GUARD, poll.EXIT_LOCKED):
        assert f"| {code} |" in readme


def test_help_needs_no_config(tmp_path: Path):
    result = run_cli("--help")

    assert_clean_exit(result, 0)
    for name in ("poll", "run", "deliver", "changes", "status", "check-config", "demo"):
        assert name in result.stdout
