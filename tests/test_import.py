"""`ringwatch import`: past documents from files, git history and a Wayback CDX stub, polled as
if at their own time, with guards, snapshots and no alerts."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.channels.x import CREDENTIAL_ENV_VARS
from bot.store import Store
from tests.support.agencies import agencies
from tests.support.cli import SAMPLES, database, run_cli, write_config
from tests.support.outbox import outbox
from tests.support.source_server import Reply, SourceServer
from tests.support.synthetic import mutate, to_kml
from tests.support.telegram_stub import DEFAULT_TOKEN, TelegramStub
from tests.support.x_stub import XStub

BASELINE = (SAMPLES / "baseline.kml").read_bytes()
LATER = (SAMPLES / "later.kml").read_bytes()
# The samples add 29 agencies to 123 (24%) in one step, as `ringwatch demo` does.
SAMPLES_GUARD = "[guard]\nmax_added_share = 0.25\n"
ERROR_PAGE = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head></html>"
MAP_URL = "https://www.google.com/maps/d/kml?mid=abc&forcekml=1"
# The samples' story: 29 added, 1 renamed, 1 changed, then the removal confirmed.
SAMPLE_KINDS = {"added": 29, "renamed": 1, "changed": 1, "removed": 1}


def ringwatch(config: Path, *args: str, env: dict[str, str] | None = None):
    return run_cli(*args, "--config", str(config), env=env, timeout=120)


def changes_since(config: Path, day: str) -> list[dict]:
    result = ringwatch(config, "changes", "--since", day, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def kinds(changes: list[dict]) -> dict[str, int]:
    counted: dict[str, int] = {}
    for change in changes:
        counted[change["kind"]] = counted.get(change["kind"], 0) + 1
    return counted


def rows(config: Path, sql: str) -> list[dict]:
    store = Store.open(database(config), readonly=True)
    try:
        return list(store.db.query(sql))
    finally:
        store.close()


# --- files -------------------------------------------------------------------------------


def test_files_named_by_their_time_import_as_polls_at_that_time(tmp_path):
    (tmp_path / "2020-05-24.kml").write_bytes(BASELINE)
    (tmp_path / "2020-06-05T120000Z.kml").write_bytes(LATER)
    (tmp_path / "2020-06-06T08:30:00Z.kml").write_bytes(LATER)
    config = write_config(tmp_path, SAMPLES_GUARD + "")
    files = sorted(str(p) for p in tmp_path.glob("2020-*.kml"))

    result = ringwatch(config, "import", *reversed(files))

    assert result.returncode == 0, result.stderr
    assert "imported 3 documents from file (1 baseline, 1 ok, 1 unchanged)" in result.stdout
    assert "32 changes logged, no alerts" in result.stdout
    since = changes_since(config, "2020-05-25")
    assert kinds(since) == SAMPLE_KINDS
    assert {c["detected_at"] for c in since if c["kind"] != "removed"} == {"2020-06-05T12:00:00Z"}
    assert [c["detected_at"] for c in since if c["kind"] == "removed"] == ["2020-06-06T08:30:00Z"]
    polls = rows(config, "select started_at, outcome, origin, url from polls order by id")
    assert [(p["started_at"], p["origin"]) for p in polls] == [
        ("2020-05-24T00:00:00Z", "file"),
        ("2020-06-05T12:00:00Z", "file"),
        ("2020-06-06T08:30:00Z", "file"),
    ]
    assert {c["origin"] for c in rows(config, "select origin from changes")} == {"file"}
    assert outbox(database(config)) == []
    assert ringwatch(config, "verify").returncode == 0


def test_one_file_at_a_given_time_then_an_older_one_is_refused(tmp_path):
    (tmp_path / "map.kml").write_bytes(BASELINE)
    (tmp_path / "2020-01-01.kml").write_bytes(LATER)
    config = write_config(tmp_path, SAMPLES_GUARD + "")

    first = ringwatch(config, "import", str(tmp_path / "map.kml"), "--at", "2020-05-24T10:00:00Z")
    older = ringwatch(config, "import", str(tmp_path / "2020-01-01.kml"))
    badly_named = ringwatch(config, "import", str(tmp_path / "map.kml"))

    assert first.returncode == 0, first.stderr
    assert older.returncode == 2
    assert "is from 2020-01-01T00:00:00Z, not after the latest poll (2020-05-24T10:00:00Z)" in (
        older.stderr
    )
    assert badly_named.returncode == 2 and "name it like 2020-05-24.kml" in badly_named.stderr
    assert "Traceback" not in older.stderr + badly_named.stderr
    assert len(rows(config, "select id from polls")) == 1


def test_a_live_poll_after_an_import_goes_on_from_the_imported_state(tmp_path, source_server):
    (tmp_path / "2020-05-24.kml").write_bytes(to_kml(agencies(20)))
    newer = mutate(agencies(20), seed=5, add=1)
    config = write_config(
        tmp_path, f'[source]\nurl = "{source_server.serve("/map.kml", to_kml(newer))}"\n'
    )
    assert ringwatch(config, "import", str(tmp_path / "2020-05-24.kml")).returncode == 0

    result = ringwatch(config, "poll")

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("New partnership: ") == 1
    assert [p["origin"] for p in rows(config, "select origin from polls")] == ["file", "live"]


# --- git -----------------------------------------------------------------------------------


def commit(repo: Path, when: str, files: dict[str, bytes], message: str) -> None:
    for name, body in files.items():
        (repo / name).write_bytes(body)
    who = {f"GIT_{role}_{part}": value for role in ("AUTHOR", "COMMITTER")
           for part, value in (("NAME", "Scraper"), ("EMAIL", "scraper@example.org"))}  # fmt: skip
    env = {**os.environ, **who, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
    for command in (["git", "add", "-A"], ["git", "commit", "-q", "-m", message]):
        subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True, timeout=60)


def test_a_git_scraper_history_imports_commit_by_commit(tmp_path):
    repo = tmp_path / "scraper"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=60)
    commit(repo, "2020-05-24T10:00:00+00:00", {"map.kml": BASELINE}, "baseline")
    commit(repo, "2020-06-05T12:00:00+02:00", {"map.kml": LATER}, "later")
    commit(repo, "2020-06-06T00:00:00+00:00", {"README": b"unrelated"}, "not the map")
    commit(repo, "2020-06-07T00:00:00+00:00", {"map.kml": LATER + b"\n"}, "whitespace")
    config = write_config(tmp_path, SAMPLES_GUARD + '[source]\nformat = "kml"\n')

    first = ringwatch(config, "import", "--git", str(repo), "--path", "map.kml")
    again = ringwatch(config, "import", "--git", str(repo), "--path", "map.kml")

    assert first.returncode == 0, first.stderr
    assert "imported 3 documents from git (1 baseline, 2 ok)" in first.stdout
    polls = rows(config, "select started_at, origin, url from polls order by id")
    assert [p["started_at"] for p in polls] == [
        "2020-05-24T10:00:00Z",
        "2020-06-05T10:00:00Z",  # commit time, in UTC
        "2020-06-07T00:00:00Z",
    ]
    assert all(p["origin"] == "git" and p["url"].endswith(":map.kml") for p in polls)
    assert kinds(changes_since(config, "2020-05-25")) == SAMPLE_KINDS
    assert again.returncode == 0 and "3 already imported, skipped" in again.stdout
    assert len(rows(config, "select id from polls")) == 3


def test_a_path_git_never_held_is_a_clear_error(tmp_path):
    repo = tmp_path / "scraper"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=60)
    commit(repo, "2020-05-24T10:00:00Z", {"map.kml": BASELINE}, "baseline")
    config = write_config(tmp_path, SAMPLES_GUARD + "")

    result = ringwatch(config, "import", "--git", str(repo), "--path", "nope.kml")

    assert result.returncode == 2
    assert "no commit changed nope.kml" in result.stderr and "Traceback" not in result.stderr


# --- the Wayback Machine -------------------------------------------------------------------


@pytest.fixture
def telegram() -> Iterator[TelegramStub]:
    with TelegramStub() as stub:
        yield stub


@pytest.fixture
def x() -> Iterator[XStub]:
    with XStub() as stub:
        yield stub


def cdx_listing(stamps: list[str]) -> bytes:
    header = ["urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length"]
    kml_type = "application/vnd.google-earth.kml+xml"
    rows = [["com,google)/maps/d/kml", s, MAP_URL, kml_type, "200", f"D{s}", "9"] for s in stamps]
    return json.dumps([header, *rows]).encode()


def serve_archive(server: SourceServer, captures: dict[str, list[Reply | bytes]]) -> None:
    server.serve("/cdx/search/cdx", cdx_listing(list(captures)))
    for stamp, replies in captures.items():
        server.serve(f"/web/{stamp}id_/{MAP_URL}", *replies)


def wayback_config(tmp_path: Path, server: SourceServer, telegram: TelegramStub, x: XStub):
    return write_config(
        tmp_path,
        SAMPLES_GUARD
        + f'[import]\nwayback_url = "{server.base_url}"\npause = "0s"\ntimeout = "5s"\n'
        '[telegram]\nenabled = true\nchannel = "@ring_alerts"\n'
        f'api_base_url = "{telegram.base_url}"\n'
        f'[x]\nenabled = true\napi_base_url = "{x.base_url}"\n',
    )


def channel_env() -> dict[str, str]:
    env = {name: f"test-{name.lower()}-0123456789" for name in CREDENTIAL_ENV_VARS}
    return {**env, "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN}


def test_wayback_captures_import_skipping_an_error_page_and_alert_nobody(
    tmp_path, source_server, telegram, x
):
    serve_archive(
        source_server,
        {
            "20200524000000": [BASELINE],
            "20200601000000": [ERROR_PAGE],
            "20200605120000": [LATER],
            "20200606000000": [LATER],
        },
    )
    config = wayback_config(tmp_path, source_server, telegram, x)

    result = ringwatch(config, "import", "--wayback", MAP_URL, "--from", "2020-05-01",
                       "--until", "2020-06-30", env=channel_env())  # fmt: skip
    delivered = ringwatch(config, "deliver", env=channel_env())

    assert result.returncode == 0, result.stderr
    assert "1 baseline, 1 failed, 1 ok, 1 unchanged" in result.stdout
    assert "not believed: 2020-06-01T00:00:00Z" in result.stdout
    polls = rows(config, "select started_at, outcome, origin, url, snapshot from polls")
    assert [(p["outcome"], p["origin"]) for p in polls] == [
        ("baseline", "wayback"), ("failed", "wayback"), ("ok", "wayback"), ("unchanged", "wayback")
    ]  # fmt: skip
    assert polls[1]["url"] == f"{source_server.base_url}/web/20200601000000id_/{MAP_URL}"
    assert polls[1]["snapshot"]  # the error page is kept, cited, and not believed
    assert kinds(changes_since(config, "2020-05-25")) == SAMPLE_KINDS
    listing = next(r["path"] for r in source_server.requests if r["path"].startswith("/cdx"))
    assert "output=json" in listing and "from=20200501" in listing and "to=20200630" in listing
    assert source_server.max_in_flight == 1  # one request at a time
    assert delivered.returncode == 0, delivered.stderr
    assert outbox(database(config)) == []
    assert telegram.calls_to("sendMessage") == [] and x.posts == []


def test_an_interrupted_wayback_import_resumes_where_it_stopped(
    tmp_path, source_server, telegram, x
):
    serve_archive(
        source_server,
        {
            "20200524000000": [BASELINE],
            "20200605120000": [Reply(b"busy", status=503), Reply(LATER)],
            "20200606000000": [LATER],
        },
    )
    config = wayback_config(tmp_path, source_server, telegram, x)

    first = ringwatch(config, "import", "--wayback", MAP_URL)
    imported_first = rows(config, "select started_at from polls")
    second = ringwatch(config, "import", "--wayback", MAP_URL)

    assert first.returncode == 3
    assert "HTTP 503" in first.stderr and "run the same command again to resume" in first.stderr
    assert [p["started_at"] for p in imported_first] == ["2020-05-24T00:00:00Z"]
    assert second.returncode == 0, second.stderr
    assert "1 already imported, skipped" in second.stdout
    assert [p["outcome"] for p in rows(config, "select outcome from polls")] == [
        "baseline", "ok", "unchanged"
    ]  # fmt: skip
    fetched = [r["path"] for r in source_server.requests if r["path"].startswith("/web/2020052")]
    assert len(fetched) == 1  # the first capture was not fetched again


def test_a_capture_that_never_answers_stops_at_the_deadline(tmp_path, source_server, telegram, x):
    serve_archive(source_server, {"20200524000000": [Reply(BASELINE, delay=4)]})
    config = wayback_config(tmp_path, source_server, telegram, x)
    text = config.read_text().replace('timeout = "5s"', 'timeout = "1s"')
    config.write_text(text)

    result = ringwatch(config, "import", "--wayback", MAP_URL)

    assert result.returncode == 3
    assert "20200524000000id_" in result.stderr and "Traceback" not in result.stderr
    assert rows(config, "select id from polls") == []


def test_a_capture_that_drips_stops_at_the_deadline(tmp_path, source_server, telegram, x):
    serve_archive(source_server, {"20200524000000": [Reply(BASELINE, drip=0.05)]})
    config = wayback_config(tmp_path, source_server, telegram, x)
    config.write_text(config.read_text().replace('timeout = "5s"', 'timeout = "1s"'))

    result = ringwatch(config, "import", "--wayback", MAP_URL)

    assert result.returncode == 3
    assert "20200524000000id_" in result.stderr and "took over import.timeout (1s)" in result.stderr
    assert "Traceback" not in result.stderr
    assert rows(config, "select id from polls") == []


def test_a_capture_over_the_byte_cap_is_a_failed_poll(tmp_path, source_server, telegram, x):
    serve_archive(source_server, {"20200524000000": [Reply(BASELINE, chunked=True)]})
    config = wayback_config(tmp_path, source_server, telegram, x)
    config.write_text(config.read_text() + "[source]\nmax_bytes = 1024\n")

    result = ringwatch(config, "import", "--wayback", MAP_URL)

    polls = rows(config, "select outcome, error from polls")
    assert result.returncode == 0, result.stderr
    assert [p["outcome"] for p in polls] == ["failed"]
    assert "sent more than the 1,024 byte cap" in polls[0]["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give FILE..., or --git REPO --path FILE, or --wayback URL"),
        (("--git", "."), "--git and --path go together"),
        (("a.kml", "--from", "2020-01-01"), "--from and --until select Wayback captures"),
        (("a.kml", "b.kml", "--at", "2020-01-01"), "--at gives the time of one file"),
        (("a.kml", "--at", "soon"), "'soon' is not a time like 2020-05-24"),
    ],
)
def test_a_mistaken_import_is_one_clear_line_and_imports_nothing(tmp_path, args, message):
    for name in ("a.kml", "b.kml"):
        (tmp_path / name).write_bytes(BASELINE)
    config = write_config(tmp_path, SAMPLES_GUARD + "")

    paths = [str(tmp_path / a) if a.endswith(".kml") else a for a in args]
    result = ringwatch(config, "import", *paths)

    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert (
        not (tmp_path / "state" / "ringwatch.db").exists()
        or rows(config, "select id from polls") == []
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[import]\nwayback_urll = "x"\n',
            "unknown key import.wayback_urll (did you mean 'wayback_url'?)",
        ),
        (
            '[import]\nwayback_url = "ftp://archive.org"\n',
            "import.wayback_url must be an http(s) URL",
        ),
        ('[import]\npause = "-1s"\n', "import.pause: '-1s' is not a duration"),
        ('[import]\ntimeout = "0s"\n', "import.timeout must be positive"),
    ],
)
def test_the_import_section_is_checked_like_every_other(tmp_path, text, message):
    from bot.config import ConfigError, load_config

    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert message in str(raised.value)


def test_the_import_section_is_read(tmp_path):
    from bot.config import load_config

    config = load_config(write_config(tmp_path, '[import]\npause = "5s"\ntimeout = "1m"\n'))

    assert (config.import_.wayback_url, config.import_.pause, config.import_.timeout) == (
        "https://web.archive.org", 5.0, 60.0
    )  # fmt: skip


def test_an_import_publishes_the_site_and_feed_once_at_the_end(tmp_path):
    (tmp_path / "2020-05-24.kml").write_bytes(BASELINE)
    (tmp_path / "2020-06-05.kml").write_bytes(LATER)
    (tmp_path / "2020-06-06.kml").write_bytes(LATER)
    config = write_config(
        tmp_path,
        SAMPLES_GUARD + '[site]\nenabled = true\nout = "public"\n[feed]\npath = "feed.xml"\n',
    )

    result = ringwatch(config, "import", *sorted(str(p) for p in tmp_path.glob("2020-*.kml")))

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("rebuilt the site in") == 1
    changes = json.loads((tmp_path / "public" / "data" / "changes.json").read_text())
    assert {"added", "removed"} <= set(kinds(changes))  # the site shows the last document too
    assert "Partnership ended: Ridgeland PD, MS" in (tmp_path / "feed.xml").read_text()
