"""The webhook channel: one signed JSON POST per change to each configured URL.

The body follows the versioned schema `ringwatch.change/1` (docs/channels.md); fields
may be added, never renamed or removed, without a new version. Headers follow GitHub's
convention: `X-Ringwatch-Delivery` is the same on every retry of one delivery (receivers
de-duplicate by it), and with `RINGWATCH_WEBHOOK_SECRET` set,
`X-Ringwatch-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.

Each target is a recipient: a URL written in the config is its own name; a route's URL
held in a variable (`url_env`) is a secret (it carries a token), so the database and
every text name it by its route ("route2:NEWSROOM_HOOK") and it is read only to send. A
410 Gone disables that target (remembered in the disabled_webhooks table) with one
maintainer warning; 408, 429, 5xx and network errors are retried (a Retry-After is
honoured); any other answer that is not 2xx fails the message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from bot.areas import Filter
from bot.channels.base import (
    Channel,
    MaintainerWarning,
    PermanentFailure,
    RecipientGone,
    RetryLater,
    in_own_thread,
)
from bot.config import Duration
from bot.messages import Delivery, Recipient, Style
from bot.models import (
    CARD_DIR,
    DERIVED_FIELDS,
    PUBLIC_FIELDS,
    REQUIRED_FIELDS,
    URL_FIELDS,
    MessageKind,
)
from bot.routes import RouteSettings, route_filter, route_problems, route_secrets
from bot.safe import http_url
from bot.source import guard
from bot.store import Store

log = logging.getLogger(__name__)

CHANNEL = "webhook"
SECRET_ENV = "RINGWATCH_WEBHOOK_SECRET"
CHANGE_SCHEMA = "ringwatch.change/1"
MESSAGE_SCHEMA = "ringwatch.message/1"  # anything that is not one change (a summary, a test)
USER_AGENT = "ringwatch-webhook/1"
RETRIED_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class WebhookSettings:
    enabled: bool = False
    urls: list[str] = field(default_factory=list)
    timeout: Duration = Duration(10)  # connect and read, each; alerts.send_timeout bounds all
    targets: list[RouteSettings] = field(default_factory=list)  # URLs with a filter (routes)
    images: bool = True  # with [site] url: image_url and image_alt of the change's map card


class WebhookUnavailable(Exception):
    """A transient failure (5xx, 408): deliver.py retries it with backoff."""


def target_names(settings: WebhookSettings) -> list[tuple[str, str]]:
    """(name, URL) of each target in the config's order: a URL written in the file is its
    own name, a url_env route is "route<n>:<variable>" (its URL, "" when unset, is a
    secret that no name, row or text may carry)."""
    named = [(url, url) for url in settings.urls]
    for n, route in enumerate(settings.targets, 1):
        named.append((f"route{n}:{route.url_env}" if route.url_env else route.url,
                      route.destination()))  # fmt: skip
    return named


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def _agency(change: dict[str, Any]) -> dict[str, Any]:
    record = json.loads(change["after"] or change["before"] or "{}")
    agency = {name: record.get(name) for name in PUBLIC_FIELDS if name not in DERIVED_FIELDS}
    agency.update({name: change[name] for name in REQUIRED_FIELDS})
    agency["county"] = change["county"]  # found by ringwatch: kept on the change-log row
    agency.update({name: http_url(agency[name]) for name in URL_FIELDS})  # only http(s) leaves us
    return agency


def change_body(change: dict[str, Any], text: str) -> dict[str, Any]:
    """A change row of the log → the `ringwatch.change/1` document."""
    return {
        "schema": CHANGE_SCHEMA,
        "id": str(change["id"]),
        "kind": change["kind"],
        "text": text,
        "detected_at": change["detected_at"],
        "agency": _agency(change),
        "before": json.loads(change["before"]) if change["before"] else None,
        "after": json.loads(change["after"]) if change["after"] else None,
    }


def message_body(delivery: Delivery) -> dict[str, Any]:
    return {
        "schema": MESSAGE_SCHEMA,
        "id": delivery.key,
        "kind": delivery.kind,
        "text": delivery.text,
    }


class WebhookChannel(Channel):
    name = CHANNEL
    Settings = WebhookSettings
    secrets = (SECRET_ENV,)
    takes_images = True
    concurrency = 4  # URLs served at once

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._session: requests.Session | None = None

    @classmethod
    def secrets_in(cls, settings: WebhookSettings) -> tuple[str, ...]:
        return route_secrets(settings.targets)

    @classmethod
    def check_settings(cls, settings: WebhookSettings) -> list[tuple[str, str]]:
        problems = [
            ("urls", f"must hold http(s) URLs only, got {url!r}")
            for url in settings.urls
            if http_url(url) is None
        ]
        if settings.enabled and not settings.urls and not settings.targets:
            problems.append(("urls", "must name at least one URL when the webhook is enabled"))
        problems += route_problems(settings.targets, "targets")
        problems += [
            (f"targets[{n}]", f"url must be an http(s) URL, got {route.url!r}")
            for n, route in enumerate(settings.targets, 1)
            if route.url and http_url(route.url) is None
        ]
        if settings.timeout <= 0:
            problems.append(("timeout", "must be positive"))
        return problems

    def problems(self) -> list[str]:
        return []  # the secret is optional: unsigned webhooks are allowed

    def sends_images(self) -> bool:
        # Nothing is uploaded: the body links the card where the site publishes it, so
        # without a site URL there is nothing to link (and no card worth drawing).
        return bool(self.config.site.url) and super().sends_images()

    def style(self) -> Style:
        # One POST per change, however many there are: receivers want data, not digests.
        return Style(
            templates=("webhook", "text"),
            extension="txt",
            max_length=100_000,
            digest_threshold=1_000_000_000,
            include_links=False,  # the body carries agency.profile_url
        )

    def recipients(self, store: Store) -> list[Recipient]:
        """Each URL once, by its target's name: a plain one gets everything, a route what
        its filter matches."""
        settings = self.settings
        follows = [Filter()] * len(settings.urls) + [route_filter(r) for r in settings.targets]
        named = target_names(settings)
        disabled = store.disabled_webhooks.among([name for name, _ in named])
        found: dict[str, Recipient] = {}  # by URL: the first listing decides
        for (name, url), chosen in zip(named, follows, strict=True):
            if http_url(url) and url not in found and name not in disabled:
                found[url] = Recipient(name, follows=chosen)
        return list(found.values())

    def _url_of(self, recipient: str) -> str:
        """The URL a recipient names, read now: a route's variable may have changed since
        its message was queued, and a URL no longer configured is sent to as queued."""
        url = dict(target_names(self.settings)).get(recipient, recipient)
        if http_url(url) is None:  # a route removed, or its variable unset, since then
            raise PermanentFailure(f"webhook target {recipient} has no http(s) URL any more")
        return url

    async def open(self, store: Store, warn: MaintainerWarning) -> None:
        self._session = guard.session()
        await super().open(store, warn)

    async def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        await super().close()

    def body(self, delivery: Delivery) -> tuple[str, bytes]:
        """(event, raw body) of one delivery."""
        assert self.store is not None
        change = None
        if delivery.kind == MessageKind.ALERT and len(delivery.change_ids) == 1:
            change = self.store.changes.row(delivery.change_ids[0])
        if change is None:
            document, event = message_body(delivery), delivery.kind
        else:
            document, event = change_body(change, delivery.text), "change"
            if delivery.card is not None:
                base = self.config.site.url.rstrip("/")
                document["image_url"] = f"{base}/{CARD_DIR}/{delivery.card.name}.png"
                document["image_alt"] = delivery.card.alt
        return event, json.dumps(document, ensure_ascii=False).encode()

    async def send(self, delivery: Delivery) -> str | None:
        assert self._session is not None
        event, body = self.body(delivery)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Ringwatch-Event": event,
            "X-Ringwatch-Delivery": delivery.key,
        }
        secret = os.environ.get(SECRET_ENV, "").strip()
        if secret:
            headers["X-Ringwatch-Signature-256"] = sign(secret, body)
        timeout = self.settings.timeout
        response = await in_own_thread(
            self._session.post,
            url=self._url_of(delivery.recipient),
            data=body,
            headers=headers,
            timeout=(timeout, timeout),
            allow_redirects=False,  # a moved receiver is fixed in the config, not followed
        )
        return self._outcome(response, delivery)

    def _outcome(self, response: requests.Response, delivery: Delivery) -> str:
        """The receiver's answer → the delivery key (sent) or the error that says what now."""
        status = response.status_code
        answer = f"HTTP {status} from {delivery.recipient}"
        if 200 <= status < 300:
            return delivery.key
        if status == 410:
            raise RecipientGone(f"{answer} (Gone): this URL is disabled")
        if status in RETRIED_STATUSES or status >= 500:
            delay = retry_after(response.headers.get("Retry-After"), time.time())
            if delay is not None:
                raise RetryLater(max(1.0, delay), f"{answer}, Retry-After {delay:.0f}s",
                                 counts=status != 429)  # fmt: skip
            raise WebhookUnavailable(answer)
        raise PermanentFailure(answer)

    def recipient_gone(self, store: Store, recipient: str, reason: str) -> None:
        """Remember the target as disabled and tell the maintainers once."""
        since = store.disabled_webhooks.disable(recipient, reason)
        log.error("webhook: %s", reason)
        # One warning per time the URL is switched off: since names the row that records
        # it, which `ringwatch enable-webhook` deletes, so a later 410 warns again.
        assert self.warn is not None, "open() first"
        self.warn(
            f"The webhook {recipient} answered 410 Gone: ringwatch sends nothing more to it. "
            f"Once it works again: ringwatch enable-webhook {recipient}",
            f"warning:webhook-gone:{recipient}:{since}",
        )

    def status_lines(self, store: Store) -> list[str]:
        names = [name for name, _ in target_names(self.settings)]
        off = store.disabled_webhooks.among(names)
        disabled = [name for name in names if name in off]  # in the config's order
        routes = len(self.settings.targets)
        lines = [f"{len(names) - len(disabled)} URLs active ({routes} with a filter)"]
        lines += [f"disabled (410 Gone): {name}" for name in disabled]
        return lines
