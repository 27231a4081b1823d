"""Fetch the agency list (HTTP or a local file) and parse it into raw records.

Fetching: a deadline for each request (body included) and for the whole fetch, retries
with backoff on 5xx and connection errors, conditional GET (ETag / Last-Modified; 304
means unchanged), a size cap and an honest User-Agent. Redirects and NetworkLinks are
followed only over http(s), only to hosts we trust, and only at the addresses checked
(see check_follow).
Parsing: KML is streamed with lxml (no DTD, no entities, no network) so a 100,000
agency export stays small in memory; JSON and CSV map columns through the config.
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Container, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import requests
import urllib3
from lxml import etree
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

from bot.config import SourceConfig
from bot.placemark_scan import ScanMismatch, placemark_digests, record_digest

log = logging.getLogger(__name__)

NETWORK_LINK_MAX_BYTES = 64 * 1024
MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
READ_CHUNK = 256 * 1024


class SourceError(Exception):
    """The source could not be fetched or read; nothing about the agencies is known."""


class FetchError(SourceError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Abandoned(FetchError):
    """`ringwatch run` is stopping and gave up on the fetch in progress."""


class Transient(FetchError):
    """A timeout or a dropped connection: worth another attempt."""


class ParseError(SourceError):
    pass


@dataclass(frozen=True)
class Fetched:
    url: str
    status: int  # HTTP status, or 200 for a file that was read
    body: bytes  # empty when not_modified
    etag: str | None = None
    last_modified: str | None = None
    content_type: str = ""

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @cached_property  # asked more than once per poll; 100 MB take a while to hash
    def content_hash(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


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


def _session(deadline: Deadline, followed: FollowedHosts) -> requests.Session:
    """A session whose every new connection is watched by `deadline`, and goes to a
    followed host only at the addresses it was checked at."""

    class Watched:
        def _new_conn(self) -> socket.socket:
            # A host no redirect or NetworkLink led to (the configured source's) is resolved
            # by urllib3 as usual.
            checked = followed.addresses(self.host)  # type: ignore[attr-defined]
            sock = (
                super()._new_conn()  # type: ignore[misc]
                if checked is None
                else _connect_checked(self, checked)  # type: ignore[arg-type]
            )
            deadline.watch(sock)  # before any TLS handshake, which could stall too
            return sock

    adapter = HTTPAdapter()
    adapter.poolmanager.pool_classes_by_scheme = {
        pool.scheme: type(pool.__name__, (pool,), {
            "ConnectionCls": type("Watched" + pool.ConnectionCls.__name__,
                                  (Watched, pool.ConnectionCls), {}),
        })
        for pool in (HTTPConnectionPool, HTTPSConnectionPool)
    }  # fmt: skip
    session = requests.Session()
    session.trust_env = False  # no surprise proxies from the environment
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = urlparse(url)
    default_port = {"http": 80, "https": 443}.get(parsed.scheme)
    return parsed.scheme, (parsed.hostname or "").lower(), parsed.port or default_port


# --- where following may lead ---------------------------------------------------------------


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _internal(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
    )


Resolver = Callable[[str], list[Address]]


def resolve(host: str) -> list[Address]:
    """Every address `host` resolves to (none when it does not resolve: the fetch will say)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def host_key(host: str) -> str:
    """A host as a URL and a connection both name it: lower case, no brackets, no final dot."""
    return host.strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class Follow:
    """Whether a redirect or NetworkLink may be followed: why not, or else the addresses
    its host was checked at, which are the only ones its connections may go to."""

    problem: str | None
    host: str = ""
    addresses: tuple[Address, ...] = ()


def check_follow(
    what: str,
    target: str,
    source_url: str,
    allow_hosts: Sequence[str],
    addresses: Resolver = resolve,
) -> Follow:
    """May a redirect or NetworkLink (`what`) to `target` be followed, and to where.

    A document someone else can edit, or plain HTTP tampered with on the way, must not
    make ringwatch fetch (and store) whatever an internal address answers: only http(s),
    only the source's own host or source.allow_hosts, and never a loopback, link-local or
    private address unless the configured source is one itself (a test or a LAN mirror).
    `addresses` resolves a host name, once: DNS may answer differently a moment later,
    so the fetch connects to the addresses checked here (FollowedHosts).
    """
    parsed = urlparse(target)
    if parsed.scheme not in ("http", "https"):
        return Follow(
            f"refusing to follow a {what} to {target[:200]}: only http(s) links are followed "
            "(source.url)"
        )
    host = host_key(parsed.hostname or "")
    source_host = host_key(urlparse(source_url).hostname or "")
    if host != source_host and host not in {host_key(h) for h in allow_hosts}:
        return Follow(
            f"refusing to follow a {what} to host {host or '(none)'}: it is neither the "
            f"source's host ({source_host}) nor listed in source.allow_hosts; add it there "
            "if you trust it"
        )

    def resolved(name: str) -> list[Address]:
        try:
            return [ipaddress.ip_address(name)]  # an address already
        except ValueError:
            return addresses(name)

    checked = tuple(resolved(host))
    internal = [a for a in checked if _internal(a)]
    if internal and not any(_internal(a) for a in resolved(source_host)):
        return Follow(
            f"refusing to follow a {what} to host {host}: it resolves to {internal[0]}, a "
            "loopback, link-local or private address, which ringwatch only fetches when "
            "source.url is one itself"
        )
    return Follow(None, host, checked)


class FollowedHosts:
    """The hosts one fetch followed a redirect or NetworkLink to, each with the addresses
    check_follow found it at. Their connections go to those addresses and never to a new
    lookup: a rebinding DNS answers the check with a public address and the connection,
    a moment later, with 127.0.0.1. The Host header and TLS (SNI, the certificate's
    name) still use the host's name."""

    def __init__(self, config: SourceConfig, addresses: Resolver = resolve) -> None:
        self.config = config
        self.resolver = addresses
        self._checked: dict[str, tuple[Address, ...]] = {}

    def follow(self, what: str, target: str) -> None:
        """Check `target` and keep where it may be fetched from; FetchError if nowhere."""
        follow = check_follow(what, target, self.config.url, self.config.allow_hosts,
                              self.resolver)  # fmt: skip
        if follow.problem:
            raise FetchError(follow.problem)
        self._checked[follow.host] = follow.addresses

    def addresses(self, host: str) -> tuple[Address, ...] | None:
        """Where a connection to `host` may go; None: a host never followed to."""
        return self._checked.get(host_key(host))


def _connect_checked(connection: HTTPConnection, addresses: Sequence[Address]) -> socket.socket:
    """A socket to the first of the checked `addresses` that accepts (in the resolver's
    order, as urllib3 tries a name's addresses), with urllib3's own socket options; its
    errors as urllib3 raises them (a timeout stays a timeout for requests)."""
    failure: OSError | None = None
    for address in addresses:
        try:
            return create_connection(
                (str(address), connection.port),
                connection.timeout,
                source_address=connection.source_address,
                socket_options=connection.socket_options,
            )
        except OSError as exc:
            failure = exc
    where = f"{connection.host} at the addresses it was checked at " + (
        f"({', '.join(map(str, addresses))})" if addresses else "(none: it did not resolve)"
    )
    if isinstance(failure, TimeoutError):
        raise ConnectTimeoutError(
            connection, f"Connection to {where} timed out. (connect timeout={connection.timeout})"
        )
    reason = f": {failure}" if failure else ""
    raise NewConnectionError(connection, f"Failed to establish a new connection to {where}{reason}")


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
    """The body, read one socket read at a time so that neither a server that drips a byte
    every few seconds (each read resets requests' per-read timeout) nor a stop waits."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"the source is {int(declared):,} bytes, over the {max_bytes:,} cap")
    sock = _socket(response)
    chunks: list[bytes] = []
    size = 0
    while True:
        deadline.check(url)
        left = until - time.monotonic()
        if left <= 0:
            raise Transient(f"{url} sent {size:,} bytes, then ran past source.timeout")
        if sock is not None:
            sock.settimeout(left)  # no single read may outlast what is left of the budget
        chunk = response.raw.read1(READ_CHUNK, decode_content=True)  # at most one recv
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"the source sent more than the {max_bytes:,} byte cap")
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


def network_link_href(body: bytes, base_url: str) -> str | None:
    """The document a small KML <NetworkLink> points at (Google's `&nl=1` answer)."""
    if len(body) > NETWORK_LINK_MAX_BYTES or b"NetworkLink" not in body:
        return None
    try:
        root = etree.fromstring(body, parser=_safe_parser())
    except etree.XMLSyntaxError:
        return None
    if root.find(".//{*}Placemark") is not None:
        return None
    href = root.findtext(".//{*}NetworkLink//{*}href")
    return urljoin(base_url, href.strip()) if href and href.strip() else None


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
    with Deadline(config.deadline, stop) as deadline, _session(deadline, followed) as session:
        fetched = _get(session, config.url, config, validators, deadline, followed)
        href = network_link_href(fetched.body, fetched.url) if not fetched.not_modified else None
        if href:
            followed.follow("NetworkLink", href)
            log.info("following NetworkLink to %s", href)
            fetched = _get(session, href, config, validators, deadline, followed)
        return fetched


# --- parsing -----------------------------------------------------------------------------

RawRecord = tuple[str, dict[str, str] | None]  # (hash of the record's bytes, fields or None)


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _reject_entities(body: bytes) -> None:
    # A map export has no DTD; refusing one outright (and with it every entity
    # declaration) is simpler and safer than trusting any expansion limit. A DTD can
    # only stand before the root element, however long the comments in front of it.
    root = body.find(b"<kml")
    prolog = body if root < 0 else body[:root]
    if b"<!DOCTYPE" in prolog or b"<!ENTITY" in prolog:
        raise ParseError("the document declares a DTD or XML entities; refusing to parse it")


def infer_format(config: SourceConfig, fetched: Fetched) -> str:
    if config.format:
        return config.format
    lowered = urlparse(fetched.url).path.lower()
    for fmt in ("kml", "json", "csv"):
        if lowered.endswith("." + fmt) or fmt in fetched.content_type:
            return fmt
    if "geo+json" in fetched.content_type:
        return "json"
    start = fetched.body.lstrip()[:1]
    if start == b"<":
        return "kml"
    if start in (b"[", b"{"):
        return "json"
    return "csv" if b"," in fetched.body[:2048] else "kml"


@lru_cache(maxsize=1024)  # a document has a handful of distinct tags, seen millions of times
def _local(tag: object) -> str:
    """The local name of a tag ('' for comments and processing instructions)."""
    return tag[tag.find("}") + 1 :] if isinstance(tag, str) else ""


def _first_text(element: etree._Element, name: str, *, deep: bool = False) -> str | None:
    """Text of the first child (or descendant) called `name`. On this hot path a loop over
    lxml elements costs a fraction of findtext()'s ElementPath machinery."""
    for node in element.iter() if deep else element:
        if _local(node.tag) == name:
            return node.text or ""
    return None


def _placemark_fields(placemark: etree._Element) -> dict[str, str]:
    fields: dict[str, str] = {}
    for child in placemark:
        name = _local(child.tag)
        if name == "ExtendedData":
            for data in child.iter():
                kind = _local(data.tag)
                if kind in ("Data", "SimpleData") and (key := data.get("name")):
                    value = _first_text(data, "value") if kind == "Data" else data.text
                    fields[key] = value or ""
        elif name in ("Point", "MultiGeometry"):
            coordinates = _first_text(child, "coordinates", deep=True)
            if coordinates:
                fields["coordinates"] = coordinates
        elif name and len(child) == 0:
            fields[name] = child.text or ""
    return fields


def parse_kml(
    body: bytes, known: Container[str] = frozenset(), *, scan: bool = True
) -> Iterator[RawRecord]:
    """Stream the Placemarks of a KML document, wherever they sit (Document or Folders).

    A Placemark whose byte-hash is in `known` is yielded without its fields: the caller
    already has it. Raises ParseError on malformed or truncated XML, and ScanMismatch
    (after yielding) when the byte scan and the parser disagree: call again with
    scan=False, which hashes each parsed element instead (see bot/placemark_scan.py).
    """
    _reject_entities(body)
    scanned = placemark_digests(body) if scan else None
    if scanned is None:
        scan, scanned = False, []
    context = etree.iterparse(
        io.BytesIO(body),
        events=("end",),
        tag="{*}Placemark",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
    )
    count = 0
    try:
        for _event, element in context:
            if count < len(scanned):
                digest = scanned[count]
            else:  # the tail is the whitespace after the Placemark: not part of the record
                digest = record_digest(etree.tostring(element, with_tail=False))
            count += 1
            yield digest, (None if digest in known else _placemark_fields(element))
            # Free what has been read: keeps a 100 MB export at a few MB of tree.
            element.clear(keep_tail=False)
            parent = element.getparent()
            if parent is not None:
                while element.getprevious() is not None:
                    del parent[0]
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"malformed or truncated XML: {exc}") from None
    root = getattr(context, "root", None)
    if root is not None and _local(root.tag) != "kml":
        raise ParseError(f"not a KML document (root element <{_local(root.tag)}>)")
    if scan and count != len(scanned):
        raise ScanMismatch(f"the byte scan found {len(scanned)} Placemarks, the parser {count}")


def _pick(record: object, path: str) -> object:
    for part in filter(None, path.split(".")):
        if not isinstance(record, dict) or part not in record:
            raise ParseError(f"no {path!r} in the JSON document (source.records_path)")
        record = record[part]
    return record


def _flatten_json_record(item: object) -> dict[str, str]:
    if not isinstance(item, dict):
        raise ParseError(f"expected each JSON record to be an object, got {type(item).__name__}")
    if item.get("type") == "Feature":  # GeoJSON
        fields = {k: v for k, v in (item.get("properties") or {}).items()}
        coordinates = (item.get("geometry") or {}).get("coordinates")
        if isinstance(coordinates, list) and len(coordinates) >= 2:
            fields["coordinates"] = f"{coordinates[0]},{coordinates[1]}"
        item = fields
    return {str(k): "" if v is None else str(v) for k, v in item.items() if not isinstance(v, dict)}


def _rename_fields(fields: dict[str, str], mapping: dict[str, str]) -> dict[str, str]:
    if not mapping:
        return fields
    source_to_ours = {source: ours for ours, source in mapping.items()}
    return {source_to_ours.get(k, k): v for k, v in fields.items()}


def json_records(body: bytes, records_path: str = "") -> list[object]:
    """The list of agency objects in a JSON document, as the source wrote them."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ParseError(f"malformed JSON: {exc}") from None
    records = _pick(document, records_path)
    if isinstance(records, dict) and "features" in records and not records_path:
        records = records["features"]
    if not isinstance(records, list):
        raise ParseError("the JSON document holds no list of agencies (set source.records_path)")
    return records


def parse_json(body: bytes, records_path: str = "", mapping: dict[str, str] | None = None):
    for item in json_records(body, records_path):
        fields = _rename_fields(_flatten_json_record(item), mapping or {})
        yield record_digest(json.dumps(fields, sort_keys=True).encode()), fields


def parse_csv(body: bytes, mapping: dict[str, str] | None = None) -> Iterator[RawRecord]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"the CSV is not UTF-8: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or len(reader.fieldnames) < 2:
        raise ParseError("the CSV has no header row with agency columns")
    for row in reader:
        if None in row:
            raise ParseError(f"CSV line {reader.line_num} has more cells than the header")
        if None in row.values():  # a half-written file: cut-off rows are no agencies
            raise ParseError(f"CSV line {reader.line_num} has fewer cells than the header")
        fields = _rename_fields({k: v or "" for k, v in row.items()}, mapping or {})
        yield record_digest(json.dumps(fields, sort_keys=True).encode()), fields


def parse(
    fetched: Fetched, config: SourceConfig, known: Container[str] = frozenset(), *, scan=True
):
    """Raw records of a fetched document, in the format the config names or the bytes show."""
    fmt = infer_format(config, fetched)
    if fmt == "kml":
        return parse_kml(fetched.body, known, scan=scan)
    if fmt == "json":
        return parse_json(fetched.body, config.records_path, config.fields)
    return parse_csv(fetched.body, config.fields)
