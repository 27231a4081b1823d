"""Whether a secret leaked: the forms an echoed request can carry it in, found in a text
or anywhere in a database."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, quote_plus

from bot.store import Store


def secret_forms(secret: str) -> set[str]:
    """A secret as an echoed request can carry it, lower-cased: compare with text.lower()."""
    return {form.lower() for form in (secret, quote(secret, safe=""), quote_plus(secret))}


def leaked(text: str, secrets: list[str]) -> list[str]:
    """The forms of `secrets` found in `text`, in any case: [] when nothing leaked."""
    lowered = text.lower()
    return [form for secret in secrets for form in secret_forms(secret) if form in lowered]


def database_text(path: Path) -> str:
    """Every value of every row of every table, one per line: what a leak check reads."""
    store = Store.open(path, readonly=True)
    try:
        return "\n".join(
            str(value)
            for table in store.db.table_names()
            for row in store.db[table].rows
            for value in row.values()
        )
    finally:
        store.close()
