"""Is ringwatch alive? The decision behind `ringwatch health` (Docker's HEALTHCHECK, a
systemd timer) and the line `ringwatch status` shows: a pure function of facts read from
the database (queries.read_health_facts), which explains itself and names the config keys
it judged by, as diff.guard_problem does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.config import Config
from bot.queries import HealthFacts, Waiting, read_health_facts
from bot.reports import age_text
from bot.store import Store
from bot.store.times import iso_time


def _span(seconds: float) -> str:
    """age_text, or under a minute the seconds (a test's or an eager limit)."""
    return f"{max(0, int(seconds))}s" if seconds < 60 else age_text(seconds)


@dataclass(frozen=True)
class Health:
    """The verdict: healthy or not, each problem in words, and the facts it rests on."""

    checked_at: float  # epoch seconds
    facts: HealthFacts
    max_poll_age: float
    max_backlog_age: float
    problems: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def poll_age(self) -> float | None:
        """Seconds since the last good poll finished; None: there was none."""
        last = self.facts.last_good_poll
        return None if last is None else self.checked_at - datetime.fromisoformat(last).timestamp()

    def line(self) -> str:
        """'healthy: last good poll 4m ago; 0 messages waiting longer than 30m', or
        'unhealthy: ' and every problem."""
        if not self.healthy:
            return "unhealthy: " + "; ".join(self.problems)
        age = self.poll_age
        assert age is not None  # no good poll is a problem
        return (
            f"healthy: last good poll {_span(age)} ago; 0 messages waiting longer than "
            f"{_span(self.max_backlog_age)}"
        )

    def as_json(self) -> dict[str, Any]:
        """The same facts for a machine (`ringwatch health --format json`)."""
        age = self.poll_age
        return {
            "healthy": self.healthy,
            "checked_at": iso_time(self.checked_at),
            "last_good_poll": self.facts.last_good_poll,
            "last_good_poll_age_seconds": None if age is None else round(age),
            "max_poll_age_seconds": self.max_poll_age,
            "max_backlog_age_seconds": self.max_backlog_age,
            "waiting": [
                {
                    "channel": w.channel,
                    "messages": w.messages,
                    "oldest_queued_at": w.oldest,
                    "oldest_age_seconds": round(_age(w, self.checked_at)),
                }
                for w in self.facts.waiting
            ],
            "problems": list(self.problems),
        }


def _age(waiting: Waiting, now: float) -> float:
    return now - datetime.fromisoformat(waiting.oldest).timestamp()


def judge_health(
    facts: HealthFacts, *, now: float, max_poll_age: float, max_backlog_age: float
) -> Health:
    """Healthy when the last good poll is at most `max_poll_age` seconds old and no message
    that should have gone out has waited longer than `max_backlog_age` (the facts hold only
    those); otherwise each reason, with the limit and its key."""
    problems = []
    poll_limit = f"(limit {_span(max_poll_age)}, health.max_poll_age)"
    if facts.last_good_poll is None:
        problems.append(f"no good poll recorded yet {poll_limit}")
    else:
        age = now - datetime.fromisoformat(facts.last_good_poll).timestamp()
        if age > max_poll_age:
            problems.append(f"last good poll {_span(age)} ago {poll_limit}")
    for waiting in facts.waiting:
        many = f"{waiting.messages} message{'' if waiting.messages == 1 else 's'}"
        problems.append(
            f"{waiting.channel}: {many} waiting, oldest {_span(_age(waiting, now))} "
            f"(limit {_span(max_backlog_age)}, health.max_backlog_age)"
        )
    return Health(now, facts, max_poll_age, max_backlog_age, tuple(problems))


def check_health(config: Config, store: Store, now: float) -> Health:
    """The database's facts judged by the config's limits."""
    backlog = config.health.max_backlog_age
    return judge_health(
        read_health_facts(store.db, now, backlog),
        now=now,
        max_poll_age=config.max_poll_age,
        max_backlog_age=backlog,
    )


def monitoring_lines(config: Config) -> list[str]:
    """What `status` and `check-config` say about health, heartbeat and metrics."""
    health = config.health
    lines = [
        f"health: `ringwatch health` fails when the last good poll is older than "
        f"{_span(config.max_poll_age)} (health.max_poll_age) or a message waits longer "
        f"than {_span(health.max_backlog_age)} (health.max_backlog_age)"
    ]
    if health.heartbeat_url_env:
        after_bad = (
            f"the URL + {health.heartbeat_fail_suffix!r} after a failed or suspect one"
            if health.heartbeat_fail_suffix
            else "nothing after a failed or suspect one (health.heartbeat_fail_suffix)"
        )
        lines.append(
            f"heartbeat: the URL in ${health.heartbeat_url_env} after each good poll, {after_bad}"
        )
    else:
        lines.append("heartbeat: off (health.heartbeat_url_env)")
    if config.metrics.url:
        lines.append(f"metrics: {config.metrics.url} while `ringwatch run` runs")
    else:
        lines.append("metrics: off (metrics.listen)")
    return lines
