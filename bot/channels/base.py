"""The one small interface every delivery channel implements.

A channel says who its recipients are, how its messages are rendered (templates,
length limit and how length is counted), and sends one `Delivery` at a time, raising
the errors below so deliver.py can retry, defer or give up uniformly.

A channel is one module: its class declares its name, its `[name]` config section (a
frozen dataclass, validated like every other section), the environment variables
holding its secrets and its message rules. Config sections, the enabled list and
check-config derive from the registry (bot/channels), which also loads third-party
channels from the entry-point group `ringwatch.channels`.
The environment variables a class declares in `secrets` are scrubbed from every
stored, printed, logged or sent error text from the moment it exists (bot/logs.py).
See docs/channels.md, "Writing a channel".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from bot.logs import declare_secrets
from bot.messages import Delivery, Recipient, Style
from bot.store import Store

if TYPE_CHECKING:
    from bot.config import Config


@dataclass(frozen=True)
class ChannelSettings:
    """A channel's `[name]` section when it needs nothing but `enabled`."""

    enabled: bool = False


# Queues one maintainer warning: (message, group); a group is queued once however often.
MaintainerWarning = Callable[[str, str], None]


def missing_secrets(names: tuple[str, ...]) -> list[str]:
    return [name for name in names if not os.environ.get(name, "").strip()]


class DeliveryError(Exception):
    """Base of the errors a channel raises from send()."""


class RetryLater(DeliveryError):
    """Try again after `delay` seconds. With whole_channel, nothing else goes to this
    channel until then (a flood wait, an exhausted budget). With `counts` (the default)
    this is a failed attempt, and a streak of them ends in failure after
    alerts.give_up_after; without, it is only a wait (a flood wait, a spent budget)."""

    def __init__(
        self, delay: float, reason: str, *, whole_channel: bool = False, counts: bool = True
    ):
        super().__init__(reason)
        self.delay = delay
        self.whole_channel = whole_channel
        self.counts = counts


class PermanentFailure(DeliveryError):
    """This message can never be delivered; record it and move on."""


class RecipientGone(PermanentFailure):
    """The recipient blocked us or no longer exists; stop sending to them."""


T = TypeVar("T")


async def in_own_thread(call: Callable[..., T], /, **kwargs: Any) -> T:
    """Run a blocking call (tweepy's, requests') in a daemon thread of its own.

    deliver.py abandons a send that outlives alerts.send_timeout; asyncio.to_thread's
    executor thread would then keep `asyncio.run` (and the process) waiting at exit for
    a request that drips its answer. A daemon thread is simply left behind.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # abandoned: the deadline passed
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = call(**kwargs), None
        except BaseException as exc:  # handed to the awaiting coroutine
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="channel-request", daemon=True).start()
    return await future


class Channel(ABC):
    name: ClassVar[str]
    # The dataclass of the channel's `[name]` config section (unknown keys are errors).
    Settings: ClassVar[type] = ChannelSettings
    # Recipients served at once; the channel's own limiter paces the actual sends.
    concurrency: ClassVar[int] = 1
    # Whether the channel can send an alert's map card (its section then has `images`).
    takes_images: ClassVar[bool] = False
    # Environment variables holding this channel's credentials: never shown anywhere.
    secrets: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Redaction knows a channel's secrets from the moment its class exists: it cannot
        # send, and so cannot echo a credential, before that.
        super().__init_subclass__(**kwargs)
        declare_secrets(cls.secrets)

    def __init__(self, config: Config) -> None:
        self.config = config

    @property
    def settings(self) -> Any:
        """This channel's validated `[name]` section."""
        return self.settings_in(self.config)

    @classmethod
    def settings_in(cls, config: Config) -> Any:
        """This channel's section of `config`, or its defaults when the file has none."""
        section = config.channels.get(cls.name)
        return section if section is not None else cls.Settings()

    def sends_images(self) -> bool:
        """Alerts and digests go with their map card: `[alerts] images` and the channel's
        own `images` (both true by default)."""
        if not self.takes_images:  # before the config: a text-only channel needs none
            return False
        return self.config.alerts.images and getattr(self.settings, "images", True)

    @classmethod
    def secrets_in(cls, settings: Any) -> tuple[str, ...]:
        """Environment variables holding secrets that the channel's section names (a
        route's `url_env`), beside the fixed `secrets`: configure() declares them."""
        return ()

    @classmethod
    def check_settings(cls, settings: Any) -> list[tuple[str, str]]:
        """(key, what is wrong) for values a type alone cannot rule out (a zero limit)."""
        return []

    @abstractmethod
    def style(self) -> Style: ...

    @abstractmethod
    def recipients(self, store: Store) -> list[Recipient]: ...

    @abstractmethod
    async def send(self, delivery: Delivery) -> str | None:
        """Deliver one message; return the platform's message id (or None).

        deliver.py bounds the call with `alerts.send_timeout` and cancels it after that,
        so whatever it awaits must be cancellable (run blocking clients in a thread that
        is allowed to outlive the call)."""

    async def admit(self, delivery: Delivery) -> None:  # noqa: B027 - optional hook
        """Wait until the channel's pacing lets this message go out. deliver.py claims its
        row only afterwards, so a message waiting here is never "in flight"."""

    def problems(self) -> list[str]:
        """What keeps this channel from working, for check-config: by default the secrets
        it declares that are not set."""
        missing = missing_secrets(self.secrets)
        if not missing:
            return []
        return [
            f"{self.name} is enabled but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set in the environment "
            "(see docs/channels.md)"
        ]

    # What deliver.py lends the channel for one round of deliveries (see `open`).
    store: Store | None = None
    warn: MaintainerWarning | None = None

    async def open(self, store: Store, warn: MaintainerWarning) -> None:
        """Connect before a round of deliveries. A channel that reads or writes the
        database while it sends (budgets, change rows) uses `store`, deliver.py's, and
        warns the maintainers of the other channels through `warn`."""
        self.store, self.warn = store, warn

    async def close(self) -> None:
        """Release connections after a round of deliveries."""
        self.store, self.warn = None, None

    def warn_refused(self, message: str) -> None:
        """Warn the maintainers once per failure streak that the platform refused us.

        The warning's group names the last message sent, so a streak warns once and
        the next streak (after something went through) warns again.
        """
        assert self.store is not None and self.warn is not None, "open() first"
        last_sent = self.store.outbox.last_sent_id(self.name)
        self.warn(message, f"warning:{self.name}-refused:{last_sent}")

    def recipient_gone(self, store: Store, recipient: str, reason: str) -> None:  # noqa: B027
        """Forget a recipient that can no longer be reached."""

    def background_tasks(
        self, store: Store, stop: asyncio.Event
    ) -> list[Coroutine[Any, Any, None]]:
        """Coroutines `ringwatch run` keeps running until `stop` is set (a command listener)."""
        return []

    def status_lines(self, store: Store) -> list[str]:
        """Extra lines for `ringwatch status`."""
        return []


# --- channels that post to one public account (X, Mastodon, Bluesky) --------------------------

TIMELINE_ACCOUNT = "account"  # their one recipient: the account the credentials belong to


def timeline_style(channel: Channel, max_length: int, measure: Callable[[str], int]) -> Style:
    """Plain-text posts; more than `max_posts_per_poll` alerts in a poll become one digest
    thread (the channel's `[name]` section has `max_posts_per_poll` and `include_links`)."""
    settings = channel.settings
    return Style(
        templates=(channel.name, "text"),
        extension="txt",
        max_length=max_length,
        measure=measure,
        threaded=True,
        digest_threshold=min(channel.config.alerts.digest_threshold, settings.max_posts_per_poll),
        include_links=settings.include_links,
    )


def timeline_recipients() -> list[Recipient]:
    # Maintainer warnings are not for a public timeline.
    return [Recipient(TIMELINE_ACCOUNT, alerts=True, maintainer=False)]
