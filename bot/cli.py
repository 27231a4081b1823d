"""The `ringwatch` command line. Heavy imports happen inside commands, so --help is instant.

Exit codes: bot.models.ExitCode (the README's table documents them).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot.models import GOOD_OUTCOMES, ChangeKind, ExitCode  # light: the vocabulary only

if TYPE_CHECKING:
    from bot.config import Config
    from bot.store import Store


class CommandFailed(click.ClickException):
    """Ends a command with one line on stderr and the exit code that says what happened."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"ringwatch: {self.format_message()}", err=True)


def _closed_with_command(store: Store) -> Store:
    """The store, closed when the command ends, however it ends (as sqlite-utils does)."""
    click.get_current_context().call_on_close(store.close)
    return store


def with_config(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --config to a command and hand it a validated Config (errors exit 2, no traceback)."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="RINGWATCH_CONFIG",
        default=None,
        help="Config file (default ./config.toml; env RINGWATCH_CONFIG).",
    )
    @functools.wraps(command)
    def wrapper(config_path: Path | None, **kwargs: Any) -> Any:
        from bot.channels import configure
        from bot.config import ConfigError, load_config
        from bot.logs import setup_logging

        try:
            config = configure(load_config(config_path))
        except ConfigError as exc:
            raise CommandFailed(str(exc)) from None
        setup_logging(config.bot.log_level)
        with _database_problems(config.db_path):
            return command(config, **kwargs)

    return wrapper


@contextmanager
def _database_problems(path: Path) -> Iterator[None]:
    """A database that cannot be used ends the command with one line saying what to do:
    exit 2 when it needs a person (corrupt, read-only), 3 when it may pass (busy, disk full).
    Every write is one transaction, so nothing was half-written."""
    import sqlite3

    from bot.store.schema import database_problem

    try:
        yield
    except sqlite3.Error as exc:
        problem = database_problem(path, exc)
        if problem is None:
            raise
        raise CommandFailed(
            str(problem), ExitCode.TRANSIENT if problem.transient else ExitCode.USAGE
        ) from None


def _channels(config: Config) -> list[Any]:
    from bot.channels import enabled_channels

    problems = []
    channels = enabled_channels(config)
    for channel in channels:
        problems += channel.problems()
    if problems:
        raise CommandFailed("; ".join(problems))
    return channels


def _heartbeat(config: Config) -> Any:
    """The configured heartbeat (None: none), or exit 2 when its URL is not in the env."""
    from bot.config import ConfigError
    from bot.heartbeat import Heartbeat

    try:
        return Heartbeat.from_config(config)
    except ConfigError as exc:
        raise CommandFailed(str(exc)) from None


def _heartbeat_problems(config: Config) -> list[str]:
    try:
        _heartbeat(config)
    except CommandFailed as exc:
        return [exc.format_message()]
    return []


@contextmanager
def _locked(config: Config) -> Iterator[None]:
    """Hold the state dir's lock, or exit 5 if another ringwatch has it (2 if the state
    dir cannot be created or written)."""
    from bot.lock import AlreadyRunning, state_lock

    with ExitStack() as stack:
        try:
            stack.enter_context(state_lock(config.state_dir))
        except AlreadyRunning as exc:
            raise CommandFailed(str(exc), ExitCode.LOCKED) from None
        except OSError as exc:
            _state_dir_unusable(config.state_dir, exc)
        yield


def _state_dir_unusable(directory: Path, exc: OSError) -> None:
    import errno

    if exc.errno == errno.ENOSPC:  # passes once space is freed: transient, like a full database
        raise CommandFailed(
            f"cannot use the state directory {directory}: its disk is full; free some space, "
            "then try again",
            ExitCode.TRANSIENT,
        )
    raise CommandFailed(f"cannot use the state directory {directory}: {exc.strerror or exc}")


def _make_state_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _state_dir_unusable(directory, exc)


def _existing_store(config: Config) -> Store:
    """The database, read-only, at the schema this ringwatch reads; without one, exit 2
    saying where it was looked for and how to make one (never an empty answer)."""
    from bot.store import Store
    from bot.store.schema import SCHEMA_VERSION

    path = config.db_path
    if not path.is_file():
        raise CommandFailed(
            f"no database at {path}: `ringwatch poll` creates it (for sample data: "
            "`ringwatch demo --state-dir demo-state`, then --config demo-state/config.toml)"
        )
    store = Store.open(path, readonly=True)
    if store.schema_version < SCHEMA_VERSION:  # written by an older ringwatch: upgrade once
        store.close()
        Store.open(path).close()
        store = Store.open(path, readonly=True)
    _closed_with_command(store)
    return store


def _dry_run_store(config: Config) -> Store:
    """What a dry run reads: the database, or before the first poll an empty one in memory
    (a dry run writes nothing, not even an empty file)."""
    from bot.store import Store

    if not config.db_path.is_file():
        return Store.empty()
    return Store.open(config.db_path, readonly=True)


def _deliver(config: Config, store: Any, channels: list[Any]) -> str:
    import asyncio

    from bot.deliver import deliver_pending

    report = asyncio.run(
        deliver_pending(store, channels, alerts=config.alerts, templates=config.templates_path)
    )
    return report.summary()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ringwatch")
def cli() -> None:
    """Watch Amazon Ring's map of police partnerships and alert on every change."""


@cli.command()
@with_config
@click.option(
    "--dry-run", is_flag=True, help="Show what would be recorded and sent; write nothing."
)
@click.option(
    "--force",
    is_flag=True,
    help="Believe this fetch even if too many agencies are missing, renamed or changed.",
)
def poll(config: Config, dry_run: bool, force: bool) -> None:
    """One cycle: fetch, diff, record, deliver; print a one-line summary.

    \b
    Example: ringwatch poll --dry-run
    """
    from bot.poll import run_poll
    from bot.publish import publish_after_poll
    from bot.store import Store

    channels = _channels(config)
    if dry_run:
        store = _dry_run_store(config)
        try:
            result = run_poll(config, store, channels, dry_run=True, force=force)
        finally:
            store.close()
        for message in result.messages:
            click.echo(f"--- would send to {message.channel}:{message.recipient}")
            click.echo(message.text)
        click.echo(f"dry run, nothing written: {result.summary}")
        click.get_current_context().exit(result.exit_code)
    heartbeat = _heartbeat(config)
    with _locked(config):
        store = Store.open(config.db_path, busy_timeout=config.bot.busy_timeout)
        try:
            store.outbox.release_stale()
            result = run_poll(config, store, channels, force=force)
            if result.committed:
                publish_after_poll(config, store, changed=bool(result.changes))
            delivered = _deliver(config, store, channels)
        finally:
            store.close()
        if heartbeat is not None:  # after the alerts, which matter more
            heartbeat.ping(result.outcome in GOOD_OUTCOMES)
    click.echo(f"{result.summary}; delivered: {delivered}")
    click.get_current_context().exit(result.exit_code)


@cli.command()
@with_config
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    default=None,
    help="Days to keep (default: bot.retention from the config).",
)
def prune(config: Config, keep: int | None) -> None:
    """Remove sent messages and polls nothing refers to, older than the retention; the
    change log stays. Then give the freed space back to the disk.

    \b
    Example: ringwatch prune --keep 30
    """
    from bot.cards import prune_cards
    from bot.store import Store
    from bot.store.times import prune_before

    seconds = config.bot.retention if keep is None else keep * 86400
    if keep is None and not seconds:
        click.echo("nothing pruned: bot.retention is 0 (keep everything); use --keep DAYS")
        return
    with _locked(config):
        store = Store.open(config.db_path, busy_timeout=config.bot.busy_timeout)
        try:
            before = prune_before(seconds)
            pruned = store.retention.prune(before)
            cards = prune_cards(store, config.state_dir)
        finally:
            store.close()
    messages = f"{pruned.messages:,} sent message{'' if pruned.messages == 1 else 's'}"
    polls = f"{pruned.polls:,} poll{'' if pruned.polls == 1 else 's'}"
    removed_cards = f" (and {cards:,} map card{'' if cards == 1 else 's'})" if cards else ""
    click.echo(
        f"pruned {messages} and {polls} from before {before}{removed_cards}; "
        f"database {pruned.size_before / 1e6:.1f} MB -> {pruned.size_after / 1e6:.1f} MB"
    )


@cli.command()
@with_config
def run(config: Config) -> None:
    """Poll on the configured interval and deliver, until SIGINT/SIGTERM.

    \b
    Example: ringwatch run --config /etc/ringwatch/config.toml
    """
    import asyncio

    from bot.config import ConfigError

    channels = _channels(config)
    _heartbeat(config)
    with _locked(config):
        try:
            code = asyncio.run(_run(config, channels))
        except ConfigError as exc:  # metrics.listen cannot be listened on
            raise CommandFailed(str(exc)) from None
    click.get_current_context().exit(code)


async def _run(config: Config, channels: list[Any]) -> int:
    from bot.scheduler import Runner

    runner = Runner(config, channels)
    await runner.run()
    return runner.exit_code


@cli.command()
@with_config
@click.option(
    "--retry-failed",
    is_flag=True,
    help="First put failed messages back in the queue (those given up after an outage).",
)
@click.option(
    "--channel",
    "channel_name",
    metavar="NAME",
    help="With --retry-failed: only this channel's messages (telegram, x, mastodon, …).",
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="With --retry-failed: only messages queued on or after this UTC date.",
)
def deliver(
    config: Config, retry_failed: bool, channel_name: str | None, since: datetime | None
) -> None:
    """Send whatever is due in the outbox, then exit.

    \b
    Example: ringwatch deliver --retry-failed --channel telegram --since 2026-11-20
    """
    from bot.channels import registry
    from bot.store import Store

    if (channel_name or since) and not retry_failed:
        raise CommandFailed("--channel and --since only apply to --retry-failed")
    if channel_name is not None and channel_name not in registry():
        raise CommandFailed(
            f"--channel: no channel {channel_name!r} (known: {', '.join(registry())})"
        )
    channels = _channels(config)
    with _locked(config):
        store = Store.open(config.db_path, busy_timeout=config.bot.busy_timeout)
        try:
            store.outbox.release_stale()
            if retry_failed:
                since_text = since.strftime("%Y-%m-%dT%H:%M:%S") if since else None
                requeued = store.outbox.requeue_failed(channel_name, since_text)
                click.echo(f"{requeued} failed messages queued again")
            click.echo(_deliver(config, store, channels))
        finally:
            store.close()


def _iso_date(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2020-05-25") from None


_BY_OPTION = click.option(
    "--by",
    type=click.Choice(["detected", "active-date"]),
    default="detected",
    show_default=True,
    help="Date the filter applies to: when ringwatch saw a change, or the source's Active Date.",
)


def _state_codes(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    from bot.normalise import state_code

    codes = []
    for value in values:
        code = state_code(value)
        if not code:
            raise click.BadParameter(f"{value!r} is not a US state (MN or Minnesota)")
        codes.append(code)
    return tuple(codes)


_STATES_OPTION = click.option(
    "--state",
    "states",
    multiple=True,
    callback=_state_codes,
    help="Only this state, e.g. MN or Minnesota (repeatable).",
)


def _radius(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from bot.places import PlaceError, parse_radius

    try:
        return None if value is None else parse_radius(value)
    except PlaceError as exc:
        raise click.BadParameter(str(exc)) from None


def _counties(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple:
    from bot.places import PlaceError, parse_county

    try:
        return tuple(parse_county(value) for value in values)
    except PlaceError as exc:
        raise click.BadParameter(str(exc)) from None


def _point(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    from bot.places import PlaceError, parse_point

    try:
        return None if value is None else parse_point(value)
    except PlaceError as exc:
        raise click.BadParameter(str(exc)) from None


_RADIUS_OPTION = click.option(
    "--radius",
    callback=_radius,
    help='With --near: how far, e.g. 10, 10mi, "25 miles", 40km (default 25 miles, at most 250).',
)


def _area_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--near, --radius and --county (repeatable): changes of agencies in those places."""
    for option in reversed((
        click.option("--near", callback=_point,
                     help="Only agencies near this ZIP code or LAT,LON (see --radius)."),
        _RADIUS_OPTION,
        click.option("--county", "counties", multiple=True, callback=_counties,
                     help='Only this county, e.g. "Hennepin, MN" (repeatable).'),
    )):  # fmt: skip
        command = option(command)
    return command


def _area(near: Any, radius: float | None, counties: tuple) -> Any:
    """The filter --near, --radius and --county ask for (states stay --state's)."""
    from dataclasses import replace

    from bot.areas import DEFAULT_RADIUS_MILES, Filter

    if radius is not None and near is None:
        raise click.BadParameter("--radius goes with --near ZIP|LAT,LON", param_hint="--radius")
    places = (replace(near, radius_miles=radius or DEFAULT_RADIUS_MILES),) if near else ()
    return Filter(counties=frozenset(counties), places=places)


@cli.command()
@with_config
@click.option(
    "--since", callback=_iso_date, help="Only changes on or after this date (YYYY-MM-DD)."
)
@click.option("--until", callback=_iso_date, help="Only changes on or before this date.")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice([kind.value for kind in ChangeKind]),
    help="Only this kind of change (repeatable).",
)
@_STATES_OPTION
@_area_options
@_BY_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Only the most recent N changes (N at least 1; default: all).",
)
def changes(
    config: Config,
    since: str | None,
    until: str | None,
    kinds: tuple[str, ...],
    states: tuple[str, ...],
    near: Any,
    radius: float | None,
    counties: tuple,
    by: str,
    fmt: str,
    limit: int | None,
) -> None:
    """List the change log.

    \b
    Example: ringwatch changes --since 2020-05-25 --state MN --limit 20
    """
    area = _area(near, radius, counties)
    from bot.queries import ChangeFilter, query_changes

    if by == "active-date" and set(kinds) - {ChangeKind.ADDED, ChangeKind.BASELINE}:
        raise click.BadParameter(
            "--by active-date lists additions by the source's Active Date: use it with "
            "--kind added (or no --kind)",
            param_hint="--by",
        )
    store = _existing_store(config)
    chosen = tuple(ChangeKind(kind) for kind in kinds)
    rows = query_changes(
        store.db, ChangeFilter(since, until, chosen, states, by, limit, churn=True, area=area)
    )
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        from bot.export import CHANGE_COLUMNS, write_csv

        write_csv(rows, CHANGE_COLUMNS, sys.stdout)
    else:
        from bot.reports import changes_text

        click.echo(changes_text(rows))


@cli.command()
@with_config
def status(config: Config) -> None:
    """Last polls, failures in a row, pending and failed deliveries.

    \b
    Example: ringwatch status --config demo-state/config.toml
    """
    from bot.channels import enabled_channels
    from bot.logs import redact
    from bot.queries import read_status
    from bot.reports import status_lines

    store = _existing_store(config)
    channels = enabled_channels(config)  # loaded first: their secrets are redacted below
    # Redacted: failures stored before redaction covered every error, and channel lines.
    for line in status_lines(read_status(store, polls=5), config.db_path):
        click.echo(redact(line))
    for channel in channels:
        for line in channel.status_lines(store):
            click.echo(redact(f"{channel.name}: {line}"))
    import time

    from bot.health import check_health, monitoring_lines

    click.echo(f"health now: {check_health(config, store, time.time()).line()}")
    for line in monitoring_lines(config):
        click.echo(line)


@cli.command()
@with_config
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def health(config: Config, fmt: str) -> None:
    """Exit 0 when the last good poll is recent and no message waits too long, else 1
    naming each reason (for Docker's HEALTHCHECK, a systemd timer, a monitor).

    \b
    Example: ringwatch health --format json
    """
    import time

    from bot.health import check_health

    verdict = check_health(config, _existing_store(config), time.time())
    if fmt == "json":
        click.echo(json.dumps(verdict.as_json(), indent=2))
    else:
        click.echo(verdict.line())
    if not verdict.healthy:
        click.get_current_context().exit(ExitCode.CHECK_FAILED)


@cli.command("check-config")
@with_config
def check_config(config: Config) -> None:
    """Validate the config, say what is enabled and which secrets are missing.

    \b
    Example: ringwatch check-config --config config.toml
    """
    from bot.channels import enabled_channels
    from bot.config import describe

    channels = enabled_channels(config)
    for line in describe(config, [channel.name for channel in channels]):
        click.echo(line)
    from bot.health import monitoring_lines

    for line in monitoring_lines(config):
        click.echo(line)
    problems = _heartbeat_problems(config)
    for channel in channels:
        missing = channel.problems()
        secrets = ", ".join(channel.secrets) or "none needed"
        verdict = "; ".join(missing) if missing else "ok"
        click.echo(f"  {channel.name}: {len(channel.style().templates)} template folders, "
                   f"secrets: {secrets}: {verdict}")  # fmt: skip
        problems += missing
    if problems:
        raise CommandFailed("; ".join(problems))
    click.echo("config ok")


@cli.command("send-test")
@with_config
@click.argument("channel_name", metavar="CHANNEL")
def send_test(config: Config, channel_name: str) -> None:
    """Send one test message through an enabled channel and print what the platform
    answered: exit 0 when it arrived, 3 when it did not.

    It goes to the channel's configured recipients (its maintainers when it has any),
    never to subscribers, and not through the outbox.

    \b
    Example: ringwatch send-test mastodon
    """
    import asyncio

    from bot.channels import enabled_names, load_channel, registry
    from bot.deliver import send_test as send_test_message
    from bot.store import Store
    from bot.store.times import utc_now

    if channel_name not in registry():
        raise CommandFailed(f"no channel {channel_name!r} (known: {', '.join(registry())})")
    if channel_name not in enabled_names(config):
        raise CommandFailed(
            f"{channel_name} is not enabled: set enabled = true in [{channel_name}] "
            f"of {config.path}"
        )
    channel = load_channel(channel_name, config)
    if channel.problems():
        raise CommandFailed("; ".join(channel.problems()))
    _make_state_dir(config.state_dir)
    store = Store.open(config.db_path)
    try:
        results = asyncio.run(send_test_message(store, channel, config.alerts, utc_now()))
    finally:
        store.close()
    if not results:
        raise CommandFailed(
            f"{channel_name} has no configured recipient to send a test message to",
            ExitCode.TRANSIENT,
        )
    for result in results:
        click.echo(f"{channel_name}:{result.recipient}: {result.answer}")
    if not all(result.ok for result in results):
        click.get_current_context().exit(ExitCode.TRANSIENT)


@cli.command("enable-webhook")
@with_config
@click.argument("target")
def enable_webhook(config: Config, target: str) -> None:
    """Send to a webhook URL again after it answered 410 Gone and was switched off.

    TARGET is the URL, or for a target whose URL is in a variable (url_env) its name,
    as status and the warning show it: route2:NEWSROOM_HOOK. Messages skipped while it
    was off are not sent; the next change is. Should it answer 410 again, it is switched
    off again, with a new warning.

    \b
    Example: ringwatch enable-webhook https://example.org/ringwatch-hook
    """
    from bot.channels import channel_settings
    from bot.channels.webhook import CHANNEL, target_names
    from bot.logs import redact
    from bot.store import Store

    if target not in [name for name, _ in target_names(channel_settings(config, CHANNEL))]:
        # redacted: the secret URL of a url_env target is not its name
        raise CommandFailed(
            f"{redact(target)} is not one of webhook.urls or webhook.targets in {config.path}"
        )
    _existing_store(config).close()
    store = _closed_with_command(Store.open(config.db_path, busy_timeout=config.bot.busy_timeout))
    if store.disabled_webhooks.enable(target):
        click.echo(f"webhook: {target} is on again")
    else:
        click.echo(f"webhook: {target} was not switched off; nothing to do")


@cli.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the demo database here (default: a throwaway temporary directory).",
)
def demo(state_dir: Path | None) -> None:
    """Run the whole pipeline offline on the bundled sample snapshots.

    \b
    Example: ringwatch demo --state-dir demo-state
    """
    from bot.demo import run_demo
    from bot.logs import setup_logging

    setup_logging("WARNING")
    if state_dir is not None:
        _make_state_dir(state_dir)
    run_demo(state_dir)


# --- reports, charts, exports, summary (bot/reports.py, charts.py, export.py, summary.py) ---


@cli.command()
@with_config
@click.option("--since", callback=_iso_date, help="First day, YYYY-MM-DD (inclusive).")
@click.option("--until", callback=_iso_date, help="Last day, YYYY-MM-DD (inclusive).")
@_STATES_OPTION
@_area_options
@_BY_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "json", "html"]),
    default="text",
    show_default=True,
)
def report(
    config: Config,
    since: str | None,
    until: str | None,
    states: tuple[str, ...],
    near: Any,
    radius: float | None,
    counties: tuple,
    by: str,
    fmt: str,
) -> None:
    """How many partnerships began, ended or were renamed in a period, and where.

    \b
    Example: ringwatch report --since 2020-05-25 --by active-date --format html > report.html
    """
    from bot.render import make_environment
    from bot.reports import build_report, render_report

    store = _existing_store(config)
    area = _area(near, radius, counties)
    result = build_report(store.db, since=since, until=until, states=states, by=by, area=area)
    click.echo(render_report(make_environment(config.templates_path), result, fmt), nl=False)


@cli.command()
@with_config
@click.argument("where", metavar="ZIP|LAT,LON", callback=_point)
@_RADIUS_OPTION
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def near(config: Config, where: Any, radius: float | None, fmt: str) -> None:
    """The agencies listed now near a ZIP code or a point, nearest first.

    \b
    Example: ringwatch near 55427 --radius 10mi
    """
    from dataclasses import replace

    from bot.areas import DEFAULT_RADIUS_MILES, distance_text
    from bot.queries import agencies_near

    place = replace(where, radius_miles=radius or DEFAULT_RADIUS_MILES)
    rows = agencies_near(_existing_store(config).db, place)
    if fmt == "json":
        shown = [{**row, "approximate": bool(row["approximate"]),
                  "miles": round(row["miles"], 1)} for row in rows]  # fmt: skip
        click.echo(json.dumps(shown, indent=2, ensure_ascii=False))
        return
    for row in rows:
        where_text = ", ".join(p for p in (row["city"], row["state"], row["county"]) if p)
        since = f", since {row['active_date']}" if row["active_date"] else ""
        click.echo(f"{distance_text(row['miles']):>12}  {row['name']} ({where_text}){since}")
    n = len(rows)
    click.echo(f"{n} agenc{'y' if n == 1 else 'ies'} {place}")


@cli.command()
@with_config
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def stats(config: Config, fmt: str) -> None:
    """Totals now: by state, agency type, year and month joined, video requests.

    \b
    Example: ringwatch stats --format json
    """
    from bot.reports import build_stats, stats_dict, stats_text

    result = build_stats(_existing_store(config).db)
    if fmt == "json":
        click.echo(json.dumps(stats_dict(result), indent=2, ensure_ascii=False))
    else:
        click.echo(stats_text(result))


@cli.command()
@with_config
@click.argument("kind", type=click.Choice(["growth", "monthly", "states"]))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write: PNG, or SVG when the name ends in .svg.",
)
def chart(config: Config, kind: str, out: Path) -> None:
    """Draw a chart as PNG or SVG: growth over time, new per month, or states ranked.

    \b
    Example: ringwatch chart growth --out growth.png
    """
    from bot.charts import chart as draw
    from bot.charts import figure_format, save_figure

    db = _existing_store(config).db
    try:
        path = save_figure(draw(db, kind), out, figure_format(out))
    except OSError as exc:
        raise CommandFailed(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {path}")


@cli.command()
@with_config
@click.argument("change_id", type=int)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PNG file to write (default: the PNG to stdout).",
)
@click.option("--alt", is_flag=True, help="Print the card's alt text instead of the picture.")
def card(config: Config, change_id: int, out: Path | None, alt: bool) -> None:
    """The map card an alert of a change carries (1200 x 675 PNG), or its alt text.

    \b
    Example:
      ringwatch card 136 --out crystal.png
      ringwatch card 136 --alt
    """
    from bot.cards import change_card
    from bot.export import write_atomically

    db = _existing_store(config).db
    made = change_card(db, config.state_dir, change_id, config.site.since)
    if made is None:
        raise CommandFailed(f"no change #{change_id} (ringwatch changes --format json lists ids)")
    png, alt_text = made
    if alt:
        click.echo(alt_text)
    elif out is None:
        sys.stdout.buffer.write(png)
        sys.stdout.buffer.flush()
    else:
        try:
            write_atomically(out, png)
        except OSError as exc:
            raise CommandFailed(f"cannot write {out}: {exc.strerror or exc}") from None
        click.echo(f"wrote {out} ({len(png):,} bytes)")


@cli.command()
@with_config
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json", "geojson"]), default="csv",
    show_default=True,
)  # fmt: skip
@click.option(
    "--what",
    type=click.Choice(["agencies", "changes"]),
    default="agencies",
    show_default=True,
    help="The agencies listed now, or the change log.",
)
@_STATES_OPTION
@click.option(
    "--since",
    callback=_iso_date,
    help="Only changes detected, or agencies first seen by ringwatch, on or after this date.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout)."
)
def export(
    config: Config,
    fmt: str,
    what: str,
    states: tuple[str, ...],
    since: str | None,
    out: Path | None,
) -> None:
    """Export the current list or the change log as CSV, JSON or GeoJSON.

    \b
    Example: ringwatch export --what changes --format geojson --since 2020-05-25
    """
    from bot.export import agency_rows, change_rows, write_atomically, write_export

    db = _existing_store(config).db
    rows = (agency_rows if what == "agencies" else change_rows)(db, states, since)
    if out is None:
        write_export(rows, what, fmt, sys.stdout)
        return
    import io

    buffer = io.StringIO()
    write_export(rows, what, fmt, buffer)
    try:
        write_atomically(out, buffer.getvalue().encode("utf-8"))
    except OSError as exc:
        raise CommandFailed(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {len(rows):,} {what} to {out}")


@cli.command()
@with_config
@click.option("--dry-run", is_flag=True, help="Print the summary; queue and write nothing.")
def summary(config: Config, dry_run: bool) -> None:
    """Queue the periodic summary (text and growth chart) for every channel now.

    \b
    Example: ringwatch summary --dry-run
    """
    from bot.lock import AlreadyRunning, state_lock
    from bot.store import Store
    from bot.summary import queue_summary

    channels = _channels(config)
    if not dry_run:
        _make_state_dir(config.state_dir)
    store = _dry_run_store(config) if dry_run else Store.open(config.db_path)
    try:
        result = queue_summary(config, store, channels, dry_run=dry_run)
        period = f"summary of {result.first_day}..{result.last_day}"
        if dry_run:
            for message in result.messages:
                click.echo(f"--- would send to {message.channel}:{message.recipient}")
                click.echo(message.text)
            click.echo(f"dry run, nothing written: {period}, {len(result.messages)} messages")
            return
        if not result.messages:
            click.echo(f"{period}: no channel has a recipient for alerts")
            return
        queued = (
            f"{result.queued} message{'' if result.queued == 1 else 's'} queued"
            if result.queued
            else "already queued"
        )
        chart_note = f"chart {result.attachment}" if result.attachment else "no chart"
        try:
            with state_lock(config.state_dir):
                delivered = _deliver(config, store, channels)
        except AlreadyRunning:
            delivered = "left to the running ringwatch"
        click.echo(f"{period}: {queued} ({chart_note}); delivered: {delivered}")
    finally:
        store.close()


# --- proof and history (bot/snapshots.py, evidence.py, verify.py, importer.py) -------------


@cli.command()
@with_config
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def snapshots(config: Config, fmt: str) -> None:
    """List every distinct document fetched: SHA-256, first and last seen, size, polls.

    \b
    Example:
      ringwatch snapshots --format json
    """
    from bot.reports import snapshots_text

    rows = _existing_store(config).polls.snapshots()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(snapshots_text(rows))


@cli.command()
@with_config
@click.argument("sha256")
def snapshot(config: Config, sha256: str) -> None:
    """Write a stored document's original bytes to stdout (SHA-256, or 8+ of its hex digits).

    \b
    Example:
      ringwatch snapshot 3f2a9c01 > map-2020-06-05.kml
    """
    from bot.snapshots import SnapshotError, SnapshotStore, check_prefix

    try:
        prefix = check_prefix(sha256)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SHA256") from None
    store = _existing_store(config)
    matches = store.polls.snapshots_starting(prefix)
    if len(matches) != 1:
        what = "no snapshot" if not matches else f"{len(matches)} snapshots"
        raise CommandFailed(
            f"{what} match {prefix} (ringwatch snapshots lists them; give more digits)"
        )
    try:
        body = SnapshotStore(config.snapshots_dir).read(matches[0])
    except SnapshotError as exc:
        raise CommandFailed(
            f"{exc} (ringwatch verify checks every snapshot)", ExitCode.CHECK_FAILED
        ) from None
    sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()


@cli.command()
@with_config
@click.argument("change_id", type=int)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def evidence(config: Config, change_id: int, fmt: str) -> None:
    """Why a change was recorded: its polls and the source's own record before and after.

    \b
    Example:
      ringwatch evidence 31 --format json
    """
    from bot.evidence import EvidenceError, evidence_json, evidence_text, gather_evidence
    from bot.snapshots import SnapshotError

    store = _existing_store(config)
    try:
        found = gather_evidence(store, config, change_id)
    except EvidenceError as exc:
        raise CommandFailed(str(exc)) from None
    except SnapshotError as exc:
        raise CommandFailed(
            f"{exc} (ringwatch verify checks every snapshot)", ExitCode.CHECK_FAILED
        ) from None
    if fmt == "json":
        click.echo(evidence_json(found))
    else:
        click.echo(evidence_text(found), nl=False)


@cli.command()
@with_config
def verify(config: Config) -> None:
    """Check every snapshot's hash, replay them all and compare with the change log (exit 1
    naming each difference).

    \b
    Example:
      ringwatch verify
    """
    from bot.verify import verify as run_verify

    result = run_verify(config, _existing_store(config))
    for note in result.notes:
        click.echo(f"NOTE: {note}")
    for difference in result.differences:
        click.echo(f"DIFFERENCE: {difference}")
    summary = f"{result.snapshots} snapshots, {result.changes} changes"
    if result.ok:
        click.echo(f"{summary} verified, 0 differences")
        return
    click.echo(f"{summary}: {len(result.differences)} differences", err=True)
    click.get_current_context().exit(ExitCode.CHECK_FAILED)


@cli.command("import")
@with_config
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--at",
    metavar="TIME",
    help="The time of the one FILE given (2020-06-05 or 2020-06-05T12:00:00Z).",
)
@click.option(
    "--git",
    "git_repo",
    metavar="REPO",
    type=click.Path(file_okay=False, path_type=Path),
    help="A git repository whose history of --path to import, commit by commit.",
)
@click.option(
    "--path", "git_path", metavar="FILE", help="With --git: the file inside the repository."
)
@click.option(
    "--wayback", "wayback_url", metavar="URL", help="Import the Internet Archive's captures of URL."
)
@click.option(
    "--from",
    "since",
    metavar="DATE",
    callback=_iso_date,
    help="With --wayback: captures on or after this date.",
)
@click.option(
    "--until", metavar="DATE", callback=_iso_date, help="With --wayback: captures up to this date."
)
def import_command(
    config: Config,
    files: tuple[Path, ...],
    at: str | None,
    git_repo: Path | None,
    git_path: str | None,
    wayback_url: str | None,
    since: str | None,
    until: str | None,
) -> None:
    """Poll past documents as if at their own time (files, git history, Wayback captures).

    History is imported into an empty database or after its latest poll; guards apply as
    for live polls; no alert is sent. An interrupted --wayback import resumes when run again.

    \b
    Examples:
      ringwatch import 2020-05-24.kml 2020-06-05T120000Z.kml
      ringwatch import map.kml --at 2020-06-05T12:00:00Z
      ringwatch import --git ../ring-map-scraper --path map.kml
      ringwatch import --wayback 'https://www.google.com/maps/d/kml?mid=…' --from 2020-01-01
    """
    from bot.importer import (
        ImportInterrupted,
        ImportRefused,
        Wayback,
        file_captures,
        git_captures,
        import_captures,
    )
    from bot.models import Origin
    from bot.source import SourceError
    from bot.store import Store

    modes = [bool(files), git_repo is not None, wayback_url is not None]
    if sum(modes) != 1:
        raise click.UsageError("give FILE..., or --git REPO --path FILE, or --wayback URL")
    if (git_repo is None) != (git_path is None):
        raise click.UsageError("--git and --path go together")
    if (since or until) and wayback_url is None:
        raise click.UsageError("--from and --until select Wayback captures: use with --wayback")
    if at is not None and not files:
        raise click.UsageError("--at gives the time of one FILE")
    _make_state_dir(config.state_dir)
    wayback = Wayback(config) if wayback_url else None
    with _locked(config):
        store = Store.open(config.db_path)
        try:
            if wayback is not None and wayback_url is not None:
                origin, captures = Origin.WAYBACK, wayback.captures(wayback_url, since, until)
            elif git_repo is not None and git_path is not None:
                origin, captures = Origin.GIT, git_captures(git_repo, git_path)
            else:
                origin, captures = Origin.FILE, file_captures(files, at)
            report = import_captures(config, store, captures, origin)
        except ImportRefused as exc:
            raise CommandFailed(str(exc)) from None
        except (ImportInterrupted, SourceError) as exc:
            raise CommandFailed(
                f"{exc}; what was imported is kept: run the same command again to resume",
                ExitCode.TRANSIENT,
            ) from None
        finally:
            store.close()
            if wayback is not None:
                wayback.close()
    for failure in report.failures:
        click.echo(f"not believed: {failure}")
    click.echo(report.summary())


@cli.command(context_settings={"ignore_unknown_options": True})
@with_config
@click.option(
    "--print", "print_only", is_flag=True, help="Print the datasette command instead of running it."
)
@click.argument("datasette_args", nargs=-1, type=click.UNPROCESSED)
def datasette(config: Config, print_only: bool, datasette_args: tuple[str, ...]) -> None:
    """Browse the database in Datasette with ringwatch's metadata and canned queries.

    Subscribers and deliveries are not served, nor is arbitrary SQL (see the README).
    Further arguments go to `datasette serve`.

    \b
    Example: ringwatch datasette --config demo-state/config.toml --port 8001
    """
    import importlib.util
    import os
    import shlex

    from bot.datasette import write_metadata

    _existing_store(config).close()
    metadata = write_metadata(config.db_path)
    arguments = ["serve", str(config.db_path), "--metadata", str(metadata), *datasette_args]
    if print_only:
        click.echo(shlex.join(["datasette", *arguments]))
        return
    if importlib.util.find_spec("datasette") is None:
        raise CommandFailed("Datasette is not installed: pip install 'ringwatch[datasette]'")
    # Replace this process, so Ctrl-C and signals reach Datasette directly.
    os.execv(sys.executable, [sys.executable, "-m", "datasette", *arguments])


@cli.command()
@with_config
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help='Folder to build the site in (default: site.out in the config, "site").',
)
def site(config: Config, out: Path | None) -> None:
    """Build the static public site (map, changes, state and agency pages, evidence, data)
    now.

    \b
    Example:
      ringwatch site --out public && rsync -a --delete public/ host:/var/www/ring/
    """
    from bot.site import SiteError, build_site

    try:
        result = build_site(config, _existing_store(config).db, out)
    except SiteError as exc:
        raise CommandFailed(str(exc)) from None
    click.echo(
        f"built {result.pages:,} pages ({result.agencies:,} agencies, {result.changes:,} "
        f"changes) in {result.path}"
    )


def main() -> None:
    cli(prog_name="ringwatch")
