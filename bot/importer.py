"""Import the past: documents from files, from a git repository's history of one file, or
from the Internet Archive's captures, each polled as if at its own time.

Every document goes through the same Poller as a live poll (normalise, diff, guards,
snapshots); only the fetch is replaced and the clock set to the document's time. No
channel is given to the Poller, so imported history queues no alert. A document older than
the latest poll is refused: the change log only moves forward. Captures already imported
are skipped, so an interrupted Wayback import resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlencode

import requests
import urllib3

from bot.config import Config
from bot.models import BAD_OUTCOMES, ChangeKind, Origin
from bot.poll import Poller
from bot.publish import publish_after_poll
from bot.render import make_environment
from bot.source import Fetched, FetchError, guard
from bot.source.fetch import read_bounded
from bot.store import Store

log = logging.getLogger(__name__)

GIT_TIMEOUT = 300.0  # seconds for one git command on a large history
_FILE_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})(?:[T_ ](?P<h>\d{2}):?(?P<m>\d{2}):?(?P<s>\d{2})?)?Z?$"
)
_CDX_FIELDS = ("timestamp", "original", "statuscode")


class ImportRefused(Exception):
    """The import cannot start: worded for the person who asked (nothing was imported)."""


class ImportInterrupted(Exception):
    """The source of the past stopped answering; what was imported stays, run again to resume."""


@dataclass(frozen=True)
class Capture:
    """One past document: when it was published, what the poll row cites, how to read it."""

    at: datetime
    url: str
    load: Callable[[], Fetched]

    @property
    def at_iso(self) -> str:
        return self.at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class ImportReport:
    origin: Origin
    outcomes: Counter[str] = field(default_factory=Counter)
    changes: int = 0
    skipped: int = 0  # imported before
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        total = sum(self.outcomes.values())
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.outcomes.items()))
        text = f"imported {total} document{'' if total == 1 else 's'} from {self.origin}"
        text += f" ({counts})" if counts else ""
        text += f"; {self.changes} change{'' if self.changes == 1 else 's'} logged, no alerts"
        return text + (f"; {self.skipped} already imported, skipped" if self.skipped else "")


# --- when a document is from ---------------------------------------------------------------


def parse_time(text: str) -> datetime:
    """'2020-05-24', '2020-06-05T120000Z', '2020-06-05T12:00:00Z' (UTC unless an offset says)."""
    match = _FILE_TIME.match(text.strip())
    if match:
        hour, minute, second = (int(match[g] or 0) for g in ("h", "m", "s"))
        day = date.fromisoformat(match["date"])
        return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time like 2020-05-24 or 2020-06-05T12:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _read_file(path: Path) -> Callable[[], Fetched]:
    def load() -> Fetched:
        try:
            return Fetched(url=str(path.resolve()), status=200, body=path.read_bytes())
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from None

    return load


def file_captures(paths: Sequence[Path], at: str | None = None) -> list[Capture]:
    """Files named by their time (2020-05-24.kml), or one file at `at`."""
    if at is not None:
        if len(paths) != 1:
            raise ImportRefused("--at gives the time of one file: import the others by name")
        if not paths[0].is_file():
            raise ImportRefused(f"{paths[0]}: no such file")
        moment = _time_or_refuse(at, "--at")
        return [Capture(moment, str(paths[0].resolve()), _read_file(paths[0]))]
    captures = []
    for path in paths:
        if not path.is_file():
            raise ImportRefused(f"{path}: no such file")
        stem = path.name.split(".", 1)[0]
        moment = _time_or_refuse(stem, str(path), "name it like 2020-05-24.kml or use --at")
        captures.append(Capture(moment, str(path.resolve()), _read_file(path)))
    return captures


def _time_or_refuse(text: str, what: str, hint: str = "") -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise ImportRefused(f"{what}: {exc}" + (f" ({hint})" if hint else "")) from None


# --- git -----------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                              timeout=GIT_TIMEOUT, check=False)  # fmt: skip
    except FileNotFoundError:
        raise ImportRefused("git is not installed (apt-get install git)") from None
    except subprocess.TimeoutExpired:
        raise ImportInterrupted(f"git {args[0]} in {repo} took over {GIT_TIMEOUT:.0f}s") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ImportRefused(f"{repo}: git {args[0]} failed: {message[-1] if message else '?'}")
    return done.stdout


def git_captures(repo: Path, path: str) -> list[Capture]:
    """Every commit that changed `path` (deletions aside), oldest first, at its commit time."""
    log_lines = _git(repo, "log", "--reverse", "--diff-filter=ACMRT", "--format=%H %ct", "--", path)
    captures = []
    for line in log_lines.decode().splitlines():
        commit, seconds = line.split()
        cited = f"{repo.resolve()}@{commit}:{path}"

        def load(commit: str = commit, cited: str = cited) -> Fetched:
            return Fetched(url=cited, status=200, body=_git(repo, "show", f"{commit}:{path}"))

        captures.append(Capture(datetime.fromtimestamp(int(seconds), UTC), cited, load))
    if not captures:
        raise ImportRefused(f"{repo}: no commit changed {path} (give it relative to the repo)")
    return captures


# --- the Wayback Machine ----------------------------------------------------------------------


class Wayback:
    """The Internet Archive's CDX listing and raw captures, one request at a time."""

    def __init__(self, config: Config) -> None:
        self.base = config.import_.wayback_url.rstrip("/")
        self.deadline = float(config.import_.timeout)
        self.pause = float(config.import_.pause)
        self.max_bytes = config.source.max_bytes
        self.session = guard.session()
        self.session.headers["User-Agent"] = config.source.user_agent
        self._last_request = 0.0

    def close(self) -> None:
        self.session.close()

    def _get(self, url: str) -> Fetched:
        """GET within import.timeout: the headers within it (requests' timeout), the body by
        the time it runs out (each read cut to what is left), so no request outlives twice
        import.timeout."""
        wait = self._last_request + self.pause - time.monotonic()
        if wait > 0:  # politeness: one request at a time, a pause between
            time.sleep(wait)
        until = time.monotonic() + self.deadline
        too_slow = ImportInterrupted(f"{url} took over import.timeout ({self.deadline:g}s)")
        try:
            with self.session.get(url, stream=True, timeout=self.deadline) as response:
                body = read_bounded(
                    response,
                    self.max_bytes,
                    until,
                    over_cap=FetchError(f"{url} sent more than the {self.max_bytes:,} byte cap"),
                    too_slow=lambda _: too_slow,
                )
                status = response.status_code
                headers = response.headers
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if time.monotonic() >= until:  # a read cut short when import.timeout ran out
                raise too_slow from None
            raise ImportInterrupted(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
        finally:
            self._last_request = time.monotonic()
        if status >= 500 or status == 429:  # the archive is busy: stop, resume later
            raise ImportInterrupted(f"HTTP {status} from {url}")
        if status >= 400:
            raise FetchError(f"HTTP {status} from {url}", status)
        return Fetched(url, status, body, headers.get("ETag"),
                       headers.get("Last-Modified"), headers.get("Content-Type", ""))  # fmt: skip

    def captures(self, url: str, since: str | None, until: str | None) -> list[Capture]:
        query = {"url": url, "output": "json", "filter": "statuscode:200"}
        if since:
            query["from"] = since.replace("-", "")
        if until:
            query["to"] = until.replace("-", "") + "235959"
        listing = self._get(f"{self.base}/cdx/search/cdx?{urlencode(query)}")
        captures = []
        for stamp, raw in self._rows(listing):
            at = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
            captures.append(Capture(at, raw, lambda raw=raw: self._get(raw)))
        return captures

    def _rows(self, listing: Fetched) -> Iterator[tuple[str, str]]:
        try:
            rows = json.loads(listing.body or b"[]")
            header, *captures = rows or [list(_CDX_FIELDS)]
            column = {name: header.index(name) for name in _CDX_FIELDS}
        except (ValueError, TypeError, AttributeError):
            raise ImportRefused(f"{listing.url}: not a CDX listing in JSON") from None
        seen: set[str] = set()
        for row in captures:
            stamp, original = row[column["timestamp"]], row[column["original"]]
            if stamp in seen or not re.fullmatch(r"\d{14}", stamp):
                continue
            seen.add(stamp)
            yield stamp, f"{self.base}/web/{stamp}id_/{original}"


# --- polling the past ---------------------------------------------------------------------


def import_captures(
    config: Config, store: Store, captures: Sequence[Capture], origin: Origin
) -> ImportReport:
    """Poll each capture at its own time, oldest first; refuse any older than the latest poll."""
    report = ImportReport(origin)
    done = store.polls.polled_urls(origin)
    todo = sorted((c for c in captures if (c.url, c.at_iso) not in done), key=lambda c: c.at)
    report.skipped = len(captures) - len(todo)
    latest = (store.polls.last() or {}).get("started_at")
    previous = None
    for capture in todo:
        if latest and capture.at_iso <= latest:
            raise ImportRefused(
                f"{capture.url} is from {capture.at_iso}, not after the latest poll ({latest}): "
                "ringwatch imports into an empty database or after its latest poll only "
                "(import older history into a fresh state directory, or use --from)"
            )
        if capture.at_iso == previous:
            raise ImportRefused(f"{capture.url}: a second document for {capture.at_iso}")
        previous = capture.at_iso
    env = make_environment(config.templates_path)
    committed = changed = False
    try:
        for capture in todo:
            # No channels: history queues no alert, not even a maintainer warning.
            poller = Poller(
                config,
                store,
                [],
                env=env,
                fetcher=lambda _source, _validators, capture=capture: capture.load(),
                now=lambda at=capture.at_iso: at,
                origin=origin,
            )
            result = poller.run()
            committed, changed = committed or result.committed, changed or bool(result.changes)
            report.outcomes[result.outcome] += 1
            report.changes += sum(1 for c in result.changes if c.kind != ChangeKind.BASELINE)
            if result.outcome in BAD_OUTCOMES:
                report.failures.append(f"{capture.at_iso} {capture.url}: {result.summary}")
            log.info("%s %s: %s", capture.at_iso, capture.url, result.summary)
    finally:  # once for the whole import, and for what an interrupted one kept
        if committed:
            publish_after_poll(config, store, env, changed=changed)
    return report
