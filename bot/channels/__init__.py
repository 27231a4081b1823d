"""Channel registry: name → "module:Class", imported only when enabled (keeps --help fast)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.channels.base import Channel
    from bot.config import Config

REGISTRY = {
    "console": "bot.channels.console:ConsoleChannel",
    "telegram": "bot.channels.telegram:TelegramChannel",
    "x": "bot.channels.x:XChannel",
}


def secret_env_vars() -> set[str]:
    """The environment variables every channel class declares secret (`Channel.secrets`).

    Taken from the classes defined in this process, the registered ones as they load
    and any other (a plugin, a test double): a channel cannot send, and so cannot echo
    a credential, before its class exists. Importing every registered module up front
    instead would add a second to each CLI call (python-telegram-bot and tweepy).
    """
    from bot.channels.base import Channel

    return {name for cls in Channel.defined for name in cls.secrets}


def enabled_names(config: Config) -> list[str]:
    names = ["console"] if config.console_enabled else []
    names += [name for name in ("telegram", "x") if getattr(config, name).enabled]
    return names


def load_channel(name: str, config: Config) -> Channel:
    module_name, class_name = REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(config)


def enabled_channels(config: Config) -> list[Channel]:
    return [load_channel(name, config) for name in enabled_names(config)]
