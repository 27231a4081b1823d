"""A real HTTP server on 127.0.0.1 serving a programmable agency list."""

from __future__ import annotations

import hashlib
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (for timeouts)
    etag: bool = True  # answer If-None-Match with 304 when the body is unchanged
    declared_length: int | None = None  # lie about Content-Length (truncation)
    chunked: bool = False  # no Content-Length: Transfer-Encoding: chunked
    drip: float = 0.0  # seconds between body bytes: headers at once, then one byte at a time
    drip_head: bool = False  # with drip: the status line and headers drip too


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that gives up (a cap, a deadline) resets its connection: that is the
        # behaviour under test, not a server error worth a traceback in the test output.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class SourceServer:
    """Serves `path → Reply`; a list of replies is consumed one per request, the last sticks."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.stopping = threading.Event()
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[dict[str, str]] = []
        # Requests being answered right now, and the most there ever were at once.
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._answer()
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self) -> None:
                server.requests.append({"path": self.path, **dict(self.headers)})
                replies = server.routes.get(self.path.split("?")[0]) or server.routes.get(self.path)
                if not replies:
                    self._send(404, b"not found", {})
                    return
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                if reply.delay and server.stopping.wait(reply.delay):
                    return  # the server is stopping: never answer
                headers = dict(reply.headers)
                if reply.etag and reply.status == 200:
                    tag = '"' + hashlib.sha1(reply.body).hexdigest() + '"'
                    headers.setdefault("ETag", tag)
                    if self.headers.get("If-None-Match") == tag:
                        self._send(304, b"", {"ETag": tag})
                        return
                if reply.chunked:
                    self._send_chunked(reply.status, reply.body, headers)
                    return
                if reply.drip:
                    self._send_dripping(reply, headers)
                    return
                self._send(reply.status, reply.body, headers, reply.declared_length)

            def _send(self, status, body, headers, declared=None) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(declared or len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                if declared:
                    self.close_connection = True

            def _send_chunked(self, status, body, headers, size: int = 4096) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for start in range(0, len(body), size):
                        chunk = body[start : start + size]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _send_dripping(self, reply: Reply, headers: dict[str, str]) -> None:
                lines = [f"HTTP/1.1 {reply.status} Whatever"]
                lines += [f"{key}: {value}" for key, value in headers.items()]
                lines.append(f"Content-Length: {len(reply.body)}")
                head = ("\r\n".join(lines) + "\r\n\r\n").encode()
                if not reply.drip_head:
                    self.wfile.write(head)
                dripped = (head if reply.drip_head else b"") + reply.body
                try:
                    for byte in dripped:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        if server.stopping.wait(reply.drip):
                            break
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = _QuietServer((host, port), Handler)
        self.httpd.daemon_threads = True
        # A short poll interval makes stop() (shutdown) quick.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str = "/map.kml") -> str:
        return self.base_url + path

    def serve(self, path: str, *replies: Reply | bytes) -> str:
        self.routes[path] = [r if isinstance(r, Reply) else Reply(r) for r in replies]
        return self.url(path)

    def start(self) -> SourceServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
