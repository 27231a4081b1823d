"""What a message is on its way out, shared by the layers that plan, render and send it:
who it is for (`Recipient`), how a channel renders it (`Style`), who a channel speaks to
(`Audience`) and one message on its way to one recipient (`Delivery`).

Plain values: this module imports nothing of ours but bot/models.py and the filter
vocabulary beside it (bot/areas.py), so rendering (the
static site, the feed) never loads channel code, and a channel never needs the planner.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.areas import Filter, matches
from bot.models import CardFile, Change, MessageKind


@dataclass(frozen=True)
class Recipient:
    id: str
    follows: Filter = field(default_factory=Filter)  # empty: everything
    alerts: bool = True  # receives partnership alerts
    maintainer: bool = False  # receives maintainer warnings

    def wants(self, change: Change) -> bool:
        return matches(self.follows, change)


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
class Audience:
    """Who one channel speaks to now, and how."""

    channel: str
    style: Style
    recipients: Sequence[Recipient]


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
