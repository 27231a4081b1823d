"""Draining the outbox: nothing lost, nothing sent twice, across kills and restarts."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus

import pytest
import sqlite_utils

from bot.channels import REGISTRY, load_channel
from bot.channels.base import Channel, PermanentFailure, RecipientGone, RetryLater
from bot.config import AlertsConfig, Config, Duration
from bot.deliver import backoff_delay, deliver_pending
from bot.logs import SECRET_VARIABLES
from bot.messages import Delivery, Recipient, Style
from bot.models import OutboxMessage
from bot.store import Store
from bot.store.schema import SCHEMA_STEPS
from bot.store.times import epoch_time, iso_time
from tests.support.agencies import agencies
from tests.support.bot import Bot
from tests.support.cli import run_cli, start_cli
from tests.support.clock import Clock
from tests.support.outbox import outbox
from tests.support.synthetic import mutate, to_kml
from tests.support.wait import wait_for

PATH = "/map.kml"


# --- a process killed in the middle of delivering ------------------------------------------


def test_a_poll_killed_mid_delivery_is_completed_by_deliver_exactly_once(tmp_path, source_server):
    first = agencies(10)
    bot = Bot.create(
        tmp_path,
        source_server.serve(PATH, to_kml(first)),
        "[alerts]\ndigest_threshold = 5000\n[guard]\nmax_added_share = 200\n",
    )
    bot.poll()
    # ~1000 alerts are far more than a pipe buffer holds: printing blocks while we don't read,
    # so the process is stuck inside a send when it is killed.
    source_server.serve(PATH, to_kml(mutate(first, seed=3, add=1000)))
    process = start_cli("poll", "--config", str(bot.config_path), stdout=subprocess.PIPE)
    try:
        wait_for(lambda: bot.outbox(status="sending"))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    before_restart = process.stdout.read().decode()
    process.stdout.close()
    alerts = [row["text"] for row in bot.outbox() if row["kind"] == "alert"]
    assert len(alerts) == 1000
    assert 0 < sum(row["status"] == "sent" for row in bot.outbox()) < 1000

    restart = run_cli("deliver", "--config", str(bot.config_path))
    again = run_cli("deliver", "--config", str(bot.config_path))

    assert restart.returncode == 0 and again.returncode == 0
    printed = before_restart + restart.stdout
    counts = [printed.count(text + "\n") for text in alerts]
    assert min(counts) == 1  # nothing lost
    assert sum(counts) - len(alerts) <= 1  # at most the one in flight is repeated
    assert {row["status"] for row in bot.outbox()} == {"sent"}
    assert "New partnership" not in again.stdout


def test_a_row_left_sending_by_a_kill_is_sent_again_after_restart(tmp_path, source_server):
    first = agencies(20)
    bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml(first)))
    bot.poll()
    source_server.serve(PATH, to_kml(mutate(first, seed=3, add=2)))
    bot.poll(deliver=False)
    store = Store.open(bot.config.db_path)
    in_flight = outbox(store, status="pending")[0]["id"]
    assert store.outbox.claim(in_flight)  # claimed, then the process died
    store.close()

    restart = run_cli("deliver", "--config", str(bot.config_path))

    assert restart.returncode == 0
    assert restart.stdout.count("New partnership: ") == 2
    assert [row["status"] for row in bot.outbox()] == ["sent", "sent", "sent"]


# --- retries, permanent failures, order ----------------------------------------------------


class ScriptedChannel(Channel):
    """A channel whose sends follow a script: an exception to raise, or None to succeed."""

    name: ClassVar[str] = "scripted"
    secrets: ClassVar[tuple[str, ...]] = ("SCRIPTED_TOKEN",)

    def __init__(self, config: Any, script: dict[str, list[Exception | None]]) -> None:
        super().__init__(config)
        self.script = script
        self.sent: list[tuple[str, str]] = []
        self.gone: list[str] = []

    def style(self) -> Style:
        return Style(templates=("text",), extension="txt", max_length=1000)

    def recipients(self, store: Store) -> list[Recipient]:
        return [Recipient(r) for r in self.script]

    async def send(self, delivery: Delivery) -> str | None:
        outcomes = self.script[delivery.recipient]
        outcome = outcomes.pop(0) if outcomes else None
        if outcome is not None:
            raise outcome
        self.sent.append((delivery.recipient, delivery.text))
        return f"m{len(self.sent)}"

    def recipient_gone(self, store: Store, recipient: str, reason: str) -> None:
        self.gone.append(recipient)


@pytest.fixture
def store(tmp_path):
    opened = Store.open(tmp_path / "ringwatch.db")
    yield opened
    opened.close()


def queue(store: Store, recipient: str, *texts: str) -> None:
    store.outbox.queue(
        None,
        [OutboxMessage("scripted", recipient, "alert", f"g:{text}", text) for text in texts],
    )


def deliver(
    store: Store,
    channel: Channel,
    alerts: AlertsConfig | None = None,
    clock: Callable[[], float] = time.time,
):
    return asyncio.run(deliver_pending(store, [channel], alerts=alerts, clock=clock))


def statuses(store: Store) -> list[tuple[str, str, int]]:
    return [(row["text"], row["status"], row["attempts"]) for row in outbox(store)]


def test_each_message_is_sent_once_with_its_platform_id(store):
    channel = ScriptedChannel(None, {"a": []})
    queue(store, "a", "one", "two")

    report = deliver(store, channel)
    deliver(store, channel)

    assert channel.sent == [("a", "one"), ("a", "two")]
    assert report.sent["scripted"] == 2
    ids = [row["external_id"] for row in outbox(store)]
    assert ids == ["m1", "m2"]


def test_a_secret_declared_by_any_channel_class_never_reaches_the_outbox(store, monkeypatch):
    """Declaring `secrets` is all a new channel does: every error writer redacts them,
    in any case and URL encoding."""
    token = "123456:SECRET-token/value"
    monkeypatch.setenv("SCRIPTED_TOKEN", token)
    url = f"https://api.example.test/bot{quote(token, safe='')}/send?t={quote_plus(token)}"
    errors = [
        ConnectionError(f"cannot reach {url}"),
        RetryLater(0, f"proxy said: {token.lower()}"),
        PermanentFailure(f"Unauthorized: {token.upper()}"),
    ]
    channel = ScriptedChannel(None, {"a": errors})
    queue(store, "a", "one")
    message = OutboxMessage("scripted", "a", "warning", "w", f"echoed {token}")
    store.outbox.queue(None, [message])

    stored: list[str] = []
    clock = Clock()
    for _ in range(3):
        deliver(store, channel, clock=clock.until_due(store))
        stored += [str(v) for row in outbox(store) for v in row.values()]

    text = "\n".join(stored)
    assert "ConnectionError: cannot reach https://api.example.test/bot<SCRIPTED_TOKEN>" in text
    assert "proxy said: <SCRIPTED_TOKEN>" in text and "Unauthorized: <SCRIPTED_TOKEN>" in text
    assert "secret" not in text.lower()
    assert [text for _, text in channel.sent] == ["echoed <SCRIPTED_TOKEN>"]


def test_queueing_the_same_message_twice_keeps_one_row(store):
    queue(store, "a", "one")
    queue(store, "a", "one")

    assert len(statuses(store)) == 1


def test_a_transient_error_is_retried_later_and_keeps_the_recipients_order(store):
    channel = ScriptedChannel(None, {"a": [ConnectionError("reset")], "b": []})
    queue(store, "a", "a1", "a2")
    queue(store, "b", "b1")

    clock = Clock()
    report = deliver(store, channel, clock=clock)

    assert channel.sent == [("b", "b1")]  # other recipients are not held up
    assert report.retrying["scripted"] == 1
    (row,) = outbox(store, text="a1")
    next_attempt, error = row["next_attempt_at"], row["last_error"]
    assert epoch_time(next_attempt) > time.time() and "ConnectionError: reset" in error
    deliver(store, channel, clock=clock)
    assert channel.sent == [("b", "b1")]  # not due yet
    deliver(store, channel, clock=clock.until_due(store))
    assert channel.sent == [("b", "b1"), ("a", "a1"), ("a", "a2")]


def test_transient_failures_never_exhaust_a_message_before_give_up_after(store):
    clock = Clock()
    channel = ScriptedChannel(None, {"a": [TimeoutError("slow")] * 100})
    queue(store, "a", "one")

    for _ in range(40):  # 40 attempts spread over about 6 hours: still pending
        deliver(store, channel, clock=clock)
        clock.until_due(store)

    assert statuses(store) == [("one", "pending", 40)]
    assert channel.sent == []


def test_a_permanent_failure_is_recorded_and_the_rest_goes_on(store):
    channel = ScriptedChannel(None, {"a": [PermanentFailure("message too long")]})
    queue(store, "a", "one", "two")

    deliver(store, channel)

    assert statuses(store) == [("one", "failed", 1), ("two", "sent", 1)]
    error = outbox(store, text="one")[0]["last_error"]
    assert error == "message too long"


def test_a_recipient_that_is_gone_gets_nothing_more(store):
    channel = ScriptedChannel(None, {"a": [RecipientGone("bot was blocked")], "b": []})
    queue(store, "a", "a1", "a2")
    queue(store, "b", "b1")

    deliver(store, channel)

    assert statuses(store) == [("a1", "failed", 1), ("a2", "skipped", 0), ("b1", "sent", 1)]
    assert channel.gone == ["a"]


def test_retry_later_for_the_whole_channel_pauses_every_recipient(store):
    channel = ScriptedChannel(None, {"a": [RetryLater(60, "flood wait", whole_channel=True)]})
    queue(store, "a", "a1")
    queue(store, "b", "b1")
    channel.script["b"] = []

    deliver(store, channel)

    now = iso_time(time.time())
    due = [row for row in outbox(store) if row["next_attempt_at"] > now]
    assert len(due) == 2
    assert channel.sent == []


def test_a_retry_that_does_not_count_keeps_the_attempts(store):
    channel = ScriptedChannel(None, {"a": [RetryLater(1, "budget", counts=False)]})
    queue(store, "a", "one")

    deliver(store, channel)

    assert statuses(store) == [("one", "pending", 0)]


def test_backoff_grows_and_is_capped_at_about_15_minutes():
    assert 4 <= backoff_delay(1) <= 6
    assert 32 <= backoff_delay(4) <= 48
    assert 15 * 60 * 0.8 <= backoff_delay(40) <= 15 * 60 * 1.2


def test_an_outbox_written_by_the_previous_release_upgrades_and_delivers(tmp_path):
    path = tmp_path / "ringwatch.db"
    old = sqlite_utils.Database(path)
    for migration in SCHEMA_STEPS[:2]:  # schema version 2: the release before give_up_after
        migration(old)
    old["meta"].insert({"key": "schema_version", "value": "2"}, pk="key")
    message = OutboxMessage("scripted", "a", "alert", "g:one", "one")
    old["outbox"].insert(
        {"created_at": "2026-11-01T00:00:00Z", "channel": "scripted", "recipient": "a",
         "kind": "alert", "group_key": "g:one", "part": 0, "dedupe_key": message.dedupe_key,
         "text": "one", "status": "pending", "attempts": 3, "next_attempt_at": 0.0,
         "last_error": "ConnectionError: reset"}
    )  # fmt: skip
    old.close()

    store = Store.open(path)
    channel = ScriptedChannel(None, {"a": [ConnectionError("still down")]})
    clock = Clock()
    deliver(store, channel, clock=clock)

    assert statuses(store) == [("one", "pending", 4)]  # kept, and not given up
    assert outbox(store)[0]["failing_since"] is not None
    deliver(store, channel, clock=clock.until_due(store))
    assert channel.sent == [("a", "one")]
    store.close()


EPOCH_TIMES_DUMP = Path(__file__).parent / "data" / "outbox-epoch-times.sql"


def test_an_outbox_with_epoch_times_upgrades_and_sends_exactly_the_due_rows_once(tmp_path):
    path = tmp_path / "ringwatch.db"
    with sqlite3.connect(path) as old:
        old.executescript(EPOCH_TIMES_DUMP.read_text(encoding="utf-8"))
    store = Store.open(path)
    times = [(r["text"], r["next_attempt_at"], r["failing_since"]) for r in outbox(store)]
    assert times == [  # readable, to the second
        ("due", "1970-01-01T00:00:00Z", None),
        ("retry due", "2026-11-25T23:40:01Z", "2026-11-25T20:53:20Z"),  # a retry rounds up
        ("retry later", "2100-01-01T00:00:01Z", "2026-11-25T20:53:20Z"),
        ("failing too long", "2026-11-25T23:40:00Z", "2026-11-26T00:00:00Z"),
        ("failing briefly", "2026-11-25T23:40:00Z", "2026-11-27T00:00:00Z"),
        ("sent", "1970-01-01T00:00:00Z", None),
        ("given up", "1970-01-01T00:00:00Z", "2026-11-18T11:06:40Z"),
    ]
    still_down = [ConnectionError("still down")]
    channel = ScriptedChannel(None, {"a": [], "b": [], "c": [], "d": list(still_down),
                                     "e": list(still_down), "f": [], "g": []})  # fmt: skip
    noon = Clock(epoch_time("2026-11-29T12:00:00Z"))  # d has failed for 3.5 days, e for 2.5

    deliver(store, channel, clock=noon)
    deliver(store, channel, clock=noon)

    assert channel.sent == [("a", "due"), ("b", "retry due")]  # once each; c is not due
    assert statuses(store) == [
        ("due", "sent", 1),
        ("retry due", "sent", 3),
        ("retry later", "pending", 1),
        ("failing too long", "failed", 10),  # alerts.give_up_after (3 days) ran from its streak
        ("failing briefly", "pending", 2),
        ("sent", "sent", 1),
        ("given up", "failed", 4),
    ]
    assert outbox(store, text="failing briefly")[0]["failing_since"] == "2026-11-27T00:00:00Z"
    store.close()


def test_retry_failed_requeues_only_the_chosen_failed_rows_in_place(store):
    queue(store, "a", "old", "new", "sent")
    store.outbox.queue(None, [OutboxMessage("other", "b", "alert", "g:x", "other channel")])
    store.db.execute(
        "update outbox set status = 'failed', attempts = 5, failing_since = '2026-10-02T00:00:00Z'"
    )
    store.db.execute("update outbox set created_at = '2026-10-01T00:00:00Z' where text = 'old'")
    store.db.execute("update outbox set status = 'sent' where text = 'sent'")
    store.db.conn.commit()

    assert store.outbox.requeue_failed("scripted", "2026-11-01") == 1
    assert store.outbox.requeue_failed("scripted", "2026-11-01") == 0

    rows = outbox(store)
    assert [(r["text"], r["status"], r["attempts"], r["failing_since"]) for r in rows] == [
        ("old", "failed", 5, "2026-10-02T00:00:00Z"),
        ("new", "pending", 0, None),
        ("sent", "sent", 5, "2026-10-02T00:00:00Z"),
        ("other channel", "failed", 5, "2026-10-02T00:00:00Z"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--channel", "telegram"], "--channel and --since only apply to --retry-failed"),
        (["--since", "2026-11-01"], "--channel and --since only apply to --retry-failed"),
        (["--retry-failed", "--channel", "telegarm"], "--channel: no channel 'telegarm'"),
        (["--retry-failed", "--since", "yesterday"], "Invalid value for '--since'"),
    ],
)
def test_retry_failed_options_are_checked(make_config, args, message):
    result = run_cli("deliver", "--config", str(make_config("")), *args)

    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_success_ends_the_failure_streak_and_its_give_up_clock(store):
    clock = Clock()
    alerts = AlertsConfig(give_up_after=Duration(3600))
    down = TimeoutError("down")
    channel = ScriptedChannel(None, {"a": [down, None, down, down]})
    queue(store, "a", "one", "two")

    deliver(store, channel, alerts, clock)  # "one" fails: the streak of "one" and "two" begins
    clock.now += 2 * 3600  # long past the retry's wait (a backoff is at most ~18 minutes)
    deliver(store, channel, alerts, clock)  # "one" goes; "two" fails, a new streak
    clock.now += 1800
    deliver(store, channel, alerts, clock)  # 2.5 hours after the first failure: not given up

    assert statuses(store) == [("one", "sent", 2), ("two", "pending", 2)]
    assert channel.sent == [("a", "one")]


def test_every_registered_channel_declares_the_credentials_it_needs_as_secrets(
    tmp_path, monkeypatch
):
    """What check-config asks for (an environment variable) is what redaction hides."""
    config = Config(path=tmp_path / "config.toml")
    for name in REGISTRY:
        channel = load_channel(name, config)
        for variable in channel.secrets:
            monkeypatch.delenv(variable, raising=False)
        asked_for = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", " ".join(channel.problems())))
        assert asked_for <= set(channel.secrets), name
        assert set(channel.secrets) <= SECRET_VARIABLES
