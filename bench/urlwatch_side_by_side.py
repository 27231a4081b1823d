"""ringwatch and urlwatch side by side: the same map, the same 1% change, one process per
check each, as cron runs them (issue 19). Run on demand, not in CI:

    python3 -m venv /tmp/urlwatch-venv && /tmp/urlwatch-venv/bin/pip install urlwatch==2.29
    .venv/bin/python -m bench.urlwatch_side_by_side --urlwatch /tmp/urlwatch-venv/bin/urlwatch

urlwatch is not a dependency of ringwatch: it lives in its own virtualenv. Both watch the
same synthetic KML on 127.0.0.1 (bench/server.py). After a first check each (ringwatch's
baseline, urlwatch's first copy), every round publishes a 1% change (a quarter each added,
removed, renamed, changed) and times one `ringwatch poll` process (console alerts, change
log, snapshot) and one `urlwatch` process (fetch, compare with its cache, print the diff),
in alternating order. Figures are medians of wall time, with CPU time beside them.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import process
from bench.polls import one_percent
from bench.server import DocumentServer
from bench.worker import MAX_BYTES
from tests.support.synthetic import generate_agencies, to_kml

TARGET = 0.5  # ringwatch's time per check ≤ half of urlwatch's


def urlwatch_check(urlwatch: str, directory: Path) -> process.Run:
    """One `urlwatch` run of the one job, with its files in `directory`."""
    files = ["--urls", str(directory / "urls.yaml"), "--config", str(directory / "urlwatch.yaml"),
             "--cache", str(directory / "cache.db")]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([urlwatch, *files], capture_output=True, text=True, timeout=600,
                          env=process.process_env())  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"urlwatch exited {done.returncode}: {done.stderr[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return process.Run(wall, cpu, done.stdout)


def version(urlwatch: str) -> str:
    done = subprocess.run([urlwatch, "--version"], capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def side_by_side(urlwatch: str, agencies: int, rounds: int) -> dict[str, Any]:
    listed = generate_agencies(agencies, seed=agencies)
    ringwatch: list[process.Run] = []
    theirs: list[process.Run] = []
    with DocumentServer() as server, tempfile.TemporaryDirectory(prefix="side-by-side-") as tmp:
        ours_dir, their_dir = Path(tmp, "ringwatch"), Path(tmp, "urlwatch")
        ours_dir.mkdir()
        their_dir.mkdir()
        config = process.write_config(ours_dir, server.url, MAX_BYTES)
        (their_dir / "urls.yaml").write_text(f"url: {json.dumps(server.url)}\n")
        server.publish(to_kml(listed))
        process.poll(config, "baseline")
        urlwatch_check(urlwatch, their_dir)  # its first copy (and its default config)
        for i in range(rounds):
            listed = one_percent(listed, seed=i)
            server.publish(to_kml(listed))
            if i % 2 == 0:
                ringwatch.append(process.poll(config, "ok: "))
                theirs.append(urlwatch_check(urlwatch, their_dir))
            else:
                theirs.append(urlwatch_check(urlwatch, their_dir))
                ringwatch.append(process.poll(config, "ok: "))
            if "@@" not in theirs[-1].stdout:
                raise RuntimeError(f"urlwatch reported no change: {theirs[-1].stdout[-500:]}")
        document = len(server.document.body)
    ours_s = statistics.median(r.wall_s for r in ringwatch)
    their_s = statistics.median(r.wall_s for r in theirs)
    return {
        "agencies": agencies,
        "bytes": document,
        "rounds": rounds,
        "urlwatch": version(urlwatch),
        "ringwatch_s": ours_s,
        "urlwatch_s": their_s,
        "ringwatch_cpu_s": statistics.median(r.cpu_s for r in ringwatch),
        "urlwatch_cpu_s": statistics.median(r.cpu_s for r in theirs),
        "ratio": ours_s / their_s,
        "target": TARGET,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.urlwatch_side_by_side",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--urlwatch", default=shutil.which("urlwatch"),
                        help="the urlwatch executable (default: the one on PATH)")  # fmt: skip
    parser.add_argument("--agencies", type=int, default=2000, help="map size (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="1%%-change checks (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not args.urlwatch:
        parser.error("no urlwatch on PATH: install it in its own venv and pass --urlwatch")
    result = side_by_side(args.urlwatch, args.agencies, args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        r = result
        print(f"{r['agencies']:,} agencies ({r['bytes'] / 1024 / 1024:.1f} MB), 1% change per "
              f"check, median of {r['rounds']} ({r['urlwatch']}):")  # fmt: skip
        print(f"  ringwatch poll  {r['ringwatch_s']:.3f} s (CPU {r['ringwatch_cpu_s']:.3f} s)")
        print(f"  urlwatch        {r['urlwatch_s']:.3f} s (CPU {r['urlwatch_cpu_s']:.3f} s)")
        ok = "ok" if r["ratio"] <= TARGET else "MISS"
        print(f"  {ok}: ringwatch / urlwatch = {r['ratio']:.2f} (target ≤ {TARGET})")
    return 0 if result["ratio"] <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
