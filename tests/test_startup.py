"""A command loads what it uses: `ringwatch poll` with only the console enabled imports no
channel's client library, no chart or Datasette code, and not numpy (issue 19)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bot.config import SummaryConfig, cron_problem
from tests.support.cli import REPO, SAMPLES, cli_env, write_config
from tests.support.source_server import SourceServer

# What a console-only poll has no use for: the other channels' clients, charts, Datasette,
# numpy (sqlite-utils imports it when installed: bot/store/without_numpy.py),
# pkg_resources (twitter-text's emoji table) and APScheduler (`run`'s, and summary.cron's
# check when it is not the default).
UNUSED = ("telegram", "tweepy", "twitter_text", "mastodon", "atproto", "apprise", "httpx",
          "matplotlib", "datasette", "numpy", "pandas", "pkg_resources", "bot.charts",
          "bot.datasette", "apscheduler")  # fmt: skip
# Every other channel configured, and off: its section is validated, its library not loaded.
CHANNELS_OFF = "".join(
    f"[{name}]\nenabled = false\n"
    for name in ("telegram", "x", "mastodon", "bluesky", "webhook", "apprise")
)
# The CLI as `ringwatch` runs it, then the modules it imported, written to argv[1].
RUN_AND_LIST = """
import json, sys
from bot.cli import cli
try:
    cli(sys.argv[2:], prog_name="ringwatch")
except SystemExit as exc:
    code = exc.code
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
sys.exit(code)
"""


def modules_after(directory: Path, *args: str) -> list[str]:
    listing = directory / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST, str(listing), *args],
        capture_output=True, text=True, env=cli_env(None), cwd=REPO, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(listing.read_text())


def test_a_console_only_poll_imports_no_unused_library(tmp_path):
    with SourceServer() as server:
        url = server.serve(
            "/samples.kml",
            (SAMPLES / "baseline.kml").read_bytes(),
            (SAMPLES / "later.kml").read_bytes(),
        )
        config = write_config(
            tmp_path,
            f'[source]\nurl = "{url}"\nformat = "kml"\n[guard]\nmax_added_share = 0.25\n'
            + CHANNELS_OFF,
        )
        modules_after(tmp_path, "poll", "--config", str(config))  # the baseline

        loaded = modules_after(tmp_path, "poll", "--config", str(config))  # 29 alerts

    assert "bot.poll" in loaded and "bot.channels.console" in loaded  # it did poll
    assert "bot.channels.telegram" in loaded  # for [telegram]'s settings
    packages = {name if name.startswith("bot.") else name.split(".")[0] for name in loaded}
    assert not packages & set(UNUSED), "a console-only poll imported what it does not use"


def test_the_default_summary_schedule_which_config_does_not_check_is_valid():
    assert cron_problem(SummaryConfig.cron) is None
