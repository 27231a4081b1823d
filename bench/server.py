"""A minimal HTTP/1.1 server on 127.0.0.1 serving one KML document, with ETag and 304.

The ETag is computed when a document is published, not per request, so the server adds
nothing but the socket write to a fetch: poll and floor read the same bytes the same way.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = "/map.kml"


@dataclass(frozen=True)
class Document:
    body: bytes
    etag: str | None  # None: no validators, every GET answers 200 with the full body


class DocumentServer:
    def __init__(self) -> None:
        self.document = Document(b"", None)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                document = server.document
                if self.path.split("?")[0] != PATH:
                    self._answer(404, b"not found", {})
                elif document.etag and self.headers.get("If-None-Match") == document.etag:
                    self._answer(304, b"", {"ETag": document.etag})
                else:
                    headers = {"Content-Type": "application/vnd.google-earth.kml+xml"}
                    if document.etag:
                        headers["ETag"] = document.etag
                    self._answer(200, document.body, headers)

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{PATH}"

    def publish(self, body: bytes, *, etag: bool = True) -> None:
        tag = '"' + hashlib.sha1(body).hexdigest() + '"' if etag else None
        self.document = Document(body, tag)

    def __enter__(self) -> DocumentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
