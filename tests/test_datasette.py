"""Datasette 0.65 on the demo database, as a reader on the network sees it: the change log
and the canned queries answer, the private tables answer nothing, not even to SQL.

The server is started the documented way (`ringwatch demo --state-dir DIR`, then
`ringwatch datasette --config DIR/config.toml`) on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.cli import run_cli, start_cli
from tests.support.http import free_port
from tests.support.wait import wait_for

CHAT_ID = "987654321"  # a subscriber's Telegram chat id: must never be served


@pytest.fixture(scope="module")
def datasette(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("datasette") / "demo-state"
    result = run_cli("demo", "--state-dir", str(state), timeout=180)
    assert result.returncode == 0, result.stderr
    db = sqlite3.connect(state / "ringwatch.db")
    with db:
        db.execute("insert into subscribers (channel, chat_id, title, states, active) "
                   "values ('telegram', ?, 'Newsroom', '[\"MN\"]', 1)", [CHAT_ID])  # fmt: skip
    db.close()
    port = free_port()
    server = start_cli("datasette", "--config", str(state / "config.toml"),
                       "--host", "127.0.0.1", "--port", str(port))  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert server.poll() is None, "datasette exited"
        try:
            requests.get(f"{base}/-/versions.json", timeout=5).raise_for_status()
        except requests.ConnectionError:
            return False
        return True

    try:
        # A generous start-up allowance on a loaded machine.
        wait_for(answers, timeout=120, message="datasette did not start")
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def get(base: str, path: str, **params: str) -> requests.Response:
    return requests.get(base + path, params=params, timeout=30)


def test_it_is_datasette_065(datasette):
    assert get(datasette, "/-/versions.json").json()["datasette"]["version"].startswith("0.65.")


@pytest.mark.parametrize(
    "path, params",
    [
        ("/ringwatch/subscribers", {}),
        ("/ringwatch/subscribers.json", {}),
        ("/ringwatch/subscribers.csv", {}),
        ("/ringwatch/outbox", {}),
        ("/ringwatch/disabled_webhooks.json", {}),
        ("/ringwatch/outbox.json", {"_shape": "array"}),
        ("/ringwatch", {"sql": "select * from subscribers"}),
        ("/ringwatch.json", {"sql": "select * from subscribers"}),
        ("/ringwatch.json", {"sql": "select recipient, text from outbox"}),
        ("/ringwatch.db", {}),
    ],
)
def test_private_tables_are_not_served(datasette, path, params):
    response = get(datasette, path, **params)
    assert response.status_code in (403, 404), (path, response.status_code)
    assert CHAT_ID not in response.text


def test_the_database_page_lists_only_public_tables(datasette):
    response = get(datasette, "/ringwatch.json")
    assert response.status_code == 200
    tables = {table["name"] for table in response.json()["tables"] if not table["hidden"]}
    assert {"changes", "agencies", "polls"} <= tables
    assert not tables & {"subscribers", "outbox"}
    assert CHAT_ID not in response.text


def test_the_change_log_and_canned_queries_answer(datasette):
    changes = get(datasette, "/ringwatch/changes.json", _shape="array", kind="added")
    assert changes.status_code == 200 and len(changes.json()) == 29
    assert get(datasette, "/ringwatch/recent_changes").status_code == 200
    since = get(datasette, "/ringwatch/added_since.json", since="2020-05-25", _shape="array")
    assert since.status_code == 200 and len(since.json()) == 29
    for name in ("ended_partnerships", "by_state"):
        assert get(datasette, f"/ringwatch/{name}.json").status_code == 200


@pytest.mark.parametrize(
    "agency", ["az/mesa-police-department", "az/city-of-mesa-police-department", "Mesa Police"]
)
def test_agency_history_follows_the_agency_across_its_rename(datasette, agency):
    response = get(datasette, "/ringwatch/agency_history.json", agency=agency, _shape="array")
    assert response.status_code == 200
    rows = response.json()
    assert [(row["kind"], row["name"]) for row in rows] == [
        ("baseline", "Mesa Police Department"),
        ("renamed", "City of Mesa Police Department"),
    ]


def test_agency_history_needs_its_parameter(datasette):
    for params in ({}, {"agency": ""}):
        response = get(datasette, "/ringwatch/agency_history.json", _shape="array", **params)
        assert response.status_code == 200
        assert response.json() == []


def test_the_printed_command_is_the_one_that_runs(tmp_path):
    result = run_cli("datasette", "--config", str(tmp_path / "none.toml"), "--print")
    assert result.returncode == 2  # no such config file
    config = tmp_path / "config.toml"
    config.write_text('[bot]\nstate_dir = "state"\n')
    result = run_cli("datasette", "--config", str(config), "--print")
    assert result.returncode == 2
    assert f"no database at {tmp_path / 'state' / 'ringwatch.db'}" in result.stderr
    (tmp_path / "state").mkdir()
    sqlite3.connect(tmp_path / "state" / "ringwatch.db").close()
    result = run_cli("datasette", "--config", str(config), "--print", "--port", "8001")
    assert result.returncode == 0, result.stderr
    words = result.stdout.split()
    assert words[:3] == ["datasette", "serve", str(tmp_path / "state" / "ringwatch.db")]
    assert words[3] == "--metadata" and Path(words[4]).name == "datasette-metadata.json"
    assert words[5:] == ["--port", "8001"]
