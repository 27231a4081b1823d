"""KML (Google My Maps' export): a streamed parse, a byte scan for the records a poll
already knows, and the NetworkLink that Google's `&nl=1` answer is.

The parse streams with lxml (no DTD, no entities, no network), so a 100,000 agency
export stays small in memory.

The byte scan: most polls change about 1% of a map of tens of thousands of agencies. A
record is known by the hash of its bytes; hashing each parsed element means serialising
it again (about 6 µs each), while a plain byte scan for `<Placemark` … `</Placemark>`
finds every record's byte range in one pass (0.04 s for 20,000). Only the unknown
Placemarks are then turned into fields and normalised; docs/performance.md has the
measurements.

Its fallback: the scan is trusted only when every "Placemark" in the document is a tag
it paired (placemark_spans returns None otherwise: a mention inside CDATA, a comment or
text could cut a record short), and parse_kml checks its count against the XML parser's
(a prefixed tag such as `<kml:Placemark>` is one the scan does not see). When they
disagree it raises ScanMismatch after the records are read, and the caller (the poller)
reads the document again with `scan=False`, hashing each serialised element instead.
Those hashes are of other bytes than the scan's, so in such a document no record counts
as known and every one is parsed: slower, never wrong.
"""

from __future__ import annotations

import io
from collections.abc import Container, Iterator
from functools import lru_cache
from urllib.parse import urljoin

from lxml import etree

from bot.config import SourceConfig
from bot.source.document import ParseError, RawRecord, ScanMismatch
from bot.source.formats.base import Format, record_digest

NETWORK_LINK_MAX_BYTES = 64 * 1024
_PLACEMARK_OPEN, _PLACEMARK_CLOSE = b"<Placemark", b"</Placemark>"


def placemark_spans(body: bytes) -> list[tuple[int, int]] | None:
    """(start of `<Placemark`, start of `</Placemark>`) of each record, in document order.

    A plain byte scan, several times faster than serialising every parsed element.
    None unless every "Placemark" in the document is one of the tags it paired: a
    mention inside CDATA, a comment or text could cut a record short. parse_kml also
    checks the count against the parser's (a prefixed tag) and starts over without it.
    """
    spans: list[tuple[int, int]] = []
    find, start = body.find, 0
    while (begin := find(_PLACEMARK_OPEN, start)) >= 0:
        start = begin + len(_PLACEMARK_OPEN)
        if body[start : start + 1] not in (b">", b" ", b"\n", b"\r", b"\t"):
            continue  # <PlacemarkFoo>, or <Placemark/>: the parser will count differently
        end = find(_PLACEMARK_CLOSE, start)
        if end < 0:
            break
        spans.append((begin, end))
        start = end + len(_PLACEMARK_CLOSE)
    return spans if body.count(b"Placemark") == 2 * len(spans) else None


def placemark_digests(body: bytes) -> list[str] | None:
    """The hash of each Placemark's bytes (see placemark_spans), in document order."""
    spans = placemark_spans(body)
    return None if spans is None else [record_digest(body[begin:end]) for begin, end in spans]


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
    scan=False, which hashes each parsed element instead (see the module's docstring).
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


class KmlFormat(Format):
    name = "kml"

    def looks_like(self, body: bytes) -> bool:
        return body.lstrip()[:1] == b"<"

    def records(
        self,
        body: bytes,
        config: SourceConfig,
        known: Container[str] = frozenset(),
        *,
        scan: bool = True,
    ) -> Iterator[RawRecord]:
        return parse_kml(body, known, scan=scan)

    def quotes(self, body: bytes, config: SourceConfig, count: int) -> list[str] | None:
        spans = placemark_spans(body)
        if spans is None or len(spans) != count:
            return None
        return [
            body[begin : end + len(_PLACEMARK_CLOSE)].decode("utf-8", "replace")
            for begin, end in spans
        ]
