"""The Bluesky channel against a fake PDS on 127.0.0.1, through atproto, the real CLI
and real SQLite files."""

from __future__ import annotations

import io
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import grapheme
import pytest
from PIL import Image

from bot.store.times import epoch_time
from tests.support.agencies import agencies, renamed
from tests.support.bluesky_stub import PASSWORD, BlueskyStub, error, rate_limited
from tests.support.channels import (
    HOSTILE_NAMES,
    NO_DIGEST,
    SAMPLE_ADDITIONS,
    additions,
    cli,
    kill_mid_broadcast,
)
from tests.support.cli import database, run_cli, samples_config, write_config
from tests.support.leaks import database_text, leaked
from tests.support.outbox import make_due, outbox
from tests.support.source_server import SourceServer
from tests.support.synthetic import to_kml

ENV = {"BLUESKY_APP_PASSWORD": PASSWORD}
SINGLE_POSTS = NO_DIGEST + "max_posts_per_poll = 1000\n"


@pytest.fixture
def stub() -> Iterator[BlueskyStub]:
    with BlueskyStub() as server:
        yield server


def section(stub: BlueskyStub, extra: str = "", images: bool = False) -> str:
    """Posts go as text unless a test is about their map cards."""
    return (
        f'[bluesky]\nenabled = true\nhandle = "ringwatch.test"\nservice = "{stub.base_url}"\n'
        f"images = {str(images).lower()}\n{extra}"
    )


def singles(stub: BlueskyStub, images: bool = False) -> str:
    """One post per change (the alerts section must come before [bluesky])."""
    return NO_DIGEST + section(stub, "max_posts_per_poll = 1000\n", images)


def source_config(directory: Path, url: str, extra: str) -> Path:
    # Small maps that gain several agencies at once: the additions guard must believe them.
    guard = "[guard]\nmax_added_share = 100\n"
    return write_config(directory, f'[source]\nurl = "{url}"\nformat = "kml"\n{guard}{extra}')


def test_every_sample_addition_is_posted_once_with_one_login(
    tmp_path: Path, source_server: SourceServer, stub: BlueskyStub
):
    config = samples_config(source_server, tmp_path, singles(stub))
    for _ in range(3):
        cli(config, "poll", ENV)

    texts = [r.text for r in stub.posts()]
    counts = additions(texts)
    assert len(counts) == SAMPLE_ADDITIONS and set(counts.values()) == {1}
    assert {r["status"] for r in outbox(database(config), channel="bluesky")} == {"sent"}
    assert stub.count("com.atproto.server.createSession") == 1
    session = tmp_path / "state" / "bluesky-session.json"
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    assert not leaked(session.read_text() + database_text(tmp_path / "state" / "ringwatch.db"),
                      [PASSWORD])  # fmt: skip


def test_twenty_processes_in_a_row_log_in_once(tmp_path: Path, source_server: SourceServer):
    """Each process posts (and refreshes the short-lived access token); only the first
    one uses the app password."""
    stub = BlueskyStub(access_lifetime=600).start()  # < 15 minutes: atproto refreshes at once
    try:
        items = agencies(40)
        url = source_server.serve("/a.kml", *[to_kml(items[: 10 + n]) for n in range(21)])
        config = source_config(tmp_path, url, singles(stub))
        for _ in range(21):
            cli(config, "poll", ENV)
    finally:
        stub.stop()

    assert len(stub.posts()) == 20
    assert stub.count("com.atproto.server.createSession") == 1
    assert stub.count("com.atproto.server.refreshSession") >= 19


def test_a_refused_session_logs_in_again_once(
    tmp_path: Path, source_server: SourceServer, stub: BlueskyStub
):
    items = agencies(20)
    url = source_server.serve("/a.kml", to_kml(items[:18]), to_kml(items[:19]), to_kml(items))
    config = source_config(tmp_path, url, singles(stub))
    cli(config, "poll", ENV)
    cli(config, "poll", ENV)
    stub._access.clear()  # the PDS forgot every access token (a revoked session)
    stub._refresh.clear()
    cli(config, "poll", ENV)

    assert len(stub.posts()) == 2
    assert stub.count("com.atproto.server.createSession") == 2


def test_a_digest_is_a_thread_of_posts_within_300_graphemes(
    tmp_path: Path, source_server: SourceServer, stub: BlueskyStub
):
    config = samples_config(source_server, tmp_path, section(stub))
    for _ in range(3):
        cli(config, "poll", ENV)

    posts = stub.posts()
    replies = [p for p in posts if p.value.get("reply")]
    assert replies  # the stub checked every root and parent (uri + cid) exists
    root = replies[0].value["reply"]["root"]
    assert all(p.value["reply"]["root"] == root for p in replies)
    assert all(grapheme.length(p.text) <= 300 for p in posts)
    counts = additions([p.text for p in posts])
    assert len(counts) == SAMPLE_ADDITIONS and set(counts.values()) == {1}


def test_a_kill_mid_broadcast_posts_nothing_twice(
    tmp_path: Path, source_server: SourceServer, stub: BlueskyStub
):
    config = samples_config(source_server, tmp_path, singles(stub, images=True))
    stub.delay = 0.5  # the record is stored, the answer is late: the kill lands in between
    kill_mid_broadcast(config, ENV, lambda: len(stub.records))
    stub.delay = 0
    cli(config, "deliver", ENV)
    cli(config, "poll", ENV)

    texts = [r.text for r in stub.posts()]
    assert len(texts) == len(set(texts))  # 0 duplicate records
    counts = additions(texts)
    assert len(counts) == SAMPLE_ADDITIONS and set(counts.values()) == {1}
    assert stub.count("com.atproto.repo.getRecord") >= 1  # the killed post was looked up
    assert {r["status"] for r in outbox(database(config), channel="bluesky")} == {"sent"}


@pytest.mark.parametrize(
    ("answer", "attempts"),
    [(lambda: rate_limited(120), 0), (lambda: error(502, "UpstreamFailure"), 1)],
)
def test_a_429_or_5xx_is_waited_out_then_everything_goes_once(
    tmp_path: Path, source_server: SourceServer, stub: BlueskyStub, answer, attempts: int
):
    config = samples_config(source_server, tmp_path, singles(stub))
    cli(config, "poll", ENV)
    stub.answers = [answer()]  # made now: a 429's reset is a time
    cli(config, "poll", ENV)
    first = outbox(database(config), channel="bluesky")[0]
    assert first["status"] == "pending" and first["attempts"] == attempts
    if attempts == 0:  # the reset time, for the whole channel
        assert 60 < epoch_time(first["next_attempt_at"]) - time.time() <= 125

    make_due(database(config))  # the CLI reads the real clock
    cli(config, "deliver", ENV)

    texts = [r.text for r in stub.posts()]
    assert len(texts) == len(set(texts)) == len(outbox(database(config), channel="bluesky"))


def test_emoji_and_combining_marks_count_as_graphemes_and_facets_are_exact(
    tmp_path: Path, source_server: SourceServer, stub: BlueskyStub
):
    items = agencies(30)
    marked = [
        renamed(items[0], name="Cañon City Police Department", state="CO"),
        *(
            renamed(a, name=f"Z\u0336a\u0336l\u0336g\u0336o\u0336 {n} 👩‍👩‍👧‍👦 Police Department")
            for n, a in enumerate(items[1:12])
        ),
    ]
    url = source_server.serve("/a.kml", to_kml(items[12:]), to_kml(items[12:] + marked))
    config = source_config(tmp_path, url, section(stub, "max_posts_per_poll = 5\n"))
    cli(config, "poll", ENV)
    cli(config, "poll", ENV)

    posts = stub.posts()
    assert {r["status"] for r in outbox(database(config), channel="bluesky")} == {"sent"}
    assert all(grapheme.length(p.text) <= 300 for p in posts)
    assert any(len(p.text) > 300 for p in posts)  # code points would have split sooner
    counts = additions([p.text for p in posts])
    assert len(counts) == len(marked) and set(counts.values()) == {1}


def test_the_profile_link_is_a_facet_with_exact_utf8_offsets_and_nothing_else_is(
    tmp_path: Path, source_server: SourceServer, stub: BlueskyStub
):
    items = agencies(20)
    names = ["Cañon City Police Department", *HOSTILE_NAMES]
    hostile = [renamed(a, name=n) for a, n in zip(items, names, strict=False)]
    url = source_server.serve("/a.kml", to_kml(items[5:]), to_kml(items[5:] + hostile))
    config = source_config(tmp_path, url, singles(stub))
    cli(config, "poll", ENV)
    cli(config, "poll", ENV)

    assert len(stub.posts()) == len(names)
    for post in stub.posts():
        data = post.text.encode("utf-8")
        lines = post.text.splitlines()
        facets = post.value.get("facets") or []
        assert len(facets) == 1, post.text  # the profile link only: no mention, tag, name link
        (feature,) = facets[0]["features"]
        assert feature["$type"] == "app.bsky.richtext.facet#link"
        start, end = facets[0]["index"]["byteStart"], facets[0]["index"]["byteEnd"]
        assert data[start:end].decode() == feature["uri"] == lines[-1]
    cañon = next(p for p in stub.posts() if "Cañon" in p.text)
    assert cañon.value["facets"][0]["index"]["byteStart"] == len(cañon.text.encode()) - len(
        cañon.text.splitlines()[-1]
    )


def test_a_wrong_app_password_pauses_bluesky_with_one_warning(
    tmp_path: Path, source_server: SourceServer, stub: BlueskyStub
):
    items = agencies(20)
    url = source_server.serve("/a.kml", to_kml(items[:18]), to_kml(items))
    config = source_config(tmp_path, url, "[console]\nenabled = true\n" + section(stub))
    wrong = {"BLUESKY_APP_PASSWORD": "wrong-password-123"}
    cli(config, "poll", wrong)
    cli(config, "poll", wrong)
    make_due(database(config))  # the CLI reads the real clock
    cli(config, "deliver", wrong)

    assert stub.posts() == []
    assert {r["status"] for r in outbox(database(config), channel="bluesky")} == {"pending"}
    warnings = outbox(database(config), kind="warning")
    assert len(warnings) == 1 and "Bluesky refused the login" in warnings[0]["text"]
    assert not leaked(database_text(tmp_path / "state" / "ringwatch.db"), ["wrong-password-123"])


def test_send_test_prints_the_post(tmp_path: Path, stub: BlueskyStub):
    result = run_cli("send-test", "bluesky", "--config",
                     str(write_config(tmp_path, section(stub))), env=ENV)  # fmt: skip

    assert result.returncode == 0, result.stderr
    (post,) = stub.posts()
    assert post.text.startswith("ringwatch test message") and post.uri in result.stdout


def test_an_alert_posts_one_blob_and_one_post_embedding_it_with_alt_and_aspect_ratio(
    tmp_path: Path, source_server: SourceServer, stub: BlueskyStub
):
    items = agencies(6)
    url = source_server.serve("/a.kml", to_kml(items[:5]), to_kml(items))
    config = source_config(tmp_path, url, singles(stub, images=True))
    cli(config, "poll", ENV)
    cli(config, "poll", ENV)

    (blob,) = stub.blobs.values()
    (post,) = stub.posts()
    assert Image.open(io.BytesIO(blob)).size == (1200, 675)
    embed = post.value["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    (image,) = embed["images"]
    assert (image["aspectRatio"]["width"], image["aspectRatio"]["height"]) == (1200, 675)
    with sqlite3.connect(database(config)) as db:
        ((uuid,),) = db.execute("select uuid from changes where id > 5").fetchall()
    alt = (tmp_path / "state" / "cards" / f"{uuid}.txt").read_text(encoding="utf-8")
    assert image["alt"] == alt and alt.startswith("Map of ")
    assert stub.count("com.atproto.repo.uploadBlob") == 1
