"""Plan deliveries: which message goes to which recipient of which channel.

Pure: changes and audiences in, OutboxMessages out. A recipient gets single messages
while the changes that match their state filter stay within the channel's digest
threshold, and one digest (split to the channel's length limit) above it.
"""

from __future__ import annotations

from collections.abc import Sequence

import jinja2

from bot.messages import Audience, Recipient
from bot.models import Change, ChangeKind, MessageKind, OutboxMessage
from bot.render import render, render_change, render_digest, split_text


def _parts(
    audience: Audience,
    recipient: Recipient,
    kind: MessageKind,
    group: str,
    texts: list[str],
    ids=(),
) -> list[OutboxMessage]:
    return [
        OutboxMessage(audience.channel, recipient.id, kind, group, text, part, tuple(ids))
        for part, text in enumerate(texts)
    ]


def plan_alerts(
    env: jinja2.Environment,
    audiences: Sequence[Audience],
    numbered: Sequence[tuple[int, Change]],
    *,
    poll_id: int,
    digest_threshold: int,
    since: str | None = None,
) -> list[OutboxMessage]:
    alerting = [(cid, c) for cid, c in numbered if c.alert and c.kind != ChangeKind.BASELINE]
    messages: list[OutboxMessage] = []
    for audience in audiences:
        style = audience.style
        # A channel may set its own (X: its posts cost; a webhook: one POST per change).
        threshold = digest_threshold if style.digest_threshold is None else style.digest_threshold
        rendered: dict[tuple[int, ...], list[list[str]]] = {}  # many subscribers share a filter
        for recipient in audience.recipients:
            if not recipient.alerts:
                continue
            matching = [(cid, c) for cid, c in alerting if recipient.wants(c.agency.state)]
            if not matching:
                continue
            ids = tuple(cid for cid, _ in matching)
            if ids not in rendered:
                if len(matching) > threshold:
                    changes = [c for _, c in matching]
                    rendered[ids] = [render_digest(env, style, changes, since=since)]
                else:
                    rendered[ids] = [
                        split_text(render_change(env, style, c), style.max_length, style.measure)
                        for _, c in matching
                    ]
            if len(matching) > threshold:
                group = f"digest:{poll_id}"
                messages += _parts(
                    audience, recipient, MessageKind.DIGEST, group, rendered[ids][0], ids
                )
            else:
                for (cid, _), texts in zip(matching, rendered[ids], strict=True):
                    messages += _parts(
                        audience, recipient, MessageKind.ALERT, f"change:{cid}", texts, [cid]
                    )
    return messages


def plan_maintainer_message(
    env: jinja2.Environment,
    audiences: Sequence[Audience],
    *,
    kind: str,
    group: str,
    **context: object,
) -> list[OutboxMessage]:
    """A notice or warning for the maintainers of every channel."""
    messages: list[OutboxMessage] = []
    for audience in audiences:
        texts = split_text(
            render(env, audience.style, kind, **context),
            audience.style.max_length,
            audience.style.measure,
        )
        for recipient in audience.recipients:
            if recipient.maintainer:
                messages += _parts(audience, recipient, kind, group, texts)
    return messages
