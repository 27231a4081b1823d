"""A poll worker: one fresh process per document size, polling into a real Store.

`python -m bench.worker URL STATE_DIR` reads commands from stdin, one per line, and answers
each with one JSON line on stdout:

* ``poll``: one full cycle (bot.poll.Poller: fetch, parse, normalise, diff, commit) with the
  console channel enabled, as `ringwatch poll` would run it, without delivering.
* ``size``: the database file's size after a WAL checkpoint.

Running in its own process makes its peak RSS the peak of this size's polls alone.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench.rss import peak_rss_mb
from bot.channels import enabled_channels
from bot.config import parse_config
from bot.poll import Poller
from bot.store import Store

MAX_BYTES = 512 * 1024 * 1024  # the synthetic 100,000-agency export is ~55 MB


def main() -> None:
    url, state_dir = sys.argv[1], Path(sys.argv[2])
    config = parse_config(
        {
            "bot": {"state_dir": str(state_dir)},
            "source": {"url": url, "format": "kml", "max_bytes": MAX_BYTES, "retries": 0},
        },
        state_dir / "config.toml",
    )
    store = Store.open(config.db_path)
    poller = Poller(config, store, enabled_channels(config))
    reply({"ready": True, "rss_mb": peak_rss_mb()})
    for line in sys.stdin:
        command = line.strip()
        if command == "poll":
            writes_before = store.db.conn.total_changes
            started = time.perf_counter()
            result = poller.run()
            total = time.perf_counter() - started
            reply(
                {
                    "outcome": result.outcome,
                    "summary": result.summary,
                    "total_s": total,
                    "phases_s": result.timings,
                    "parsed": "parse" in result.timings,
                    "rows_written": store.db.conn.total_changes - writes_before,
                    "rss_mb": peak_rss_mb(),
                }
            )
        elif command == "size":
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            reply({"db_bytes": config.db_path.stat().st_size})
        elif command == "quit":
            break
        else:
            reply({"error": f"unknown command {command!r}"})
    store.close()


def reply(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
