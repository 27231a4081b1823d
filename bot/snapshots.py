"""Every distinct document ringwatch fetched, kept compressed in the state directory, once.

A snapshot is named by the SHA-256 of the bytes as received (after transfer decoding), so
anyone can check a stored document against the hash the change log cites. Files live at
`snapshots/ab/abcdef….zst`: zstd level 3, chosen by measurement (bench/snapshots.py). A
1.5 MB map takes about 131 KB: 49 MB for a year of daily changes, against a budget of
100 MB. The compression runs inside every poll that fetches new bytes, so its time counts
too: 0.03 s for a 10 MB map, where zstd -9 takes 0.18 s (12% smaller) and lzma -6 over 1 s
(27% smaller), which pushed the 1%-change poll past its 3x-floor target.

The file is written (temp file, fsync, rename) before the poll that references it
commits, so a committed poll never points at a missing file; a crash in between leaves
at most an unreferenced file, which the next identical fetch reuses.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zstandard

SUFFIX = ".zst"
ZSTD_LEVEL = 3
MIN_PREFIX = 8
_HEX = re.compile(r"^[0-9a-f]+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class SnapshotError(Exception):
    """A snapshot is missing, unreadable, or its bytes no longer match its name."""


@dataclass(frozen=True)
class SnapshotFile:
    """One stored document: its hash, its size as fetched and as stored."""

    sha256: str
    bytes: int
    compressed_bytes: int


def sha256_of(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def compress(body: bytes) -> bytes:
    """One zstd frame with the content size (for one-shot decompression) and a checksum."""
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(body)


def check_prefix(prefix: str) -> str:
    """A snapshot hash or a prefix of it, lowercased; ValueError says what is wrong."""
    cleaned = prefix.strip().lower()
    if not _HEX.match(cleaned) or len(cleaned) < MIN_PREFIX or len(cleaned) > 64:
        raise ValueError(
            f"{prefix!r} is not a snapshot hash: give 8 to 64 hex digits of its SHA-256 "
            "(ringwatch snapshots lists them)"
        )
    return cleaned


class SnapshotStore:
    """The snapshot files under one directory (the state dir's `snapshots/`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):  # a name from the database never leaves the directory
            raise SnapshotError(f"{sha256!r} is not a SHA-256 (64 hex digits)")
        return self.directory / sha256[:2] / f"{sha256}{SUFFIX}"

    def put(self, body: bytes, sha256: str | None = None) -> SnapshotFile:
        """Store `body` unless a file of that hash exists; durable when this returns."""
        digest = sha256 or sha256_of(body)
        path = self.path(digest)
        if path.exists():
            return SnapshotFile(digest, len(body), path.stat().st_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = compress(body)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=SUFFIX)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:  # the rename itself must survive a power cut before the poll commits
            os.fsync(directory)
        finally:
            os.close(directory)
        return SnapshotFile(digest, len(body), len(data))

    def read(self, sha256: str) -> bytes:
        """The original bytes; SnapshotError if the file is gone, damaged or altered."""
        path = self.path(sha256)
        try:
            body = zstandard.ZstdDecompressor().decompress(path.read_bytes())
        except FileNotFoundError:
            raise SnapshotError(f"snapshot {sha256}: file {path} is missing") from None
        except OSError as exc:
            raise SnapshotError(f"snapshot {sha256}: cannot read {path}: {exc}") from None
        except zstandard.ZstdError as exc:
            raise SnapshotError(f"snapshot {sha256}: {path} is damaged ({exc})") from None
        actual = sha256_of(body)
        if actual != sha256:
            raise SnapshotError(f"snapshot {sha256}: {path} holds bytes whose SHA-256 is {actual}")
        return body
