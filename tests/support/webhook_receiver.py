"""A webhook receiver on 127.0.0.1 that checks each request the way a newsroom would.

It verifies `X-Ringwatch-Signature-256` with its own copy of the secret (HMAC-SHA256 of
the raw body, compared in constant time), parses the JSON body, and answers each path
from a programmable list of answers (consumed one per request; then 204).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.support.http import StubHandler, StubServer


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a receiver that hangs)


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int  # what the receiver answered
    signature_ok: bool | None  # None: the receiver has no secret

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def delivery(self) -> str:
        return self.headers["x-ringwatch-delivery"]


class WebhookReceiver(StubServer):
    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self.answers: dict[str, list[Answer]] = {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(StubHandler):
            def do_POST(self) -> None:
                body = self.read_body()
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    queue = receiver.answers.get(self.path, [])
                    answer = queue.pop(0) if queue else Answer(204)
                    verified = receiver.verify(body, headers.get("x-ringwatch-signature-256"))
                    receiver.received.append(
                        Received(self.path, headers, body, answer.status, verified)
                    )
                if answer.delay and receiver.stopping.wait(answer.delay):
                    return  # stopping: the client gave up long ago
                self.send(answer.status, b"", answer.headers)

        super().__init__(Handler)

    def verify(self, body: bytes, signature: str | None) -> bool | None:
        if self.secret is None:
            return None
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        return signature is not None and hmac.compare_digest(expected, signature)

    def url(self, path: str) -> str:
        return self.base_url + path

    def answer(self, path: str, *answers: Answer) -> None:
        self.answers[path] = list(answers)

    def accepted(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path and 200 <= r.status < 300]
