"""The console channel: alerts printed to standard output, the default with no other."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from bot.channels.base import Channel
from bot.messages import Delivery, Recipient, Style
from bot.store import Store


@dataclass(frozen=True)
class ConsoleSettings:
    enabled: bool | None = None  # None: on when no other channel is enabled


class ConsoleChannel(Channel):
    name = "console"
    Settings = ConsoleSettings

    def style(self) -> Style:
        return Style(templates=("console", "text"), extension="txt", max_length=100_000)

    def recipients(self, store: Store) -> list[Recipient]:
        return [Recipient("stdout", alerts=True, maintainer=True)]

    async def send(self, delivery: Delivery) -> str | None:
        print(delivery.text, file=sys.stdout, flush=True)
        return None
