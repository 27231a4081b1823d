"""Report steps after a poll committed: the Atom feed and the public site.

They read the committed change log, so they run after the commit and outside the poll: a
feed or site that cannot be written is logged, never a failed poll. Callers run this once
per poll (`ringwatch poll`, the scheduler) or once per import, not once per document.
"""

from __future__ import annotations

import logging

import jinja2

from bot.config import Config
from bot.render import make_environment
from bot.store import Store

log = logging.getLogger(__name__)


def publish_after_poll(
    config: Config, store: Store, env: jinja2.Environment | None = None, *, changed: bool
) -> None:
    """Rewrite the feed and rebuild the site (when configured) if the change log grew,
    or if they are missing."""
    env = env or make_environment(config.templates_path)
    _write_feed(config, store, env, changed=changed)
    if config.site.enabled and (changed or not config.site_path.exists()):
        from bot.site import rebuild_after_poll

        rebuild_after_poll(config, store.db, env)


def _write_feed(config: Config, store: Store, env: jinja2.Environment, *, changed: bool) -> None:
    path = config.feed_path
    if path is None or not (changed or not path.exists()):
        return
    from bot.feed import write_feed

    try:
        write_feed(store.db, path, entries=config.feed.entries, title=config.feed.title,
                   env=env, feed_url=config.feed.url, source_url=config.source.url)  # fmt: skip
    except OSError as exc:
        log.warning("could not write the feed %s: %s", path, exc)
