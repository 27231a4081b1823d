"""The X channel against a fake X API on 127.0.0.1, through tweepy and real SQLite files.

Time is never slept: a retry's wait passes by moving the clock deliver_pending takes
(tests/support/clock.py), and the 24-hour budget, which X's channel counts by the real
time, by editing the sent posts' sent_at.
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from twitter_text import parse_tweet

from bot.channels import audiences, configure, enabled_channels
from bot.channels.x import CREDENTIAL_ENV_VARS, XChannel, weighted_length
from bot.config import Config, load_config
from bot.deliver import DeliveryReport
from bot.models import Agency, Change
from bot.normalise import display_name
from bot.notify import plan_alerts
from bot.render import WORD_JOINER, make_environment
from bot.store import Store
from bot.store.times import epoch_time
from tests.support.agencies import make_agency
from tests.support.bot import Bot
from tests.support.cli import run_cli, start_cli, write_config
from tests.support.clock import Clock
from tests.support.http import closed_port_url
from tests.support.leaks import database_text, leaked
from tests.support.outbox import make_due, outbox
from tests.support.source_server import SourceServer
from tests.support.synthetic import generate_agencies, mutate, to_kml
from tests.support.telegram_stub import DEFAULT_TOKEN, TelegramStub
from tests.support.x_stub import XStub, duplicate, problem, rate_limited, refused, server_error

# What X links as a mention, hashtag or cashtag (twitter-text's rules, simplified).
ENTITY = re.compile(r"(?<![\w@＠#＃$&])(?:[@＠]\w|[#＃]\w*[^\W\d]|\$[A-Za-z])")


@pytest.fixture
def x_stub() -> Iterator[XStub]:
    with XStub() as stub:
        yield stub


@pytest.fixture
def x_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {name: f"test-{name.lower()}-0123456789" for name in CREDENTIAL_ENV_VARS}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def x_config_path(directory: Path, stub: XStub, x: str = "", extra: str = "") -> Path:
    return write_config(
        directory, f'[x]\nenabled = true\napi_base_url = "{stub.base_url}"\n{x}\n{extra}'
    )


def x_config(directory: Path, stub: XStub, x: str = "", extra: str = "") -> Config:
    return configure(load_config(x_config_path(directory, stub, x, extra)))


def agency(name: str, state: str = "MN", **fields: Any) -> Agency:
    """An agency with the active date its alert names."""
    fields.setdefault("active_date", "2020-06-03")
    return make_agency(name, state=state, **fields)


def added(name: str, state: str = "MN", **fields: Any) -> Change:
    return Change("added", agency(name, state, **fields))


def queue(config: Config, changes: list[Change], *, poll_id: int = 1, since: str | None = None):
    """Plan and queue alerts exactly as a poll does, for every enabled channel."""
    store = Store.open(config.db_path)
    try:
        numbered = list(enumerate(changes, poll_id * 1000))
        messages = plan_alerts(
            make_environment(),
            audiences(enabled_channels(config), store),
            numbered,
            poll_id=poll_id,
            digest_threshold=config.alerts.digest_threshold,
            since=since,
        )
        store.outbox.queue(poll_id, messages)
    finally:
        store.close()


def deliver(config: Config, clock: Callable[[], float] = time.time) -> DeliveryReport:
    """One delivery round with fresh channels, as `ringwatch deliver` does."""
    return Bot(config.path).deliver(clock)


def sql(config: Config, statement: str, params: list[Any] | None = None) -> None:
    store = Store.open(config.db_path)
    try:
        store.db.execute(statement, params or [])
        store.db.conn.commit()
    finally:
        store.close()


def age_sent_posts(config: Config, hours: float) -> None:
    """Pretend the posts made so far were made `hours` ago."""
    moment = datetime.now(UTC) - timedelta(hours=hours)
    stamp = moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    sql(config, "update outbox set sent_at = ? where status = 'sent'", [stamp])


def spread_over_states(count: int, states: int, seed: int = 5) -> list[Change]:
    """`count` real-looking additions in exactly `states` states."""
    pool = generate_agencies(600, seed=seed)
    chosen, seen = [], set()
    for a in pool:
        if a.state not in seen and len(seen) < states:
            seen.add(a.state)
            chosen.append(a)
    chosen += [a for a in pool if a.state in seen and a not in chosen][: count - len(chosen)]
    assert len(chosen) == count and len({a.state for a in chosen}) == states
    return [
        added(a.name, a.state, city=a.city, active_date=a.active_date, profile_url=a.profile_url)
        for a in chosen
    ]


def digest_line(change: Change) -> str:
    a = change.agency
    return f"+ {display_name(a.name)}, {a.state} ({a.active_date})"


# --- single posts ---------------------------------------------------------------------------


def test_each_change_is_one_post_and_is_posted_once(tmp_path, x_stub, x_env):
    config = x_config(tmp_path, x_stub)
    crystal = agency("Crystal Police Department", profile_url="https://ring.com/agency/crystal")
    queue(
        config,
        [
            Change("added", crystal),
            Change("removed", agency("Hopkins Police Department", city="Hopkins")),
            Change("renamed", agency("Edina PD", city="Edina"), before={"name": "Edina Police"}),
        ],
    )
    report = deliver(config)

    assert x_stub.texts() == [
        "New partnership: Crystal PD, MN (active since 2020-06-03)",  # links are off by default
        "Partnership ended: Hopkins PD, MN (partner since 2020-06-03)",
        "Renamed: Edina Police is now Edina PD, MN",
    ]
    assert [p.reply_to for p in x_stub.posts] == [None, None, None]
    assert report.sent["x"] == 3
    assert [r["external_id"] for r in outbox(config.db_path, channel="x")] == [
        p.id for p in x_stub.posts
    ]

    deliver(config)  # nothing is due: nothing is posted again
    assert len(x_stub.requests) == 3


def test_max_posts_per_poll_turns_a_burst_into_a_thread_on_x_only(tmp_path, x_stub, x_env, capsys):
    config = x_config(
        tmp_path,
        x_stub,
        "max_posts_per_poll = 3",
        "[alerts]\ndigest_threshold = 50\n[console]\nenabled = true\n",
    )
    changes = [added(f"Town {n} Police Department", city=f"Town {n}") for n in range(4)]
    queue(config, changes)
    deliver(config)

    assert x_stub.posts[0].text.startswith("4 new Ring police partnerships in 1 state")
    assert x_stub.chained(x_stub.posts)
    printed = capsys.readouterr().out
    assert printed.count("New partnership: Town") == 4  # the console still gets one each


# --- digest threads -------------------------------------------------------------------------


def test_a_digest_is_a_thread_listing_every_agency(tmp_path, x_stub, x_env):
    config = x_config(tmp_path, x_stub)
    changes = spread_over_states(29, 20)
    queue(config, changes, since="2020-05-25T08:00:00Z")
    deliver(config)

    posts = x_stub.posts
    assert len(posts) >= 3
    headline = posts[0].text
    assert headline.startswith("29 new Ring police partnerships in 20 states since 2020-05-25")
    assert "+ " not in headline  # the first post is the headline alone
    assert posts[0].reply_to is None and x_stub.chained(posts)
    replies = "\n".join(p.text for p in posts[1:])
    for change in changes:
        assert replies.count(digest_line(change)) == 1, change.agency.name
    assert all(weighted_length(p.text) <= 280 for p in posts)
    rows = outbox(config.db_path, channel="x")
    assert [r["part"] for r in rows] == list(range(len(posts)))
    assert [r["external_id"] for r in rows] == [p.id for p in posts]


def test_a_thread_steps_over_a_part_that_failed_for_good(tmp_path, x_stub, x_env):
    config = x_config(tmp_path, x_stub)
    queue(config, spread_over_states(29, 20))
    assert len(outbox(config.db_path, channel="x")) >= 3
    # X refuses part 1 as invalid (400): a permanent failure of that post alone.
    x_stub.answers = [None, problem(400, "Invalid Request: one or more parameters")]
    deliver(config)

    rows = outbox(config.db_path, channel="x")
    assert [r["status"] for r in rows] == ["sent", "failed", *["sent"] * (len(rows) - 2)]
    first, *rest = x_stub.posts
    assert first.reply_to is None
    assert rest[0].reply_to == first.id  # part 2 answers part 0, the nearest sent part
    assert x_stub.chained(rest)


# --- length as X counts it ------------------------------------------------------------------


def test_posts_fit_280_weighted_with_long_names_links_and_wide_characters(tmp_path, x_stub, x_env):
    config = x_config(tmp_path, x_stub, "include_links = true")
    url = "https://ring.com/agency/" + "very-long-agency-profile-path-" * 5
    latin = "Greater Metropolitan " * 14 + "Police Department"
    cjk = "東京都警察" * 30  # 150 characters, 300 weighted
    emoji = "Safety 🚓 Team " * 16
    changes = [added(name, profile_url=url) for name in (latin, cjk, emoji)]
    queue(config, changes)
    deliver(config)

    assert len(x_stub.posts) == 3  # one post per change, however long the name
    for post in x_stub.posts:
        parsed = parse_tweet(post.text)
        assert parsed.valid and parsed.weightedLength <= 280, post.text
        assert post.text.endswith("(active since 2020-06-03)\n" + url)  # the link intact
    latin_post, cjk_post, emoji_post = x_stub.texts()
    kept = latin_post.removeprefix("New partnership: ").split("…, MN")[0]
    full = display_name(latin)
    assert full.startswith(kept) and full[len(kept)] == " "  # cut at a word boundary
    cjk_line = cjk_post.split("\n")[0]
    assert weighted_length(cjk_line) > len(cjk_line)  # wide characters weigh 2
    assert "…, MN" in cjk_post and "…, MN" in emoji_post

    # In a thread too: every part fits, no agency is dropped.
    wide = [added(f"{'東京都' * 20} {n} 警察署", city=f"c{n}") for n in range(8)]
    queue(config, wide, poll_id=2)
    deliver(config)
    thread = x_stub.posts[3:]
    assert len(thread) > 2 and x_stub.chained(thread)
    assert all(parse_tweet(p.text).valid for p in thread)
    assert sum(p.text.count("+ ") for p in thread) == 8


def test_names_from_the_source_cannot_mention_or_hashtag(tmp_path, x_stub, x_env):
    config = x_config(tmp_path, x_stub, "include_links = true")
    name = "@elonmusk #DefundThePolice ＠fullwidth ＃Tag $AMZN Police Department"
    url = "https://example.org/agency?id=7#profile"
    queue(config, [added(name, profile_url=url)])
    queue(config, [added(f"{name} {n}", city=f"c{n}") for n in range(6)], poll_id=2)  # a thread
    deliver(config)

    assert len(x_stub.posts) > 2
    for post in x_stub.posts:
        assert not ENTITY.search(post.text.replace(url, "")), post.text
    for post in [x_stub.posts[0], *x_stub.posts[2:]]:  # the thread's headline has no names
        readable = post.text.replace(WORD_JOINER, "")
        assert "@elonmusk #DefundThePolice" in readable and "$AMZN" in readable
        assert ENTITY.search(readable.replace(url, ""))  # without the joiner it would link
    assert x_stub.posts[0].text.endswith("\n" + url)  # the URL's #fragment is left alone


# --- budget ---------------------------------------------------------------------------------


def test_over_budget_posts_wait_for_the_next_window_in_order(tmp_path, x_stub, x_env):
    config = x_config(tmp_path, x_stub, "max_posts_per_day = 3", "[alerts]\ndigest_threshold = 10")
    changes = [added(f"Town {n} Police Department", city=f"Town {n}") for n in range(5)]
    queue(config, changes)
    deliver(config)

    assert len(x_stub.posts) == 3
    waiting = [r for r in outbox(config.db_path, channel="x") if r["status"] == "pending"]
    assert len(waiting) == 2
    assert all(r["attempts"] == 0 for r in waiting)  # waiting for budget is not a failure
    assert all(epoch_time(r["next_attempt_at"]) > time.time() + 23 * 3600 for r in waiting)
    deliver(config)
    assert len(x_stub.requests) == 3  # not before the window frees up

    store = Store.open(config.db_path, readonly=True)
    lines = XChannel(config).status_lines(store)
    store.close()
    assert "posts in the last 24 h: 3 of 3 allowed" in lines
    assert any(line.startswith("waiting: 2 posts") for line in lines)

    age_sent_posts(config, hours=25)
    deliver(config, Clock().until_due(config.db_path))
    assert x_stub.texts() == [
        f"New partnership: Town {n} PD, MN (active since 2020-06-03)" for n in range(5)
    ]


def test_a_thread_spreads_over_budget_windows_without_breaking(tmp_path, x_stub, x_env):
    config = x_config(tmp_path, x_stub, "max_posts_per_day = 2")
    changes = spread_over_states(24, 9, seed=11)
    queue(config, changes)
    parts = len(outbox(config.db_path, channel="x"))
    assert parts > 4

    windows, clock = [], Clock()
    while len(x_stub.posts) < parts:
        before = len(x_stub.posts)
        deliver(config, clock)
        windows.append(len(x_stub.posts) - before)
        age_sent_posts(config, hours=25)  # every reply is billed: 2 posts per window
        clock.until_due(config.db_path)
        assert len(windows) <= parts
    assert set(windows) <= {1, 2} and sum(windows) == parts
    assert x_stub.chained(x_stub.posts)
    replies = "\n".join(x_stub.texts())
    assert all(replies.count(digest_line(c)) == 1 for c in changes)


# --- X's answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("daily_limit_hit", [False, True])
def test_429_pauses_x_until_the_reset_while_other_channels_deliver(
    tmp_path, x_stub, x_env, capsys, daily_limit_hit
):
    config = x_config(tmp_path, x_stub, extra="[console]\nenabled = true\n")
    now = int(time.time())
    if daily_limit_hit:  # the 15-minute window resets soon, the 24-hour one much later
        answer = rate_limited(
            now + 60, x_user_limit_24hour_remaining="0", x_user_limit_24hour_reset=str(now + 7200)
        )
        reset = now + 7200
    else:
        answer, reset = rate_limited(now + 900), now + 900
    x_stub.answers = [answer]
    queue(config, [added("Crystal Police Department"), added("Hopkins PD", city="Hopkins")])
    deliver(config)

    printed = capsys.readouterr().out
    assert "New partnership: Crystal PD, MN" in printed and "Hopkins PD, MN" in printed
    rows = outbox(config.db_path, channel="x")
    assert [r["status"] for r in rows] == ["pending", "pending"]
    assert all(epoch_time(r["next_attempt_at"]) >= reset for r in rows)
    assert rows[0]["attempts"] == 0 and "429" in rows[0]["last_error"]
    assert len(x_stub.requests) == 1  # the channel paused; it did not hammer X

    deliver(config, Clock().until_due(config.db_path))  # the reset time has come
    assert [t.split(",")[0] for t in x_stub.texts()] == [
        "New partnership: Crystal PD",
        "New partnership: Hopkins PD",
    ]


def test_server_errors_are_retried_with_backoff(tmp_path, x_stub, x_env):
    config = x_config(tmp_path, x_stub)
    x_stub.answers = [server_error()]
    queue(config, [added("Crystal Police Department")])
    deliver(config)

    (row,) = outbox(config.db_path, channel="x")
    assert row["status"] == "pending" and row["attempts"] == 1
    assert "500" in row["last_error"] and epoch_time(row["next_attempt_at"]) > time.time()
    deliver(config, Clock().until_due(config.db_path))
    assert outbox(config.db_path, channel="x")[0]["status"] == "sent" and len(x_stub.posts) == 1


def test_a_duplicate_post_is_recorded_as_sent(tmp_path, x_stub, x_env):
    config = x_config(tmp_path, x_stub)
    x_stub.answers = [duplicate()]
    queue(config, [added("Crystal Police Department")])
    deliver(config)

    (row,) = outbox(config.db_path, channel="x")
    assert row["status"] == "sent"
    assert x_stub.posts == []
    deliver(config)
    assert len(x_stub.requests) == 1  # not retried


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_fail_the_post_and_warn_maintainers_once(
    tmp_path, x_stub, x_env, capsys, status
):
    path = x_config_path(tmp_path, x_stub, extra="[console]\nenabled = true\n")
    config = configure(load_config(path))
    x_stub.always = refused(status)
    queue(config, [added(f"Town {n} Police Department", city=f"Town {n}") for n in range(3)])
    deliver(config)

    assert [r["status"] for r in outbox(config.db_path, channel="x")] == [
        "failed",
        "pending",
        "pending",
    ]
    assert len(x_stub.requests) == 1  # the rest of the run waits instead of failing everything
    deliver(config)  # a later run: the warning goes out, and is not queued again
    deliver(config)
    warnings = [r for r in outbox(config.db_path, channel="console") if r["kind"] == "warning"]
    assert len(warnings) == 1 and f"X refused a post ({status} " in warnings[0]["text"]
    assert capsys.readouterr().out.count("ringwatch warning: X refused a post") == 1
    assert [
        r for r in outbox(config.db_path, channel="x") if r["kind"] == "warning"
    ] == []  # never on public X

    x_stub.always = None  # the maintainer fixed it and restarted
    deliver(config, Clock().until_due(config.db_path))
    assert len(x_stub.posts) == 2  # the post that failed stays failed, in status

    if status == 403:
        return  # `ringwatch status` is checked once, for the 401
    result = run_cli("status", "--config", str(path), env=x_env)
    assert result.returncode == 0, result.stderr
    assert "x: posts this month: 2 (0 with a link), estimated spend $0.030" in result.stdout
    assert f"x: last failure: {status} " in result.stdout


# What each answer from X does to a post: transient answers never fail it (they are
# retried until alerts.give_up_after); refusals fail it at once. (status, attempts counted)
ANSWERS = {
    "500": (problem(500, "Internal Server Error"), "pending", 1),
    "502": (problem(502, "Bad Gateway"), "pending", 1),
    "503": (problem(503, "Service Unavailable"), "pending", 1),
    "408": (problem(408, "Request Timeout"), "pending", 1),
    "429": (rate_limited(int(time.time()) + 900), "pending", 0),
    "400": (problem(400, "Invalid Request"), "failed", 1),
    "401": (refused(401), "failed", 1),
    "403": (refused(403), "failed", 1),
    "404": (problem(404, "Not Found"), "failed", 1),
}


@pytest.mark.parametrize("status", ANSWERS)
def test_transient_answers_are_retried_and_refusals_fail_at_once(tmp_path, x_stub, x_env, status):
    answer, expected, attempts = ANSWERS[status]
    config = x_config(tmp_path, x_stub)
    x_stub.answers = [answer]
    queue(config, [added("Crystal Police Department")])

    deliver(config)

    (row,) = outbox(config.db_path, channel="x")
    assert (row["status"], row["attempts"]) == (expected, attempts), row["last_error"]
    assert status in row["last_error"]


def test_a_dripping_answer_is_a_failed_attempt_and_holds_up_nothing(tmp_path, x_stub, x_env):
    path = x_config_path(
        tmp_path, x_stub, extra='[console]\nenabled = true\n[alerts]\nsend_timeout = "2s"\n'
    )
    config = configure(load_config(path))
    queue(config, [added("Crystal Police Department"), added("Hopkins PD", city="Hopkins")])
    x_stub.drip = True  # headers, then a byte a second: minutes for the whole answer

    result = run_cli("deliver", env={**x_env, "RINGWATCH_CONFIG": str(path)}, timeout=60)

    assert result.returncode == 0, result.stderr  # the process did not wait for the drip
    assert "Crystal PD, MN" in result.stdout and "Hopkins PD, MN" in result.stdout  # console
    first, second = outbox(config.db_path, channel="x")
    assert first["status"] == "pending" and first["attempts"] == 1
    assert "no answer within 2s" in first["last_error"]
    assert second["status"] == "pending" and second["attempts"] == 0  # waits, in order
    x_stub.drip = False
    deliver(config, Clock().until_due(config.db_path))
    # X had created the dripped post: the retry is refused as a duplicate, recorded as sent.
    assert [r["status"] for r in outbox(config.db_path, channel="x")] == ["sent", "sent"]
    assert len(x_stub.posts) == 2


# --- no secret anywhere -------------------------------------------------------------------

# Each failure class, from an upstream that quotes the request (its OAuth header carries
# the consumer key and the access token) in its error: what X answers, and whether the
# maintainers are warned on Telegram (refusals at once; transient failures after
# give_up_after).
ECHOED_FAILURES = {
    "401 Unauthorized": (refused(401), True),
    "400 Bad Request": (problem(400, "Invalid Request"), False),
    "403 Forbidden": (refused(403), True),
    "502 Bad Gateway": (problem(502, "Bad Gateway"), True),
    "connection refused": (None, True),
    "timeout": (None, True),  # the answer drips in a byte a second
}


@pytest.mark.parametrize("failure", ECHOED_FAILURES)
def test_no_failure_puts_x_credentials_in_the_database_output_logs_or_messages(
    tmp_path, x_stub, x_env, monkeypatch, failure
):
    answer, warns = ECHOED_FAILURES[failure]
    telegram = TelegramStub().start()
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", DEFAULT_TOKEN)
    base_url = closed_port_url() if failure == "connection refused" else x_stub.base_url
    path = write_config(
        tmp_path,
        f'[x]\nenabled = true\napi_base_url = "{base_url}"\n'
        f'[telegram]\nenabled = true\nadmins = [42]\napi_base_url = "{telegram.base_url}"\n'
        '[alerts]\ngive_up_after = "1ms"\nsend_timeout = "2s"\n',
    )
    config = configure(load_config(path))
    queue(config, [added("Crystal Police Department")])
    x_stub.echo_requests = True
    x_stub.answers = [answer, answer] if answer else []
    x_stub.drip = failure == "timeout"
    env = {**x_env, "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN, "RINGWATCH_CONFIG": str(path)}

    try:
        output = ""
        for _ in range(3):  # fail, fail again or give up (warn), send the warning
            result = run_cli("deliver", env=env)
            output += result.stdout + result.stderr
            make_due(config.db_path)  # the CLI reads the real clock
        status = run_cli("status", env=env)
        output += status.stdout + status.stderr
        sent = "\n".join(s.text for s in telegram.sent)
    finally:
        telegram.stop()

    (row,) = outbox(config.db_path, channel="x")
    assert row["status"] == "failed", row["last_error"]
    if answer is not None:
        assert "<X_CONSUMER_KEY>" in row["last_error"]  # the echo was there, redacted
    assert bool(sent) == warns  # the maintainers heard, without the credentials
    secrets = list(x_env.values())
    assert leaked(database_text(config.db_path), secrets) == []
    assert leaked(output, secrets) == []
    assert leaked(sent, secrets) == []


# --- kill and restart -----------------------------------------------------------------------


def test_a_thread_killed_midway_continues_where_it_stopped(tmp_path, x_stub, x_env):
    path = x_config_path(tmp_path, x_stub)
    config = configure(load_config(path))
    queue(config, spread_over_states(30, 10, seed=3))
    parts = len(outbox(config.db_path, channel="x"))
    assert parts >= 4
    x_stub.hold_post = 3  # X creates the third post, but its answer never arrives

    process = start_cli("deliver", "--config", str(path), env=x_env)
    try:
        assert x_stub.held.wait(timeout=30), "the third post never reached X"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    x_stub.release.set()
    assert [r["status"] for r in outbox(config.db_path, channel="x")][:3] == [
        "sent",
        "sent",
        "sending",
    ]

    result = run_cli("deliver", "--config", str(path), env=x_env)
    assert result.returncode == 0, result.stderr

    rows = outbox(config.db_path, channel="x")
    assert [r["status"] for r in rows] == ["sent"] * parts
    assert x_stub.texts() == [r["text"] for r in rows]  # each part on X once, in order
    assert len(x_stub.requests) == parts + 1  # the one in flight was tried again: duplicate
    assert x_stub.chained(x_stub.posts)
    assert [r["external_id"] for r in rows] == [p.id for p in x_stub.posts]


# --- end to end -----------------------------------------------------------------------------


def test_poll_posts_every_change_once_end_to_end(tmp_path, x_stub, x_env, source_server):
    url = source_server.url("/map.kml")
    path = x_config_path(
        tmp_path,
        x_stub,
        # The burst of 12 after 43 agencies (28%) is believed: it is the point of the test.
        extra=f'[source]\nurl = "{url}"\nformat = "kml"\nretries = 0\n'
        "[guard]\nmax_added_share = 0.3\n",
    )
    base = generate_agencies(40, seed=21)
    source_server.serve("/map.kml", to_kml(base))

    def poll() -> subprocess.CompletedProcess[str]:
        result = run_cli("poll", "--config", str(path), env=x_env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    assert "baseline" in poll().stdout
    assert x_stub.posts == []  # the baseline is silent, and the notice is not for X

    later = mutate(base, seed=22, add=3)
    source_server.serve("/map.kml", to_kml(later))
    poll()
    burst = mutate(later, seed=23, add=12)
    source_server.serve("/map.kml", to_kml(burst))
    poll()

    singles, thread = x_stub.posts[:3], x_stub.posts[3:]
    assert all(p.text.startswith("New partnership: ") and p.reply_to is None for p in singles)
    assert thread[0].text.startswith("12 new Ring police partnerships in ")
    assert x_stub.chained(thread)
    posted = "\n".join(x_stub.texts())
    for a in [*later[40:], *burst[43:]]:
        assert posted.count(f"{display_name(a.name)}, {a.state}") == 1, a.name
    assert len(x_stub.requests) == len(x_stub.posts)  # no post was tried twice


# --- map cards ----------------------------------------------------------------------------

SMALL_MAP_GUARD = "[guard]\nmax_added_share = 100\n"


def polled_bot(tmp_path: Path, x_stub: XStub, source_server: SourceServer, *maps: bytes) -> Bot:
    """A bot with X (and the console for the maintainers) polling `maps` one by one."""
    url = source_server.serve("/a.kml", *maps)
    section = f'[x]\nenabled = true\napi_base_url = "{x_stub.base_url}"\n'
    bot = Bot.create(tmp_path, url, section + "[console]\nenabled = true\n" + SMALL_MAP_GUARD)
    for _ in maps:
        bot.poll()
    return bot


def test_an_alert_goes_with_its_card_and_alt_text_where_x_allows_media(
    tmp_path, x_stub, x_env, source_server
):
    items = generate_agencies(6, seed=3)
    bot = polled_bot(tmp_path, x_stub, source_server, to_kml(items[:5]), to_kml(items))

    (post,) = x_stub.posts
    (media_id,) = post.media_ids
    assert Image.open(io.BytesIO(x_stub.media[media_id])).size == (1200, 675)
    (uuid,) = [row["uuid"] for row in bot.rows("select uuid from changes where kind = 'added'")]
    alt = (bot.config.state_dir / "cards" / f"{uuid}.txt").read_text(encoding="utf-8")
    assert x_stub.alt_texts[media_id] == alt and alt.startswith("Map of ")


def test_a_403_on_the_upload_posts_text_and_warns_the_maintainers_once(
    tmp_path, x_stub, x_env, source_server
):
    x_stub.media_refused = True  # an access tier without media uploads
    items = generate_agencies(8, seed=3)
    maps = [to_kml(items[:5]), to_kml(items[:7]), to_kml(items)]
    bot = polled_bot(tmp_path, x_stub, source_server, *maps)  # two runs that refuse

    assert len(x_stub.posts) == 3 and all(p.media_ids == () for p in x_stub.posts)
    assert x_stub.media == {}
    warnings = [r["text"] for r in bot.outbox() if r["kind"] == "warning"]
    assert len(warnings) == 1 and "X refused to take the map card (403 " in warnings[0]
