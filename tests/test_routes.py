"""Routes: webhook and Apprise targets with a filter each get exactly the changes it
matches, once, through the real CLI, a real receiver and real SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.channels import NO_DIGEST, cli
from tests.support.cli import run_cli, samples_config, write_config
from tests.support.source_server import SourceServer
from tests.support.webhook_receiver import WebhookReceiver

SECRET = "whsec-0123456789abcdef"
PASSWORD = "route-password-0123"


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
