"""The benchmark runs end to end at a tiny size and reports every metric (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.cli import REPO

pytestmark = pytest.mark.slow  # a real benchmark run: skipped by -m "not slow"

POLL_KINDS = (
    "baseline",
    "change_1pct",
    "unchanged_200_same_bytes",
    "unchanged_200_reordered",
    "unchanged_304",
)
PHASES = {"fetch", "parse", "diff", "commit", "other"}


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=180,
    )


@pytest.fixture(scope="module")
def report() -> dict:
    done = run_bench("--sizes", "200", "--json", "--quick")
    # 1 means a target was missed, which tiny documents do (fixed costs dominate).
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_every_poll_kind_is_measured_against_the_floor(report: dict) -> None:
    size = report["sizes"]["200"]
    assert size["agencies"] == 200 and size["bytes"] > 0
    floor = size["floor"]
    assert floor["total_s"] == pytest.approx(floor["read_s"] + floor["parse_s"])
    assert set(floor["variants_s"]) == {"iterparse", "fromstring"}
    assert floor["samples"] == 3  # before the polls, then before each of the 2 1%-change polls
    for kind in POLL_KINDS:
        poll = size["polls"][kind]
        assert poll["total_s"] > 0 and poll["ratio_to_floor"] > 0
        assert set(poll["phases_s"]) == PHASES
        assert sum(poll["shares"].values()) == pytest.approx(1.0)
    assert size["polls"]["change_1pct"]["samples"] == 2
    assert size["polls"]["change_1pct"]["summary"].startswith("ok: ")


def test_unchanged_polls_skip_the_parse_unless_the_bytes_differ(report: dict) -> None:
    polls = report["sizes"]["200"]["polls"]
    assert polls["unchanged_304"]["parsed"] is False
    # The poll row and its snapshot's poll count, nothing else.
    assert polls["unchanged_304"]["rows_written_max"] == 2
    assert polls["unchanged_200_same_bytes"]["parsed"] is False
    assert polls["unchanged_200_reordered"]["parsed"] is True
    assert "0 added, 0 removed, 0 renamed, 0 changed" in polls["unchanged_200_reordered"]["summary"]


def test_memory_and_database_growth_are_reported(report: dict) -> None:
    size = report["sizes"]["200"]
    rss = size["rss_mb"]
    assert rss["peak"] >= rss["worker_idle"] > 0
    assert rss["parse_only_tree"] >= rss["parse_only_stream"] > 0
    db = size["db"]
    assert db["after_baseline_bytes"] > 0
    assert db["unchanged_polls"] == 4 and 0 <= db["unchanged_growth_bytes"] < 100 * 1024
    assert db["change_polls"] == 2 and db["change_growth_bytes"] > 0
    # Every video count changing: far less than the ~320 bytes a row per agency took.
    assert db["churn_polls"] == 2 and db["churn_growth_per_poll_bytes"] < 200 * 100


def test_whole_ringwatch_processes_are_measured_beside_the_in_process_polls(report: dict):
    process = report["sizes"]["200"]["process"]
    for kind in ("change_1pct", "unchanged_304"):
        assert process[kind]["runs"] == 2
        assert process[kind]["best_s"] > 0 and process[kind]["cpu_median_s"] > 0
        assert process[kind]["ratio_to_floor"] > 0


def test_broadcast_help_and_targets_are_reported(report: dict) -> None:
    broadcast = report["broadcast"]
    assert broadcast["queued"] == broadcast["subscribers"] == 100
    # Stopping the delivery may leave a message accepted by the stub but not yet marked sent.
    assert broadcast["sent"] >= broadcast["sent_per_outbox"] > 1
    assert broadcast["configured_rate"] == 30
    assert broadcast["share_of_rate"] > 0
    assert broadcast["http_429"] == 0  # the pacer never makes the Bot API refuse a message
    assert report["help"]["best_s"] > 0
    names = [t["target"] for t in report["targets"]]
    for expected in ("1%-change poll", "baseline poll", "304 poll", "unchanged polls",
                     "broadcast: achieved", "broadcast: 429s", "--help"):  # fmt: skip
        assert any(expected in name for name in names), expected
    assert all(isinstance(t["ok"], bool) for t in report["targets"])
    assert report["machine"]["cpus"] >= 1 and report["machine"]["python"]


def test_bad_sizes_are_a_usage_error() -> None:
    done = run_bench("--sizes", "many")
    assert done.returncode == 2
    assert "--sizes must be comma-separated integers" in done.stderr


def test_a_year_of_snapshots_is_measured_against_its_budget(report: dict) -> None:
    snapshots = report["snapshots"]
    assert snapshots["days"] == 2 and snapshots["files"] == 2
    assert snapshots["polls"] == 2 * 96  # identical polls of a day store nothing more
    assert 1_400_000 < snapshots["document_bytes"] < 1_700_000
    chosen = next(name for name in snapshots["compressors"] if name.endswith("(chosen)"))
    assert 0 < snapshots["year_mb"] == snapshots["compressors"][chosen]["year_mb"]
    assert any(t["target"].startswith("snapshots: a year") for t in report["targets"])


def test_map_cards_are_measured(report: dict) -> None:
    cards = report["cards"]
    assert cards["cards"] == 5  # --quick
    assert cards["median_card_s"] > 0 and cards["first_card_s"] > 0
    assert 0 < cards["median_png_bytes"] <= cards["max_png_bytes"] < 300_000
    assert 0 < cards["digest_png_bytes"] < 300_000
    assert set(cards["commit_s"]) == {"text", "images"}
