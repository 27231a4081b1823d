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


# --- layers and cycles: the import graph, from the code's own syntax tree ------------------

DEVELOPMENT = BOT.parent / "docs" / "development.md"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name → file of every module of the package at `root` (a package is its
    __init__.py)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import statement may load: `from . import x` resolved, and
    `from pkg import name` both as the module pkg.name and as pkg."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = ".".join([*package[: len(package) - node.level + 1], node.module or ""]).strip(".")
    else:
        base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the modules of the same package it imports: at module level, inside
    functions and under TYPE_CHECKING alike (each runs, or states a dependency). Importing
    a submodule runs its parent packages' __init__ too, so those count as well."""
    names = module_names(root)
    graph: dict[str, set[str]] = {name: set() for name in names}
    for module, path in names.items():
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in imported(module, path, node):
                parts = target.split(".")
                for depth in range(1, len(parts) + 1):
                    loaded = ".".join(parts[:depth])
                    if loaded in names and loaded != module and loaded not in own_packages:
                        graph[module].add(loaded)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def documented_layers(text: str) -> dict[str, int]:
    """docs/development.md's "Layers" table: layer name (a module or package under bot/)
    → its number."""
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    layers = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            for name in re.findall(r"`([\w.]+)`", cells[1]):
                layers[name] = int(cells[0])
    return layers


def layer_of(module: str) -> str:
    """bot.channels.telegram → channels, bot.store → store, bot → __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    return [
        f"{module} (layer {layers[layer_of(module)]}) imports {target} "
        f"(layer {layers[layer_of(target)]})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if layers[layer_of(target)] > layers[layer_of(module)]
    ]


GRAPH = import_graph(BOT)
LAYERS = documented_layers(DEVELOPMENT.read_text(encoding="utf-8"))


def test_no_import_cycle_counting_imports_inside_functions():
    found = cycles(GRAPH)
    assert not found, f"import cycles among {found}: move what they share down a layer"


def test_every_module_has_a_documented_layer():
    unassigned = sorted({layer_of(module) for module in GRAPH} - set(LAYERS))
    assert not unassigned, f"add {unassigned} to the Layers table of docs/development.md"
    stale = sorted(set(LAYERS) - {layer_of(module) for module in GRAPH})
    assert not stale, f"the Layers table of docs/development.md names no module: {stale}"


def test_imports_point_down_the_documented_layers():
    upward = upward_imports(GRAPH, LAYERS)
    assert not upward, f"{upward}: see the Layers table of docs/development.md"


@pytest.mark.parametrize(
    ("module", "allowed"), [("bot.logs", set()), ("bot.messages", {"bot.models"})]
)
def test_the_bottom_modules_import_nothing_of_ours_beyond_models(module, allowed):
    extra = GRAPH[module] - allowed
    assert not extra, f"{module} imports {sorted(extra)}: it must stay at the bottom"


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_the_checker_finds_a_cycle_held_apart_by_an_import_inside_a_function(tmp_path):
    package = write_package(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "low.py": "def later():\n    from pkg.sub import high\n",
            "sub/__init__.py": "",
            "sub/high.py": "from .. import low\n",
            "alone.py": "import pkg.low\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.sub.high"] == {"pkg.low"}  # `from .. import low` resolved
    assert graph["pkg.low"] == {"pkg.sub", "pkg.sub.high"}  # a package's __init__ runs first
    assert cycles(graph) == [["pkg.low", "pkg.sub.high"]]


def test_the_checker_names_an_import_that_points_up_and_reads_the_table(tmp_path):
    layers = documented_layers(
        "# Dev\n\n## Layers\n\n| layer | modules |\n| --- | --- |\n"
        "| 1 | `low` |\n| 2 | `sub`, `alone` |\n\n## Next\n\n| 3 | `ignored` |\n"
    )
    assert layers == {"low": 1, "sub": 2, "alone": 2}
    graph = {"pkg.low": {"pkg.sub.high"}, "pkg.sub.high": set(), "pkg.alone": {"pkg.low"}}
    assert upward_imports(graph, layers) == ["pkg.low (layer 1) imports pkg.sub.high (layer 2)"]


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


@pytest.mark.parametrize("module", ["bot.site", "bot.publish", "bot.feed", "bot.render"])
def test_building_the_site_and_feed_loads_no_channel_code(module):
    channels = sorted(m for m in reachable(GRAPH, module) if layer_of(m) == "channels")
    assert not channels, f"{module} reaches {channels}: share value types through bot.messages"


def imported_names(path: Path) -> list[str]:
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
        for name in imported_names(path)
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
