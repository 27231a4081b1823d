"""The Telegram channel through python-telegram-bot against a real Bot API stub on 127.0.0.1.

Subscriptions come from real updates (getUpdates), alerts leave through sendMessage,
and every assertion is about what arrived at which chat, or what the database holds.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from bot.channels import configure
from bot.channels.telegram import TelegramChannel, visible_length
from bot.channels.telegram_commands import Verdict, command_verdict, parse_states, summarise
from bot.config import load_config
from bot.deliver import deliver_pending
from bot.models import OutboxMessage
from bot.store import Store
from bot.store.subscribers import Subscriber
from bot.store.times import epoch_time
from tests.support.bot import Bot, config_text
from tests.support.cli import run_cli, start_cli, write_config
from tests.support.clock import Clock
from tests.support.http import closed_port_url
from tests.support.leaks import database_text, leaked
from tests.support.outbox import make_due
from tests.support.source_server import Reply, SourceServer
from tests.support.synthetic import to_kml
from tests.support.telegram import (
    ADMIN,
    BASE,
    CHANNEL,
    PATH,
    SMALL_MAP_GUARD,
    Say,
    agency,
    drive_commands,
    plain,
    start_bot,
    subscribe,
    telegram_section,
    texts,
)
from tests.support.telegram_stub import CHAT_NOT_FOUND, DEFAULT_TOKEN, Fault, TelegramStub, flood
from tests.support.wait import wait_for

pytestmark = pytest.mark.usefixtures("telegram_env")


@pytest.fixture
def stub() -> Iterator[TelegramStub]:
    with TelegramStub() as server:
        yield server


@pytest.fixture
def bot(tmp_path: Path, source_server: SourceServer, stub: TelegramStub) -> Bot:
    return start_bot(tmp_path, source_server, telegram_section(stub))


@pytest.fixture
def private_bot(tmp_path: Path, source_server: SourceServer, stub: TelegramStub) -> Bot:
    """No channel: only subscribers' private chats, paced 1 a second each."""
    return start_bot(tmp_path, source_server, telegram_section(stub, channel=None))


@pytest.fixture
def card_bot(tmp_path: Path, source_server: SourceServer, stub: TelegramStub) -> Bot:
    """private_bot with map cards (the default outside these tests)."""
    return start_bot(tmp_path, source_server, telegram_section(stub, channel=None, images=True))


def test_commands_subscribe_unsubscribe_and_filter_by_state(bot: Bot, stub: TelegramStub):
    def states_of(store: Store, chat: int) -> list[str] | str | None:
        subscriber = store.subscribers.get("telegram", str(chat))
        if subscriber is None or not subscriber.active:
            return "not subscribed"
        return list(subscriber.states) if subscriber.states else None

    async def script(say: Say, store: Store) -> None:
        assert "MN, WI" in await say(101, "/subscribe MN WI")
        assert states_of(store, 101) == ["MN", "WI"]
        assert "every state" in await say(102, "/start")
        assert states_of(store, 102) is None
        assert "every state" in await say(103, "/subscribe")
        assert states_of(store, 103) is None
        assert "Unsubscribed" in await say(102, "/unsubscribe")
        assert states_of(store, 102) == "not subscribed"
        assert "MN, WI" in await say(101, "/states")
        assert "Not a US state: Narnia" in await say(103, "/subscribe MN Narnia")
        assert states_of(store, 103) is None  # a typo changes nothing
        assert "NY" in await say(105, "/subscribe New York")
        assert states_of(store, 105) == ["NY"]
        assert "only understand commands" in await say(104, "hello bot")
        assert "don't know that command" in await say(106, "/frobnicate")
        assert "/subscribe" in await say(107, "/help")
        assert states_of(store, 104) == "not subscribed"
        assert "10 active partnerships" in await say(108, "/stats")
        assert "No changes recorded yet" in await say(109, "/latest")

    drive_commands(bot.config_path, stub, script)
    registered = [c["command"] for c in stub.commands]
    assert registered == ["start", "subscribe", "unsubscribe", "states", "near", "county",
                          "following", "check", "latest", "stats", "help"]  # fmt: skip
    replies = stub.calls_to("sendMessage")
    assert all(c.params["parse_mode"] == "HTML" for c in replies)


def test_only_group_admins_change_a_group_and_only_maintainers_get_status(
    bot: Bot, stub: TelegramStub
):
    group = -500
    stub.admins[str(group)] = {8}

    async def script(say: Say, store: Store) -> None:
        refused = await say(group, "/subscribe MN", user_id=7)
        assert "Only an administrator" in refused
        assert store.subscribers.get("telegram", str(group)) is None
        assert "MN" in await say(group, f"/subscribe@{'ringwatch_test_bot'} MN", user_id=8)
        assert "for the maintainers" in await say(104, "/status")  # in parallel with the group
        status = await say(ADMIN, "/status")
        assert "Agencies tracked: 10" in status
        assert "Failed or suspect polls in a row: 0" in status

    drive_commands(bot.config_path, stub, script)
    assert stub.calls_to("getChatMember")


def test_state_names_parse_to_codes():
    assert parse_states(["mn,", "Wisconsin", "New", "York", "west", "virginia"]) == (
        ["MN", "NY", "WI", "WV"],
        [],
    )
    assert parse_states(["MN", "Atlantis"]) == (["MN"], ["Atlantis"])


# --- one user cannot silence the bot ---------------------------------------------------------

FLOODER, OTHER = 7001, 7002


async def answered(stub: TelegramStub, chat: int, count: int = 1, timeout: float = 60) -> None:
    """Wait (without blocking the listener's loop) until `chat` has `count` answers."""
    unanswered = f"chat {chat} got no answer"
    await asyncio.to_thread(wait_for, lambda: len(stub.texts(chat)) >= count, timeout, unanswered)


def listen_during(config_path: Path, script: Callable[[], Awaitable[None]]) -> None:
    """Run the command listener while `script` runs; stopping it must not take long."""
    config = configure(load_config(config_path))

    async def main() -> None:
        store = Store.open(config.db_path)
        stop = asyncio.Event()
        channel = TelegramChannel(config)
        tasks = [asyncio.create_task(t) for t in channel.background_tasks(store, stop)]
        try:
            await script()
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
            store.close()

    asyncio.run(main())


def test_a_flooding_user_gets_a_few_answers_and_one_slow_down_while_others_get_theirs(
    tmp_path: Path, source_server: SourceServer, stub: TelegramStub
):
    # A window longer than the test: exactly the allowed answers, however slow the machine.
    # Two of them (not the default 5): a chat's answers are paced a second apart.
    extra = 'command_window = "1h"\ncommands_per_user = 2\n'
    bot = start_bot(tmp_path, source_server, telegram_section(stub, channel=None, extra=extra))

    async def script() -> None:
        for _ in range(500):
            stub.user_says(FLOODER, "/help")
        asked = time.monotonic()
        stub.user_says(OTHER, "/help")
        await answered(stub, OTHER)
        print(f"/help answered {time.monotonic() - asked:.2f}s into the flood")  # the report
        await answered(stub, FLOODER, 2 + 1)  # paced at one a second: they come later

    listen_during(bot.config_path, script)

    assert "/subscribe" in plain(stub.texts(OTHER)[0])
    flooder = [plain(text) for text in stub.texts(FLOODER)]
    assert len(flooder) == 2 + 1  # telegram.commands_per_user, then one "slow down"
    assert flooder[-1].startswith("Slow down: I answer 2 commands every 3600 seconds")
    assert sum("/subscribe" in text for text in flooder) == 2


def test_a_subscribe_with_thousands_of_junk_words_gets_one_reply_under_the_limit(
    bot: Bot, stub: TelegramStub
):
    junk = [f"<junk{i}>" for i in range(5000)]

    async def script() -> None:
        stub.user_says(OTHER, "/subscribe " + " ".join(junk))
        await answered(stub, OTHER)

    listen_during(bot.config_path, script)

    (reply,) = stub.texts(OTHER)
    assert visible_length(reply) <= 4096
    assert plain(reply).startswith("Not a US state: <junk0>, <junk1>, ")
    shown = plain(reply).count("<junk")
    assert f" and {5000 - shown:,} more." in plain(reply)
    assert store_subscriber(bot, OTHER) is None


def test_a_status_too_long_for_telegram_arrives_cut_as_plain_text(
    tmp_path: Path, source_server: SourceServer, stub: TelegramStub
):
    long_url = source_server.url(PATH) + "?mid=" + "x" * 1500  # each error quotes it
    source_server.serve(PATH, to_kml(BASE))
    bot = Bot.create(tmp_path, long_url, telegram_section(stub, channel=None))
    assert bot.poll().outcome == "baseline"
    source_server.serve(PATH, Reply(b"gone", status=404))
    for _ in range(3):
        assert bot.poll().outcome == "failed"

    async def script() -> None:
        stub.user_says(ADMIN, "/status")
        await answered(stub, ADMIN, len(stub.texts(ADMIN)) + 1)

    listen_during(bot.config_path, script)

    status = stub.texts(ADMIN)[-1]
    assert len(status) <= 4096 and status.endswith("…")
    assert status.startswith("Agencies tracked: 10\nFailed or suspect polls in a row: 3")
    assert "parse_mode" not in stub.calls_to("sendMessage")[-1].params


def store_subscriber(bot: Bot, chat: int) -> Subscriber | None:
    store = Store.open(bot.config.db_path, readonly=True)
    try:
        return store.subscribers.get("telegram", str(chat))
    finally:
        store.close()


def test_stopping_drops_queued_commands_instead_of_answering_them_all(
    tmp_path: Path, source_server: SourceServer, stub: TelegramStub
):
    extra = "commands_per_user = 1000\n"
    bot = start_bot(tmp_path, source_server, telegram_section(stub, channel=None, extra=extra))
    stub.send_delay = 0.2  # 300 answers would take a minute

    async def script() -> None:
        for _ in range(300):
            stub.user_says(FLOODER, "/help")
        await answered(stub, FLOODER)

    listen_during(bot.config_path, script)  # its stop waits at most 60 s

    assert len(stub.texts(FLOODER)) < 100


# (answered at, warned at, now, verdict) with 5 commands per 10 s: the rule as a table.
VERDICTS = [
    ([], None, 100.0, Verdict.ANSWER),
    ([91, 92, 93, 94], None, 100.0, Verdict.ANSWER),  # the 5th in the window
    ([91, 92, 93, 94, 95], None, 100.0, Verdict.SLOW_DOWN),  # the 6th: told once
    ([91, 92, 93, 94, 95], 99.0, 100.0, Verdict.DROP),  # then silence
    ([91, 92, 93, 94, 95], 40.0, 100.0, Verdict.SLOW_DOWN),  # a minute later, told again
    ([89, 92, 93, 94, 95], 99.0, 100.0, Verdict.ANSWER),  # the oldest left the window
]


@pytest.mark.parametrize(("answered_at", "warned", "now", "verdict"), VERDICTS)
def test_when_a_users_command_is_answered(answered_at, warned, now, verdict):
    assert command_verdict(answered_at, warned, now, limit=5, window=10) is verdict


def test_quoted_input_is_summarised_and_escaped():
    assert summarise(["foo", "bar"]) == "foo, bar"
    assert summarise(["<b>", "x" * 100]) == "&lt;b&gt;, " + "x" * 39 + "…"
    many = summarise([f"w{i}" for i in range(5000)], budget=20)
    assert many == "w0, w1, w2, w3, w4 and 4,995 more"


# --- fan-out ------------------------------------------------------------------------------


def test_channel_and_subscribers_get_what_matches_their_filter(
    bot: Bot, stub: TelegramStub, source_server: SourceServer
):
    subscribe(bot, 201, None)  # everything: 3 changes > threshold 2 → one digest
    subscribe(bot, 202, ["MN"])  # 2 MN changes ≤ 2 → single messages
    subscribe(bot, 203, ["TX"])  # nothing matches → nothing at all
    subscribe(bot, 204, ["WI"])
    added = [agency(f"North{i} Police Department", "MN", 20 + i) for i in range(2)]
    added.append(agency("Madison Police Department", "WI", 30))
    source_server.serve(PATH, to_kml(BASE + added))

    bot.poll()

    channel, everything = texts(stub, CHANNEL), texts(stub, 201)
    assert len(channel) == 1 and len(everything) == 1
    for digest in (channel[0], everything[0]):
        assert "3 new partnerships in 2 states" in plain(digest)
        assert all(f"North{i} PD, MN" in plain(digest) for i in range(2))
        assert "Madison PD, WI" in plain(digest)
    assert [plain(t).split(" (")[0] for t in texts(stub, 202)] == [
        f"New partnership: North{i} PD, MN" for i in range(2)
    ]
    assert texts(stub, 203) == []
    assert [plain(t) for t in texts(stub, 204)] == [
        "New partnership: Madison PD, WI (active since 2020-06-01)"
    ]
    # The maintainer got the baseline notice, and no alerts (not subscribed).
    admin = texts(stub, ADMIN)
    assert len(admin) == 1 and "now tracking 10" in plain(admin[0])
    sends = stub.calls_to("sendMessage")
    assert all(c.params["parse_mode"] == "HTML" for c in sends)
    assert all(json.loads(c.params["link_preview_options"])["is_disabled"] for c in sends)


def test_source_values_arrive_escaped_and_linked(
    bot: Bot, stub: TelegramStub, source_server: SourceServer
):
    subscribe(bot, 201, None)
    odd = agency("Crystal <b>PD</b> & Co", "MN", 40, profile="https://ring.com/a?x=1&y=<2>")
    source_server.serve(PATH, to_kml([*BASE, odd]))

    bot.poll()

    (sent,) = texts(stub, 201)
    assert "Crystal &lt;b&gt;PD&lt;/b&gt; &amp; Co" in sent
    assert '<a href="https://ring.com/a?x=1&amp;y=&lt;2&gt;">' in sent
    assert plain(sent).startswith("New partnership: Crystal <b>PD</b> & Co, MN")


def test_a_digest_over_4096_characters_is_split_at_lines_and_loses_nobody(
    private_bot: Bot, stub: TelegramStub, source_server: SourceServer
):
    bot = private_bot
    subscribe(bot, 201, None)
    many = [
        agency(f"Longname{i:03d} County Sheriff's Office Division", "MN", 100 + i)
        for i in range(90)
    ]
    source_server.serve(PATH, to_kml(BASE + many))

    bot.poll()

    parts = texts(stub, 201)
    assert len(parts) >= 2
    assert all(visible_length(p) <= 4096 for p in parts)
    assert all(p.count("<a ") == p.count("</a>") for p in parts)  # no tag cut in two
    lines = [line for p in parts for line in plain(p).splitlines()]
    for i in range(90):
        assert sum(f"Longname{i:03d} " in line for line in lines) == 1


# --- failures -----------------------------------------------------------------------------


def test_a_flood_wait_is_honoured_and_nothing_is_dropped(
    tmp_path: Path, stub: TelegramStub, source_server: SourceServer
):
    # 5 a second: the first send's 429 is back long before the next send is due.
    section = telegram_section(stub, extra="messages_per_second = 5")
    bot = start_bot(tmp_path, source_server, section)
    for chat in (201, 202, 203):
        subscribe(bot, chat, None)
    source_server.serve(PATH, to_kml([*BASE, agency("Crystal Police Department", "MN", 50)]))
    stub.fail_next("*", flood(1))

    bot.poll()

    (flooded,) = [c for c in stub.calls_to("sendMessage") if c.status == 429]
    (retry,) = [r for r in bot.outbox() if (r["last_error"] or "").lower().startswith("flood wait")]
    assert retry["status"] == "pending" and retry["attempts"] == 0  # a wait is no failure
    wait_for(lambda: time.time() >= epoch_time(retry["next_attempt_at"]), timeout=5)
    bot.deliver()
    for chat in (CHANNEL, 201, 202, 203):
        assert len(texts(stub, chat)) == 1, chat
    during_wait = [c for c in stub.calls_to("sendMessage") if flooded.at < c.at < flooded.at + 1.0]
    assert during_wait == []
    assert {r["status"] for r in bot.outbox()} == {"sent"}


def test_a_long_flood_wait_ends_the_round_instead_of_holding_it(
    tmp_path: Path, stub: TelegramStub, source_server: SourceServer
):
    # 5 a second: the first send's 429 is back long before the next send is due.
    section = telegram_section(stub, channel=None, extra="messages_per_second = 5")
    private_bot = start_bot(tmp_path, source_server, section)
    for chat in range(201, 206):
        subscribe(private_bot, chat, None)
    source_server.serve(PATH, to_kml([*BASE, agency("Crystal Police Department", "MN", 50)]))
    stub.fail_next("*", flood(3600))

    round_ = threading.Thread(target=private_bot.poll, daemon=True)
    round_.start()
    round_.join(timeout=60)

    assert not round_.is_alive()  # senders waiting for their turn did not wait out the hour
    rows = [r for r in private_bot.outbox() if r["recipient"] != str(ADMIN)]
    assert {r["status"] for r in rows} == {"pending"}
    assert all(epoch_time(r["next_attempt_at"]) >= time.time() + 3000 for r in rows)
    # The admin's baseline notice, then the one send that was told to wait.
    assert [c.status for c in stub.calls_to("sendMessage")] == [200, 429]


def test_blocked_and_vanished_chats_are_deactivated_not_retried(
    private_bot: Bot, stub: TelegramStub, source_server: SourceServer
):
    bot = private_bot
    for chat in (301, 302, 303):
        subscribe(bot, chat, None)
    stub.blocked.add("301")
    stub.fail_next(302, CHAT_NOT_FOUND)
    two = [agency("Crystal Police Department", "MN", 50), agency("Eagan Police", "MN", 51)]
    source_server.serve(PATH, to_kml(BASE + two))

    bot.poll()
    bot.deliver()

    assert [c.params["chat_id"] for c in stub.calls_to("sendMessage")].count("301") == 1
    assert [c.params["chat_id"] for c in stub.calls_to("sendMessage")].count("302") == 1
    assert len(texts(stub, 303)) == 2
    rows = {r["chat_id"]: r for r in bot.rows("select * from subscribers")}
    assert rows["301"]["active"] == 0 and "blocked" in rows["301"]["reason"]
    assert rows["302"]["active"] == 0 and "not found" in rows["302"]["reason"]
    assert rows["303"]["active"] == 1
    statuses = Counter(r["status"] for r in bot.outbox() if r["recipient"] in ("301", "302"))
    assert statuses == {"failed": 2, "skipped": 2}


def test_an_unreachable_configured_channel_fails_one_message_not_the_queue(
    bot: Bot, stub: TelegramStub, source_server: SourceServer
):
    stub.fail_next(CHANNEL, CHAT_NOT_FOUND)  # e.g. the bot is not yet an admin there
    two = [agency("Crystal Police Department", "MN", 50), agency("Eagan Police", "MN", 51)]
    source_server.serve(PATH, to_kml(BASE + two))

    bot.poll()

    rows = bot.outbox(recipient=CHANNEL)
    assert [r["status"] for r in rows] == ["failed", "sent"]  # the next alert still went out
    assert len(texts(stub, CHANNEL)) == 1


def test_network_errors_are_retried_with_backoff(
    private_bot: Bot, stub: TelegramStub, source_server: SourceServer
):
    bot = private_bot
    subscribe(bot, 401, None)
    stub.fail_next(401, Fault(502, "Bad Gateway"))
    source_server.serve(PATH, to_kml([*BASE, agency("Crystal Police Department", "MN", 50)]))

    bot.poll()

    (row,) = bot.outbox(recipient="401")
    assert row["status"] == "pending" and row["attempts"] == 1
    assert "NetworkError" in row["last_error"]
    assert epoch_time(row["next_attempt_at"]) > time.time()
    bot.deliver()  # the backoff has not passed: nothing goes to 401 yet
    assert texts(stub, 401) == []
    bot.deliver(Clock().until_due(bot.config.db_path))  # the backoff has passed
    assert len(texts(stub, 401)) == 1


def test_a_group_that_became_a_supergroup_is_followed(
    private_bot: Bot, stub: TelegramStub, source_server: SourceServer
):
    bot = private_bot
    subscribe(bot, -600, ["MN"])
    stub.fail_next(
        -600,
        Fault(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            migrate_to_chat_id=-100600,
        ),
    )
    source_server.serve(PATH, to_kml([*BASE, agency("Crystal Police Department", "MN", 50)]))

    bot.poll()

    assert len(texts(stub, -100600)) == 1 and texts(stub, -600) == []
    (row,) = bot.rows("select * from subscribers where active = 1")
    assert row["chat_id"] == "-100600" and json.loads(row["states"]) == ["MN"]


def test_an_attachment_goes_as_a_photo_with_its_caption_or_before_a_long_text(
    private_bot: Bot, stub: TelegramStub, tmp_path: Path
):
    chart = tmp_path / "chart.png"
    chart.write_bytes(b"\x89PNG fake chart bytes")
    long_text = "\n".join(f"line {i}: <b>Crystal</b> &amp; more" for i in range(80))
    store = Store.open(private_bot.config.db_path)
    store.outbox.queue(
        None,
        [
            OutboxMessage(
                "telegram", "201", "summary", "s:1", "<b>Weekly</b>", attachment=str(chart)
            ),
            OutboxMessage("telegram", "202", "summary", "s:1", long_text, attachment=str(chart)),
        ],
    )
    store.close()

    private_bot.deliver()

    (captioned,) = [s for s in stub.sent if s.chat_id == "201"]
    assert captioned.photo == chart.read_bytes() and captioned.text == "<b>Weekly</b>"
    assert captioned.params["parse_mode"] == "HTML"
    photo, text = [s for s in stub.sent if s.chat_id == "202"]
    assert photo.photo == chart.read_bytes() and photo.text == ""
    assert text.photo is None and text.text == long_text


def test_a_rejected_token_or_an_unreachable_api_keeps_messages_queued(
    private_bot: Bot, stub: TelegramStub, source_server: SourceServer, monkeypatch
):
    subscribe(private_bot, 201, None)
    source_server.serve(PATH, to_kml([*BASE, agency("Crystal Police Department", "MN", 50)]))
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "654321:WRONG-token")

    private_bot.poll()

    (row,) = private_bot.outbox(recipient="201")
    assert row["status"] == "pending" and "rejected TELEGRAM_BOT_TOKEN" in row["last_error"]
    assert "WRONG" not in row["last_error"]
    assert texts(stub, 201) == []

    stub.stop()  # now nobody answers at all
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", DEFAULT_TOKEN)
    report = private_bot.deliver(Clock().until_due(private_bot.config.db_path))
    (row,) = private_bot.outbox(recipient="201")
    assert report.failed["telegram"] == 0
    assert row["status"] == "pending" and "Bot API unreachable" in row["last_error"]


def test_a_missing_token_is_a_config_problem(tmp_path: Path, stub: TelegramStub):
    path = write_config(tmp_path, telegram_section(stub))
    result = run_cli("check-config", "--config", str(path), env={"TELEGRAM_BOT_TOKEN": ""})
    assert result.returncode == 2
    assert "TELEGRAM_BOT_TOKEN is not set" in result.stderr


def test_a_dripping_bot_api_answer_is_a_failed_attempt_and_holds_up_nothing(
    tmp_path: Path, stub: TelegramStub, source_server: SourceServer
):
    limits = 'send_timeout = "2s"\n'
    bot = start_bot(tmp_path, source_server, telegram_section(stub, channel=None) + limits)
    chats = [301, 302, 303]
    for chat in chats:
        subscribe(bot, chat, None)
    source_server.serve(PATH, to_kml([*BASE, agency("Crystal Police Department", "MN", 50)]))
    bot.poll(deliver=False)
    stub.drip_to.add("301")  # headers, then a byte a second: minutes for the whole answer

    bot.deliver()

    rows = {r["recipient"]: r for r in bot.outbox() if r["recipient"] != str(ADMIN)}
    assert rows["301"]["status"] == "pending" and rows["301"]["attempts"] == 1
    assert "no answer within 2s" in rows["301"]["last_error"]
    assert [len(texts(stub, chat)) for chat in (302, 303)] == [1, 1]  # not held up
    status = run_cli("status", env={"RINGWATCH_CONFIG": str(bot.config_path)})
    assert re.search(r"telegram: 1 pending, 3 sent; oldest waiting \d+m \(queued 2", status.stdout)
    stub.drip_to.clear()
    bot.deliver(Clock().until_due(bot.config.db_path))
    assert {r["status"] for r in bot.outbox()} == {"sent"}
    assert texts(stub, 301)  # (twice, if the dripped answer's message was kept: at least once)


# --- an outage, compressed with a controllable clock ---------------------------------------


def next_due(bot: Bot) -> float | None:
    """When the next round has work: the earliest retry time of a recipient's first pending
    row (the rows behind it wait for it), or None when nothing is pending."""
    first: dict[tuple[str, str], str] = {}
    for row in bot.outbox(status="pending"):  # in id order: the first row of each recipient
        first.setdefault((row["channel"], row["recipient"]), row["next_attempt_at"])
    return min(map(epoch_time, first.values()), default=None)


def deliver_until(bot: Bot, clock: Clock, until: float, step: float = 10.0) -> None:
    """Delivery rounds every `step` seconds of clock time (as `run` does) until `until`.

    A round in which no recipient's first pending row is due does nothing (the rows behind
    a retry wait for it), so the clock moves on to the next round that has one. Each round
    has a fresh channel, as a `ringwatch deliver` from cron has: one channel's pacer spaces
    a chat's sends a real second apart, which would stretch a compressed hour of retries to
    as many seconds.
    """
    config = bot.config
    store = Store.open(config.db_path)
    start, rounds = clock.now, 0
    try:
        while clock.now < until:
            asyncio.run(
                deliver_pending(
                    store,
                    [TelegramChannel(config)],
                    alerts=config.alerts,
                    clock=clock,
                    templates=config.templates_path,
                )
            )
            due = next_due(bot)
            rounds += 1
            if due is not None:  # the first round at or after it (1e-9: float noise)
                rounds = max(rounds, math.ceil((due - start) / step - 1e-9))
            clock.now = start + rounds * step
    finally:
        store.close()


def outage_bot(directory: Path, source_server: SourceServer, stub: TelegramStub, alerts: str):
    """Three subscribers with two alerts each, queued; the admin (42) gets warnings."""
    bot = start_bot(directory, source_server, telegram_section(stub, channel=None) + alerts)
    for chat in (301, 302, 303):
        subscribe(bot, chat, None)
    two = [agency("Crystal Police Department", "MN", 50), agency("Eagan Police", "MN", 51)]
    source_server.serve(PATH, to_kml(BASE + two))
    bot.poll(deliver=False)
    return bot


def test_a_30_minute_outage_loses_no_alert_and_repeats_none(
    tmp_path: Path, stub: TelegramStub, source_server: SourceServer
):
    bot = outage_bot(tmp_path, source_server, stub, "")
    expected = {(r["recipient"], r["text"]) for r in bot.outbox() if r["status"] == "pending"}
    assert len(expected) == 6
    clock = Clock()
    start = clock.now
    stub.fail_next("*", Fault(502, "Bad Gateway"), times=10_000)  # a proxy in front, Telegram down

    deliver_until(bot, clock, start + 30 * 60)
    attempts = max(r["attempts"] for r in bot.outbox())
    stub.faults.clear()  # Telegram is back
    deliver_until(bot, clock, start + 60 * 60)

    delivered = Counter((s.chat_id, s.text) for s in stub.sent if s.chat_id != str(ADMIN))
    assert set(delivered) == expected and set(delivered.values()) == {1}  # each exactly once
    assert {r["status"] for r in bot.outbox()} == {"sent"}
    assert attempts >= 8  # what used to exhaust a message
    assert not [t for t in texts(stub, ADMIN) if "could not be delivered" in t]


def test_an_outage_longer_than_give_up_after_fails_warns_once_and_can_be_retried(
    tmp_path: Path, stub: TelegramStub, source_server: SourceServer
):
    bot = outage_bot(tmp_path, source_server, stub, 'give_up_after = "1h"\n')
    clock = Clock()
    for chat in (301, 302, 303):  # their proxy is down; the admin's chat works
        stub.fail_next(chat, Fault(502, "Bad Gateway"), times=10_000)

    # About an hour and a quarter: the first row of each chat gives up at its first retry
    # after an hour (backoff is capped at 15 minutes); the rows waiting behind it failed
    # the same hour and give up with it.
    deliver_until(bot, clock, clock.now + 1.5 * 3600)

    rows = [r for r in bot.outbox() if r["recipient"] != str(ADMIN)]
    assert {r["status"] for r in rows} == {"failed"}
    assert all("undelivered for 1 hour" in r["last_error"] for r in rows)
    (warning,) = [plain(t) for t in texts(stub, ADMIN) if "could not be delivered" in t]
    assert "deliver --retry-failed --channel telegram" in warning

    stub.faults.clear()
    env = {"RINGWATCH_CONFIG": str(bot.config_path)}
    first = run_cli("deliver", "--retry-failed", "--channel", "telegram", env=env)
    second = run_cli("deliver", "--retry-failed", env=env)

    assert first.returncode == 0 and "6 failed messages queued again" in first.stdout
    assert second.returncode == 0 and "0 failed messages queued again" in second.stdout
    delivered = Counter((s.chat_id, s.text) for s in stub.sent if s.chat_id != str(ADMIN))
    assert len(delivered) == 6 and set(delivered.values()) == {1}
    assert {r["status"] for r in bot.outbox()} == {"sent"}


# --- no secret anywhere -------------------------------------------------------------------

# Each failure class, from an upstream that quotes the request (whose URL carries the
# token) in its error: the fault the stub answers, and whether the admin is warned
# (transient failures are given up after give_up_after; the warning reaches the stub).
ECHOED_FAILURES = {
    "401 Unauthorized": (Fault(401, "Unauthorized"), True),
    "400 Bad Request": (Fault(400, "Bad Request: can't parse entities"), False),
    "403 Forbidden": (Fault(403, "Forbidden: bot was blocked by the user"), False),
    "502 Bad Gateway": (Fault(502, "Bad Gateway"), True),
    "connection refused": (None, False),  # nothing reaches the Bot API, not even a warning
    "timeout": (None, True),  # the answer drips in a byte a second
}


@pytest.mark.parametrize("failure", ECHOED_FAILURES)
def test_no_failure_puts_the_token_in_the_database_output_logs_or_messages(
    tmp_path: Path, stub: TelegramStub, source_server: SourceServer, failure: str
):
    fault, warns = ECHOED_FAILURES[failure]
    # Transient failures give up at once (and warn the admin): every path is taken.
    limits = 'give_up_after = "1ms"\nsend_timeout = "2s"\n'
    bot = start_bot(tmp_path, source_server, telegram_section(stub, channel=None) + limits)
    subscribe(bot, 301, None)
    source_server.serve(PATH, to_kml([*BASE, agency("Crystal Police Department", "MN", 50)]))
    bot.poll(deliver=False)
    stub.echo_requests = True
    if fault is not None:
        stub.fail_next(301, fault, times=2)
    elif failure == "timeout":
        stub.drip_to.add("301")
    env = {"RINGWATCH_CONFIG": str(bot.config_path)}
    if failure == "connection refused":
        text = bot.config_path.read_text().replace(stub.base_url, f"{closed_port_url()}/bot")
        bot.config_path.write_text(text)

    output = ""
    for _ in range(3):  # fail, fail again (give up, warn the admin), send the warning
        result = run_cli("deliver", env=env)
        output += result.stdout + result.stderr
        make_due(bot.config.db_path)  # the CLI reads the real clock
    status = run_cli("status", env=env)
    output += status.stdout + status.stderr

    (row,) = bot.outbox(recipient="301")
    assert row["status"] == "failed", row["last_error"]
    if fault is not None and fault.status != 401:  # PTB's 401 message is never stored
        assert "<TELEGRAM_BOT_TOKEN>" in row["last_error"]  # the echo was there, redacted
    sent = "\n".join(s.text for s in stub.sent)
    assert ("could not be delivered" in sent) == warns
    assert leaked(database_text(bot.config.db_path), [DEFAULT_TOKEN]) == []
    assert leaked(output, [DEFAULT_TOKEN]) == []
    assert leaked(sent, [DEFAULT_TOKEN]) == []


# --- crash and restart --------------------------------------------------------------------


def test_kill_during_a_broadcast_then_restart_loses_and_repeats_nothing(
    private_bot: Bot, stub: TelegramStub, source_server: SourceServer
):
    bot = private_bot
    chats = list(range(1001, 1021))
    for chat in chats:
        subscribe(bot, chat, None)
    two = [agency("Crystal Police Department", "MN", 50), agency("Eagan Police", "MN", 51)]
    source_server.serve(PATH, to_kml(BASE + two))
    bot.poll(deliver=False)
    expected = {(r["recipient"], r["text"]) for r in bot.outbox() if r["status"] == "pending"}
    assert len(expected) == 2 * len(chats)

    stub.send_delay = 0.3  # messages stay in flight long enough to be killed mid-request
    process = start_cli("deliver", env={"RINGWATCH_CONFIG": str(bot.config_path)})
    try:
        wait_for(lambda: len(stub.sent) >= 10, timeout=30)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    in_flight = len(bot.outbox(status="sending"))
    assert 0 < len(stub.sent) < len(expected)

    stub.send_delay = 0
    bot.deliver()  # the restart: what was in flight is pending again (release_stale)

    delivered = Counter(
        (s.chat_id, s.text) for s in stub.sent if s.chat_id != str(ADMIN)
    )  # the admin's baseline notice went out before the kill test began
    assert set(delivered) == expected  # nothing lost
    repeats = sum(n - 1 for n in delivered.values())
    assert repeats <= in_flight  # at most the messages in flight at the kill
    assert {r["status"] for r in bot.outbox()} == {"sent"}


# --- `ringwatch run` end to end -----------------------------------------------------------


def test_run_subscribes_users_and_delivers_the_right_alerts(
    tmp_path: Path, stub: TelegramStub, source_server: SourceServer
):
    url = source_server.serve(PATH, to_kml(BASE))
    bot_section = (
        f'[bot]\nstate_dir = "{tmp_path / "state"}"\ninterval = "1s"\njitter = "0.05s"\n'
        'deliver_every = "0.2s"\n'
    )
    # Threshold 1: two changes are a digest for the channel and 502, a single for 501.
    section = telegram_section(stub, threshold=1)
    path = write_config(tmp_path, bot_section + config_text(url, section + SMALL_MAP_GUARD))
    process = start_cli(
        "run",
        env={"RINGWATCH_CONFIG": str(path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stub.user_says(501, "/subscribe MN")
        stub.user_says(502, "/start")
        stub.user_says(503, "/subscribe TX")
        wait_for(lambda: all(texts(stub, c) for c in (501, 502, 503)))
        wait_for(lambda: texts(stub, ADMIN))  # the baseline is in

        added = [agency("Crystal Police Department", "MN", 50), agency("Madison PD", "WI", 51)]
        source_server.serve(PATH, to_kml(BASE + added))
        wait_for(lambda: len(texts(stub, CHANNEL)) == 1)
        wait_for(lambda: len(texts(stub, 502)) == 2)
        wait_for(lambda: len(texts(stub, 501)) == 2)
        stub.user_says(501, "/states")
        stub.user_says(504, "/latest")
        wait_for(lambda: len(texts(stub, 501)) == 3 and texts(stub, 504))
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err

    crystal = "New partnership: Crystal PD, MN (active since 2020-06-01)"
    assert [plain(t) for t in texts(stub, 501)][1:] == [crystal, "You get alerts for MN."]
    for chat in (502, CHANNEL):
        (digest,) = [plain(t) for t in texts(stub, chat) if "new partnerships" in t]
        assert "2 new partnerships in 2 states" in digest
        assert "+ Crystal PD, MN" in digest and "+ Madison PD, WI" in digest
    assert len(texts(stub, 502)) == 2 and len(texts(stub, CHANNEL)) == 1
    assert [plain(t) for t in texts(stub, 503)] == ["Subscribed to alerts for TX."]
    (latest,) = [plain(t) for t in texts(stub, 504)]
    assert "Crystal PD, MN" in latest and "Madison PD, WI" in latest
    assert DEFAULT_TOKEN not in err + out


def test_kill_during_a_broadcast_to_80_repeats_at_most_the_sends_on_the_wire(
    private_bot: Bot, stub: TelegramStub, source_server: SourceServer
):
    """The README's promise: a crash repeats at most `alerts.max_in_flight` messages."""
    bot = private_bot
    chats = list(range(2001, 2081))
    for chat in chats:
        subscribe(bot, chat, None)
    source_server.serve(PATH, to_kml([*BASE, agency("Crystal Police Department", "MN", 50)]))
    bot.poll(deliver=False)
    expected = {(r["recipient"], r["text"]) for r in bot.outbox() if r["status"] == "pending"}
    assert len(expected) == len(chats)

    stub.send_delay = 1.0  # a slow Bot API: many messages would be on the wire at once
    process = start_cli("deliver", env={"RINGWATCH_CONFIG": str(bot.config_path)})
    try:
        wait_for(lambda: len(stub.sent) >= 20, timeout=60)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    stub.send_delay = 0
    bot.deliver()  # the restart

    delivered = Counter((s.chat_id, s.text) for s in stub.sent if s.chat_id != str(ADMIN))
    assert set(delivered) == expected  # nothing lost
    repeats = sum(n - 1 for n in delivered.values())
    print(f"repeated after SIGKILL: {repeats}")
    assert repeats <= bot.config.alerts.max_in_flight


# --- map cards ----------------------------------------------------------------------------


def png_size(png: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image.size


def test_an_alert_arrives_as_its_map_card_with_the_alert_as_caption_uploaded_once(
    card_bot: Bot, stub: TelegramStub, source_server: SourceServer
):
    subscribers = range(1001, 1051)
    for chat in subscribers:
        subscribe(card_bot, chat, None)
    source_server.serve(PATH, to_kml([*BASE, agency("Crystal Police Department", "MN", 40)]))

    card_bot.poll()

    photos = [s for s in stub.sent if s.photo is not None]
    assert sorted(int(s.chat_id) for s in photos) == list(subscribers)
    texts_sent = [c.params["chat_id"] for c in stub.calls_to("sendMessage")]
    assert texts_sent == [str(ADMIN)]  # the baseline's notice; the alert is the caption
    assert sum(s.uploaded for s in photos) == 1  # 50 subscribers, one upload
    for sent in photos:
        assert png_size(sent.photo) == (1200, 675)
        assert plain(sent.text) == "New partnership: Crystal PD, MN (active since 2020-06-01)"
        assert sent.params["parse_mode"] == "HTML"
    (uuid,) = [row["uuid"] for row in card_bot.rows("select uuid from changes where id > 10")]
    stored = card_bot.config.state_dir / "cards" / f"{uuid}.png"
    assert photos[0].photo == stored.read_bytes()


def test_a_text_too_long_for_a_caption_follows_its_card_as_a_reply(
    card_bot: Bot, stub: TelegramStub, source_server: SourceServer
):
    subscribe(card_bot, 201, None)
    many = [agency(f"Longname{i:03d} County Sheriff's Office", "MN", 100 + i) for i in range(30)]
    source_server.serve(PATH, to_kml(BASE + many))

    card_bot.poll()

    card, digest, *_ = [s for s in stub.sent if s.chat_id == "201"]
    assert png_size(card.photo) == (1200, 675) and card.text == ""
    assert digest.photo is None and visible_length(digest.text) > 1024
    assert json.loads(digest.params["reply_parameters"])["message_id"] == card.message_id


def test_images_false_sends_text_only(
    tmp_path: Path, stub: TelegramStub, source_server: SourceServer
):
    section = telegram_section(stub, channel=None, images=False)
    bot = start_bot(tmp_path, source_server, section)
    subscribe(bot, 201, None)
    source_server.serve(PATH, to_kml([*BASE, agency("Crystal Police Department", "MN", 40)]))

    bot.poll()

    (sent,) = [s for s in stub.sent if s.chat_id == "201"]
    assert sent.photo is None and plain(sent.text).startswith("New partnership: Crystal PD")
    assert not (bot.config.state_dir / "cards").exists()  # nothing drawn
