"""Poll-cycle measurements for one document size, against the floor of the same bytes."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import process
from bench.server import DocumentServer
from bench.worker import MAX_BYTES
from tests.support.synthetic import SyntheticAgency, generate_agencies, mutate, to_kml

REPO = Path(__file__).resolve().parent.parent
PHASES = ("fetch", "parse", "diff", "commit")


@dataclass(frozen=True)
class Plan:
    """How many polls of each kind to run for one size."""

    floor_repeats: int  # floor timings taken before the polls (more come between them)
    repeats: int  # timed polls of each unchanged kind
    unchanged_polls: int  # for database growth: half answered 304, half 200 with the same bytes
    change_polls: int  # successive 1%-change polls, for timing (median) and growth
    churn_polls: int = 10  # polls where every agency's video-request count changes: growth
    process_polls: int = 5  # whole `ringwatch poll` processes of each kind (bench/process.py)


class Worker:
    """The poll worker subprocess (bench/worker.py), one command at a time."""

    def __init__(self, url: str, state_dir: Path) -> None:
        self.stderr = (state_dir / "worker.log").open("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", url, str(state_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=REPO,
        )
        self.started = self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.stderr.seek(0)
            raise RuntimeError(f"bench worker died:\n{self.stderr.read()[-4000:]}")
        return json.loads(line)

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._answer()

    def poll(self, expected: str) -> dict[str, Any]:
        result = self.ask("poll")
        if result["outcome"] != expected:
            raise RuntimeError(f"expected a poll with outcome {expected!r}, got {result}")
        return result

    def db_bytes(self) -> int:
        return self.ask("size")["db_bytes"]

    def close(self) -> None:
        assert self.process.stdin is not None
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        self.process.wait(timeout=60)
        self.stderr.close()


def floor(url: str, repeats: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.floor", url, str(repeats)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    return json.loads(done.stdout)


def aggregate_floor(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The floor of one size from every timing taken: the median read plus the median parse
    of the faster parser (and the fastest of each, for reference).

    Floor timings are taken before the polls and again between the 1%-change polls, so that
    the median floor and the median poll saw the same (shared, noisy) machine.
    """

    def pooled(pick) -> list[float]:
        return [t for sample in samples for t in pick(sample)]

    reads = pooled(lambda s: s["read_s"])
    variants = {
        name: pooled(lambda s, n=name: s["variants_s"][n]) for name in ("iterparse", "fromstring")
    }
    medians = {name: statistics.median(times) for name, times in variants.items()}
    parser = min(medians, key=medians.__getitem__)
    read_s = statistics.median(reads)
    return {
        "bytes": samples[0]["bytes"],
        "samples": len(reads),
        "read_s": read_s,
        "parser": parser,
        "parse_s": medians[parser],
        "total_s": read_s + medians[parser],
        "variants_s": medians,
        "fastest_s": {"read": min(reads), **{name: min(t) for name, t in variants.items()}},
        "rss_stream_mb": samples[0]["rss_stream_mb"],
        "rss_tree_mb": samples[0]["rss_tree_mb"],
    }


def summarise(polls: list[dict[str, Any]], floor: dict[str, Any]) -> dict[str, Any]:
    """The median poll of a kind (by total time), its phases, their shares, and cycle/floor
    (also against the streaming floor: the fastest parse that fits the memory target)."""
    ordered = sorted(polls, key=lambda p: p["total_s"])
    poll = ordered[(len(ordered) - 1) // 2]
    total = poll["total_s"]
    phases = {name: poll["phases_s"].get(name, 0.0) for name in PHASES}
    phases["other"] = max(0.0, total - sum(phases.values()))
    return {
        "samples": len(polls),
        "total_s": total,
        "median_s": statistics.median(p["total_s"] for p in polls),
        "phases_s": phases,
        "shares": {name: value / total for name, value in phases.items()},
        "ratio_to_floor": total / floor["total_s"],
        "ratio_to_stream_floor": total / (floor["read_s"] + floor["variants_s"]["iterparse"]),
        "parsed": any(p["parsed"] for p in polls),
        "rows_written_max": max(p["rows_written"] for p in polls),
        "summary": poll["summary"],
    }


def one_percent(agencies: list[SyntheticAgency], seed: int) -> list[SyntheticAgency]:
    """A later snapshot with 1% changes: a quarter each added, removed, renamed, changed."""
    quarter = max(1, len(agencies) // 400)
    return mutate(agencies, seed, add=quarter, remove=quarter, rename=quarter, change=quarter)


def whole_processes(
    server: DocumentServer, agencies: list[SyntheticAgency], state_dir: Path, runs: int
) -> dict[str, dict[str, Any]]:
    """`ringwatch poll` as whole processes on the worker's database: 1%-change polls, then
    unchanged ones answered 304."""
    config = process.write_config(state_dir, server.url, MAX_BYTES)
    changed = []
    for i in range(runs):
        agencies = one_percent(agencies, seed=1000 + i)
        server.publish(to_kml(agencies))
        changed.append(process.poll(config, "ok: "))
    not_modified = [process.poll(config, "unchanged") for _ in range(runs)]
    return {"change_1pct": process.timings(changed), "unchanged_304": process.timings(not_modified)}


def measure_size(size: int, server: DocumentServer, plan: Plan) -> dict[str, Any]:
    agencies = generate_agencies(size, seed=size)
    document = to_kml(agencies)
    # Same agencies, same Placemarks, in reverse order: different bytes, same content.
    reordered = to_kml(reversed(agencies))
    server.publish(document)
    floors = [floor(server.url, plan.floor_repeats)]

    with tempfile.TemporaryDirectory(prefix="ringwatch-bench-") as tmp:
        worker = Worker(server.url, Path(tmp))
        try:
            baseline = worker.poll("baseline")
            db_baseline = worker.db_bytes()

            not_modified = [worker.poll("unchanged") for _ in range(plan.repeats)]
            server.publish(document, etag=False)
            same_bytes = [worker.poll("unchanged") for _ in range(plan.repeats)]
            other_bytes = []
            for i in range(plan.repeats):
                server.publish(reordered if i % 2 == 0 else document, etag=False)
                other_bytes.append(worker.poll("ok"))

            server.publish(document, etag=True)
            worker.ask("poll")  # back to the original bytes, and an ETag to answer 304 to
            before = worker.db_bytes()
            half = plan.unchanged_polls // 2
            for i in range(plan.unchanged_polls):
                if i == half:
                    server.publish(document, etag=False)
                worker.poll("unchanged")
            unchanged_growth = worker.db_bytes() - before

            before = worker.db_bytes()
            changed = []
            snapshot = agencies
            for i in range(plan.change_polls):
                snapshot = one_percent(snapshot, seed=i)
                server.publish(to_kml(snapshot))
                if i % max(1, plan.change_polls // 10) == 0:  # ~10 samples, in between polls
                    floors.append(floor(server.url, 1))
                changed.append(worker.poll("ok"))
            change_growth = worker.db_bytes() - before

            # Ring updating every agency's video-request count: logged, never alerted.
            before = worker.db_bytes()
            for _ in range(plan.churn_polls):
                snapshot = [replace(a, video_requests=a.video_requests + 1) for a in snapshot]
                server.publish(to_kml(snapshot))
                worker.poll("ok")
            churn_growth = worker.db_bytes() - before
        finally:
            worker.close()
        whole = whole_processes(server, snapshot, Path(tmp), plan.process_polls)

    polls = [baseline, *not_modified, *same_bytes, *other_bytes, *changed]
    floor_result = aggregate_floor(floors)
    for kind in whole.values():
        kind["ratio_to_floor"] = kind["median_s"] / floor_result["total_s"]
    return {
        "agencies": size,
        "bytes": len(document),
        "floor": floor_result,
        "polls": {
            "baseline": summarise([baseline], floor_result),
            "change_1pct": summarise(changed, floor_result),
            "unchanged_200_same_bytes": summarise(same_bytes, floor_result),
            "unchanged_200_reordered": summarise(other_bytes, floor_result),
            "unchanged_304": summarise(not_modified, floor_result),
        },
        "process": whole,
        "rss_mb": {
            "peak": max(p["rss_mb"] for p in polls),
            "after_baseline": baseline["rss_mb"],
            "worker_idle": worker.started["rss_mb"],
            "parse_only_stream": floor_result["rss_stream_mb"],
            "parse_only_tree": floor_result["rss_tree_mb"],
        },
        "db": {
            "after_baseline_bytes": db_baseline,
            "unchanged_polls": plan.unchanged_polls,
            "unchanged_growth_bytes": unchanged_growth,
            "change_polls": plan.change_polls,
            "change_growth_bytes": change_growth,
            "change_growth_per_poll_bytes": change_growth / max(1, plan.change_polls),
            "churn_polls": plan.churn_polls,
            "churn_growth_bytes": churn_growth,
            "churn_growth_per_poll_bytes": churn_growth / max(1, plan.churn_polls),
        },
    }
