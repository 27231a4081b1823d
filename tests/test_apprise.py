"""The Apprise channel: `json://` into a local receiver and `mailto://` into a local SMTP
server (aiosmtpd), through Apprise, the real CLI and real SQLite files."""

from __future__ import annotations

import base64
import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.support.agencies import agencies
from tests.support.channels import (
    NO_DIGEST,
    SAMPLE_ADDITIONS,
    additions,
    cli,
)
from tests.support.cli import database, run_cli, samples_config, write_config
from tests.support.leaks import database_text, leaked
from tests.support.outbox import make_due, outbox
from tests.support.smtp_server import SmtpServer
from tests.support.source_server import SourceServer
from tests.support.synthetic import to_kml
from tests.support.webhook_receiver import Answer, WebhookReceiver

ENABLED = "[apprise]\nenabled = true\nimages = false\n"  # text, unless a test is about cards
PASSWORD = "receiver-password-0123"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def json_url(receiver: WebhookReceiver, path: str = "/apprise") -> str:
    """Apprise's json:// target for the receiver, with credentials as real ones carry."""
    return receiver.url(path).replace("http://", f"json://ringwatch:{PASSWORD}@")


def test_every_sample_addition_reaches_a_json_target_and_an_email_once(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver, smtp: SmtpServer
):
    env = {"APPRISE_URLS": f"{json_url(receiver)}, {smtp.url()}"}
    config = samples_config(source_server, tmp_path, NO_DIGEST + ENABLED)
    for _ in range(3):
        cli(config, "poll", env)

    documents = [r.document for r in receiver.accepted("/apprise")]
    assert {d["title"] for d in documents} == {"ringwatch"}
    counts = additions([d["message"] for d in documents])
    assert len(counts) == SAMPLE_ADDITIONS and set(counts.values()) == {1}
    mails = [m.get_content() for m in smtp.messages]
    assert {m["Subject"] for m in smtp.messages} == {"ringwatch"}
    counts = additions(mails)
    assert len(counts) == SAMPLE_ADDITIONS and set(counts.values()) == {1}
    rows = outbox(database(config), channel="apprise")
    assert {r["status"] for r in rows} == {"sent"}
    assert {r["recipient"] for r in rows} == {"1:json", "2:mailto"}
    assert not leaked(database_text(tmp_path / "state" / "ringwatch.db"), [PASSWORD])


def test_a_refusing_target_is_retried_and_then_gets_each_message_once(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver, smtp: SmtpServer
):
    receiver.answer("/apprise", Answer(500))
    env = {"APPRISE_URLS": f"{json_url(receiver)} {smtp.url()}"}
    config = samples_config(source_server, tmp_path, NO_DIGEST + ENABLED)
    cli(config, "poll", env)
    result = run_cli("poll", "--config", str(config), env=env)
    assert result.returncode == 0 and PASSWORD not in result.stderr

    first = next(
        r for r in outbox(database(config), channel="apprise") if r["recipient"] == "1:json"
    )
    assert first["status"] == "pending" and first["attempts"] == 1
    assert len(smtp.messages) > SAMPLE_ADDITIONS  # the other target did not wait
    make_due(database(config))  # the CLI reads the real clock
    cli(config, "deliver", env)

    counts = additions([r.document["message"] for r in receiver.accepted("/apprise")])
    assert len(counts) == SAMPLE_ADDITIONS and set(counts.values()) == {1}


def test_each_target_url_is_redacted_on_its_own(monkeypatch: pytest.MonkeyPatch):
    """An error quoting one target (not the whole variable) still shows no credential."""
    from bot.channels.apprise import AppriseChannel
    from bot.logs import redact

    first, second = f"json://ringwatch:{PASSWORD}@127.0.0.1:9/x", "ntfys://tk_0123456789@ntfy.sh/t"
    monkeypatch.setenv("APPRISE_URLS", f"{first}, {second}")

    text = redact(f"ConnectionError: {first} failed; then {second.upper()}")

    assert AppriseChannel.secrets == ("APPRISE_URLS",)
    assert PASSWORD not in text and "tk_0123456789" not in text.lower()
    assert text == "ConnectionError: <APPRISE_URLS> failed; then <APPRISE_URLS>"


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        ("", "APPRISE_URLS is not set"),
        ("json://ok.example nonsense://x", "Apprise does not understand target 2:nonsense"),
    ],
)
def test_missing_or_unknown_targets_are_config_problems(tmp_path: Path, urls: str, message):
    result = run_cli("check-config", "--config", str(write_config(tmp_path, ENABLED)),
                     env={"APPRISE_URLS": urls})  # fmt: skip

    assert result.returncode == 2 and message in result.stderr
    assert "ok.example" not in result.stderr


def test_send_test_emails_the_targets(tmp_path: Path, smtp: SmtpServer):
    config = write_config(tmp_path, ENABLED)

    result = run_cli("send-test", "apprise", "--config", str(config),
                     env={"APPRISE_URLS": smtp.url()})  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "apprise:1:mailto: sent"
    (mail,) = smtp.messages
    assert mail.get_content().startswith("ringwatch test message")


def test_an_alert_carries_its_card_to_targets_that_take_attachments(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver, smtp: SmtpServer
):
    items = agencies(6)
    url = source_server.serve("/a.kml", to_kml(items[:5]), to_kml(items))
    extra = "[apprise]\nenabled = true\n[guard]\nmax_added_share = 100\n"
    config = write_config(tmp_path, f'[source]\nurl = "{url}"\nformat = "kml"\n{extra}')
    env = {"APPRISE_URLS": f"{json_url(receiver)} {smtp.url()}"}
    cli(config, "poll", env)
    cli(config, "poll", env)

    with sqlite3.connect(database(config)) as db:
        ((uuid,),) = db.execute("select uuid from changes where kind = 'added'").fetchall()
    card = (tmp_path / "state" / "cards" / f"{uuid}.png").read_bytes()
    (document,) = [r.document for r in receiver.accepted("/apprise")]
    assert document["message"].startswith("New partnership: ")
    (attached,) = document["attachments"]
    assert base64.b64decode(attached["base64"]) == card
    assert Image.open(io.BytesIO(card)).size == (1200, 675)
    (mail,) = smtp.messages
    (part,) = [p for p in mail.iter_attachments() if p.get_content_type() == "image/png"]
    assert part.get_content() == card
