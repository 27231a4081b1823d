"""Read and validate config.toml once, into typed, frozen objects.

Every user mistake becomes a ConfigError naming the file, the key and what is wrong;
unknown keys are errors too (with the closest known key suggested), because a typo
that is silently ignored is a bot that never alerts. Secrets never live in the file:
they come from environment variables, read by the channel that needs them.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bot.models import DEFAULT_ALERT_FIELDS, LOGGED_BY_NAME
from bot.normalise import FIELD_ALIASES
from bot.safe import http_url

DEFAULT_SOURCE_URL = (
    "https://www.google.com/maps/d/kml?mid=1eYVDPh5itXq5acDT9b0BVeQwmESBa4cB&forcekml=1"
)
CONFIG_ENV = "RINGWATCH_CONFIG"
# Where the real map's redirects and `&nl=1` NetworkLinks lead (source.allow_hosts).
GOOGLE_MY_MAPS_HOSTS = (
    "www.google.com",
    "google.com",
    "maps.google.com",
    "mymaps.google.com",
    "mymaps.usercontent.google.com",
)


class ConfigError(Exception):
    """A mistake in the configuration, worded for the person who made it."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: str | int | float) -> float:
    """'30s', '15m', '1h', '2d' or a bare number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s', '15m' or '1h'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration such as '30s', '15m' or '1h'")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if not math.isfinite(seconds):  # TOML's inf, or 1e400: no scheduler can wait that long
        raise ValueError("a duration must be a finite number of seconds")
    return seconds


class Duration(float):
    """Seconds, written in the config as '30s', '15m', '1h'."""


@dataclass(frozen=True)
class BotConfig:
    state_dir: str = "state"
    interval: Duration = Duration(15 * 60)
    jitter: Duration = Duration(30)
    deliver_every: Duration = Duration(10)
    log_level: str = "INFO"
    # How long a write waits for another process's lock on the database before giving up.
    busy_timeout: Duration = Duration(30)
    # Sent messages and unreferenced polls older than this are pruned by `run` once a day
    # (0 keeps everything).
    retention: Duration = Duration(90 * 86400)
    # After SIGTERM: how long the step in progress (a poll, a delivery round) may take to
    # finish, and the part of it sends on the wire get before they are cancelled.
    shutdown_grace: Duration = Duration(5)
    send_grace: Duration = Duration(2)


@dataclass(frozen=True)
class SourceConfig:
    url: str = DEFAULT_SOURCE_URL
    format: str | None = None
    timeout: Duration = Duration(30)  # one request, body included
    deadline: Duration = Duration(120)  # every attempt, backoff and NetworkLink together
    retries: int = 3
    backoff: Duration = Duration(2)
    max_bytes: int = 50 * 1024 * 1024
    user_agent: str = "ringwatch/0.1 (+https://github.com/ringwatch/ringwatch; change monitor)"
    # json: where the list of records lives ("features", "data.agencies"); empty = top level
    records_path: str = ""
    # json/csv: our field name → the source's column or key
    fields: dict[str, str] = field(default_factory=dict)
    # Hosts besides source.url's own that a redirect or NetworkLink may lead to.
    allow_hosts: list[str] = field(default_factory=lambda: list(GOOGLE_MY_MAPS_HOSTS))


@dataclass(frozen=True)
class GuardConfig:
    max_missing_share: float = 0.10
    # More new agencies than this share of the known ones in one poll is a broken fetch
    # (duplicated records, a changed key field), not a wave of new partnerships.
    max_added_share: float = 0.10
    removal_confirmations: int = 2


@dataclass(frozen=True)
class AlertsConfig:
    # Above this many changes for one recipient in one poll, a digest replaces single messages.
    digest_threshold: int = 5
    # Fields whose change raises an alert; every field change is logged regardless.
    alert_fields: list[str] = field(default_factory=lambda: list(DEFAULT_ALERT_FIELDS))
    templates_dir: str | None = None
    # Total time one send may take, answer included; then it counts as a failed attempt.
    send_timeout: Duration = Duration(30)
    # How long transient failures (5xx, 429, timeouts, no connection) are retried before
    # a message is marked failed and the maintainers are warned.
    give_up_after: Duration = Duration(3 * 86400)
    # Sends on the wire at once per channel: what a crash can repeat at most.
    max_in_flight: int = 8
    # Alerts and digests carry a map card (bot/cards.py); a channel's `images = false`
    # sends text only there.
    images: bool = True


@dataclass(frozen=True)
class FeedConfig:
    path: str | None = None  # None: no feed; relative to the config file's folder
    entries: int = 50
    title: str = "Ring police partnerships: changes seen by ringwatch"
    url: str | None = None  # the public URL of the feed, for its rel="self" link


@dataclass(frozen=True)
class SummaryConfig:
    enabled: bool = False
    cron: str = "0 9 * * MON"  # minute hour day month day-of-week, in UTC
    days: int = 7  # the period the summary covers, ending when it is queued


@dataclass(frozen=True)
class SiteConfig:
    enabled: bool = False  # rebuild after every poll that changed something
    out: str = "site"  # relative to the config file's folder
    url: str = ""  # public base URL, for canonical links; empty: none
    title: str = "Ring police partnerships"
    # Third-party map tiles under the outlines, opt-in: every reader's address goes to the
    # tile server. Empty: the bundled state outlines alone, no request off the site.
    tiles: str = ""
    attribution: str = ""  # the tiles' credit, e.g. "© OpenStreetMap contributors"
    since: str = ""  # YYYY-MM-DD for the headline; empty: the day of the first poll


@dataclass(frozen=True)
class ImportConfig:
    """`ringwatch import --wayback`: where the Internet Archive is, and how politely to ask."""

    wayback_url: str = "https://web.archive.org"
    pause: Duration = Duration(2)  # between two requests to the archive
    timeout: Duration = Duration(120)  # total deadline of one request, body included


@dataclass(frozen=True)
class HealthConfig:
    """`ringwatch health` and the heartbeat: what "alive" means, and whom to tell after polls."""

    # The last good poll may be this old; None: three times bot.interval (Config.max_poll_age).
    max_poll_age: Duration | None = None
    # A message that should have gone out may wait this long (since it was queued).
    max_backlog_age: Duration = Duration(30 * 60)
    # The environment variable holding the push URL (a secret: anyone with it can ping);
    # empty: no heartbeat.
    heartbeat_url_env: str = ""
    # Appended to the URL after a failed or suspect poll (healthchecks.io: "/fail"); empty:
    # nothing is requested then.
    heartbeat_fail_suffix: str = ""
    heartbeat_timeout: Duration = Duration(10)  # one request's total deadline


@dataclass(frozen=True)
class MetricsConfig:
    """`ringwatch run` serves Prometheus metrics at http://listen/metrics; empty: off."""

    listen: str = ""

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to bind, or None when metrics are off (listen was validated)."""
        return listen_address(self.listen) if self.listen else None

    @property
    def url(self) -> str | None:
        """Where the metrics are served, or None when they are off."""
        if self.address is None:
            return None
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"


@dataclass(frozen=True)
class Config:
    path: Path
    bot: BotConfig = field(default_factory=BotConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)
    summary: SummaryConfig = field(default_factory=SummaryConfig)
    site: SiteConfig = field(default_factory=SiteConfig)
    import_: ImportConfig = field(default_factory=ImportConfig)  # [import]: a Python keyword
    health: HealthConfig = field(default_factory=HealthConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Every other table of the file as written: the channels' sections ([telegram],
    # [mastodon], a plug-in's), which the channel layer validates (bot.channels.configure).
    channel_tables: dict[str, Any] = field(default_factory=dict)
    # Each configured channel's section, validated by the dataclass its class declares
    # (Channel.Settings): filled by bot.channels.configure.
    channels: dict[str, Any] = field(default_factory=dict)

    @property
    def site_path(self) -> Path:
        path = Path(self.site.out)
        return path if path.is_absolute() else self.path.parent / path

    @property
    def feed_path(self) -> Path | None:
        if not self.feed.path:
            return None
        path = Path(self.feed.path)
        return path if path.is_absolute() else self.path.parent / path

    @property
    def state_dir(self) -> Path:
        directory = Path(self.bot.state_dir)
        return directory if directory.is_absolute() else self.path.parent / directory

    @property
    def snapshots_dir(self) -> Path:
        return self.state_dir / "snapshots"

    @property
    def templates_path(self) -> Path | None:
        """alerts.templates_dir, relative to the config file like every other path."""
        if not self.alerts.templates_dir:
            return None
        directory = Path(self.alerts.templates_dir)
        return directory if directory.is_absolute() else self.path.parent / directory

    @property
    def max_poll_age(self) -> float:
        """health.max_poll_age, by default three poll intervals."""
        return self.health.max_poll_age or 3 * self.bot.interval

    @property
    def db_path(self) -> Path:
        return self.state_dir / "ringwatch.db"

    @property
    def console_enabled(self) -> bool:
        """[console] enabled, or by default: on when no other channel is."""
        console = self.channels.get("console")
        if console is not None and console.enabled is not None:
            return console.enabled
        return not any(s.enabled for name, s in self.channels.items() if name != "console")


# TOML section → Config field ([import] is the field import_).
SECTION_FIELDS: dict[str, str] = {
    f.name.removesuffix("_"): f.name
    for f in dataclasses.fields(Config)
    if f.name not in ("path", "channel_tables", "channels")
}
SECTIONS: dict[str, type] = {
    section: typing.get_type_hints(Config)[name] for section, name in SECTION_FIELDS.items()
}

FORMATS = ("kml", "json", "csv")
# What source.fields may map a JSON key or CSV column to (see normalise.FIELD_ALIASES).
SOURCE_FIELDS = tuple(dict.fromkeys(FIELD_ALIASES.values()))
KNOWN_ALERT_FIELDS = tuple(LOGGED_BY_NAME)


def suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(known)})"


def _type_name(tp: Any) -> str:
    if tp is Duration:
        return "a duration such as '30s', '15m' or '1h'"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        item = typing.get_args(tp)[0]
        return "a list of " + {str: "strings", int: "integers", float: "numbers"}.get(
            item, "values"
        )
    if origin is dict:
        return "a table of strings"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, str(tp)
    )


def _coerce(value: Any, tp: Any) -> Any:
    """Check value against tp, converting where TOML's types are narrower than ours."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None):
                continue
            try:
                return _coerce(value, option)
            except (TypeError, ValueError):
                continue
        raise TypeError
    if tp is Duration:
        return Duration(parse_duration(value))
    if origin is list:
        if not isinstance(value, list):
            raise TypeError
        (item_type,) = typing.get_args(tp)
        return [_coerce(item, item_type) for item in value]
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):  # a table of a list of tables
        if not isinstance(value, dict):
            raise TypeError
        hints = typing.get_type_hints(tp)
        unknown = [key for key in value if key not in hints]
        if unknown:
            raise ValueError(f"unknown key {unknown[0]}{suggest(unknown[0], list(hints))}")
        return tp(**{key: _coerce(item, hints[key]) for key, item in value.items()})
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise TypeError
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise TypeError
    if not isinstance(value, tp):
        raise TypeError
    return value


# Keys an earlier release knew: what to write instead.
REMOVED_KEYS = {
    "alerts.max_attempts": "transient failures are now retried for a time, not a number of "
    "attempts: set alerts.give_up_after (default '3d') instead",
}


def build_section(cls: type, table: Any, where: str, file: Path) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [{where}] must be a table")
    for key in table:
        instead = REMOVED_KEYS.get(f"{where}.{key}")
        if instead:
            raise ConfigError(f"{file}: {where}.{key} was removed: {instead}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in hints:
            raise ConfigError(f"{file}: unknown key {where}.{key}{suggest(key, known)}")
        try:
            values[key] = _coerce(value, hints[key])
        except ValueError as exc:
            raise ConfigError(f"{file}: {where}.{key}: {exc}") from None
        except TypeError:
            raise ConfigError(
                f"{file}: {where}.{key} must be {_type_name(hints[key])}, got {value!r}"
            ) from None
    return cls(**values)


def table_line(file: Path, section: str, key: str) -> str:
    """ " (line 12)" for a key naming the nth of a list of tables ("targets[2]"): where
    its `[[section.targets]]` header is in the file; "" otherwise."""
    found = re.fullmatch(r"(\w+)\[(\d+)\]", key)
    if not found or not file.is_file():
        return ""
    header = re.compile(rf"\s*\[\[\s*{section}\.{found[1]}\s*\]\]")
    lines = file.read_text(encoding="utf-8").splitlines()
    numbers = [n for n, line in enumerate(lines, 1) if header.match(line)]
    nth = int(found[2])
    return f" (line {numbers[nth - 1]})" if len(numbers) >= nth else ""


def _check_values(config: Config) -> None:
    file = config.path

    def fail(key: str, problem: str) -> typing.NoReturn:
        raise ConfigError(f"{file}: {key} {problem}")

    # Zero turns jitter or backoff off; these durations must be real time spans.
    for key, seconds in (
        ("bot.interval", config.bot.interval),
        ("bot.deliver_every", config.bot.deliver_every),
        ("bot.busy_timeout", config.bot.busy_timeout),
        ("source.timeout", config.source.timeout),
        ("source.deadline", config.source.deadline),
        ("alerts.send_timeout", config.alerts.send_timeout),
        ("alerts.give_up_after", config.alerts.give_up_after),
    ):
        if seconds <= 0:
            raise ConfigError(f"{file}: {key}: a duration must be positive")
    if config.bot.send_grace > config.bot.shutdown_grace:
        fail("bot.send_grace", "must not be longer than bot.shutdown_grace (it is a part of it)")
    for ours in config.source.fields:
        if ours not in SOURCE_FIELDS:
            fail(
                f"source.fields.{ours}",
                f"is not a field ringwatch knows{suggest(ours, list(SOURCE_FIELDS))}",
            )
    for host in config.source.allow_hosts:
        if not re.fullmatch(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]", host):
            fail("source.allow_hosts", f"lists {host!r}: write a bare host name such as "
                 '"www.google.com", without scheme, port or path')  # fmt: skip
    if config.templates_path is not None and not config.templates_path.is_dir():
        fail("alerts.templates_dir", f"names no directory: {config.templates_path}")
    if config.source.format is not None and config.source.format not in FORMATS:
        fail("source.format", f"must be one of {', '.join(FORMATS)}, got {config.source.format!r}")
    if not 0 <= config.guard.max_missing_share <= 1:
        fail("guard.max_missing_share", "must be between 0 and 1 (a share, e.g. 0.10)")
    if not 0 <= config.guard.max_added_share < math.inf:  # a small map may more than double
        fail("guard.max_added_share", "must be 0 or more (a share of known agencies, e.g. 0.10)")
    if config.guard.removal_confirmations < 1:
        fail("guard.removal_confirmations", "must be at least 1")
    if config.source.max_bytes < 1024:
        fail("source.max_bytes", "must be at least 1024")
    if config.source.retries < 0:
        fail("source.retries", "must be 0 or more")
    if config.alerts.digest_threshold < 1:
        fail("alerts.digest_threshold", "must be at least 1")
    if config.alerts.max_in_flight < 1:
        fail("alerts.max_in_flight", "must be at least 1")
    for name in config.alerts.alert_fields:
        if name not in KNOWN_ALERT_FIELDS:
            fail(
                "alerts.alert_fields",
                f"names an unknown field {name!r}{suggest(name, list(KNOWN_ALERT_FIELDS))}",
            )
    if config.bot.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        fail("bot.log_level", "must be DEBUG, INFO, WARNING or ERROR")
    if config.feed.entries < 1:
        fail("feed.entries", "must be at least 1")
    if config.feed.url is not None and http_url(config.feed.url) is None:
        fail("feed.url", f"must be an absolute http(s) URL, got {config.feed.url!r}")
    if config.summary.days < 1:
        fail("summary.days", "must be at least 1")
    if http_url(config.import_.wayback_url) is None:
        fail("import.wayback_url", f"must be an http(s) URL, got {config.import_.wayback_url!r}")
    if config.import_.timeout <= 0:
        fail("import.timeout", "must be positive")
    # The default needs no check, nor APScheduler's import (about 30 ms of every command).
    cron = config.summary.cron
    problem = cron_problem(cron) if cron != SummaryConfig.cron else None
    if problem:
        fail("summary.cron", problem)
    problem = health_problem(config.health) or metrics_problem(config.metrics)
    if problem:
        fail(*problem)
    problem = site_problem(config.site)
    if problem:
        fail(*problem)


def site_problem(site: SiteConfig) -> tuple[str, str] | None:
    """(key, what is wrong) for a [site] value the site cannot be built with, or None."""
    if site.url and not http_url(site.url):
        return (
            "site.url",
            f"must be an http(s) URL such as https://example.org/ring/, got {site.url!r}",
        )
    tiles_host = urlparse(site.tiles.replace("{s}", "a")).netloc
    # The host goes into the Content-Security-Policy: nothing but a host name and a port.
    if site.tiles and (
        not http_url(site.tiles)
        or not all(p in site.tiles for p in ("{z}", "{x}", "{y}"))
        or not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", tiles_host)
    ):
        return "site.tiles", (
            "must be an http(s) tile URL with {z}, {x} and {y}, "
            f"e.g. https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png, got {site.tiles!r}"
        )
    if site.since:
        try:
            date.fromisoformat(site.since)
        except ValueError:
            return "site.since", f"must be a date like 2020-05-25 (or empty), got {site.since!r}"
    if not site.out.strip():
        return "site.out", 'must name a folder, e.g. "site"'
    return None


def health_problem(health: HealthConfig) -> tuple[str, str] | None:
    """(key, what is wrong) for a [health] value that cannot work, or None."""
    for key in ("max_poll_age", "max_backlog_age", "heartbeat_timeout"):
        if getattr(health, key) is not None and getattr(health, key) <= 0:
            return f"health.{key}", "must be a positive duration such as '45m'"
    if health.heartbeat_url_env and not re.fullmatch(
        r"[A-Za-z_][A-Za-z0-9_]*", health.heartbeat_url_env
    ):
        return "health.heartbeat_url_env", (
            "names the environment variable holding the URL (e.g. "
            f'"RINGWATCH_HEARTBEAT_URL"), not the URL itself; got {health.heartbeat_url_env!r}'
        )
    if health.heartbeat_fail_suffix and not health.heartbeat_url_env:
        return "health.heartbeat_fail_suffix", "needs health.heartbeat_url_env (the URL it extends)"
    return None


def listen_address(listen: str) -> tuple[str, int]:
    """ "HOST:PORT", "[::1]:PORT" or a bare "PORT" (on 127.0.0.1) → (host, port);
    ValueError when it is none of these."""
    host, colon, port = listen.strip().rpartition(":")
    if not colon:
        host = "127.0.0.1"
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{listen!r} is not HOST:PORT")
    return host, int(port)


def metrics_problem(metrics: MetricsConfig) -> tuple[str, str] | None:
    """(key, what is wrong) for a [metrics] value that cannot be listened on, or None."""
    if not metrics.listen:
        return None
    try:
        listen_address(metrics.listen)
    except ValueError as exc:
        return "metrics.listen", f'{exc}: write e.g. "127.0.0.1:9464" (empty: no metrics)'
    return None


def cron_problem(expression: str) -> str | None:
    """Why a crontab expression cannot schedule the summary, or None when it can."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expression.split()
    if len(fields) == 5 and any(ch.isdigit() for ch in fields[4]):
        # APScheduler 3 numbers weekdays from Monday=0, cron from Sunday=0: names are unambiguous.
        return f"{expression!r}: write the day of the week as a name (MON-SUN), not a number"
    try:
        CronTrigger.from_crontab(expression, timezone="UTC")
    except ValueError as exc:
        return (
            f"{expression!r} is not a crontab expression "
            f'("minute hour day month day-of-week", e.g. "0 9 * * MON"): {exc}'
        )
    return None


def _relative_to(config_dir: Path, url: str) -> str:
    """A plain relative path in source.url is relative to the config file, like state_dir."""
    if urlparse(url).scheme or Path(url).is_absolute():
        return url
    return str(config_dir / url)


def parse_config(data: dict[str, Any], path: Path) -> Config:
    """Validate an already-decoded TOML document; the tables that are not ringwatch's own
    sections are kept as written for the channel layer (bot.channels.configure)."""
    sections: dict[str, Any] = {}
    channel_tables: dict[str, Any] = {}
    for name, table in data.items():
        if name in SECTIONS:
            sections[SECTION_FIELDS[name]] = build_section(SECTIONS[name], table, name, path)
        else:
            channel_tables[name] = table
    if "source" in sections:
        source = sections["source"]
        sections["source"] = dataclasses.replace(source, url=_relative_to(path.parent, source.url))
    config = Config(path=path, channel_tables=channel_tables, **sections)
    _check_values(config)
    return config


def load_config(path: str | os.PathLike[str] | None = None, *, required: bool = False) -> Config:
    """Load the config file; a missing default file means "all defaults"."""
    explicit = path is not None or CONFIG_ENV in os.environ
    file = Path(path or os.environ.get(CONFIG_ENV) or "config.toml").absolute()
    if not file.exists():
        if explicit or required:
            raise ConfigError(f"{file}: no such config file")
        return Config(path=file)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    return parse_config(data, file)


def describe(config: Config, channels: list[str]) -> list[str]:
    """What `ringwatch check-config` says the config means, `channels` being the names
    of the enabled ones."""
    feed, summary, history = config.feed_path, config.summary, config.import_
    published = f", published at {config.feed.url}" if config.feed.url else ""
    site = f"{config.site_path}, rebuilt after every poll that changes something"
    return [
        f"config: {config.path}{'' if config.path.exists() else ' (not found: defaults)'}",
        f"source: {config.source.url} ({config.source.format or 'format inferred'})",
        f"state: {config.db_path}",
        f"interval: every {config.bot.interval:g}s (jitter {config.bot.jitter:g}s)",
        f"guard: removal after {config.guard.removal_confirmations} polls missing; a fetch "
        f"missing more than {config.guard.max_missing_share:.0%} of agencies, or adding more "
        f"than {config.guard.max_added_share:.0%}, is not believed",
        f"channels: {', '.join(channels) or 'none'}",
        f"feed: {feed} ({config.feed.entries} entries{published})" if feed else "feed: off",
        f"summary: {summary.cron} (UTC)" if summary.enabled else "summary: off",
        f"site: {site}" if config.site.enabled else "site: built by `ringwatch site` only",
        f"import: Wayback Machine at {history.wayback_url} "
        f"(pause {history.pause:g}s, timeout {history.timeout:g}s)",
    ]


def with_overrides(config: Config, section: str, **values: Any) -> Config:
    """A copy of config with some keys of one section replaced (CLI flags, demo)."""
    return dataclasses.replace(
        config, **{section: dataclasses.replace(getattr(config, section), **values)}
    )


@dataclass(frozen=True)
class PollSettings:
    """How a poll was judged: the settings that decide what a document's records are
    (source.format, records_path, fields, allow_hosts), whether a change alerts or is churn
    (alerts.alert_fields) and whether the poll is believed (the guard). Every poll records
    them, so `ringwatch verify` replays it as it was judged, whatever the config says now.
    """

    max_missing_share: float
    max_added_share: float
    removal_confirmations: int
    alert_fields: tuple[str, ...]
    format: str | None
    records_path: str
    fields: tuple[tuple[str, str], ...]  # source.fields, sorted
    allow_hosts: tuple[str, ...]

    @classmethod
    def of(cls, config: Config) -> PollSettings:
        guard, source = config.guard, config.source
        return cls(
            guard.max_missing_share, guard.max_added_share, guard.removal_confirmations,
            tuple(config.alerts.alert_fields), source.format, source.records_path,
            tuple(sorted(source.fields.items())), tuple(source.allow_hosts),
        )  # fmt: skip

    def to_json(self) -> str:
        """The polls row's `settings`: one canonical text, so its seal is reproducible."""
        data = {
            "guard": {"max_missing_share": self.max_missing_share,
                      "max_added_share": self.max_added_share,
                      "removal_confirmations": self.removal_confirmations},
            "alerts": {"alert_fields": list(self.alert_fields)},
            "source": {"format": self.format, "records_path": self.records_path,
                       "fields": dict(self.fields), "allow_hosts": list(self.allow_hosts)},
        }  # fmt: skip
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PollSettings:
        """ValueError when the text is not settings this ringwatch wrote."""
        try:
            data = json.loads(text)
            guard, alerts, source = data["guard"], data["alerts"], data["source"]
            return cls(
                float(guard["max_missing_share"]), float(guard["max_added_share"]),
                int(guard["removal_confirmations"]), tuple(alerts["alert_fields"]),
                source["format"], str(source["records_path"]),
                tuple(sorted(dict(source["fields"]).items())), tuple(source["allow_hosts"]),
            )  # fmt: skip
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"not poll settings: {exc}") from None

    def applied_to(self, config: Config) -> Config:
        """`config` with these settings in force: how verify replays the poll."""
        config = with_overrides(
            config, "guard", max_missing_share=self.max_missing_share,
            max_added_share=self.max_added_share,
            removal_confirmations=self.removal_confirmations,
        )  # fmt: skip
        config = with_overrides(config, "alerts", alert_fields=list(self.alert_fields))
        return with_overrides(
            config, "source", format=self.format, records_path=self.records_path,
            fields=dict(self.fields), allow_hosts=list(self.allow_hosts),
        )  # fmt: skip
