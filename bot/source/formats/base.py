"""What a document format declares: its name, how its bytes look, how to read its records.

A format is one module of this package with one `Format` subclass, listed in FORMATS
(bot/source/formats/__init__.py): `source.format` names it, infer_format recognises
it, parse reads a poll's records with it and `ringwatch evidence` quotes them.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Container, Iterator
from typing import ClassVar

from bot.config import SourceConfig
from bot.source.document import RawRecord


class Format(ABC):
    # source.format's value; also the file extension and the word in a Content-Type that
    # name the format (map.kml, application/vnd.google-earth.kml+xml).
    name: ClassVar[str]

    def named_by(self, path: str, content_type: str) -> bool:
        """Whether a URL's path (lower case) or Content-Type says the document is this format."""
        return path.endswith("." + self.name) or self.name in content_type

    @abstractmethod
    def looks_like(self, body: bytes) -> bool:
        """Whether a document that nothing names is this format, by its bytes."""

    @abstractmethod
    def records(
        self,
        body: bytes,
        config: SourceConfig,
        known: Container[str] = frozenset(),
        *,
        scan: bool = True,
    ) -> Iterator[RawRecord]:
        """The document's raw records, in document order; ParseError if it cannot be read.

        A record whose hash is in `known` may come without its fields (the caller has it).
        `scan` allows a fast byte scan that raises ScanMismatch, after the records, when it
        disagrees with the parser: the caller then reads again with scan=False."""

    @abstractmethod
    def quotes(self, body: bytes, config: SourceConfig, count: int) -> list[str] | None:
        """Each of the `count` records as the source wrote it, in document order (for
        `ringwatch evidence`); None when the records cannot be told apart in the bytes."""


def record_digest(data: bytes) -> str:
    """The hash that identifies a record's source bytes (any format)."""
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def fields_digest(fields: dict[str, str]) -> str:
    """The hash of a record read as fields (JSON, CSV): the same fields, the same hash."""
    return record_digest(json.dumps(fields, sort_keys=True).encode())


def rename_fields(fields: dict[str, str], mapping: dict[str, str]) -> dict[str, str]:
    """The source's column names → ours, by source.fields (our name → the source's)."""
    if not mapping:
        return fields
    source_to_ours = {source: ours for ours, source in mapping.items()}
    return {source_to_ours.get(k, k): v for k, v in fields.items()}
