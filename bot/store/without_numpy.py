"""sqlite-utils, imported without numpy: `bot.store` imports this module before anything
else, so every later `import sqlite_utils` finds the package already loaded.

sqlite-utils imports numpy (and pandas) whenever they are installed, only to add their
scalar types to the column types `create` and `insert` understand. ringwatch never stores
a numpy value, and numpy costs every command that opens the database about 85 ms (more
than the work of an unchanged poll; matplotlib, for `ringwatch chart`, installs it).
While sqlite-utils is imported, numpy and pandas are blocked the standard way (`None` in
`sys.modules` makes their import raise ImportError, which sqlite-utils reads as "not
installed"); the block is lifted at once, so charts import numpy as usual. Were numpy
already imported, sqlite-utils would use it as before. The fix upstream would be for
sqlite-utils to import numpy where it maps a value's type (docs/performance.md).
"""

from __future__ import annotations

import importlib
import sys

BLOCKED = ("numpy", "pandas")


def import_sqlite_utils() -> None:
    if "sqlite_utils" in sys.modules:
        return
    blocked = [name for name in BLOCKED if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None
    try:
        importlib.import_module("sqlite_utils")
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


import_sqlite_utils()
