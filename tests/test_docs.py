"""Docs that are true because they run: every shell example in README.md and docs/*.md that
starts with `ringwatch` runs against the demo database and exits as documented (0, or the
code of a `# exits N` comment on its line); and every command's --help shows an example."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from bot.cli import cli
from tests.support.cli import REPO, SAMPLES, cli_env

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Examples that cannot run offline in a test, by their exact text, and why. A key that no
# longer matches an example fails `test_every_skipped_example_still_exists`.
SKIPPED = {
    "ringwatch datasette --config demo-state/config.toml": "serves until stopped",
    "ringwatch datasette": "serves until stopped",
    "ringwatch import --git ../ring-map-scraper --path map.kml": "needs a git scraper's repository",
    "ringwatch site --out public && rsync -a --delete public/ you@host:/var/www/ring/": (
        "publishes to a remote host over ssh"
    ),
}

FENCE = re.compile(r"^```(\w*)\s*$")
EXPECTED_EXIT = re.compile(r"#\s*exits (\d+)")


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    command: str

    @property
    def expected_exit(self) -> int:
        match = EXPECTED_EXIT.search(self.command)
        return int(match.group(1)) if match else 0


def shell_examples() -> list[Example]:
    """The `ringwatch …` lines of ```sh and ```console blocks (`$ ` prompts and `\\`
    continuations understood), in page order."""
    examples = []
    for page in PAGES:
        language = None
        pending: tuple[int, str] | None = None
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            fence = FENCE.match(line)
            if fence:
                language = None if language is not None else fence.group(1)
                continue
            if language not in ("sh", "console"):
                continue
            text = line.strip().removeprefix("$ ")
            if pending:
                number, text = pending[0], pending[1] + " " + text
                pending = None
            if text.endswith("\\"):
                pending = (number, text[:-1].rstrip())
            elif text.startswith("ringwatch "):
                examples.append(Example(str(page.relative_to(REPO)), number, text))
    return examples


EXAMPLES = shell_examples()


@pytest.fixture(scope="session")
def demo_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ringwatch demo --state-dir DIR` once per session, and a config beside it whose
    source is the demo's last sample, so `poll` too runs offline."""
    directory = tmp_path_factory.mktemp("demo")
    state = directory / "demo-state"
    done = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--state-dir", str(state)],
        capture_output=True, text=True, env=cli_env(None), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (state / "config.toml").write_text(
        f'[bot]\nstate_dir = "."\n[source]\nurl = "{SAMPLES / "later.kml"}"\nformat = "kml"\n'
        "[guard]\nmax_added_share = 0.25\n",
        encoding="utf-8",
    )
    return state


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.page}:{e.line}")
def test_doc_example_exits_as_documented(example: Example, demo_state: Path, tmp_path: Path):
    if example.command in SKIPPED:
        pytest.skip(SKIPPED[example.command])
    # A fresh copy of the demo for each example, so no example depends on another's writes.
    state = shutil.copytree(demo_state, tmp_path / "demo-state")
    work = tmp_path / "work"
    work.mkdir()
    env = cli_env({"RINGWATCH_CONFIG": str(state / "config.toml")})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    assert shutil.which("ringwatch", path=env["PATH"]), "install the package: pip install -e ."

    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", example.command],
        capture_output=True, text=True, env=env, cwd=work, timeout=300,
    )  # fmt: skip

    assert done.returncode == example.expected_exit, (
        f"{example.page}:{example.line}: `{example.command}` exited {done.returncode}, "
        f"documented {example.expected_exit}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )
    assert "Traceback" not in done.stderr


def test_the_docs_have_examples_to_run():
    run = [e for e in EXAMPLES if e.command not in SKIPPED]
    assert len(run) >= 20, [e.command for e in run]


def test_every_skipped_example_still_exists():
    assert set(SKIPPED) <= {example.command for example in EXAMPLES}


LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's ids for a page's headings: lower case, punctuation dropped, spaces to -."""
    lines = page.read_text(encoding="utf-8").splitlines()
    headings = (line.lstrip("#").strip() for line in lines if line.startswith("#"))
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_leads_somewhere(page: Path):
    """Moving sections between pages must not leave links to where they were."""
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://")) or target == "…":
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to {target}: no such file"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: link to {target}: no such heading"


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_help_has_an_example(name: str):
    command = cli.commands[name]
    with click.Context(command, info_name=name) as ctx:
        help_text = command.get_help(ctx)
    example = help_text.split("Example", 1)[-1]
    assert "Example" in help_text, f"ringwatch {name} --help has no Example: paragraph"
    assert f"ringwatch {name}" in example, f"ringwatch {name} --help: the example is not shown"
