"""Routes: webhook and Apprise targets with a filter each get exactly the changes it
matches, once, through the real CLI, a real receiver and real SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.channels import NO_DIGEST, cli
from tests.support.cli import database, run_cli, samples_config, write_config
from tests.support.http import closed_port_url
from tests.support.leaks import database_text, leaked
from tests.support.outbox import make_due, outbox
from tests.support.source_server import SourceServer
from tests.support.webhook_receiver import Answer, WebhookReceiver

SECRET = "whsec-0123456789abcdef"
PASSWORD = "route-password-0123"
TOKEN = "hook-token-0123456789"  # what makes a url_env webhook URL a secret
HOOK = f"/newsroom?token={TOKEN}"  # the receiver's path for it, as requested


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as server:
        yield server


def changes(config: Path, *args: str) -> list[dict]:
    result = run_cli("changes", "--config", str(config), "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return [row for row in json.loads(result.stdout) if row["kind"] != "changed"]


def test_each_target_gets_what_its_filter_matches_once(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver
):
    section = f"""[webhook]
enabled = true
urls = ["{receiver.url("/all")}"]

[[webhook.targets]]
url = "{receiver.url("/mn")}"
states = ["MN"]

[[webhook.targets]]
url = "{receiver.url("/duluth")}"
counties = ["Hennepin County, MN"]
near = "55802"
radius = "50mi"

[apprise]
enabled = true

[[apprise.targets]]
url_env = "APPRISE_TX"
states = ["Texas"]
"""
    apprise_url = receiver.url("/apprise-tx").replace("http://", f"json://rw:{PASSWORD}@")
    env = {"RINGWATCH_WEBHOOK_SECRET": SECRET, "APPRISE_TX": apprise_url}
    config = samples_config(source_server, tmp_path, NO_DIGEST + section)
    for _ in range(3):
        cli(config, "poll", env)

    def keys(path: str) -> list[str]:
        return sorted(r.document["agency"]["key"] for r in receiver.accepted(path))

    everything = changes(config)
    assert keys("/all") == sorted(row["key"] for row in everything)
    assert keys("/mn") == sorted(row["key"] for row in changes(config, "--state", "MN"))
    assert keys("/mn") and all(key.startswith("mn/") for key in keys("/mn"))
    duluth = changes(config, "--county", "Hennepin, MN", "--near", "55802", "--radius", "50mi")
    assert keys("/duluth") == sorted({row["key"] for row in duluth})
    texas = {row["name"] for row in changes(config, "--state", "TX")}
    messages = [r.document["message"] for r in receiver.accepted("/apprise-tx")]
    assert texas and len(messages) == len(texas)
    assert all(", TX" in message for message in messages)
    assert all(r.signature_ok for r in receiver.accepted("/mn"))


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('url = "https://x.example/h"\ncounties = ["Hennipen, MN"]',
         "webhook.targets[1] (line 6) No Hennipen County in MN; did you mean Hennepin?"),
        ('url = "https://x.example/h"\nnear = "55802"\nradius = "far"', "That is not a distance"),
        ('url = "https://x.example/h"\nnear = "00000"', "No US ZIP code 00000"),
        ('url = "https://x.example/h"\nstates = ["Narnia"]', "'Narnia' is not a US state"),
        ('states = ["MN"]', "webhook.targets[1] (line 6) needs url or url_env"),
        ('url = "https://x.example/h"\nstate = ["MN"]',
         "unknown key state (did you mean 'states'?)"),
    ],
)  # fmt: skip
def test_check_config_catches_a_bad_route(tmp_path: Path, table: str, problem: str):
    # write_config puts the [bot] section first: the route's table starts on line 6
    config = write_config(tmp_path, f"[webhook]\nenabled = true\n\n[[webhook.targets]]\n{table}\n")
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert problem in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def poll_thrice(config: Path, env: dict[str, str]) -> str:
    """The samples polled through the CLI, every retry made due before the next poll:
    what the three polls printed."""
    output = ""
    for _ in range(3):
        result = run_cli("poll", "--config", str(config), env=env)
        assert result.returncode == 0, result.stderr
        output += result.stdout + result.stderr
        make_due(database(config))
    return output


def debug_config(source_server: SourceServer, tmp_path: Path, section: str) -> Path:
    """The samples' config logging everything ringwatch logs, with `section`."""
    bot = f'[bot]\nstate_dir = "{tmp_path / "state"}"\nlog_level = "DEBUG"\n\n'
    return samples_config(source_server, tmp_path, bot + NO_DIGEST + section)


def test_a_secret_webhook_url_reaches_no_database_log_or_status(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver
):
    receiver.answer(HOOK, Answer(503))  # an error text that names the target, then a retry
    section = f"""[webhook]
enabled = true
urls = ["{receiver.url("/all")}"]

[[webhook.targets]]
url_env = "NEWSROOM_HOOK"
states = ["MN"]

[[webhook.targets]]
url_env = "DEAD_HOOK"
"""
    env = {
        "RINGWATCH_WEBHOOK_SECRET": SECRET,
        "NEWSROOM_HOOK": receiver.url(HOOK),
        "DEAD_HOOK": f"{closed_port_url()}/dead?token={TOKEN}",  # connection refused
    }
    config = debug_config(source_server, tmp_path, section)
    output = poll_thrice(config, env)
    minnesota = sorted(row["key"] for row in changes(config, "--state", "MN"))
    assert sorted(r.document["agency"]["key"] for r in receiver.accepted(HOOK)) == minnesota
    status = run_cli("status", "--config", str(config), env=env)
    test = run_cli("send-test", "webhook", "--config", str(config), env=env)

    rows = outbox(database(config), channel="webhook")
    assert {row["recipient"] for row in rows} == {
        receiver.url("/all"),
        "route1:NEWSROOM_HOOK",
        "route2:DEAD_HOOK",
    }
    assert all(row["status"] != "sent" for row in rows if row["recipient"] == "route2:DEAD_HOOK")
    assert "webhook: 3 URLs active (2 with a filter)" in status.stdout
    assert "webhook:route1:NEWSROOM_HOOK: sent" in test.stdout
    texts = [database_text(database(config)), output, status.stdout, status.stderr]
    assert leaked("\n".join([*texts, test.stdout, test.stderr]), [TOKEN]) == []


def test_a_secret_webhook_that_is_gone_is_named_by_its_route(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver
):
    receiver.answer(HOOK, Answer(410))
    section = """[console]
enabled = true

[webhook]
enabled = true

[[webhook.targets]]
url_env = "NEWSROOM_HOOK"
"""
    env = {"RINGWATCH_WEBHOOK_SECRET": SECRET, "NEWSROOM_HOOK": receiver.url(HOOK)}
    config = debug_config(source_server, tmp_path, section)
    output = poll_thrice(config, env)

    assert [r.status for r in receiver.received] == [410]  # then nothing more to it
    (warning,) = outbox(database(config), channel="console", kind="warning")
    assert "The webhook route1:NEWSROOM_HOOK answered 410 Gone" in warning["text"]
    assert "ringwatch enable-webhook route1:NEWSROOM_HOOK" in warning["text"]
    status = run_cli("status", "--config", str(config), env=env)
    assert "webhook: disabled (410 Gone): route1:NEWSROOM_HOOK" in status.stdout
    texts = [database_text(database(config)), output, status.stdout, status.stderr]
    assert leaked("\n".join(texts), [TOKEN]) == []

    by_url = run_cli("enable-webhook", "--config", str(config), receiver.url(HOOK), env=env)
    assert by_url.returncode == 2 and "<NEWSROOM_HOOK> is not one of" in by_url.stderr
    assert leaked(by_url.stderr, [TOKEN]) == []
    enabled = run_cli("enable-webhook", "--config", str(config), "route1:NEWSROOM_HOOK", env=env)
    assert enabled.stdout == "webhook: route1:NEWSROOM_HOOK is on again\n", enabled.stderr
    assert "disabled (410 Gone)" not in run_cli("status", "--config", str(config), env=env).stdout


def test_an_unreachable_apprise_route_leaves_no_trace_of_its_password(
    tmp_path: Path, source_server: SourceServer
):
    dead = closed_port_url().replace("http://", f"json://rw:{PASSWORD}@") + f"/hook?t={TOKEN}"
    section = """[apprise]
enabled = true
images = false

[[apprise.targets]]
url_env = "APPRISE_DEAD"
states = ["MN"]
"""
    env = {"APPRISE_DEAD": dead}
    config = debug_config(source_server, tmp_path, section)
    output = poll_thrice(config, env)
    status = run_cli("status", "--config", str(config), env=env)
    test = run_cli("send-test", "apprise", "--config", str(config), env=env)

    rows = outbox(database(config), channel="apprise")
    assert rows and {row["recipient"] for row in rows} == {"route1.1:json"}
    assert all(row["status"] != "sent" for row in rows)
    assert any(row["last_error"] for row in rows)  # the failure was recorded
    assert "route1.1:json" in test.stdout and test.returncode != 0
    texts = [database_text(database(config)), output, status.stdout, status.stderr]
    assert leaked("\n".join([*texts, test.stdout, test.stderr]), [PASSWORD, TOKEN]) == []
