"""What every stub server in tests/support/ shares: a ThreadingHTTPServer on 127.0.0.1
(a free port unless told) in a daemon thread that knows its URL, stops and closes, and is
a context manager; and a request handler that reads a request body and writes an answer,
quietly; and an address where nothing listens (`closed_port_url`).

Each stub subclasses `StubServer` with its own handler (the platform's wire format):

    class FooStub(StubServer):
        def __init__(self) -> None:
            stub = self

            class Handler(StubHandler):
                def do_GET(self) -> None:
                    self.send_json(200, stub.answer(self.path))

            super().__init__(Handler)
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

JSON = "application/json"
JSON_UTF8 = "application/json; charset=utf-8"


@dataclass
class Answer:
    """A programmed answer: a JSON body (a str goes out as plain text) and extra headers."""

    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up (a cap, a deadline, a killed process) resets its connection:
        # that is the behaviour under test, not a server error worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class StubServer:
    """A threaded HTTP server for `handler`; `stopping` is set by stop(), so an answer held
    back (a delay, a drip) can end then instead of keeping stop() waiting."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler] | Any, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.stopping = threading.Event()
        self.httpd = _QuietServer((host, port), handler)
        # A short poll interval makes stop() (shutdown) quick.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class StubHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, no request log on stderr, and the body helpers stubs share."""

    protocol_version = "HTTP/1.1"

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send(
        self, status: int, payload: bytes, headers: Mapping[str, str], drip: bool = False
    ) -> None:
        """The status, `headers`, a Content-Length and `payload`; `drip` writes the payload
        a byte a second. A client that hangs up meanwhile is no error of the stub's."""
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            step = 1 if drip else max(len(payload), 1)
            for start in range(0, len(payload), step):
                self.wfile.write(payload[start : start + step])
                if drip:
                    self.wfile.flush()
                    time.sleep(1.0)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def send_json(
        self,
        status: int,
        body: Any,
        headers: Mapping[str, str] | None = None,
        content_type: str = JSON,
        drip: bool = False,
    ) -> None:
        typed = {"Content-Type": content_type, **(headers or {})}
        self.send(status, json.dumps(body).encode(), typed, drip)

    def send_answer(self, answer: Answer, content_type: str = JSON, drip: bool = False) -> None:
        if isinstance(answer.body, str):
            headers = {"Content-Type": "text/plain", **answer.headers}
            self.send(answer.status, answer.body.encode(), headers, drip)
        else:
            self.send_json(answer.status, answer.body, answer.headers, content_type, drip)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago, for a server that cannot take port 0
    and report the port it got; until one binds it, nothing listens there."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port_url() -> str:
    """An address on 127.0.0.1 where nothing listens: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"
