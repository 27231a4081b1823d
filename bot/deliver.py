"""Drain the outbox: each due row is admitted by its channel's pacing, claimed, sent
under a deadline, then marked.

At-least-once with idempotency: a row is marked SENDING (committed) right before its
request and 'sent' after it, and at most `alerts.max_in_flight` requests per channel
are on the wire, so a kill repeats at most that many messages, and a restart
(release_stale) sends everything else exactly once. One recipient's rows go out in
order; different recipients go out concurrently, paced by the channel.

Failures are sorted by what they mean (`classify`): a permanent refusal fails the
message at once; a transient one (5xx, 429, a timeout, no connection) is retried with
capped exponential backoff until `alerts.give_up_after` has passed since the streak
began, and only then fails the message, with one warning to the maintainers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from bot.channels import audiences, enabled_channels
from bot.channels.base import (
    Channel,
    MaintainerWarning,
    PermanentFailure,
    RecipientGone,
    RetryLater,
)
from bot.config import AlertsConfig
from bot.logs import redact
from bot.messages import Delivery
from bot.models import CardFile, MessageKind
from bot.notify import plan_maintainer_message
from bot.render import make_environment
from bot.store import Store

log = logging.getLogger(__name__)

MAX_BACKOFF = 15 * 60.0  # a platform back from an outage hears from us within 15 minutes
THREAD_PART_WAIT = 30.0  # a thread's part waits this long for the part before it


def backoff_delay(attempts: int, base: float = 5.0) -> float:
    """Seconds before retry number `attempts`: exponential with jitter, capped.

    Not tenacity's wait_exponential: a retry here is not a loop in this process but a
    time written into the outbox row (`next_attempt_at`), so it survives a restart and
    a cron `ringwatch deliver`; only the delay is computed, the waiting is the store's."""
    return min(MAX_BACKOFF, base * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)


class Verdict(Enum):
    """What a failed send means for its message."""

    WAIT = "wait"  # not a failure: a flood wait, a spent budget (no attempt counted)
    RETRY = "retry"  # a transient failure: retried until alerts.give_up_after
    GONE = "gone"  # the recipient cannot be reached any more
    FAILED = "failed"  # this message can never be delivered


@dataclass(frozen=True)
class Outcome:
    """What one send attempt means for its row, and why (already redacted)."""

    verdict: Verdict
    reason: str = ""
    delay: float | None = None  # seconds, when the channel said how long to wait
    whole_channel: bool = False


def classify(exc: BaseException, send_timeout: float) -> Outcome:
    """A send's exception → what to do with the message. Anything a channel did not
    translate (network trouble, a library's own error) is transient: it may work later."""
    if isinstance(exc, RetryLater):
        verdict = Verdict.RETRY if exc.counts else Verdict.WAIT
        return Outcome(verdict, redact(str(exc)), exc.delay, exc.whole_channel)
    if isinstance(exc, RecipientGone):  # before PermanentFailure: it subclasses it
        return Outcome(Verdict.GONE, redact(str(exc)))
    if isinstance(exc, PermanentFailure):
        return Outcome(Verdict.FAILED, redact(str(exc)))
    if isinstance(exc, TimeoutError):  # asyncio.wait_for's, or a library's own
        detail = f": {exc}" if str(exc) else ""
        return Outcome(Verdict.RETRY, redact(f"no answer within {send_timeout:g}s{detail}"))
    # Library messages may quote a request URL, and the Bot API's carries the token.
    return Outcome(Verdict.RETRY, redact(f"{type(exc).__name__}: {exc}"))


def given_up(failing_since: float, now: float, give_up_after: float) -> bool:
    """A transient failure at `now` ends the message when its streak is old enough."""
    return now - failing_since >= give_up_after


@dataclass
class DeliveryReport:
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    retrying: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # channel → last error of each message given up after alerts.give_up_after
    gave_up: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    # channel → seconds each send attempt took, answered or not (the metrics' latency)
    send_seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

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
        alerts: AlertsConfig,
        stop: asyncio.Event,
        clock: Callable[[], float],
    ):
        self.stop = stop
        self.store = store
        self.channel = channel
        self.report = report
        self.alerts = alerts
        self.clock = clock
        self.style = channel.style()
        self.paused = asyncio.Event()  # the channel asked for a pause: the round ends
        # Requests on the wire at once: what a crash can repeat.
        self.wire = asyncio.Semaphore(alerts.max_in_flight)

    async def run(self) -> None:
        now = self.clock()
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
        await self.channel.open(self.store, maintainer_warning(self.store, self.channel))
        try:
            workers = min(self.channel.concurrency, len(by_recipient))
            await asyncio.gather(*(self._worker(queue) for _ in range(workers)))
        finally:
            await self.channel.close()

    def _halted(self) -> bool:
        return self.paused.is_set() or self.stop.is_set()

    async def _admitted(self, delivery: Delivery) -> bool:
        """Wait for the channel's turn; False when the round halts first, so neither a
        pause nor a shutdown waits out the pacer (a flood wait can last minutes)."""
        turn = asyncio.ensure_future(self.channel.admit(delivery))
        halts = [asyncio.ensure_future(event.wait()) for event in (self.stop, self.paused)]
        try:
            await asyncio.wait([turn, *halts], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (turn, *halts):
                task.cancel()
        if turn.cancelled() or not turn.done():
            return False
        turn.result()  # an admission that failed raises here
        return not self._halted()

    async def _worker(self, queue: asyncio.Queue[list[dict[str, Any]]]) -> None:
        while not queue.empty() and not self._halted():
            for row in queue.get_nowait():
                if self._halted() or not await self._deliver(row):
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
        ready, reply_to = self._reply_to(row)
        if not ready:
            self.store.outbox.mark_retry(
                row["id"], self.clock() + THREAD_PART_WAIT, "waiting for the previous part"
            )
            return False
        delivery = Delivery.from_row(row, reply_to)
        if row["part"] == 0 and self.channel.sends_images():
            delivery = replace(delivery, card=self._card(delivery))
        async with self.wire:
            # Claimed only once the channel's pacing lets it go: a row waiting for its
            # turn is not in flight, and a crash does not repeat it.
            if not await self._admitted(delivery):
                return False
            if not self.store.outbox.claim(row["id"]):
                return True  # another worker has it
            started = time.perf_counter()
            try:
                external_id = await asyncio.wait_for(
                    self.channel.send(delivery), self.alerts.send_timeout
                )
            except Exception as exc:
                return self._record(row, classify(exc, self.alerts.send_timeout))
            finally:
                elapsed = time.perf_counter() - started
                self.report.send_seconds[self.channel.name].append(elapsed)
        self.store.outbox.mark_sent(row["id"], external_id)
        self.report.sent[self.channel.name] += 1
        return True

    def _card(self, delivery: Delivery) -> CardFile | None:
        """The message's map card, drawn before its first send and stored for every other
        recipient and retry. Drawn here, not in the poll: the poll's transaction stays as
        fast as text. A card that cannot be drawn leaves the message as text."""
        # Imported here: the readers it draws from (reports, export, feed) cost every
        # command that delivers ~60 ms, and only a channel that sends images needs them.
        from bot.cards import make_card

        config = self.channel.config
        try:
            return make_card(
                self.store.db,
                config.state_dir,
                delivery.kind,
                delivery.change_ids,
                config.site.since,
            )
        except Exception:
            log.exception("%s: no map card for message %d", self.channel.name, delivery.id)
            return None

    def _record(self, row: dict[str, Any], outcome: Outcome) -> bool:
        """Store what a failed attempt means; False when the recipient's rows must wait."""
        outbox, name, now = self.store.outbox, self.channel.name, self.clock()
        if outcome.verdict is Verdict.GONE:
            outbox.mark_failed(row["id"], outcome.reason)
            skipped = outbox.skip_recipient(
                name, row["recipient"], f"recipient gone: {outcome.reason}"
            )
            self.channel.recipient_gone(self.store, row["recipient"], outcome.reason)
            self.report.failed[name] += 1
            log.info(
                "%s: recipient %s gone (%s); %d queued skipped",
                *(name, row["recipient"], outcome.reason, skipped),
            )
            return False
        if outcome.verdict is Verdict.FAILED:
            outbox.mark_failed(row["id"], outcome.reason)
            self.report.failed[name] += 1
            log.error("%s: giving up on message %d: %s", name, row["id"], outcome.reason)
            return True
        # The row as read at the round's start may be stale: a sent row before it ended
        # the streak since.
        streak_start = outbox.failing_since(row["id"]) or now
        if outcome.verdict is Verdict.RETRY and given_up(
            streak_start, now, self.alerts.give_up_after
        ):
            span = _span(self.alerts.give_up_after)
            outbox.mark_failed(row["id"], f"undelivered for {span}: {outcome.reason}")
            self.report.failed[name] += 1
            self.report.gave_up[name].append(outcome.reason)
            log.error("%s: message %d given up: %s", name, row["id"], outcome.reason)
            return True
        delay = outcome.delay
        if delay is None:
            delay = backoff_delay(row["attempts"] + 1)
        counted = outcome.verdict is Verdict.RETRY
        failing_at = now if counted else None
        outbox.mark_retry(
            row["id"], now + delay, outcome.reason, count_attempt=counted, failing_at=failing_at
        )
        self.report.retrying[name] += 1
        if outcome.whole_channel:
            self.paused.set()
            outbox.defer_channel(name, now + delay, failing_at)
            log.warning("%s: pausing for %.0fs: %s", name, delay, outcome.reason)
        else:
            log.warning("%s: message %d will be retried: %s", name, row["id"], outcome.reason)
        return False


def _span(seconds: float) -> str:
    """'3 days', '2 hours', '30 minutes': how long a message was tried."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


def maintainer_warning(store: Store, channel: Channel) -> MaintainerWarning:
    """How `channel` warns the maintainers of every other enabled channel (a public account
    is no place for it): queued in `store`; its group makes it one warning, however often."""

    def warn(message: str, group: str) -> None:
        config = channel.config
        others = [ch for ch in enabled_channels(config) if ch.name != channel.name]
        messages = plan_maintainer_message(
            make_environment(config.templates_path),
            audiences(others, store),
            kind=MessageKind.WARNING,
            group=group,
            message=message,
        )
        store.outbox.queue(None, messages)

    return warn


def warn_gave_up(
    store: Store,
    channels: Sequence[Channel],
    report: DeliveryReport,
    alerts: AlertsConfig,
    templates: Path | None,
) -> None:
    """One maintainer warning per channel and failure streak (since its last sent row)."""
    audience_list = audiences(channels, store)
    env = make_environment(templates)
    for name, reasons in report.gave_up.items():
        message = (
            f"{len(reasons)} message(s) to {name} could not be delivered for "
            f"{_span(alerts.give_up_after)} and were marked failed (last error: {reasons[-1]}). "
            f"Once {name} works again, `ringwatch deliver --retry-failed --channel {name}` "
            "sends them."
        )
        group = f"warning:gave-up:{name}:{store.outbox.last_sent_id(name)}"
        warning = plan_maintainer_message(
            env, audience_list, kind=MessageKind.WARNING, group=group, message=message
        )
        store.outbox.queue(None, warning)


async def deliver_pending(
    store: Store,
    channels: Sequence[Channel],
    *,
    alerts: AlertsConfig | None = None,
    templates: Path | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
    drain: Sequence[Channel] | None = None,
) -> DeliveryReport:
    """One round: every due row of the channels in `drain` (all of `channels` by
    default), channels side by side. A warning that messages were given up goes to the
    maintainers on all of `channels`.

    Once `stop` is set no further row is started; what is in flight finishes (within
    alerts.send_timeout). `clock` is the time in epoch seconds (tests pass their own).
    """
    alerts = alerts or AlertsConfig()
    report = DeliveryReport()
    stop = stop or asyncio.Event()
    drained = channels if drain is None else drain
    rounds = [_ChannelRound(store, ch, report, alerts, stop, clock) for ch in drained]
    await asyncio.gather(*(r.run() for r in rounds))
    if report.gave_up:
        warn_gave_up(store, channels, report, alerts, templates)
    return report


@dataclass(frozen=True)
class TestResult:
    recipient: str
    answer: str  # the platform's message id, or what went wrong
    ok: bool


async def send_test(
    store: Store, channel: Channel, alerts: AlertsConfig, now: str
) -> list[TestResult]:
    """One test message to each configured recipient of `channel` (its maintainers when it
    has any, never its subscribers), straight to the platform: the outbox is untouched."""
    subscribed = {subscriber.chat_id for subscriber in store.subscribers.active(channel.name)}
    configured = [r for r in channel.recipients(store) if r.id not in subscribed]
    targets = [r for r in configured if r.maintainer] or configured
    text = (
        f"ringwatch test message ({now}): if you can read this, the {channel.name} channel works."
    )
    results = []
    await channel.open(store, maintainer_warning(store, channel))
    try:
        for recipient in targets:
            delivery = Delivery(
                id=0,
                channel=channel.name,
                recipient=recipient.id,
                kind=MessageKind.TEST,
                group_key=f"send-test:{now}",
                part=0,
                text=text,
                created_at=now,
            )
            try:
                answer = await asyncio.wait_for(channel.send(delivery), alerts.send_timeout)
            except Exception as exc:
                outcome = classify(exc, alerts.send_timeout)
                results.append(TestResult(recipient.id, outcome.reason, ok=False))
            else:
                said = f"sent (id {answer})" if answer else "sent"
                results.append(TestResult(recipient.id, said, ok=True))
    finally:
        await channel.close()
    return results
