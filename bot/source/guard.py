"""Where ringwatch's own HTTP requests may go: the one host guard.

Every session that fetches a document (the source, the importer's Wayback Machine) or
posts one (the webhook) comes from `session`: no proxy or netrc from the environment.
A redirect or NetworkLink in the source is followed only over http(s), only to the
source's host or source.allow_hosts, never to an internal address unless the source is
one itself (check_follow), and then only at the addresses checked (FollowedHosts,
followed_session).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

from bot.config import SourceConfig
from bot.source.document import FetchError

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


def session() -> requests.Session:
    """A session for ringwatch's own requests (the source, the importer, the webhook):
    no proxy or netrc from the environment decides where they go."""
    http = requests.Session()
    http.trust_env = False
    return http


def followed_session(
    followed: FollowedHosts, watch: Callable[[socket.socket], None]
) -> requests.Session:
    """A session() whose connections to a host a redirect or NetworkLink led to go only to
    the addresses it was checked at; `watch` is handed every new socket (the fetch's
    watchdog, before any TLS handshake, which could stall too)."""

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
            watch(sock)
            return sock

    adapter = HTTPAdapter()
    adapter.poolmanager.pool_classes_by_scheme = {
        pool.scheme: type(pool.__name__, (pool,), {
            "ConnectionCls": type("Watched" + pool.ConnectionCls.__name__,
                                  (Watched, pool.ConnectionCls), {}),
        })
        for pool in (HTTPConnectionPool, HTTPSConnectionPool)
    }  # fmt: skip
    http = session()
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


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
