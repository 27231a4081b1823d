"""One poll cycle: fetch → parse → normalise → diff → guard → store (one transaction).

This is the imperative shell around the pure core (normalise, diff, notify). Every
outcome is recorded as a poll row; only a good fetch changes agencies.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

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
from bot.notify import audiences, plan_alerts, plan_maintainer_message
from bot.placemark_scan import ScanMismatch
from bot.render import make_environment
from bot.snapshots import SnapshotFile, SnapshotStore
from bot.source import Abandoned, Fetched, SourceError, Validators, fetch, parse
from bot.store import Store, utc_now

log = logging.getLogger(__name__)


@dataclass
class PollResult:
    outcome: PollOutcome
    summary: str
    changes: list[Change] = field(default_factory=list)
    messages: list[OutboxMessage] = field(default_factory=list)
    poll_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> ExitCode:
        return {PollOutcome.FAILED: ExitCode.TRANSIENT, PollOutcome.SUSPECT: ExitCode.GUARD}.get(
            self.outcome, ExitCode.OK
        )


@dataclass
class _Read:
    """What one parse of the source produced, split into known and fresh records."""

    unchanged_keys: set[str]
    fetched: dict[str, Agency]
    records: int  # distinct agencies listed: a repeated record counts once
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
    repeats = list(store.agencies([key for key, n in unchanged.items() if n > 1]).values())
    if fresh:
        bases = {a.key for a in fresh}
        listed = store.agencies(k for k in unchanged if k.partition("~")[0] in bases)
        fresh, dropped = split_duplicates(fresh, listed.values())
        repeats += dropped
    # The same name twice in one state is rare; when it happens, keys must not swap.
    shared = [key for key, n in Counter(a.key for a in fresh).items() if n > 1]
    stored_city = store.disambiguated_cities(shared) if fresh else {}
    fetched = disambiguate(fresh, unchanged, stored_city)
    return _Read(set(unchanged), fetched, records - len(repeats), repeats)


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
        self._snapshot: SnapshotFile | None = None  # the document of the poll under way

    def run(self) -> PollResult:
        started = time.perf_counter()
        poll: dict[str, Any] = {"started_at": self.now(), "url": self.config.source.url}
        poll.update(origin=self.origin, forced=int(self.force))
        self._snapshot = None
        timings: dict[str, float] = {}
        last_good = self.store.last_poll(good=True)
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
            poll["http_status"] = getattr(exc, "status", None)
            return self._bad(poll, PollOutcome.FAILED, str(exc), started, timings)
        timings["fetch"] = time.perf_counter() - mark
        poll.update(
            url=fetched.url,
            http_status=fetched.status,
            bytes=len(fetched.body),
            etag=fetched.etag,
            last_modified=fetched.last_modified,
        )
        try:
            self._snapshot = self._keep(fetched, last_good)
        except OSError as exc:  # a poll must not cite a document it could not keep
            error = f"cannot store the snapshot in {self.snapshots.directory}: {exc}"
            return self._bad(poll, PollOutcome.FAILED, error, started, timings)
        poll["snapshot"] = self._snapshot.sha256 if self._snapshot else None
        if fetched.not_modified or (
            last_good is not None and fetched.content_hash == last_good.get("content_hash")
        ):
            poll["content_hash"] = (last_good or {}).get("content_hash")
            poll["records"] = (last_good or {}).get("records")
            return self._unchanged(poll, started, timings)
        poll["content_hash"] = fetched.content_hash

        mark = time.perf_counter()
        hash_index = self.store.hash_index()
        try:
            try:
                raw = parse(fetched, self.config.source, hash_index)
                read = _read_records(raw, hash_index, self.store)
            except ScanMismatch as exc:  # nothing is kept from the first pass: read again
                log.info("re-reading the document without the byte scan: %s", exc)
                raw = parse(fetched, self.config.source, hash_index, scan=False)
                read = _read_records(raw, hash_index, self.store)
        except SourceError as exc:
            return self._bad(poll, PollOutcome.FAILED, str(exc), started, timings)
        timings["parse"] = time.perf_counter() - mark
        poll["records"] = read.records
        poll["warning"] = read.warning
        if read.warning:
            log.warning("%s", read.warning)

        mark = time.perf_counter()
        active_keys = set(hash_index.values())
        if len(active_keys) != self.store.active_count():  # identical bytes twice: rare
            active_keys = set(self.store.agencies())
        baseline = not active_keys and last_good is None
        if baseline:  # nothing to compare with: the first poll records what it read
            diff = Diff()
            problem = baseline_problem(list(read.fetched.values()), force=self.force)
            if problem:
                return self._bad(poll, PollOutcome.SUSPECT, problem, started, timings)
        else:
            diff = diff_agencies(
                self.store.agencies(active_keys - read.unchanged_keys),
                read.fetched,
                missing_streak=self.store.missing_streak(),
                confirmations=self.config.guard.removal_confirmations,
            )
        timings["diff"] = time.perf_counter() - mark
        alerting = set(self.config.alerts.alert_fields)
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
            return self._bad(poll, PollOutcome.SUSPECT, problem, started, timings)
        return self._commit(poll, diff, baseline, read, started, timings)

    def _keep(self, fetched: Fetched, last_good: dict[str, Any] | None) -> SnapshotFile | None:
        """Store the document (once per distinct bytes); a 304 refers to the last good one's.

        Written before the poll commits, so a committed poll never cites a missing file."""
        if fetched.not_modified:
            sha256 = (last_good or {}).get("snapshot")
            return self.store.snapshot_file(sha256) if sha256 else None
        if self.dry_run:
            return None
        return self.snapshots.put(fetched.body, fetched.content_hash)

    # --- outcomes -----------------------------------------------------------------------

    def _finish(
        self, poll: dict[str, Any], started: float, outcome: PollOutcome, **counts: int
    ) -> None:
        poll.update(outcome=outcome, finished_at=self.now(), **counts)
        poll["duration_ms"] = round((time.perf_counter() - started) * 1000)

    def _last_poll_id(self) -> int:
        return (self.store.last_poll() or {}).get("id") or 0

    def _recovery_warning(self) -> list[OutboxMessage]:
        streak = self.store.bad_streak()
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

    def _bad(
        self, poll: dict[str, Any], outcome: PollOutcome, error: str, started: float, timings
    ) -> PollResult:
        self._finish(poll, started, outcome)
        poll["error"] = error
        log.warning("poll %s: %s", outcome, error)
        messages: list[OutboxMessage] = []
        if self.store.bad_streak() == 0:  # warn when a streak starts, not on every poll
            what = "fetch failed" if outcome == PollOutcome.FAILED else "guard tripped"
            messages = self._warning(
                f"{what}: {error}. Agencies are unchanged; you will hear again when it recovers.",
                f"streak-start:{self._last_poll_id()}",
            )
        summary = f"{outcome}: {error}" + (f"; {poll['warning']}" if poll.get("warning") else "")
        if self.dry_run:
            return PollResult(outcome, summary, messages=messages, timings=timings)
        poll_id = self.store.record_poll(poll, messages, snapshot=self._snapshot)
        return PollResult(outcome, summary, messages=messages, poll_id=poll_id, timings=timings)

    def _unchanged(self, poll: dict[str, Any], started: float, timings) -> PollResult:
        streak = self.store.missing_streak()
        if streak:
            # A repeat of the last good poll still counts as a confirmation of what is missing.
            stored = self.store.agencies(streak)
            diff = advance_missing(streak, stored, self.config.guard.removal_confirmations)
            return self._commit(
                poll, diff, False, None, started, timings, outcome=PollOutcome.UNCHANGED
            )
        self._finish(poll, started, PollOutcome.UNCHANGED, missing=0)
        messages = self._recovery_warning()
        summary = "unchanged" + (" (304 Not Modified)" if poll.get("http_status") == 304 else "")
        if self.dry_run:
            return PollResult(PollOutcome.UNCHANGED, summary, messages=messages, timings=timings)
        poll_id = self.store.record_poll(poll, messages, snapshot=self._snapshot)
        return PollResult(
            PollOutcome.UNCHANGED, summary, messages=messages, poll_id=poll_id, timings=timings
        )

    def _commit(
        self,
        poll: dict[str, Any],
        diff: Diff,
        baseline: bool,
        read: _Read | None,
        started: float,
        timings: dict[str, float],
        outcome: PollOutcome = PollOutcome.OK,
    ) -> PollResult:
        mark = time.perf_counter()
        alerts = self.config.alerts
        if baseline and read is not None:
            agencies = list(read.fetched.values())
            changes = [Change(ChangeKind.BASELINE, a, after=None, alert=False) for a in agencies]
            outcome = PollOutcome.BASELINE
            diff = Diff()
        else:
            agencies = []
            changes = changes_from_diff(diff, alerts.alert_fields)
        counts = {  # the poll's columns are named after the kinds they count
            ChangeKind.ADDED: len(diff.added),
            ChangeKind.REMOVED: len(diff.removed),
            ChangeKind.RENAMED: len(diff.renamed),
            ChangeKind.CHANGED: len(diff.changed),
        }
        self._finish(poll, started, outcome, missing=len(diff.missing), **counts)
        audience_list = audiences(self.channels, self.store)
        recovery = self._recovery_warning()
        since = self.store.last_poll(good=True)

        def plan(poll_id: int, numbered: list[tuple[int, Change]]) -> list[OutboxMessage]:
            if baseline:
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

        summary = self._summary(outcome, poll, counts)
        if self.dry_run:
            messages = plan(0, list(enumerate(changes, 1)))
            return PollResult(outcome, summary, changes, messages, timings=timings)
        poll_id, _ = self.store.commit_poll(
            poll, diff, changes, plan, baseline=agencies, snapshot=self._snapshot
        )
        timings["commit"] = time.perf_counter() - mark
        self._write_feed(changed=bool(changes))
        if self.config.site.enabled and (changes or not self.config.site_path.exists()):
            from bot.site import rebuild_after_poll

            rebuild_after_poll(self.config, self.store.db, self.env)
        messages_queued = self.store.db.execute(
            "select count(*) from outbox where poll_id = ?", [poll_id]
        ).fetchone()[0]
        summary += f"; {messages_queued} message{'' if messages_queued == 1 else 's'} queued"
        return PollResult(outcome, summary, changes, [], poll_id, timings)

    def _write_feed(self, *, changed: bool) -> None:
        """Rewrite the Atom feed after a commit that logged changes (or if it is missing).

        The change log is committed already: a feed that cannot be written is logged,
        never a failed poll.
        """
        path = self.config.feed_path
        if path is None or not (changed or not path.exists()):
            return
        from bot.feed import write_feed

        try:
            write_feed(self.store.db, path, entries=self.config.feed.entries,
                       title=self.config.feed.title, env=self.env, feed_url=self.config.feed.url,
                       source_url=self.config.source.url)  # fmt: skip
        except OSError as exc:
            log.warning("could not write the feed %s: %s", path, exc)

    @staticmethod
    def _summary(outcome: PollOutcome, poll: dict[str, Any], counts: dict[str, int]) -> str:
        warning = f"; {poll['warning']}" if poll.get("warning") else ""
        if outcome == PollOutcome.BASELINE:
            return f"baseline: now tracking {poll.get('records')} agencies (no alerts){warning}"
        listed = f"{poll.get('records') or 0} agencies listed"
        if outcome == PollOutcome.UNCHANGED:  # the same list again, which confirms what is missing
            ended = counts[ChangeKind.REMOVED]
            news = f"{ended} confirmed ended (missing again)" if ended else "nothing new"
            return f"unchanged: the same list as the last poll ({listed}); {news}{warning}"
        parts = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        return f"{outcome}: {listed}; {parts}{warning}"


def run_poll(config: Config, store: Store, channels: Sequence[Channel], **kwargs) -> PollResult:
    return Poller(config, store, channels, **kwargs).run()
