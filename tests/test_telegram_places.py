"""Following a town, county or radius on Telegram, and "/check my town", on the real wire
(the Bot API stub) with the bundled ZIP codes and county outlines."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from bot.areas import County, Place
from bot.store import Store
from tests.support.bot import Bot
from tests.support.cli import run_cli
from tests.support.source_server import SourceServer
from tests.support.synthetic import SyntheticAgency, to_kml
from tests.support.telegram import (
    BASE,
    PATH,
    Say,
    drive_commands,
    plain,
    start_bot,
    telegram_section,
    texts,
)
from tests.support.telegram_stub import TelegramStub

pytestmark = pytest.mark.usefixtures("telegram_env")


def located(name: str, city: str, state: str, lat: float, lon: float) -> SyntheticAgency:
    return SyntheticAgency(name=name, city=city, state=state, active_date="2020-06-03",
                           video_requests=0, profile_url=f"https://ring.com/agency/{city}",
                           lat=lat, lon=lon)  # fmt: skip


CRYSTAL = located("Crystal Police Department", "Crystal", "MN", 45.0327, -93.3602)
DULUTH = located("Duluth Police Department", "Duluth", "MN", 46.7867, -92.1005)
AUSTIN = located("Austin Police Department", "Austin", "TX", 30.2672, -97.7431)
EDINA = located("Edina Police Department", "Edina", "MN", 44.8897, -93.3499)  # Hennepin, 10+ mi
NEW_HOPE = located("New Hope Police Department", "New Hope", "MN", 45.0380, -93.3866)


@pytest.fixture
def bot(tmp_path: Path, source_server: SourceServer, stub: TelegramStub) -> Bot:
    # a user here sends more commands than the default budget allows in 10 seconds
    section = telegram_section(stub, channel=None, threshold=5, extra="commands_per_user = 50")
    return start_bot(tmp_path, source_server, section)


@pytest.fixture
def stub():
    with TelegramStub() as server:
        yield server


def follows(store: Store, chat: int) -> tuple | None:
    subscriber = store.subscribers.get("telegram", str(chat))
    if subscriber is None or not subscriber.active:
        return None
    return subscriber.states, subscriber.counties, subscriber.places


def test_places_counties_and_states_each_get_their_own_alerts(
    bot: Bot, stub: TelegramStub, source_server: SourceServer, caplog
):
    async def script(say: Say, store: Store) -> None:
        reply = await say(301, "/near 55427 10")
        assert "within 10 miles of ZIP 55427" in reply and "/near 15" in reply
        reply = await say(302, "", location=(45.004_321, -93.391_234))
        assert "within 25 miles of a shared location" in reply and "/near 15" in reply
        # kept to 0.01°, nothing finer
        assert follows(store, 302)[2] == (Place(45.0, -93.39, 25.0),)
        assert "Hennepin County, MN" in await say(303, "/county Hennepin MN")
        assert "TX" in await say(304, "/subscribe TX")
        reply = await say(305, "/subscribe MN")
        await say(305, "/county St. Louis County, Minnesota")
        await say(305, "/near 55427")
        assert await say(305, "/following") == (
            "You follow: Minnesota; St. Louis County, MN; within 25 miles of ZIP 55427."
        )
        assert "within 15 miles of ZIP 55427" in await say(301, "/near 15")

    with caplog.at_level(logging.DEBUG):
        drive_commands(bot.config_path, stub, script)
        source_server.serve(PATH, to_kml([*BASE, CRYSTAL, DULUTH, AUSTIN, EDINA]))
        bot.poll()

    def names(chat: int) -> list[str]:
        alerts = [plain(t) for t in texts(stub, chat) if plain(t).startswith("New partnership")]
        return sorted(text.split(": ", 1)[1].split(",")[0] for text in alerts)

    assert names(301) == ["Crystal PD", "Edina PD"]  # Edina is 11 miles from the ZIP
    assert names(302) == ["Crystal PD", "Edina PD"]
    assert names(303) == ["Crystal PD", "Edina PD"]
    assert names(304) == ["Austin PD"]
    assert names(305) == ["Crystal PD", "Duluth PD", "Edina PD"]
    # ringwatch's own log at every level, and everything at INFO and above (the Bot API
    # client's DEBUG lines echo whole requests: a deployment never runs at that level)
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if r.name.startswith("bot") or r.levelno >= logging.INFO)  # fmt: skip
    for private in ("55427", "45.0", "-93.39", "Hennepin County, MN"):
        assert private not in logged


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        ("/near 00000", "No US ZIP code 00000"),
        ("/near 55427 0", "above 0 and at most 250 miles"),
        ("/near 55427 300mi", "above 0 and at most 250 miles"),
        ("/near 55427 <b>far</b>", "That is not a distance"),
        ("/near", "Which place?"),
        ("/near 15", "Name a ZIP code first"),
        ("/county Hennipen MN", "No Hennipen County in MN; did you mean Hennepin?"),
        ("/county <i>x</i> MN", "No <i>x</i> County in MN"),
        ("/county Hennepin", "Name a county and its state"),
        ("/check Springfield", "Name a town and its state, or a ZIP code"),
        ("/check Nowhereville MN", "I know no town Nowhereville in MN"),
    ],
)
def test_a_bad_place_gets_one_short_answer_and_changes_nothing(
    bot: Bot, stub: TelegramStub, command: str, answer: str
):
    async def script(say: Say, store: Store) -> None:
        await say(401, "/subscribe WI")
        before = follows(store, 401)
        reply = await say(401, command)
        assert answer in reply  # escaped: the user's markup arrives as text
        assert follows(store, 401) == before

    drive_commands(bot.config_path, stub, script)
    assert "<b>" not in stub.texts(401)[-1] and "<i>" not in stub.texts(401)[-1]


def test_a_location_outside_the_united_states_is_refused(bot: Bot, stub: TelegramStub):
    async def script(say: Say, store: Store) -> None:
        assert "not in the United States" in await say(402, "", location=(48.85, 2.35))
        assert follows(store, 402) is None

    drive_commands(bot.config_path, stub, script)


def test_check_answers_for_a_listed_town_an_unlisted_one_and_a_zip(
    tmp_path: Path, source_server: SourceServer, stub: TelegramStub
):
    section = telegram_section(stub, channel=None)
    url = source_server.serve(PATH, to_kml([CRYSTAL, DULUTH, EDINA, NEW_HOPE]))
    created = Bot.create(tmp_path, url, section)
    assert created.poll().outcome == "baseline"

    async def script(say: Say, store: Store) -> None:
        listed = await say(501, "/check Crystal MN")
        assert listed.startswith(
            "Crystal Police Department (Crystal, MN, Hennepin County) has partnered with Ring "
            "since 2020-06-03."
        )
        assert "Within 10 miles: 1 more: New Hope Police Department, 1 mile" in listed
        unlisted = await say(501, "/check Plymouth, MN")
        assert unlisted.startswith(
            "No partnership listed for Plymouth, MN. Nearest: New Hope Police Department, "
            "4 miles (since 2020-06-03); Crystal Police Department, 5 miles (since 2020-06-03);"
        )
        assert unlisted.endswith("Duluth Police Department, 138 miles (since 2020-06-03).")
        by_zip = await say(501, "/check 55427")
        # the towns the ZIP code serves: New Hope and Crystal, nearest first
        assert by_zip.startswith("New Hope Police Department (New Hope, MN, Hennepin County)")
        assert "\nCrystal Police Department (Crystal, MN, Hennepin County) has" in by_zip

    drive_commands(created.config_path, stub, script)


def test_off_and_unsubscribe_forget_places_and_groups_need_an_admin(bot: Bot, stub: TelegramStub):
    group = -700
    stub.admins[str(group)] = {8}

    async def script(say: Say, store: Store) -> None:
        await say(601, "/near 55427 10")
        await say(601, "/county Hennepin MN")
        assert (
            await say(601, "/near off") == "No place followed now. You follow: Hennepin County, MN."
        )
        assert await say(601, "/county off") == "No county followed now. You follow: everything."
        await say(601, "/near 55427 10")
        assert "Unsubscribed" in await say(601, "/unsubscribe")
        row = store.db.execute(
            "select counties, places from subscribers where chat_id = '601'"
        ).fetchone()
        assert tuple(row) == ("[]", "[]")
        assert "Only an administrator" in await say(group, "/near 55427", user_id=7)
        assert "Only an administrator" in await say(group, "/county Hennepin MN", user_id=7)
        assert store.subscribers.get("telegram", str(group)) is None
        assert "within 25 miles" in await say(group, "/near 55427", user_id=8)
        assert store.subscribers.get("telegram", str(group)).counties == ()
        help_text = await say(602, "/help")
        for command in ("/near", "/county", "/following", "/check", "rounded to about 1 km"):
            assert command in help_text

    drive_commands(bot.config_path, stub, script)


def test_status_counts_subscribers_by_kind_and_shows_no_place(bot: Bot, stub: TelegramStub):
    store = Store.open(bot.config.db_path)
    try:
        store.subscribers.subscribe("telegram", "1", states=["MN"])
        store.subscribers.subscribe("telegram", "2", states=None,
                                    places=(Place(45.004, -93.391, 10.0, "55427"),))  # fmt: skip
        store.subscribers.subscribe("telegram", "3", states=None,
                                    counties=(County("MN", "Hennepin County"),))  # fmt: skip
    finally:
        store.close()
    status = run_cli("status", "--config", str(bot.config_path))
    assert "3 active subscribers (1 by state, 1 by place, 1 by county)" in status.stdout
    for private in ("55427", "45.0", "Hennepin"):
        assert private not in status.stdout + status.stderr
    with sqlite3.connect(bot.config.db_path) as db:  # the place is kept only with its chat
        tables = [t for (t,) in db.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            text = "\n".join(map(repr, db.execute(f"select * from [{table}]")))
            assert ("55427" in text) == (table == "subscribers"), table
