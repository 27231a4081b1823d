"""Map cards: seconds per card and PNG sizes, and what cards cost a poll.

The samples' 29 additions are polled (baseline, then the later map) with Telegram
enabled, once with `images = true` and once with `images = false`, and the poll's commit
is timed by the poll itself (its `commit` phase). Cards are drawn at delivery (one per
change, before its first send), never in the poll's transaction, so the commit should not
move: a message's first send pays one card's drawing instead.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlite_utils

from bench.polls import REPO
from bot.cards import alert_card_data, digest_card_data, draw_card
from bot.channels import enabled_channels
from bot.config import parse_config
from bot.poll import Poller
from bot.queries import changes_by_id
from bot.store import Store
from tests.support.source_server import SourceServer

SAMPLES = REPO / "bot" / "samples"


def _commit_time(state_dir: Path, url: str, images: bool) -> float:
    """Baseline, then 29 new partnerships: the second poll's commit, in seconds."""
    settings = {
        "bot": {"state_dir": str(state_dir)},
        "source": {"url": url, "format": "kml", "retries": 0},
        "guard": {"max_added_share": 0.25},
        "alerts": {"images": images, "digest_threshold": 1000, "send_timeout": "60s"},
        "telegram": {"enabled": True, "channel": "-1001"},
    }
    config = parse_config(settings, state_dir / "config.toml")
    store = Store.open(config.db_path)
    try:
        channels = enabled_channels(config)
        Poller(config, store, channels).run()
        result = Poller(config, store, channels).run()
    finally:
        store.close()
    return result.timings["commit"]


def measure_cards(quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, SourceServer() as source:
        url = source.serve(
            "/samples.kml",
            (SAMPLES / "baseline.kml").read_bytes(),
            (SAMPLES / "later.kml").read_bytes(),
            (SAMPLES / "baseline.kml").read_bytes(),
            (SAMPLES / "later.kml").read_bytes(),
        )
        without = _commit_time(Path(tmp) / "text", url, images=False)
        with_images = _commit_time(Path(tmp) / "cards", url, images=True)
        db = sqlite_utils.Database(Path(tmp) / "text" / "ringwatch.db")
        rows = changes_by_id(db, [r[0] for r in db.execute(
            "select id from changes where kind != 'baseline' order by id")])  # fmt: skip
        rows = rows[:5] if quick else rows
        seconds, sizes = [], []
        for row in rows:
            started = time.perf_counter()
            png = draw_card(alert_card_data(db, row))
            seconds.append(time.perf_counter() - started)
            sizes.append(len(png))
        started = time.perf_counter()
        digest = draw_card(digest_card_data(db, rows))
        digest_s = time.perf_counter() - started
    from PIL import Image

    assert Image.open(io.BytesIO(digest)).size == (1200, 675)
    return {
        "cards": len(rows),
        "first_card_s": seconds[0],  # with matplotlib's import
        "median_card_s": statistics.median(seconds[1:] or seconds),
        "max_png_bytes": max(sizes),
        "median_png_bytes": int(statistics.median(sizes)),
        "digest_card_s": digest_s,
        "digest_png_bytes": len(digest),
        "commit_s": {"text": without, "images": with_images},
    }
