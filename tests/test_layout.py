"""The house rules a reviewer can check by reading, checked by a test instead (issue 11's
"Done when"): modules meet only through public names, SQL lives in the data layer,
vocabulary values are written once, in the enums of bot/models.py, and what tests share
lives in tests/support/ (issue 18)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BOT = REPO / "bot"
MODULES = sorted(BOT.rglob("*.py"))
SUPPORT = "tests.support"
# Where SQL may be written: the store package and the read models.
DATA_LAYER = ("store/", "queries.py")


def relative(path: Path) -> str:
    return path.relative_to(BOT).as_posix()


@pytest.mark.parametrize("path", MODULES, ids=relative)
def test_no_module_imports_another_modules_private_name(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    private = [
        f"from {node.module} import {alias.name} (line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bot")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert not private, "make the name public where it is defined, or move the code to it"


@pytest.mark.parametrize(
    "path", [p for p in MODULES if not relative(p).startswith(DATA_LAYER)], ids=relative
)
def test_sql_lives_in_the_data_layer(path):
    text = path.read_text(encoding="utf-8")
    calls = re.findall(r"\.(?:execute|executemany|query)\(", text)
    assert not calls, "read or write through bot/store/ or a read model in bot/queries.py"


# A value compared with, in Python or SQL: `kind == "renamed"`, `status = 'sent'`,
# `kind in ('added', …)`. (Words for readers, such as a label "renamed", may be written.)
VALUES = "added|removed|renamed|changed|baseline|pending|sending|sent|failed|skipped|suspect"
ENUM_MEMBER = re.compile(r"\s+[A-Z_]+ = ")
COMPARED = re.compile(rf"""(==|!=|=|\bin)\s*\(?\s*["']({VALUES})["']""")


@pytest.mark.parametrize("path", [*MODULES, *sorted(BOT.rglob("*.json"))], ids=relative)
def test_vocabulary_values_are_compared_only_through_the_enums(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    literal = [
        f"{n}: {line.strip()}"
        for n, line in enumerate(lines, 1)
        if COMPARED.search(line) and not ENUM_MEMBER.match(line)
    ]
    assert not literal, "use the StrEnum member from bot/models.py"


def imported(path: Path) -> list[str]:
    """The modules `path` imports from, at any depth (inside functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        name
        for node in ast.walk(tree)
        for name in (
            [alias.name for alias in node.names] if isinstance(node, ast.Import)
            else [node.module or ""] if isinstance(node, ast.ImportFrom)
            else []
        )
    ]  # fmt: skip


def outside_support(path: Path) -> list[str]:
    """What `path` imports from tests/ other than tests/support/."""
    return [
        name
        for name in imported(path)
        if (name == "tests" or name.startswith("tests."))
        and not (name == SUPPORT or name.startswith(f"{SUPPORT}."))
    ]


def from_repo(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


TEST_MODULES = sorted(p for p in (REPO / "tests").glob("*.py"))


@pytest.mark.parametrize("path", TEST_MODULES, ids=from_repo)
def test_tests_share_helpers_only_through_tests_support(path):
    # A helper two test modules need moves to tests/support/, named for what it holds.
    assert not outside_support(path), "import it from tests/support/ (move it there)"


@pytest.mark.parametrize("path", sorted((REPO / "bench").glob("*.py")), ids=from_repo)
def test_the_benchmark_uses_only_tests_support_of_the_tests(path):
    # bench/ may share the stubs and synthetic data; test modules are not its to import.
    assert not outside_support(path), "the benchmark imports only tests/support/ of tests/"
