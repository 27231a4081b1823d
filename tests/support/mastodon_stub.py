"""A fake Mastodon instance on 127.0.0.1 that answers the way Mastodon does
(platform-facts.md, E and G).

`GET /api/v1/instance` and `/api/v2/instance` give the version and the status length
limits; `POST /api/v1/statuses` creates a status (Bearer token required) unless an
answer is programmed, honours `Idempotency-Key` (the same key returns the original
status instead of a second one), refuses a text over the limit (422, URLs counting
`characters_reserved_per_url`) and a reply to a status that does not exist (404).
Every answer carries the X-RateLimit-* headers. `delay` holds a created status's answer
back (a kill lands after the server stored the post, before the client heard of it).

Media: `POST /api/v2/media` (multipart `file` and `description`) stores an upload and
answers 200 with its URL, or 202 with `url: null` while it is "processing" (for
`processing_polls` requests of `GET /api/v1/media/:id`, which answer 206 until then); a
status's `media_ids[]` must name processed uploads (422 otherwise).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from twitter_text import extract_urls

from tests.support.http import JSON_UTF8, Answer, StubHandler, StubServer
from tests.support.telegram_stub import parse_body

TOKEN = "mastodon-test-token-0123456789"
# Mastodon's own rule (app/models/account.rb MENTION_RE, tag.rb HASHTAG_RE), simplified.
MENTION = re.compile(r"(?<![/\w])@[a-z0-9_]+(?:@[\w.-]+\w)?", re.I)
HASHTAG = re.compile(r"(?<![=/)\w])#\w*[^\W\d]\w*", re.I)


def rate_limited(seconds: int) -> Answer:
    reset = datetime.now(UTC) + timedelta(seconds=seconds)
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset.isoformat()}
    return Answer(429, {"error": "Too many requests"}, headers)


def error(status: int, message: str = "error") -> Answer:
    return Answer(status, {"error": message})


@dataclass
class Status:
    id: str
    text: str
    in_reply_to_id: str | None
    visibility: str
    idempotency_key: str | None
    media_ids: tuple[str, ...] = ()


@dataclass
class Media:
    id: str
    data: bytes
    description: str
    polls_left: int  # GETs answered 206 before it is processed


class MastodonStub(StubServer):
    def __init__(self, max_characters: int | None = 500, url_length: int = 23) -> None:
        self.max_characters = max_characters  # None: the instance does not say
        self.url_length = url_length
        self.statuses: list[Status] = []
        self.answers: list[Answer] = []  # programmed answers to the next POSTs
        self.posts_tried = 0
        self.instance_requests = 0
        self.delay = 0.0
        self.media: dict[str, Media] = {}
        self.processing_polls = 0  # each upload answers 202, then 206 to this many GETs
        self._keys: dict[tuple[str, str], Status] = {}
        self._lock = threading.Lock()
        stub = self

        class Handler(StubHandler):
            def reply(self, answer: Answer) -> None:
                reset = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
                headers = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "299",
                           "X-RateLimit-Reset": reset, **answer.headers}  # fmt: skip
                self.send_json(answer.status, answer.body, headers, content_type=JSON_UTF8)

            def do_GET(self) -> None:
                path = self.path.split("?")[0].rstrip("/")
                if path.startswith("/api/v1/media/"):
                    self.reply(stub.poll_media(path.rsplit("/", 1)[1]))
                elif path in ("/api/v1/instance", "/api/v2/instance"):
                    with stub._lock:
                        stub.instance_requests += 1
                    self.reply(Answer(200, stub.instance(path.endswith("v2/instance"))))
                else:
                    self.reply(error(404, "Record not found"))

            def do_POST(self) -> None:
                raw = self.read_body()
                path = self.path.split("?")[0].rstrip("/")
                if path not in ("/api/v1/statuses", "/api/v2/media"):
                    return self.reply(error(404, "Record not found"))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self.reply(error(401, "The access token is invalid"))
                content_type = self.headers.get("Content-Type") or ""
                if path == "/api/v2/media":
                    return self.reply(stub.upload(*parse_body(content_type, raw)))
                if "json" in content_type:
                    form = json.loads(raw or b"{}")
                else:
                    fields = parse_qs(raw.decode())
                    form = {k: v[0] for k, v in fields.items()}
                    form["media_ids"] = fields.get("media_ids[]", [])
                answer, created = stub.create(form, self.headers.get("Idempotency-Key"))
                if created and stub.delay and stub.stopping.wait(stub.delay):
                    return  # stopping: the client was killed while we held its answer
                self.reply(answer)

        super().__init__(Handler)

    def instance(self, v2: bool) -> dict[str, Any]:
        statuses = {}
        if self.max_characters is not None:
            statuses = {"max_characters": self.max_characters,
                        "characters_reserved_per_url": self.url_length}  # fmt: skip
        key = "domain" if v2 else "uri"
        return {key: "stub.example", "version": "4.3.0", "api_versions": {"mastodon": 2},
                "configuration": {"statuses": statuses}}  # fmt: skip

    def length(self, text: str) -> int:
        urls = extract_urls(text)
        return len(text) - sum(map(len, urls)) + len(urls) * self.url_length

    def create(self, form: dict[str, Any], key: str | None) -> tuple[Answer, bool]:
        with self._lock:
            self.posts_tried += 1
            if self.answers:
                return self.answers.pop(0), False
            if key and (TOKEN, key) in self._keys:
                return Answer(200, self.render(self._keys[(TOKEN, key)])), False
            text = form.get("status") or ""
            if self.length(text) > (self.max_characters or 500):
                return error(422, "Validation failed: Text character limit exceeded"), False
            reply_to = form.get("in_reply_to_id") or None
            if reply_to and reply_to not in {s.id for s in self.statuses}:
                return error(404, "Record not found"), False
            media_ids = tuple(map(str, form.get("media_ids") or ()))
            if any(m not in self.media or self.media[m].polls_left for m in media_ids):
                return error(422, "Validation failed: media not found or processing"), False
            status = Status(str(109_000_000 + len(self.statuses)), text, reply_to,
                            form.get("visibility") or "public", key, media_ids)  # fmt: skip
            self.statuses.append(status)
            if key:
                self._keys[(TOKEN, key)] = status
            return Answer(200, self.render(status)), True

    def upload(self, fields: dict[str, str], files: dict[str, bytes]) -> Answer:
        if "file" not in files:
            return error(422, "Validation failed: File can't be blank")
        with self._lock:
            media = Media(str(200_000 + len(self.media)), files["file"],
                          fields.get("description", ""), self.processing_polls)  # fmt: skip
            self.media[media.id] = media
        return Answer(202 if media.polls_left else 200, self.render_media(media))

    def poll_media(self, media_id: str) -> Answer:
        with self._lock:
            media = self.media.get(media_id)
            if media is None:
                return error(404, "Record not found")
            if media.polls_left:
                media.polls_left -= 1
                return Answer(206, self.render_media(media))
        return Answer(200, self.render_media(media))

    def render_media(self, media: Media) -> dict[str, Any]:
        processed = not media.polls_left
        return {
            "id": media.id,
            "type": "image",
            "url": f"{self.base_url}/media/{media.id}.png" if processed else None,
            "preview_url": f"{self.base_url}/media/{media.id}-small.png",
            "description": media.description,
            "meta": {},
        }

    def render(self, status: Status) -> dict[str, Any]:
        return {
            "id": status.id,
            "created_at": datetime.now(UTC).isoformat(),
            "in_reply_to_id": status.in_reply_to_id,
            "visibility": status.visibility,
            "content": f"<p>{status.text}</p>",
            "uri": f"{self.base_url}/statuses/{status.id}",
            "url": f"{self.base_url}/@ringwatch/{status.id}",
            "account": {"id": "1", "username": "ringwatch", "acct": "ringwatch"},
            "mentions": [],
            "tags": [],
            "media_attachments": [self.render_media(self.media[m]) for m in status.media_ids],
        }
