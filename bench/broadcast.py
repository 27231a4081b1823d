"""Broadcast: one alert to many Telegram subscribers against the local Bot API stub.

The stub (tests/support/telegram_stub.py) runs in this process with Telegram's limits
enforced and counts every 429 it had to send; the bot runs in a subprocess
(bench/broadcast_worker.py), so the two do not share an interpreter. The rate is measured
where Telegram would see it: messages the stub accepted ÷ the time from the first to the
last of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from bench.polls import REPO
from tests.support.telegram_stub import TelegramStub


def measure_broadcast(subscribers: int, seconds: float) -> dict[str, Any]:
    stub = TelegramStub(enforce_limits=True).start()
    try:
        with tempfile.TemporaryDirectory(prefix="ringwatch-bench-") as tmp:
            env = {**os.environ, "TELEGRAM_BOT_TOKEN": stub.token, "PTB_TIMEDELTA": "1"}
            done = subprocess.run(
                [sys.executable, "-m", "bench.broadcast_worker", stub.base_url,
                 str(subscribers), str(seconds), tmp],
                capture_output=True, text=True, cwd=REPO, env=env, timeout=seconds + 300,
            )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"broadcast worker failed:\n{done.stderr[-4000:]}")
        result = json.loads(done.stdout)
        times = sorted(sent.at for sent in stub.sent)
        http_429 = stub.rate_limited
    finally:
        stub.stop()
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    rate = (len(times) - 1) / span if span else 0.0
    configured = result["configured_rate"]
    return {
        "subscribers": subscribers,
        "queued": result["queued"],
        "queue_s": result["queue_s"],
        "sent": len(times),
        "sent_per_outbox": result["sent"],
        "finished": result["finished"],
        "elapsed_s": span,
        "deliver_s": result["deliver_s"],
        "rate": rate,
        "configured_rate": configured,
        "share_of_rate": rate / configured,
        "http_429": http_429,
    }
