"""The one small interface every delivery channel implements.

A channel says who its recipients are, how its messages are rendered (templates,
length limit and how length is counted), and sends one `Delivery` at a time, raising
the errors below so deliver.py can retry, defer or give up uniformly.

A channel is one module: its class declares its name, its `[name]` config section (a
frozen dataclass, validated like every other section), the environment variables
holding its secrets and its message rules. Config sections, the enabled list,
check-config and secret redaction all derive from the registry (bot/channels), which
also loads third-party channels from the entry-point group `ringwatch.channels`.
The environment variables a class declares in `secrets` are scrubbed from every
stored, printed, logged or sent error text from the moment it exists (bot/logs.py).
See docs/channels.md, "Writing a channel".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from bot.models import CardFile, MessageKind
from bot.store import Store

if TYPE_CHECKING:
    from bot.config import Config


@dataclass(frozen=True)
class Recipient:
    id: str
    states: frozenset[str] | None = None  # None: every state
    alerts: bool = True  # receives partnership alerts
    maintainer: bool = False  # receives maintainer warnings

    def wants(self, state: str) -> bool:
        return self.states is None or state in self.states


@dataclass(frozen=True)
class Style:
    """How a channel's messages are rendered."""

    templates: tuple[str, ...]  # template folders, searched in order
    extension: str  # "txt", or "html" (autoescaped)
    max_length: int
    measure: Callable[[str], int] = len
    threaded: bool = False  # digest parts reply to each other (X threads)
    digest_threshold: int | None = None  # None: alerts.digest_threshold
    include_links: bool = True


@dataclass(frozen=True)
class ChannelSettings:
    """A channel's `[name]` section when it needs nothing but `enabled`."""

    enabled: bool = False


@dataclass(frozen=True)
class Delivery:
    """One message on its way to one recipient: what `Channel.send` gets."""

    id: int  # the outbox row
    channel: str
    recipient: str
    kind: MessageKind
    group_key: str  # parts of one group form a thread
    part: int
    text: str
    created_at: str  # when it was queued (ISO 8601, UTC)
    change_ids: tuple[int, ...] = ()
    attachment: str | None = None
    reply_to: str | None = None  # the platform id of the previous part (threaded styles)
    earlier_attempts: int = 0  # > 0: an earlier attempt may have reached the platform
    card: CardFile | None = None  # the map card of an alert or digest (bot/cards.py)

    @classmethod
    def from_row(cls, row: dict[str, Any], reply_to: str | None = None) -> Delivery:
        return cls(
            id=row["id"],
            channel=row["channel"],
            recipient=row["recipient"],
            kind=MessageKind(row["kind"]),
            group_key=row["group_key"],
            part=row["part"],
            text=row["text"],
            created_at=row["created_at"],
            change_ids=tuple(json.loads(row["change_ids"] or "[]")),
            attachment=row.get("attachment"),
            reply_to=reply_to,
            earlier_attempts=row["attempts"],
        )

    @property
    def key(self) -> str:
        """A stable id of this delivery, the same on every retry and after a restart, and
        different across databases (the queueing time is part of it): an idempotency key."""
        identity = "|".join(
            [self.created_at, self.channel, self.recipient, self.group_key, str(self.part)]
        )
        return hashlib.sha256(identity.encode()).hexdigest()[:32]


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
    # Every channel class defined in this process, so that redaction knows its secrets
    # before it can send anything (see bot.channels.secret_env_vars).
    defined: ClassVar[list[type[Channel]]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Channel.defined.append(cls)

    def __init__(self, config: Config) -> None:
        self.config = config

    @property
    def settings(self) -> Any:
        """This channel's validated `[name]` section."""
        return self.config.channel_settings(self.name)

    def sends_images(self) -> bool:
        """Alerts and digests go with their map card: `[alerts] images` and the channel's
        own `images` (both true by default)."""
        if not self.takes_images:  # before the config: a text-only channel needs none
            return False
        return self.config.alerts.images and getattr(self.settings, "images", True)

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

    # Deliveries run beside polls: a channel that reads or writes the database while it
    # sends (budgets, warnings, change rows) declares so and gets its own connection,
    # open for one round of deliveries.
    uses_store: ClassVar[bool] = False
    _store: Store | None = None

    async def open(self) -> None:
        """Connect before a round of deliveries."""
        if self.uses_store:
            self._store = Store.open(self.config.db_path)

    async def close(self) -> None:
        """Release connections after a round of deliveries."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def warn_refused(self, message: str) -> None:
        """Warn the maintainers once per failure streak that the platform refused us.

        The warning's group names the last message sent, so a streak warns once and
        the next streak (after something went through) warns again.
        """
        assert self._store is not None, "open() first: uses_store is not set"
        last_sent = self._store.outbox.last_sent_id(self.name)
        self.warn_maintainers(self._store, message, f"warning:{self.name}-refused:{last_sent}")

    def recipient_gone(self, store: Store, recipient: str, reason: str) -> None:  # noqa: B027
        """Forget a recipient that can no longer be reached."""

    def warn_maintainers(self, store: Store, message: str, group: str) -> None:
        """Queue a warning for the maintainers of every other enabled channel (a public
        account is no place for it). `group` makes it one warning: queued twice, stored once."""
        from bot.channels import enabled_channels
        from bot.notify import audiences, plan_maintainer_message  # notify imports this module
        from bot.render import make_environment

        others = [ch for ch in enabled_channels(self.config) if ch.name != self.name]
        messages = plan_maintainer_message(
            make_environment(self.config.templates_path),
            audiences(others, store),
            kind=MessageKind.WARNING,
            group=group,
            message=message,
        )
        store.outbox.queue(None, messages)

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
