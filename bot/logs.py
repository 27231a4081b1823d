"""Logging to stderr, with secrets scrubbed from every record."""

from __future__ import annotations

import logging
import os

SECRET_ENV_VARS = (
    "TELEGRAM_BOT_TOKEN",
    "X_CONSUMER_KEY",
    "X_CONSUMER_SECRET",
    "X_ACCESS_TOKEN",
    "X_ACCESS_TOKEN_SECRET",
)


def redact(text: str) -> str:
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, f"<{name}>")
    return text


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
