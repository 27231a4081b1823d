"""Logging to stderr, and the one place secrets are scrubbed from text.

Every error that is stored (the outbox), printed (`ringwatch status`), logged or
rendered into a message passes through `redact` first. Which environment variables
are secret is not listed here: each Channel class declares its own (`secrets`) and adds
them with `declare_secrets` when it is defined, so a channel added later is covered
without anyone remembering this file; a secret outside the channels (the heartbeat URL)
is declared by the code that reads it. This module imports nothing of ours: every layer
may log and redact.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from urllib.parse import quote, quote_plus, urlsplit

MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words
_LIST_SEPARATORS = re.compile(r"[\s,]+")
# The environment variables whose values are secret: every channel class defined in this
# process declares its own (bot.channels.base.Channel.__init_subclass__).
SECRET_VARIABLES: set[str] = set()


def declare_secrets(names: tuple[str, ...]) -> None:
    """From now on, scrub the values of these environment variables from every text."""
    SECRET_VARIABLES.update(names)


def _forms(value: str) -> set[str]:
    """How a secret can appear in an echoed request: as is, percent-encoded (a URL
    path, an OAuth header) or form-encoded. Case is ignored when matching, which also
    covers a library that lower-cases its messages and %3a vs %3A."""
    return {value, quote(value), quote(value, safe=""), quote_plus(value)}


@functools.lru_cache(maxsize=8)
def _pattern(secrets: tuple[tuple[str, str], ...]) -> tuple[re.Pattern[str], dict[str, str]]:
    names = {form.lower(): name for name, value in secrets for form in _forms(value)}
    alternatives = sorted(names, key=len, reverse=True)  # longest first: no partial leftovers
    return re.compile("|".join(map(re.escape, alternatives)), re.IGNORECASE), names


def _secrets() -> tuple[tuple[str, str], ...]:
    """(variable, value) of every secret; a list of several (APPRISE_URLS: one URL per
    target, space- or comma-separated) also has each of its items, which an error quotes,
    and an http(s) URL its path and query, which urllib3's errors quote without the host
    ("Max retries exceeded with url: /<uuid>")."""
    pairs = set()
    for name in SECRET_VARIABLES:
        value = os.environ.get(name, "").strip()
        items = {value, *_LIST_SEPARATORS.split(value)}
        items |= {_path_of(item) for item in items if item.lower().startswith(("http:", "https:"))}
        pairs |= {(name, item) for item in items}
    return tuple(sorted((n, v) for n, v in pairs if len(v) >= MIN_SECRET_LENGTH))


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def redact(text: str) -> str:
    """`text` with every channel secret, in any case or URL encoding, replaced by <NAME>."""
    secrets = _secrets()
    if not secrets or not text:
        return text
    pattern, names = _pattern(secrets)
    return pattern.sub(lambda m: f"<{names[m.group(0).lower()]}>", text)


class RedactSecrets(logging.Filter):
    """Libraries log URLs (python-telegram-bot's contain the token): never let one out."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; the Bot API URL carries the token.
    for noisy in ("httpx", "httpcore", "apscheduler", "telegram", "urllib3", "tweepy"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
