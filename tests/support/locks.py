"""Another process holding the database's write lock: what a sqlite3 shell or a backup
script in a transaction does to ringwatch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def hold_write_lock(path: Path) -> subprocess.Popen:
    """Another process in a write transaction on `path` until `release`."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('begin exclusive'); print('holding', flush=True); sys.stdin.read()",
         str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None
    assert holder.stdout.readline() == "holding\n"
    return holder


def release(holder: subprocess.Popen) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=30)


@contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """`path` locked by another process for the length of the block."""
    holder = hold_write_lock(path)
    try:
        yield
    finally:
        release(holder)
