"""Channel registry: name → "module:Class", imported only when configured (keeps --help fast).

The built-in channels are listed here; any installed distribution can add one through
the entry-point group `ringwatch.channels` (`name = "package.module:Class"`), and it
then gets its own `[name]` config section, check-config line and secret redaction
like the built-in ones (docs/channels.md, "Writing a channel"). The channels' sections
of config.toml are validated here (`configure`), by the classes that declare them.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.config import SECTIONS, Config, ConfigError, build_section, suggest, table_line
from bot.logs import declare_secrets
from bot.messages import Audience

if TYPE_CHECKING:
    from bot.channels.base import Channel
    from bot.store import Store

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


def configure(config: Config) -> Config:
    """`config` with each channel's `[name]` section validated by the dataclass its class
    declares (`Channel.Settings`, unknown keys are errors) and checked by its
    `check_settings`; a table that names no known section is a ConfigError too. The
    variables a section names as secret (`secrets_in`) are scrubbed from then on."""
    channels: dict[str, Any] = {}
    for name, table in config.channel_tables.items():
        if not is_channel(name):
            known = [*SECTIONS, *registry()]
            raise ConfigError(f"{config.path}: unknown section [{name}]{suggest(name, known)}")
        cls = channel_class(name)
        settings = build_section(cls.Settings, table, name, config.path)
        declare_secrets(cls.secrets_in(settings))  # before a check's error could quote one
        for key, problem in cls.check_settings(settings):
            where = f"{name}.{key}{table_line(config.path, name, key)}"
            raise ConfigError(f"{config.path}: {where} {problem}")
        channels[name] = settings
    return dataclasses.replace(config, channels=channels)


def channel_settings(config: Config, name: str) -> Any:
    """A channel's validated section, or its defaults when the file has none."""
    return channel_class(name).settings_in(config)


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


def audiences(channels: Sequence[Channel], store: Store) -> list[Audience]:
    """Who each channel speaks to now (its recipients are read from the store)."""
    return [Audience(ch.name, ch.style(), ch.recipients(store)) for ch in channels]
