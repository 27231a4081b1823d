"""Jinja2 rendering of alerts and digests: pure functions of data and templates.

Templates ship in bot/templates/<folder>/<kind>.<ext>; a directory named by
alerts.templates_dir overrides any of them. StrictUndefined turns a template typo
into an error, and `.html` templates are autoescaped (Telegram speaks HTML).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import takewhile
from typing import Any

import jinja2

from bot.messages import Style
from bot.models import LOGGED_FIELDS, Change, ChangeKind, public_defaults
from bot.normalise import US_STATES, display_name

KIND_ORDER = (ChangeKind.ADDED, ChangeKind.RENAMED, ChangeKind.CHANGED, ChangeKind.REMOVED)
ELLIPSIS = "…"
WORD_JOINER = "\u2060"
# A sign that would start a mention or hashtag (X also reads the fullwidth ＠ and ＃ so),
# or a cashtag ($AMZN), when a word follows it.
_ENTITY_SIGN = re.compile(r"[@＠#＃](?=\w)|\$(?=[A-Za-z])")


def no_mentions(text: str) -> str:
    """Keep `@name`, `#tag` and `$TAG` in text from becoming mentions, hashtags or cashtags.

    An invisible WORD JOINER after the sign ends the entity; URLs (whose `#fragment`
    must survive) are left alone.
    """
    if not _ENTITY_SIGN.search(text):
        return text  # most texts: no sign to defuse, no URL scan
    # Imported here: twitter_text takes most of a second to import (its emoji regex),
    # which every CLI command that renders would otherwise pay.
    from twitter_text import extract_urls_with_indices

    urls = [(u["indices"][0], u["indices"][1]) for u in extract_urls_with_indices(text)]

    def defuse(match: re.Match[str]) -> str:
        inside_url = any(start <= match.start() < end for start, end in urls)
        return match.group() if inside_url else match.group() + WORD_JOINER

    return _ENTITY_SIGN.sub(defuse, text)


def make_environment(templates_dir: str | os.PathLike[str] | None = None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir:
        loaders.append(jinja2.FileSystemLoader(templates_dir))
    loaders.append(jinja2.PackageLoader("bot", "templates"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["state_name"] = lambda code: US_STATES.get(code, code)
    env.filters["thousands"] = lambda n: f"{n:,}"
    env.filters["plural"] = lambda n, word, many=None: (
        word if n == 1 else (many or word + ("es" if word.endswith("s") else "s"))
    )
    env.filters["no_mentions"] = no_mentions
    env.globals["ChangeKind"] = ChangeKind
    # How an alert names a changed field ("coordinates" → "location"): models.AgencyField.
    env.globals["field_labels"] = {logged.name: logged.label for logged in LOGGED_FIELDS}
    return env


def agency_context(record: dict[str, Any] | None) -> dict[str, Any]:
    record = {**public_defaults(), **(record or {})}
    record["display_name"] = display_name(record["name"] or "")
    return record


def change_context(change: Change) -> dict[str, Any]:
    agency = agency_context(change.agency.as_row())
    return {
        "kind": change.kind,
        "agency": agency,
        "before": agency_context(change.before)
        if change.kind == ChangeKind.RENAMED
        else change.before,
        "after": change.after,
        "fields": list(change.fields),
    }


def _template(env: jinja2.Environment, style: Style, name: str) -> jinja2.Template:
    candidates = [f"{folder}/{name}.{style.extension}" for folder in style.templates]
    return env.select_template(candidates)


def render(env: jinja2.Environment, style: Style, name: str, **context: Any) -> str:
    context.setdefault("include_links", style.include_links)
    return _template(env, style, name).render(**context).strip()


def render_change(env: jinja2.Environment, style: Style, change: Change) -> str:
    return render(env, style, change.kind, **change_context(change))


def digest_context(changes: Sequence[Change], **extra: Any) -> dict[str, Any]:
    by_kind = {kind: [change_context(c) for c in changes if c.kind == kind] for kind in KIND_ORDER}
    states = sorted({c.agency.state for c in changes if c.agency.state})
    added_states = sorted({c.agency.state for c in changes if c.kind == ChangeKind.ADDED})
    return {
        "total": len(changes),
        "counts": Counter(c.kind for c in changes),
        "by_kind": by_kind,
        "states": states,
        "added_states": added_states,
        **extra,
    }


def render_digest(
    env: jinja2.Environment, style: Style, changes: Sequence[Change], **extra: Any
) -> list[str]:
    """A digest of many changes, split into parts that each fit the channel."""
    text = render(env, style, "digest", **digest_context(changes, **extra))
    # A thread's first post is what timelines show: let it be the headline paragraph alone.
    return split_text(text, style.max_length, style.measure, paragraphs=style.threaded)


def truncate(line: str, limit: int, measure: Callable[[str], int] = len) -> str:
    """Cut one over-long line at a word boundary, with an ellipsis."""
    if measure(line) <= limit:
        return line
    words = line.split(" ")
    while len(words) > 1 and measure(" ".join(words) + ELLIPSIS) > limit:
        words.pop()
    cut = " ".join(words)
    while cut and measure(cut + ELLIPSIS) > limit:  # one giant word
        cut = cut[:-1]
    return cut.rstrip(" ,;:-") + ELLIPSIS


def split_text(
    text: str, limit: int, measure: Callable[[str], int] = len, *, paragraphs: bool = False
) -> list[str]:
    """Split at line boundaries into parts of at most `limit`; no line is ever dropped.

    With `paragraphs`, a part also ends at a paragraph break (blank line) when the next
    paragraph would not fit in what is left of it.
    """
    if measure(text) <= limit:
        return [text]
    parts: list[str] = []
    current: list[str] = []
    lines = text.split("\n")
    for index, line in enumerate(lines):
        line = truncate(line, limit, measure)
        if paragraphs and not line.strip() and "".join(current).strip():
            following = "\n".join(takewhile(str.strip, lines[index + 1 :]))
            if measure("\n".join([*current, line, following])) > limit:
                parts.append("\n".join(current).strip("\n"))
                current = []
                continue
        candidate = "\n".join([*current, line])
        if current and measure(candidate) > limit:
            parts.append("\n".join(current).strip("\n"))
            current = [line] if line else []
        else:
            current.append(line)
    if current and "\n".join(current).strip():
        parts.append("\n".join(current).strip("\n"))
    return [part for part in parts if part.strip()]
