"""The scheduled summary: a digest of the last `[summary] days` days, with the growth chart.

Queued in the outbox like any alert, with kind "summary", for every recipient that
receives alerts (a recipient with a state filter gets the numbers for its states).
The period is whole UTC days ending yesterday, so consecutive weekly summaries
neither overlap nor miss a change, and each equals
`ringwatch report --since FIRST --until LAST` for its days.

Outbox contract for channels: part 0 of a summary carries `row["attachment"]`, the
absolute path of a PNG (a channel should still cope with NULL). A channel that can send
photos sends it as a photo with `row["text"]` as the caption when the text fits the
platform's caption limit (Telegram: 1024 characters), and otherwise the photo followed
by the text; a channel without photos sends `row["text"]` alone. Later parts (long
summaries split to the channel's length limit) are plain text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2

from bot.channels import audiences as channel_audiences
from bot.channels.base import Channel
from bot.config import Config
from bot.messages import Audience
from bot.models import ChangeKind, MessageKind, OutboxMessage
from bot.normalise import display_name
from bot.render import render, split_text
from bot.reports import Report, build_report, group_by_state, long_date
from bot.store import Store


@dataclass(frozen=True)
class SummaryResult:
    first_day: str
    last_day: str
    messages: list[OutboxMessage]
    queued: int  # new outbox rows (0 when this period's summary was queued already)
    attachment: str | None


def summary_period(today: date, days: int) -> tuple[str, str]:
    """The `days` whole days before `today` (first, last), ISO dates."""
    return (today - timedelta(days=days)).isoformat(), (today - timedelta(days=1)).isoformat()


def summary_context(report: Report) -> dict[str, Any]:
    """What the summary templates show: pure, from one report."""
    first, last = report.since or "", report.until or ""
    span = long_date(first) if first == last else f"{long_date(first)} – {long_date(last)}"
    return {
        "period": span,
        "first_day": first,
        "last_day": last,
        "states": list(report.states),
        ChangeKind.ADDED: len(report.additions),
        "added_states": len(report.addition_states),
        ChangeKind.REMOVED: len(report.endings),
        ChangeKind.RENAMED: len(report.renames),
        "listed_now": report.listed_now,
        "listed_states": report.listed_states,
        "last_day_long": long_date(last) if last else "",
        "added_after": report.added_after,
        "ended_after": report.ended_after,
        "additions_by_state": group_by_state([_short_names(row) for row in report.additions]),
        "endings": [_short_names(row) for row in report.endings],
        "renames": [_short_names(row) for row in report.renames],
    }


def _short_names(row: dict[str, Any]) -> dict[str, Any]:
    previous = (row["before"] or {}).get("name") if row["kind"] == ChangeKind.RENAMED else None
    return {
        **row,
        "display_name": display_name(row["name"] or ""),
        "previous_display_name": display_name(previous or ""),
    }


def plan_summary(
    env: jinja2.Environment,
    audiences: Sequence[Audience],
    reports: dict[frozenset[str] | None, Report],
    *,
    group: str,
    attachment: str | None,
) -> list[OutboxMessage]:
    """One summary per alert recipient, split to its channel; the chart rides on part 0.

    `reports` holds a report per distinct state filter of the recipients (None: all).
    """
    messages: list[OutboxMessage] = []
    for audience in audiences:
        # The bundled summary templates live in text/ (.txt and .html): a channel whose
        # own folders have none (Telegram's searches only telegram/) falls back there.
        style = audience.style
        if "text" not in style.templates:
            style = replace(style, templates=(*style.templates, "text"))
        rendered: dict[frozenset[str] | None, list[str]] = {}
        for recipient in audience.recipients:
            if not recipient.alerts:
                continue
            states = recipient.states
            if states not in rendered:
                text = render(env, style, "summary", **summary_context(reports[states]))
                rendered[states] = split_text(text, style.max_length, style.measure)
            messages += [
                OutboxMessage(audience.channel, recipient.id, MessageKind.SUMMARY, group, text,
                              part, attachment=attachment if part == 0 else None)
                for part, text in enumerate(rendered[states])
            ]  # fmt: skip
    return messages


def _chart(store: Store, path: Path) -> str:
    from bot.charts import growth_chart, growth_data, save_figure

    return str(save_figure(growth_chart(growth_data(store.db)), path))


def queue_summary(
    config: Config,
    store: Store,
    channels: Sequence[Channel],
    *,
    today: date | None = None,
    dry_run: bool = False,
    env: jinja2.Environment | None = None,
) -> SummaryResult:
    """Build the summary for the period ending yesterday and queue it (once per period)."""
    from bot.render import make_environment

    today = today or datetime.now(UTC).date()
    first, last = summary_period(today, config.summary.days)
    audience_list = channel_audiences(channels, store)
    filters = {r.states for a in audience_list for r in a.recipients if r.alerts}
    reports = {
        states: build_report(store.db, since=first, until=last, states=sorted(states or ()))
        for states in filters
    }
    attachment = None
    if not dry_run:
        attachment = _chart(store, config.state_dir / "charts" / f"growth-{last}.png")
    messages = plan_summary(
        env or make_environment(config.templates_path),
        audience_list,
        reports,
        group=f"summary:{last}",
        attachment=attachment,
    )
    queued = 0
    if not dry_run:
        with store.db.atomic():
            queued = store.outbox.queue(None, messages)
    return SummaryResult(first, last, messages, queued, attachment)
