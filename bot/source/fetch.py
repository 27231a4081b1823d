"""Fetch the source document: over HTTP, or from a local file.

A deadline for each request (body included) and for the whole fetch, retries with
backoff on 5xx and connection errors, conditional GET (ETag / Last-Modified; 304 means
unchanged), a size cap and an honest User-Agent. Redirects and NetworkLinks are followed
only where the host guard allows (bot/source/guard.py).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import requests
import urllib3

from bot.config import SourceConfig
from bot.source.document import Abandoned, Fetched, FetchError, Transient
from bot.source.formats.kml import network_link_href
from bot.source.guard import FollowedHosts, Resolver, followed_session, resolve

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
READ_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Validators:
    """What the last good fetch told us, for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None
    # The URL whose answer carried them: they go back to that host only, never to wherever
    # a redirect or a NetworkLink points (None: the configured source's host).
    url: str | None = None

    def headers_for(self, url: str, source_url: str) -> dict[str, str]:
        if _origin(url) != _origin(self.url or source_url):
            return {}
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


WATCH_EVERY = 0.1  # seconds between two looks of the watchdog


class Deadline:
    """The time one fetch may take, every attempt, backoff sleep and hop together
    (source.deadline), and the stop signal with which `ringwatch run` abandons it.

    Also its watchdog: a thread that shuts down the fetch's sockets once the request in
    progress is out of time (source.timeout) or a stop comes. A read the code cannot
    interrupt otherwise (a server that drips its headers, or never answers at all) then
    returns at once instead of holding the poll for good."""

    def __init__(self, seconds: float, stop: threading.Event | None = None) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.stop = stop or threading.Event()
        self.request_end = self.end  # see next_request
        self.cut = False  # the watchdog shut the connections down
        self._sockets: list[socket.socket] = []
        self._done = threading.Event()
        self._lock = threading.Lock()

    def __enter__(self) -> Deadline:
        threading.Thread(target=self._watch, name="fetch-watchdog", daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        with self._lock:
            for handle in self._sockets:
                handle.close()
            self._sockets.clear()

    def next_request(self, timeout: float) -> float:
        """Start the clock for one attempt; it must be over by the time returned."""
        self.request_end = min(time.monotonic() + timeout, self.end)
        self.cut = False
        return self.request_end

    def watch(self, sock: socket.socket) -> None:
        # A handle of our own on the same connection: wrapping it in TLS detaches `sock`,
        # and shutting a connection down through any handle ends reads on all of them.
        with self._lock:
            self._sockets.append(sock.dup())

    def _watch(self) -> None:
        while not self._done.wait(WATCH_EVERY):
            if self.stop.is_set() or time.monotonic() >= self.request_end:
                with self._lock:
                    self.cut = bool(self._sockets) or self.cut
                    for handle in self._sockets:
                        with suppress(OSError):  # the connection is gone already
                            handle.shutdown(socket.SHUT_RDWR)
                        handle.close()
                    self._sockets.clear()

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, url: str) -> None:
        if self.stop.is_set():
            raise Abandoned(f"abandoned fetching {url}: ringwatch is stopping")
        if self.left() <= 0:
            raise FetchError(
                f"gave up on {url}: no answer within source.deadline ({self.seconds:g}s, "
                "every attempt together); raise it if the source is just slow"
            )

    def sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)  # a stop ends the sleep; the next check() reports it


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = urlparse(url)
    default_port = {"http": 80, "https": 443}.get(parsed.scheme)
    return parsed.scheme, (parsed.hostname or "").lower(), parsed.port or default_port


def _local_path(url: str) -> Path | None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("", "c", "d") or len(parsed.scheme) == 1:  # plain or Windows paths
        return Path(url)
    return None


def _socket(response: requests.Response) -> socket.socket | None:
    connection = getattr(response.raw, "connection", None)
    return getattr(connection, "sock", None)


def _read_capped(
    response: requests.Response, max_bytes: int, url: str, until: float, deadline: Deadline
) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"the source is {int(declared):,} bytes, over the {max_bytes:,} cap")
    return read_bounded(
        response,
        max_bytes,
        until,
        over_cap=FetchError(f"the source sent more than the {max_bytes:,} byte cap"),
        too_slow=lambda size: Transient(f"{url} sent {size:,} bytes, then ran past source.timeout"),
        between_reads=lambda: deadline.check(url),
    )


def read_bounded(
    response: requests.Response,
    max_bytes: int,
    until: float,
    *,
    over_cap: Exception,
    too_slow: Callable[[int], Exception],
    between_reads: Callable[[], None] = lambda: None,
) -> bytes:
    """The body, read one socket read at a time so that neither a server that drips a byte
    every few seconds (each read resets requests' per-read timeout) nor a stop waits:
    raises `over_cap` past `max_bytes`, `too_slow(bytes read)` once time.monotonic()
    reaches `until`; `between_reads` may raise to end it sooner (a stop)."""
    sock = _socket(response)
    chunks: list[bytes] = []
    size = 0
    while True:
        between_reads()
        left = until - time.monotonic()
        if left <= 0:
            raise too_slow(size)
        if sock is not None:
            sock.settimeout(left)  # no single read may outlast what is left of the budget
        chunk = response.raw.read1(READ_CHUNK, decode_content=True)  # at most one recv
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise over_cap
        chunks.append(chunk)


def _get_once(
    session: requests.Session,
    url: str,
    config: SourceConfig,
    validators: Validators,
    deadline: Deadline,
    followed: FollowedHosts,
) -> Fetched:
    """One attempt: the request, every redirect hop (each checked) and the body, all within
    source.timeout (and what is left of source.deadline)."""
    until = deadline.next_request(config.timeout)
    for _hop in range(MAX_REDIRECTS + 1):
        headers = {"User-Agent": config.user_agent, "Accept-Encoding": "gzip"}
        conditional = validators.headers_for(url, config.url)
        headers.update(conditional)
        left = until - time.monotonic()
        if left <= 0:
            raise Transient(f"no answer from {url} within source.timeout ({config.timeout:g}s)")
        with session.get(
            url, headers=headers, timeout=left, stream=True, allow_redirects=False
        ) as response:
            if response.status_code in REDIRECT_STATUSES and "Location" in response.headers:
                url = urljoin(url, response.headers["Location"])
                followed.follow("redirect", url)
                continue
            if response.status_code == 304:
                if not conditional:
                    # "Unchanged" since nothing: believing it would let the next real answer
                    # skip the baseline and announce every agency as new.
                    raise FetchError(
                        f"HTTP 304 from {url} to a request that was not conditional", 304
                    )
                return Fetched(url, 304, b"", validators.etag, validators.last_modified)
            if response.status_code >= 400:
                reason = response.reason or "error"
                raise FetchError(f"HTTP {response.status_code} {reason} from {url}",
                                 response.status_code)  # fmt: skip
            body = _read_capped(response, config.max_bytes, url, until, deadline)
            return Fetched(
                url=url,
                status=response.status_code,
                body=body,
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                content_type=response.headers.get("Content-Type", ""),
            )
    raise FetchError(f"more than {MAX_REDIRECTS} redirects from {config.url}")


def _as_fetch_error(
    exc: Exception, url: str, config: SourceConfig, deadline: Deadline
) -> FetchError:
    """What went wrong, in our words; requests and urllib3 (read1) raise their own."""
    if isinstance(exc, FetchError):
        return exc
    timed_out = isinstance(exc, requests.Timeout | urllib3.exceptions.TimeoutError)
    if timed_out or deadline.cut:
        how = f": {type(exc).__name__}" if timed_out else ""  # else the watchdog cut it
        return Transient(
            f"no complete answer from {url} within source.timeout ({config.timeout:g}s){how}"
        )
    dropped = isinstance(exc, requests.ConnectionError | urllib3.exceptions.ProtocolError)
    return (Transient if dropped else FetchError)(
        f"cannot fetch {url}: {type(exc).__name__}: {exc}"
    )


def _retryable(error: FetchError) -> bool:
    if isinstance(error, Transient):
        return True
    return error.status is not None and (error.status >= 500 or error.status in (408, 429))


def _get(
    session: requests.Session,
    url: str,
    config: SourceConfig,
    validators: Validators,
    deadline: Deadline,
    followed: FollowedHosts,
) -> Fetched:
    # Our own retry loop rather than urllib3's Retry on the adapter: Retry counts attempts
    # and sleeps on its own, but cannot stop at a total deadline shared by the body reads,
    # the backoff sleeps and the NetworkLink hop (source.deadline), nor be abandoned at once
    # when `ringwatch run` stops.
    for attempt in range(config.retries + 1):
        deadline.check(url)
        try:
            return _get_once(session, url, config, validators, deadline, followed)
        except Abandoned:
            raise
        except (FetchError, requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            error = _as_fetch_error(exc, url, config, deadline)
        deadline.check(url)  # a read cut short by a stop or the deadline says so
        if attempt == config.retries or not _retryable(error):
            raise error
        delay = config.backoff * 2**attempt
        if delay >= deadline.left():
            raise FetchError(
                f"{error}; no time left for another attempt within source.deadline "
                f"({deadline.seconds:g}s)",
                error.status,
            )
        log.warning("fetch attempt %d failed (%s); retrying in %.1fs", attempt + 1, error, delay)
        deadline.sleep(delay)
    raise AssertionError("unreachable")


def fetch(
    config: SourceConfig,
    validators: Validators = Validators(),
    stop: threading.Event | None = None,
    addresses: Resolver = resolve,
) -> Fetched:
    """Fetch the source once, following one Google My Maps NetworkLink if that is what we get.

    Everything together ends within source.deadline; setting `stop` abandons it at the next
    read (Abandoned). `addresses` resolves the hosts a redirect or NetworkLink leads to."""
    path = _local_path(config.url)
    if path is not None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(data) > config.max_bytes:
            raise FetchError(f"{path} is {len(data):,} bytes, over the {config.max_bytes:,} cap")
        return Fetched(url=str(path), status=200, body=data)
    followed = FollowedHosts(config, addresses)
    with (
        Deadline(config.deadline, stop) as deadline,
        followed_session(followed, deadline.watch) as session,
    ):
        fetched = _get(session, config.url, config, validators, deadline, followed)
        href = network_link_href(fetched.body, fetched.url) if not fetched.not_modified else None
        if href:
            followed.follow("NetworkLink", href)
            log.info("following NetworkLink to %s", href)
            fetched = _get(session, href, config, validators, deadline, followed)
        return fetched
