"""The Apprise channel: the long tail (email, Discord, Slack, Matrix, ntfy, any JSON
endpoint …) through Apprise.

Targets come from `APPRISE_URLS` (space- or comma-separated Apprise URLs), which get
every alert, and from routes (`[[apprise.targets]]`, bot.routes), which get what their
filter matches, their URLs usually in a variable of their own (`url_env`). They carry
credentials, so they never appear in the database or a log: each target is a recipient
named by its position and scheme ("2:mailto", "route1.1:slack"), and Apprise's own log
messages, which quote target URLs, are silenced. Apprise only says success or
failure: a failure is a transient one, retried with backoff like any other. An alert's
map card goes as an attachment; a target that cannot take one gets the text (Apprise
leaves the attachment out for it).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

from bot.areas import Filter
from bot.channels.base import Channel, in_own_thread
from bot.messages import Delivery, Recipient, Style
from bot.routes import RouteSettings, route_filter, route_problems, route_secrets
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
    targets: list[RouteSettings] = field(default_factory=list)  # URLs with a filter (routes)
    images: bool = True  # each alert with its map card as an attachment


class AppriseFailed(Exception):
    """Apprise said the target did not take the message (it says no more)."""


def target_urls(text: str | None = None) -> list[str]:
    """The Apprise URLs in `text` (default: APPRISE_URLS)."""
    source = os.environ.get(URLS_ENV, "") if text is None else text
    return [url for url in _SEPARATORS.split(source) if url]


def recipient_id(position: int, url: str) -> str:
    """'2:mailto': which target, without its credentials."""
    return f"{position}:{url.split(':', 1)[0].lower()}"


class AppriseChannel(Channel):
    name = CHANNEL
    Settings = AppriseSettings
    secrets = (URLS_ENV,)
    takes_images = True
    concurrency = 4  # targets served at once

    @classmethod
    def secrets_in(cls, settings: AppriseSettings) -> tuple[str, ...]:
        return route_secrets(settings.targets)

    @classmethod
    def check_settings(cls, settings: AppriseSettings) -> list[tuple[str, str]]:
        return route_problems(settings.targets, "targets")

    def _routed(self) -> dict[str, tuple[str, Filter]]:
        """recipient id → (Apprise URL, its filter): APPRISE_URLS' get everything."""
        found = {recipient_id(n, url): (url, Filter()) for n, url in enumerate(target_urls(), 1)}
        for r, route in enumerate(self.settings.targets, 1):
            follows = route_filter(route)
            for n, url in enumerate(target_urls(route.destination()), 1):
                found[f"route{r}.{recipient_id(n, url)}"] = (url, follows)
        return found

    def _targets(self) -> dict[str, str]:
        return {recipient: url for recipient, (url, _) in self._routed().items()}

    def problems(self) -> list[str]:
        # With routes, APPRISE_URLS (everything) is optional; a route's variable is not.
        missing = [] if self.settings.targets else super().problems()
        missing += [
            f"apprise.targets[{n}]: {route.url_env} is not set in the environment"
            for n, route in enumerate(self.settings.targets, 1)
            if route.url_env and not route.destination()
        ]
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
        return [Recipient(recipient, follows=follows)
                for recipient, (_, follows) in self._routed().items()]  # fmt: skip

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
