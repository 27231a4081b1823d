"""The `ringwatch` command line. Heavy imports happen inside commands, so --help is instant.

Exit codes: 0 success; 2 usage or configuration error; 3 fetch or parse failed;
4 a guard tripped (the fetch was not believed); 5 another ringwatch holds the state dir.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from bot.config import Config

EXIT_USAGE = 2
EXIT_LOCKED = 5


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    click.echo(f"ringwatch: {message}", err=True)
    sys.exit(code)


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
        from bot.config import ConfigError, load_config
        from bot.logs import setup_logging

        try:
            config = load_config(config_path)
        except ConfigError as exc:
            _fail(str(exc))
        setup_logging(config.bot.log_level)
        return command(config, **kwargs)

    return wrapper


def _channels(config: Config) -> list[Any]:
    from bot.channels import enabled_channels

    problems = []
    channels = enabled_channels(config)
    for channel in channels:
        problems += channel.problems()
    if problems:
        _fail("; ".join(problems))
    return channels


@contextmanager
def _locked(config: Config) -> Iterator[None]:
    """Hold the state dir's lock, or exit 5 if another ringwatch has it."""
    from bot.lock import AlreadyRunning, state_lock

    try:
        with state_lock(config.state_dir):
            yield
    except AlreadyRunning as exc:
        _fail(str(exc), EXIT_LOCKED)


def _deliver(config: Config, store: Any, channels: list[Any]) -> str:
    from bot.deliver import deliver_pending

    report = asyncio.run(deliver_pending(store, channels, max_attempts=config.alerts.max_attempts))
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
def poll(config: Config, dry_run: bool) -> None:
    """One cycle: fetch, diff, record, deliver; print a one-line summary."""
    from bot.poll import run_poll
    from bot.store import Store

    channels = _channels(config)
    if dry_run:
        store = Store.open(config.db_path, readonly=True)
        result = run_poll(config, store, channels, dry_run=True)
        for message in result.messages:
            click.echo(f"--- would send to {message.channel}:{message.recipient}")
            click.echo(message.text)
        click.echo(f"dry run, nothing written: {result.summary}")
        sys.exit(result.exit_code)
    with _locked(config):
        store = Store.open(config.db_path)
        try:
            store.outbox.release_stale()
            result = run_poll(config, store, channels)
            delivered = _deliver(config, store, channels)
        finally:
            store.close()
    click.echo(f"{result.summary}; delivered: {delivered}")
    sys.exit(result.exit_code)


@cli.command()
@with_config
def run(config: Config) -> None:
    """Poll on the configured interval and deliver, until SIGINT/SIGTERM."""
    channels = _channels(config)
    with _locked(config):
        asyncio.run(_run(config, channels))


async def _run(config: Config, channels: list[Any]) -> None:
    from bot.scheduler import Runner

    await Runner(config, channels).run()


@cli.command()
@with_config
def deliver(config: Config) -> None:
    """Send whatever is due in the outbox, then exit."""
    from bot.store import Store

    channels = _channels(config)
    with _locked(config):
        store = Store.open(config.db_path)
        try:
            store.outbox.release_stale()
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
    type=click.Choice(["added", "removed", "changed", "renamed", "baseline"]),
    help="Only this kind of change (repeatable).",
)
@click.option("--state", "states", multiple=True, help="Only this state, e.g. MN (repeatable).")
@click.option(
    "--by",
    type=click.Choice(["detected", "active-date"]),
    default="detected",
    show_default=True,
    help="Date the filter applies to: when ringwatch saw it, or the source's Active Date.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--limit", type=int, default=None, help="Only the most recent N changes.")
def changes(
    config: Config,
    since: str | None,
    until: str | None,
    kinds: tuple[str, ...],
    states: tuple[str, ...],
    by: str,
    fmt: str,
    limit: int | None,
) -> None:
    """List the change log."""
    from bot.queries import ChangeFilter, query_changes
    from bot.store import Store

    store = Store.open(config.db_path, readonly=True)
    rows = query_changes(store.db, ChangeFilter(since, until, kinds, states, by, limit))
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        columns = ["id", "detected_at", "kind", "key", "name", "city", "state", "active_date",
                   "fields", "before", "after"]  # fmt: skip
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                [json.dumps(row[c]) if isinstance(row[c], dict | list) else row[c] for c in columns]
            )
    else:
        _print_table(rows)


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        click.echo("no changes match")
        return
    for row in rows:
        detail = ""
        if row["kind"] == "renamed" and row["before"]:
            detail = f"  (was {row['before'].get('name')})"
        elif row["kind"] == "changed":
            detail = "  " + ", ".join(
                f"{f}: {row['before'].get(f)} → {row['after'].get(f)}" for f in row["fields"]
            )
        click.echo(
            f"{row['detected_at'][:16]:16}  {row['kind']:8}  {row['state'] or '--':2}  "
            f"{row['name']}{', ' + row['city'] if row['city'] else ''}"
            f"{'  [' + row['active_date'] + ']' if row['active_date'] else ''}{detail}"
        )
    click.echo(f"{len(rows)} changes")


@cli.command()
@with_config
def status(config: Config) -> None:
    """Last polls, failures in a row, pending and failed deliveries."""
    from bot.channels import enabled_channels
    from bot.store import Store

    store = Store.open(config.db_path, readonly=True)
    click.echo(f"database: {config.db_path}")
    click.echo(f"agencies tracked: {store.active_count():,}")
    streak = store.bad_streak()
    click.echo(f"failed or suspect polls in a row: {streak}" + ("  <-- WARNING" if streak else ""))
    click.echo("last polls:")
    for poll in store.recent_polls(5):
        detail = poll["error"] or (
            f"{poll['records'] or 0} listed, +{poll['added'] or 0} -{poll['removed'] or 0} "
            f"~{poll['renamed'] or 0} *{poll['changed'] or 0}"
        )
        click.echo(f"  {poll['started_at']}  {poll['outcome']:9}  {detail}")
    counts = store.outbox.counts()
    click.echo("deliveries:")
    if not counts:
        click.echo("  none yet")
    for channel, by_status in sorted(counts.items()):
        text = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
        click.echo(f"  {channel}: {text}")
    failed = list(
        store.db.query(
            "select channel, recipient, last_error from outbox where status = 'failed' "
            "order by id desc limit 3"
        )
    )
    for row in failed:
        click.echo(f"  last failure: {row['channel']}:{row['recipient']}: {row['last_error']}")
    for channel in enabled_channels(config):
        for line in channel.status_lines(store):
            click.echo(f"{channel.name}: {line}")


@cli.command("check-config")
@with_config
def check_config(config: Config) -> None:
    """Validate the config and say what is enabled."""
    from bot.channels import enabled_names

    channels = _channels(config)
    click.echo(f"config: {config.path}{'' if config.path.exists() else ' (not found: defaults)'}")
    click.echo(f"source: {config.source.url} ({config.source.format or 'format inferred'})")
    click.echo(f"state: {config.db_path}")
    click.echo(f"interval: every {config.bot.interval:g}s (jitter {config.bot.jitter:g}s)")
    click.echo(
        f"guard: removal after {config.guard.removal_confirmations} polls missing; a fetch "
        f"missing more than {config.guard.max_missing_share:.0%} of agencies is not believed"
    )
    click.echo(f"channels: {', '.join(enabled_names(config)) or 'none'}")
    for channel in channels:
        click.echo(f"  {channel.name}: {len(channel.style().templates)} template folders, ok")
    click.echo("config ok")


@cli.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the demo database here (default: a throwaway temporary directory).",
)
def demo(state_dir: Path | None) -> None:
    """Run the whole pipeline offline on the bundled sample snapshots."""
    from bot.demo import run_demo
    from bot.logs import setup_logging

    setup_logging("WARNING")
    run_demo(state_dir)


def main() -> None:
    cli(prog_name="ringwatch")
