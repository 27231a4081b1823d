"""Waiting for what happens in the background (a process, a server, a thread): the one
place a test polls, with a generous deadline and never a fixed sleep."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable


def wait_for(
    predicate: Callable[[], object], timeout: float = 60, message: str = "gave up waiting"
) -> None:
    """Poll `predicate` until it holds; fail the test with `message` when `timeout` seconds
    pass first. A database that is still being created (sqlite3.OperationalError) does not
    hold yet. A coroutine that must not block its loop awaits
    `asyncio.to_thread(wait_for, ...)`."""
    deadline = time.monotonic() + timeout
    while not holds(predicate):
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def holds(predicate: Callable[[], object]) -> bool:
    try:
        return bool(predicate())
    except sqlite3.OperationalError:
        return False
