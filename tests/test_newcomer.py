"""What a newcomer reads: commands that say what happened, in words, and refuse nonsense."""

from __future__ import annotations

import tomllib

import pytest

from tests.support.cli import REPO, SAMPLES, run_cli, write_config


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("newcomer") / "demo-state"
    result = run_cli("demo", "--state-dir", str(state), timeout=180)
    assert result.returncode == 0, result.stderr
    return state, result.stdout


def test_a_kept_demo_says_where_its_database_is_and_how_to_open_it(demo_state):
    state, out = demo_state
    assert f"change log: {state / 'ringwatch.db'}" in out
    assert f"explore it: ringwatch report --config {state / 'config.toml'}" in out
    report = run_cli("report", "--config", str(state / "config.toml"))
    assert report.returncode == 0 and "29 new partnerships" in report.stdout


def test_a_throwaway_demo_prints_no_path_it_deleted():
    result = run_cli("demo", timeout=180)
    assert result.returncode == 0, result.stderr
    assert "change log:" not in result.stdout and "/ringwatch.db" not in result.stdout
    assert "The demo database was temporary: run with --state-dir DIR to keep it." in result.stdout


def test_poll_summary_says_a_repeat_confirmed_an_ending(source_server, tmp_path):
    url = source_server.serve("/map.kml", (SAMPLES / "baseline.kml").read_bytes(),
                              (SAMPLES / "later.kml").read_bytes())  # fmt: skip
    guard = "[guard]\nmax_added_share = 0.25\n"  # the samples add 29 agencies to 123
    config = write_config(tmp_path, f'[source]\nurl = "{url}"\n{guard}')
    for _ in range(2):
        assert run_cli("poll", "--config", str(config)).returncode == 0
    result = run_cli("poll", "--config", str(config))  # the same bytes again
    assert result.returncode == 0, result.stderr
    assert "Partnership ended: Ridgeland PD, MS" in result.stdout
    assert "unchanged: the same list as the last poll (151 agencies listed); 1 confirmed " in (
        result.stdout
    )
    assert "0 added" not in result.stdout.splitlines()[-1]


def test_status_says_what_the_numbers_are(demo_state):
    state, _ = demo_state
    result = run_cli("status", "--config", str(state / "config.toml"))
    assert result.returncode == 0, result.stderr
    polls = [line for line in result.stdout.splitlines() if "listed:" in line]
    assert polls[0].endswith("unchanged  151 listed: 0 new, 1 ended, 0 renamed, 0 changed")
    assert polls[1].endswith("ok         151 listed: 29 new, 0 ended, 1 renamed, 1 changed")


def test_the_summary_after_the_demo_says_where_todays_changes_went(demo_state):
    state, _ = demo_state
    result = run_cli("summary", "--dry-run", "--config", str(state / "config.toml"))
    assert result.returncode == 0, result.stderr
    assert "no new or ended partnerships. 151 listed now." in result.stdout
    assert ", for the next summary: 29 new, 1 ended." in result.stdout


@pytest.mark.parametrize("limit", ["-1", "0", "two"])
def test_changes_limit_takes_only_a_positive_count(demo_state, limit):
    state, _ = demo_state
    result = run_cli("changes", "--config", str(state / "config.toml"), "--limit", limit)
    assert result.returncode == 2
    assert "Invalid value for '--limit'" in result.stderr


def test_changes_limit_lists_the_most_recent(demo_state):
    state, _ = demo_state
    result = run_cli("changes", "--config", str(state / "config.toml"), "--limit", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "1 change"
    assert "removed" in result.stdout.splitlines()[0]


def test_the_license_file_is_the_declared_license():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]
    assert declared == {"text": "Apache-2.0"}
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "http://www.apache.org/licenses/LICENSE-2.0" in text
