"""Shared fixtures: a real source server, config files, the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.source_server import SourceServer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def source_server() -> Iterator[SourceServer]:
    server = SourceServer().start()
    yield server
    server.stop()


def write_config(directory: Path, text: str) -> Path:
    """A config.toml in `directory` whose state_dir is `directory/state`."""
    path = directory / "config.toml"
    header = f'[bot]\nstate_dir = "{directory / "state"}"\n'
    if "[bot]" in text:
        header = ""
    path.write_text(header + text, encoding="utf-8")
    return path


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[[str], Path]:
    return lambda text="": write_config(tmp_path, text)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    """Run `python -m bot ARGS` in a subprocess: the real entry point, real exit codes."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RINGWATCH_")}
    full_env.update(env or {})
    full_env.setdefault("PTB_TIMEDELTA", "1")
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )
