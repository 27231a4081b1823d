"""ringwatch wired to a served source, run in-process, and what it recorded.

`Bot` runs the real pipeline in-process (config file → Store on a real SQLite file →
Poller → console channel) so a test can poll, deliver and then read the change log,
the polls and the outbox. Exit codes are tested through the CLI (tests/support/cli.run_cli).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.channels import configure, enabled_channels
from bot.config import Config, load_config
from bot.deliver import DeliveryReport, deliver_pending
from bot.poll import PollResult, run_poll
from bot.queries import ChangeFilter, query_changes
from bot.store import Store
from tests.support.cli import write_config
from tests.support.outbox import outbox

# Short timeouts and backoffs keep failure tests fast; one retry still exercises retrying.
FAST_SOURCE: dict[str, Any] = {"timeout": "1s", "retries": 1, "backoff": "0.05s"}


def config_text(url: str, extra: str = "", **source: Any) -> str:
    """A config's text: [source] at `url` with fast retries (and `source` keys), then `extra`."""
    keys = {"url": url, **FAST_SOURCE, **source}
    lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
    return f"[source]\n{lines}\n{extra}"


@dataclass
class Bot:
    """ringwatch with a config file in `directory`, run in-process."""

    config_path: Path

    @classmethod
    def create(cls, directory: Path, url: str, extra: str = "", **source: Any) -> Bot:
        return cls(write_config(directory, config_text(url, extra, **source)))

    @property
    def config(self) -> Config:
        return configure(load_config(self.config_path))

    def copy(self, directory: Path) -> Bot:
        """This bot, config and state dir, copied into `directory`: a set-up built once for
        several tests, each of which changes its own copy."""
        shutil.copytree(self.config_path.parent, directory, dirs_exist_ok=True)
        path = directory / self.config_path.name
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace(str(self.config_path.parent), str(directory)), "utf-8")
        return Bot(path)

    def poll(self, *, deliver: bool = True) -> PollResult:
        config = self.config
        channels = enabled_channels(config)
        store = Store.open(config.db_path)
        try:
            result = run_poll(config, store, channels)
            if deliver:
                asyncio.run(deliver_pending(store, channels, alerts=config.alerts))
        finally:
            store.close()
        return result

    def deliver(self, clock: Callable[[], float] = time.time) -> DeliveryReport:
        """What is due at `clock`'s time (tests/support/clock.py moves it), delivered."""
        config = self.config
        store = Store.open(config.db_path)
        try:
            store.outbox.release_stale()
            channels = enabled_channels(config)
            return asyncio.run(deliver_pending(store, channels, alerts=config.alerts, clock=clock))
        finally:
            store.close()

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        store = Store.open(self.config.db_path, readonly=True)
        try:
            return list(store.db.query(sql, params or []))
        finally:
            store.close()

    def changes(self, **filters: Any) -> list[dict[str, Any]]:
        """The change log as `ringwatch changes` sees it (baseline rows too, unless filtered)."""
        filters.setdefault("kinds", ("added", "removed", "changed", "renamed", "baseline"))
        filters.setdefault("churn", True)
        store = Store.open(self.config.db_path, readonly=True)
        try:
            return query_changes(store.db, ChangeFilter(**filters))
        finally:
            store.close()

    def kinds(self) -> list[tuple[str, str]]:
        """(kind, name) of every change-log row except the baseline, in order."""
        return [(c["kind"], c["name"]) for c in self.changes() if c["kind"] != "baseline"]

    def agencies(self) -> dict[str, dict[str, Any]]:
        """Active agencies by key."""
        return {r["key"]: r for r in self.rows("select * from agencies where active = 1")}

    def polls(self) -> list[dict[str, Any]]:
        return self.rows("select * from polls order by id")

    def outbox(self, **where: object) -> list[dict[str, Any]]:
        """The outbox rows whose columns equal `where`'s values, in id order."""
        return outbox(self.config.db_path, **where)

    def sent_texts(self) -> list[str]:
        return [row["text"] for row in self.outbox() if row["status"] == "sent"]
