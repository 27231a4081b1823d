"""Prove the change log: every snapshot still hashes to its name, and replaying the stored
snapshots in poll order through the same poll code (normalise, diff, guards) into a scratch
database produces exactly the stored change log (kind, key, fields, before, after).

Each stored poll is replayed as what it was: a 304 as a 304 (it still confirms what is
missing), a document as its snapshot's bytes, a fetch that failed as a failure, a poll
accepted with --force as forced, each with the settings it recorded (how it was judged:
the guard, the alerting fields, the source's parsing). Each poll's seal is recomputed, so a
setting, outcome or snapshot edited afterwards is a difference. Polls recorded before
ringwatch kept their settings are replayed with the current config, and the result says
so. Ids and times are not compared.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import Config, PollSettings, SourceConfig, with_overrides
from bot.models import PollOutcome
from bot.poll import Poller
from bot.render import make_environment
from bot.snapshots import SnapshotError, SnapshotStore
from bot.source import Fetched, FetchError, Validators
from bot.store import Store
from bot.store.polls import poll_seal, settings_name

Signature = tuple[str, str, Any, Any, Any]  # kind, key, fields, before, after


@dataclass
class Verification:
    snapshots: int = 0
    changes: int = 0
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the replay was done, when it matters

    @property
    def ok(self) -> bool:
        return not self.differences


def _signature(row: dict[str, Any]) -> Signature:
    def parsed(value: str | None) -> Any:
        return json.dumps(json.loads(value), sort_keys=True) if value else None

    return (row["kind"], row["key"], parsed(row["fields"]), parsed(row["before"]),
            parsed(row["after"]))  # fmt: skip


def _describe(row: dict[str, Any], poll: dict[str, Any] | None) -> str:
    where = ", ".join(x for x in (row["name"], row["city"], row["state"]) if x)
    when = f"({poll['started_at']})" if poll else "(no such poll)"
    return f"{row['kind']} {where} [{row['key']}] at poll {row['poll_id']} {when}"


def check_snapshots(store: Store, snapshots: SnapshotStore) -> tuple[int, list[str]]:
    """(snapshots checked, one line per file that is missing, damaged or altered)."""
    rows = store.polls.snapshots()
    problems = []
    for row in rows:
        try:
            snapshots.read(row["sha256"])
        except SnapshotError as exc:
            problems.append(str(exc))
    return len(rows), problems


def _replayed_fetch(poll: dict[str, Any], snapshots: SnapshotStore) -> Callable[..., Fetched]:
    """A fetcher that answers what this poll got, from its snapshot."""

    def fetch(_config: SourceConfig, _validators: Validators) -> Fetched:
        url = poll["url"] or ""
        if poll["http_status"] == 304:
            return Fetched(url, 304, b"", poll["etag"], poll["last_modified"])
        if not poll["snapshot"]:  # the fetch itself failed: no document was kept
            raise FetchError(poll["error"] or "failed", poll["http_status"])
        try:
            body = snapshots.read(poll["snapshot"])
        except SnapshotError as exc:
            raise FetchError(str(exc)) from None
        status = poll["http_status"] or 200
        return Fetched(url, status, body, poll["etag"], poll["last_modified"])

    return fetch


@dataclass
class _Judging:
    """The config each stored poll is replayed with, and what its seal said."""

    differences: list[str] = field(default_factory=list)
    unrecorded: list[int] = field(default_factory=list)  # polls from before settings were kept
    sealed_before: bool = False

    def config_for(self, poll: dict[str, Any], today: Config, store: Store) -> Config:
        if poll["seal"] is None:
            if self.sealed_before:
                self.differences.append(
                    f"poll {poll['id']} ({poll['started_at']}) has no seal, though an earlier "
                    "poll has one: its recorded settings were removed"
                )
            else:
                self.unrecorded.append(poll["id"])
            return today
        self.sealed_before = True
        if poll_seal(poll) != poll["seal"]:
            self.differences.append(
                f"poll {poll['id']} ({poll['started_at']}) was altered after it was recorded: "
                "its seal does not match its settings, outcome and snapshot"
            )
        text = store.polls.settings(poll["settings"] or "")
        try:
            if text is None or settings_name(text) != poll["settings"]:
                raise ValueError(f"{poll['settings']} are missing or altered")
            return PollSettings.from_json(text).applied_to(today)
        except ValueError as exc:
            self.differences.append(f"poll {poll['id']} ({poll['started_at']}): settings {exc}")
            return today

    @property
    def note(self) -> list[str]:
        if not self.unrecorded:
            return []
        first, last, n = self.unrecorded[0], self.unrecorded[-1], len(self.unrecorded)
        return [
            f"polls {first}..{last} ({n} poll{'s' if n != 1 else ''}) were recorded before "
            "ringwatch kept how each poll was judged: they were replayed with today's config "
            "(guard, alerts.alert_fields, source.format, records_path, fields)"
        ]


def replay(config: Config, store: Store, scratch: Path) -> tuple[int, list[str], list[str]]:
    """(changes compared, differences, notes) between the stored log and a replay into
    `scratch`, each poll judged with its recorded settings."""
    stored = SnapshotStore(config.snapshots_dir)
    config = with_overrides(config, "bot", state_dir=str(scratch))
    polls = store.polls.in_order()
    unkept = [p["id"] for p in polls if p["outcome"] != PollOutcome.FAILED and not p["snapshot"]
              and p["http_status"] != 304]  # fmt: skip
    if unkept:
        return (
            0,
            [
                f"polls {unkept[0]}..{unkept[-1]} ({len(unkept)} good polls) were recorded before "
                "snapshots were kept: the log up to there cannot be replayed"
            ],
            [],
        )
    env = make_environment(config.templates_path)
    by_id = {p["id"]: p for p in polls}
    replayed = Store.open(config.db_path)
    judging = _Judging()
    differences = judging.differences
    try:
        for poll in polls:
            poller = Poller(
                judging.config_for(poll, config, store),
                replayed,
                [],
                env=env,
                force=bool(poll["forced"]),
                fetcher=_replayed_fetch(poll, stored),
                now=lambda at=poll["started_at"]: at,
                snapshots=SnapshotStore(config.snapshots_dir),
            )
            result = poller.run()
            if result.outcome != poll["outcome"]:
                differences.append(
                    f"poll {poll['id']} ({poll['started_at']}) was {poll['outcome']}, "
                    f"its snapshot replays as {result.outcome}: {result.summary}"
                )
        # Each stored poll was replayed as one poll: the n-th replayed is the n-th stored.
        original = dict(zip((p["id"] for p in replayed.polls.in_order()), by_id, strict=True))
        ours = store.changes.in_order()
        theirs = replayed.changes.in_order()
    finally:
        replayed.close()
    expected: Counter[tuple[int, Signature]] = Counter(
        (original[row["poll_id"]], _signature(row)) for row in theirs
    )
    logged: Counter[tuple[int, Signature]] = Counter()
    for row in ours:
        item = (row["poll_id"], _signature(row))
        logged[item] += 1
        if logged[item] > expected[item]:
            differences.append(
                f"change #{row['id']} ({_describe(row, by_id.get(row['poll_id']))}) "
                "is not produced by the snapshots"
            )
    for row in theirs:
        poll_id = original[row["poll_id"]]
        item = (poll_id, _signature(row))
        if expected[item] > logged[item]:
            expected[item] -= 1
            differences.append(
                "the snapshots produce a change missing from the log: "
                f"{_describe({**row, 'poll_id': poll_id}, by_id[poll_id])}"
            )
    return len(ours), differences, judging.note


def verify(config: Config, store: Store) -> Verification:
    snapshots = SnapshotStore(config.snapshots_dir)
    count, problems = check_snapshots(store, snapshots)
    with tempfile.TemporaryDirectory(prefix="ringwatch-verify-") as scratch:
        changes, differences, notes = replay(config, store, Path(scratch))
    return Verification(count, changes, problems + differences, notes)
