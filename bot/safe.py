"""Make values from the source safe for what we publish: text, Markdown, links and cells.

Names and URLs come from a map anyone at Ring (or in between) can edit. Every output
that others republish goes through these: no invisible direction tricks, no live
Markdown or HTML, only http(s) links, no spreadsheet formulas.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

SAFE_SCHEMES = frozenset({"http", "https"})
# OWASP "CSV injection": a cell starting with one of these is run as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Control characters, and the bidi embeddings, overrides and isolates (U+202A-E,
# U+2066-9) that make "Smith PD" display as something else ("Trojan Source").
_INVISIBLE = re.compile("[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]+")
# Inline Markdown syntax, escaped with a backslash wherever it appears (characters that
# every Markdown, Python-Markdown included, unescapes). Parentheses and "!" stay as they
# are: with every "[" escaped they cannot form a link or an image.
_MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]])")
# Characters some Markdowns read (raw HTML, entities, GFM tables and strikethrough) but
# Python-Markdown does not unescape after a backslash: numeric entities everywhere.
_MARKDOWN_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "&#124;", "~": "&#126;"}
# Syntax that counts only at the start of a line: a heading, a list item ("-", "+", "1.").
_MARKDOWN_LINE_START = re.compile(r"^(?:([#+-])|(\d+)\.)")


def http_url(value: object) -> str | None:
    """`value` when it is an absolute http(s) URL with a host, else None.

    Drops `javascript:`, `data:`, `vbscript:`, relative and protocol-relative (`//host`)
    forms: a link we emit must go where it says, over the web.
    """
    if not isinstance(value, str):
        return None
    url = value.strip()
    if not url or any(ch in url for ch in "\x00\n\r\t") or any(ord(ch) < 32 for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in SAFE_SCHEMES or not parts.hostname:
        return None
    return url


def csv_cell(value: object) -> object:
    """A CSV cell that spreadsheet software shows as text, never runs as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def plain_text(value: object) -> str:
    """One line of text: controls and bidi overrides become a space, so a name shows
    as what it is and cannot break the line or reverse what follows it."""
    return " ".join(_INVISIBLE.sub(" ", str(value)).split())


def markdown_text(value: object) -> str:
    """Text that Markdown renders as itself: no emphasis, links, images, code or HTML.

    Only the characters that would mean something are escaped, so the text stays
    readable in the Markdown source ("Smith &amp; Jones &lt;Township&gt; PD").
    """
    text = "".join(_MARKDOWN_ENTITIES.get(ch, ch) for ch in plain_text(value))
    text = _MARKDOWN_INLINE.sub(r"\\\1", text)
    return _MARKDOWN_LINE_START.sub(lambda m: "\\" + m[1] if m[1] else m[2] + "\\.", text, count=1)
