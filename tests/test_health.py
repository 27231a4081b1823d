"""Knowing it is alive (issue 22): `ringwatch health` and its exit codes, the heartbeat a
dead-man's switch receives after polls, and the Prometheus metrics `ringwatch run` serves."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bot.health import judge_health
from bot.models import MessageKind, Origin, OutboxMessage, PollOutcome
from bot.queries import HealthFacts, Waiting
from bot.store import Store
from bot.store.polls import PollRecord
from bot.store.times import epoch_time, iso_time
from tests.support.agencies import agencies
from tests.support.bot import Bot
from tests.support.cli import run_cli, start_cli
from tests.support.http import closed_port_url
from tests.support.leaks import database_text, leaked
from tests.support.source_server import Reply
from tests.support.synthetic import mutate, to_kml
from tests.support.wait import wait_for

PATH = "/map.kml"
HEARTBEAT_ENV = "RINGWATCH_HEARTBEAT_URL"
# The secret part of a push URL, as healthchecks.io's uuid.
TOKEN = "5f3c1a9e-7d2b-4c8e-9a61-0b4d2e8f7c13"


def ringwatch(bot: Bot, *args: str, env: dict[str, str] | None = None):
    command, *rest = args
    return run_cli(command, "--config", str(bot.config_path), *rest, env=env)


def store_poll(bot: Bot, outcome: PollOutcome, finished: float) -> None:
    """A poll row as the poller writes it, finished at epoch `finished`."""
    store = Store.open(bot.config.db_path)
    try:
        at = iso_time(finished)
        record = PollRecord(started_at=at, url="file:///map.kml", origin=Origin.LIVE, forced=0,
                            finished_at=at, outcome=outcome)  # fmt: skip
        store.record_poll(record)
    finally:
        store.close()


# --- the verdict, a pure function of facts -----------------------------------------------------

NOW = 1_800_000_000.0


def verdict(last_good_poll: float | None, *waiting: Waiting):
    facts = HealthFacts(None if last_good_poll is None else iso_time(last_good_poll), waiting)
    return judge_health(facts, now=NOW, max_poll_age=45 * 60, max_backlog_age=30 * 60)


def test_a_recent_good_poll_and_no_backlog_is_healthy():
    health = verdict(NOW - 4 * 60)

    assert health.healthy
    assert health.line() == "healthy: last good poll 4m ago; 0 messages waiting longer than 30m"


def test_each_problem_is_named_with_its_limit_and_key():
    old = Waiting("telegram", 12, iso_time(NOW - 40 * 60))
    health = verdict(NOW - 2 * 3600, old, Waiting("x", 1, iso_time(NOW - 31 * 60)))

    assert not health.healthy
    assert health.line() == (
        "unhealthy: last good poll 2h 0m ago (limit 45m, health.max_poll_age); "
        "telegram: 12 messages waiting, oldest 40m (limit 30m, health.max_backlog_age); "
        "x: 1 message waiting, oldest 31m (limit 30m, health.max_backlog_age)"
    )


def test_no_good_poll_at_all_is_unhealthy():
    assert verdict(None).problems == ("no good poll recorded yet (limit 45m, health.max_poll_age)",)


def test_a_poll_exactly_at_the_limit_is_still_healthy():
    assert verdict(NOW - 45 * 60).healthy
    assert not verdict(NOW - 45 * 60 - 1).healthy


# --- `ringwatch health` ----------------------------------------------------------------------


@pytest.fixture
def bot(tmp_path, source_server) -> Bot:
    """A bot whose baseline poll was just recorded and delivered."""
    made = Bot.create(tmp_path, source_server.serve(PATH, to_kml(agencies(10))))
    made.poll()
    return made


def test_health_exits_0_after_a_fresh_good_poll(bot):
    text = ringwatch(bot, "health")
    as_json = ringwatch(bot, "health", "--format", "json")

    assert (text.returncode, text.stderr) == (0, "")
    assert text.stdout.startswith("healthy: last good poll ")
    assert text.stdout.endswith("; 0 messages waiting longer than 30m\n")
    assert as_json.returncode == 0
    facts = json.loads(as_json.stdout)
    assert facts["healthy"] is True and facts["problems"] == [] and facts["waiting"] == []
    assert facts["last_good_poll"] == bot.polls()[-1]["finished_at"]
    assert facts["max_poll_age_seconds"] == 3 * 15 * 60  # three bot.interval by default
    assert facts["max_backlog_age_seconds"] == 30 * 60


def test_health_exits_1_when_the_last_good_poll_is_old(tmp_path, source_server):
    bot = Bot.create(tmp_path, source_server.serve(PATH, b""), '[bot]\ninterval = "10m"\n')
    store_poll(bot, PollOutcome.OK, time.time() - 2 * 3600)
    store_poll(bot, PollOutcome.FAILED, time.time() - 60)  # a failed poll is no sign of life

    text = ringwatch(bot, "health")
    as_json = ringwatch(bot, "health", "--format", "json")

    assert text.returncode == 1, text.stderr
    assert text.stdout == "unhealthy: last good poll 2h 0m ago (limit 30m, health.max_poll_age)\n"
    assert as_json.returncode == 1
    facts = json.loads(as_json.stdout)
    assert facts["healthy"] is False
    assert facts["last_good_poll_age_seconds"] >= 2 * 3600
    assert facts["problems"] == [text.stdout.removeprefix("unhealthy: ").strip()]


def test_health_max_poll_age_sets_the_limit(tmp_path, source_server):
    bot = Bot.create(tmp_path, source_server.serve(PATH, b""), '[health]\nmax_poll_age = "3h"\n')
    store_poll(bot, PollOutcome.UNCHANGED, time.time() - 2 * 3600)

    assert ringwatch(bot, "health").returncode == 0


def test_health_exits_1_naming_a_channel_whose_messages_wait_too_long(tmp_path, source_server):
    bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml(agencies(10))))
    bot.poll(deliver=False)  # the baseline's notice stays in the outbox
    store = Store.open(bot.config.db_path)
    try:  # and one message held back on purpose (a spent budget): not due, not failing
        store.outbox.queue(None, [OutboxMessage("console", "stdout", MessageKind.NOTICE, "held",
                                                "held back")])  # fmt: skip
    finally:
        store.close()
    queued = iso_time(time.time() - 40 * 60)
    with sqlite3.connect(bot.config.db_path) as db:  # as if queued 40 minutes ago
        db.execute("update outbox set created_at = ?", [queued])
        db.execute("update outbox set next_attempt_at = '2999-01-01T00:00:00Z' "
                   "where group_key = 'held'")  # fmt: skip

    result = ringwatch(bot, "health")
    facts = json.loads(ringwatch(bot, "health", "--format", "json").stdout)

    assert result.returncode == 1
    assert result.stdout == (
        "unhealthy: console: 1 message waiting, oldest 40m (limit 30m, health.max_backlog_age)\n"
    )
    assert [(w["channel"], w["messages"], w["oldest_queued_at"]) for w in facts["waiting"]] == [
        ("console", 1, queued)
    ]
    bot.deliver()
    assert ringwatch(bot, "health").returncode == 0


def test_status_says_what_watches_the_bot(tmp_path, source_server):
    port = urlsplit(closed_port_url()).port
    extra = (f'[health]\nheartbeat_url_env = "{HEARTBEAT_ENV}"\nheartbeat_fail_suffix = "/fail"\n'
             f'[metrics]\nlisten = "127.0.0.1:{port}"\n')  # fmt: skip
    bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml(agencies(10))), extra)
    bot.poll()
    (tmp_path / "plain").mkdir()
    plain = Bot.create(tmp_path / "plain", source_server.serve(PATH, to_kml(agencies(10))))
    plain.poll()

    status = ringwatch(bot, "status").stdout
    default = ringwatch(plain, "status").stdout

    assert "health now: healthy: last good poll " in status
    assert f"heartbeat: the URL in ${HEARTBEAT_ENV} after each good poll, the URL + '/fail' " in (
        status
    )
    assert f"metrics: http://127.0.0.1:{port}/metrics while `ringwatch run` runs" in status
    assert "heartbeat: off (health.heartbeat_url_env)" in default
    assert "metrics: off (metrics.listen)" in default


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ('[health]\nheartbeat_url_env = "https://hc-ping.com/x"\n',
         "health.heartbeat_url_env names the environment variable holding the URL"),
        ('[health]\nheartbeat_fail_suffix = "/fail"\n',
         "health.heartbeat_fail_suffix needs health.heartbeat_url_env"),
        ('[health]\nmax_backlog_age = "0s"\n', "health.max_backlog_age must be a positive"),
        ('[metrics]\nlisten = "localhost"\n', "metrics.listen 'localhost' is not HOST:PORT"),
        ('[metrics]\nlisten = "127.0.0.1:99999"\n', "is not HOST:PORT"),
    ],
)  # fmt: skip
def test_a_health_or_metrics_mistake_is_one_line_naming_the_key(make_config, section, error):
    result = run_cli("check-config", "--config", str(make_config(section)))

    assert result.returncode == 2
    assert error in result.stderr
    assert "Traceback" not in result.stderr


# --- the heartbeat -----------------------------------------------------------------------------


def heartbeat_bot(
    tmp_path: Path, source_server, suffix: str = "", extra: str = ""
) -> tuple[Bot, dict[str, str]]:
    """A bot pinging the source server's /ping/TOKEN (with `suffix` after bad polls)."""
    health = f'{extra}[health]\nheartbeat_url_env = "{HEARTBEAT_ENV}"\n'
    if suffix:
        health += f'heartbeat_fail_suffix = "{suffix}"\n'
    bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml(agencies(10))), health)
    env = {HEARTBEAT_ENV: source_server.serve(f"/ping/{TOKEN}", b"OK")}
    source_server.serve(f"/ping/{TOKEN}/fail", b"OK")
    return bot, env


def pings(source_server) -> list[str]:
    return [r["path"] for r in source_server.requests if r["path"].startswith("/ping/")]


def test_a_good_poll_pings_the_heartbeat_and_a_suspect_one_its_fail_url(tmp_path, source_server):
    bot, env = heartbeat_bot(tmp_path, source_server, suffix="/fail")

    assert ringwatch(bot, "poll", env=env).returncode == 0
    assert pings(source_server) == [f"/ping/{TOKEN}"]
    source_server.serve(PATH, to_kml(agencies(10)[:5]))  # half the agencies gone: not believed
    assert ringwatch(bot, "poll", env=env).returncode == 4
    assert pings(source_server) == [f"/ping/{TOKEN}", f"/ping/{TOKEN}/fail"]


def test_without_a_fail_suffix_a_failed_poll_pings_nothing(tmp_path, source_server):
    bot, env = heartbeat_bot(tmp_path, source_server)
    assert ringwatch(bot, "poll", env=env).returncode == 0
    source_server.serve(PATH, Reply(b"", status=500))

    assert ringwatch(bot, "poll", env=env).returncode == 3
    assert pings(source_server) == [f"/ping/{TOKEN}"]


def test_an_unreachable_heartbeat_is_logged_once_per_streak_never_its_url(tmp_path, source_server):
    bot, _ = heartbeat_bot(tmp_path, source_server)
    unreachable = {HEARTBEAT_ENV: f"{closed_port_url()}/ping/{TOKEN}"}

    first, second = (ringwatch(bot, "poll", env=unreachable) for _ in range(2))
    healthy = ringwatch(bot, "poll", env={HEARTBEAT_ENV: source_server.base_url + f"/ping/{TOKEN}"})
    third = ringwatch(bot, "poll", env=unreachable)

    assert [r.returncode for r in (first, second, healthy, third)] == [0, 0, 0, 0]
    assert first.stderr.count("heartbeat not delivered") == 1
    assert f"<{HEARTBEAT_ENV}>" in first.stderr
    assert "heartbeat" not in second.stderr  # the same streak
    assert "heartbeat: reachable again" in healthy.stderr
    assert third.stderr.count("heartbeat not delivered") == 1  # a new streak
    logs = "".join(r.stdout + r.stderr for r in (first, second, healthy, third))
    assert leaked(logs, [unreachable[HEARTBEAT_ENV], TOKEN]) == []
    assert leaked(database_text(bot.config.db_path), [TOKEN]) == []


def test_a_heartbeat_variable_that_is_not_set_stops_poll_with_one_line(tmp_path, source_server):
    bot, _ = heartbeat_bot(tmp_path, source_server)

    result = ringwatch(bot, "poll")

    assert result.returncode == 2
    assert result.stderr == (
        f"ringwatch: {bot.config_path}: health.heartbeat_url_env: ${HEARTBEAT_ENV} is not set: "
        "export it with the push URL (e.g. https://hc-ping.com/<uuid>), or remove the key\n"
    )
    assert not bot.config.db_path.exists()  # refused before anything was written
    checked = ringwatch(bot, "check-config")
    assert checked.returncode == 2
    assert f"health.heartbeat_url_env: ${HEARTBEAT_ENV} is not set" in checked.stderr


# --- metrics, scraped while `ringwatch run` runs -----------------------------------------------

RUN = '[bot]\nstate_dir = "{state}"\ninterval = "1s"\njitter = "0.01s"\ndeliver_every = "0.2s"\n'
# The labels a series may have: vocabulary and channel names, never a person or a message.
LABELS = {"outcome", "kind", "channel", "status", "result", "le"}


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """name and labels → value of every sample at `url`; nothing before `run` listens."""
    try:
        text = requests.get(url, timeout=10).text
    except requests.ConnectionError:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    return err


def test_run_serves_metrics_that_move_with_polls_and_pings_the_heartbeat(tmp_path, source_server):
    first = agencies(10)
    port = urlsplit(closed_port_url()).port
    extra = (RUN.format(state=tmp_path / "state") + f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
             f'[health]\nheartbeat_url_env = "{HEARTBEAT_ENV}"\n')  # fmt: skip
    bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml(first)), extra)
    env = {HEARTBEAT_ENV: source_server.serve(f"/ping/{TOKEN}", b"OK")}
    url = f"http://127.0.0.1:{port}/metrics"
    process = start_cli("run", "--config", str(bot.config_path), env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: value(scrape(url), "ringwatch_polls_total", outcome="baseline") == 1)
        wait_for(lambda: pings(source_server))
        source_server.serve(PATH, to_kml(mutate(first, seed=4, add=1)))
        wait_for(lambda: value(scrape(url), "ringwatch_changes_total", kind="added") == 1)
        wait_for(lambda: value(scrape(url), "ringwatch_sends_total", channel="console",
                               result="sent") == 2)  # fmt: skip
        samples = scrape(url)
    finally:
        err = stop(process)

    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert value(samples, "ringwatch_polls_total", outcome="ok") >= 1
    assert value(samples, "ringwatch_polls_total", outcome="failed") == 0
    assert value(samples, "ringwatch_changes_total", kind="baseline") == 10
    assert value(samples, "ringwatch_agencies_listed") == 11
    assert value(samples, "ringwatch_outbox_messages", channel="console", status="sent") == 2
    assert value(samples, "ringwatch_sends_total", channel="console", result="failed") == 0
    assert value(samples, "ringwatch_send_duration_seconds_count", channel="console") == 2
    good = {epoch_time(p["finished_at"]) for p in bot.polls() if p["outcome"] != "failed"}
    assert value(samples, "ringwatch_last_good_poll_timestamp_seconds") in good
    assert value(samples, "ringwatch_fetch_duration_seconds_count") >= 2
    assert value(samples, "ringwatch_fetched_bytes_total") >= len(to_kml(first))
    assert value(samples, "ringwatch_snapshots_stored_bytes") > 0
    assert {key for _, labels in samples for key, _ in labels} <= LABELS
    assert pings(source_server)[0] == f"/ping/{TOKEN}"
    assert leaked(err, [TOKEN]) == []


def test_run_pings_the_fail_url_after_a_failed_poll(tmp_path, source_server):
    run = RUN.format(state=tmp_path / "state")
    bot, env = heartbeat_bot(tmp_path, source_server, suffix="/fail", extra=run)
    source_server.serve(PATH, Reply(b"", status=500))
    process = start_cli("run", "--config", str(bot.config_path), env=env,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: f"/ping/{TOKEN}/fail" in pings(source_server))
    finally:
        err = stop(process)

    assert process.returncode == 0, err
    assert set(pings(source_server)) == {f"/ping/{TOKEN}/fail"}
    assert {p["outcome"] for p in bot.polls()} == {"failed"}


def test_without_metrics_run_listens_on_no_port(tmp_path, source_server):
    bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml(agencies(10))),
                     RUN.format(state=tmp_path / "state"))  # fmt: skip
    process = start_cli("run", "--config", str(bot.config_path), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: len(bot.polls()) >= 2)
        sockets = psutil.Process(process.pid).net_connections(kind="inet")
    finally:
        err = stop(process)

    assert process.returncode == 0, err
    assert [s for s in sockets if s.status == psutil.CONN_LISTEN] == []


def test_a_metrics_port_in_use_stops_run_with_one_line(tmp_path, source_server):
    with socket_listening() as port:
        extra = RUN.format(state=tmp_path / "state") + f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        bot = Bot.create(tmp_path, source_server.serve(PATH, to_kml(agencies(10))), extra)

        result = ringwatch(bot, "run")

    assert result.returncode == 2
    assert result.stderr.startswith(
        f"ringwatch: {bot.config_path}: metrics.listen: cannot listen on 127.0.0.1:{port}: "
    )
    assert "Traceback" not in result.stderr
    assert bot.polls() == []


@contextmanager
def socket_listening() -> Iterator[int]:
    """A port on 127.0.0.1 that another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]
