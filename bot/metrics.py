"""Prometheus metrics for `ringwatch run` (`[metrics] listen`), in the text format served by
the official prometheus-client on its own registry, never the library's global one.

Counters and histograms count what this process did (polls, changes, fetches, sends); the
gauges are read from the database at each scrape (agencies listed, the last good poll,
the outbox, the snapshots' bytes), so they are right even about what another process
(`ringwatch deliver`, a restart) did. Labels take few values: outcomes, kinds, statuses
and channel names; never a subscriber, a recipient or a message id.

Only `run` with `[metrics]` configured imports this module (and prometheus_client).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from bot.config import Config, ConfigError
from bot.deliver import DeliveryReport
from bot.models import ChangeKind, PollOutcome
from bot.poll import PollResult
from bot.queries import last_good_poll_time, listed_now, snapshots_stored_bytes
from bot.store import Store
from bot.store.times import epoch_time

log = logging.getLogger(__name__)

# Seconds: a fetch of Ring's map takes a second or two, a slow one up to source.deadline.
FETCH_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, float("inf"))
SEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))


class SendResult(StrEnum):
    """What became of one send attempt (the `result` label of ringwatch_sends_total)."""

    SENT = "sent"
    RETRY = "retry"  # a transient failure or a wait: tried again later
    FAILED = "failed"  # given up, or refused for good


class DatabaseGauges:
    """The gauges read from the database at each scrape, on a connection of the scrape's
    own (the exporter answers in its own thread)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def describe(self) -> list[Metric]:
        """Names only: registering must not read the database."""
        return list(self._families(None))

    def collect(self) -> Iterator[Metric]:
        try:
            store = Store.open(self.db_path, readonly=True)
        except sqlite3.Error as exc:
            log.warning("metrics: cannot read %s: %s", self.db_path, exc)
            return iter(())
        try:
            return iter(list(self._families(store)))
        except sqlite3.Error as exc:
            log.warning("metrics: cannot read %s: %s", self.db_path, exc)
            return iter(())
        finally:
            store.close()

    @staticmethod
    def _families(store: Store | None) -> Iterator[Metric]:
        listed = GaugeMetricFamily("ringwatch_agencies_listed", "Agencies listed on the map now")
        last = GaugeMetricFamily(
            "ringwatch_last_good_poll_timestamp_seconds",
            "When the last good poll finished (Unix time)",
        )
        outbox = GaugeMetricFamily(
            "ringwatch_outbox_messages", "Messages in the outbox", labels=["channel", "status"]
        )
        stored = GaugeMetricFamily(
            "ringwatch_snapshots_stored_bytes", "Bytes the stored source documents take"
        )
        if store is not None:
            listed.add_metric([], listed_now(store.db).agencies)
            finished = last_good_poll_time(store.db)
            if finished is not None:
                last.add_metric([], epoch_time(finished))
            for channel, by_status in sorted(store.outbox.counts().items()):
                for status, count in sorted(by_status.items()):
                    outbox.add_metric([channel, status], count)
            stored.add_metric([], snapshots_stored_bytes(store.db))
        yield from (listed, last, outbox, stored)


class Metrics:
    """What `run` counts, and the registry the exporter serves."""

    def __init__(self, db_path: Path, channels: Sequence[str]) -> None:
        self.registry = registry = CollectorRegistry()
        self.polls = Counter(
            "ringwatch_polls", "Polls, by how they ended", ["outcome"], registry=registry
        )
        self.changes = Counter(
            "ringwatch_changes", "Changes recorded in the change log, by kind", ["kind"],
            registry=registry,
        )  # fmt: skip
        self.fetch_seconds = Histogram(
            "ringwatch_fetch_duration_seconds", "How long a successful fetch of the source took",
            buckets=FETCH_BUCKETS, registry=registry,
        )  # fmt: skip
        self.fetched_bytes = Counter(
            "ringwatch_fetched_bytes", "Bytes of source documents fetched", registry=registry
        )
        self.sends = Counter(
            "ringwatch_sends", "Send attempts, by channel and result", ["channel", "result"],
            registry=registry,
        )  # fmt: skip
        self.send_seconds = Histogram(
            "ringwatch_send_duration_seconds", "How long one send attempt took, answer included",
            ["channel"], buckets=SEND_BUCKETS, registry=registry,
        )  # fmt: skip
        # Every series exists from the start, at 0: a rate() needs the value before the change.
        for outcome in PollOutcome:
            self.polls.labels(outcome)
        for kind in ChangeKind:
            self.changes.labels(kind)
        for channel in channels:
            self.send_seconds.labels(channel)
            for result in SendResult:
                self.sends.labels(channel, result)
        registry.register(DatabaseGauges(db_path))

    def observe_poll(self, result: PollResult, store: Store) -> None:
        self.polls.labels(result.outcome).inc()
        for change in result.changes:
            self.changes.labels(change.kind).inc()
        if "fetch" in result.timings:
            self.fetch_seconds.observe(result.timings["fetch"])
        row = store.polls.get(result.poll_id) if result.poll_id else None
        if row and row["bytes"]:
            self.fetched_bytes.inc(row["bytes"])

    def observe_delivery(self, report: DeliveryReport) -> None:
        for result, counts in (
            (SendResult.SENT, report.sent),
            (SendResult.RETRY, report.retrying),
            (SendResult.FAILED, report.failed),
        ):
            for channel, count in counts.items():
                self.sends.labels(channel, result).inc(count)
        for channel, seconds in report.send_seconds.items():
            for elapsed in seconds:
                self.send_seconds.labels(channel).observe(elapsed)


def serve_metrics(config: Config, channels: Sequence[str]) -> tuple[Metrics, WSGIServer]:
    """Start serving http://metrics.listen/metrics in a daemon thread; ConfigError when
    that address cannot be listened on. Stop it with server.shutdown()."""
    address = config.metrics.address
    assert address is not None, "serve_metrics needs metrics.listen"
    host, port = address
    metrics = Metrics(config.db_path, channels)
    try:
        server, _ = start_http_server(port, host, registry=metrics.registry)
    except OSError as exc:
        raise ConfigError(
            f"{config.path}: metrics.listen: cannot listen on {config.metrics.listen}: "
            f"{exc.strerror or exc}; choose a free port, or leave it empty for no metrics"
        ) from None
    log.info("metrics at %s", config.metrics.url)
    return metrics, server
