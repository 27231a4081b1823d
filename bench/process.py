"""Whole `ringwatch` processes, as a user or cron runs them: start-up, imports, config,
the database, the poll and its delivery, exit. The in-process figures (bench/worker.py)
leave start-up out; these are what each check costs on the machine.

A process runs without PYTHONDONTWRITEBYTECODE, so its modules load from cached bytecode
as an installed ringwatch's do (pip compiles them at install).
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def ringwatch_command() -> list[str]:
    """The installed `ringwatch` script next to this Python, or `python -m bot`."""
    script = shutil.which("ringwatch", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "bot"]


def process_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGWATCH_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float  # user + system time of the process: less shaken by a busy machine
    stdout: str


def run(*args: str, check: bool = True) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([*ringwatch_command(), *args], capture_output=True, text=True,
                          cwd=REPO, env=process_env(), timeout=600)  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if check and done.returncode != 0:
        raise RuntimeError(f"ringwatch {' '.join(args)} exited {done.returncode}: {done.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Run(wall, cpu, done.stdout)


def timings(runs: list[Run]) -> dict[str, Any]:
    walls = [r.wall_s for r in runs]
    return {
        "runs": len(runs),
        "best_s": min(walls),
        "median_s": statistics.median(walls),
        "cpu_median_s": statistics.median(r.cpu_s for r in runs),
    }


def help_time(runs: int) -> dict[str, Any]:
    """Wall time of `ringwatch --help` in a fresh process, best of `runs`."""
    run("--help")  # the first compiles what has no cached bytecode yet
    measured = timings([run("--help") for _ in range(runs)])
    shown = " ".join([Path(ringwatch_command()[0]).name, *ringwatch_command()[1:], "--help"])
    return {"command": shown, **measured}


def write_config(state_dir: Path, url: str, max_bytes: int) -> Path:
    """The config of a console-only ringwatch polling `url` into `state_dir`."""
    path = state_dir / "process-config.toml"
    path.write_text(
        f'[bot]\nstate_dir = "{state_dir}"\n'
        f'[source]\nurl = "{url}"\nformat = "kml"\nmax_bytes = {max_bytes}\nretries = 0\n',
        encoding="utf-8",
    )
    return path


def poll(config: Path, expected: str) -> Run:
    result = run("poll", "--config", str(config))
    summary = result.stdout.strip().splitlines()[-1]  # after what the console delivered
    if not summary.startswith(expected):
        raise RuntimeError(f"expected a poll that was {expected!r}, got {summary!r}")
    return result
