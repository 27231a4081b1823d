"""Make values from the source safe for what we publish: links and spreadsheet cells.

Names and URLs come from a map anyone at Ring (or in between) can edit. Every output
that others republish goes through these: only http(s) links, no spreadsheet formulas.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SAFE_SCHEMES = frozenset({"http", "https"})
# OWASP "CSV injection": a cell starting with one of these is run as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


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
