"""Draining the outbox: nothing lost, nothing sent twice, across kills and restarts."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from typing import Any, ClassVar

import pytest

from bot.channels.base import Channel, PermanentFailure, Recipient, RecipientGone, RetryLater, Style
from bot.deliver import backoff_delay, deliver_pending
from bot.store import OutboxMessage, Store
from bot.synthetic import mutate
from tests.conftest import run_cli, start_cli
from tests.helpers import Bot, agencies, kml

PATH = "/map.kml"


# --- a process killed in the middle of delivering ------------------------------------------


def wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def test_a_poll_killed_mid_delivery_is_completed_by_deliver_exactly_once(tmp_path, source_server):
    first = agencies(10)
    bot = Bot.create(
        tmp_path,
        source_server.serve(PATH, kml(first)),
        "[alerts]\ndigest_threshold = 5000\n[guard]\nmax_added_share = 200\n",
    )
    bot.poll()
    # ~1000 alerts are far more than a pipe buffer holds: printing blocks while we don't read,
    # so the process is stuck inside a send when it is killed.
    source_server.serve(PATH, kml(mutate(first, seed=3, add=1000)))
    process = start_cli("poll", "--config", str(bot.config_path), stdout=subprocess.PIPE)
    try:
        wait_for(lambda: bot.rows("select id from outbox where status = 'sending'"))
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
    bot = Bot.create(tmp_path, source_server.serve(PATH, kml(first)))
    bot.poll()
    source_server.serve(PATH, kml(mutate(first, seed=3, add=2)))
    bot.poll(deliver=False)
    store = Store.open(bot.config.db_path)
    in_flight = store.db.execute("select min(id) from outbox where status = 'pending'").fetchone()
    assert store.outbox.claim(in_flight[0])  # claimed, then the process died
    store.close()

    restart = run_cli("deliver", "--config", str(bot.config_path))

    assert restart.returncode == 0
    assert restart.stdout.count("New partnership: ") == 2
    assert [row["status"] for row in bot.outbox()] == ["sent", "sent", "sent"]


# --- retries, permanent failures, order ----------------------------------------------------


class ScriptedChannel(Channel):
    """A channel whose sends follow a script: an exception to raise, or None to succeed."""

    name: ClassVar[str] = "scripted"

    def __init__(self, config: Any, script: dict[str, list[Exception | None]]) -> None:
        super().__init__(config)
        self.script = script
        self.sent: list[tuple[str, str]] = []
        self.gone: list[str] = []

    def style(self) -> Style:
        return Style(templates=("text",), extension="txt", max_length=1000)

    def recipients(self, store: Store) -> list[Recipient]:
        return [Recipient(r) for r in self.script]

    async def send(self, row: dict[str, Any], reply_to: str | None) -> str | None:
        outcomes = self.script[row["recipient"]]
        outcome = outcomes.pop(0) if outcomes else None
        if outcome is not None:
            raise outcome
        self.sent.append((row["recipient"], row["text"]))
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


def deliver(store: Store, channel: Channel, max_attempts: int = 8):
    return asyncio.run(deliver_pending(store, [channel], max_attempts=max_attempts))


def statuses(store: Store) -> list[tuple[str, str, int]]:
    sql = "select text, status, attempts from outbox order by id"
    return [tuple(row) for row in store.db.execute(sql)]


def make_due(store: Store) -> None:
    """Time passes: every retry is due now."""
    store.db.execute("update outbox set next_attempt_at = 0")
    store.db.conn.commit()


def test_each_message_is_sent_once_with_its_platform_id(store):
    channel = ScriptedChannel(None, {"a": []})
    queue(store, "a", "one", "two")

    report = deliver(store, channel)
    deliver(store, channel)

    assert channel.sent == [("a", "one"), ("a", "two")]
    assert report.sent["scripted"] == 2
    ids = [row[0] for row in store.db.execute("select external_id from outbox order by id")]
    assert ids == ["m1", "m2"]


def test_a_secret_in_a_library_error_never_reaches_the_outbox(store, monkeypatch, caplog):
    token = "123456:SECRET-token-value"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
    url = f"https://api.telegram.org/bot{token}/sendMessage"
    channel = ScriptedChannel(None, {"a": [ConnectionError(f"cannot reach {url}")]})
    queue(store, "a", "one")

    deliver(store, channel)

    (error,) = [row[0] for row in store.db.execute("select last_error from outbox")]
    assert "cannot reach" in error and "<TELEGRAM_BOT_TOKEN>" in error
    assert token not in error and token not in caplog.text


def test_queueing_the_same_message_twice_keeps_one_row(store):
    queue(store, "a", "one")
    queue(store, "a", "one")

    assert len(statuses(store)) == 1


def test_a_transient_error_is_retried_later_and_keeps_the_recipients_order(store):
    channel = ScriptedChannel(None, {"a": [ConnectionError("reset")], "b": []})
    queue(store, "a", "a1", "a2")
    queue(store, "b", "b1")

    report = deliver(store, channel)

    assert channel.sent == [("b", "b1")]  # other recipients are not held up
    assert report.retrying["scripted"] == 1
    row = store.db.execute("select next_attempt_at, last_error from outbox where text = 'a1'")
    next_attempt, error = row.fetchone()
    assert next_attempt > time.time() and "ConnectionError: reset" in error
    deliver(store, channel)
    assert channel.sent == [("b", "b1")]  # not due yet
    make_due(store)
    deliver(store, channel)
    assert channel.sent == [("b", "b1"), ("a", "a1"), ("a", "a2")]


def test_a_message_that_keeps_failing_is_given_up_after_max_attempts(store):
    channel = ScriptedChannel(None, {"a": [TimeoutError("slow")] * 10})
    queue(store, "a", "one")

    for _ in range(3):
        deliver(store, channel, max_attempts=3)
        make_due(store)
    deliver(store, channel, max_attempts=3)

    assert statuses(store) == [("one", "failed", 3)]
    assert channel.sent == []


def test_a_permanent_failure_is_recorded_and_the_rest_goes_on(store):
    channel = ScriptedChannel(None, {"a": [PermanentFailure("message too long")]})
    queue(store, "a", "one", "two")

    deliver(store, channel)

    assert statuses(store) == [("one", "failed", 1), ("two", "sent", 1)]
    error = store.db.execute("select last_error from outbox where text = 'one'").fetchone()[0]
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

    due = store.db.execute("select count(*) from outbox where next_attempt_at > ?", [time.time()])
    assert due.fetchone()[0] == 2
    assert channel.sent == []


def test_a_retry_that_does_not_count_keeps_the_attempts(store):
    channel = ScriptedChannel(None, {"a": [RetryLater(1, "budget", counts=False)]})
    queue(store, "a", "one")

    deliver(store, channel)

    assert statuses(store) == [("one", "pending", 0)]


def test_backoff_grows_and_is_capped():
    assert 4 <= backoff_delay(1) <= 6
    assert 32 <= backoff_delay(4) <= 48
    assert backoff_delay(40) <= 3600 * 1.2
