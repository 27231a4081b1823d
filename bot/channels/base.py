"""The one small interface every delivery channel implements.

A channel says who its recipients are, how its messages are rendered (templates,
length limit and how length is counted), and sends one outbox row at a time,
raising the errors below so deliver.py can retry, defer or give up uniformly.
A new channel (Mastodon, Bluesky, a webhook) is one file and one line in REGISTRY;
the environment variables it declares in `secrets` are scrubbed from every stored,
printed, logged or sent error text from the moment its class exists (bot/logs.py).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from bot.config import Config
    from bot.store import Store


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


class Channel(ABC):
    name: ClassVar[str]
    # Recipients served at once; the channel's own limiter paces the actual sends.
    concurrency: ClassVar[int] = 1
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

    @abstractmethod
    def style(self) -> Style: ...

    @abstractmethod
    def recipients(self, store: Store) -> list[Recipient]: ...

    @abstractmethod
    async def send(self, row: dict[str, Any], reply_to: str | None) -> str | None:
        """Deliver one outbox row; return the platform's message id (or None).

        deliver.py bounds the call with `alerts.send_timeout` and cancels it after that,
        so whatever it awaits must be cancellable (run blocking clients in a thread that
        is allowed to outlive the call)."""

    async def admit(self, row: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Wait until the channel's pacing lets this row go out. deliver.py claims the row
        only afterwards, so a row waiting here is never "in flight"."""

    def problems(self) -> list[str]:
        """What keeps this channel from working (a missing secret), for check-config."""
        return []

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect before a round of deliveries."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections after a round of deliveries."""

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
