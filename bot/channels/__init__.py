"""Channel registry: name → "module:Class", imported only when configured (keeps --help fast).

The built-in channels are listed here; any installed distribution can add one through
the entry-point group `ringwatch.channels` (`name = "package.module:Class"`), and it
then gets its own `[name]` config section, check-config line and secret redaction
like the built-in ones (docs/channels.md, "Writing a channel").
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.channels.base import Channel
    from bot.config import Config

ENTRY_POINT_GROUP = "ringwatch.channels"
REGISTRY = {
    "console": "bot.channels.console:ConsoleChannel",
    "telegram": "bot.channels.telegram:TelegramChannel",
    "x": "bot.channels.x:XChannel",
    "mastodon": "bot.channels.mastodon:MastodonChannel",
    "bluesky": "bot.channels.bluesky:BlueskyChannel",
    "webhook": "bot.channels.webhook:WebhookChannel",
    "apprise": "bot.channels.apprise:AppriseChannel",
}


@functools.cache
def registry() -> dict[str, str]:
    """Every channel this installation knows: the built-in ones, then plug-ins (a plug-in
    cannot replace a built-in channel)."""
    # Imported here: importlib.metadata costs a command that neither fetches nor names a
    # plug-in channel about 25 ms (email, zipfile, csv).
    from importlib.metadata import entry_points

    found = dict(REGISTRY)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


def is_channel(name: str) -> bool:
    """A built-in channel is known without registry()'s scan of every installed
    distribution's entry points (about 30 ms of every command)."""
    return name in REGISTRY or name in registry()


@functools.cache
def channel_class(name: str) -> type[Channel]:
    module_name, class_name = (REGISTRY.get(name) or registry()[name]).split(":")
    return getattr(importlib.import_module(module_name), class_name)


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
    """Console first (when on), then the enabled channels in registry order."""
    names = ["console"] if config.console_enabled else []
    plugins = set(config.channels) - set(REGISTRY)
    return names + [
        name
        for name in (registry() if plugins else REGISTRY)
        if name != "console" and name in config.channels and config.channels[name].enabled
    ]


def load_channel(name: str, config: Config) -> Channel:
    return channel_class(name)(config)


def enabled_channels(config: Config) -> list[Channel]:
    return [load_channel(name, config) for name in enabled_names(config)]
