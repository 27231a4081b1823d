"""The X (Twitter) channel: alerts posted to the project's account with tweepy.

Every post is billed, so every post (thread replies included) counts against
`x.max_posts_per_day` over a rolling 24 hours, counted from the outbox's sent rows:
when the budget is spent the channel pauses and the rest waits, in order, for the
window to free up. A 429 pauses the channel until X's reset time; 5xx and network
errors go back to deliver.py's backoff; a 403 "duplicate content" means the post is
already there (a re-send after a kill); other refusals (401/403) fail the message,
pause X for the rest of the run and warn the maintainers on the other channels once.

An alert's map card goes up first through the v1.1 media upload (`media/upload.json`,
then `media/metadata/create.json` for its alt text) and the post carries its
`media.media_ids`. Access tiers that may not upload media answer that upload with 403:
the post then goes as text only, uploads are not tried again in this run, and the
maintainers are warned once per streak of refusals (a marker file in the state directory
remembers the streak across runs until an upload is accepted again).

tweepy's Client has no host option: a transport adapter on its requests session sends
what tweepy addresses to api.twitter.com (and its v1.1 API to upload.twitter.com) to
`x.api_base_url` instead (a stub, a proxy).
"""

from __future__ import annotations

import html
import logging
import os
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import requests
from requests.adapters import HTTPAdapter

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
from bot.store.times import utc_now

# tweepy and twitter-text are imported where they are used: a config naming [x] loads this
# module (for its settings) even when the channel is off, and they cost every command
# ~150 ms (twitter-text reads its emoji table through pkg_resources).
if TYPE_CHECKING:
    import tweepy

log = logging.getLogger(__name__)

X_HOST = "https://api.twitter.com"
UPLOAD_HOST = "https://upload.twitter.com"
MEDIA_REFUSED_MARKER = "x-media-refused"  # in the state dir: the maintainers were warned
CREDENTIAL_ENV_VARS = (
    "X_CONSUMER_KEY",
    "X_CONSUMER_SECRET",
    "X_ACCESS_TOKEN",
    "X_ACCESS_TOKEN_SECRET",
)
MAX_WEIGHTED_LENGTH = 280
BUDGET_WINDOW = timedelta(hours=24)
REQUEST_TIMEOUT = (10.0, 30.0)  # connect, read; tweepy sets none and could hang forever
RATE_LIMIT_FALLBACK = 15 * 60.0  # a 429 without a reset header: X's windows are 15 minutes
REFUSED_PAUSE = 3600.0  # after a 401/403 nothing is tried again until a restart
DUPLICATE_MESSAGE = "duplicate content"
RECENT_POSTS = 20  # where a post refused as a duplicate is looked for


@dataclass(frozen=True)
class XSettings:
    enabled: bool = False
    api_base_url: str = "https://api.twitter.com"
    max_posts_per_day: int = 50
    max_posts_per_poll: int = 10
    include_links: bool = False
    images: bool = True  # each alert with its map card, where the access tier allows media
    cost_per_post: float = 0.015
    cost_per_post_with_link: float = 0.20


def weighted_length(text: str) -> int:
    """Length as X counts it: after NFC, URLs weigh 23, CJK and emoji 2, Latin 1."""
    from twitter_text import parse_tweet

    return parse_tweet(text).weightedLength


def _iso(moment: datetime) -> str:
    """The outbox's sent_at format (store.utc_now), so strings compare as times."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _comparable(text: str) -> str:
    """A post's text as X hands it back: entities unescaped, links shortened, NFC."""
    from twitter_text import extract_urls

    text = unicodedata.normalize("NFC", html.unescape(text))
    for url in extract_urls(text):
        text = text.replace(url, "<url>")
    return " ".join(text.split())


class _RedirectAdapter(HTTPAdapter):
    """Sends requests tweepy addresses to api.twitter.com to `base`, with timeouts.

    The rewrite happens after OAuth 1.0a signing, which is fine for a stub or a
    forwarding proxy; a different real host would need the signature made for it.
    """

    def __init__(self, base: str, host: str = X_HOST) -> None:
        super().__init__()
        self.base = base.rstrip("/")
        self.host = host

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if request.url and request.url.startswith(self.host):
            request.url = self.base + request.url[len(self.host) :]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = REQUEST_TIMEOUT
        return super().send(request, **kwargs)


def make_client(api_base_url: str) -> tweepy.Client:
    """A tweepy Client with OAuth 1.0a user context from the environment."""
    import tweepy

    client = tweepy.Client(
        consumer_key=os.environ["X_CONSUMER_KEY"],
        consumer_secret=os.environ["X_CONSUMER_SECRET"],
        access_token=os.environ["X_ACCESS_TOKEN"],
        access_token_secret=os.environ["X_ACCESS_TOKEN_SECRET"],
        wait_on_rate_limit=False,  # it would time.sleep in our event loop's thread
    )
    client.session.trust_env = False  # no proxy or netrc from the environment
    client.session.mount(X_HOST + "/", _RedirectAdapter(api_base_url))
    return client


def make_media_api(api_base_url: str) -> tweepy.API:
    """tweepy's v1.1 API, for media uploads only (v2 has no simple image upload)."""
    import tweepy

    auth = tweepy.OAuth1UserHandler(
        os.environ["X_CONSUMER_KEY"],
        os.environ["X_CONSUMER_SECRET"],
        os.environ["X_ACCESS_TOKEN"],
        os.environ["X_ACCESS_TOKEN_SECRET"],
    )
    api = tweepy.API(auth, wait_on_rate_limit=False)
    api.session.trust_env = False
    api.session.mount(UPLOAD_HOST + "/", _RedirectAdapter(api_base_url, UPLOAD_HOST))
    return api


def _header_int(headers: Any, name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, TypeError, ValueError):
        return None


def rate_limit_delay(exc: tweepy.TooManyRequests, now: float) -> float:
    """Seconds until X lets us post again: the 15-minute window's reset, or the 24-hour
    user/app limit's reset when that one is the one exhausted."""
    headers = exc.response.headers
    resets = [exc.reset_time] if exc.reset_time else []
    for scope in ("user", "app"):
        if _header_int(headers, f"x-{scope}-limit-24hour-remaining") == 0:
            resets.append(_header_int(headers, f"x-{scope}-limit-24hour-reset") or 0)
    if not any(resets):
        return RATE_LIMIT_FALLBACK
    return max(1.0, max(resets) - now + 1)


def _is_duplicate(exc: tweepy.Forbidden) -> bool:
    messages = " ".join(str(m) for m in exc.api_messages) or str(exc)
    return DUPLICATE_MESSAGE in messages.lower()


class XChannel(Channel):
    name = "x"
    Settings = XSettings
    secrets = CREDENTIAL_ENV_VARS
    takes_images = True

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._client: tweepy.Client | None = None
        self._media: tweepy.API | None = None
        self._media_refused = False  # a 403 on an upload: text only for the rest of the run
        self._user_id: int | None = None
        self._refused: str | None = None  # why X refused us during this run

    def style(self) -> Style:
        return timeline_style(self, MAX_WEIGHTED_LENGTH, weighted_length)

    def recipients(self, store: Store) -> list[Recipient]:
        return timeline_recipients()

    @classmethod
    def check_settings(cls, settings: XSettings) -> list[tuple[str, str]]:
        if settings.max_posts_per_day < 1 or settings.max_posts_per_poll < 1:
            return [("max_posts_per_day/max_posts_per_poll", "must be at least 1")]
        return []

    async def open(self, store: Store, warn: MaintainerWarning) -> None:
        if self._client is None and not self.problems():
            self._client = make_client(self.settings.api_base_url)
        await super().open(store, warn)

    # --- sending ------------------------------------------------------------------------

    async def send(self, delivery: Delivery) -> str | None:
        import tweepy

        if self._client is None:
            raise RetryLater(
                REFUSED_PAUSE, "; ".join(self.problems()), whole_channel=True, counts=False
            )
        if self._refused:
            raise RetryLater(
                REFUSED_PAUSE,
                f"X refused ringwatch earlier in this run ({self._refused}); fix it and restart",
                whole_channel=True,
                counts=False,
            )
        self._check_budget()
        try:
            media_ids = None
            if delivery.card is not None and not self._media_refused:
                media_ids = await self._upload(delivery.card)
            response = await in_own_thread(
                self._client.create_tweet,
                text=delivery.text,
                in_reply_to_tweet_id=delivery.reply_to or None,
                media_ids=media_ids,
                user_auth=True,
            )
        except tweepy.TooManyRequests as exc:
            delay = rate_limit_delay(exc, time.time())
            raise RetryLater(
                delay, f"X rate limit (429) for {delay:.0f}s", whole_channel=True, counts=False
            ) from None
        except tweepy.Forbidden as exc:
            if _is_duplicate(exc):
                return await self._already_posted(delivery)
            self._refuse(exc)
        except tweepy.Unauthorized as exc:
            self._refuse(exc)
        except (tweepy.BadRequest, tweepy.NotFound) as exc:
            raise PermanentFailure(_describe(exc)) from None
        return str(response.data["id"])

    async def _upload(self, card: CardFile) -> list[str] | None:
        """The card's media id, with its alt text; None when X refuses media uploads to
        this account (a 403: its access tier), so the post goes as text."""
        import tweepy

        if self._media is None:
            self._media = make_media_api(self.settings.api_base_url)
        try:
            media = await in_own_thread(
                self._media.simple_upload, filename=card.path, media_category="tweet_image"
            )
        except tweepy.Forbidden as exc:
            self._media_refused = True
            self._warn_media_refused(_describe(exc))
            return None
        await in_own_thread(
            self._media.create_media_metadata, media_id=media.media_id, alt_text=card.alt
        )
        (self.config.state_dir / MEDIA_REFUSED_MARKER).unlink(missing_ok=True)  # streak over
        return [media.media_id_string]

    def _warn_media_refused(self, reason: str) -> None:
        """Tell the maintainers once per streak of refused uploads."""
        message = (
            f"X refused to take the map card ({reason}): this account's API access does not "
            "allow media uploads. Posts go as text only; `images = false` in [x] stops trying."
        )
        log.warning("x: %s", message)
        marker = self.config.state_dir / MEDIA_REFUSED_MARKER
        if marker.exists():
            return
        assert self.warn is not None, "open() first"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(utc_now() + "\n", encoding="utf-8")
        self.warn(message, f"warning:x-media-refused:{utc_now()}")

    def _check_budget(self) -> None:
        """Raise RetryLater until the rolling 24-hour window has room for one more post."""
        assert self.store is not None
        cap = self.settings.max_posts_per_day
        now = datetime.now(UTC)
        sent = sorted(
            row["sent_at"]
            for row in self.store.outbox.sent_since(self.name, _iso(now - BUDGET_WINDOW))
        )
        if len(sent) < cap:
            return
        frees_at = datetime.fromisoformat(sent[len(sent) - cap]) + BUDGET_WINDOW
        raise RetryLater(
            max(1.0, (frees_at - now).total_seconds() + 1),
            f"daily budget of {cap} posts spent; posting resumes at {_iso(frees_at)}",
            whole_channel=True,
            counts=False,
        )

    async def _already_posted(self, delivery: Delivery) -> str:
        """X refused a post as a duplicate: it is there already (sent before a kill).

        A later part of a thread needs its id to reply to, so look for it among our
        recent posts; failing that, the parent's id keeps the thread together.
        """
        import tweepy

        log.warning(
            "x: message %d is already on X (duplicate content): recorded as sent", delivery.id
        )
        try:
            found = await in_own_thread(self._find_recent_post, text=delivery.text)
        except (tweepy.TweepyException, requests.RequestException) as exc:
            log.warning("x: could not look the earlier post up: %s", exc)
            found = None
        # "" (not None) lets a following part go out on its own rather than wait forever.
        return found or delivery.reply_to or ""

    def _find_recent_post(self, text: str) -> str | None:
        assert self._client is not None
        if self._user_id is None:
            self._user_id = self._client.get_me(user_auth=True).data.id
        response = self._client.get_users_tweets(
            self._user_id, max_results=RECENT_POSTS, user_auth=True
        )
        wanted = _comparable(text)
        for post in response.data or []:
            if _comparable(post.text) == wanted:
                return str(post.id)
        return None

    def _refuse(self, exc: tweepy.HTTPException) -> NoReturn:
        """A 401/403: fail this message, pause X for the run, warn the maintainers once."""
        reason = _describe(exc)
        self._refused = reason
        self._warn_maintainers(
            f"X refused a post ({reason}). Check the app's permissions (Read and Write) and "
            "the four X_* credentials, then restart ringwatch; X posts wait until then."
        )
        raise PermanentFailure(reason) from None

    def _warn_maintainers(self, message: str) -> None:
        """One warning per failure streak (since the last post that went out)."""
        log.error("x: %s", message)
        self.warn_refused(message)

    # --- status -------------------------------------------------------------------------

    def status_lines(self, store: Store) -> list[str]:
        from twitter_text import extract_urls

        x = self.settings
        now = datetime.now(UTC)
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        month = store.outbox.sent_since(self.name, _iso(month_start))
        with_link = sum(1 for row in month if extract_urls(row["text"] or ""))
        spend = with_link * x.cost_per_post_with_link + (len(month) - with_link) * x.cost_per_post
        day = store.outbox.sent_since(self.name, _iso(now - BUDGET_WINDOW))
        lines = [
            f"posts this month: {len(month)} ({with_link} with a link), "
            f"estimated spend ${spend:,.3f}",
            f"posts in the last 24 h: {len(day)} of {x.max_posts_per_day} allowed",
        ]
        backlog = store.outbox.backlog(self.name)
        if backlog.messages:
            next_at = max(backlog.next_attempt_at or 0, time.time())
            when = _iso(datetime.fromtimestamp(next_at, UTC))
            lines.append(f"waiting: {backlog.messages} posts, next attempt at {when}")
        for failure in store.outbox.last_failures(1, self.name):
            lines.append(f"last failure: {failure.last_error} (queued {failure.created_at})")
        return lines + self.problems()


def _describe(exc: tweepy.HTTPException) -> str:
    status = exc.response.status_code
    detail = "; ".join(str(m) for m in exc.api_messages) or exc.response.reason
    return f"{status} {detail}"
