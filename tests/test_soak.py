"""The soak (`python -m bench soak`): two simulated days of source changes, hostile
documents, source and platform faults, three SIGKILLs, a full disk and a locked database,
through the real code and the platform stubs; every invariant holds."""

from __future__ import annotations

import json
import subprocess
import sys

from bench.soak_schedule import Fault
from tests.support.cli import REPO, cli_env

CHANNELS = {"telegram", "x", "mastodon", "bluesky", "webhook", "apprise"}


def test_two_simulated_days_of_trouble_keep_every_invariant():
    done = subprocess.run(
        [sys.executable, "-m", "bench", "soak", "--days", "2", "--seed", "7", "--json"],
        capture_output=True, text=True, cwd=REPO, env=cli_env(None), timeout=600,
    )  # fmt: skip

    assert done.stdout, done.stderr[-4000:]
    report = json.loads(done.stdout)
    failed = [check for check in report["invariants"] if not check["ok"]]
    assert not failed, failed
    assert done.returncode == 0, done.stderr[-4000:]
    assert report["polls"] >= 2 * 96
    assert sorted(report["kills"]) == ["mid-broadcast", "mid-commit", "mid-poll"]
    assert set(report["faults"]) == {fault.value for fault in Fault}
    assert set(report["latency"]) == CHANNELS  # each channel's queue-to-send, measured
    assert all(got["messages"] for got in report["latency"].values())
