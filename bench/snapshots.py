"""Snapshot storage for a year of polls: the budget that picked the compressor (issue 14).

A year of 15-minute polls of a 1.5 MB document that changes once a day is 35,040 polls of
365 distinct documents. `days` of them go through the real SnapshotStore (every poll's
bytes handed to put(), so identical polls cost a hash and nothing on disk); the year is
extrapolated from the mean stored size per distinct document. The same documents are also
compressed with the alternatives, so the choice stays checked.
"""

from __future__ import annotations

import lzma
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zstandard

from bot.snapshots import ZSTD_LEVEL, SnapshotStore, compress
from tests.support.synthetic import generate_agencies, mutate, to_kml

POLLS_PER_DAY = 24 * 4
DAYS_PER_YEAR = 365
DOCUMENT_BYTES = 1_500_000
MAX_YEAR_MB = 100.0


CHOSEN = f"zstd -{ZSTD_LEVEL} (chosen)"
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    CHOSEN: compress,
    "zstd -9": zstandard.ZstdCompressor(level=9).compress,
    "zstd -19": zstandard.ZstdCompressor(level=19).compress,
    "lzma -0": lambda d: lzma.compress(d, preset=0),
    "lzma -6": lambda d: lzma.compress(d, preset=6),
}


def _documents(days: int) -> list[bytes]:
    """One ~1.5 MB map per day, each a day's additions and edits on the one before."""
    sample = len(to_kml(generate_agencies(1000, seed=14)))
    agencies = generate_agencies(1000 * DOCUMENT_BYTES // sample + 1, seed=14)
    documents = []
    for day in range(days):
        documents.append(to_kml(agencies))
        agencies = mutate(agencies, seed=day, add=1, change=2, rename=1 if day % 7 == 0 else 0)
    return documents


def measure_snapshots(days: int) -> dict[str, Any]:
    documents = _documents(days)
    with tempfile.TemporaryDirectory() as directory:
        store = SnapshotStore(Path(directory))
        started = time.perf_counter()
        for document in documents:
            for _ in range(POLLS_PER_DAY):
                store.put(document)
        elapsed = time.perf_counter() - started
        files = [p for p in Path(directory).rglob("*") if p.is_file()]
        stored = sum(p.stat().st_size for p in files)
    per_document = {}
    for name, compressor in COMPRESSORS.items():
        mark = time.perf_counter()
        sizes = [len(compressor(d)) for d in documents]
        per_document[name] = {
            "mean_bytes": sum(sizes) / len(sizes),
            "year_mb": sum(sizes) / len(sizes) * DAYS_PER_YEAR / 1e6,
            "compress_s_per_document": (time.perf_counter() - mark) / len(documents),
        }
    mean_bytes = sum(len(d) for d in documents) / len(documents)
    return {
        "days": days,
        "polls": days * POLLS_PER_DAY,
        "document_bytes": mean_bytes,
        "files": len(files),
        "stored_bytes": stored,
        "year_mb": stored / len(files) * DAYS_PER_YEAR / 1e6,
        "year_limit_mb": MAX_YEAR_MB,
        "put_s_per_poll": elapsed / (days * POLLS_PER_DAY),
        "compressors": per_document,
    }
