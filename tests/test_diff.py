"""The diff is a pure function of (stored, fetched): what was added, removed, renamed, changed."""

from __future__ import annotations

from dataclasses import replace

from bot.diff import (
    baseline_problem,
    changes_from_diff,
    diff_agencies,
    guard_problem,
    split_duplicates,
)
from bot.models import Agency
from bot.normalise import agency_key
from tests.support.agencies import make_agency

DEFAULT_ALERT_FIELDS = ["name", "city", "state", "coordinates", "profile_url"]


def agency(name: str, city: str = "Crystal", state: str = "MN", **fields) -> Agency:
    """An agency with a place and a profile, which the diff compares."""
    defaults = {"lat": 45.0327, "lon": -93.3602, "profile_url": f"https://ring.com/a/{name}"}
    return make_agency(name, city=city, state=state, **{**defaults, **fields})


def index(*agencies: Agency) -> dict[str, Agency]:
    return {a.key: a for a in agencies}


CRYSTAL = agency("Crystal Police Department")
AMES = agency("Ames Police Department", "Ames", "IA", lat=42.03, lon=-93.62)


def test_nothing_changed():
    diff = diff_agencies(index(CRYSTAL, AMES), index(CRYSTAL, AMES))

    assert not diff
    assert diff.cosmetic == []


def test_an_addition():
    diff = diff_agencies(index(CRYSTAL), index(CRYSTAL, AMES))

    assert diff.added == [AMES]
    assert not (diff.removed or diff.renamed or diff.changed)


def test_a_missing_agency_is_only_removed_after_the_confirmations():
    first = diff_agencies(index(CRYSTAL, AMES), index(CRYSTAL), confirmations=2)
    second = diff_agencies(
        index(CRYSTAL, AMES), index(CRYSTAL), missing_streak={AMES.key: 1}, confirmations=2
    )

    assert first.removed == [] and first.missing == {AMES.key: 1}
    assert second.removed == [AMES] and second.missing == {}


def test_one_confirmation_removes_at_once():
    diff = diff_agencies(index(CRYSTAL, AMES), index(CRYSTAL), confirmations=1)

    assert diff.removed == [AMES]


def test_a_new_name_at_the_same_place_is_a_rename():
    new = replace(agency("City of Crystal Police Department"), profile_url="https://other")

    diff = diff_agencies(index(CRYSTAL), index(new))

    assert diff.renamed == [(CRYSTAL, new)]
    assert not (diff.added or diff.removed)


def test_a_new_name_with_the_same_profile_url_is_a_rename_even_if_moved():
    new = agency("Crystal Public Safety", lat=45.2, lon=-93.1, profile_url=CRYSTAL.profile_url)

    assert diff_agencies(index(CRYSTAL), index(new)).renamed == [(CRYSTAL, new)]


def test_a_new_name_in_another_city_is_an_addition_and_a_removal():
    new = agency("Robbinsdale Police Department", "Robbinsdale", profile_url=CRYSTAL.profile_url)

    diff = diff_agencies(index(CRYSTAL), index(new), confirmations=1)

    assert diff.added == [new] and diff.removed == [CRYSTAL] and diff.renamed == []


def test_field_changes_name_the_fields():
    moved = replace(CRYSTAL, lat=45.1, video_requests=5, active_date="2020-06-04")

    (change,) = diff_agencies(index(CRYSTAL), index(moved)).changed

    assert change == (CRYSTAL, moved, ("coordinates", "active_date", "video_requests"))


def test_cosmetic_differences_are_not_changes():
    noisy = replace(
        CRYSTAL,
        name="CRYSTAL  POLICE DEPT.",
        city="crystal",
        lat=CRYSTAL.lat + 0.00001,
        profile_url=CRYSTAL.profile_url + "/",
        raw_hash="other bytes",
    )

    diff = diff_agencies(index(CRYSTAL), index(noisy))

    assert not diff
    assert diff.cosmetic == [noisy]  # stored silently, never logged


def test_changes_are_alerts_only_for_the_alert_fields():
    more = replace(CRYSTAL, video_requests=9)
    moved = replace(AMES, lat=42.5)
    diff = diff_agencies(index(CRYSTAL, AMES), index(more, moved))

    changes = changes_from_diff(diff, DEFAULT_ALERT_FIELDS)

    assert {(c.agency.name, c.fields, c.alert) for c in changes} == {
        (CRYSTAL.name, ("video_requests",), False),
        (AMES.name, ("coordinates",), True),
    }
    video = next(c for c in changes if c.fields == ("video_requests",))
    assert (video.before, video.after) == ({"video_requests": None}, {"video_requests": 9})


def test_change_log_entries_carry_before_and_after():
    new = agency("City of Crystal Police Department")
    diff = diff_agencies(index(CRYSTAL, AMES), index(new), confirmations=1)

    renamed, removed = changes_from_diff(diff, DEFAULT_ALERT_FIELDS)

    assert (renamed.kind, renamed.before["name"], renamed.after["name"]) == (
        "renamed", CRYSTAL.name, new.name,
    )  # fmt: skip
    assert (removed.kind, removed.before["name"], removed.after) == ("removed", AMES.name, None)


def test_guard_refuses_an_empty_list_and_too_many_missing():
    assert "no agencies" in guard_problem(
        stored_total=0, fetched_total=0, missing=0, max_missing_share=0.1
    )
    assert "30%" in guard_problem(
        stored_total=100, fetched_total=70, missing=30, max_missing_share=0.1
    )
    assert (
        guard_problem(stored_total=100, fetched_total=90, missing=10, max_missing_share=0.1) is None
    )


def test_guard_refuses_a_fetch_that_renames_too_many_at_once():
    assert "40 of 100 known agencies (40%) have a new name" in guard_problem(
        stored_total=100, fetched_total=100, missing=0, renamed=40, max_missing_share=0.1
    )
    assert (
        guard_problem(
            stored_total=100, fetched_total=100, missing=0, renamed=2, max_missing_share=0.1
        )
        is None
    )


def test_guard_refuses_a_fetch_that_adds_too_many_at_once():
    def added(n: int, share: float = 0.1, **kw) -> str | None:
        return guard_problem(
            stored_total=100, fetched_total=100 + n, missing=0, max_missing_share=0.1,
            added=n, max_added_share=share, **kw,
        )  # fmt: skip

    assert "20 new agencies in this fetch, 20% of the 100 known" in added(20)
    assert "guard.max_added_share (10%)" in added(20)
    assert added(10) is None
    assert added(20, share=0.25) is None
    assert added(20, force=True) is None


def test_a_baseline_with_too_many_records_without_state_or_name_is_refused():
    complete = [agency(f"Town {i} Police Department") for i in range(18)]
    nameless, stateless = agency(""), agency("Ames Police Department", state="")

    assert baseline_problem([*complete, nameless, stateless]) is None  # 2 of 20: 10%
    problem = baseline_problem([*complete, nameless, stateless, agency("", state="")])
    assert "3 of 21 records (14%) have no state or no name" in problem
    assert baseline_problem([nameless] * 5, force=True) is None


# A record listed a second time, as the copy differs from the first: kept or dropped.
REPEATS = {
    "same record": (lambda a: a, True),
    "count off by one": (lambda a: replace(a, video_requests=8), True),
    "other city, same place": (lambda a: replace(a, city="Crystal Township"), True),
    "other city and place, same profile": (lambda a: replace(a, city="X", lat=40.0), True),
    "other city, place and profile": (
        lambda a: replace(a, city="Robbinsdale", lat=45.1, profile_url="https://ring.com/b"),
        False,
    ),
    "no name": (lambda a: replace(a, name="", key=agency_key("", a.state)), False),
}


def test_records_listed_twice_are_kept_once():
    for case, (copy, dropped) in REPEATS.items():
        first = agency("Crystal Police Department", video_requests=7)
        if case == "no name":
            first = copy(first)
        second = copy(first)

        keep, repeats = split_duplicates([first, second])
        assert (repeats == [second]) is dropped, case
        assert keep == ([first] if dropped else [first, second]), case

        # The first copy may be a stored agency the fetch listed unchanged.
        keep, repeats = split_duplicates([second], [first])
        assert (keep, repeats) == (([], [second]) if dropped else ([second], [])), case
