"""What the channel tests (Mastodon, Bluesky, Apprise) share: the bundled samples polled
through the real CLI, the additions they posted counted, and a kill -9 in the middle of a
broadcast."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.support.cli import run_cli, start_cli
from tests.support.wait import wait_for

SAMPLE_ADDITIONS = 29
# One alert per change, whatever a channel's own digest threshold says.
NO_DIGEST = "[alerts]\ndigest_threshold = 1000\n"
# Names from the map nobody checked: every one of them is text, never a mention, tag or link.
HOSTILE_NAMES = [
    "@admin Police Department",
    "#BlackLivesMatter Sheriff's Office",
    "Police https://evil.example/phish Department",
    "＠everyone ＃tag PD",
]


def additions(texts: list[str]) -> Counter[str]:
    """How often each 'New partnership' line was posted, single posts and digest lines."""
    lines = [line for text in texts for line in text.splitlines()]
    return Counter(
        line.removeprefix("New partnership: ").removeprefix("+ ").split(" (")[0]
        for line in lines
        if line.startswith(("New partnership: ", "+ "))
    )


def cli(config: Path, command: str, env: dict[str, str]) -> None:
    result = run_cli(command, "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr


def kill_mid_broadcast(config: Path, env: dict[str, str], posted: Callable[[], int]) -> None:
    """Baseline poll, then a poll whose broadcast is SIGKILLed once `posted()` reaches 3."""
    cli(config, "poll", env)
    process = start_cli("poll", "--config", str(config), env=env)
    wait_for(lambda: posted() >= 3 or process.poll() is not None, 120, "nothing was posted")
    assert process.poll() is None, "the poll ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
