"""Helpers for the core tests: a ringwatch wired to a served source, and what it recorded.

`Bot` runs the real pipeline in-process (config file → Store on a real SQLite file →
Poller → console channel) so a test can poll, deliver and then read the change log,
the polls and the outbox. Exit codes are tested through the CLI (tests/support/cli.run_cli).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from bot.channels import configure, enabled_channels
from bot.config import Config, load_config
from bot.deliver import DeliveryReport, deliver_pending
from bot.poll import PollResult, run_poll
from bot.queries import ChangeFilter, query_changes
from bot.store import Store
from bot.store.times import iso_time
from tests.support.cli import write_config
from tests.support.synthetic import SyntheticAgency, generate_agencies, to_kml

# Short timeouts and backoffs keep failure tests fast; one retry still exercises retrying.
FAST_SOURCE: dict[str, Any] = {"timeout": "1s", "retries": 1, "backoff": "0.05s"}


def agencies(n: int, seed: int = 1) -> list[SyntheticAgency]:
    return generate_agencies(n, seed=seed)


def kml(items: list[SyntheticAgency], **options: Any) -> bytes:
    return to_kml(items, **options)


def renamed(agency: SyntheticAgency, **fields: Any) -> SyntheticAgency:
    return dataclasses.replace(agency, **fields)


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

    def deliver(self) -> DeliveryReport:
        config = self.config
        store = Store.open(config.db_path)
        try:
            store.outbox.release_stale()
            return asyncio.run(
                deliver_pending(store, enabled_channels(config), alerts=config.alerts)
            )
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

    def outbox(self) -> list[dict[str, Any]]:
        return self.rows("select * from outbox order by id")

    def sent_texts(self) -> list[str]:
        return [row["text"] for row in self.outbox() if row["status"] == "sent"]


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


def closed_port_url() -> str:
    """An address on 127.0.0.1 where nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def wait_for(predicate: Callable[[], object], timeout: float = 60) -> None:
    """Poll `predicate` until it holds; fail the test when `timeout` seconds pass first.
    A database that is still being created (sqlite3.OperationalError) does not hold yet."""
    deadline = time.monotonic() + timeout
    while not _holds(predicate):
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def _holds(predicate: Callable[[], object]) -> bool:
    try:
        return bool(predicate())
    except sqlite3.OperationalError:
        return False


def as_stored_now(table: str, column: str, value: Any) -> Any:
    """An old database's value as the current schema keeps it: the outbox's epoch seconds
    became ISO text (a retry rounded up to its second), every other value stays."""
    if table != "outbox" or value is None:
        return value
    if column == "next_attempt_at":
        return iso_time(value, round_up=True)
    return iso_time(value) if column == "failing_since" else value
