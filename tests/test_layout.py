"""The house rules a reviewer can check by reading, checked by a test instead (issue 11's
"Done when"): modules meet only through public names, SQL lives in the data layer, and
vocabulary values are written once, in the enums of bot/models.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parent.parent / "bot"
MODULES = sorted(BOT.rglob("*.py"))
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


@pytest.mark.parametrize(
    "path", [p for p in MODULES if not relative(p).startswith("store/")], ids=relative
)
def test_only_the_store_imports_sqlite_utils(path):
    # bot.store imports it without numpy (bot/store/without_numpy.py); a module imported
    # before bot.store that imported it itself would bring numpy into every command.
    tree = ast.parse(path.read_text(encoding="utf-8"))
    direct = [
        node.lineno
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        and any(
            (getattr(node, "module", None) or alias.name).split(".")[0] == "sqlite_utils"
            for alias in node.names
        )
    ]
    assert not direct, "import sqlite_utils under `if TYPE_CHECKING:`; use it through bot.store"
