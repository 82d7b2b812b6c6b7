"""The flower tables: their names, their columns described, and what the assets read of them.

Writing is in :mod:`aed_pipeline.lib.at_flower.write`; this module only reads (the served rows to
validate, the dates synced so far, the volumes of earlier dates, row counts) and describes the
columns as plain ``(name, type, description)`` tuples, which the Dagster definitions turn into
column schemas.
"""

from __future__ import annotations

import heapq
from datetime import date

import pandas as pd
import sqlalchemy as sa
from psycopg import sql as psycopg_sql
from sqlalchemy.engine import Connection

from aed_pipeline.lib.at_flower import SOURCE_NAME
from aed_pipeline.lib.at_flower.checks import GroupVolume
from aed_pipeline.lib.core.sync_log import synced_partitions
from aed_pipeline.lib.ops.source import Gauge

__all__ = [
    "BIDDING_FLOWERS_COLUMNS",
    "BIDDING_HISTORY_COLUMNS",
    "BIDDING_HISTORY_TABLE",
    "BIDDING_TABLE",
    "BIDDING_VERSIONS_COLUMNS",
    "BIDDING_VERSIONS_VIEW",
    "END_REASONS",
    "FLOWERS_COLUMNS",
    "FLOWER_TYPES_COLUMNS",
    "PUBLIC_BIDDING_FLOWERS_COLUMNS",
    "PUBLIC_FRAME_COLUMNS",
    "PUBLIC_TABLE",
    "TOP_COLUMNS",
    "Column",
    "known_volumes",
    "loaded_sale_dates",
    "read_public_rows",
    "served_row_counts",
    "table_row_counts",
    "top_by_quantity",
]

PUBLIC_TABLE = "public_bidding_flowers"
BIDDING_TABLE = "bidding_flowers"
#: The versions of ``bidding_flowers`` a sync replaced, and the view of every version (migration 0005).
BIDDING_HISTORY_TABLE = "bidding_flowers_history"
BIDDING_VERSIONS_VIEW = "bidding_flowers_versions"
#: Why a version ended: served again with other values, or no longer served for its date.
END_REASONS = ("corrected", "withdrawn")

#: ``(name, type, description)`` of one column.
Column = tuple[str, str, str]

PUBLIC_BIDDING_FLOWERS_COLUMNS: tuple[Column, ...] = (
    ("sale_date", "date", "the sale date asked for (the partition)"),
    ("flower_gubn", "smallint", "the group asked for: 1 절화, 2 관엽, 3 난, 4 춘란"),
    ("sale_date_raw", "text", "saleDate as served"),
    ("flower_gubn_raw", "text", "flowerGubn as served"),
    ("pum_name", "text", "pumName (품목) as served"),
    ("good_name", "text", "goodName (품종) as served"),
    ("lv_nm", "text", "lvNm (등급) as served"),
    ("max_amt", "text", "maxAmt as served"),
    ("min_amt", "text", "minAmt as served"),
    ("avg_amt", "text", "avgAmt as served"),
    ("tot_amt", "text", "totAmt as served"),
    ("tot_qty", "text", "totQty as served"),
    ("page", "integer", "response page"),
    ("row_in_page", "integer", "position in the page"),
    ("fetched_at", "timestamptz", "when the page was fetched"),
    ("archive_ref", "text", "the archived page file"),
)
FLOWER_TYPES_COLUMNS: tuple[Column, ...] = (
    ("id", "bigint", "identity"),
    ("name", "text", "품목 (pumName), unique"),
    ("flower_gubn", "smallint", "group it was first seen in"),
    ("created_at", "timestamptz", "when the 품목 was first seen"),
    ("updated_at", "timestamptz", "when its row was last written"),
)
FLOWERS_COLUMNS: tuple[Column, ...] = (
    ("id", "bigint", "identity"),
    ("flower_type_id", "bigint", "→ flower_types"),
    ("name", "text", "품종 (goodName), unique per 품목"),
    ("created_at", "timestamptz", "when the 품종 was first seen"),
    ("updated_at", "timestamptz", "when its row was last written"),
)
BIDDING_FLOWERS_COLUMNS: tuple[Column, ...] = (
    ("id", "bigint", "identity"),
    ("sale_date", "date", "the auction date (not the run time)"),
    ("flower_gubn", "smallint", "1 절화, 2 관엽, 3 난, 4 춘란"),
    ("flower_id", "bigint", "→ flowers"),
    ("grade", "text", "lvNm (등급)"),
    ("min_price", "bigint", "minAmt, 원"),
    ("avg_price", "bigint", "avgAmt, 원"),
    ("max_price", "bigint", "maxAmt, 원"),
    ("total_amount", "bigint", "totAmt, 원"),
    ("quantity", "bigint", "totQty"),
    ("created_at", "timestamptz", "when the row (its key: date, group, 품종, 등급) was first written"),
    ("updated_at", "timestamptz", "last change of a price or quantity: when the current values were written"),
    ("run_id", "text", "the Dagster run that wrote the current values (∅: written before migration 0005)"),
)
_VERSION_KEY_AND_VALUES: tuple[Column, ...] = (
    ("sale_date", "date", "the auction date"),
    ("flower_gubn", "smallint", "1 절화, 2 관엽, 3 난, 4 춘란"),
    ("flower_id", "bigint", "→ flowers"),
    ("grade", "text", "lvNm (등급)"),
    ("min_price", "bigint", "minAmt, 원, as this version had it"),
    ("avg_price", "bigint", "avgAmt, 원, as this version had it"),
    ("max_price", "bigint", "maxAmt, 원, as this version had it"),
    ("total_amount", "bigint", "totAmt, 원, as this version had it"),
    ("quantity", "bigint", "totQty, as this version had it"),
    ("published_at", "timestamptz", "when this version was written (the replaced row's updated_at)"),
    ("published_run_id", "text", "the Dagster run that wrote it (∅: written before migration 0005)"),
)
BIDDING_HISTORY_COLUMNS: tuple[Column, ...] = (
    ("id", "bigint", "identity"),
    *_VERSION_KEY_AND_VALUES,
    ("replaced_at", "timestamptz", "when a sync replaced it (the next version's published_at)"),
    ("replaced_run_id", "text", "the Dagster run that replaced it"),
    ("end_reason", "text", "corrected (served again with other values) or withdrawn (no longer served that date)"),
)
BIDDING_VERSIONS_COLUMNS: tuple[Column, ...] = (
    *_VERSION_KEY_AND_VALUES,
    ("replaced_at", "timestamptz", "when a sync replaced it; ∅ for the current version"),
    ("replaced_run_id", "text", "the Dagster run that replaced it; ∅ for the current version"),
    ("end_reason", "text", "corrected or withdrawn; ∅ for the current version"),
    ("version", "bigint", "1 = first published, then each correction in order"),
    ("is_current", "boolean", "the version bidding_flowers holds now"),
)

# --------------------------------------------------------------------------- public_bidding_flowers

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


def loaded_sale_dates(conn: Connection, first: date, last: date) -> set[date]:
    """The sale dates ``first`` … ``last`` whose slice was written by a successful sync.

    An empty slice is a fact only for such a date (a day without an auction); for any other it
    means "never loaded", and deriving anything from it would wipe that date downstream.
    """
    return synced_partitions(conn, source=SOURCE_NAME, table_name=PUBLIC_TABLE, first=first, last=last)


def read_public_rows(conn: Connection, first: date, last: date) -> pd.DataFrame:
    """The served rows of the sale dates ``first`` … ``last`` (ascending, in served order).

    Every column is of ``object`` dtype: text stays text (None where the field was absent),
    ``sale_date`` is a ``date``. Read through the psycopg cursor: a year is ~200k rows, and
    SQLAlchemy's row objects would cost several times the query itself.
    """
    driver_connection = conn.connection.driver_connection
    assert driver_connection is not None  # an open Connection always holds its DBAPI connection
    with driver_connection.cursor() as cursor:
        cursor.execute(_READ_RANGE, (first, last))
        rows = cursor.fetchall()
    columns = list(zip(*rows)) if rows else [()] * len(PUBLIC_FRAME_COLUMNS)
    return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in zip(PUBLIC_FRAME_COLUMNS, columns)})


def served_row_counts(conn: Connection, first: date, last: date) -> dict[date, int]:
    """Served rows per sale date ``first`` … ``last`` (a date without rows is absent): how the
    validation cuts a run into batches before reading any row."""
    counts = conn.execute(
        sa.text(
            f"SELECT sale_date, count(*) FROM {PUBLIC_TABLE} WHERE sale_date BETWEEN :first AND :last GROUP BY sale_date"
        ),
        {"first": first, "last": last},
    )
    return {sale_date: int(count) for sale_date, count in counts.tuples()}


# --------------------------------------------------------------------------- normalised tables


def known_volumes(conn: Connection, first: date, last: date) -> dict[date, dict[int, GroupVolume]]:
    """Volumes per group of the sale dates ``first`` … ``last`` whose ``bidding_flowers`` slice was
    synced successfully (a synced date without rows in a group traded nothing in it).

    A date never synced (or whose sync failed) is absent: it is unknown, not empty.
    """
    synced = synced_partitions(conn, source=SOURCE_NAME, table_name=BIDDING_TABLE, first=first, last=last)
    volumes: dict[date, dict[int, GroupVolume]] = {day: {} for day in synced}
    totals = conn.execute(
        sa.text(
            f"SELECT sale_date, flower_gubn, count(*), coalesce(sum(quantity), 0) FROM {BIDDING_TABLE} "
            "WHERE sale_date BETWEEN :first AND :last GROUP BY sale_date, flower_gubn"
        ),
        {"first": first, "last": last},
    )
    for sale_date, flower_gubn, rows, quantity in totals:
        if sale_date in volumes:
            volumes[sale_date][int(flower_gubn)] = GroupVolume(int(rows), int(quantity))
    return volumes


def table_row_counts(conn: Connection) -> dict[str, int]:
    """Rows in each flower table (``public_bidding_flowers``, ``flower_types``, ``flowers``,
    ``bidding_flowers``): the whole tables' ``dagster/row_count``."""
    return {table: int(count) for table, count in conn.execute(_FLOWER_ROWS).tuples()}


# Each Korean header carries its English name: under a bare 등급 the UI squeezed the grades (특1,
# 상 …) into a column one character wide.
TOP_COLUMNS = ("품목 (item)", "품종 (variety)", "등급 (grade)", "quantity", "avg_price", "total_amount")
# The typed frame's column for each of TOP_COLUMNS.
_TOP_FRAME_COLUMNS = ("pum_name", "good_name", "lv_nm", "tot_qty", "avg_amt", "tot_amt")


def top_by_quantity(rows: pd.DataFrame, limit: int = 10) -> list[tuple]:
    """The ``limit`` largest rows of a day by quantity (ties by name), as
    :data:`TOP_COLUMNS` tuples, for the materialisation's preview."""
    # Plain Python values, column by column (a row-wise pandas loop costs far more).
    columns = [rows[column].tolist() for column in _TOP_FRAME_COLUMNS]
    return heapq.nsmallest(limit, zip(*columns), key=lambda row: (-row[3], row[0], row[1], row[2]))


FLOWER_TABLES = (PUBLIC_TABLE, "flower_types", "flowers", BIDDING_TABLE)
_FLOWER_ROWS = sa.text(" UNION ALL ".join(f"SELECT '{table}', count(*) FROM {table}" for table in FLOWER_TABLES))


_CORRECTIONS = sa.text(f"SELECT end_reason, count(*) FROM {BIDDING_HISTORY_TABLE} GROUP BY end_reason")


def warehouse_gauges(conn: Connection) -> list[Gauge]:
    """``flower_rows{table}``: rows in each flower table; ``flower_price_corrections_total{reason}``:
    the versions of ``bidding_flowers`` a sync replaced (the history's rows, which are never deleted),
    by why they ended, every reason served from 0."""
    rows: dict[tuple[str, ...], float] = {
        (table,): float(count) for table, count in conn.execute(_FLOWER_ROWS).tuples()
    }
    replaced: dict[str, int] = {reason: int(n) for reason, n in conn.execute(_CORRECTIONS).tuples()}
    corrections: dict[tuple[str, ...], float] = {(reason,): float(replaced.get(reason, 0)) for reason in END_REASONS}
    return [
        Gauge("flower_rows", "rows in each flower table", rows, labels=("table",)),
        Gauge(
            "flower_price_corrections",
            "versions of bidding_flowers replaced by a later sync of their sale date (settlement corrections), "
            "by reason: corrected (served again with other values) or withdrawn (no longer served)",
            corrections,
            labels=("reason",),
            kind="counter",
        ),
    ]
