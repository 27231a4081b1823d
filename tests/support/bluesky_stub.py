"""A fake Bluesky PDS on 127.0.0.1 speaking XRPC the way the reference PDS does
(platform-facts.md, E and G).

Sessions: `createSession` (counted) issues an access JWT and a refresh JWT;
`refreshSession` trades a refresh JWT for new ones and retires it; `getSession`;
`app.bsky.actor.getProfile`. Records: `createRecord` with the client's `rkey` (a TID),
refusing a text over 300 graphemes or 3,000 bytes (400) and answering a key that exists
with a 500, as current PDS versions do; `getRecord` (400 RecordNotFound when absent).
Blobs: `uploadBlob` takes raw bytes of an image Content-Type (at most 1,000,000 bytes)
and answers a blob reference; a post's `app.bsky.embed.images` must refer to uploaded
blobs, each image with its `alt` (400 otherwise).
Programmed answers (a 429 with `ratelimit-reset`, a 5xx) replace the next createRecord
answers; `delay` holds a created record's answer back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grapheme

from tests.support.http import JSON_UTF8, Answer, StubHandler, StubServer

HANDLE = "ringwatch.test"
DID = "did:plc:ringwatchtest0000000000"
PASSWORD = "abcd-efgh-ijkl-mnop"
TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


def rate_limited(seconds: int) -> Answer:
    headers = {"ratelimit-limit": "5000", "ratelimit-remaining": "0",
               "ratelimit-reset": str(int(time.time()) + seconds)}  # fmt: skip
    return Answer(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, headers)


def error(status: int, name: str, message: str = "") -> Answer:
    return Answer(status, {"error": name, "message": message or name})


def jwt(payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'at+jwt'})}.{part(payload)}.c2lnbmF0dXJl"


@dataclass
class Record:
    rkey: str
    cid: str
    value: dict[str, Any]

    @property
    def uri(self) -> str:
        return f"at://{DID}/app.bsky.feed.post/{self.rkey}"

    @property
    def text(self) -> str:
        return self.value["text"]


class BlueskyStub(StubServer):
    def __init__(self, access_lifetime: int = 7200) -> None:
        self.access_lifetime = access_lifetime  # seconds; under 15 min: refreshed at once
        self.records: dict[str, Record] = {}  # rkey → record, in creation order
        self.blobs: dict[str, bytes] = {}  # cid → bytes uploaded
        self.answers: list[Answer] = []
        self.calls: list[str] = []  # every XRPC method called, in order
        self.delay = 0.0
        self._access: set[str] = set()
        self._refresh: set[str] = set()
        self._serial = 0
        self._lock = threading.Lock()
        stub = self

        class Handler(StubHandler):
            def handle_xrpc(self, body: dict[str, Any] | None, raw: bytes = b"") -> None:
                url = urlsplit(self.path)
                method = url.path.removeprefix("/xrpc/")
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                with stub._lock:
                    stub.calls.append(method)
                    if method == "com.atproto.repo.uploadBlob" and bearer in stub._access:
                        answer = stub.upload(self.headers.get("Content-Type") or "", raw)
                        created = False
                    else:
                        answer, created = stub.handle(method, params, body, bearer)
                if created and stub.delay and stub.stopping.wait(stub.delay):
                    return  # stopping: the client was killed while we held its answer
                self.send_answer(answer, JSON_UTF8)

            def do_GET(self) -> None:
                self.handle_xrpc(None)

            def do_POST(self) -> None:
                raw = self.read_body()
                if self.path.startswith("/xrpc/com.atproto.repo.uploadBlob"):
                    return self.handle_xrpc(None, raw)
                self.handle_xrpc(json.loads(raw) if raw else {})

        super().__init__(Handler)

    def count(self, method: str) -> int:
        return self.calls.count(method)

    def posts(self) -> list[Record]:
        return list(self.records.values())

    # --- XRPC -------------------------------------------------------------------------------

    def _tokens(self) -> dict[str, Any]:
        now = int(time.time())
        self._serial += 1
        access = jwt({"scope": "com.atproto.access", "sub": DID, "iat": now,
                      "exp": now + self.access_lifetime, "jti": f"a{self._serial}"})  # fmt: skip
        refresh = jwt({"scope": "com.atproto.refresh", "sub": DID, "iat": now,
                       "exp": now + 90 * 86400, "jti": f"r{self._serial}"})  # fmt: skip
        self._access.add(access)
        self._refresh.add(refresh)
        return {"accessJwt": access, "refreshJwt": refresh, "handle": HANDLE, "did": DID,
                "active": True}  # fmt: skip

    def handle(
        self, method: str, params: dict[str, str], body: dict[str, Any] | None, bearer: str
    ) -> tuple[Answer, bool]:
        if method == "com.atproto.server.createSession":
            assert body is not None
            if body.get("identifier") not in (HANDLE, DID) or body.get("password") != PASSWORD:
                return error(401, "AuthenticationRequired", "Invalid identifier or password"), False
            return Answer(200, self._tokens()), False
        if method == "com.atproto.server.refreshSession":
            if bearer not in self._refresh:
                return error(400, "ExpiredToken", "Token has been revoked"), False
            self._refresh.discard(bearer)  # a refresh token is used once
            return Answer(200, self._tokens()), False
        if bearer not in self._access:
            return error(401, "InvalidToken", "Token could not be verified"), False
        if method == "com.atproto.server.getSession":
            return Answer(200, {"handle": HANDLE, "did": DID, "active": True}), False
        if method == "app.bsky.actor.getProfile":
            return Answer(200, {"did": DID, "handle": HANDLE, "displayName": "ringwatch"}), False
        if method == "com.atproto.repo.getRecord":
            record = self.records.get(params.get("rkey", ""))
            if record is None:
                message = f"Could not locate record: at://{DID}/{params.get('collection')}/"
                return error(400, "RecordNotFound", message + params.get("rkey", "")), False
            return Answer(200, {"uri": record.uri, "cid": record.cid, "value": record.value}), False
        if method == "com.atproto.repo.createRecord":
            assert body is not None
            return self.create(body)
        return error(501, "MethodNotImplemented", method), False

    def upload(self, content_type: str, data: bytes) -> Answer:
        if not content_type.startswith("image/"):
            return error(400, "InvalidRequest", f"not an image: {content_type}")
        if len(data) > 1_000_000:
            return error(400, "BlobTooLarge", "This file is too large")
        digest = base64.b32encode(hashlib.sha256(data).digest()).decode().lower()
        cid = "bafkrei" + digest.rstrip("=")[:52]
        self.blobs[cid] = data
        blob = {"$type": "blob", "ref": {"$link": cid}, "mimeType": content_type,
                "size": len(data)}  # fmt: skip
        return Answer(200, {"blob": blob})

    def _bad_embed(self, embed: dict[str, Any] | None) -> str | None:
        """What is wrong with a post's images embed, if anything."""
        if not embed or embed.get("$type") != "app.bsky.embed.images":
            return None
        for image in embed.get("images", []):
            if image.get("image", {}).get("ref", {}).get("$link") not in self.blobs:
                return "an image refers to no uploaded blob"
            if "alt" not in image:
                return "an image has no alt"
        return None

    def create(self, body: dict[str, Any]) -> tuple[Answer, bool]:
        if self.answers:
            return self.answers.pop(0), False
        rkey, value = body.get("rkey") or "", body["record"]
        if body.get("repo") != DID or not TID.match(rkey):
            return error(400, "InvalidRequest", f"bad repo or rkey {rkey!r}"), False
        if rkey in self.records:  # bluesky-social/atproto#3718: not a clean error
            return error(500, "InternalServerError", "Internal Server Error"), False
        text = value.get("text", "")
        if grapheme.length(text) > 300 or len(text.encode()) > 3000:
            return error(400, "InvalidRequest", "Invalid app.bsky.feed.post record: "
                         "Record/text must not be longer than 300 graphemes"), False  # fmt: skip
        bad_embed = self._bad_embed(value.get("embed"))
        if bad_embed:
            return error(
                400, "InvalidRequest", f"Invalid app.bsky.feed.post record: {bad_embed}"
            ), False
        reply = value.get("reply")
        if reply:
            known = {r.uri: r.cid for r in self.records.values()}
            for ref in (reply["root"], reply["parent"]):
                if known.get(ref["uri"]) != ref["cid"]:
                    return error(400, "InvalidRequest", f"unknown reply ref {ref}"), False
        digest = base64.b32encode(hashlib.sha256(rkey.encode()).digest()).decode().lower()
        cid = "bafyrei" + digest.rstrip("=")[:52]
        self.records[rkey] = Record(rkey, cid, value)
        return Answer(200, {"uri": self.records[rkey].uri, "cid": cid}), True
