"""The document formats ringwatch reads, and which one a document is in.

A format is one module with one `Format` subclass (bot/source/formats/base.py) that
declares its name and how to recognise and read it; listing it in FORMATS is all the
rest needs: source.format accepts its name (bot/config.py's FORMATS lists the same
names: tests/test_source.py checks), infer_format tries it, parse and evidence read it.
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from urllib.parse import urlparse

from bot.config import SourceConfig
from bot.source.document import Fetched, RawRecord
from bot.source.formats.base import Format
from bot.source.formats.csv import CsvFormat
from bot.source.formats.json import JsonFormat
from bot.source.formats.kml import KmlFormat

# In the order a document that source.format does not name is tried against them; the
# first is what a document nothing recognises is read as (Google My Maps exports KML).
FORMATS: dict[str, Format] = {f.name: f for f in (KmlFormat(), JsonFormat(), CsvFormat())}


def infer_format(config: SourceConfig, fetched: Fetched) -> str:
    """The name of the document's format: source.format, else what the URL's path or the
    Content-Type names, else what the bytes look like."""
    if config.format:
        return config.format
    path = urlparse(fetched.url).path.lower()
    for fmt in FORMATS.values():
        if fmt.named_by(path, fetched.content_type):
            return fmt.name
    for fmt in FORMATS.values():
        if fmt.looks_like(fetched.body):
            return fmt.name
    return next(iter(FORMATS))


def parse(
    fetched: Fetched, config: SourceConfig, known: Container[str] = frozenset(), *, scan=True
) -> Iterator[RawRecord]:
    """Raw records of a fetched document, in the format the config names or the bytes show."""
    return FORMATS[infer_format(config, fetched)].records(fetched.body, config, known, scan=scan)
