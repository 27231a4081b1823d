"""What fetching hands to the formats: the fetched document, and the errors of both."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property


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


class ScanMismatch(Exception):
    """A format's byte scan disagreed with its parser (bot/source/formats/kml.py): parse
    again without it. Not a SourceError: the document itself may be fine."""


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


RawRecord = tuple[str, dict[str, str] | None]  # (hash of the record's bytes, fields or None)
