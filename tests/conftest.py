"""Shared fixtures: a real source server, config files, the samples' change log. Helpers
that tests import live in tests/support/ (a conftest is for fixtures)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cli import poll_samples, write_config
from tests.support.source_server import SourceServer


@pytest.fixture
def source_server() -> Iterator[SourceServer]:
    with SourceServer() as server:
        yield server


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[[str], Path]:
    return lambda text="": write_config(tmp_path, text)


@pytest.fixture(scope="session")
def sample_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A state dir holding the samples' change log: 29 added, 1 renamed, 1 changed, 1 removed."""
    with SourceServer() as server:
        yield poll_samples(server, tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="session")
def hostile_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A state dir whose change log holds the hostile agencies of tests/support/hostile.py."""
    from tests.support.hostile import poll_hostile

    with SourceServer() as server:
        yield poll_hostile(server, tmp_path_factory.mktemp("hostile"))
