"""The soak's seeded schedule: what the source lists at each 15-minute step, and the
faults that happen then. The same seed gives the same schedule."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum

from tests.support.source_server import Reply, SourceServer
from tests.support.synthetic import SyntheticAgency, generate_agencies, mutate, to_kml

STEP = 15 * 60.0  # seconds between polls
STEPS_PER_DAY = 96
AGENCIES = 200
SUBSCRIBERS = 6
FIRST_CHAT = 10_000_000  # Telegram subscribers' chat ids follow it
CHANGES_PER_DAY = 4
SOURCE_STREAK = 3  # polls a 5xx streak lasts


class Fault(Enum):
    HOSTILE = "hostile document"
    SOURCE = "source fault"
    PLATFORMS = "platform fault on every channel"
    GONE = "a recipient gone (403, 410)"
    KILL_POLL = "SIGKILL mid-poll"
    KILL_BROADCAST = "SIGKILL mid-broadcast"
    KILL_COMMIT = "SIGKILL mid-commit"
    FULL_DISK = "full disk"
    LOCKED = "database locked by another process"


# Where the one-off events fall, as a share of the run; each on a step that changes the list.
ONE_OFF = {
    Fault.KILL_POLL: 0.1,
    Fault.GONE: 0.2,
    Fault.KILL_BROADCAST: 0.35,
    Fault.KILL_COMMIT: 0.5,
    Fault.FULL_DISK: 0.65,
    Fault.LOCKED: 0.8,
}
HOSTILE = ("garbage", "truncated", "30% missing", "duplicated agencies")
SOURCE = ("5xx streak", "dripping body", "silent server", "redirect to another host")
PLATFORMS = ("429", "5xx", "timeout")


@dataclass(frozen=True)
class Event:
    fault: Fault
    detail: str = ""
    body: bytes = b""  # a hostile document, or the document a source fault holds back

    def reply(self, source: SourceServer) -> Reply:
        if self.detail == "5xx streak":
            return Reply(b"unavailable", status=503)
        if self.detail == "dripping body":
            return Reply(self.body, drip=0.2)
        if self.detail == "silent server":
            return Reply(self.body, delay=3)  # past source.deadline, and soon over
        elsewhere = source.url("/map.kml").replace("127.0.0.1", "127.0.0.2")
        return Reply(status=302, headers={"Location": elsewhere})


@dataclass
class Schedule:
    start: float  # epoch seconds of the first step
    first: list[SyntheticAgency]  # the baseline
    lists: list[list[SyntheticAgency]] = field(default_factory=list)  # the source, per step
    steps: list[list[Event]] = field(default_factory=list)
    expected: set[tuple[str, str]] = field(default_factory=set)  # (kind, name) to alert

    @property
    def final(self) -> list[SyntheticAgency]:
        return self.lists[-1] if self.lists else self.first


def document(listed: list[SyntheticAgency]) -> bytes:
    return to_kml(listed)


def make_schedule(days: float, seed: int, start: float = 1_800_000_000.0) -> Schedule:
    rng = random.Random(seed)
    total = max(int(days * STEPS_PER_DAY), 12)
    first = generate_agencies(AGENCIES, seed=seed)
    schedule = Schedule(start=start, first=first)
    one_off = {round(share * total): fault for fault, share in ONE_OFF.items()}
    free = [s for s in range(1, total - 1) if s not in one_off]
    daily = max(1, round(days))
    changing = set(one_off) | set(rng.sample(free, min(len(free), CHANGES_PER_DAY * daily)))
    # Faults of the source fall on steps that change nothing, and a streak ends before a
    # one-off event's step: its poll must see the change it exists for.
    rest = [s for s in free if s not in changing
            and not one_off.keys() & set(range(s, s + SOURCE_STREAK))]  # fmt: skip
    picked = rng.sample(rest, min(len(rest), 2 * daily))
    hostile_steps, source_steps = picked[:daily], picked[daily:]
    platform_steps = rng.sample(sorted(changing - set(one_off)), min(daily, len(changing) - 6))
    events: dict[int, list[Event]] = {s: [Event(f)] for s, f in one_off.items()}
    listed = first
    for step in range(total):
        if step in changing:
            # A one-off event's step adds agencies: alerts at once (an ending alerts only
            # on the second poll that misses it), and rows to write in every table (more
            # than the free space in a full database's pages, for the full disk).
            kind = "add" if step in one_off else rng.choice(("add", "add", "remove", "rename"))
            count = 3 if one_off.get(step) is Fault.FULL_DISK else 1
            later = mutate(listed, seed=rng.randrange(2**31), **{kind: count})
            schedule.expected |= alerts_between(listed, later)
            listed = later
        schedule.lists.append(listed)
    for n, step in enumerate(sorted(hostile_steps)):
        how = HOSTILE[n % len(HOSTILE)]
        events.setdefault(step, []).append(
            Event(Fault.HOSTILE, how, hostile(how, schedule.lists[step], rng))
        )
    for n, step in enumerate(sorted(source_steps)):
        how = SOURCE[n % len(SOURCE)]
        span = SOURCE_STREAK if how == "5xx streak" else 1
        for later in range(step, min(step + span, total)):
            body = document(schedule.lists[later])
            events.setdefault(later, []).append(Event(Fault.SOURCE, how, body))
    for n, step in enumerate(sorted(platform_steps)):
        events.setdefault(step, []).append(Event(Fault.PLATFORMS, PLATFORMS[n % len(PLATFORMS)]))
    schedule.steps = [events.get(step, []) for step in range(total)]
    return schedule


def alerts_between(
    before: list[SyntheticAgency], after: list[SyntheticAgency]
) -> set[tuple[str, str]]:
    """(kind, name) of each alert a change of the list causes (a profile URL is identity)."""
    old = {a.profile_url: a for a in before}
    new = {a.profile_url: a for a in after}
    alerts = {("added", a.name) for url, a in new.items() if url not in old}
    alerts |= {("removed", a.name) for url, a in old.items() if url not in new}
    alerts |= {
        ("renamed", a.name) for url, a in new.items() if url in old and old[url].name != a.name
    }
    return alerts


def hostile(how: str, listed: list[SyntheticAgency], rng: random.Random) -> bytes:
    """A document that must never alert."""
    if how == "garbage":
        return rng.randbytes(4096)
    if how == "truncated":
        whole = document(listed)
        return whole[: len(whole) // 2]
    if how == "30% missing":
        return document(rng.sample(listed, int(len(listed) * 0.7)))
    return document([*listed, *rng.sample(listed, 3)])
