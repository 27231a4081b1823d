"""The periodic summary: text plus growth chart, queued once per period for every channel."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest

from bot.channels import configure, load_channel
from bot.config import load_config
from bot.messages import Audience, Recipient, Style
from bot.render import make_environment
from bot.reports import build_report
from bot.scheduler import Runner
from bot.store import Store
from bot.summary import plan_summary, queue_summary, summary_period
from tests.support.cli import database, run_cli, write_config
from tests.support.outbox import outbox

TODAY = datetime.now(UTC).date()


@pytest.fixture
def polled(sample_config, tmp_path):
    """A private copy of the polled samples (these tests write to the outbox)."""
    shutil.copytree(sample_config.parent / "state", tmp_path / "state")
    source = sample_config.read_text().split("[source]", 1)[1]
    return write_config(tmp_path, "[source]" + source)


def test_period_is_whole_days_ending_yesterday():
    assert summary_period(datetime(2020, 6, 15).date(), 7) == ("2020-06-08", "2020-06-14")


def test_summary_of_the_week_with_the_changes(polled):
    config = configure(load_config(polled))
    store = Store.open(config.db_path)
    channels = [load_channel("console", config)]
    # Tomorrow, the week just ended holds today's 29 additions, the ending and the rename.
    result = queue_summary(config, store, channels, today=TODAY + timedelta(days=1))
    assert (result.first_day, result.last_day) == (
        (TODAY - timedelta(days=6)).isoformat(),
        TODAY.isoformat(),
    )
    assert result.queued == 1
    [message] = result.messages
    assert message.kind == "summary" and message.channel == "console"
    lines = message.text.splitlines()
    assert lines[1] == "29 new partnerships in 27 states, 1 ended, 1 renamed. 151 listed now."
    assert "MN: Crystal PD, Dakota County Sheriff's Office, Brooklyn Park PD" in lines
    assert "Ended: Ridgeland PD, MS" in lines
    assert "Renamed: Mesa PD → City of Mesa PD, AZ" in lines
    report = build_report(store.db, since=result.first_day, until=result.last_day)
    assert len(report.additions) == 29  # the same numbers as `ringwatch report`
    [row] = outbox(database(polled), kind="summary")
    assert row["attachment"] == result.attachment
    assert row["attachment"].endswith(f"charts/growth-{TODAY.isoformat()}.png")
    with open(row["attachment"], "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    # Queued once per period, however often it runs.
    again = queue_summary(config, store, channels, today=TODAY + timedelta(days=1))
    assert again.queued == 0 and len(outbox(database(polled), kind="summary")) == 1
    store.close()


def test_plan_summary_per_recipient_filter_and_channel_limit():
    store = Store.empty()
    empty = build_report(store.db, since="2020-06-08", until="2020-06-14")
    mn = build_report(store.db, since="2020-06-08", until="2020-06-14", states=["MN"])
    short = Style(templates=("text",), extension="txt", max_length=60)
    audiences = [
        Audience("x", short, [Recipient("feed")]),
        Audience("t", Style(("telegram",), "html", 4096), [Recipient("all"), Recipient(
            "mn", states=frozenset({"MN"})), Recipient("admin", alerts=False, maintainer=True)]),
    ]  # fmt: skip
    messages = plan_summary(
        make_environment(),
        audiences,
        {None: empty, frozenset({"MN"}): mn},
        group="summary:2020-06-14",
        attachment="/tmp/chart.png",
    )
    by_recipient: dict[str, list] = {}
    for message in messages:
        by_recipient.setdefault(message.recipient, []).append(message)
    assert set(by_recipient) == {"feed", "all", "mn"}  # maintainers-only get no summary
    parts = by_recipient["feed"]
    assert len(parts) > 1 and all(len(p.text) <= 60 for p in parts)
    assert [p.attachment for p in parts] == ["/tmp/chart.png"] + [None] * (len(parts) - 1)
    assert by_recipient["all"][0].text.startswith("<b>Ring police partnerships, June 8, 2020")
    assert "(MN)" in by_recipient["mn"][0].text
    store.close()


def test_summary_command_dry_run_then_queue_and_deliver(polled):
    dry = run_cli("summary", "--config", str(polled), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "--- would send to console:stdout" in dry.stdout
    assert "listed now." in dry.stdout
    assert outbox(database(polled), kind="summary") == []
    assert not (polled.parent / "state" / "charts").exists()

    result = run_cli("summary", "--config", str(polled))
    assert result.returncode == 0, result.stderr
    assert "1 message queued" in result.stdout
    assert "console: 1 sent" in result.stdout
    [row] = outbox(database(polled), kind="summary")
    assert row["status"] == "sent"
    assert json.loads(row["change_ids"]) == []
    again = run_cli("summary", "--config", str(polled))
    assert "already queued" in again.stdout and len(outbox(database(polled), kind="summary")) == 1


@pytest.mark.parametrize(
    "cron, problem",
    [
        ("0 9 * *", "is not a crontab expression"),
        ("61 9 * * MON", "is not a crontab expression"),
        ("0 9 * * FUNDAY", "is not a crontab expression"),
        ("0 9 * * 1", "write the day of the week as a name (MON-SUN), not a number"),
    ],
)
def test_summary_cron_is_validated(tmp_path, cron, problem):
    config = write_config(tmp_path, f'[summary]\nenabled = true\ncron = "{cron}"\n')
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 2
    assert f"summary.cron '{cron}'" in result.stderr
    assert problem in result.stderr
    assert "Traceback" not in result.stderr


def test_scheduler_summary_job_queues_and_delivers(polled, capsys):
    config = configure(load_config(polled))
    runner = Runner(config)

    async def summary_then_deliveries() -> None:
        await runner.summary_job()
        await asyncio.gather(*runner.background)  # delivery runs beside the scheduler

    asyncio.run(summary_then_deliveries())
    runner.store.close()
    [row] = outbox(database(polled), kind="summary")
    assert row["status"] == "sent"
    assert "listed now." in capsys.readouterr().out


def test_telegram_gets_the_chart_as_a_photo_with_the_summary_as_caption(polled):
    from tests.support.telegram_stub import DEFAULT_TOKEN, TelegramStub

    stub = TelegramStub().start()
    try:
        config = polled.read_text() + (
            f'[telegram]\nenabled = true\nchannel = "@ring_alerts"\n'
            f'api_base_url = "{stub.base_url}"\n'
        )
        polled.write_text(config)
        result = run_cli("summary", "--config", str(polled),
                         env={"TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN})  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "telegram: 1 sent" in result.stdout
        [photo] = [s for s in stub.sent if s.chat_id == "@ring_alerts"]
        assert photo.photo is not None and photo.photo.startswith(b"\x89PNG")
        assert photo.text.startswith("<b>Ring police partnerships, ")  # the caption, as HTML
        assert "no new or ended partnerships. 151 listed now." in photo.text
        assert photo.text.endswith("for the next summary: 29 new, 1 ended.")  # polled today
        assert [c.method for c in stub.calls if c.method.lower().startswith("send")] == [
            "sendPhoto"
        ]
    finally:
        stub.stop()
