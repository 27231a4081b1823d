"""`ringwatch run`: APScheduler drives polls and deliveries inside one asyncio loop.

Polls run in a worker thread (HTTP and parsing block) with their own SQLite
connection, one at a time, coalescing missed runs, with jitter. Deliveries run on the
loop, each channel in a drain of its own (its own rounds, pacing, in-flight bound and
backoff), started right after a poll and every bot.deliver_every: one channel's
long broadcast or flood wait holds back neither the polls nor any other channel. A drain
goes on while its channel has a retry due within bot.deliver_every, waking for it, and
ends when nothing is; a poll that queues more wakes it at once. Channels may add their
own loop tasks (Telegram listens for commands) through `background_tasks`.

SIGINT/SIGTERM end the process within 10 seconds whatever is in flight, so Docker's
and systemd's grace periods are enough: the step in progress gets bot.shutdown_grace
(5 s; sends on the wire bot.send_grace, 2 s, of it) to finish; then the fetch is
abandoned (the poll records nothing) and sends still on the wire are cancelled. Their
rows stay SENDING and release_stale makes them pending again at the next start: a
message the platform did receive may repeat once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.cards import prune_cards
from bot.channels import audiences, enabled_channels
from bot.channels.base import Channel
from bot.config import Config
from bot.deliver import deliver_pending
from bot.heartbeat import Heartbeat
from bot.models import GOOD_OUTCOMES, ExitCode, MessageKind, PollOutcome
from bot.notify import plan_maintainer_message
from bot.poll import PollResult, run_poll
from bot.publish import publish_after_poll
from bot.render import make_environment
from bot.source import fetch
from bot.store import Store
from bot.store.schema import DatabaseProblem, database_problem
from bot.store.times import prune_before

if TYPE_CHECKING:
    from bot.metrics import Metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

# After SIGTERM and bot.shutdown_grace: how long what was then cancelled may take to
# unwind. With the default grace, together well under Docker's 10 s.
CANCEL_GRACE = 2.0


class DaemonThreads(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor (asyncio.to_thread): one daemon thread per call.

    The standard executor's threads are joined when asyncio.run and the interpreter end,
    so a poll or a channel's blocking send stuck in a read would keep the process alive
    after SIGTERM; a daemon thread is simply left behind. (asyncio insists on a
    ThreadPoolExecutor; its own pool is never used.)"""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: concurrent.futures.Future = concurrent.futures.Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to whoever awaits the future
                future.set_exception(exc)

        threading.Thread(target=work, name=getattr(fn, "__name__", "worker"), daemon=True).start()
        return future


class Runner:
    def __init__(self, config: Config, channels: Sequence[Channel] | None = None) -> None:
        self.config = config
        self.channels = list(channels) if channels is not None else enabled_channels(config)
        self.stop_event = asyncio.Event()
        self.abandon = threading.Event()  # tells a fetch in a worker thread to give up
        self.steps: set[asyncio.Task[None]] = set()  # polls, summaries, deliveries under way
        self.deliveries: set[asyncio.Task[None]] = set()  # the channels' drains among them
        # channel name → its drain (at most one at a time keeps the channel's order), the
        # event that tells it more was queued, and the lock a round holds (the warning of
        # an unusable database uses the same channel objects).
        self.drains: dict[str, asyncio.Task[None]] = {}
        self.wakes = {channel.name: asyncio.Event() for channel in self.channels}
        self.channel_locks = {channel.name: asyncio.Lock() for channel in self.channels}
        self.poll_lock = asyncio.Lock()
        self.background: set[asyncio.Task[None]] = set()
        self.store = Store.open(config.db_path, busy_timeout=config.bot.busy_timeout)
        # Non-zero once the database proved unusable: `ringwatch run` exits with it.
        self.exit_code = ExitCode.OK
        self.heartbeat = Heartbeat.from_config(config)
        self.metrics: Metrics | None = None  # while [metrics] are served

    def _in_thread(self, work: Callable[[Store], T]) -> T:
        """`work` on a connection of its own, closed afterwards (this runs in a worker
        thread, and a sqlite3 connection serves only the thread that opened it)."""
        store = Store.open(self.config.db_path, busy_timeout=self.config.bot.busy_timeout)
        try:
            return work(store)
        finally:
            store.close()

    def _poll(self, store: Store) -> PollResult:
        fetcher = functools.partial(fetch, stop=self.abandon)
        result = run_poll(self.config, store, self.channels, fetcher=fetcher)
        if self.metrics is not None:
            self.metrics.observe_poll(result, store)
        if result.committed:
            publish_after_poll(self.config, store, changed=bool(result.changes))
        return result

    def _track(self, *more: set[asyncio.Task[None]]) -> None:
        """Count the calling task as a step that shutdown waits for (and then cancels)."""
        task = asyncio.current_task()
        assert task is not None
        for tasks in (self.steps, *more):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def poll_job(self) -> None:
        if self.stop_event.is_set():
            return
        self._track()
        async with self.poll_lock:
            try:
                result = await asyncio.to_thread(self._in_thread, self._poll)
                log.info("poll: %s", result.summary)
            except asyncio.CancelledError:  # stopping; the thread stops at its next read
                log.warning("poll abandoned: ringwatch is stopping")
                return
            except Exception as exc:
                self._beat(good=False)
                problem = self._database_problem(exc)
                if problem is None:
                    log.exception("poll crashed; the next one runs on schedule")
                elif problem.transient:
                    log.warning("poll not recorded, the next one runs on schedule: %s", problem)
                else:
                    await self._database_unusable(problem)
                    return
            else:
                if result.outcome is not PollOutcome.ABANDONED:
                    self._beat(good=result.outcome in GOOD_OUTCOMES)
        self._deliver_soon()

    def _beat(self, *, good: bool) -> None:
        """Ping the heartbeat in the background: a slow one holds up nothing."""
        if self.heartbeat is None:
            return
        task = asyncio.create_task(asyncio.to_thread(self.heartbeat.ping, good))
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def _database_problem(self, error: Exception) -> DatabaseProblem | None:
        """The database state behind a failed step (said in one line), or None for a bug."""
        if isinstance(error, sqlite3.Error):
            return database_problem(self.config.db_path, error)
        return None

    async def _database_unusable(self, problem: DatabaseProblem) -> None:
        """Polling on would fail the same way every time: tell the maintainers once and stop,
        so a supervisor sees the failure. The outbox lives in that database, so the warning
        goes out through an outbox in memory."""
        log.error("stopping: %s", problem)
        self.exit_code = ExitCode.USAGE
        memory = Store.empty()  # configured maintainers only: subscribers are in the database
        try:
            messages = plan_maintainer_message(
                make_environment(self.config.templates_path),
                audiences(self.channels, memory),
                kind=MessageKind.WARNING,
                group=f"warning:database:{time.time()}",
                message=f"ringwatch stopped: {problem}",
            )
            memory.outbox.queue(None, messages)
            async with contextlib.AsyncExitStack() as held:
                for lock in self.channel_locks.values():
                    await held.enter_async_context(lock)
                await deliver_pending(memory, self.channels, alerts=self.config.alerts,
                                      templates=self.config.templates_path)  # fmt: skip
        except Exception:
            log.exception("could not warn the maintainers; the error above is why ringwatch stops")
        finally:
            memory.close()
            self.stop_event.set()  # after the warning: stopping abandons what is in flight

    def _summary(self, store: Store) -> str:
        from bot.summary import queue_summary

        result = queue_summary(self.config, store, self.channels)
        return f"{result.first_day}..{result.last_day}: {result.queued} messages queued"

    async def summary_job(self) -> None:
        if self.stop_event.is_set():
            return
        self._track()
        async with self.poll_lock:  # the summary reads what a poll in progress is writing
            try:
                log.info("summary: %s", await asyncio.to_thread(self._in_thread, self._summary))
            except Exception:
                log.exception("summary crashed; the next one runs on schedule")
        self._deliver_soon()

    def _prune(self, store: Store) -> str:
        pruned = store.retention.prune(prune_before(self.config.bot.retention))
        cards = prune_cards(store, self.config.state_dir)
        return f"{pruned.messages} sent messages ({cards} map cards), {pruned.polls} polls removed"

    async def prune_job(self) -> None:
        if self.stop_event.is_set():
            return
        async with self.poll_lock:  # VACUUM wants the database to itself
            try:
                log.info("prune: %s", await asyncio.to_thread(self._in_thread, self._prune))
            except Exception as exc:
                problem = self._database_problem(exc)
                if problem is None:
                    log.exception("prune failed; it runs again tomorrow")
                else:
                    log.warning("prune failed, it runs again tomorrow: %s", problem)

    def _deliver_soon(self) -> None:
        """Wake every channel's drain, starting those not running: a long broadcast must
        hold up neither the next poll nor another channel."""
        for channel in self.channels:
            self.wakes[channel.name].set()
            drain = self.drains.get(channel.name)
            if drain is None or drain.done():
                task = asyncio.create_task(self._drain(channel))
                self.drains[channel.name] = task
                self.background.add(task)
                task.add_done_callback(self.background.discard)

    async def deliver_job(self) -> None:
        """Every bot.deliver_every: rows queued by another process (`ringwatch deliver`,
        a subscription) and retries due later than a drain waits for."""
        if not self.stop_event.is_set():
            self._deliver_soon()

    async def _drain(self, channel: Channel) -> None:
        """Round after round of one channel while it has work due within
        bot.deliver_every; the other channels' drains run beside it."""
        self._track(self.deliveries)
        wake = self.wakes[channel.name]
        try:
            while not self.stop_event.is_set():
                wake.clear()
                async with self.channel_locks[channel.name]:
                    report = await deliver_pending(
                        self.store,
                        self.channels,
                        alerts=self.config.alerts,
                        templates=self.config.templates_path,
                        stop=self.stop_event,
                        drain=[channel],
                    )
                if self.metrics is not None:
                    self.metrics.observe_delivery(report)
                if any(report.sent.values()) or any(report.failed.values()):
                    log.info("deliver: %s", report.summary())
                if report.gave_up:
                    self._deliver_soon()  # the maintainers' warning waits in other channels
                if not wake.is_set() and not await self._retry_soon(channel, wake):
                    return
        except asyncio.CancelledError:  # stopping: rows left SENDING go out after restart
            log.warning("%s: delivery cancelled: ringwatch is stopping", channel.name)
        except Exception as exc:
            # The next poll meets the same database and stops `run` if it is unusable.
            problem = self._database_problem(exc)
            if problem is None:
                log.exception("%s: delivery crashed; pending messages stay queued", channel.name)
            else:
                log.warning("%s: delivery stopped, pending messages stay queued: %s",
                            channel.name, problem)  # fmt: skip

    async def _retry_soon(self, channel: Channel, wake: asyncio.Event) -> bool:
        """Wait for the channel's next retry when it is due within bot.deliver_every
        (or for more rows, or the stop); False when none is (the interval job's tick
        starts a new drain for a later one)."""
        now = time.time()
        due = self.store.outbox.next_retry(channel.name, now)
        if due is None or due - now > self.config.bot.deliver_every:
            return False
        waits = [asyncio.ensure_future(event.wait()) for event in (wake, self.stop_event)]
        try:
            await asyncio.wait(waits, timeout=due - now, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        return True

    async def run(self) -> None:
        server = None
        if self.config.metrics.address is not None:
            from bot.metrics import serve_metrics

            try:
                self.metrics, server = serve_metrics(self.config, [c.name for c in self.channels])
            except BaseException:
                self.store.close()
                raise
        try:
            await self._run()
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(DaemonThreads())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop_event.set)
        self.store.outbox.release_stale()
        scheduler = AsyncIOScheduler(timezone="UTC")
        bot = self.config.bot
        scheduler.add_job(
            self.poll_job,
            "interval",
            seconds=bot.interval,
            jitter=bot.jitter,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
            id="poll",
        )
        scheduler.add_job(
            self.deliver_job,
            "interval",
            seconds=bot.deliver_every,
            max_instances=1,
            coalesce=True,
            id="deliver",
        )
        if bot.retention:
            scheduler.add_job(
                self.prune_job,
                "interval",
                days=1,
                coalesce=True,
                max_instances=1,
                next_run_time=datetime.now(UTC) + timedelta(minutes=1),
                id="prune",
            )
        if self.config.summary.enabled:
            scheduler.add_job(
                self.summary_job,
                CronTrigger.from_crontab(self.config.summary.cron, timezone="UTC"),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=3600,  # a summary an hour late beats none
                id="summary",
            )
        extra = [
            asyncio.create_task(task)
            for channel in self.channels
            for task in channel.background_tasks(self.store, self.stop_event)
        ]
        scheduler.start()
        log.info("ringwatch running: polling %s every %ss", self.config.source.url, bot.interval)
        await self.stop_event.wait()
        log.info("stopping: the step in progress has %gs to finish", bot.shutdown_grace)
        scheduler.pause()  # no new runs
        await self._wind_down({*self.steps, *self.background, *extra})
        scheduler.shutdown(wait=False)
        self.store.close()

    async def _wind_down(self, tasks: set[asyncio.Task[None]]) -> None:
        """Let what is in flight finish for a while, then abandon it (see the module doc)."""
        if not tasks:
            return
        bot = self.config.bot
        _, late = await asyncio.wait(tasks, timeout=bot.send_grace)
        for task in late & self.deliveries:
            task.cancel()  # a send still on the wire stays SENDING: retried after restart
        if late:
            _, late = await asyncio.wait(late, timeout=bot.shutdown_grace - bot.send_grace)
        if not late:
            return
        log.warning("stopping: abandoning %d unfinished steps (a fetch, sends on the wire, "
                    "the command listener); unsent messages go out after the restart",
                    len(late))  # fmt: skip
        self.abandon.set()
        for task in late:
            task.cancel()
        _, stuck = await asyncio.wait(late, timeout=CANCEL_GRACE)
        if stuck:
            log.warning("stopping: %d steps did not unwind; exiting anyway", len(stuck))
