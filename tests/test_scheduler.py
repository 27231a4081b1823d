"""`ringwatch run`: polls on its interval, one at a time, delivers, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import time
from typing import Any, ClassVar

from bot.channels.base import Channel, Delivery, Recipient, Style
from bot.scheduler import Runner
from bot.store import Store
from bot.synthetic import mutate
from tests.conftest import start_cli
from tests.helpers import Bot, agencies, kml
from tests.source_server import Reply

PATH = "/map.kml"
# Each answer takes longer than the interval: overlapping polls would show as two requests
# in flight at once.
SLOW = 1.3
RUN_CONFIG = (
    '[bot]\nstate_dir = "{state}"\ninterval = "1s"\njitter = "0.01s"\ndeliver_every = "0.2s"\n'
)


def wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _holds(predicate):
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def _holds(predicate) -> bool:
    try:
        return bool(predicate())
    except sqlite3.OperationalError:  # the database is still being created
        return False


def test_run_polls_repeatedly_delivers_and_stops_cleanly(tmp_path, source_server):
    first = agencies(10)
    url = source_server.serve(PATH, Reply(kml(first), delay=SLOW))
    bot = Bot.create(tmp_path, url, RUN_CONFIG.format(state=tmp_path / "state"), timeout="10s")
    process = start_cli(
        "run", "--config", str(bot.config_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: len(bot.polls()) >= 1)
        source_server.serve(PATH, Reply(kml(mutate(first, seed=4, add=1)), delay=SLOW))
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
    bot = Bot.create(tmp_path, source_server.serve(PATH, kml(first)))
    channel = HeldChannel(bot.config)
    runner = Runner(bot.config, [channel])

    async def two_polls_then_release() -> int:
        # The baseline's notice waits in the held channel; neither poll may wait for it.
        await asyncio.wait_for(runner.poll_job(), timeout=10)
        source_server.serve(PATH, kml(mutate(first, seed=2, add=1)))
        await asyncio.wait_for(runner.poll_job(), timeout=10)
        polls = len(bot.polls())
        channel.release.set()
        await asyncio.gather(*runner.background)
        return polls

    assert asyncio.run(two_polls_then_release()) == 2
    runner.store.close()
    assert channel.sent[0].startswith("ringwatch is now tracking 10")
