"""What the Telegram channel and its command listener (telegram_commands.py) share: the
channel's name, its token's variable, its `[telegram]` section, how its messages are
styled, and what a reader sees of an HTML message. Neither of the two imports the other's
module for these: the channel starts the listener, and nothing points back.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from bot.config import Duration
from bot.messages import Style

TOKEN_ENV = "TELEGRAM_BOT_TOKEN"
CHANNEL = "telegram"
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class TelegramSettings:
    enabled: bool = False
    channel: str | None = None
    admins: list[int] = field(default_factory=list)
    api_base_url: str = "https://api.telegram.org/bot"
    link_previews: bool = False
    messages_per_second: float = 30.0
    # Commands one user may send per command_window; the rest are dropped (one "slow down").
    commands_per_user: int = 5
    command_window: Duration = Duration(10)
    images: bool = True  # alerts and digests as their map card, the text as its caption


def visible_text(text: str) -> str:
    """What a reader sees of an HTML message: tags gone, entities decoded."""
    return html.unescape(_TAG.sub("", text))


def visible_length(text: str) -> int:
    """What Telegram counts against 4096: the text after HTML parsing (tags do not count)."""
    return len(visible_text(text))


def message_style() -> Style:
    """HTML messages, measured as Telegram counts them (tags do not count)."""
    from telegram.constants import MessageLimit  # python-telegram-bot: only when sending

    return Style(
        templates=("telegram", "text"),
        extension="html",
        max_length=MessageLimit.MAX_TEXT_LENGTH,
        measure=visible_length,
    )
