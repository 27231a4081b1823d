"""A fake X API v2 on 127.0.0.1 that answers the way X does (see platform-facts.md, F).

`POST /2/tweets` creates a post (201 `{"data": {"id": "<string>", "text": …}}`) unless
an answer is programmed; like X it refuses the same text twice (403 duplicate content),
a text over 280 weighted characters and a reply to a post that does not exist (400).
`GET /2/users/me` and `GET /2/users/<id>/tweets` let the channel find its own posts.
It can quote each request (URL, OAuth header, body) in its error answers, as a careless
proxy does (`echo_requests`), and drip its answers a byte a second (`drip`).

Media, as the v1.1 upload host answers: `POST /1.1/media/upload.json` (multipart `media`)
gives a media id, or 403 when `media_refused` (an access tier without media);
`POST /1.1/media/metadata/create.json` sets its alt text; a post's `media.media_ids` must
name uploaded media (400 otherwise).
"""

from __future__ import annotations

import html
import json
import threading
from dataclasses import dataclass
from itertools import pairwise
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twitter_text import parse_tweet

from tests.support.http import Answer, StubHandler, StubServer
from tests.support.telegram_stub import echo_request, parse_body

USER_ID = "1021786311011201024"
FIRST_POST_ID = 1445880548472328192
DUPLICATE_BODY = {
    "detail": "You are not allowed to create a Tweet with duplicate content.",
    "type": "about:blank",
    "title": "Forbidden",
    "status": 403,
}


def rate_limited(reset: int, **extra_headers: str) -> Answer:
    headers = {"x-rate-limit-limit": "100", "x-rate-limit-remaining": "0"}
    headers["x-rate-limit-reset"] = str(reset)
    headers.update({k.replace("_", "-"): v for k, v in extra_headers.items()})
    body = {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank",
            "status": 429}  # fmt: skip
    return Answer(429, body, headers)


def duplicate() -> Answer:
    return Answer(403, DUPLICATE_BODY)


def refused(status: int = 401) -> Answer:
    title = {401: "Unauthorized", 403: "Forbidden"}[status]
    return Answer(status, {"title": title, "detail": title, "type": "about:blank",
                           "status": status})  # fmt: skip


def server_error() -> Answer:
    return Answer(500, "Internal Server Error")


def problem(status: int, detail: str) -> Answer:
    return Answer(status, {"title": "Invalid Request", "detail": detail, "status": status})


@dataclass
class Post:
    id: str
    text: str
    reply_to: str | None
    media_ids: tuple[str, ...] = ()


class XStub(StubServer):
    def __init__(self) -> None:
        self.posts: list[Post] = []  # created, in order
        self.requests: list[dict[str, Any]] = []  # every POST /2/tweets body, refused or not
        self.answers: list[Answer | None] = []  # next POSTs' answers, in order; None = normal
        self.always: Answer | None = None  # answer every POST so (after `answers`)
        self.hold_post: int | None = None  # the Nth post (1-based) is created, then held
        self.held = threading.Event()  # set when that post has been created
        self.release = threading.Event()  # lets the held answer go
        self.lock = threading.Lock()
        self.echo_requests = False  # error answers quote the request, credentials and all
        self.drip = False  # answers POSTs a byte a second
        self.media: dict[str, bytes] = {}  # media id → the uploaded file
        self.alt_texts: dict[str, str] = {}  # media id → its alt text
        self.media_refused = False  # 403 on uploads, as for an access tier without media
        stub = self

        class Handler(StubHandler):
            def do_POST(self) -> None:
                raw = self.read_body()
                path = urlsplit(self.path).path
                if path.startswith("/1.1/media/"):
                    self.send_answer(stub.media_call(path, self.headers, raw))
                    return
                body = json.loads(raw or b"{}")
                if path != "/2/tweets":
                    self.send_answer(problem(404, "no such endpoint"))
                    return
                with stub.lock:
                    stub.requests.append(body)
                    answer, hold = stub._answer(body)
                if hold:
                    stub.held.set()
                    stub.release.wait(timeout=60)
                if answer.status >= 400 and stub.echo_requests:
                    echo = echo_request(self.command, self.path, self.headers, raw)
                    if isinstance(answer.body, str):
                        answer = Answer(answer.status, f"{answer.body} {echo}", answer.headers)
                    else:
                        detail = f"{answer.body.get('detail', '')} {echo}"
                        answer = Answer(answer.status, {**answer.body, "detail": detail},
                                        answer.headers)  # fmt: skip
                self.send_answer(answer, drip=stub.drip)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/2/users/me":
                    user = {"id": USER_ID, "name": "ringwatch", "username": "ringwatch"}
                    self.send_answer(Answer(200, {"data": user}))
                elif url.path == f"/2/users/{USER_ID}/tweets":
                    limit = int(parse_qs(url.query).get("max_results", ["10"])[0])
                    with stub.lock:
                        newest = list(reversed(stub.posts))[:limit]
                    data = [
                        # X hands text back HTML-escaped, as its v2 API does.
                        {
                            "id": p.id,
                            "text": html.escape(p.text, quote=False),
                            "edit_history_tweet_ids": [p.id],
                        }
                        for p in newest
                    ]
                    self.send_answer(
                        Answer(200, {"data": data, "meta": {"result_count": len(data)}})
                    )
                else:
                    self.send_answer(problem(404, "no such endpoint"))

        super().__init__(Handler)

    def _answer(self, body: dict[str, Any]) -> tuple[Answer, bool]:
        """(answer, hold it) for one POST /2/tweets; called under the lock."""
        programmed = self.answers.pop(0) if self.answers else None
        if programmed is not None:  # None in `answers`: answer that POST normally
            return programmed, False
        if self.always is not None:
            return self.always, False
        text = body.get("text", "")
        reply_to = (body.get("reply") or {}).get("in_reply_to_tweet_id")
        if not parse_tweet(text).valid:
            return problem(400, "Your Tweet text is too long or empty."), False
        if reply_to is not None and reply_to not in {p.id for p in self.posts}:
            return problem(400, "The Tweet you are replying to does not exist."), False
        if any(p.text == text for p in self.posts):
            return duplicate(), False
        media_ids = tuple((body.get("media") or {}).get("media_ids") or ())
        if any(m not in self.media for m in media_ids):
            return problem(400, "Your media IDs are invalid."), False
        post = Post(str(FIRST_POST_ID + len(self.posts)), text, reply_to, media_ids)
        self.posts.append(post)
        answer = Answer(201, {"data": {"id": post.id, "text": text,
                                       "edit_history_tweet_ids": [post.id]}})  # fmt: skip
        return answer, self.hold_post == len(self.posts)

    def media_call(self, path: str, headers: Any, raw: bytes) -> Answer:
        """The v1.1 upload host: an upload, or an upload's alt text."""
        with self.lock:
            if path == "/1.1/media/metadata/create.json":
                body = json.loads(raw or b"{}")
                if str(body.get("media_id")) not in self.media:
                    return problem(400, "media id not found")
                self.alt_texts[str(body["media_id"])] = body["alt_text"]["text"]
                return Answer(200, "")
            if path != "/1.1/media/upload.json":
                return problem(404, "no such endpoint")
            if self.media_refused:
                message = ("You currently have access to a subset of X API V2 endpoints and "
                           "limited v1.1 endpoints (e.g. media post, oauth) only.")  # fmt: skip
                return Answer(403, {"errors": [{"message": message, "code": 453}]})
            _, files = parse_body(headers.get("Content-Type") or "", raw)
            if "media" not in files:
                return problem(400, "media parameter is missing")
            media_id = str(1_880_000_000_000_000_000 + len(self.media))
            self.media[media_id] = files["media"]
            return Answer(200, {"media_id": int(media_id), "media_id_string": media_id,
                                "size": len(files["media"]), "expires_after_secs": 86400,
                                "image": {"image_type": "image/png"}})  # fmt: skip

    def texts(self) -> list[str]:
        return [p.text for p in self.posts]

    def chained(self, posts: list[Post]) -> bool:
        """Each post replies to the one before it (a thread)."""
        return all(b.reply_to == a.id for a, b in pairwise(posts))

    def stop(self) -> None:
        self.release.set()
        super().stop()
