"""`ringwatch run`: polls on its interval, one at a time, delivers, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from typing import Any, ClassVar

import pytest

from bot.channels.base import Channel
from bot.channels.x import CREDENTIAL_ENV_VARS
from bot.messages import Delivery, Recipient, Style
from bot.scheduler import Runner
from bot.store import Store
from tests.support.agencies import agencies
from tests.support.bot import Bot
from tests.support.cli import run_cli, start_cli
from tests.support.mastodon_stub import TOKEN, MastodonStub, error
from tests.support.source_server import Reply
from tests.support.synthetic import mutate, to_kml
from tests.support.telegram_stub import TelegramStub
from tests.support.wait import wait_for
from tests.support.webhook_receiver import Answer, WebhookReceiver
from tests.support.x_stub import XStub

PATH = "/map.kml"
# Each answer takes longer than the interval: overlapping polls would show as two requests
# in flight at once.
SLOW = 1.3
RUN_CONFIG = (
    '[bot]\nstate_dir = "{state}"\ninterval = "1s"\njitter = "0.01s"\ndeliver_every = "0.2s"\n'
)


def test_run_polls_repeatedly_delivers_and_stops_cleanly(tmp_path, source_server):
    first = agencies(10)
    url = source_server.serve(PATH, Reply(to_kml(first), delay=SLOW))
    bot = Bot.create(tmp_path, url, RUN_CONFIG.format(state=tmp_path / "state"), timeout="10s")
    process = start_cli(
        "run", "--config", str(bot.config_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: len(bot.polls()) >= 1)
        source_server.serve(PATH, Reply(to_kml(mutate(first, seed=4, add=1)), delay=SLOW))
        wait_for(lambda: any(row["kind"] == "alert" for row in bot.outbox() if row["sent_at"]))
        wait_for(lambda: source_server.in_flight == 1)  # stop in the middle of a poll
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)

    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    assert out.count("ringwatch is now tracking 10") == 1
    assert out.count("New partnership: ") == 1
    polls = bot.polls()
    assert [p["outcome"] for p in polls[:2]] == ["baseline", "ok"]
    assert len(polls) >= 3
    assert len(polls) == len(source_server.requests)  # the poll in progress was finished
    assert source_server.max_in_flight == 1
    assert {row["status"] for row in bot.outbox()} == {"sent"}


def test_run_publishes_the_feed_after_each_poll_that_logs_changes(tmp_path, source_server):
    first = agencies(10)
    url = source_server.serve(PATH, to_kml(first))
    feed = tmp_path / "feed.xml"
    config = RUN_CONFIG.format(state=tmp_path / "state") + f'[feed]\npath = "{feed}"\n'
    bot = Bot.create(tmp_path, url, config, timeout="10s")
    process = start_cli("run", "--config", str(bot.config_path), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(feed.exists)  # the baseline: an empty feed
        source_server.serve(PATH, to_kml(mutate(first, seed=4, add=1)))
        wait_for(lambda: "New partnership: " in feed.read_text())
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)

    assert process.returncode == 0, err
    assert "Traceback" not in err, err


class HeldChannel(Channel):
    """A channel whose every send waits until the test lets it go: a long broadcast."""

    name: ClassVar[str] = "held"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.release = asyncio.Event()
        self.sent: list[str] = []

    def style(self) -> Style:
        return Style(templates=("text",), extension="txt", max_length=1000)

    def recipients(self, store: Store) -> list[Recipient]:
        return [Recipient("subscriber", maintainer=True)]

    async def send(self, delivery: Delivery) -> str | None:
        await self.release.wait()
        self.sent.append(delivery.text)
        return None


def test_a_long_broadcast_does_not_hold_up_the_next_poll(tmp_path, source_server):
    first = agencies(10)
    bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml(first)))
    channel = HeldChannel(bot.config)
    runner = Runner(bot.config, [channel])

    async def two_polls_then_release() -> int:
        # The baseline's notice waits in the held channel; neither poll may wait for it.
        await asyncio.wait_for(runner.poll_job(), timeout=10)
        source_server.serve(PATH, to_kml(mutate(first, seed=2, add=1)))
        await asyncio.wait_for(runner.poll_job(), timeout=10)
        polls = len(bot.polls())
        channel.release.set()
        await asyncio.gather(*runner.background)
        return polls

    assert asyncio.run(two_polls_then_release()) == 2
    runner.store.close()
    assert channel.sent[0].startswith("ringwatch is now tracking 10")


# --- SIGTERM ends `run` whatever is in flight -------------------------------------------------

# SIGTERM must end `run` within 10 s (Docker's grace period); a wait this long only fails
# when something hangs.
STOP_WAIT = 20
# The graces after SIGTERM, shortened: what they let finish and what they abandon is the
# same, without waiting out the defaults (2 s, 5 s).
SHORT_GRACE = 'shutdown_grace = "0.5s"\nsend_grace = "0.2s"\n'


def stop_run(process: subprocess.Popen) -> str:
    """SIGTERM, then what `run` logged."""
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, err = process.communicate(timeout=STOP_WAIT)
    print(f"run ended {time.monotonic() - started:.1f}s after SIGTERM")  # for the report
    return err


# Fetches that never end on their own: headers at once, then a byte every 0.2 s (the fetch
# notices the stop between reads), or no answer at all (its thread is stuck in a read); and
# one that would end within the default grace but not within the configured one.
STUCK_FETCHES = {"dripping": {"drip": 0.2}, "silent": {"delay": 3600}, "slow": {"delay": 4}}


@pytest.mark.parametrize("how", list(STUCK_FETCHES))
def test_sigterm_abandons_a_stuck_fetch_and_records_nothing(tmp_path, source_server, how):
    url = source_server.serve(PATH, Reply(to_kml(agencies(10)), **STUCK_FETCHES[how]))
    config = RUN_CONFIG.format(state=tmp_path / "state") + SHORT_GRACE
    bot = Bot.create(tmp_path, url, config, timeout="10m", deadline="1h")
    process = start_cli(
        "run", "--config", str(bot.config_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: source_server.in_flight == 1)
    finally:
        err = stop_run(process)

    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    assert bot.polls() == []  # an abandoned fetch is no failed poll and warns nobody
    assert bot.outbox() == []


# How the Bot API keeps a send on the wire: holding the request (the message is not
# accepted yet) or dripping its answer a byte a second (the message was accepted).
STUCK_SENDS = ("held", "dripping")


@pytest.mark.parametrize("how", STUCK_SENDS)
def test_sigterm_leaves_a_send_in_flight_to_be_sent_once_later(tmp_path, source_server, how):
    stub = TelegramStub().start()
    try:
        if how == "held":
            stub.send_delay = 600
        else:
            stub.drip_to.add("42")
        telegram = f'[telegram]\nenabled = true\nadmins = [42]\napi_base_url = "{stub.base_url}"\n'
        bot = Bot.create(
            tmp_path,
            source_server.serve(PATH, to_kml(agencies(10))),
            RUN_CONFIG.format(state=tmp_path / "state") + SHORT_GRACE + telegram,
        )
        env = {"TELEGRAM_BOT_TOKEN": stub.token}
        process = start_cli(
            "run", "--config", str(bot.config_path), env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for(lambda: [row["status"] for row in bot.outbox()] == ["sending"])
        finally:
            err = stop_run(process)
        assert process.returncode == 0, err
        assert "Traceback" not in err, err
        accepted = stub.texts(42)  # what the platform had before the cut
        assert len(accepted) == (0 if how == "held" else 1)

        stub.send_delay = 0
        stub.drip_to.clear()
        later = run_cli("deliver", "--config", str(bot.config_path), env=env)

        assert later.returncode == 0, later.stderr
        (notice,) = stub.texts(42)[len(accepted) :]  # the restart sends it exactly once
        assert notice.startswith("ringwatch is now tracking <b>10</b>")
        assert {row["status"] for row in bot.outbox()} == {"sent"}
    finally:
        stub.stop()


def test_sigterm_leaves_a_blocking_x_post_behind_and_it_is_not_posted_twice(
    tmp_path, source_server
):
    # tweepy blocks in a worker thread; a thread asyncio would wait for at exit (its
    # read timeout is 30 s) must not keep the process alive.
    stub = XStub().start()
    try:
        stub.hold_post = 1  # X creates the post, but its answer never arrives
        first = agencies(10)
        url = source_server.serve(PATH, to_kml(first))
        x = f'[x]\nenabled = true\napi_base_url = "{stub.base_url}"\n'
        config = RUN_CONFIG.format(state=tmp_path / "state") + SHORT_GRACE + x
        bot = Bot.create(tmp_path, url, config)
        env = {name: f"test-{name.lower()}" for name in CREDENTIAL_ENV_VARS}
        process = start_cli(
            "run", "--config", str(bot.config_path), env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for(lambda: len(bot.polls()) >= 1)
            source_server.serve(PATH, to_kml(mutate(first, seed=4, add=1)))
            assert stub.held.wait(timeout=60)
        finally:
            err = stop_run(process)
        assert process.returncode == 0, err
        assert "Traceback" not in err, err

        stub.hold_post = None
        stub.release.set()
        later = run_cli("deliver", "--config", str(bot.config_path), env=env)

        assert later.returncode == 0, later.stderr
        (post,) = stub.posts
        assert post.text.startswith("New partnership: ")
        assert [row["status"] for row in bot.outbox()] == ["sent"]
    finally:
        stub.stop()


# --- channels deliver independently --------------------------------------------------------

SUBSCRIBERS = 150
# Where the alerts must have reached the other channels, counted from the poll that queued
# them, while Telegram's broadcast (150 sends at 0.2 s, one at a time: 30 s) goes on.
INDEPENDENT_WITHIN = 10


def test_a_slow_telegram_broadcast_holds_back_no_other_channel(tmp_path, source_server):
    telegram, mastodon = TelegramStub().start(), MastodonStub().start()
    webhook = WebhookReceiver().start()
    try:
        telegram.send_delay = 0.2
        first = agencies(10)
        url = source_server.serve(PATH, to_kml(first))
        channels = (
            f"[alerts]\nmax_in_flight = 1\n[telegram]\nenabled = true\nadmins = [42]\n"
            f'api_base_url = "{telegram.base_url}"\n'
            f'[mastodon]\nenabled = true\napi_base_url = "{mastodon.base_url}"\n'
            f'[webhook]\nenabled = true\nurls = ["{webhook.url("/hook")}"]\n'
        )
        # The default: a retry due within it is waited for by its channel's own drain.
        run = RUN_CONFIG.replace('deliver_every = "0.2s"', 'deliver_every = "10s"')
        bot = Bot.create(tmp_path, url, run.format(state=tmp_path / "state") + channels)
        env = {"TELEGRAM_BOT_TOKEN": telegram.token, "MASTODON_ACCESS_TOKEN": TOKEN}
        log = (tmp_path / "run.log").open("w")  # a pipe nobody reads while waiting fills up
        process = start_cli("run", "--config", str(bot.config_path), env=env, stderr=log)
        try:
            wait_for(lambda: len(bot.polls()) >= 1)  # the baseline
            store = Store.open(bot.config.db_path)
            with store.db.atomic():
                for chat in range(1000, 1000 + SUBSCRIBERS):
                    store.subscribers.subscribe("telegram", str(chat), states=None,
                                                chat_type="private")  # fmt: skip
            store.close()
            arrived_everywhere, listed = [], first
            for alerts in (1, 2):  # the second arrives in the middle of the first's broadcast
                listed = mutate(listed, seed=alerts, add=1)
                if alerts == 2:  # and each needs a retry (backoff: about 5 s)
                    mastodon.answers.append(error(503))
                    webhook.answer("/hook", Answer(503))
                source_server.serve(PATH, to_kml(listed))
                wait_for(lambda n=alerts: len(bot.kinds()) == n)  # polled and queued
                wait_for(
                    lambda n=alerts: len(mastodon.statuses) == len(webhook.accepted("/hook")) == n,
                    timeout=INDEPENDENT_WITHIN,
                )
                arrived_everywhere.append(len(telegram.sent))
        finally:
            stop_run(process)
            log.close()
    finally:
        for stub in (telegram, mastodon, webhook):
            stub.stop()

    err = (tmp_path / "run.log").read_text()
    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    # The second alert, retried once, reached Mastodon and the webhook in the middle of
    # the broadcast.
    assert mastodon.posts_tried == len(webhook.received) == 3
    assert arrived_everywhere[-1] < SUBSCRIBERS, arrived_everywhere
    assert len(mastodon.statuses) == len({s.idempotency_key for s in mastodon.statuses})
