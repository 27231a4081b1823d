"""The Mastodon channel: alerts posted to the project's account with Mastodon.py.

Exactly once, also across a kill: every post carries an `Idempotency-Key` derived from
its outbox row (`Delivery.key`), so re-sending a post whose first attempt reached the
server (killed before the answer was stored) returns the original status instead of a
second one (servers keep keys for about an hour).

Length is the instance's own: `configuration.statuses.max_characters`, URLs counted as
`characters_reserved_per_url`, read once from the instance and kept in the state dir;
500 when the instance does not say. A 429 waits until `X-RateLimit-Reset` without
counting as an attempt; 401/403 pause the channel (one maintainer warning per streak);
422 fails that message; 5xx and network errors go back to deliver.py's backoff.

An alert's map card is uploaded first (`POST /api/v2/media`, the alt text as its
`description`); when the server answers 202 (still processing) it is asked again
(`GET /api/v1/media/:id`) until it has a URL, within the send's deadline, then the status
goes with `media_ids[]` and the same Idempotency-Key: a retry may upload the card again
(an unattached upload is removed by the server), never post twice.

Mastodon.py is synchronous: its calls run in a thread of their own
(`in_own_thread`), with `ratelimit_method="throw"` (its default "wait" would sleep in
that call past our deadline) and `version_check_mode="none"` (no extra request).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import requests

from bot.channels.base import (
    Channel,
    MaintainerWarning,
    PermanentFailure,
    RetryLater,
    in_own_thread,
    timeline_recipients,
    timeline_style,
)
from bot.messages import Delivery, Recipient, Style
from bot.models import CardFile
from bot.store import Store

if TYPE_CHECKING:  # imported where used: a config naming [mastodon] loads this module
    from mastodon import Mastodon, MastodonAPIError

log = logging.getLogger(__name__)

CHANNEL = "mastodon"
TOKEN_ENV = "MASTODON_ACCESS_TOKEN"
DEFAULT_MAX_CHARACTERS = 500
DEFAULT_URL_LENGTH = 23
INSTANCE_CACHE = "mastodon-instance.json"  # in the state dir
INSTANCE_MAX_AGE = timedelta(days=1)
REQUEST_TIMEOUT = 30.0
INSTANCE_TIMEOUT = 10.0  # asked while a poll plans its messages: keep it short
RATE_LIMIT_FALLBACK = 5 * 60.0  # a 429 without a usable reset: Mastodon's window is 5 minutes
REFUSED_PAUSE = 3600.0
VISIBILITIES = ("public", "unlisted", "private")
MEDIA_POLL = (0.2, 2.0)  # seconds between asking whether an upload is processed: first, most


@dataclass(frozen=True)
class MastodonSettings:
    enabled: bool = False
    api_base_url: str = ""  # the account's instance, e.g. "https://mastodon.social"
    visibility: str = "public"
    max_posts_per_poll: int = 10  # more changes → one digest thread
    include_links: bool = True  # posting links costs nothing here
    images: bool = True  # alerts and digests with their map card


@dataclass(frozen=True)
class InstanceLimits:
    max_characters: int = DEFAULT_MAX_CHARACTERS
    characters_reserved_per_url: int = DEFAULT_URL_LENGTH

    @classmethod
    def from_instance(cls, instance: dict[str, Any]) -> InstanceLimits:
        """From /api/v2/instance or /api/v1/instance; defaults where it says nothing."""
        statuses = (instance.get("configuration") or {}).get("statuses") or {}
        return cls(
            int(statuses.get("max_characters") or DEFAULT_MAX_CHARACTERS),
            int(statuses.get("characters_reserved_per_url") or DEFAULT_URL_LENGTH),
        )

    def measure(self, text: str) -> int:
        """A post's length as Mastodon counts it: every URL weighs the same."""
        from twitter_text import extract_urls

        urls = extract_urls(text)
        return len(text) - sum(len(u) for u in urls) + len(urls) * self.characters_reserved_per_url


def make_client(api_base_url: str, token: str | None, timeout: float = REQUEST_TIMEOUT) -> Mastodon:
    from mastodon import Mastodon

    session = requests.Session()
    session.trust_env = False  # no proxy or netrc from the environment
    return Mastodon(
        access_token=token,
        api_base_url=api_base_url,
        ratelimit_method="throw",
        version_check_mode="none",
        request_timeout=timeout,
        session=session,
    )


def fetch_limits(client: Mastodon) -> InstanceLimits:
    from mastodon import MastodonNotFoundError

    try:
        instance = client.instance_v2()
    except MastodonNotFoundError:  # before Mastodon 4.0
        instance = client.instance_v1()
    return InstanceLimits.from_instance(instance)


def _status_code(exc: MastodonAPIError) -> int | None:
    """Mastodon.py raises (message, status, reason, error) for HTTP errors."""
    return exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None


def _describe(exc: MastodonAPIError) -> str:
    status = _status_code(exc)
    detail = exc.args[3] if len(exc.args) > 3 else str(exc)
    return f"{status} {detail}" if status else str(exc)


class MastodonChannel(Channel):
    name = CHANNEL
    Settings = MastodonSettings
    secrets = (TOKEN_ENV,)
    takes_images = True

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._client: Mastodon | None = None
        self._limits: InstanceLimits | None = None

    @classmethod
    def check_settings(cls, settings: MastodonSettings) -> list[tuple[str, str]]:
        from bot.safe import http_url

        problems = []
        if settings.enabled and http_url(settings.api_base_url) is None:
            problems.append(("api_base_url", "must be the account's instance, an http(s) URL "
                             'such as "https://mastodon.social"'))  # fmt: skip
        if settings.visibility not in VISIBILITIES:
            problems.append(("visibility", f"must be one of {', '.join(VISIBILITIES)}"))
        if settings.max_posts_per_poll < 1:
            problems.append(("max_posts_per_poll", "must be at least 1"))
        return problems

    @property
    def token(self) -> str:
        import os

        return os.environ.get(TOKEN_ENV, "").strip()

    # --- the instance's length limit ------------------------------------------------------

    @property
    def _cache_path(self) -> Path:
        return self.config.state_dir / INSTANCE_CACHE

    def limits(self) -> InstanceLimits:
        """The instance's limits: from the state dir's cache while it is fresh, else asked
        once (and cached); the defaults when the instance cannot be asked now."""
        if self._limits is not None:
            return self._limits
        base = self.settings.api_base_url
        try:
            cached = json.loads(self._cache_path.read_text(encoding="utf-8"))[base]
            if datetime.now(UTC) - datetime.fromisoformat(cached["fetched_at"]) < INSTANCE_MAX_AGE:
                self._limits = InstanceLimits(
                    cached["max_characters"], cached["characters_reserved_per_url"]
                )
                return self._limits
        except (OSError, ValueError, KeyError, TypeError):
            pass
        try:
            limits = fetch_limits(make_client(base, None, INSTANCE_TIMEOUT))
        except Exception as exc:  # unreachable now: the defaults, asked again next process
            log.warning("mastodon: cannot read the instance's limits (%s); using 500", exc)
            self._limits = InstanceLimits()
            return self._limits
        self._limits = limits
        self._save_limits(base, limits)
        return limits

    def _save_limits(self, base: str, limits: InstanceLimits) -> None:
        entry = {
            "max_characters": limits.max_characters,
            "characters_reserved_per_url": limits.characters_reserved_per_url,
            "fetched_at": datetime.now(UTC).isoformat(),
        }
        try:
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            self._cache_path.write_text(json.dumps({base: entry}), encoding="utf-8")
        except OSError as exc:
            log.warning("mastodon: cannot cache the instance's limits: %s", exc)

    # --- the channel ----------------------------------------------------------------------

    def style(self) -> Style:
        limits = self.limits()
        return timeline_style(self, limits.max_characters, limits.measure)

    def recipients(self, store: Store) -> list[Recipient]:
        return timeline_recipients()

    async def open(self, store: Store, warn: MaintainerWarning) -> None:
        if self._client is None and self.token:
            self._client = make_client(self.settings.api_base_url, self.token)
        await super().open(store, warn)

    async def send(self, delivery: Delivery) -> str | None:
        from mastodon import (
            MastodonAPIError,
            MastodonRatelimitError,
            MastodonServerError,
            MastodonUnauthorizedError,
        )

        if self._client is None:
            raise RetryLater(
                REFUSED_PAUSE, "; ".join(self.problems()), whole_channel=True, counts=False
            )
        try:
            media_ids = None
            if delivery.card is not None:
                deadline = time.monotonic() + self.config.alerts.send_timeout
                media = await in_own_thread(self._upload, card=delivery.card, deadline=deadline)
                media_ids = [media["id"]]
            status = await in_own_thread(
                self._client.status_post,
                status=delivery.text,
                in_reply_to_id=delivery.reply_to or None,
                visibility=self.settings.visibility,
                media_ids=media_ids,
                idempotency_key=delivery.key,
            )
        except MastodonRatelimitError:
            reset = self._client.ratelimit_reset
            delay = reset - time.time() + 1 if reset else RATE_LIMIT_FALLBACK
            delay = max(1.0, delay)
            raise RetryLater(
                delay, f"Mastodon rate limit (429) for {delay:.0f}s", whole_channel=True,
                counts=False,
            ) from None  # fmt: skip
        except MastodonServerError:
            raise  # 5xx: deliver.py's backoff
        except MastodonUnauthorizedError as exc:
            self._refuse(exc)
        except MastodonAPIError as exc:
            if _status_code(exc) == 403:
                self._refuse(exc)
            if _status_code(exc) is None:
                raise  # not an HTTP answer (a body that is not JSON): transient
            raise PermanentFailure(_describe(exc)) from None  # 422 and other refusals
        return str(status["id"])

    def _upload(self, card: CardFile, deadline: float) -> dict[str, Any]:
        """The card uploaded and processed (in the channel's thread): 202 means the server
        is still processing it, so it is asked again until it has a URL."""
        assert self._client is not None
        media = self._client.media_post(card.path, mime_type="image/png", description=card.alt)
        pause = MEDIA_POLL[0]
        while media.get("url") is None:
            if time.monotonic() + pause > deadline:
                raise TimeoutError(f"media {media['id']} still processing at the deadline")
            time.sleep(pause)
            pause = min(pause * 2, MEDIA_POLL[1])
            media = self._client.media(media["id"])
        return media

    def _refuse(self, exc: MastodonAPIError) -> NoReturn:
        """401/403: pause Mastodon, warn the maintainers once per failure streak."""
        reason = _describe(exc)
        message = (
            f"Mastodon refused a post ({reason}). Check that {TOKEN_ENV} is a token of the "
            "account with the write:statuses scope (docs/channels.md, Mastodon); posts "
            "wait until it works."
        )
        log.error("mastodon: %s", message)
        self.warn_refused(message)
        raise RetryLater(REFUSED_PAUSE, f"refused: {reason}", whole_channel=True) from None

    def status_lines(self, store: Store) -> list[str]:
        return [f"{self.settings.api_base_url}, visibility {self.settings.visibility}"]
