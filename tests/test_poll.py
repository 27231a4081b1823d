"""A poll cycle end to end: served KML → change log, agencies, polls and console alerts."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from bot.normalise import display_name
from tests.support.agencies import agencies, renamed
from tests.support.bot import Bot
from tests.support.http import closed_port_url
from tests.support.source_server import Reply, SourceServer
from tests.support.synthetic import mutate, to_kml

PATH = "/map.kml"


@pytest.fixture
def start(tmp_path: Path, source_server: SourceServer):
    """A bot whose first (baseline) poll has recorded `first`; returns the bot."""

    def _start(first, extra: str = "", **source) -> Bot:
        bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml(first)), extra, **source)
        assert bot.poll().outcome == "baseline"
        return bot

    return _start


def serve(server: SourceServer, items) -> None:
    server.serve(PATH, to_kml(items))


# --- baseline ---------------------------------------------------------------------------


def test_baseline_records_every_agency_and_prints_one_notice(tmp_path, source_server, capsys):
    bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml(agencies(25))))

    result = bot.poll()

    assert result.outcome == "baseline"
    printed = capsys.readouterr().out
    assert printed.count("ringwatch is now tracking 25") == 1
    assert "New partnership" not in printed
    assert len(bot.agencies()) == 25
    assert {c["kind"] for c in bot.changes()} == {"baseline"}
    assert bot.changes(kinds=("added",)) == []
    assert [row["kind"] for row in bot.outbox()] == ["notice"]


# --- what changed ----------------------------------------------------------------------


def test_additions_are_logged_and_alerted(start, source_server, capsys):
    first = agencies(20)
    bot = start(first)
    later = mutate(first, seed=2, add=2)
    serve(source_server, later)
    capsys.readouterr()

    result = bot.poll()

    assert result.outcome == "ok"
    new_names = sorted(a.name for a in later[20:])
    assert sorted(name for kind, name in bot.kinds()) == new_names
    assert {kind for kind, _ in bot.kinds()} == {"added"}
    printed = capsys.readouterr().out
    for agency in later[20:]:
        assert f"New partnership: {display_name(agency.name)}, {agency.state}" in printed


def test_a_removal_is_logged_after_two_polls_and_alerted(start, source_server, capsys):
    first = agencies(20)
    bot = start(first)
    serve(source_server, first[1:])

    bot.poll()
    assert bot.kinds() == []
    assert first[0].name in {a["name"] for a in bot.agencies().values()}
    bot.poll()

    assert bot.kinds() == [("removed", first[0].name)]
    assert first[0].name not in {a["name"] for a in bot.agencies().values()}
    ended = bot.rows("select ended_at from agencies where name = ?", [first[0].name])
    assert ended[0]["ended_at"]
    assert "Partnership ended: " in capsys.readouterr().out


def test_a_rename_is_one_renamed_row_not_a_removal_and_an_addition(start, source_server, capsys):
    first = agencies(20)
    bot = start(first)
    later = [
        renamed(first[3], name="City of Maple Grove Police Department"),
        *first[:3],
        *first[4:],
    ]
    serve(source_server, later)

    bot.poll()

    assert bot.kinds() == [("renamed", "City of Maple Grove Police Department")]
    (row,) = bot.changes(kinds=("renamed",))
    assert row["before"]["name"] == first[3].name
    assert row["after"]["name"] == "City of Maple Grove Police Department"
    assert "Renamed: " in capsys.readouterr().out
    bot.poll()
    assert [k for k, _ in bot.kinds()] == ["renamed"]  # the old name is not "ended" later


def test_renames_made_by_the_generator_are_detected(start, source_server):
    first = agencies(40)
    bot = start(first)
    serve(source_server, mutate(first, seed=5, rename=3))

    bot.poll()

    assert [kind for kind, _ in bot.kinds()] == ["renamed"] * 3


def test_a_field_change_logs_before_and_after(start, source_server):
    first = agencies(20)
    bot = start(first)
    moved = renamed(first[5], lat=first[5].lat + 0.02)
    serve(source_server, [*first[:5], moved, *first[6:]])

    bot.poll()

    (row,) = bot.changes(kinds=("changed",))
    assert row["name"] == first[5].name
    assert row["fields"] == ["coordinates"]
    assert row["before"]["coordinates"] == [first[5].lat, first[5].lon]
    assert row["after"]["coordinates"] == [round(moved.lat, 6), first[5].lon]


def test_alert_fields_decide_which_changes_alert(start, source_server, capsys):
    first = agencies(20)
    bot = start(first)
    more_requests = renamed(first[2], video_requests=first[2].video_requests + 7)
    moved = renamed(first[7], lon=first[7].lon + 0.05)
    serve(source_server, [*first[:2], more_requests, *first[3:7], moved, *first[8:]])
    capsys.readouterr()

    bot.poll()

    logged = {row["name"]: row["fields"] for row in bot.changes(kinds=("changed",))}
    assert logged == {first[2].name: ["video_requests"], first[7].name: ["coordinates"]}
    printed = capsys.readouterr().out
    assert "location" in printed and first[7].city in printed
    assert first[2].city not in printed


def test_alert_fields_can_make_video_requests_alert(start, source_server, capsys):
    first = agencies(20)
    bot = start(first, '[alerts]\nalert_fields = ["video_requests"]\n')
    more_requests = renamed(first[2], video_requests=first[2].video_requests + 7)
    serve(source_server, [*first[:2], more_requests, *first[3:]])
    capsys.readouterr()

    bot.poll()

    printed = capsys.readouterr().out
    expected = f"video requests {first[2].video_requests} → {first[2].video_requests + 7}"
    assert expected in printed


def test_above_the_digest_threshold_one_digest_lists_every_agency(start, source_server, capsys):
    first = agencies(30)
    bot = start(first, "[alerts]\ndigest_threshold = 3\n[guard]\nmax_added_share = 0.3\n")
    later = mutate(first, seed=3, add=8)
    serve(source_server, later)
    capsys.readouterr()

    bot.poll()

    assert [row["kind"] for row in bot.outbox()[1:]] == ["digest"]
    printed = capsys.readouterr().out
    assert "New partnership" not in printed
    assert "8 new partnerships" in printed
    for agency in later[30:]:
        assert f"+ {display_name(agency.name)}, {agency.state}" in printed


# --- noise is not a change --------------------------------------------------------------


NOISY_NAMES = {
    "case": lambda name: name.upper(),
    "whitespace": lambda name: "  " + name.replace(" ", "   ") + "\t",
    "punctuation": lambda name: name + ".",
    "dept": lambda name: name.replace("Department", "Dept."),
    "pd": lambda name: name.replace("Police Department", "PD"),
}


@pytest.mark.parametrize("noise", NOISY_NAMES, ids=list(NOISY_NAMES))
def test_noisy_names_are_no_change(start, source_server, capsys, noise):
    first = [a for a in agencies(40) if a.name.endswith("Police Department")][:15]
    bot = start(first)
    serve(source_server, [renamed(a, name=NOISY_NAMES[noise](a.name)) for a in first])
    capsys.readouterr()

    result = bot.poll()

    assert result.outcome == "ok"
    assert bot.kinds() == []
    assert capsys.readouterr().out == ""
    assert len(bot.agencies()) == 15


def test_state_spelled_out_is_no_change(start, source_server, capsys):
    first = [a for a in agencies(60) if a.state == "MN" or a.state == "CA"][:10]
    bot = start(first)
    spelled = {"MN": "Minnesota", "CA": "california"}
    serve(source_server, [renamed(a, state=spelled[a.state]) for a in first])
    capsys.readouterr()

    bot.poll()

    assert bot.kinds() == []
    assert capsys.readouterr().out == ""


def test_placemark_order_is_no_change(start, source_server, capsys):
    first = agencies(30)
    bot = start(first)
    shuffled = list(first)
    random.Random(4).shuffle(shuffled)
    serve(source_server, shuffled)
    capsys.readouterr()

    bot.poll()

    assert bot.kinds() == []
    assert capsys.readouterr().out == ""


def _twins(first) -> list:
    """Two 'Washington Township Police Department', NJ, in different cities, after `first`."""
    twin = renamed(first[0], name="Washington Township Police Department", state="NJ")
    return [
        renamed(twin, city="Sewell", lon=-75.1, lat=39.76, profile_url="https://ring.com/a/1"),
        renamed(twin, city="Long Valley", lon=-74.8, lat=40.78, profile_url="https://ring.com/a/2"),
    ]


def test_two_agencies_sharing_a_name_keep_their_keys_in_any_order(start, source_server):
    first = agencies(20)
    sewell, long_valley = _twins(first)
    bot = start([*first, sewell, long_valley])
    keys = {a["city"]: a["key"] for a in bot.agencies().values() if a["state"] == "NJ"}

    # Both counts change and the source lists them the other way round.
    serve(source_server, [*first, renamed(long_valley, video_requests=7),
                          renamed(sewell, video_requests=9)])  # fmt: skip
    bot.poll()

    assert bot.kinds() == [("changed", sewell.name), ("changed", long_valley.name)]
    after = {a["city"]: a["key"] for a in bot.agencies().values() if a["state"] == "NJ"}
    assert after == keys


def test_the_twin_left_behind_keeps_its_key(start, source_server):
    first = agencies(20)
    sewell, long_valley = _twins(first)
    bot = start([*first, sewell, long_valley])
    serve(source_server, [*first, long_valley])  # Sewell's partnership ends
    bot.poll()
    bot.poll()
    serve(source_server, [*first, renamed(long_valley, video_requests=50)])
    bot.poll()

    assert bot.kinds() == [("removed", sewell.name), ("changed", long_valley.name)]


def test_coordinates_vanishing_from_the_source_are_no_change(start, source_server, capsys):
    first = agencies(20)
    bot = start(first)
    body = to_kml(first).decode()
    serve_text = re.sub(r"<Point>.*?</Point>", "", body, flags=re.S)
    source_server.serve(PATH, serve_text.encode())
    capsys.readouterr()

    assert bot.poll().outcome == "ok"
    assert bot.kinds() == []
    assert capsys.readouterr().out == ""


def test_a_field_that_alerts_changing_everywhere_is_a_suspect_fetch(start, source_server):
    first = agencies(20)
    bot = start(first)
    serve(source_server, [renamed(a, profile_url=a.profile_url + "?v=2") for a in first])

    result = bot.poll()

    assert result.outcome == "suspect"
    assert "changed a field that alerts" in result.summary
    assert bot.kinds() == [] and bot.sent_texts()[-1].startswith("ringwatch warning:")


def test_the_bundled_samples_give_the_documented_changes(tmp_path):
    samples = Path(__file__).resolve().parent.parent / "bot" / "samples"
    # 29 of 123 agencies are new (24%): more than the default guard believes.
    bot = Bot.create(tmp_path, str(samples / "baseline.kml"), "[guard]\nmax_added_share = 0.25\n")
    bot.poll()
    bot.config_path.write_text(
        bot.config_path.read_text().replace("baseline.kml", "later.kml"), encoding="utf-8"
    )
    bot.poll()
    bot.poll()

    kinds = [kind for kind, _ in bot.kinds()]
    assert kinds.count("added") == 29
    assert bot.changes(kinds=("renamed",))[0]["name"] == "City of Mesa Police Department"
    assert [c["name"] for c in bot.changes(kinds=("removed",))] == ["Ridgeland Police Department"]
    assert [c["name"] for c in bot.changes(kinds=("changed",))] == ["Westfield Police Department"]
    assert len(kinds) == 32  # the seven cosmetic edits are no change at all


# --- removal confirmations ------------------------------------------------------------------


def test_removal_waits_for_the_configured_confirmations(start, source_server):
    first = agencies(20)
    bot = start(first, "[guard]\nremoval_confirmations = 3\n")
    serve(source_server, first[1:])

    bot.poll()
    bot.poll()
    assert bot.kinds() == []
    bot.poll()

    assert bot.kinds() == [("removed", first[0].name)]


def test_an_agency_that_comes_back_starts_its_count_again(start, source_server):
    first = agencies(20)
    bot = start(first)

    serve(source_server, first[1:])
    bot.poll()  # missing once
    serve(source_server, first)
    bot.poll()  # back
    serve(source_server, first[1:])
    bot.poll()  # missing once again: not twice in a row
    assert bot.kinds() == []
    bot.poll()

    assert bot.kinds() == [("removed", first[0].name)]


# --- conditional GET ----------------------------------------------------------------------


def test_second_poll_is_conditional_and_a_304_is_a_good_unchanged_poll(start, source_server):
    first = agencies(20)
    bot = start(first)
    tag = source_server.requests[-1]  # what the client sent first
    assert "If-None-Match" not in tag

    result = bot.poll()

    assert source_server.requests[-1]["If-None-Match"].startswith('"')
    assert result.outcome == "unchanged"
    assert [(p["outcome"], p["http_status"]) for p in bot.polls()] == [
        ("baseline", 200),
        ("unchanged", 304),
    ]
    assert bot.kinds() == []


def test_a_304_still_confirms_a_missing_agency(start, source_server):
    first = agencies(20)
    bot = start(first)
    serve(source_server, first[1:])
    bot.poll()  # missing once; its ETag is remembered

    result = bot.poll()  # the server answers 304

    assert bot.polls()[-1]["http_status"] == 304
    assert result.outcome == "unchanged"
    assert bot.kinds() == [("removed", first[0].name)]


def test_a_304_to_a_first_unconditional_request_is_no_baseline(tmp_path, source_server, capsys):
    first = agencies(20)
    url = source_server.serve(PATH, Reply(b"", status=304, etag=False), Reply(to_kml(first)))
    bot = Bot.create(tmp_path, url)

    results = [bot.poll(), bot.poll()]

    assert [r.outcome for r in results] == ["failed", "baseline"]
    assert "New partnership" not in capsys.readouterr().out
    assert bot.kinds() == []


# --- guards: nothing believed, nothing changed -------------------------------------------


def assert_state_untouched(bot: Bot, before: dict, printed: str) -> None:
    assert bot.agencies() == before
    assert bot.kinds() == []
    assert "New partnership" not in printed and "ended" not in printed.replace("ended:", "")


BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE kml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    b"<kml><Document><Placemark><name>&b;</name></Placemark></Document></kml>"
)
# What the server answers instead of the list, given the list it answered before.
BAD_REPLIES = {
    "http 500": lambda first: Reply(b"oops", status=500),
    "timeout": lambda first: Reply(to_kml(first), delay=0.6),
    "html page": lambda first: Reply(b"<html><body><h1>Sign in</h1></body></html>", etag=False),
    "truncated xml": lambda first: Reply(to_kml(first)[:-300]),
    "content-length lie": lambda first: Reply(
        to_kml(first), declared_length=len(to_kml(first)) + 99, etag=False
    ),
    "entity bomb": lambda first: Reply(BOMB),
    "empty list": lambda first: Reply(to_kml([])),
    "missing 30%": lambda first: Reply(to_kml(first[6:])),
    "30% new": lambda first: Reply(to_kml(mutate(first, seed=6, add=6))),
}
SUSPECT = ("empty list", "missing 30%", "30% new")


@pytest.mark.parametrize("case", BAD_REPLIES, ids=list(BAD_REPLIES))
def test_a_bad_fetch_changes_nothing_and_warns_once(start, source_server, capsys, case):
    first = agencies(20)
    bot = start(first, timeout="0.3s")
    before = bot.agencies()
    source_server.serve(PATH, BAD_REPLIES[case](first))
    capsys.readouterr()

    results = [bot.poll(), bot.poll()]

    expected = "suspect" if case in SUSPECT else "failed"
    assert [r.outcome for r in results] == [expected, expected]
    assert [p["outcome"] for p in bot.polls()[1:]] == [expected, expected]
    assert bot.polls()[-1]["error"]
    printed = capsys.readouterr().out
    assert_state_untouched(bot, before, printed)
    assert printed.count("ringwatch warning:") == 1


def test_a_refused_connection_changes_nothing(start, capsys):
    first = agencies(20)
    bot = start(first)
    before = bot.agencies()
    dead = f"{closed_port_url()}/map.kml"  # nobody listens there
    bot.config_path.write_text(
        re.sub(r'url = ".*"', f'url = "{dead}"', bot.config_path.read_text()), encoding="utf-8"
    )
    capsys.readouterr()

    assert bot.poll().outcome == "failed"
    assert "ConnectionError" in bot.polls()[-1]["error"]
    assert_state_untouched(bot, before, capsys.readouterr().out)


def test_the_end_of_a_failure_streak_is_announced_once(start, source_server, capsys):
    first = agencies(20)
    bot = start(first)
    source_server.serve(PATH, Reply(b"down", status=503))
    bot.poll()
    bot.poll()
    serve(source_server, [*first, *mutate(first, seed=9, add=1)[20:]])
    capsys.readouterr()

    bot.poll()
    bot.poll()

    printed = capsys.readouterr().out
    assert printed.count("healthy again after 2 failed or suspect polls") == 1
    assert printed.count("New partnership") == 1


def test_a_list_whose_names_vanished_is_no_mass_rename(start, source_server, capsys):
    first = agencies(20)
    bot = start(first)
    before = bot.agencies()
    serve(source_server, [renamed(a, name="") for a in first])
    capsys.readouterr()

    result = bot.poll()

    assert result.outcome == "suspect"
    assert "have a new name" in result.summary
    printed = capsys.readouterr().out
    assert_state_untouched(bot, before, printed)
    assert "renamed" not in printed.lower()


def test_a_list_missing_ten_percent_or_less_is_believed(start, source_server):
    first = agencies(20)
    bot = start(first)
    serve(source_server, first[2:])  # 2 of 20 = 10%

    assert bot.poll().outcome == "ok"


def test_max_missing_share_is_configurable(start, source_server):
    first = agencies(20)
    bot = start(first, "[guard]\nmax_missing_share = 0.05\n")
    serve(source_server, first[2:])

    assert bot.poll().outcome == "suspect"
    assert "guard.max_missing_share" in bot.polls()[-1]["error"]


def test_max_added_share_is_configurable(start, source_server):
    first = agencies(20)
    bot = start(first, "[guard]\nmax_added_share = 0.3\n")
    serve(source_server, mutate(first, seed=6, add=6))  # 30%: not more than 0.3

    assert bot.poll().outcome == "ok"
    assert [kind for kind, _ in bot.kinds()] == ["added"] * 6


# --- the same agency twice in one fetch -----------------------------------------------------


# How a copy of an agency differs from the record it repeats.
DUPLICATES = {
    "same bytes": lambda a: a,
    "video count off by one": lambda a: renamed(a, video_requests=a.video_requests + 1),
    "other spacing and case": lambda a: renamed(a, name=" " + a.name.upper() + " "),
    "same place, other city": lambda a: renamed(a, city=a.city + " Township"),
    "same profile, moved": lambda a: renamed(a, city="Elsewhere", lat=a.lat + 1),
}


@pytest.mark.parametrize("copy", DUPLICATES, ids=list(DUPLICATES))
def test_agencies_listed_twice_are_kept_once_and_reported(start, source_server, capsys, copy):
    first = agencies(20)
    bot = start(first)
    before = bot.agencies()
    twice = first[2:6]  # 20% of the list appears a second time
    serve(source_server, [*first, *(DUPLICATES[copy](a) for a in twice)])
    capsys.readouterr()

    result = bot.poll()

    assert result.outcome == "ok"
    assert bot.kinds() == [] and "New partnership" not in capsys.readouterr().out
    assert set(bot.agencies()) == set(before)
    warning = bot.polls()[-1]["warning"]
    assert warning.startswith("4 agencies listed twice, kept once:")
    for agency in twice:  # the copy's own spelling is named
        assert (
            agency.name.lower() in warning.lower() and agency.name.lower() in result.summary.lower()
        )


def test_agencies_listed_twice_in_a_first_poll_are_one_baseline_each(tmp_path, source_server):
    first = agencies(20)
    bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml([*first, *first[:3]])))

    result = bot.poll()

    assert result.outcome == "baseline"
    assert len(bot.agencies()) == 20
    assert "3 agencies listed twice" in bot.polls()[-1]["warning"]


def test_twins_in_other_places_are_no_duplicates(start, source_server):
    first = agencies(20)
    sewell, long_valley = _twins(first)
    bot = start([*first, sewell])
    serve(source_server, [*first, sewell, long_valley])

    bot.poll()

    assert bot.kinds() == [("added", long_valley.name)]
    assert bot.polls()[-1]["warning"] is None


# --- a first poll that cannot be a baseline -------------------------------------------------

# A broken document on a fresh install, as the list it would give.
BROKEN_BASELINES = {
    "no addresses": lambda first: [renamed(a, city="", state="") for a in first],
    "no names": lambda first: [renamed(a, name="") for a in first],
    "a third without a state": lambda first: [
        renamed(a, city="", state="") if i % 3 == 0 else a for i, a in enumerate(first)
    ],
}


@pytest.mark.parametrize("case", BROKEN_BASELINES, ids=list(BROKEN_BASELINES))
def test_a_broken_first_document_is_no_baseline(tmp_path, source_server, case):
    first = agencies(20)
    bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml(BROKEN_BASELINES[case](first))))

    result = bot.poll()

    assert result.outcome == "suspect"
    assert "not recording it as the baseline" in result.summary
    assert bot.agencies() == {} and bot.changes() == []
    serve(source_server, first)
    assert bot.poll().outcome == "baseline"  # the next good document is the baseline


def test_a_first_document_with_a_few_incomplete_records_is_a_baseline(tmp_path, source_server):
    first = agencies(20)
    broken = [renamed(a, city="", state="") if i < 2 else a for i, a in enumerate(first)]
    bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml(broken)))

    assert bot.poll().outcome == "baseline"


# --- churn: field changes that do not alert ------------------------------------------------


def test_every_video_count_changing_is_one_compact_row_and_still_in_the_change_log(
    start, source_server, capsys
):
    first = agencies(40)
    bot = start(first)
    counts = [renamed(a, video_requests=a.video_requests + 1) for a in first]
    moved = renamed(counts[3], lat=first[3].lat + 0.02)  # an alerting change stays a row
    serve(source_server, [*counts[:3], moved, *counts[4:]])
    capsys.readouterr()

    assert bot.poll().outcome == "ok"

    churn = bot.rows("select field, agencies, length(data) as bytes from churn")
    assert [(c["field"], c["agencies"]) for c in churn] == [("video_requests", 39)]
    logged = bot.rows("select kind, fields from changes where kind != 'baseline'")
    assert logged == [{"kind": "changed", "fields": '["coordinates", "video_requests"]'}]
    listed = bot.changes(kinds=("changed",))
    assert len(listed) == 40
    by_name = {row["name"]: row for row in listed}
    for agency in first:
        row = by_name[agency.name]
        assert row["before"]["video_requests"] == agency.video_requests
        assert row["after"]["video_requests"] == agency.video_requests + 1
        assert (row["city"], row["state"]) == (agency.city, agency.state)
    assert by_name[first[3].name]["id"] is not None  # a change-log row
    assert by_name[first[0].name]["id"] is None  # churn, read back per agency
    assert "New partnership" not in capsys.readouterr().out
    state = first[0].state
    in_state = bot.changes(kinds=("changed",), states=(state,))
    assert {row["name"] for row in in_state} == {a.name for a in first if a.state == state}
