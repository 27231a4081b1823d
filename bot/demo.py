"""`ringwatch demo`: the whole pipeline, offline, on the two bundled snapshots."""

from __future__ import annotations

import asyncio
import tempfile
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

import click

from bot.channels import load_channel
from bot.config import Config, GuardConfig, with_overrides
from bot.deliver import deliver_pending
from bot.models import ChangeKind
from bot.poll import run_poll
from bot.queries import ChangeFilter, query_changes
from bot.store import Store

DEMO_MAX_ADDED_SHARE = 0.25
STEPS = (
    ("baseline.kml", "First poll: record the baseline (no alert per agency)"),
    ("later.kml", "Weeks later: additions, a rename, a change; one agency missing once"),
    ("later.kml", "Same list again: the missing agency is confirmed as ended"),
)


def run_demo(state_dir: Path | None = None) -> None:
    keep = state_dir is not None
    with ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ringwatch-")))
        samples = stack.enter_context(resources.as_file(resources.files("bot") / "samples"))
        state_dir = state_dir.absolute()  # a relative one would nest: state/state/
        if (state_dir / "ringwatch.db").exists():
            raise click.UsageError(
                f"{state_dir} already holds a ringwatch database; the demo needs a new or "
                "empty directory (it must never mix sample data into real history)"
            )
        config = with_overrides(Config(path=state_dir / "config.toml"), "bot",
                                state_dir=str(state_dir))  # fmt: skip
        # Show every alert as a subscriber would get it, not one digest of the 29 additions.
        config = with_overrides(config, "alerts", digest_threshold=1000)
        # The samples add 29 agencies to 123 (24%) in one step: real weeks compressed into one
        # poll. The default guard holds such a fetch back as suspect; the demo says it is not.
        config = with_overrides(config, "guard", max_added_share=DEMO_MAX_ADDED_SHARE)
        click.echo(
            f"(demo setting: guard.max_added_share = {DEMO_MAX_ADDED_SHARE}, because the samples "
            f"add 29 agencies to 123 at once; the default {GuardConfig.max_added_share} would "
            "refuse that poll as suspect)"
        )
        channels = [load_channel("console", config)]
        for number, (sample, title) in enumerate(STEPS, 1):
            click.secho(f"\n== {number}. {title}  [{sample}]", bold=True)
            step = with_overrides(config, "source", url=str(samples / sample), format="kml")
            store = Store.open(step.db_path)
            try:
                result = run_poll(step, store, channels)
                asyncio.run(deliver_pending(store, channels))
                click.secho(f"-- {result.summary}", dim=True)
            finally:
                store.close()
        store = Store.open(config.db_path, readonly=True)
        since = query_changes(store.db, ChangeFilter(since="2020-05-25", kinds=[ChangeKind.ADDED],
                                                     by="active-date"))  # fmt: skip
        states = {row["state"] for row in since}
        click.secho("\n== The question the news story asked", bold=True)
        click.echo(
            f"{len(since)} partnerships with an Active Date on or after 2020-05-25, "
            f"in {len(states)} states (ringwatch changes --since 2020-05-25 --by active-date)"
        )
        if not keep:
            click.echo("\nThe demo database was temporary: run with --state-dir DIR to keep it.")
            return
        click.echo(f"\nchange log: {config.db_path}")
        if not config.path.exists():  # a config of the user's is never overwritten
            # The story's date heads the site and the map cards, as in the README's card.
            config.path.write_text(
                '[bot]\nstate_dir = "."\n\n[site]\nsince = "2020-05-25"\n', encoding="utf-8"
            )
            click.echo(f"explore it: ringwatch report --config {config.path}  (or stats, "
                       f"changes, export, chart, datasette)")  # fmt: skip
