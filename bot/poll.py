"""One poll cycle: read (fetch → parse → normalise) → assess (diff → guard) → commit
(one transaction).

This is the imperative shell around the pure core (normalise, diff, notify). Every
outcome is recorded as a poll row; only a good fetch changes agencies. The feed and the
site are report steps that callers run after a committed poll (bot.publish).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

from bot.channels import audiences
from bot.channels.base import Channel
from bot.config import Config, SourceConfig
from bot.diff import (
    Diff,
    advance_missing,
    baseline_problem,
    changes_from_diff,
    diff_agencies,
    guard_problem,
    split_duplicates,
)
from bot.models import (
    Agency,
    Change,
    ChangeKind,
    ExitCode,
    MessageKind,
    Origin,
    OutboxMessage,
    PollOutcome,
)
from bot.normalise import disambiguate, normalise_record
from bot.notify import plan_alerts, plan_maintainer_message
from bot.render import make_environment
from bot.snapshots import SnapshotFile, SnapshotStore
from bot.source import (
    Abandoned,
    Fetched,
    ScanMismatch,
    SourceError,
    Validators,
    fetch,
    parse,
)
from bot.store import Store
from bot.store.polls import PollRecord
from bot.store.times import utc_now

log = logging.getLogger(__name__)


@dataclass
class PollResult:
    outcome: PollOutcome
    summary: str
    changes: list[Change] = field(default_factory=list)
    messages: list[OutboxMessage] = field(default_factory=list)
    poll_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # Agencies and the change log were written: the feed and site may follow (bot.publish).
    committed: bool = False

    @property
    def exit_code(self) -> ExitCode:
        return {PollOutcome.FAILED: ExitCode.TRANSIENT, PollOutcome.SUSPECT: ExitCode.GUARD}.get(
            self.outcome, ExitCode.OK
        )


@dataclass
class _Cycle:
    """One run of the poll cycle: its record, its document and how long each step took."""

    record: PollRecord
    started: float  # perf_counter at the start, for duration_ms
    timings: dict[str, float] = field(default_factory=dict)
    snapshot: SnapshotFile | None = None  # the document this poll cites


@dataclass
class _Verdict:
    """What a poll may commit: the diff to apply (or the first list to record)."""

    outcome: PollOutcome
    diff: Diff
    baseline: list[Agency] = field(default_factory=list)


@dataclass
class _Read:
    """What one parse of the source produced, split into known and fresh records."""

    unchanged_keys: set[str]
    fetched: dict[str, Agency]
    records: int  # distinct agencies listed: a repeated record counts once
    indexed_keys: set[str]  # the stored active agencies, as found by their records' hashes
    repeats: list[Agency] = field(default_factory=list)

    @property
    def warning(self) -> str | None:
        """The maintainers' note about records the source listed twice (kept once)."""
        if not self.repeats:
            return None
        ordered = sorted(self.repeats, key=lambda a: (a.state, a.name, a.city))
        names = [f"{a.name} ({', '.join(p for p in (a.city, a.state) if p)})" for a in ordered]
        shown = ", ".join(names[:REPEATS_NAMED])
        more = f" and {len(names) - REPEATS_NAMED} more" if len(names) > REPEATS_NAMED else ""
        n = len(names)
        return f"{n} agenc{'y' if n == 1 else 'ies'} listed twice, kept once: {shown}{more}"


# A warning names this many repeated agencies, then counts the rest.
REPEATS_NAMED = 10


def _read_records(raw_records, hash_index: dict[str, str], store: Store) -> _Read:
    unchanged: Counter[str] = Counter()
    fresh: list[Agency] = []
    records = 0
    for digest, fields in raw_records:
        records += 1
        if fields is None:
            unchanged[hash_index[digest]] += 1
        else:
            fresh.append(normalise_record(fields, digest))
    # A source that lists an agency twice (same bytes, or a count off by one, or another
    # spelling of its city) must not announce the copy as a new partnership.
    repeats = list(store.agencies.active([key for key, n in unchanged.items() if n > 1]).values())
    if fresh:
        bases = {a.key for a in fresh}
        listed = store.agencies.active(k for k in unchanged if k.partition("~")[0] in bases)
        fresh, dropped = split_duplicates(fresh, listed.values())
        repeats += dropped
    # The same name twice in one state is rare; when it happens, keys must not swap.
    shared = [key for key, n in Counter(a.key for a in fresh).items() if n > 1]
    stored_city = store.agencies.disambiguated_cities(shared) if fresh else {}
    fetched = disambiguate(fresh, unchanged, stored_city)
    indexed = set(hash_index.values())
    return _Read(set(unchanged), fetched, records - len(repeats), indexed, repeats)


class Poller:
    """Runs poll cycles against one store; `dry_run` computes everything and writes nothing,
    `force` believes a fetch that a share guard would refuse (see diff.guard_problem).

    Import and verify replay the past through the same code: `fetcher` hands over a stored
    document, `now` is the time it was published, `origin` marks the rows, `snapshots` is
    where documents are kept (default the state dir's).
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        channels: Sequence[Channel],
        *,
        dry_run: bool = False,
        force: bool = False,
        env: jinja2.Environment | None = None,
        fetcher: Callable[[SourceConfig, Validators], Fetched] = fetch,
        now: Callable[[], str] = utc_now,
        origin: Origin = Origin.LIVE,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.channels = channels
        self.dry_run = dry_run
        self.force = force
        self.env = env or make_environment(config.templates_path)
        self.fetcher, self.now, self.origin = fetcher, now, origin
        self.snapshots = snapshots or SnapshotStore(config.snapshots_dir)

    def run(self) -> PollResult:
        """read → assess → commit; each step may end the poll with its outcome instead."""
        record = PollRecord(started_at=self.now(), url=self.config.source.url,
                            origin=self.origin, forced=int(self.force))  # fmt: skip
        cycle = _Cycle(record, started=time.perf_counter())
        last_good = self.store.polls.last(good=True)
        read = self._read(cycle, last_good)
        if isinstance(read, PollResult):
            return read
        verdict = self._assess(cycle, read, last_good)
        if isinstance(verdict, PollResult):
            return verdict
        return self._commit(cycle, verdict)

    # --- read: fetch, keep, parse -------------------------------------------------------

    def _read(self, cycle: _Cycle, last_good: dict[str, Any] | None) -> _Read | PollResult | None:
        """The document's records; None when it is the last good poll's document again."""
        record, timings = cycle.record, cycle.timings
        validators = Validators(
            etag=(last_good or {}).get("etag"),
            last_modified=(last_good or {}).get("last_modified"),
            url=(last_good or {}).get("url"),
        )
        mark = time.perf_counter()
        try:
            fetched = self.fetcher(self.config.source, validators)
        except Abandoned as exc:  # `run` is stopping: no failure to record or warn about
            return PollResult(PollOutcome.ABANDONED, str(exc), timings=timings)
        except SourceError as exc:
            record.http_status = getattr(exc, "status", None)
            return self._bad(cycle, PollOutcome.FAILED, str(exc))
        timings["fetch"] = time.perf_counter() - mark
        record.url, record.http_status = fetched.url, fetched.status
        record.bytes, record.etag = len(fetched.body), fetched.etag
        record.last_modified = fetched.last_modified
        try:
            cycle.snapshot = self._keep(fetched, last_good)
        except OSError as exc:  # a poll must not cite a document it could not keep
            error = f"cannot store the snapshot in {self.snapshots.directory}: {exc}"
            return self._bad(cycle, PollOutcome.FAILED, error)
        record.snapshot = cycle.snapshot.sha256 if cycle.snapshot else None
        if fetched.not_modified or (
            last_good is not None and fetched.content_hash == last_good.get("content_hash")
        ):
            record.content_hash = (last_good or {}).get("content_hash")
            record.records = (last_good or {}).get("records")
            return None
        record.content_hash = fetched.content_hash

        mark = time.perf_counter()
        hash_index = self.store.agencies.hash_index()
        try:
            try:
                raw = parse(fetched, self.config.source, hash_index)
                read = _read_records(raw, hash_index, self.store)
            except ScanMismatch as exc:  # nothing is kept from the first pass: read again
                log.info("re-reading the document without the byte scan: %s", exc)
                raw = parse(fetched, self.config.source, hash_index, scan=False)
                read = _read_records(raw, hash_index, self.store)
        except SourceError as exc:
            return self._bad(cycle, PollOutcome.FAILED, str(exc))
        timings["parse"] = time.perf_counter() - mark
        record.records, record.warning = read.records, read.warning
        if read.warning:
            log.warning("%s", read.warning)
        return read

    def _keep(self, fetched: Fetched, last_good: dict[str, Any] | None) -> SnapshotFile | None:
        """Store the document (once per distinct bytes); a 304 refers to the last good one's.

        Written before the poll commits, so a committed poll never cites a missing file."""
        if fetched.not_modified:
            sha256 = (last_good or {}).get("snapshot")
            return self.store.polls.snapshot_file(sha256) if sha256 else None
        if self.dry_run:
            return None
        return self.snapshots.put(fetched.body, fetched.content_hash)

    # --- assess: diff and guards --------------------------------------------------------

    def _assess(
        self, cycle: _Cycle, read: _Read | None, last_good: dict[str, Any] | None
    ) -> _Verdict | PollResult:
        """What the read changes, or the poll's end when a guard refuses to believe it."""
        if read is None:  # the same list again still confirms what is missing
            streak = self.store.agencies.missing_streak()
            if not streak:
                return self._unchanged(cycle)
            stored = self.store.agencies.active(streak)
            diff = advance_missing(streak, stored, self.config.guard.removal_confirmations)
            return _Verdict(PollOutcome.UNCHANGED, diff)
        mark = time.perf_counter()
        active_keys = read.indexed_keys
        if len(active_keys) != self.store.agencies.active_count():  # identical bytes twice: rare
            active_keys = set(self.store.agencies.active())
        if not active_keys and last_good is None:  # nothing to compare with: record the list
            agencies = list(read.fetched.values())
            problem = baseline_problem(agencies, force=self.force)
            if problem:
                return self._bad(cycle, PollOutcome.SUSPECT, problem)
            verdict = _Verdict(PollOutcome.BASELINE, Diff(), agencies)
        else:
            diff = diff_agencies(
                self.store.agencies.active(active_keys - read.unchanged_keys),
                read.fetched,
                missing_streak=self.store.agencies.missing_streak(),
                confirmations=self.config.guard.removal_confirmations,
            )
            verdict = _Verdict(PollOutcome.OK, diff)
        cycle.timings["diff"] = time.perf_counter() - mark
        diff, alerting = verdict.diff, set(self.config.alerts.alert_fields)
        problem = guard_problem(
            stored_total=len(active_keys),
            fetched_total=read.records,
            missing=diff.missing_count,
            max_missing_share=self.config.guard.max_missing_share,
            renamed=len(diff.renamed),
            changed=sum(1 for *_, fields in diff.changed if alerting.intersection(fields)),
            added=len(diff.added),
            max_added_share=self.config.guard.max_added_share,
            force=self.force,
        )
        if problem:
            return self._bad(cycle, PollOutcome.SUSPECT, problem)
        return verdict

    # --- outcomes -----------------------------------------------------------------------

    def _finish(self, cycle: _Cycle, outcome: PollOutcome, **counts: int) -> None:
        record = cycle.record
        record.outcome, record.finished_at = outcome, self.now()
        for column, n in counts.items():
            setattr(record, column, n)
        record.duration_ms = round((time.perf_counter() - cycle.started) * 1000)

    def _last_poll_id(self) -> int:
        return (self.store.polls.last() or {}).get("id") or 0

    def _recovery_warning(self) -> list[OutboxMessage]:
        streak = self.store.polls.bad_streak()
        if not streak:
            return []
        message = f"polling is healthy again after {streak} failed or suspect polls in a row"
        log.warning(message)
        # Keyed by the streak's last poll, not a timestamp: a streak that starts and ends
        # within one second must still give two distinct messages.
        return self._warning(message, f"streak-end:{self._last_poll_id()}")

    def _warning(self, message: str, group: str) -> list[OutboxMessage]:
        return plan_maintainer_message(
            self.env,
            audiences(self.channels, self.store),
            kind=MessageKind.WARNING,
            group=f"warning:{group}",
            message=message,
        )

    def _record(self, cycle: _Cycle, summary: str, messages: list[OutboxMessage]) -> PollResult:
        """End a poll that changes no agencies: its row and its warnings, in one transaction."""
        outcome, timings = cycle.record.outcome, cycle.timings
        assert outcome is not None
        if self.dry_run:
            return PollResult(outcome, summary, messages=messages, timings=timings)
        poll_id = self.store.record_poll(cycle.record, messages, snapshot=cycle.snapshot)
        return PollResult(outcome, summary, messages=messages, poll_id=poll_id, timings=timings)

    def _bad(self, cycle: _Cycle, outcome: PollOutcome, error: str) -> PollResult:
        self._finish(cycle, outcome)
        cycle.record.error = error
        log.warning("poll %s: %s", outcome, error)
        messages: list[OutboxMessage] = []
        if self.store.polls.bad_streak() == 0:  # warn when a streak starts, not on every poll
            what = "fetch failed" if outcome == PollOutcome.FAILED else "guard tripped"
            messages = self._warning(
                f"{what}: {error}. Agencies are unchanged; you will hear again when it recovers.",
                f"streak-start:{self._last_poll_id()}",
            )
        warning = cycle.record.warning
        return self._record(cycle, f"{outcome}: {error}" + (f"; {warning}" if warning else ""),
                            messages)  # fmt: skip

    def _unchanged(self, cycle: _Cycle) -> PollResult:
        self._finish(cycle, PollOutcome.UNCHANGED, missing=0)
        messages = self._recovery_warning()
        not_modified = " (304 Not Modified)" if cycle.record.http_status == 304 else ""
        return self._record(cycle, "unchanged" + not_modified, messages)

    # --- commit: agencies, change log and outbox in one transaction -------------------------

    def _commit(self, cycle: _Cycle, verdict: _Verdict) -> PollResult:
        mark = time.perf_counter()
        alerts, diff, outcome = self.config.alerts, verdict.diff, verdict.outcome
        agencies = verdict.baseline
        if outcome == PollOutcome.BASELINE:
            changes = [Change(ChangeKind.BASELINE, a, after=None, alert=False) for a in agencies]
        else:
            changes = changes_from_diff(diff, alerts.alert_fields)
        counts = {  # the poll's columns are named after the kinds they count
            ChangeKind.ADDED: len(diff.added),
            ChangeKind.REMOVED: len(diff.removed),
            ChangeKind.RENAMED: len(diff.renamed),
            ChangeKind.CHANGED: len(diff.changed),
        }
        self._finish(cycle, outcome, missing=len(diff.missing), **counts)
        audience_list = audiences(self.channels, self.store)
        recovery = self._recovery_warning()
        since = self.store.polls.last(good=True)

        def plan(poll_id: int, numbered: list[tuple[int, Change]]) -> list[OutboxMessage]:
            if outcome == PollOutcome.BASELINE:
                states = len({a.state for a in agencies if a.state})
                return recovery + plan_maintainer_message(
                    self.env,
                    audience_list,
                    kind=MessageKind.NOTICE,
                    group=f"baseline:{poll_id}",
                    count=len(agencies),
                    states=states,
                )
            return recovery + plan_alerts(
                self.env,
                audience_list,
                numbered,
                poll_id=poll_id,
                digest_threshold=alerts.digest_threshold,
                since=(since or {}).get("finished_at"),
            )

        summary = self._summary(outcome, cycle.record, counts)
        timings = cycle.timings
        if self.dry_run:
            messages = plan(0, list(enumerate(changes, 1)))
            return PollResult(outcome, summary, changes, messages, timings=timings)
        poll_id, _ = self.store.commit_poll(
            cycle.record, diff, changes, plan, baseline=agencies, snapshot=cycle.snapshot
        )
        timings["commit"] = time.perf_counter() - mark
        messages_queued = self.store.outbox.queued_for_poll(poll_id)
        summary += f"; {messages_queued} message{'' if messages_queued == 1 else 's'} queued"
        return PollResult(outcome, summary, changes, [], poll_id, timings, committed=True)

    @staticmethod
    def _summary(outcome: PollOutcome, record: PollRecord, counts: dict[str, int]) -> str:
        warning = f"; {record.warning}" if record.warning else ""
        if outcome == PollOutcome.BASELINE:
            return f"baseline: now tracking {record.records} agencies (no alerts){warning}"
        listed = f"{record.records or 0} agencies listed"
        if outcome == PollOutcome.UNCHANGED:  # the same list again, which confirms what is missing
            ended = counts[ChangeKind.REMOVED]
            news = f"{ended} confirmed ended (missing again)" if ended else "nothing new"
            return f"unchanged: the same list as the last poll ({listed}); {news}{warning}"
        parts = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        return f"{outcome}: {listed}; {parts}{warning}"


def run_poll(config: Config, store: Store, channels: Sequence[Channel], **kwargs) -> PollResult:
    return Poller(config, store, channels, **kwargs).run()
