"""Simulated time for the soak: epoch seconds in which real time passes, and which jumps
ahead when every channel's drain is only waiting for a retry (a month runs in minutes,
while a slow send still takes its real time)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager


class VirtualClock:
    def __init__(self, start: float) -> None:
        self.offset = start - time.monotonic()
        self.active = 0  # drains that are running or waiting
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return time.monotonic() + self.offset

    def jump_to(self, moment: float) -> None:
        """Simulated time moves on to `moment` (never back)."""
        self.offset += max(0.0, moment - self.now())

    @contextmanager
    def running(self, drains: int) -> Iterator[None]:
        self.active, self.sleepers = drains, []
        yield

    async def sleep_until(self, moment: float) -> None:
        """Until `moment`: in real time while another drain works, at once when all wait."""
        if moment <= self.now():
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleepers.append((moment, woken))
        self._jump_when_all_wait()
        try:
            await asyncio.wait([woken], timeout=max(0.0, moment - self.now()))
        finally:
            self.sleepers.remove((moment, woken))

    def done(self) -> None:
        """A drain has nothing more to do."""
        self.active -= 1
        self._jump_when_all_wait()

    def _jump_when_all_wait(self) -> None:
        if not self.sleepers or len(self.sleepers) < self.active:
            return
        self.jump_to(min(moment for moment, _ in self.sleepers))
        for moment, woken in self.sleepers:
            if moment <= self.now() and not woken.done():
                woken.set_result(None)
