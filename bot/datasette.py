"""The metadata `ringwatch datasette` starts Datasette with: the packaged descriptions of
the public tables and their privacy rules (datasette-metadata.json) plus the canned queries
of bot.queries, written next to the database so Datasette can read it as a file."""

from __future__ import annotations

import json
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from bot.queries import CANNED_QUERIES

METADATA_NAME = "datasette-metadata.json"


def metadata() -> dict[str, Any]:
    packaged = resources.files("bot") / METADATA_NAME
    result = json.loads(packaged.read_text(encoding="utf-8"))
    result["databases"]["ringwatch"]["queries"] = CANNED_QUERIES
    return result


def write_metadata(db_path: Path) -> Path:
    """The metadata as a file beside the database (rewritten each time, so it follows this
    ringwatch); in a temporary folder when the state directory is read-only."""
    text = json.dumps(metadata(), indent=2, ensure_ascii=False) + "\n"
    path = db_path.parent / METADATA_NAME
    try:
        path.write_text(text, encoding="utf-8")
    except OSError:
        path = Path(tempfile.mkdtemp(prefix="ringwatch-")) / METADATA_NAME
        path.write_text(text, encoding="utf-8")
    return path
