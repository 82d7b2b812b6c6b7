"""How values are written for people: check examples, metadata previews, change reports.

A missing value (None, NaN, pandas' NA, an empty or blank string) is written ``∅``, never ``nan``,
``None``, ``<NA>`` or an empty cell, which read as data or as a rendering fault.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

MISSING = "∅"


def is_missing(value: Any) -> bool:
    """None, NaN, pandas' NA or NaT, or a string of nothing but blanks."""
    if isinstance(value, str):
        return not value.strip()
    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def shown(value: Any) -> str:
    """``value`` as text, ``∅`` when missing."""
    return MISSING if is_missing(value) else str(value)


NONE = "none"


def listed(items: Iterable[str], separator: str = "; ") -> str:
    """``items`` joined for a check's ``examples``; ``none`` when there are none, never a blank cell."""
    return separator.join(items) or NONE
