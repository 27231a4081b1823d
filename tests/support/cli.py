"""The CLI as the user runs it (`python -m bot` in a subprocess: the real entry point, real
exit codes), config files for it, and the bundled samples polled through it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.source_server import SourceServer

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "bot" / "samples"


def write_config(directory: Path, text: str) -> Path:
    """A config.toml in `directory` whose state_dir is `directory/state`."""
    path = directory / "config.toml"
    header = f'[bot]\nstate_dir = "{directory / "state"}"\n'
    if "[bot]" in text:
        header = ""
    path.write_text(header + text, encoding="utf-8")
    return path


def database(config: Path) -> Path:
    """The database of a config that `write_config` wrote."""
    return config.parent / "state" / "ringwatch.db"


def cli_env(env: dict[str, str] | None) -> dict[str, str]:
    """This process's environment without RINGWATCH_* settings, plus `env`."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RINGWATCH_")}
    full_env.update(env or {})
    full_env.setdefault("PTB_TIMEDELTA", "1")
    return full_env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    """Run `python -m bot ARGS` in a subprocess: the real entry point, real exit codes."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env=cli_env(env),
        timeout=timeout,
        cwd=REPO,
    )


def start_cli(*args: str, env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen:
    """Start `python -m bot ARGS` in the background, to be killed or signalled by a test."""
    popen.setdefault("stdout", subprocess.DEVNULL)
    popen.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen(
        [sys.executable, "-m", "bot", *args], env=cli_env(env), cwd=REPO, **popen
    )


def samples_config(server: SourceServer, directory: Path, extra_config: str = "") -> Path:
    """A config polling the bundled snapshots: baseline, later, later again."""
    url = server.serve(
        "/samples.kml",
        (SAMPLES / "baseline.kml").read_bytes(),
        (SAMPLES / "later.kml").read_bytes(),
    )
    # The samples add 29 agencies to 123 (24%) in one poll, as the demo does.
    guard = "" if "[guard]" in extra_config else "[guard]\nmax_added_share = 0.25\n"
    return write_config(
        directory, f'[source]\nurl = "{url}"\nformat = "kml"\n{guard}{extra_config}'
    )


def poll_samples(
    server: SourceServer,
    directory: Path,
    extra_config: str = "",
    env: dict[str, str] | None = None,
) -> Path:
    """Poll the bundled snapshots through the real CLI: baseline, later, later again (the
    repeat confirms the one removal). Returns the config path."""
    config = samples_config(server, directory, extra_config)
    for _ in range(3):
        result = run_cli("poll", "--config", str(config), env=env)
        assert result.returncode == 0, result.stderr
    return config
