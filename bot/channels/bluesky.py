"""The Bluesky channel: alerts posted to the project's account through atproto.

Sessions: `createSession` is limited to 30 per 5 minutes and 300 a day, and a cron job
polling every 5 minutes would spend 288. So the session (handle, DID, access and
refresh JWTs) is kept in the state dir, readable by its owner only; atproto refreshes
the access token before it expires (`refreshSession`), every change is written back,
and the app password is used again only when the stored session is refused.

Exactly once, also across a kill: every post gets a record key (`rkey`, a TID) derived
from its outbox row. A post whose earlier attempt may have reached the PDS is looked up
first (`getRecord`): if it is there it counts as sent (creating the same key twice
fails, with a 500 on some PDS versions, so the error is no evidence).

Text: 300 graphemes and 3,000 UTF-8 bytes. Only a line that is nothing but an http(s)
URL (a template's profile link) becomes a link facet, with exact UTF-8 byte offsets;
text from the source never becomes a mention, tag or link facet. Digests are threads
(reply.root and reply.parent as uri + cid).

An alert's map card goes up first (`uploadBlob`, under 1,000,000 bytes) and into the post
as an `app.bsky.embed.images` embed with its alt text and aspect ratio; the record key and
the look-up before a retry are the same as for text.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import grapheme

from bot.channels.base import (
    Channel,
    PermanentFailure,
    RetryLater,
    in_own_thread,
    timeline_recipients,
    timeline_style,
)
from bot.messages import Delivery, Recipient, Style
from bot.models import CardFile
from bot.safe import http_url
from bot.store import Store

# atproto takes a second to import: only a process that posts pays it, and only for the
# client (the `atproto` package would add its firehose, identity and DNS modules).
if TYPE_CHECKING:
    from atproto_client import Client, models
    from atproto_client.client.session import Session, SessionEvent

log = logging.getLogger(__name__)

CHANNEL = "bluesky"
PASSWORD_ENV = "BLUESKY_APP_PASSWORD"
POST = "app.bsky.feed.post"
MAX_GRAPHEMES = 300
MAX_BYTES = 3000
MAX_BLOB_BYTES = 1_000_000  # app.bsky.embed.images: an image's maxSize
SESSION_FILE = "bluesky-session.json"  # in the state dir, mode 0600
RATE_LIMIT_FALLBACK = 5 * 60.0
REQUEST_TIMEOUT = 30.0
REFUSED_PAUSE = 3600.0
TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"  # base32-sortable
_URL_LINE = re.compile(r"^https?://\S+$", re.M)


@dataclass(frozen=True)
class BlueskySettings:
    enabled: bool = False
    handle: str = ""  # e.g. "ringwatch.bsky.social"
    service: str = "https://bsky.social"  # the account's PDS
    max_posts_per_poll: int = 10
    include_links: bool = True
    images: bool = True  # each alert with its map card


def post_length(text: str) -> int:
    """Against a limit of 300: graphemes, or a tenth of the UTF-8 bytes (3,000), whichever
    is nearer its limit."""
    return max(grapheme.length(text), -(-len(text.encode("utf-8")) // (MAX_BYTES // MAX_GRAPHEMES)))


def record_key(delivery: Delivery) -> str:
    """A TID for this delivery: its queueing time in microseconds (the outbox id as the
    sub-second part) and a clock id from its key, so a retry gets the same one."""
    queued = datetime.fromisoformat(delivery.created_at.replace("Z", "+00:00"))
    micros = int(queued.timestamp()) * 1_000_000 + delivery.id % 1_000_000
    clock_id = int(delivery.key[:4], 16) % 1024
    value = (micros << 10) | clock_id
    return "".join(TID_ALPHABET[(value >> shift) & 31] for shift in range(60, -1, -5))


def link_facets(text: str) -> list[models.AppBskyRichtextFacet.Main]:
    """A link facet for every line that is nothing but an http(s) URL, in UTF-8 bytes."""
    from atproto_client import models

    facets = []
    for match in _URL_LINE.finditer(text):
        url = http_url(match.group())
        if url is None:
            continue
        start = len(text[: match.start()].encode("utf-8"))
        facets.append(
            models.AppBskyRichtextFacet.Main(
                index=models.AppBskyRichtextFacet.ByteSlice(
                    byte_start=start, byte_end=start + len(url.encode("utf-8"))
                ),
                features=[models.AppBskyRichtextFacet.Link(uri=url)],
            )
        )
    return facets


@dataclass(frozen=True)
class PostRef:
    """What a thread's next part needs: this post and the thread's root (uri + cid)."""

    uri: str
    cid: str
    root_uri: str
    root_cid: str

    def encode(self) -> str:
        return json.dumps([self.uri, self.cid, self.root_uri, self.root_cid])

    @classmethod
    def decode(cls, external_id: str) -> PostRef:
        return cls(*json.loads(external_id))

    def reply(self) -> models.AppBskyFeedPost.ReplyRef:
        from atproto_client import models

        strong = models.ComAtprotoRepoStrongRef.Main
        return models.AppBskyFeedPost.ReplyRef(
            root=strong(uri=self.root_uri, cid=self.root_cid),
            parent=strong(uri=self.uri, cid=self.cid),
        )


class BlueskyChannel(Channel):
    name = CHANNEL
    Settings = BlueskySettings
    secrets = (PASSWORD_ENV,)
    takes_images = True

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._client: Client | None = None
        self._did: str | None = None

    @classmethod
    def check_settings(cls, settings: BlueskySettings) -> list[tuple[str, str]]:
        problems = []
        if settings.enabled and not settings.handle:
            problems.append(("handle", 'must name the account, e.g. "ringwatch.bsky.social"'))
        if http_url(settings.service) is None:
            problems.append(("service", "must be the account's PDS, an http(s) URL"))
        if settings.max_posts_per_poll < 1:
            problems.append(("max_posts_per_poll", "must be at least 1"))
        return problems

    def style(self) -> Style:
        return timeline_style(self, MAX_GRAPHEMES, post_length)

    def recipients(self, store: Store) -> list[Recipient]:
        return timeline_recipients()

    # --- the session ----------------------------------------------------------------------

    @property
    def _session_path(self) -> Path:
        return self.config.state_dir / SESSION_FILE

    def _load_session(self) -> str | None:
        try:
            saved = json.loads(self._session_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        # A session belongs to one account on one PDS: another handle logs in afresh.
        if (
            saved.get("handle") != self.settings.handle
            or saved.get("service") != self.settings.service
        ):
            return None
        return saved.get("session")

    def _save_session(self, event: SessionEvent, session: Session) -> None:
        """Every new or refreshed session, written owner-only (atomically: a kill while
        writing leaves the previous one)."""
        self._did = session.did
        document = {
            "handle": self.settings.handle,
            "service": self.settings.service,
            "session": session.encode(),
        }
        temporary = self._session_path.with_suffix(".tmp")
        temporary.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(document, file)
        os.chmod(temporary, 0o600)  # an older file's mode is not inherited
        os.replace(temporary, self._session_path)

    def _forget_session(self) -> None:
        self._session_path.unlink(missing_ok=True)

    def _connect(self) -> Client:
        """A logged-in client: the stored session if there is one, else the app password."""
        from atproto_client import Client
        from atproto_client.client.session import Session
        from atproto_client.request import Request

        # httpx: no request waits forever, no proxy or netrc from the environment.
        request = Request(timeout=REQUEST_TIMEOUT, trust_env=False)
        client = Client(base_url=self.settings.service, request=request)
        client.on_session_change(self._save_session)
        stored = self._load_session()
        if stored:
            session = Session.decode(stored)
            self._did = session.did
            client.login(session_string=stored, fetch_bsky_profile=False)
            return client
        password = os.environ.get(PASSWORD_ENV, "").strip()
        client.login(self.settings.handle, password)
        return client

    # --- sending --------------------------------------------------------------------------

    async def send(self, delivery: Delivery) -> str | None:
        from atproto_client.exceptions import (
            BadRequestError,
            LoginRequiredError,
            RateLimitExceededError,
            UnauthorizedError,
        )

        if self.problems():
            raise RetryLater(
                REFUSED_PAUSE, "; ".join(self.problems()), whole_channel=True, counts=False
            )
        try:
            return await in_own_thread(self._post, delivery=delivery)
        except RateLimitExceededError as exc:
            reset = exc.reset_at
            delay = (reset.timestamp() - time.time() + 1) if reset else RATE_LIMIT_FALLBACK
            delay = max(1.0, delay)
            raise RetryLater(
                delay, f"Bluesky rate limit (429) for {delay:.0f}s", whole_channel=True,
                counts=False,
            ) from None  # fmt: skip
        except (UnauthorizedError, LoginRequiredError) as exc:
            self._refuse(exc)
        except BadRequestError as exc:
            raise PermanentFailure(f"Bluesky refused the post: {exc}") from None

    def _post(self, delivery: Delivery) -> str:
        """(In a thread.) Log in if needed; then the post, unless it is there already."""
        from atproto_client.exceptions import UnauthorizedError

        if self._client is None:
            self._client = self._connect()
        try:
            return self._create_once(delivery)
        except UnauthorizedError:
            # The stored session was refused (revoked, or its refresh token expired):
            # the one case for the app password again.
            log.info("bluesky: the stored session was refused; logging in again")
            self._forget_session()
            self._client = self._connect()
            return self._create_once(delivery)

    def _create_once(self, delivery: Delivery) -> str:
        from atproto_client import models

        assert self._client is not None and self._did is not None
        rkey = record_key(delivery)
        parent = PostRef.decode(delivery.reply_to) if delivery.reply_to else None
        if delivery.earlier_attempts:
            found = self._existing(rkey)
            if found is not None:
                log.info("bluesky: message %d is already posted (%s)", delivery.id, rkey)
                uri, cid = found
                return self._ref(uri, cid, parent).encode()
        record = models.AppBskyFeedPost.Record(
            text=delivery.text,
            created_at=self._client.get_current_time_iso(),
            facets=link_facets(delivery.text) or None,
            reply=parent.reply() if parent else None,
            embed=self._card_embed(delivery.card) if delivery.card else None,
            langs=["en"],
        )
        created = self._client.com.atproto.repo.create_record(
            models.ComAtprotoRepoCreateRecord.Data(
                repo=self._did, collection=POST, rkey=rkey, record=record
            )
        )
        return self._ref(created.uri, created.cid, parent).encode()

    def _card_embed(self, card: CardFile) -> models.AppBskyEmbedImages.Main:
        """The card uploaded as a blob, as an images embed with its alt text and shape. A
        retry uploads again: a blob no record refers to is collected by the PDS."""
        from atproto_client import models

        assert self._client is not None
        data = Path(card.path).read_bytes()
        if len(data) > MAX_BLOB_BYTES:
            raise PermanentFailure(f"card {card.name} is {len(data):,} bytes, over the limit")
        uploaded = self._client.com.atproto.repo.upload_blob(
            data, headers={"Content-Type": "image/png"}
        )
        shape = models.AppBskyEmbedDefs.AspectRatio(width=card.width, height=card.height)
        image = models.AppBskyEmbedImages.Image(
            alt=card.alt, image=uploaded.blob, aspect_ratio=shape
        )
        return models.AppBskyEmbedImages.Main(images=[image])

    @staticmethod
    def _ref(uri: str, cid: str, parent: PostRef | None) -> PostRef:
        if parent is None:
            return PostRef(uri, cid, uri, cid)
        return PostRef(uri, cid, parent.root_uri, parent.root_cid)

    def _existing(self, rkey: str) -> tuple[str, str] | None:
        from atproto_client import models
        from atproto_client.exceptions import BadRequestError

        assert self._client is not None and self._did is not None
        try:
            found = self._client.com.atproto.repo.get_record(
                models.ComAtprotoRepoGetRecord.Params(repo=self._did, collection=POST, rkey=rkey)
            )
        except BadRequestError as exc:
            content = exc.response.content if exc.response else None
            if getattr(content, "error", None) == "RecordNotFound":
                return None
            raise
        return found.uri, found.cid

    def _refuse(self, exc: Exception) -> NoReturn:
        """The app password itself was refused: pause, warn the maintainers once."""
        self._client = None
        message = (
            f"Bluesky refused the login of {self.settings.handle} ({exc}). Check the handle "
            f"and {PASSWORD_ENV} (an app password, docs/channels.md); posts wait until then."
        )
        log.error("bluesky: %s", message)
        self.warn_refused(message)
        raise RetryLater(REFUSED_PAUSE, f"login refused: {exc}", whole_channel=True) from None

    def status_lines(self, store: Store) -> list[str]:
        stored = "a stored session" if self._load_session() else "no stored session yet"
        return [f"{self.settings.handle} on {self.settings.service}, {stored}"]
