"""`python -m bench soak [--days 30] [--seed N] [--json]`: a month of trouble at once.

The real code (Poller, deliver, every channel and its client library) runs against the
platform stubs of tests/support/ (Telegram, X, Mastodon, Bluesky, a webhook receiver that
is also Apprise's `json://` target) over simulated time: one poll every 15 simulated
minutes, each channel draining its own queue beside the others on a clock that jumps
ahead whenever every channel is only waiting for a retry. A seeded schedule (bench/
soak_schedule.py) changes the source, serves hostile documents, makes the source and
every platform fail at once, SIGKILLs real `ringwatch` processes mid-poll, mid-broadcast
and mid-commit (each followed by a restart), fills the disk once and locks the database
from another process once. At the end the invariants are checked, each with its
numbers; the exit status is 1 when any fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.soak_schedule import (
    FIRST_CHAT,
    STEP,
    SUBSCRIBERS,
    Event,
    Fault,
    Schedule,
    document,
    make_schedule,
)
from bench.virtual_time import VirtualClock
from bot.channels import configure, enabled_channels
from bot.channels.base import Channel
from bot.channels.x import CREDENTIAL_ENV_VARS
from bot.config import Config, load_config
from bot.deliver import deliver_pending
from bot.models import ChangeKind, OutboxStatus
from bot.poll import run_poll
from bot.queries import ChangeFilter, query_changes, read_status
from bot.store import Store
from bot.store.schema import database_problem
from bot.store.times import iso_time
from tests.support import bluesky_stub, mastodon_stub, x_stub
from tests.support.cli import run_cli, start_cli, write_config
from tests.support.locks import write_locked
from tests.support.source_server import Reply, SourceServer
from tests.support.telegram_stub import Fault as TelegramFault
from tests.support.telegram_stub import TelegramStub, flood
from tests.support.webhook_receiver import Answer, WebhookReceiver

PATH = "/map.kml"
ADMIN = 42
SEND_TIMEOUT = 2.0
RETRY_AFTER = 2  # seconds a 429 asks for: every platform's flood wait, kept short
MAX_RSS_MB = 400.0
MAX_RSS_GROWTH_MB = 40.0  # from the end of the first day to the end of the run
ALERT_KINDS = (ChangeKind.ADDED, ChangeKind.REMOVED, ChangeKind.RENAMED)  # what the schedule does
IDEMPOTENT = ("mastodon", "bluesky", "webhook")  # a repeat carries the delivery's own id
NO_IDEMPOTENCY = ("telegram", "x", "apprise")


@dataclass
class Stubs:
    source: SourceServer
    telegram: TelegramStub
    x: x_stub.XStub
    mastodon: mastodon_stub.MastodonStub
    bluesky: bluesky_stub.BlueskyStub
    hooks: WebhookReceiver

    def env(self) -> dict[str, str]:
        return {
            "TELEGRAM_BOT_TOKEN": self.telegram.token,
            "MASTODON_ACCESS_TOKEN": mastodon_stub.TOKEN,
            "BLUESKY_APP_PASSWORD": bluesky_stub.PASSWORD,
            "RINGWATCH_WEBHOOK_SECRET": "soak-webhook-secret",
            "APPRISE_URLS": self.hooks.url("/apprise").replace("http://", "json://"),
            **{name: f"soak-{name.lower()}" for name in CREDENTIAL_ENV_VARS},
        }

    def held_mb(self) -> float:
        """What the stubs keep of what they were sent (every uploaded card, every body): the
        harness's memory, not ringwatch's, so the memory invariant leaves it out."""
        held = [
            *self.telegram.photos.values(),
            *(media.data for media in self.mastodon.media.values()),
            *self.bluesky.blobs.values(),
            *self.x.media.values(),
            *(received.body for received in self.hooks.received),
        ]
        return sum(map(len, held)) / 2**20

    def received(self, telegram_sent: Counter[tuple[str, str]]) -> dict[str, tuple[int, int]]:
        """channel → (messages the platform holds, how many of them are distinct messages).

        Distinct by the delivery's own id where the platform has one (Mastodon's
        Idempotency-Key, Bluesky's record key, the webhook's X-Ringwatch-Delivery). On
        Telegram one chat may get the same text twice on purpose (a maintainer warning),
        so its messages are matched to the outbox's sent rows by chat and text."""
        telegram = Counter((s.chat_id, s.text) for s in self.telegram.sent)
        hooks = [r.delivery for r in self.hooks.received if r.path != "/apprise"
                 and 200 <= r.status < 300]  # fmt: skip
        by_id = {
            "x": [post.text for post in self.x.posts],
            "mastodon": [s.idempotency_key for s in self.mastodon.statuses],
            "bluesky": list(self.bluesky.records),
            "webhook": hooks,
            "apprise": [r.body for r in self.hooks.accepted("/apprise")],
        }
        held = {"telegram": (telegram.total(), (telegram & telegram_sent).total())}
        return held | {name: (len(got), len(set(got))) for name, got in by_id.items()}


@contextmanager
def running_stubs() -> Iterator[Stubs]:
    with ExitStack() as stack:
        stubs = Stubs(
            source=stack.enter_context(SourceServer()),
            telegram=TelegramStub().start(),
            x=x_stub.XStub().start(),
            mastodon=mastodon_stub.MastodonStub().start(),
            bluesky=bluesky_stub.BlueskyStub().start(),
            hooks=stack.enter_context(WebhookReceiver()),
        )
        for stub in (stubs.telegram, stubs.x, stubs.mastodon, stubs.bluesky):
            stack.callback(stub.stop)
        yield stubs


def config_text(state: Path, stubs: Stubs) -> str:
    return f"""
[bot]
state_dir = "{state}"
busy_timeout = "0.5s"
[source]
url = "{stubs.source.url(PATH)}"
format = "kml"
timeout = "0.5s"
deadline = "1.5s"
retries = 1
[alerts]
digest_threshold = 1000
send_timeout = "{SEND_TIMEOUT:g}s"
[telegram]
enabled = true
admins = [{ADMIN}]
api_base_url = "{stubs.telegram.base_url}"
[x]
enabled = true
api_base_url = "{stubs.x.base_url}"
# X's budget counts the posts of the last 24 hours of wall time, in which the soak runs
# a month: raised to what the month posts, so that it is not spent by the compression.
max_posts_per_day = 10000
[mastodon]
enabled = true
api_base_url = "{stubs.mastodon.base_url}"
[bluesky]
enabled = true
handle = "ringwatch.test"
service = "{stubs.bluesky.base_url}"
[webhook]
enabled = true
urls = ["{stubs.hooks.url("/hook")}", "{stubs.hooks.url("/gone")}"]
[apprise]
enabled = true
"""


@dataclass
class Latencies:
    """channel → seconds (simulated) from the poll that queued an alert to its send."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    seen: set[int] = field(default_factory=set)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            channel: {"median_s": statistics.median(values), "max_s": max(values),
                      "messages": len(values)}
            for channel, values in sorted(self.seconds.items())
        }  # fmt: skip


class Soak:
    def __init__(self, schedule: Schedule, stubs: Stubs, directory: Path) -> None:
        self.schedule, self.stubs, self.directory = schedule, stubs, directory
        state = directory / "state"
        self.config_path = write_config(directory, config_text(state, stubs))
        self.env = stubs.env()
        os.environ.update(self.env)  # the in-process channels read their secrets here
        self.config: Config = configure(load_config(self.config_path))
        self.channels: list[Channel] = enabled_channels(self.config)
        self.store = Store.open(self.config.db_path, busy_timeout=self.config.bot.busy_timeout)
        self.clock = VirtualClock(time.time())
        self.poll_times: dict[int, float] = {}  # poll id → simulated time it ran
        self.latency = Latencies()
        self.kills: list[str] = []
        self.faults: defaultdict[str, int] = defaultdict(int)
        self.polls = 0
        self.rss: list[float] = []
        self.held: list[float] = []  # what the stubs hold, at the same times (Stubs.held_mb)
        self.received: dict[str, tuple[int, int]] = {}  # channel → (held, distinct), at the end
        self.refused: list[str] = []  # what polls the database refused said

    # --- one step: the source as scheduled, a poll, every channel drained -----------------

    def start(self) -> None:
        """The baseline, then the subscribers."""
        self.clock.jump_to(self.schedule.start - STEP)
        self.stubs.source.serve(PATH, document(self.schedule.first))
        self.poll()
        with self.store.db.atomic():
            for chat in range(FIRST_CHAT, FIRST_CHAT + SUBSCRIBERS):
                self.store.subscribers.subscribe("telegram", str(chat), states=None,
                                                 chat_type="private")  # fmt: skip
        self.deliver(until=self.schedule.start)

    def run(self) -> None:
        for step, events in enumerate(self.schedule.steps):
            self.clock.jump_to(self.schedule.start + step * STEP)
            self.apply(step, events)
            if step % 96 == 95:
                self.rss.append(rss_mb())
                self.held.append(self.stubs.held_mb())
        for _ in range(3):  # settle: ends confirmed, every retry given its time
            self.clock.jump_to(self.clock.now() + STEP)
            self.stubs.source.serve(PATH, document(self.schedule.final))
            self.poll()
            self.deliver(until=self.clock.now() + STEP)
        self.deliver(until=self.clock.now() + 24 * 3600)

    def apply(self, step: int, events: list[Event]) -> None:
        listed = self.schedule.lists[step]
        self.stubs.source.serve(PATH, document(listed))
        kill = None
        for event in events:
            self.faults[event.fault.value] += 1
            if event.fault is Fault.HOSTILE:
                self.stubs.source.serve(PATH, Reply(event.body))
            elif event.fault is Fault.SOURCE:
                self.stubs.source.serve(PATH, event.reply(self.stubs.source))
            elif event.fault is Fault.PLATFORMS:
                self.platforms_fail(event.detail)
            elif event.fault is Fault.GONE:
                self.stubs.telegram.fail_next(
                    FIRST_CHAT, TelegramFault(403, "Forbidden: bot was blocked by the user")
                )
                self.stubs.hooks.answer("/gone", Answer(410))
            else:
                kill = event.fault
        if kill is Fault.KILL_POLL:
            self.kill_mid_poll(listed)
            self.restart()
        elif kill is Fault.KILL_COMMIT:
            self.kill_mid_commit(listed)
            self.restart()
        elif kill is Fault.FULL_DISK:
            self.poll(full_disk=True)
        elif kill is Fault.LOCKED:
            with write_locked(self.config.db_path):
                self.poll()
        self.poll()
        if kill is Fault.KILL_BROADCAST:
            self.kill_mid_broadcast()
            self.restart()
            for channel in self.channels:  # what the killed process sent, it sent by now
                self.note_sent(channel.name)
        self.deliver(until=self.clock.now() + STEP)

    def poll(self, *, full_disk: bool = False) -> None:
        store = self.store
        if full_disk:  # a second connection whose file may not grow: SQLITE_FULL
            store = Store.open(self.config.db_path, busy_timeout=self.config.bot.busy_timeout)
            store.db.execute("vacuum")  # no free page left: the poll's rows need new ones
            pages = store.db.execute("pragma page_count").fetchone()[0]
            store.db.execute(f"pragma max_page_count = {pages}")
        now = self.clock.now()
        self.polls += 1
        try:
            result = run_poll(self.config, store, self.channels, now=lambda: iso_time(now))
        except sqlite3.Error as exc:  # what `run` logs: the next poll runs on schedule
            self.refused.append(str(database_problem(self.config.db_path, exc)))
            return
        finally:
            if store is not self.store:
                store.close()
        if result.poll_id is not None:
            self.poll_times[result.poll_id] = now

    # --- delivery: each channel on its own, on the simulated clock ---------------------------

    def deliver(self, until: float) -> None:
        asyncio.run(self._drains(until))

    async def _drains(self, until: float) -> None:
        with self.clock.running(len(self.channels)):
            await asyncio.gather(*(self._drain(channel, until) for channel in self.channels))

    async def _drain(self, channel: Channel, until: float) -> None:
        """Rounds of one channel until nothing of it is due before `until`: what
        bot/scheduler.py's drain does, on the simulated clock."""
        try:
            while True:
                report = await deliver_pending(
                    self.store, self.channels, alerts=self.config.alerts,
                    clock=self.clock.now, drain=[channel],
                )  # fmt: skip
                if report.sent[channel.name]:
                    self.note_sent(channel.name)
                due = self.store.outbox.next_retry(channel.name, self.clock.now())
                if due is None or due >= until:
                    return
                await self.clock.sleep_until(due)
        finally:
            self.clock.done()

    def note_sent(self, channel: str) -> None:
        now = self.clock.now()
        for row_id, poll_id in sent_alerts(self.config.db_path, channel):
            if row_id not in self.latency.seen and poll_id in self.poll_times:
                self.latency.seen.add(row_id)
                self.latency.seconds[channel].append(now - self.poll_times[poll_id])

    # --- faults ------------------------------------------------------------------------------

    def platforms_fail(self, how: str) -> None:
        """Every platform at once: 429 with Retry-After, a 5xx burst or timeouts."""
        s = self.stubs
        retry_at = int(time.time()) + RETRY_AFTER
        if how == "429":
            s.telegram.fail_next(FIRST_CHAT + 1, flood(RETRY_AFTER))
            s.x.answers.append(x_stub.rate_limited(retry_at))
            s.mastodon.answers.append(mastodon_stub.rate_limited(RETRY_AFTER))
            s.bluesky.answers.append(bluesky_stub.rate_limited(RETRY_AFTER))
            for path in ("/hook", "/apprise"):
                s.hooks.answer(path, Answer(429, {"Retry-After": str(RETRY_AFTER)}))
        elif how == "5xx":
            s.telegram.fail_next(FIRST_CHAT + 1, TelegramFault(502, "Bad Gateway"), times=2)
            s.x.answers.extend([x_stub.server_error()] * 2)
            s.mastodon.answers.extend([mastodon_stub.error(503)] * 2)
            s.bluesky.answers.extend([bluesky_stub.error(502, "BadGateway")] * 2)
            for path in ("/hook", "/apprise"):
                s.hooks.answer(path, Answer(503), Answer(500))
        else:  # answers that come after the send's deadline
            for path in ("/hook", "/apprise"):
                s.hooks.answer(path, Answer(204, delay=SEND_TIMEOUT + 1))

    def cli(self, command: str) -> subprocess.Popen:
        return start_cli(command, "--config", str(self.config_path), env=self.env)

    def patient_config(self) -> Path:
        """The config with time limits long enough for a kill to find its moment, whatever
        the load: bot.busy_timeout and source.timeout ("0.5s"), source.deadline ("1.5s")."""
        text = self.config_path.read_text().replace('"0.5s"', '"60s"').replace('"1.5s"', '"60s"')
        (self.directory / "patient").mkdir(exist_ok=True)
        return write_config(self.directory / "patient", text)

    def source_idle(self) -> None:
        """No request of an earlier fault (a silent server) is still being answered: the
        one in flight is then the killed process's."""
        wait_until(lambda: self.stubs.source.in_flight == 0)

    def kill_mid_poll(self, listed: list) -> None:
        """`ringwatch poll` killed while the document drips in; the restart polls again."""
        self.source_idle()
        self.stubs.source.serve(PATH, Reply(document(listed), drip=0.05))
        process = start_cli("poll", "--config", str(self.patient_config()), env=self.env)
        wait_until(lambda: self.stubs.source.in_flight == 1, process)
        self.sigkill(process, "mid-poll")
        self.stubs.source.serve(PATH, document(listed))

    def kill_mid_commit(self, listed: list) -> None:
        """`ringwatch poll` killed once it has read the document and its commit waits for a
        write lock that another process took while the document was on its way (slow
        enough, within a patient config's time limits, for the lock to be taken first)."""
        self.source_idle()
        self.stubs.source.serve(PATH, Reply(document(listed), delay=1.0))
        process = start_cli("poll", "--config", str(self.patient_config()), env=self.env)
        wait_until(lambda: self.stubs.source.in_flight == 1, process)
        with write_locked(self.config.db_path):
            wait_until(lambda: self.stubs.source.in_flight == 0, process)
            try:  # the document is parsed and diffed within this; then the commit waits
                process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                self.sigkill(process, "mid-commit")
            else:
                raise RuntimeError("the poll ended although its commit could not write")
        self.stubs.source.serve(PATH, document(listed))

    def kill_mid_broadcast(self) -> None:
        """`ringwatch deliver` killed after a few Telegram sends of the alerts just queued,
        while the answers to half the subscribers drip in (accepted, not yet confirmed)."""
        telegram = self.stubs.telegram
        dripping = {str(FIRST_CHAT + n) for n in range(SUBSCRIBERS // 2, SUBSCRIBERS)}
        telegram.drip_to |= dripping
        before = len(telegram.sent)
        process = self.cli("deliver")
        try:
            wait_until(lambda: len(telegram.sent) >= before + len(dripping), process)
            self.sigkill(process, "mid-broadcast")
        finally:
            telegram.drip_to -= dripping

    def sigkill(self, process: subprocess.Popen, moment: str) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        self.kills.append(moment)

    def restart(self) -> None:
        """As `run` starts: what the killed process had in flight is pending again."""
        self.store.outbox.release_stale()

    # --- the invariants ------------------------------------------------------------------------

    def invariants(self) -> list[dict[str, Any]]:
        checks: list[dict[str, Any]] = []

        def check(name: str, ok: bool, **numbers: Any) -> None:
            checks.append({"invariant": name, "ok": bool(ok), **numbers})

        expected = self.schedule.expected
        logged = alert_log(self.store)
        false = sorted(logged - expected)
        missing = sorted(expected - logged)
        check("no alert the schedule did not cause", not false, alerts=len(logged),
              expected=len(expected), false=len(false), examples=false[:3])  # fmt: skip
        check("every expected alert logged", not missing, missing=len(missing),
              examples=missing[:3])  # fmt: skip
        undelivered = undelivered_alerts(self.config.db_path)
        check("every alert delivered to every recipient that should get it",
              not undelivered, undelivered=len(undelivered),
              examples=undelivered[:3])  # fmt: skip
        alerted = [r.document for r in self.stubs.hooks.accepted("/hook")]
        hooks = {d["agency"]["name"] for d in alerted if d.get("kind") in ALERT_KINDS}
        heard = {name for _, name in expected}
        check("the webhook heard of exactly the scheduled changes", hooks == heard,
              heard=len(hooks), expected=len(heard))  # fmt: skip
        received = self.stubs.received(Counter(sent_texts(self.config.db_path, "telegram")))
        self.received = received
        status = read_status(self.store, polls=1).deliveries
        sent = {name: by_status.get(OutboxStatus.SENT, 0) for name, by_status in status.items()}
        for name in IDEMPOTENT:
            # A webhook request whose answer came too late is sent again under the same
            # X-Ringwatch-Delivery: the receiver keeps one (`redelivered` counts them).
            total, distinct = received[name]
            created = distinct if name == "webhook" else total
            check(f"0 duplicates on {name} (by delivery id)", created == sent.get(name, 0),
                  sent=sent.get(name, 0), created=created,
                  redelivered=total - distinct)  # fmt: skip
        bound = self.config.alerts.max_in_flight * len(self.kills)
        for name in NO_IDEMPOTENCY:
            total, distinct = received[name]
            check(f"repeats on {name} at most max_in_flight per kill", total - distinct <= bound,
                  repeats=total - distinct, bound=bound, kills=len(self.kills))  # fmt: skip
        full = [said for said in self.refused if "disk is full" in said]
        locked = [said for said in self.refused if "locked" in said]
        check("the full disk and the lock were felt (a poll each, not recorded)",
              len(full) == len(locked) == 1, refused=self.refused)  # fmt: skip
        integrity = self.store.db.execute("pragma integrity_check").fetchone()[0]
        verify = run_cli("verify", "--config", str(self.config_path), env=self.env)
        check("integrity_check ok and `ringwatch verify` exits 0",
              integrity == "ok" and verify.returncode == 0, integrity=integrity,
              verify_exit=verify.returncode)  # fmt: skip
        disagree = {
            name: (count, received.get(name, (0, 0))[1])
            for name, count in sent.items()
            if count != received.get(name, (0, 0))[1]
        }
        check("`status` agrees with what the platforms hold", not disagree, sent=sent,
              disagree=disagree)  # fmt: skip
        # ringwatch's own memory: the process's, less what the stubs hold of what they got.
        own = [rss - held for rss, held in zip(self.rss, self.held, strict=True)]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - self.stubs.held_mb()
        growth = own[-1] - own[0] if len(own) > 1 else 0.0
        check("memory bounded and flat", peak <= MAX_RSS_MB and growth <= MAX_RSS_GROWTH_MB,
              peak_rss_mb=round(peak, 1), growth_mb=round(growth, 1),
              stubs_hold_mb=round(self.stubs.held_mb(), 1),
              limits=[MAX_RSS_MB, MAX_RSS_GROWTH_MB])  # fmt: skip
        return checks


# --- reading the outcome back (sqlite3: bench is not the product) -----------------------------


def rows(path: Path, sql: str, params: list[Any] | None = None) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(sql, params or []).fetchall()


def sent_texts(path: Path, channel: str) -> list[tuple[str, str]]:
    return rows(path, "select recipient, text from outbox where channel = ? and "
                "status = 'sent'", [channel])  # fmt: skip


def sent_alerts(path: Path, channel: str) -> list[tuple[int, int]]:
    return rows(path, "select id, poll_id from outbox where channel = ? and kind = 'alert' "
                "and status = 'sent'", [channel])  # fmt: skip


def alert_log(store: Store) -> set[tuple[str, str]]:
    """(kind, name) of every change in the log that alerts."""
    found = query_changes(store.db, ChangeFilter(kinds=ALERT_KINDS))
    return {(row["kind"], row["name"]) for row in found}


def undelivered_alerts(path: Path) -> list[tuple]:
    """Alert rows not sent, except to a recipient that went away (and was told apart)."""
    return rows(path, "select channel, recipient, status, last_error from outbox "
                "where kind = 'alert' and status != 'sent' and not (status in "
                "('skipped', 'failed') and (recipient = ? or recipient like '%/gone'))",
                [str(FIRST_CHAT)])  # fmt: skip


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def wait_until(predicate: Callable[[], object], process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process ended (exit {process.returncode}) before its kill")
        if time.monotonic() > deadline:
            raise RuntimeError("gave up waiting for the moment to kill")
        time.sleep(0.01)


def soak(days: float, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    schedule = make_schedule(days, seed)
    with running_stubs() as stubs, tempfile.TemporaryDirectory(prefix="ringwatch-soak-") as tmp:
        run = Soak(schedule, stubs, Path(tmp))
        try:
            run.start()
            run.run()
            checks = run.invariants()
        finally:
            run.store.close()
    return {
        "days": days,
        "seed": seed,
        "polls": run.polls,
        "changes": len(schedule.expected),
        "faults": dict(sorted(run.faults.items())),
        "kills": run.kills,
        "received": {name: got[0] for name, got in run.received.items()},
        "latency": run.latency.summary(),
        "rss_mb_by_day": [round(mb, 1) for mb in run.rss],
        "stubs_hold_mb_by_day": [round(mb, 1) for mb in run.held],
        "invariants": checks,
        "ok": all(c["ok"] for c in checks),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--days", type=float, default=30, help="simulated days (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="the schedule's seed (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    report = soak(args.days, args.seed)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
    return 0 if report["ok"] else 1


def print_report(report: dict[str, Any]) -> None:
    faults = ", ".join(f"{n} × {name}" for name, n in report["faults"].items())
    print(f"soak: {report['days']:g} simulated days, seed {report['seed']}: {report['polls']:,} "
          f"polls, {report['changes']} changes; faults: {faults}; kills: "
          f"{', '.join(report['kills'])}")  # fmt: skip
    print("received: " + ", ".join(f"{n} {c}" for c, n in report["received"].items()))
    print("queue-to-send latency (simulated seconds from the poll):")
    for channel, got in report["latency"].items():
        print(f"  {channel:<9} median {got['median_s']:7.1f}  max {got['max_s']:7.1f}"
              f"  ({got['messages']} alerts)")  # fmt: skip
    print("invariants:")
    for check in report["invariants"]:
        numbers = {k: v for k, v in check.items() if k not in ("invariant", "ok")}
        shown = ", ".join(f"{k} {v}" for k, v in numbers.items())
        print(f"  {'ok  ' if check['ok'] else 'FAIL'} {check['invariant']}: {shown}")
    print(f"soak took {report['elapsed_s']:.0f} s")
