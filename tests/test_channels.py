"""Channels as plug-ins: the registry, config sections derived from it, check-config,
send-test, and the example channel of docs/channels.md loaded through its entry point
and driven end to end by the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.cli import REPO, poll_samples, run_cli, write_config
from tests.support.source_server import SourceServer

SAMPLE_ADDITIONS = 29


def example_channel_source() -> str:
    """The first Python block after "## Writing a channel" in docs/channels.md."""
    docs = (REPO / "docs" / "channels.md").read_text(encoding="utf-8")
    section = docs.split("## Writing a channel", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/channels.md has no example channel"
    return match.group(1)


def install_plugin(directory: Path) -> dict[str, str]:
    """The docs' example installed as a distribution with a `ringwatch.channels` entry
    point (a module and its .dist-info on PYTHONPATH): the environment that finds it."""
    directory.mkdir()
    (directory / "ringwatch_jsonl.py").write_text(example_channel_source(), encoding="utf-8")
    info = directory / "ringwatch_jsonl-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ringwatch-jsonl\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        '[ringwatch.channels]\njsonl = "ringwatch_jsonl:JsonlChannel"\n'.replace('"', "")
    )
    return {"PYTHONPATH": str(directory)}


JSONL = '[alerts]\ndigest_threshold = 100\n[jsonl]\nenabled = true\npath = "alerts.jsonl"\n'


def test_the_documented_example_channel_is_a_plugin_that_gets_every_alert_once(
    tmp_path: Path, source_server: SourceServer
):
    env = install_plugin(tmp_path / "plugins")

    config = poll_samples(source_server, tmp_path, JSONL, env=env)

    lines = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    added = [line for line in lines if line["text"].startswith("New partnership: ")]
    assert len(added) == SAMPLE_ADDITIONS
    assert len({line["text"] for line in added}) == SAMPLE_ADDITIONS
    assert len({line["id"] for line in lines}) == len(lines)  # a stable id per delivery
    checked = run_cli("check-config", "--config", str(config), env=env)
    assert checked.returncode == 0, checked.stderr
    assert "channels: jsonl" in checked.stdout  # the console is off: another channel is on
    assert "  jsonl: 2 template folders, secrets: none needed: ok" in checked.stdout
    status = run_cli("status", "--config", str(config), env=env)
    assert re.search(r"jsonl: \d+ sent", status.stdout), status.stdout


def test_send_test_goes_through_the_plugin_and_prints_the_answer(tmp_path: Path):
    env = install_plugin(tmp_path / "plugins")
    config = write_config(tmp_path, JSONL)

    result = run_cli("send-test", "jsonl", "--config", str(config), env=env)

    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert line["text"].startswith("ringwatch test message")
    assert result.stdout.strip() == f"jsonl:file: sent (id {line['id']})"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("[jsonl]\nenabled = true\npaht = 'x'\n", "unknown key jsonl.paht (did you mean 'path'?)"),
        ("[jsonl]\nenabled = 'yes'\n", "jsonl.enabled must be true or false, got 'yes'"),
        ("[jsonll]\nenabled = true\n", "unknown section [jsonll] (did you mean 'jsonl'?)"),
    ],
)
def test_a_plugin_section_is_validated_like_any_other(tmp_path: Path, section: str, message: str):
    env = install_plugin(tmp_path / "plugins")
    config = write_config(tmp_path, section)

    result = run_cli("check-config", "--config", str(config), env=env)

    assert result.returncode == 2
    assert result.stderr.strip().endswith(message)
    assert "Traceback" not in result.stderr


def test_send_test_refuses_a_channel_that_is_not_enabled_or_unknown(tmp_path: Path):
    config = write_config(tmp_path, "")

    off = run_cli("send-test", "telegram", "--config", str(config))
    unknown = run_cli("send-test", "myspace", "--config", str(config))

    assert off.returncode == 2 and "set enabled = true in [telegram]" in off.stderr
    assert unknown.returncode == 2 and "no channel 'myspace'" in unknown.stderr


def test_send_test_exits_3_when_the_platform_refuses(tmp_path: Path):
    """A Telegram Bot API that is not there: the answer is printed, the exit code is 3."""
    config = write_config(
        tmp_path,
        '[telegram]\nenabled = true\nchannel = "@news"\n'
        'api_base_url = "http://127.0.0.1:9/bot"\n[alerts]\nsend_timeout = "5s"\n',
    )

    result = run_cli("send-test", "telegram", "--config", str(config),
                     env={"TELEGRAM_BOT_TOKEN": "123:secret-token-value"})  # fmt: skip

    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("telegram:@news: ")
    assert "secret-token-value" not in result.stdout + result.stderr
