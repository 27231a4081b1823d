"""The heartbeat: after each poll `run` and `poll` tell a dead-man's switch (healthchecks.io,
Uptime Kuma's push monitors) that ringwatch is alive, so that silence is noticed from
outside. The URL is a secret (anyone who has it can ping), read from the environment
variable health.heartbeat_url_env names, and scrubbed like the channels' secrets.

A ping never fails or holds up a poll: it has a total deadline, and what goes wrong is
logged once per streak of failures (a file in the state directory remembers the streak
across `poll` processes and restarts)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

import requests

from bot.config import Config, ConfigError
from bot.logs import declare_secrets, redact
from bot.safe import http_url

log = logging.getLogger(__name__)

# Present while pings fail: the streak's first failure was logged, the rest are not.
UNREACHABLE_FILE = "heartbeat-unreachable"


class Heartbeat:
    def __init__(self, url: str, fail_suffix: str, timeout: float, state_dir: Path) -> None:
        self.url, self.fail_suffix, self.timeout = url, fail_suffix, timeout
        self.streak_file = state_dir / UNREACHABLE_FILE

    @classmethod
    def from_config(cls, config: Config) -> Heartbeat | None:
        """The configured heartbeat, or None when there is none; ConfigError when its
        variable is unset or holds no http(s) URL (the message never quotes the value)."""
        health = config.health
        name = health.heartbeat_url_env
        if not name:
            return None
        declare_secrets((name,))
        url = os.environ.get(name, "").strip()
        if not url:
            raise ConfigError(
                f"{config.path}: health.heartbeat_url_env: ${name} is not set: export it with "
                "the push URL (e.g. https://hc-ping.com/<uuid>), or remove the key"
            )
        if http_url(url) is None:
            raise ConfigError(
                f"{config.path}: health.heartbeat_url_env: ${name} does not hold an http(s) URL"
            )
        return cls(url, health.heartbeat_fail_suffix, health.heartbeat_timeout, config.state_dir)

    def ping(self, good: bool) -> None:
        """Request the URL after a good poll, the URL + fail suffix after a bad one (if a
        suffix is set); within the deadline, never raising."""
        if not good and not self.fail_suffix:
            return
        url = self.url if good else self.url + self.fail_suffix
        problem = self._request(url)
        if problem is None:
            if self.streak_file.exists():
                log.info("heartbeat: reachable again")
                self.streak_file.unlink(missing_ok=True)
        elif not self.streak_file.exists():
            log.warning("heartbeat not delivered (said once until it works again): %s", problem)
            with contextlib.suppress(OSError):  # then each failure is logged: noisy, not wrong
                self.streak_file.touch()

    def _request(self, url: str) -> str | None:
        """What went wrong with one GET, or None. It runs in a daemon thread so that the
        caller waits at most health.heartbeat_timeout, whatever the server does."""
        outcome: list[str | None] = []

        def get() -> None:
            try:
                with requests.Session() as session:
                    session.trust_env = False  # as the source's fetch: no proxy from the env
                    response = session.get(url, timeout=self.timeout, stream=True)
                    response.close()  # the answer's body says nothing we need
                ok = response.status_code < 400
                outcome.append(None if ok else f"HTTP {response.status_code} from {url}")
            except requests.RequestException as exc:
                outcome.append(f"{type(exc).__name__}: {exc}")

        thread = threading.Thread(target=get, name="heartbeat", daemon=True)
        thread.start()
        thread.join(self.timeout)
        if not outcome:
            return redact(
                f"no answer from {url} within {self.timeout:g}s (health.heartbeat_timeout)"
            )
        return redact(outcome[0]) if outcome[0] else None
