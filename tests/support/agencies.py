"""Agencies as the tests make them: one stored `Agency` at a time, or a served list of
synthetic ones (tests/support/synthetic.py) with a fixed seed."""

from __future__ import annotations

import dataclasses
from typing import Any

from bot.models import Agency
from bot.normalise import agency_key
from tests.support.synthetic import SyntheticAgency, generate_agencies


def make_agency(
    name: str = "Crystal Police Department", *, city: str = "Crystal", state: str = "MN",
    **fields: Any,
) -> Agency:  # fmt: skip
    """An `Agency` keyed as a poll keys it; any other field is `fields`' or the default."""
    return Agency(agency_key(name, state), name, city, state, **fields)


def agencies(n: int, seed: int = 1) -> list[SyntheticAgency]:
    """`n` synthetic agencies for a served map, the same for the same seed."""
    return generate_agencies(n, seed=seed)


def renamed(item: SyntheticAgency, **fields: Any) -> SyntheticAgency:
    """`item` with `fields` changed, as a later map shows it."""
    return dataclasses.replace(item, **fields)
