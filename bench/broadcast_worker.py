"""The broadcast worker: one alert to N Telegram subscribers, delivered for a while.

`python -m bench.broadcast_worker BOT_API_BASE_URL SUBSCRIBERS SECONDS STATE_DIR`, with
TELEGRAM_BOT_TOKEN in the environment. It runs the real pipeline: a baseline poll, N
subscribers, a poll that finds one new agency (which queues one outbox row per subscriber),
then bot.deliver through bot.channels.telegram (python-telegram-bot) for at most SECONDS.
Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from bench.server import DocumentServer
from bot.channels import channel_settings, configure, enabled_channels
from bot.config import parse_config
from bot.deliver import deliver_pending
from bot.models import OutboxStatus
from bot.poll import Poller
from bot.store import Store
from tests.support.synthetic import generate_agencies, mutate, to_kml

FIRST_CHAT_ID = 10_000_000  # private chats: positive ids


async def deliver_for(store: Store, channels: list, seconds: float) -> bool:
    """Deliver until done or `seconds` pass; True when everything due was sent."""
    try:
        await asyncio.wait_for(deliver_pending(store, channels), timeout=seconds)
    except TimeoutError:
        return False
    return True


def main() -> None:
    base_url, subscribers, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    state_dir = Path(sys.argv[4])
    agencies = generate_agencies(50, seed=7)
    with DocumentServer() as server:
        server.publish(to_kml(agencies))
        config = configure(
            parse_config(
                {
                    "bot": {"state_dir": str(state_dir)},
                    "source": {"url": server.url, "format": "kml", "retries": 0},
                    "console": {"enabled": False},
                    "telegram": {"enabled": True, "api_base_url": base_url},
                },
                state_dir / "config.toml",
            )
        )
        store = Store.open(config.db_path)
        channels = enabled_channels(config)
        poller = Poller(config, store, channels)
        poller.run()  # the baseline: no alerts
        with store.db.atomic():
            for chat in range(FIRST_CHAT_ID, FIRST_CHAT_ID + subscribers):
                store.subscribers.subscribe("telegram", str(chat), states=None, chat_type="private")

        server.publish(to_kml(mutate(agencies, seed=1, add=1)))
        started = time.perf_counter()
        result = poller.run()
        queue_s = time.perf_counter() - started
    queued = store.outbox.queued_for_poll(result.poll_id)
    started = time.perf_counter()
    finished = asyncio.run(deliver_for(store, channels, seconds))
    deliver_s = time.perf_counter() - started
    sent = sum(by_status.get(OutboxStatus.SENT, 0) for by_status in store.outbox.counts().values())
    print(
        json.dumps(
            {
                "poll": result.summary,
                "queued": queued,
                "queue_s": queue_s,
                "sent": sent,
                "deliver_s": deliver_s,
                "finished": finished,
                "configured_rate": channel_settings(config, "telegram").messages_per_second,
            }
        )
    )


if __name__ == "__main__":
    main()
