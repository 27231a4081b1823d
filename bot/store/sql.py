"""What every table family shares: vocabulary values in SQL, JSON columns, fast inserts."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import sqlite_utils

from bot.models import BAD_OUTCOMES, GOOD_OUTCOMES, UNSENT_STATUSES


def sql_list(values: Iterable[StrEnum]) -> str:
    """An SQL list of vocabulary values. They are constants of the code, never data, so
    they may be written into the SQL (where a query needs them in a subquery or a view)."""
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


GOOD_SQL, BAD_SQL, UNSENT_SQL = (
    sql_list(GOOD_OUTCOMES),
    sql_list(BAD_OUTCOMES),
    sql_list(UNSENT_STATUSES),
)


def to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


def insert_rows(db: sqlite_utils.Database, table: str, rows: Iterable[dict[str, Any]]) -> None:
    """Plain INSERTs of rows that all have the same keys, holding only SQLite types.

    Much faster than sqlite-utils' insert_all for the 100,000 rows of a large baseline.
    """
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return
    columns = list(first)
    db.conn.executemany(
        f"insert into [{table}] ({', '.join(f'[{c}]' for c in columns)}) "
        f"values ({', '.join('?' * len(columns))})",
        (tuple(row[c] for c in columns) for row in itertools.chain([first], rows)),
    )
