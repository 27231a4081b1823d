"""The Apprise channel: the long tail (email, Discord, Slack, Matrix, ntfy, any JSON
endpoint …) through Apprise.

Targets come from `APPRISE_URLS` (space- or comma-separated Apprise URLs). They carry
credentials, so they never appear in the config file, the database or a log: each
target is a recipient named by its position and scheme ("2:mailto"), and Apprise's own
log messages, which quote target URLs, are silenced. Apprise only says success or
failure: a failure is a transient one, retried with backoff like any other. An alert's
map card goes as an attachment; a target that cannot take one gets the text (Apprise
leaves the attachment out for it).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

from bot.channels.base import Channel, Delivery, Recipient, Style, in_own_thread
from bot.store import Store

CHANNEL = "apprise"
URLS_ENV = "APPRISE_URLS"
TITLE = "ringwatch"
MAX_LENGTH = 2000  # Discord's limit, the tightest of the common targets
_SEPARATORS = re.compile(r"[\s,]+")

# Apprise logs target URLs, passwords and tokens included.
logging.getLogger("apprise").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class AppriseSettings:
    enabled: bool = False
    images: bool = True  # each alert with its map card as an attachment


class AppriseFailed(Exception):
    """Apprise said the target did not take the message (it says no more)."""


def target_urls() -> list[str]:
    return [url for url in _SEPARATORS.split(os.environ.get(URLS_ENV, "")) if url]


def recipient_id(position: int, url: str) -> str:
    """'2:mailto': which target, without its credentials."""
    return f"{position}:{url.split(':', 1)[0].lower()}"


class AppriseChannel(Channel):
    name = CHANNEL
    Settings = AppriseSettings
    secrets = (URLS_ENV,)
    takes_images = True
    concurrency = 4  # targets served at once

    def _targets(self) -> dict[str, str]:
        return {recipient_id(n, url): url for n, url in enumerate(target_urls(), 1)}

    def problems(self) -> list[str]:
        missing = super().problems()
        if missing:
            return missing
        import apprise

        unknown = [
            recipient
            for recipient, url in self._targets().items()
            if apprise.Apprise.instantiate(url) is None
        ]
        if unknown:
            return [f"{URLS_ENV}: Apprise does not understand target {', '.join(unknown)} "
                    "(see https://github.com/caronc/apprise/wiki for the URL forms)"]  # fmt: skip
        return []

    def style(self) -> Style:
        return Style(templates=(CHANNEL, "text"), extension="txt", max_length=MAX_LENGTH)

    def recipients(self, store: Store) -> list[Recipient]:
        return [Recipient(recipient) for recipient in self._targets()]

    async def send(self, delivery: Delivery) -> str | None:
        url = self._targets().get(delivery.recipient)
        if url is None:  # APPRISE_URLS changed since the message was queued
            raise AppriseFailed(f"no target {delivery.recipient} in {URLS_ENV} any more")
        import apprise  # a config naming [apprise] loads this module: import when sending

        notifier = apprise.Apprise()
        notifier.add(url)
        card = apprise.AppriseAttachment(delivery.card.path) if delivery.card else None
        delivered = await in_own_thread(
            notifier.notify,
            body=delivery.text,
            title=TITLE,
            body_format=apprise.NotifyFormat.TEXT,
            attach=card,
        )
        if not delivered:
            raise AppriseFailed(f"target {delivery.recipient} did not accept the message")
        return None

    def status_lines(self, store: Store) -> list[str]:
        return [f"targets: {', '.join(self._targets()) or 'none'}"]
