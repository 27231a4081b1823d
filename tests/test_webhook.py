"""The webhook channel against a receiver on 127.0.0.1 that verifies the signature itself,
through requests, the real CLI and real SQLite files. Time is never slept: a delivery
in-process moves the clock deliver_pending takes; the CLI, which reads the real clock, is
given its retries due (tests/support/outbox.py's make_due)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.store.times import epoch_time
from tests.support.agencies import agencies
from tests.support.bot import Bot
from tests.support.cli import database, poll_samples, run_cli, write_config
from tests.support.clock import Clock
from tests.support.leaks import database_text, leaked
from tests.support.outbox import make_due, outbox
from tests.support.source_server import SourceServer
from tests.support.synthetic import to_kml
from tests.support.webhook_receiver import Answer, WebhookReceiver

SECRET = "whsec-0123456789abcdef"
ENV = {"RINGWATCH_WEBHOOK_SECRET": SECRET}
SAMPLE_ADDITIONS = 29


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as server:
        yield server


def webhook_section(*urls: str, extra: str = "") -> str:
    return f"[webhook]\nenabled = true\nurls = {json.dumps(list(urls))}\n{extra}"


def test_every_sample_addition_arrives_once_signed_in_the_documented_schema(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver
):
    config = poll_samples(source_server, tmp_path, webhook_section(receiver.url("/hook")), ENV)

    got = receiver.accepted("/hook")
    added = [r.document for r in got if r.document.get("kind") == "added"]
    assert len(added) == SAMPLE_ADDITIONS
    assert len({d["agency"]["key"] for d in added}) == SAMPLE_ADDITIONS
    assert (
        len({r.delivery for r in got})
        == len(got)
        == len(outbox(database(config), channel="webhook"))
    )
    assert all(r.signature_ok for r in got)
    assert all(r.headers["content-type"] == "application/json" for r in got)
    assert {r.headers["x-ringwatch-event"] for r in got} == {"change"}
    crystal = next(d for d in added if d["agency"]["name"] == "Crystal Police Department")
    assert crystal["schema"] == "ringwatch.change/1"
    assert crystal["text"] == "New partnership: Crystal PD, MN (active since 2020-06-03)"
    assert crystal["agency"]["state"] == "MN" and crystal["before"] is None
    assert crystal["after"]["name"] == "Crystal Police Department"
    assert crystal["detected_at"].endswith("Z") and crystal["id"].isdigit()
    assert set(crystal["agency"]) == {
        *("key", "name", "city", "state", "active_date", "video_requests"),
        *("profile_url", "lat", "lon", "county"),
    }
    assert crystal["agency"]["county"] == "Hennepin County"
    assert {r["status"] for r in outbox(database(config), channel="webhook")} == {"sent"}
    assert not leaked(database_text(config.parent / "state" / "ringwatch.db"), [SECRET])


def test_without_a_secret_nothing_is_signed(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver
):
    poll_samples(source_server, tmp_path, webhook_section(receiver.url("/hook")))

    assert receiver.received
    assert not any("x-ringwatch-signature-256" in r.headers for r in receiver.received)


def test_retries_keep_the_delivery_id_and_honour_retry_after(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver
):
    receiver.answer("/hook", Answer(503), Answer(429, {"Retry-After": "120"}))
    config = poll_samples(source_server, tmp_path, webhook_section(receiver.url("/hook")), ENV)
    assert "HTTP 503" in outbox(database(config), channel="webhook")[0]["last_error"]
    make_due(database(config))  # the CLI reads the real clock
    assert run_cli("deliver", "--config", str(config), env=ENV).returncode == 0
    first = outbox(database(config), channel="webhook")[0]
    assert first["status"] == "pending" and "HTTP 429" in first["last_error"]
    assert 60 < epoch_time(first["next_attempt_at"]) - time.time() <= 121  # the receiver's wait
    assert first["attempts"] == 1  # the 503 counted; a 429 is a wait, not a failure

    make_due(database(config))  # the CLI reads the real clock
    assert run_cli("deliver", "--config", str(config), env=ENV).returncode == 0

    tries = [r for r in receiver.received if r.document["id"] == str(first["change_ids"][1:-1])]
    assert [r.status for r in tries] == [503, 429, 204]
    assert len({r.delivery for r in tries}) == 1
    assert len(receiver.accepted("/hook")) == len(outbox(database(config), channel="webhook"))


def test_a_receiver_that_does_not_answer_in_time_is_retried(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver
):
    items = agencies(20)
    url = source_server.serve("/a.kml", to_kml(items[:19]), to_kml(items))
    bot = Bot.create(
        tmp_path, url, webhook_section(receiver.url("/hook"), extra='timeout = "1s"\n')
    )
    bot.poll()
    receiver.answer("/hook", Answer(204, delay=5))
    bot.poll()

    (row,) = bot.outbox(channel="webhook")
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "timed out" in row["last_error"].lower()
    bot.deliver(Clock().until_due(bot.config.db_path))
    first, again = receiver.received
    assert first.delivery == again.delivery and again.status == 204
    (row,) = bot.outbox(channel="webhook")
    assert row["status"] == "sent"


# What the webhook does with each answer: the row's status, whether the attempt counted,
# whether the URL is disabled.
ANSWERS = [
    (Answer(200), "sent", 1, False),
    (Answer(202), "sent", 1, False),
    (Answer(301, {"Location": "http://elsewhere.example/"}), "failed", 1, False),
    (Answer(400), "failed", 1, False),
    (Answer(404), "failed", 1, False),
    (Answer(408), "pending", 1, False),
    (Answer(429, {"Retry-After": "30"}), "pending", 0, False),
    (Answer(500), "pending", 1, False),
    (Answer(503, {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}), "pending", 1, False),
    (Answer(410), "failed", 1, True),
]


@pytest.mark.parametrize(("answer", "status", "attempts", "disabled"), ANSWERS)
def test_each_answer_means_what_the_docs_say(
    tmp_path: Path,
    source_server: SourceServer,
    receiver: WebhookReceiver,
    answer: Answer,
    status: str,
    attempts: int,
    disabled: bool,
):
    items = agencies(20)
    url = source_server.serve("/a.kml", to_kml(items[:19]), to_kml(items))
    bot = Bot.create(tmp_path, url, webhook_section(receiver.url("/hook")))
    bot.poll()  # the baseline: no alerts
    receiver.answer("/hook", answer)
    bot.poll()

    (row,) = bot.outbox(channel="webhook")
    assert (row["status"], row["attempts"]) == (status, attempts)
    gone = bot.rows("select * from disabled_webhooks")
    assert bool(gone) == disabled


def test_a_410_disables_that_url_only_with_one_maintainer_warning(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver
):
    receiver.answer("/gone", *[Answer(410)] * 5)
    section = webhook_section(receiver.url("/gone"), receiver.url("/ok"))
    config = poll_samples(source_server, tmp_path, "[console]\nenabled = true\n" + section, ENV)
    make_due(database(config))  # the CLI reads the real clock
    run_cli("deliver", "--config", str(config), env=ENV)

    assert [r.status for r in receiver.received if r.path == "/gone"] == [410]
    ok = [r.document for r in receiver.accepted("/ok")]
    assert Counter(d["kind"] for d in ok)["added"] == SAMPLE_ADDITIONS
    warnings = outbox(database(config), channel="console", kind="warning")
    assert len(warnings) == 1 and "410 Gone" in warnings[0]["text"]
    status = run_cli("status", "--config", str(config), env=ENV)
    assert f"webhook: disabled (410 Gone): {receiver.url('/gone')}" in status.stdout


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (webhook_section("javascript:alert(1)"), "webhook.urls must hold http(s) URLs only"),
        (webhook_section(), "webhook.urls must name at least one URL"),
        (
            webhook_section("https://a.example/", extra='timeout = "0s"\n'),
            "webhook.timeout must be positive",
        ),
        ("[webhook]\nurl = 'https://a.example/'\n", "unknown key webhook.url (did you mean"),
    ],
)
def test_webhook_config_mistakes_are_one_line(tmp_path: Path, section: str, message: str):
    result = run_cli("check-config", "--config", str(write_config(tmp_path, section)))

    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_send_test_posts_a_signed_message(tmp_path: Path, receiver: WebhookReceiver):
    config = write_config(tmp_path, webhook_section(receiver.url("/hook")))

    result = run_cli("send-test", "webhook", "--config", str(config), env=ENV)

    assert result.returncode == 0, result.stderr
    (got,) = receiver.received
    assert got.signature_ok and got.document["schema"] == "ringwatch.message/1"
    assert got.document["text"].startswith("ringwatch test message")
    assert result.stdout.strip() == f"webhook:{receiver.url('/hook')}: sent (id {got.delivery})"


def test_a_switched_off_url_is_switched_on_by_enable_webhook_and_warns_again_if_gone_again(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver
):
    items = agencies(22)
    url = source_server.serve("/a.kml", to_kml(items[:20]), to_kml(items[:21]), to_kml(items))
    hook = receiver.url("/hook")
    bot = Bot.create(tmp_path, url, "[console]\nenabled = true\n" + webhook_section(hook))
    config = str(bot.config_path)
    bot.poll()  # the baseline
    receiver.answer("/hook", Answer(410))
    bot.poll()  # one addition: 410, switched off
    status = run_cli("status", "--config", config, env=ENV)
    assert f"webhook: disabled (410 Gone): {hook}" in status.stdout

    enabled = run_cli("enable-webhook", "--config", config, hook, env=ENV)
    assert enabled.returncode == 0, enabled.stderr
    assert enabled.stdout == f"webhook: {hook} is on again\n"
    status = run_cli("status", "--config", config, env=ENV).stdout
    assert (
        "webhook: 1 URLs active (0 with a filter)" in status and "disabled (410 Gone)" not in status
    )
    again = run_cli("enable-webhook", "--config", config, hook, env=ENV)
    assert (again.returncode, again.stdout) == (0, f"webhook: {hook} was not switched off; "
                                                   "nothing to do\n")  # fmt: skip

    receiver.answer("/hook", Answer(410))
    bot.poll()  # the next addition goes to the URL again, which is gone again
    assert [r.status for r in receiver.received] == [410, 410]
    warnings = [r["text"] for r in bot.outbox() if r["kind"] == "warning"]
    assert len(warnings) == 2 and all("ringwatch enable-webhook" in w for w in warnings)


def test_enable_webhook_names_only_a_configured_url(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver
):
    url = source_server.serve("/a.kml", to_kml(agencies(5)))
    bot = Bot.create(tmp_path, url, webhook_section(receiver.url("/hook")))
    config = str(bot.config_path)
    missing = run_cli("enable-webhook", "--config", config, receiver.url("/hook"), env=ENV)
    assert missing.returncode == 2 and "ringwatch poll" in missing.stderr  # no database yet
    bot.poll()
    other = run_cli("enable-webhook", "--config", config, "https://example.org/x", env=ENV)
    assert other.returncode == 2
    assert other.stderr.strip().endswith(
        f"https://example.org/x is not one of webhook.urls or webhook.targets in {config}"
    )


# Made with the code before the disabled_webhooks table (schema step 7): a URL a 410 switched
# off, stored as an inactive subscribers row, beside a Telegram subscriber and one that left.
SUBSCRIBERS_DUMP = Path(__file__).parent / "data" / "webhook-disabled-in-subscribers.sql"
GONE = "https://hooks.example.org/ringwatch?token=abc"
KEPT = "https://hooks.example.org/other"


def test_a_url_switched_off_before_the_upgrade_stays_off_in_its_own_table(tmp_path: Path):
    (tmp_path / "state").mkdir()
    database = tmp_path / "state" / "ringwatch.db"
    with sqlite3.connect(database) as old:
        old.executescript(SUBSCRIBERS_DUMP.read_text(encoding="utf-8"))
    config = str(write_config(tmp_path, webhook_section(GONE, KEPT)))

    status = run_cli("status", "--config", config, env=ENV)  # upgrades the database once

    assert status.returncode == 0, status.stderr
    assert "webhook: 1 URLs active" in status.stdout
    assert f"webhook: disabled (410 Gone): {GONE}" in status.stdout
    with sqlite3.connect(database) as db:
        assert db.execute("select * from disabled_webhooks").fetchall() == [
            (GONE, f"HTTP 410 from {GONE} (Gone): this URL is disabled", "2026-12-06T20:50:07Z")
        ]
        subscribers = "select channel, chat_id, states, active, reason from subscribers"
        assert db.execute(subscribers).fetchall() == [  # the people who asked, as they were
            ("telegram", "1001", '["MN", "WI"]', 1, None),
            ("telegram", "-100200", None, 0, "Forbidden: bot was kicked from the channel chat"),
        ]
    enabled = run_cli("enable-webhook", "--config", config, GONE, env=ENV)
    assert enabled.stdout == f"webhook: {GONE} is on again\n"
    assert "webhook: 2 URLs active" in run_cli("status", "--config", config, env=ENV).stdout


@pytest.mark.parametrize("site_url", ["https://ring.example/watch/", ""])
def test_a_body_links_its_map_card_only_when_the_site_has_a_url(
    tmp_path: Path, source_server: SourceServer, receiver: WebhookReceiver, site_url: str
):
    items = agencies(6)
    url = source_server.serve("/a.kml", to_kml(items[:5]), to_kml(items))
    site = f'[site]\nurl = "{site_url}"\n[guard]\nmax_added_share = 100\n'
    bot = Bot.create(tmp_path, url, webhook_section(receiver.url("/hook")) + site)
    bot.poll()
    bot.poll()

    (added,) = [r.document for r in receiver.accepted("/hook") if r.document.get("kind")]
    cards = bot.config.state_dir / "cards"
    if not site_url:
        assert "image_url" not in added and "image_alt" not in added
        assert not cards.exists()  # nothing to link: nothing drawn
        return
    (uuid,) = [row["uuid"] for row in bot.rows("select uuid from changes where kind = 'added'")]
    assert added["image_url"] == f"https://ring.example/watch/cards/{uuid}.png"
    assert added["image_alt"] == (cards / f"{uuid}.txt").read_text(encoding="utf-8")
    assert added["image_alt"].startswith("Map of ") and (cards / f"{uuid}.png").is_file()
