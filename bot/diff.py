"""Compare stored agencies with a fetch: pure functions of data, no I/O.

Contract of diff_agencies: agencies identical on both sides may be left out of both
`stored` and `fetched` and the result is the same. The poll leaves out every
Placemark whose bytes did not change, which is what makes a 1%-change poll cheap.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bot.models import (
    DERIVED_FIELDS,
    LOGGED_BY_NAME,
    LOGGED_FIELDS,
    Agency,
    Change,
    ChangeKind,
    FieldKind,
)
from bot.normalise import city_key, clean_text, name_key

# Two points closer than this (degrees, ~100 m) are the same station house.
SAME_PLACE_DEGREES = 0.001
# Coordinates moving less than this (~11 m) are re-geocoding noise, not a move.
MOVE_DEGREES = 0.0001


@dataclass(frozen=True)
class Diff:
    added: list[Agency] = field(default_factory=list)
    removed: list[Agency] = field(default_factory=list)
    renamed: list[tuple[Agency, Agency]] = field(default_factory=list)
    changed: list[tuple[Agency, Agency, tuple[str, ...]]] = field(default_factory=list)
    # Same agency, only noise differs: stored silently, never logged.
    cosmetic: list[Agency] = field(default_factory=list)
    # Missing but not yet confirmed: key → consecutive good polls missing.
    missing: dict[str, int] = field(default_factory=dict)

    @property
    def missing_count(self) -> int:
        return len(self.missing) + len(self.removed)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.renamed or self.changed)


def _same_url(a: str | None, b: str | None) -> bool:
    return (a or "").strip().rstrip("/").lower() == (b or "").strip().rstrip("/").lower()


def _not_moved(a: tuple[float | None, float | None], b: tuple[float | None, float | None]) -> bool:
    """[lat, lon] points that are the same place: within MOVE_DEGREES, or one unknown."""
    # Coordinates that appear or vanish say nothing about a move: a source that drops
    # the <Point> of every agency must not announce hundreds of "location" changes.
    (lat_a, lon_a), (lat_b, lon_b) = a, b
    if lat_a is None or lat_b is None or lon_a is None or lon_b is None:
        return True
    return abs(lat_a - lat_b) <= MOVE_DEGREES and abs(lon_a - lon_b) <= MOVE_DEGREES


def _same_extra(a: dict[str, str], b: dict[str, str]) -> bool:
    def folded(extra: dict[str, str]) -> dict[str, str]:
        return {k.lower(): clean_text(v).lower() for k, v in extra.items()}

    return folded(a) == folded(b)


# When two values of a field of each kind are the same fact (models.FieldKind).
SAME: dict[FieldKind, Callable[[Any, Any], bool]] = {
    FieldKind.NAME: lambda a, b: name_key(a) == name_key(b),
    FieldKind.CITY: lambda a, b: city_key(a) == city_key(b),
    FieldKind.STATE: operator.eq,
    FieldKind.DATE: operator.eq,
    FieldKind.COUNT: operator.eq,
    FieldKind.URL: _same_url,
    FieldKind.DEGREES: _not_moved,
    FieldKind.EXTRA: _same_extra,
}


def _same_place(a: Agency, b: Agency) -> bool:
    if a.lat is None or b.lat is None or a.lon is None or b.lon is None:
        return False
    return abs(a.lat - b.lat) <= SAME_PLACE_DEGREES and abs(a.lon - b.lon) <= SAME_PLACE_DEGREES


# (name, read, same) of every logged field, looked up once: diffs compare many agencies.
_COMPARED = tuple((logged.name, logged.read, SAME[logged.kind]) for logged in LOGGED_FIELDS)


def as_listed(agency: Agency) -> Agency:
    """The agency as its source listed it: an approximate point (its town's centroid,
    bot.places.locate) is no point of the source's, so it compares as unknown."""
    return replace(agency, lat=None, lon=None) if agency.approximate else agency


def changed_fields(old: Agency, new: Agency) -> tuple[str, ...]:
    """Fields that differ in substance; case, spacing and punctuation are not differences."""
    old, new = as_listed(old), as_listed(new)
    return tuple(name for name, read, same in _COMPARED if not same(read(old), read(new)))


def is_rename(old: Agency, new: Agency) -> bool:
    """Same agency under a new name: same city and state, and same place or profile URL."""
    if old.state != new.state or city_key(old.city) != city_key(new.city):
        return False
    return _same_place(as_listed(old), as_listed(new)) or bool(
        old.profile_url and _same_url(old.profile_url, new.profile_url)
    )


def diff_agencies(
    stored: Mapping[str, Agency],
    fetched: Mapping[str, Agency],
    *,
    missing_streak: Mapping[str, int] | None = None,
    confirmations: int = 2,
) -> Diff:
    """What happened between the stored list and a good fetch.

    `missing_streak` holds, for stored agencies already missing, how many good polls
    in a row they have been missing; an agency is removed once that reaches
    `confirmations`.
    """
    streak = missing_streak or {}
    new_keys = [key for key in fetched if key not in stored]
    gone_keys = [key for key in stored if key not in fetched]

    renamed: list[tuple[Agency, Agency]] = []
    unmatched_gone = {key: stored[key] for key in gone_keys}
    # Renames stay within one city, so only compare candidates from the same place.
    gone_by_place: dict[tuple[str, str], list[str]] = {}
    for key, old in unmatched_gone.items():
        gone_by_place.setdefault((old.state, city_key(old.city)), []).append(key)
    added: list[Agency] = []
    for key in new_keys:
        new = fetched[key]
        candidates = gone_by_place.get((new.state, city_key(new.city)), [])
        match = next((k for k in candidates if is_rename(unmatched_gone[k], new)), None)
        if match is None:
            added.append(new)
        else:
            candidates.remove(match)
            renamed.append((unmatched_gone.pop(match), new))

    removed: list[Agency] = []
    missing: dict[str, int] = {}
    for key, old in unmatched_gone.items():
        count = streak.get(key, 0) + 1
        if count >= confirmations:
            removed.append(old)
        else:
            missing[key] = count

    changed: list[tuple[Agency, Agency, tuple[str, ...]]] = []
    cosmetic: list[Agency] = []
    for key, new in fetched.items():
        old = stored.get(key)
        if old is None:
            continue
        fields = changed_fields(old, new)
        if fields:
            changed.append((old, new, fields))
        elif old.raw_hash != new.raw_hash or streak.get(key):
            cosmetic.append(new)
    return Diff(added, removed, renamed, changed, cosmetic, missing)


def advance_missing(
    missing_streak: Mapping[str, int], stored: Mapping[str, Agency], confirmations: int
) -> Diff:
    """A good poll that repeats the last one (304, or the same bytes): only the clocks move."""
    return diff_agencies(
        {key: stored[key] for key in missing_streak},
        {},
        missing_streak=missing_streak,
        confirmations=confirmations,
    )


def guard_problem(
    *,
    stored_total: int,
    fetched_total: int,
    missing: int,
    max_missing_share: float,
    renamed: int = 0,
    changed: int = 0,
    added: int = 0,
    max_added_share: float = 0.10,
    force: bool = False,
) -> str | None:
    """Why this fetch must not be believed, or None when it looks sane.

    Renames and alerting field changes count like missing agencies: a field lost or
    remapped by the source turns every agency into a "rename" or a "change", which is a
    broken fetch, not hundreds of departments changing at once. Additions have their own
    share: a source that lists agencies twice, or changes how names are spelled, would
    otherwise announce dozens of "new" partnerships active since 2018. `force` (a
    maintainer who checked the source) believes a fetch whatever its shares, but never
    an empty one.
    """
    if fetched_total == 0:
        return "the source listed no agencies at all"
    if force or not stored_total:
        return None

    def known(count: int) -> str:
        return f"{count} of {stored_total} known agencies ({count / stored_total:.0%})"

    for count, what, key, share in (
        (missing, f"{known(missing)} are missing from this fetch", "max_missing_share",
         max_missing_share),
        (renamed, f"{known(renamed)} have a new name", "max_missing_share", max_missing_share),
        (changed, f"{known(changed)} changed a field that alerts", "max_missing_share",
         max_missing_share),
        (added, f"{added} new agencies in this fetch, {added / stored_total:.0%} of the "
         f"{stored_total} known", "max_added_share", max_added_share),
    ):  # fmt: skip
        if count / stored_total > share:
            return (
                f"{what}, more than guard.{key} ({share:.0%}); not believing it "
                "(ringwatch poll --force accepts it once)"
            )
    return None


# A first poll is recorded as the baseline everything later is compared with: a document
# that lost its addresses or names must not become it.
MAX_INCOMPLETE_BASELINE_SHARE = 0.10


def baseline_problem(agencies: Collection[Agency], *, force: bool = False) -> str | None:
    """Why this first fetch must not become the baseline, or None when it looks complete."""
    incomplete = sum(1 for a in agencies if not a.state or not a.name)
    if force or not agencies or incomplete / len(agencies) <= MAX_INCOMPLETE_BASELINE_SHARE:
        return None
    return (
        f"{incomplete} of {len(agencies)} records ({incomplete / len(agencies):.0%}) have no "
        f"state or no name, more than {MAX_INCOMPLETE_BASELINE_SHARE:.0%}; not recording it as "
        "the baseline (check the source's <name> and <address> fields or source.fields; "
        "ringwatch poll --force records it once)"
    )


def same_agency(a: Agency, b: Agency) -> bool:
    """Two records of one fetch that describe one agency: the same name in the same state
    (their key before disambiguation), and the same city, place or profile URL.

    Agencies without a name are never the same: they are broken records, not duplicates.
    """
    return (
        bool(a.name and b.name)
        and a.key.partition("~")[0] == b.key.partition("~")[0]
        and (
            city_key(a.city) == city_key(b.city)
            or _same_place(a, b)
            or bool(a.profile_url and _same_url(a.profile_url, b.profile_url))
        )
    )


def split_duplicates(
    fresh: Iterable[Agency], kept: Iterable[Agency] = ()
) -> tuple[list[Agency], list[Agency]]:
    """(records to keep, repeats to drop): a record that repeats one kept before it, or
    one of `kept` (stored agencies the fetch listed unchanged), is dropped."""
    seen: dict[str, list[Agency]] = {}
    for agency in kept:
        seen.setdefault(agency.key.partition("~")[0], []).append(agency)
    keep: list[Agency] = []
    repeats: list[Agency] = []
    for agency in fresh:
        peers = seen.setdefault(agency.key.partition("~")[0], [])
        if any(same_agency(agency, peer) for peer in peers):
            repeats.append(agency)
        else:
            peers.append(agency)
            keep.append(agency)
    return keep, repeats


def _record(agency: Agency) -> dict[str, object]:
    row = as_listed(agency).as_row()
    for name in ("raw_hash", *DERIVED_FIELDS):  # what the source said, as it said it
        row.pop(name)
    return row


def changes_from_diff(diff: Diff, alert_fields: Iterable[str]) -> list[Change]:
    """The change-log entries for a diff, in a stable order, each marked alert or log-only."""
    alerting = set(alert_fields)
    changes: list[Change] = []
    for agency in sorted(diff.added, key=lambda a: (a.state, a.name)):
        changes.append(Change(ChangeKind.ADDED, agency, after=_record(agency)))
    for old, new in sorted(diff.renamed, key=lambda pair: (pair[1].state, pair[1].name)):
        changes.append(
            Change(
                ChangeKind.RENAMED, new, before=_record(old), after=_record(new), fields=("name",)
            )
        )
    for old, new, fields in sorted(diff.changed, key=lambda t: (t[1].state, t[1].name)):
        before = {f: LOGGED_BY_NAME[f].value(old) for f in fields}
        after = {f: LOGGED_BY_NAME[f].value(new) for f in fields}
        alert = any(f in alerting for f in fields)
        changes.append(Change(ChangeKind.CHANGED, new, before, after, fields, alert=alert))
    for agency in sorted(diff.removed, key=lambda a: (a.state, a.name)):
        changes.append(Change(ChangeKind.REMOVED, agency, before=_record(agency)))
    return changes
