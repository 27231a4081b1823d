"""The `ringwatch` command line as a user runs it: a subprocess, its output, its exit code."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import pytest

from bot.cli import cli
from bot.lock import state_lock
from bot.store import Store
from bot.store.changelog import pack_churn, unpack_churn
from bot.store.polls import poll_seal
from tests.support.agencies import agencies, renamed
from tests.support.bot import Bot, config_text
from tests.support.cli import REPO, run_cli, start_cli, write_config
from tests.support.locks import hold_write_lock, release
from tests.support.outbox import outbox
from tests.support.source_server import Reply
from tests.support.synthetic import mutate, to_kml
from tests.support.wait import wait_for

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
    made = Bot.create(tmp_path, source_server.serve(PATH, to_kml(agencies(20))))
    made.poll()
    return made


# --- poll exit codes ------------------------------------------------------------------------


def test_poll_prints_alerts_and_a_summary_and_exits_0(bot, source_server):
    later = mutate(agencies(20), seed=2, add=1)
    source_server.serve(PATH, to_kml(later))

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
    body = to_kml(mutate(agencies(20), seed=2, add=1))
    source_server.serve(PATH, Reply(body, declared_length=len(body) + 1000))

    assert_clean_exit(ringwatch(bot, "poll"), 3)
    assert bot.kinds() == []


# What the source lists instead of the 20 agencies it listed before.
SUSPECT_LISTS = {
    "empty list": lambda first: [],
    "missing 30%": lambda first: first[:14],
    "30% new": lambda first: mutate(first, seed=2, add=6),
}


@pytest.mark.parametrize("case", SUSPECT_LISTS, ids=list(SUSPECT_LISTS))
def test_poll_exits_4_when_a_guard_trips(bot, source_server, case):
    source_server.serve(PATH, to_kml(SUSPECT_LISTS[case](agencies(20))))

    result = ringwatch(bot, "poll")

    assert_clean_exit(result, 4)
    assert "suspect: " in result.stdout
    assert "ringwatch warning:" in result.stdout
    assert "Partnership ended" not in result.stdout
    assert len(bot.agencies()) == 20


def test_poll_force_believes_a_fetch_a_share_guard_refused(bot, source_server):
    listed = agencies(20)
    source_server.serve(PATH, to_kml(listed[:14]))
    assert_clean_exit(ringwatch(bot, "poll"), 4)

    for _ in range(2):  # an ending still needs its confirmations
        result = ringwatch(bot, "poll", "--force")
        assert_clean_exit(result, 0)

    assert len(bot.agencies()) == 14
    assert [kind for kind, _ in bot.kinds()] == ["removed"] * 6


def test_poll_force_believes_many_additions_once(bot, source_server):
    source_server.serve(PATH, to_kml(mutate(agencies(20), seed=2, add=6)))
    result = ringwatch(bot, "poll")
    assert_clean_exit(result, 4)
    assert "guard.max_added_share" in result.stdout

    result = ringwatch(bot, "poll", "--force")

    assert_clean_exit(result, 0)
    assert "6 new partnerships" in result.stdout
    assert len(bot.agencies()) == 26


def test_poll_refuses_a_first_document_without_states_with_exit_4(tmp_path, source_server):
    broken = [dataclasses.replace(a, city="", state="") for a in agencies(20)]
    made = Bot.create(tmp_path, source_server.serve(PATH, to_kml(broken)))

    result = ringwatch(made, "poll")

    assert_clean_exit(result, 4)
    assert "20 of 20 records (100%) have no state or no name" in result.stdout
    assert "now tracking" not in result.stdout
    assert made.agencies() == {}


def test_poll_force_never_believes_an_empty_list(bot, source_server):
    source_server.serve(PATH, to_kml([]))

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
    url = source_server.serve(PATH, to_kml(agencies(5)))
    config = tmp_path / "config.toml"
    config.write_text(f'[bot]\nstate_dir = "{blocker}"\n[source]\nurl = "{url}"\n')

    result = run_cli(command, "--config", str(config))

    assert_clean_exit(result, 2)
    assert f"cannot use the state directory {blocker}" in result.stderr


# --- dry run -------------------------------------------------------------------------------


def test_dry_run_of_a_first_poll_creates_no_database(tmp_path, source_server):
    fresh = Bot.create(tmp_path, source_server.serve(PATH, to_kml(agencies(5))))

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
    source_server.serve(PATH, to_kml(mutate(agencies(20), seed=2, add=2)))
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
    source_server.serve(PATH, to_kml(mutate(agencies(20), seed=2, add=2)))
    bot.poll(deliver=False)  # as if the process died right after the commit

    first = ringwatch(bot, "deliver")
    second = ringwatch(bot, "deliver")

    assert_clean_exit(first, 0)
    assert first.stdout.count("New partnership: ") == 2
    assert "console: 2 sent" in first.stdout
    assert_clean_exit(second, 0)
    assert "New partnership" not in second.stdout
    assert "nothing to deliver" in second.stdout


# --- changes ---------------------------------------------------------------------------------


@pytest.fixture
def history(bot, source_server) -> Bot:
    """Baseline of 20, then 2 added, 1 renamed, 1 changed; then 1 removed."""
    first = agencies(20)
    later = mutate(first, seed=7, add=2, rename=1, change=1)
    source_server.serve(PATH, to_kml(later))
    bot.poll()
    dropped = [a for a in later if a.name != later[0].name]
    source_server.serve(PATH, to_kml(dropped))
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
    source_server.serve(PATH, to_kml(mutate(agencies(20), seed=2, add=1)))
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
    store.outbox.mark_failed(outbox(store)[-1]["id"], "chat not found")
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
    assert "demo setting: guard.max_added_share = 0.25" in result.stdout
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


def _documentation() -> str:
    """The README and every page of docs/: what a user reads."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    return "\n".join(page.read_text(encoding="utf-8") for page in pages)


def _command_lines(readme: str, name: str) -> str:
    return "\n".join(line for line in readme.splitlines() if f"ringwatch {name}" in line)


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_and_option_is_in_the_docs(name):
    lines = _command_lines(_documentation(), name)
    assert lines, f"README.md and docs/ do not mention `ringwatch {name}`"
    command = cli.commands[name]
    for param in command.params:
        if not isinstance(param, click.Option) or param.name == "config_path":
            continue  # --config is documented once for every command
        assert any(opt in lines for opt in param.opts), (
            f"README.md, docs/: no line mentioning `ringwatch {name}` documents {param.opts[0]}"
        )


def test_exit_codes_in_the_docs_match_the_code():
    from bot.models import ExitCode

    docs = (REPO / "docs" / "commands.md").read_text(encoding="utf-8")
    section = docs.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    table = {int(code) for code in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}
    poll_codes = {ExitCode.OK, ExitCode.USAGE, ExitCode.TRANSIENT, ExitCode.GUARD, ExitCode.LOCKED}
    assert table == poll_codes  # the table of `poll`'s exit codes, as the CLI defines them


def test_help_needs_no_config(tmp_path: Path):
    result = run_cli("--help")

    assert_clean_exit(result, 0)
    for name in ("poll", "run", "deliver", "changes", "status", "check-config", "demo"):
        assert name in result.stdout


# --- a database that cannot be used -------------------------------------------------------


def db_path(bot: Bot) -> Path:
    return bot.config.db_path


def content(path: Path) -> list[str]:
    """Everything the database holds, as SQL: equal lists mean nothing was written."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def assert_one_line_error(result, code: int, *phrases: str) -> None:
    assert_clean_exit(result, code)  # and no traceback; log lines may come before it
    lines = [line for line in result.stderr.splitlines() if line.startswith("ringwatch: ")]
    assert len(lines) == 1 and result.stderr.rstrip().endswith(lines[0]), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


@contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `directory`, or the test is skipped where mounting is not allowed."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True, text=True,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """The file or directory `path` read-only: its mode for a user, and for root (whom modes
    do not stop) a read-only bind mount of `path` onto itself."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    steps = (["mount", "--bind", str(path), str(path)],
             ["mount", "-o", "remount,bind,ro", str(path)])  # fmt: skip
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["umount", str(path)], capture_output=True)
            pytest.skip(f"root, but cannot bind-mount {path} read-only here: {done.stderr}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


# Every command that only reads the database, with the arguments it needs to get that far.
READ_COMMANDS = {
    "status": (),
    "health": (),
    "changes": (),
    "near": ("55427",),
    "report": (),
    "stats": (),
    "export": (),
    "chart": ("growth", "--out", "growth.png"),
    "datasette": ("--print",),
    "snapshots": (),
    "snapshot": ("3f2a9c01",),
    "evidence": ("1",),
    "card": ("1",),
    "verify": (),
    "site": (),
}


def test_the_read_command_table_names_every_command_that_needs_a_database():
    writers = {
        "poll",
        "run",
        "deliver",
        "prune",
        "summary",
        "import",
        "send-test",
        "enable-webhook",
    }
    needs_nothing = {"check-config", "demo"}
    assert set(READ_COMMANDS) == set(cli.commands) - writers - needs_nothing


@pytest.mark.parametrize("command", READ_COMMANDS, ids=list(READ_COMMANDS))
def test_a_read_command_without_a_database_exits_2_saying_how_to_make_one(tmp_path, command):
    config = write_config(tmp_path, "")
    db = tmp_path / "state" / "ringwatch.db"

    result = run_cli(command, "--config", str(config), *READ_COMMANDS[command])

    assert_one_line_error(result, 2, f"no database at {db}:", "`ringwatch poll`", "`ringwatch demo")
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]  # nothing created


CORRUPTIONS = {
    "overwritten": lambda data: b"this is not a database " * (len(data) // 23 + 1),
    "damaged pages": lambda data: data[:4096] + b"\xff" * (len(data) - 4096),
}


@pytest.mark.parametrize("command", ["poll", "deliver", "status", "changes"])
@pytest.mark.parametrize("damage", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_a_corrupt_database_exits_2_with_one_line(bot, source_server, command, damage):
    source_server.serve(PATH, to_kml(mutate(agencies(20), seed=2, add=1)))
    path = db_path(bot)
    assert not path.with_name(path.name + "-wal").exists()  # all of it is in the file
    path.write_bytes(CORRUPTIONS[damage](path.read_bytes()))
    before = path.read_bytes()

    result = ringwatch(bot, command)

    assert_one_line_error(result, 2, f"database {path} is ", "restore it from a backup")
    assert path.read_bytes() == before


def test_a_database_from_a_newer_ringwatch_exits_2_with_one_line(bot, source_server):
    source_server.serve(PATH, to_kml(mutate(agencies(20), seed=2, add=1)))
    path = db_path(bot)
    with sqlite3.connect(path) as db:  # what a newer ringwatch's extra step leaves
        db.execute(
            "insert into _sqlite_migrations (migration_set, name, applied_at) "
            "values ('ringwatch', 'add_a_table_from_the_future', '2027-01-01')"
        )
    before = content(path)

    result = ringwatch(bot, "poll")

    assert_one_line_error(
        result, 2, f"database {path} was written by a newer ringwatch", "upgrade ringwatch"
    )
    assert "add_a_table_from_the_future" in result.stderr
    assert content(path) == before


def test_a_read_only_database_file_exits_2_and_is_unchanged(bot, source_server):
    source_server.serve(PATH, to_kml(mutate(agencies(20), seed=2, add=1)))
    path = db_path(bot)
    before = content(path)

    with read_only(path):
        result = ringwatch(bot, "poll")

    assert_one_line_error(result, 2, f"database {path} is read-only", "writable by this user")
    assert content(path) == before


def test_a_read_only_state_directory_exits_2_and_is_unchanged(bot, source_server):
    source_server.serve(PATH, to_kml(mutate(agencies(20), seed=2, add=1)))
    state = bot.config.state_dir
    before = content(db_path(bot))

    with read_only(state):
        result = ringwatch(bot, "poll")

    assert_one_line_error(result, 2, f"cannot use the state directory {state}")
    assert content(db_path(bot)) == before


def test_a_database_locked_too_long_exits_3_and_is_unchanged(tmp_path, source_server):
    made = Bot.create(
        tmp_path, source_server.serve(PATH, to_kml(agencies(20))), '[bot]\nbusy_timeout = "0.3s"\n'
    )
    made.poll()
    source_server.serve(PATH, to_kml(mutate(agencies(20), seed=2, add=1)))
    path = db_path(made)
    before = content(path)
    holder = hold_write_lock(path)
    try:
        result = ringwatch(made, "poll")
    finally:
        release(holder)

    assert_one_line_error(result, 3, f"database {path} stayed locked", "bot.busy_timeout")
    assert content(path) == before
    assert_clean_exit(ringwatch(made, "poll"), 0)  # once the lock is gone, all is well


def test_a_full_disk_exits_3_and_leaves_the_database_unchanged(tmp_path, source_server):
    made = Bot.create(tmp_path, source_server.serve(PATH, to_kml(agencies(20))))
    made.poll()  # the baseline, on an ordinary disk: then onto a 300 KB one
    state, path = made.config.state_dir, db_path(made)
    kept = state.rename(tmp_path / "kept")
    with tmpfs(state, "300k"):
        shutil.copytree(kept, state, dirs_exist_ok=True)
        before = content(path)
        (state / "ringwatch.lock").write_text("0\n")  # the lock file has its block already
        fill(state / "filler")
        source_server.serve(PATH, to_kml(mutate(agencies(20), seed=2, add=1)))

        result = ringwatch(made, "poll")
        (state / "ringwatch.lock").unlink()
        fill(state / "filler")
        no_lock = ringwatch(made, "poll")  # not even the lock file fits now

        assert_one_line_error(result, 3, f"database {path} cannot grow: its disk is full")
        assert_one_line_error(no_lock, 3, f"state directory {state}: its disk is full")
        (state / "filler").unlink()  # a reader needs a little space too
        assert content(path) == before


def fill(path: Path) -> None:
    """Take every block left on path's file system."""
    filler = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with contextlib.suppress(OSError):
        while os.write(filler, b"\0" * 4096):
            pass
    os.close(filler)


RUN = '[bot]\ninterval = "0.5s"\njitter = "0.01s"\ndeliver_every = "0.2s"\nbusy_timeout = "0.3s"\n'


def test_run_stops_with_exit_2_and_warns_once_when_the_database_turns_corrupt(
    tmp_path, source_server
):
    made = Bot.create(tmp_path, source_server.serve(PATH, to_kml(agencies(20))), RUN)
    log = tmp_path / "run.log"
    with log.open("w") as err:
        process = start_cli("run", "--config", str(made.config_path), stdout=subprocess.PIPE,
                            stderr=err, text=True)  # fmt: skip
        try:
            wait_for(made.polls)
            path = db_path(made)
            # Garbage over the file and its write-ahead log (which holds the latest pages),
            # written into the same files, so the connections ringwatch holds see it too.
            for damaged in (path, path.with_name(path.name + "-wal")):
                with damaged.open("r+b") as file:
                    file.write(b"this is not a database " * (damaged.stat().st_size // 23))
            out, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    assert process.returncode == 2
    assert out.count("ringwatch warning:") == 1
    assert f"ringwatch stopped: database {path} is " in out
    assert "restore it from a backup" in out
    assert "ERROR" in log.read_text() and "Traceback" not in log.read_text()


def test_run_keeps_polling_through_a_locked_database(tmp_path, source_server):
    made = Bot.create(tmp_path, source_server.serve(PATH, to_kml(agencies(20))), RUN)
    log = tmp_path / "run.log"
    with log.open("w") as err:
        process = start_cli("run", "--config", str(made.config_path), stderr=err)
        try:
            wait_for(lambda: len(made.polls()) >= 2)
            holder = hold_write_lock(db_path(made))
            source_server.serve(PATH, to_kml(mutate(agencies(20), seed=2, add=1)))
            try:
                wait_for(lambda: log.read_text().count("stayed locked") >= 2)
            finally:
                release(holder)
            wait_for(lambda: len(made.agencies()) == 21)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)

    assert process.returncode == 0
    assert "poll not recorded, the next one runs on schedule" in log.read_text()


# --- prune ------------------------------------------------------------------------------------


def backdate(bot: Bot, when: str = "2020-01-01T00:00:00Z") -> None:
    """Everything recorded so far happened long ago (each poll sealed as it would have been
    then: verify recomputes the seal over its time)."""
    with contextlib.closing(sqlite3.connect(db_path(bot))) as conn, conn:
        conn.row_factory = sqlite3.Row
        conn.execute("update polls set started_at = ?, finished_at = ?", [when, when])
        polls = [dict(row) for row in conn.execute("select * from polls")]
        conn.executemany("update polls set seal = ? where id = ?",
                         [(poll_seal(poll), poll["id"]) for poll in polls])  # fmt: skip
        conn.execute("update outbox set created_at = ?, sent_at = ?", [when, when])
        conn.execute("update changes set detected_at = ?", [when])


def test_prune_forgets_old_sent_messages_and_idle_polls_never_the_change_log(bot, source_server):
    source_server.serve(PATH, to_kml(mutate(agencies(20), seed=2, add=1)))
    bot.poll()  # one addition, alerted
    for _ in range(3):
        bot.poll()  # 304: nothing but a poll row each
    backdate(bot)
    assert bot.poll().outcome == "unchanged"  # today's poll
    logged = bot.rows("select * from changes order by id")
    polls = bot.polls()

    result = ringwatch(bot, "prune", "--keep", "30")

    assert_clean_exit(result, 0)
    assert "pruned 2 sent messages and 3 polls from before " in result.stdout
    assert bot.rows("select * from changes order by id") == logged
    # The baseline's and the addition's polls are kept (the change log refers to them).
    assert [p["id"] for p in bot.polls()] == [polls[0]["id"], polls[1]["id"], polls[-1]["id"]]
    assert bot.outbox() == []
    assert bot.rows("pragma auto_vacuum") == [{"auto_vacuum": 2}]  # incremental from now on
    assert bot.poll().outcome == "unchanged"  # the validators of the last good poll are kept
    assert source_server.requests[-1]["If-None-Match"]


def test_prune_keeps_what_is_recent_and_what_is_not_sent(bot, source_server):
    source_server.serve(PATH, Reply(b"", status=502))
    bot.poll(deliver=False)  # a warning waits in the outbox
    backdate(bot)
    polls, waiting = bot.polls(), bot.outbox()[1:]

    result = ringwatch(bot, "prune")  # bot.retention: 90 days by default

    assert_clean_exit(result, 0)
    assert "pruned 1 sent message and 0 polls" in result.stdout  # the baseline's notice
    assert bot.polls() == polls  # the baseline's and the failure streak's
    assert bot.outbox() == waiting and waiting[0]["status"] == "pending"


def test_run_prunes_with_the_configured_retention(tmp_path, source_server):
    made = Bot.create(tmp_path, source_server.serve(PATH, to_kml(agencies(20))),
                      '[bot]\nretention = "1d"\n')  # fmt: skip
    made.poll()
    made.poll()
    backdate(made)
    made.poll()

    from bot.scheduler import Runner

    async def prune_once() -> None:
        runner = Runner(made.config)
        await runner.prune_job()
        runner.store.close()

    asyncio.run(prune_once())

    assert len(made.polls()) == 2 and made.outbox() == []  # the baseline's poll and today's


def test_poll_and_status_name_agencies_listed_twice(bot, source_server):
    listed = agencies(20)
    source_server.serve(PATH, to_kml([*listed, listed[4]]))

    result = ringwatch(bot, "poll")

    assert_clean_exit(result, 0)
    warning = f"1 agency listed twice, kept once: {listed[4].name} ({listed[4].city}, "
    assert warning in result.stdout and "0 added" in result.stdout
    assert "New partnership" not in result.stdout
    assert warning in ringwatch(bot, "status").stdout


def test_prune_keeps_every_poll_verify_replays(tmp_path, source_server):
    listed = agencies(20)
    made = Bot.create(tmp_path, source_server.serve(PATH, to_kml(listed)),
                      "[guard]\nremoval_confirmations = 3\n")  # fmt: skip
    made.poll()
    source_server.serve(PATH, to_kml(listed[1:]))
    made.poll()  # missing once: a new document
    made.poll()  # 304, missing twice: a confirmation the replay needs
    made.poll()  # 304, missing three times: ended
    made.poll()  # 304, nothing missing: idle
    source_server.serve(PATH, Reply(b"down", status=503))
    made.poll()  # failed: idle
    source_server.serve(PATH, to_kml(listed[1:]))
    made.poll()  # 200, same document: idle
    backdate(made)
    made.poll()  # today's
    ids = [p["id"] for p in made.polls()]
    kept = [*ids[:4], ids[-1]]

    result = ringwatch(made, "prune", "--keep", "1")

    assert_clean_exit(result, 0)
    assert "and 3 polls from before" in result.stdout
    assert [p["id"] for p in made.polls()] == kept
    assert made.kinds() == [("removed", listed[0].name)]
    assert_clean_exit(ringwatch(made, "verify"), 0)


def test_verify_replays_churn_and_catches_an_edited_entry(bot, source_server):
    counted = [renamed(a, video_requests=a.video_requests + 3) for a in agencies(20)]
    source_server.serve(PATH, to_kml(counted))
    bot.poll()
    assert_clean_exit(ringwatch(bot, "verify"), 0)

    (entry,) = bot.rows("select id, first_id, data from churn")
    values = unpack_churn(entry["data"])
    key = sorted(values)[0]
    values[key][1] = 999_999  # a forged count
    with contextlib.closing(sqlite3.connect(db_path(bot))) as conn, conn:
        conn.execute("update churn set data = ? where id = ?", [pack_churn(values), entry["id"]])

    result = ringwatch(bot, "verify")

    assert result.returncode == 1
    assert f"change #{entry['first_id']} (changed " in result.stdout  # the first key's
    assert "the snapshots produce a change missing from the log: changed" in result.stdout
