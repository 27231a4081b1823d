"""The console channel: alerts printed to standard output, the default with no other."""

from __future__ import annotations

import sys
from typing import Any

from bot.channels.base import Channel, Recipient, Style
from bot.store import Store


class ConsoleChannel(Channel):
    name = "console"

    def style(self) -> Style:
        return Style(templates=("console", "text"), extension="txt", max_length=100_000)

    def recipients(self, store: Store) -> list[Recipient]:
        return [Recipient("stdout", alerts=True, maintainer=True)]

    async def send(self, row: dict[str, Any], reply_to: str | None) -> str | None:
        print(row["text"], file=sys.stdout, flush=True)
        return None
