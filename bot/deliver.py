"""Drain the outbox: each due row is claimed, sent through its channel, then marked.

At-least-once with idempotency: a row is marked 'sending' (committed) before the
request and 'sent' after it, so a kill repeats at most the rows in flight, and a
restart (release_stale) sends everything else exactly once. One recipient's rows go
out in order; different recipients go out concurrently, paced by the channel.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.channels.base import Channel, PermanentFailure, RecipientGone, RetryLater
from bot.logs import redact
from bot.store import Store

log = logging.getLogger(__name__)

MAX_BACKOFF = 3600.0


def backoff_delay(attempts: int, base: float = 5.0) -> float:
    """Seconds before retry number `attempts`: exponential with jitter, capped at an hour."""
    return min(MAX_BACKOFF, base * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)


@dataclass
class DeliveryReport:
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    retrying: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def summary(self) -> str:
        channels = sorted(set(self.sent) | set(self.retrying) | set(self.failed))
        if not channels:
            return "nothing to deliver"
        return "; ".join(
            f"{ch}: {self.sent[ch]} sent, {self.retrying[ch]} to retry, {self.failed[ch]} failed"
            for ch in channels
        )


class _ChannelRound:
    def __init__(
        self,
        store: Store,
        channel: Channel,
        report: DeliveryReport,
        max_attempts: int,
        stop: asyncio.Event,
    ):
        self.stop = stop
        self.store = store
        self.channel = channel
        self.report = report
        self.max_attempts = max_attempts
        self.style = channel.style()
        self.paused = False

    async def run(self) -> None:
        now = time.time()
        rows = self.store.outbox.due(self.channel.name, now)
        if not rows:
            return
        # A recipient's rows go out in order: nothing after a row that waits for a retry.
        waiting = self.store.outbox.first_waiting(self.channel.name, now)
        by_recipient: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if row["id"] < waiting.get(row["recipient"], row["id"] + 1):
                by_recipient[row["recipient"]].append(row)
        if not by_recipient:
            return
        queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        for recipient_rows in by_recipient.values():
            queue.put_nowait(recipient_rows)
        await self.channel.open()
        try:
            workers = min(self.channel.concurrency, len(by_recipient))
            await asyncio.gather(*(self._worker(queue) for _ in range(workers)))
        finally:
            await self.channel.close()

    async def _worker(self, queue: asyncio.Queue[list[dict[str, Any]]]) -> None:
        while not queue.empty() and not self.paused and not self.stop.is_set():
            for row in queue.get_nowait():
                if self.paused or self.stop.is_set() or not await self._deliver(row):
                    break  # keep this recipient's order: the rest waits for the next round

    def _reply_to(self, row: dict[str, Any]) -> tuple[bool, str | None]:
        """(ready, parent id) for a threaded part; a part waits until its parent is sent."""
        if not self.style.threaded or row["part"] == 0:
            return True, None
        return self.store.outbox.thread_parent(
            row["channel"], row["recipient"], row["group_key"], row["part"]
        )

    async def _deliver(self, row: dict[str, Any]) -> bool:
        """Send one row; False when the recipient's remaining rows must wait."""
        outbox, name = self.store.outbox, self.channel.name
        ready, reply_to = self._reply_to(row)
        if not ready:
            outbox.mark_retry(row["id"], time.time() + 30, "waiting for the previous part")
            return False
        if not outbox.claim(row["id"]):
            return True
        try:
            external_id = await self.channel.send(row, reply_to)
        except RetryLater as exc:
            until = time.time() + exc.delay
            outbox.mark_retry(row["id"], until, str(exc), count_attempt=exc.counts)
            self.report.retrying[name] += 1
            if exc.whole_channel:
                self.paused = True
                outbox.defer_channel(name, until)
                log.warning("%s: pausing for %.0fs: %s", name, exc.delay, exc)
            return False
        except RecipientGone as exc:
            outbox.mark_failed(row["id"], str(exc))
            skipped = outbox.skip_recipient(name, row["recipient"], f"recipient gone: {exc}")
            self.channel.recipient_gone(self.store, row["recipient"], str(exc))
            self.report.failed[name] += 1
            log.info("%s: recipient %s gone (%s); %d queued skipped", name, row["recipient"],
                     exc, skipped)  # fmt: skip
            return False
        except PermanentFailure as exc:
            outbox.mark_failed(row["id"], str(exc))
            self.report.failed[name] += 1
            log.error("%s: giving up on message %d: %s", name, row["id"], exc)
            return True
        except Exception as exc:  # network trouble, timeouts, a platform hiccup
            attempts = row["attempts"] + 1
            # Library messages may quote a request URL, and the Bot API's carries the token.
            error = redact(f"{type(exc).__name__}: {exc}")
            if attempts >= self.max_attempts:
                outbox.mark_failed(row["id"], f"gave up after {attempts} attempts: {error}")
                self.report.failed[name] += 1
                log.error("%s: message %d failed %d times: %s", name, row["id"], attempts, error)
                return True
            outbox.mark_retry(row["id"], time.time() + backoff_delay(attempts), error)
            self.report.retrying[name] += 1
            log.warning("%s: message %d will be retried: %s", name, row["id"], error)
            return False
        outbox.mark_sent(row["id"], external_id)
        self.report.sent[name] += 1
        return True


async def deliver_pending(
    store: Store,
    channels: Sequence[Channel],
    *,
    max_attempts: int = 8,
    stop: asyncio.Event | None = None,
) -> DeliveryReport:
    """One round: every due row of every channel, channels side by side.

    Once `stop` is set no further row is started; what is in flight finishes.
    """
    report = DeliveryReport()
    stop = stop or asyncio.Event()
    rounds = [_ChannelRound(store, channel, report, max_attempts, stop) for channel in channels]
    await asyncio.gather(*(r.run() for r in rounds))
    return report
