"""Jinja2 rendering of alerts and digests: pure functions of data and templates.

Templates ship in bot/templates/<folder>/<kind>.<ext>; a directory named by
alerts.templates_dir overrides any of them. StrictUndefined turns a template typo
into an error, and `.html` templates are autoescaped (Telegram speaks HTML).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import jinja2

from bot.channels.base import Style
from bot.models import Change
from bot.normalise import US_STATES, display_name

KIND_ORDER = ("added", "renamed", "changed", "removed")
ELLIPSIS = "…"


def make_environment(templates_dir: str | None = None) -> jinja2.Environment:
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
    return env


def agency_context(record: dict[str, Any] | None) -> dict[str, Any]:
    record = dict(record or {})
    name = record.get("name") or ""
    record.setdefault("city", "")
    record.setdefault("state", "")
    for key in ("active_date", "video_requests", "profile_url", "lat", "lon"):
        record.setdefault(key, None)
    record["display_name"] = display_name(name)
    return record


def change_context(change: Change) -> dict[str, Any]:
    agency = agency_context(change.agency.as_row())
    return {
        "kind": change.kind,
        "agency": agency,
        "before": agency_context(change.before) if change.kind == "renamed" else change.before,
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
    added_states = sorted({c.agency.state for c in changes if c.kind == "added"})
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
    return split_text(text, style.max_length, style.measure)


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


def split_text(text: str, limit: int, measure: Callable[[str], int] = len) -> list[str]:
    """Split at line boundaries into parts of at most `limit`; no line is ever dropped.

    A paragraph break (blank line) is preferred when the next paragraph would not fit.
    """
    if measure(text) <= limit:
        return [text]
    parts: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        line = truncate(line, limit, measure)
        candidate = "\n".join([*current, line])
        if current and measure(candidate) > limit:
            parts.append("\n".join(current).strip("\n"))
            current = [line] if line else []
        else:
            current.append(line)
    if current and "\n".join(current).strip():
        parts.append("\n".join(current).strip("\n"))
    return [part for part in parts if part.strip()]
