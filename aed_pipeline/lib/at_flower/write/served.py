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

import pandas as pd
import sqlalchemy as sa
from psycopg import sql as psycopg_sql
from sqlalchemy.engine import Connection

from aed_pipeline.lib.at_flower.fetch import PUBLIC_ROW_COLUMNS
from aed_pipeline.lib.core import locks
from aed_pipeline.lib.core.sync_log import SYNC_SOURCE_FLOWER, synced_partitions
from aed_pipeline.lib.core.warehouse import copy_into

__all__ = ["PUBLIC_TABLE", "PublicSliceCounts", "loaded_sale_dates", "read_public_rows", "replace_public_slice"]

PUBLIC_TABLE = "public_bidding_flowers"

#: The columns the validation reads back: the request's date and group, the served text, the position.
PUBLIC_FRAME_COLUMNS = (
    "sale_date",
    "flower_gubn",
    "sale_date_raw",
    "flower_gubn_raw",
    "pum_name",
    "good_name",
    "lv_nm",
    "max_amt",
    "min_amt",
    "avg_amt",
    "tot_amt",
    "tot_qty",
    "page",
    "row_in_page",
)

_READ_RANGE = psycopg_sql.SQL(
    "SELECT {columns} FROM {table} WHERE sale_date BETWEEN %s AND %s ORDER BY sale_date, flower_gubn, page, row_in_page"
).format(
    columns=psycopg_sql.SQL(", ").join(psycopg_sql.Identifier(c) for c in PUBLIC_FRAME_COLUMNS),
    table=psycopg_sql.Identifier(PUBLIC_TABLE),
)


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


def loaded_sale_dates(conn: Connection, first: date, last: date) -> set[date]:
    """The sale dates ``first`` … ``last`` whose slice was written by a successful sync.

    An empty slice is a fact only for such a date (a day without an auction); for any other it
    means "never loaded", and deriving anything from it would wipe that date downstream.
    """
    return synced_partitions(conn, source=SYNC_SOURCE_FLOWER, table_name=PUBLIC_TABLE, first=first, last=last)


def read_public_rows(conn: Connection, first: date, last: date) -> pd.DataFrame:
    """The served rows of the sale dates ``first`` … ``last`` (ascending, in served order).

    Every column is of ``object`` dtype: text stays text (None where the field was absent),
    ``sale_date`` is a ``date``. Read through the psycopg cursor: a year is ~200k rows, and
    SQLAlchemy's row objects would cost several times the query itself.
    """
    with conn.connection.driver_connection.cursor() as cursor:
        cursor.execute(_READ_RANGE, (first, last))
        rows = cursor.fetchall()
    columns = list(zip(*rows)) if rows else [()] * len(PUBLIC_FRAME_COLUMNS)
    return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in zip(PUBLIC_FRAME_COLUMNS, columns)})
