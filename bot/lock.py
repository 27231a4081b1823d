"""One ringwatch process per state directory: an advisory lock file."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class AlreadyRunning(Exception):
    pass


@contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """Hold state_dir/ringwatch.lock for the duration; the kernel drops it if we die."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "ringwatch.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise AlreadyRunning(
                f"{path} is held by pid {holder}: another ringwatch is using this state dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
