"""``public_bidding_flowers``: the aT f001 rows exactly as served, one slice per sale date.

A sale date's slice is replaced as a whole (delete the date, COPY the archived rows) inside the
caller's transaction, so a re-run never duplicates rows (the old Go scheduler appended on every
run) and a reader sees either the old slice or the new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from aed_pipeline.lib.at_flower.fetch import PUBLIC_ROW_COLUMNS
from aed_pipeline.lib.at_flower.tables import PUBLIC_TABLE
from aed_pipeline.lib.core import locks
from aed_pipeline.lib.core.warehouse import copy_into

__all__ = ["PUBLIC_TABLE", "PublicSliceCounts", "replace_public_slice"]


@dataclass(frozen=True)
class PublicSliceCounts:
    """Rows of the date's slice before (``deleted``) and after (``inserted``) the replacement."""

    deleted: int
    inserted: int


def replace_public_slice(conn: Connection, sale_date: date, rows: Sequence[Sequence[Any]]) -> PublicSliceCounts:
    """Replace ``sale_date``'s rows with ``rows`` (tuples in :data:`PUBLIC_ROW_COLUMNS` order),
    in the caller's transaction."""
    # Two runs of one date at once: the second's DELETE cannot see the first's uncommitted rows, so
    # its COPY would collide with them on the slice's unique key and fail with a duplicate-key
    # error once the first commits. It waits for the first instead, then replaces its slice.
    locks.hold_for_transaction(conn, locks.FLOWER_SERVED_SLICE, sale_date.toordinal())
    deleted = conn.execute(
        sa.text(f"DELETE FROM {PUBLIC_TABLE} WHERE sale_date = :sale_date"), {"sale_date": sale_date}
    ).rowcount
    inserted = copy_into(conn, PUBLIC_TABLE, PUBLIC_ROW_COLUMNS, rows)
    return PublicSliceCounts(deleted=deleted, inserted=inserted)
