"""The floor: read the document from the socket, parse it with lxml, do nothing else.

Run as its own process (`python -m bench.floor URL REPEATS`) so that its peak RSS is the
reference for "a process that only imports lxml and parses" (streaming, then as a whole
tree). Prints one JSON object with every timing taken (the caller aggregates).
The parse floor is the faster of two ways to parse with lxml: building the whole tree
(fromstring) and streaming Placemarks with iterparse, clearing what has been read.
"""

from __future__ import annotations

import http.client
import io
import json
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from lxml import etree

from bench.rss import peak_rss_mb


def read(url: str) -> bytes:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"floor: HTTP {response.status} from {url}")
        return body
    finally:
        connection.close()


def parse_tree(body: bytes) -> None:
    etree.fromstring(body)


def parse_stream(body: bytes) -> None:
    for _event, element in etree.iterparse(io.BytesIO(body), events=("end",), tag="{*}Placemark"):
        element.clear(keep_tail=False)
        parent = element.getparent()
        while element.getprevious() is not None:
            del parent[0]


def timed(repeats: int, action: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    url, repeats = sys.argv[1], int(sys.argv[2])
    body = read(url)
    read_s = timed(repeats, lambda: read(url))
    # Streaming first: the peak RSS after it is that of a streaming parse alone.
    variants = {"iterparse": timed(repeats, lambda: parse_stream(body))}
    rss_stream_mb = peak_rss_mb()
    variants["fromstring"] = timed(repeats, lambda: parse_tree(body))
    print(
        json.dumps(
            {
                "bytes": len(body),
                "read_s": read_s,
                "variants_s": variants,
                "rss_stream_mb": rss_stream_mb,
                "rss_tree_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
