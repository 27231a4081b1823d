"""The source: fetch the agency list (HTTP or a local file) and read it into raw records.

- `fetch.py`: deadlines (each request, body included, and the whole fetch), retries with
  backoff, conditional GET, bounded reads (read_bounded, also the importer's).
- `guard.py`: where requests may go (the importer and the webhook take their sessions
  from it too): redirects and NetworkLinks only over http(s), only to trusted hosts,
  only at the addresses checked.
- `formats/`: KML (with the byte scan for known records), JSON and CSV behind one small
  registry; a new format is one module (formats/base.py).
- `document.py`: what they hand each other: the fetched document and the errors.

What the rest of ringwatch needs is importable from here.
"""

from bot.source.document import (
    Abandoned,
    Fetched,
    FetchError,
    ParseError,
    ScanMismatch,
    SourceError,
)
from bot.source.fetch import Validators, fetch
from bot.source.formats import parse

__all__ = [
    "Abandoned",
    "FetchError",
    "Fetched",
    "ParseError",
    "ScanMismatch",
    "SourceError",
    "Validators",
    "fetch",
    "parse",
]
