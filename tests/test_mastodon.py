"""The Mastodon channel against a fake instance on 127.0.0.1, through Mastodon.py, the
real CLI and real SQLite files."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from bot.channels import configure
from bot.channels.mastodon import MastodonChannel
from bot.config import load_config
from bot.store.times import epoch_time
from tests.support.agencies import agencies, renamed
from tests.support.bot import Bot
from tests.support.channels import (
    HOSTILE_NAMES,
    NO_DIGEST,
    SAMPLE_ADDITIONS,
    additions,
    cli,
    kill_mid_broadcast,
)
from tests.support.cli import database, run_cli, samples_config, write_config
from tests.support.clock import Clock
from tests.support.leaks import database_text, leaked
from tests.support.mastodon_stub import HASHTAG, MENTION, TOKEN, MastodonStub, error, rate_limited
from tests.support.outbox import make_due, outbox
from tests.support.source_server import SourceServer
from tests.support.synthetic import to_kml

ENV = {"MASTODON_ACCESS_TOKEN": TOKEN}


@pytest.fixture
def stub() -> Iterator[MastodonStub]:
    with MastodonStub() as server:
        yield server


# Small maps that gain several agencies at once: the additions guard must believe them.
SMALL_MAP_GUARD = "[guard]\nmax_added_share = 100\n"


def section(stub: MastodonStub, extra: str = "", images: bool = False) -> str:
    """Posts go as text unless a test is about their map cards."""
    return (
        f'[mastodon]\nenabled = true\napi_base_url = "{stub.base_url}"\n'
        f"images = {str(images).lower()}\n{extra}"
    )


def test_every_sample_addition_is_posted_once(
    tmp_path: Path, source_server: SourceServer, stub: MastodonStub
):
    extra = NO_DIGEST + section(stub, "max_posts_per_poll = 1000\n")
    config = samples_config(source_server, tmp_path, extra)
    for _ in range(3):
        cli(config, "poll", ENV)

    counts = additions([s.text for s in stub.statuses])
    assert len(counts) == SAMPLE_ADDITIONS and set(counts.values()) == {1}
    rows = outbox(database(config), channel="mastodon")
    assert {r["status"] for r in rows} == {"sent"}
    assert [r["external_id"] for r in rows] == [s.id for s in stub.statuses]
    assert {s.visibility for s in stub.statuses} == {"public"}
    assert stub.instance_requests == 1  # the limits were asked once and kept
    assert not leaked(database_text(config.parent / "state" / "ringwatch.db"), [TOKEN])


def test_a_digest_is_a_thread_within_the_instances_limit_of_300(
    tmp_path: Path, source_server: SourceServer
):
    stub = MastodonStub(max_characters=300).start()
    try:
        config = samples_config(source_server, tmp_path, section(stub, "visibility = 'unlisted'"))
        for _ in range(3):
            cli(config, "poll", ENV)
    finally:
        stub.stop()

    digest = [s for s in stub.statuses if "+ " in s.text or "New:" in s.text]
    assert len(digest) > 1
    assert all(stub.length(s.text) <= 300 for s in stub.statuses)
    # Each part replies to the one before: one thread.
    thread = [s.id for s in stub.statuses]
    for status in stub.statuses[1:]:
        if status.in_reply_to_id is not None:
            assert thread.index(status.in_reply_to_id) == thread.index(status.id) - 1
    counts = additions([s.text for s in stub.statuses])
    assert len(counts) == SAMPLE_ADDITIONS and set(counts.values()) == {1}  # no line split
    assert {s.visibility for s in stub.statuses} == {"unlisted"}


def test_an_instance_that_states_no_limit_gets_500_characters(tmp_path: Path):
    stub = MastodonStub(max_characters=None).start()
    try:
        config = configure(load_config(write_config(tmp_path, section(stub))))
        style = MastodonChannel(config).style()
    finally:
        stub.stop()

    assert style.max_length == 500
    assert style.measure("x " + "https://example.org/" + "a" * 100) == 2 + 23


def test_a_kill_mid_broadcast_posts_nothing_twice(
    tmp_path: Path, source_server: SourceServer, stub: MastodonStub
):
    extra = section(stub, "max_posts_per_poll = 1000\n", images=True)
    config = samples_config(source_server, tmp_path, NO_DIGEST + extra)
    stub.delay = 0.5  # the post is stored, the answer is late: the kill lands in between
    kill_mid_broadcast(config, ENV, lambda: len(stub.statuses))
    stub.delay = 0
    cli(config, "deliver", ENV)
    cli(config, "poll", ENV)

    texts = [s.text for s in stub.statuses]
    assert len(texts) == len(set(texts))  # 0 duplicates
    counts = additions(texts)
    assert len(counts) == SAMPLE_ADDITIONS and set(counts.values()) == {1}
    assert stub.posts_tried > len(stub.statuses)  # the killed post was sent again: same key
    assert all(len(s.media_ids) == 1 for s in stub.statuses)  # each with its card


def test_a_429_waits_for_the_reset_without_counting_an_attempt(
    tmp_path: Path, source_server: SourceServer, stub: MastodonStub
):
    config = samples_config(
        source_server, tmp_path, NO_DIGEST + section(stub, "max_posts_per_poll = 1000\n")
    )
    cli(config, "poll", ENV)
    stub.answers = [rate_limited(120)]
    cli(config, "poll", ENV)

    rows = outbox(database(config), channel="mastodon")
    assert {r["status"] for r in rows} == {"pending"} and rows[0]["attempts"] == 0
    waits = [epoch_time(r["next_attempt_at"]) - time.time() for r in rows]
    assert all(60 < wait <= 125 for wait in waits)  # the whole channel
    assert "429" in rows[0]["last_error"]
    make_due(database(config))  # the CLI reads the real clock
    cli(config, "deliver", ENV)
    assert {r["status"] for r in outbox(database(config), channel="mastodon")} == {"sent"}


def test_a_5xx_is_retried_and_then_everything_goes_once(
    tmp_path: Path, source_server: SourceServer, stub: MastodonStub
):
    config = samples_config(
        source_server, tmp_path, NO_DIGEST + section(stub, "max_posts_per_poll = 1000\n")
    )
    cli(config, "poll", ENV)
    stub.answers = [error(503, "Service Unavailable")]
    cli(config, "poll", ENV)
    first = outbox(database(config), channel="mastodon")[0]
    assert first["status"] == "pending" and first["attempts"] == 1

    make_due(database(config))  # the CLI reads the real clock
    cli(config, "deliver", ENV)

    texts = [s.text for s in stub.statuses]
    assert len(texts) == len(set(texts)) == len(outbox(database(config), channel="mastodon"))


@pytest.mark.parametrize(
    ("answer", "times", "status", "warnings"),
    [
        (error(401, "The access token is invalid"), 3, "pending", 1),
        (error(403, "This action is not allowed"), 3, "pending", 1),
        (error(422, "Validation failed: Text can't be blank"), 1, "failed", 0),
    ],
)
def test_refusals(
    tmp_path: Path,
    source_server: SourceServer,
    stub: MastodonStub,
    monkeypatch: pytest.MonkeyPatch,
    answer,
    times: int,
    status: str,
    warnings: int,
):
    """401/403: the channel pauses and the maintainers hear once however often it is
    refused; a 422 fails that one message and the next goes out."""
    monkeypatch.setenv("MASTODON_ACCESS_TOKEN", TOKEN)
    items = agencies(20)
    url = source_server.serve("/a.kml", to_kml(items[:18]), to_kml(items))
    bot = Bot.create(tmp_path, url, SMALL_MAP_GUARD + "[console]\nenabled = true\n" + section(stub))
    bot.poll()
    stub.answers = [answer] * times
    bot.poll()
    bot.deliver(Clock().until_due(bot.config.db_path))

    rows = bot.outbox(channel="mastodon")
    assert rows[0]["status"] == status
    assert len(bot.outbox(kind="warning")) == warnings
    if status == "failed":
        assert [r["status"] for r in rows[1:]] == ["sent"]


def test_hostile_names_mention_and_tag_nobody(
    tmp_path: Path, source_server: SourceServer, stub: MastodonStub
):
    items = agencies(20)
    hostile = [renamed(a, name=n) for a, n in zip(items[:4], HOSTILE_NAMES, strict=True)]
    url = source_server.serve("/a.kml", to_kml(items[4:]), to_kml(items[4:] + hostile))
    config = write_config(
        tmp_path,
        f'[source]\nurl = "{url}"\nformat = "kml"\n'
        + SMALL_MAP_GUARD
        + NO_DIGEST
        + section(stub, "max_posts_per_poll = 1000\n"),
    )
    cli(config, "poll", ENV)
    cli(config, "poll", ENV)

    assert len(stub.statuses) == len(HOSTILE_NAMES)
    for status in stub.statuses:
        assert not MENTION.search(status.text), status.text
        assert not HASHTAG.search(status.text), status.text


def test_mastodon_config_mistakes_are_one_line(tmp_path: Path, stub: MastodonStub):
    for text, message in [
        ("[mastodon]\nenabled = true\n", "mastodon.api_base_url must be the account's instance"),
        ("[mastodon]\nvisibility = 'direct'\n", "mastodon.visibility must be one of public"),
        (
            section(stub),
            "MASTODON_ACCESS_TOKEN is not set",
        ),
    ]:
        result = run_cli("check-config", "--config", str(write_config(tmp_path, text)))
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_send_test_prints_the_status_id(tmp_path: Path, stub: MastodonStub):
    config = write_config(tmp_path, section(stub))

    result = run_cli("send-test", "mastodon", "--config", str(config), env=ENV)

    assert result.returncode == 0, result.stderr
    (status,) = stub.statuses
    assert result.stdout.strip() == f"mastodon:account: sent (id {status.id})"
    assert json.dumps(status.text).startswith('"ringwatch test message')


def test_an_alert_posts_its_card_with_alt_text_then_one_status_with_media_ids(
    tmp_path: Path, source_server: SourceServer, stub: MastodonStub, monkeypatch
):
    monkeypatch.setenv("MASTODON_ACCESS_TOKEN", TOKEN)
    stub.processing_polls = 2  # 202 Accepted, then 206 twice: processing
    listed = agencies(6)
    url = source_server.serve("/map.kml", to_kml(listed[:5]), to_kml(listed))
    bot = Bot.create(tmp_path, url, section(stub, images=True) + SMALL_MAP_GUARD)
    bot.poll()
    bot.poll()

    (media,) = stub.media.values()
    (status,) = stub.statuses
    assert status.media_ids == (media.id,) and status.text.startswith("New partnership: ")
    assert Image.open(io.BytesIO(media.data)).size == (1200, 675)
    (uuid,) = [row["uuid"] for row in bot.rows("select uuid from changes where kind = 'added'")]
    alt = (bot.config.state_dir / "cards" / f"{uuid}.txt").read_text(encoding="utf-8")
    assert media.description == alt and alt.startswith("Map of ")
