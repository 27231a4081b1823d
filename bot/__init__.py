"""ringwatch: watch Amazon Ring's police partnership map and alert on every change.

The code follows the data, one module per step:
source (fetch + parse) → normalise → diff (pure) → store (one transaction) → deliver → reports.
"""

__version__ = "0.1.0"
