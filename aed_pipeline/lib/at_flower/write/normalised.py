"""The normalised flower tables: ``flower_types`` (품목), ``flowers`` (품종), ``bidding_flowers``.

One sale date is written in the caller's transaction, set-based, whatever its size:

1. COPY the date's valid rows into a temporary staging table;
2. ``INSERT … ON CONFLICT DO NOTHING`` the 품목 and 품종 not seen before (neither is ever deleted;
   a 품종 is unique per name *and* 품목, so 백합 메두사 and 장미 메두사 are two flowers);
3. diff the date's ``bidding_flowers`` slice against the staging rows: insert new keys, update
   changed prices (only when a value differs, so an unchanged re-run writes nothing), delete the
   keys the source no longer serves for that date.

A run's dates go through :func:`write_bidding_days`: each in its own transaction with its
``sync_runs`` row, none at all when one of them failed a blocking check.

The sale date is the auction date (the old Go scheduler stamped the run time), the grade is kept
(it used to be dropped), and no table is ever read whole into memory (it used to build maps of
every type and flower).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aed_pipeline.lib.at_flower import SOURCE_NAME
from aed_pipeline.lib.at_flower.records import ValidatedFlowerDay
from aed_pipeline.lib.at_flower.tables import BIDDING_TABLE
from aed_pipeline.lib.core import locks
from aed_pipeline.lib.core.sync_log import sync_run
from aed_pipeline.lib.core.warehouse import copy_into

__all__ = [
    "BIDDING_TABLE",
    "BiddingDayCounts",
    "BlockedDays",
    "WrittenBiddingDay",
    "refuse_blocked_days",
    "write_bidding_day",
    "write_bidding_days",
]

_STAGING = "flower_bidding_staging"
_STAGING_COLUMNS = (
    "flower_gubn",
    "pum_name",
    "good_name",
    "grade",
    "min_price",
    "avg_price",
    "max_price",
    "total_amount",
    "quantity",
)
# Typed frame column for each staging column.
_FRAME_COLUMNS = (
    "flower_gubn",
    "pum_name",
    "good_name",
    "lv_nm",
    "min_amt",
    "avg_amt",
    "max_amt",
    "tot_amt",
    "tot_qty",
)

# Created once per connection; ON COMMIT DELETE ROWS empties it after every date's transaction
# (PostgreSQL skips that for transactions that never touched a temporary table).
_CREATE_STAGING = sa.text(
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} ("
    "flower_gubn smallint NOT NULL, pum_name text NOT NULL, good_name text NOT NULL, grade text NOT NULL, "
    "min_price bigint NOT NULL, avg_price bigint NOT NULL, max_price bigint NOT NULL, "
    "total_amount bigint NOT NULL, quantity bigint NOT NULL) ON COMMIT DELETE ROWS"
)
# A 품목 seen in two groups is still one type; it keeps the group it was first seen in.
_INSERT_TYPES = sa.text(
    "INSERT INTO flower_types (name, flower_gubn) "
    f"SELECT pum_name, min(flower_gubn) FROM {_STAGING} GROUP BY pum_name ORDER BY pum_name "
    "ON CONFLICT (name) DO NOTHING"
)
_INSERT_FLOWERS = sa.text(
    "INSERT INTO flowers (flower_type_id, name) "
    f"SELECT DISTINCT t.id, s.good_name FROM {_STAGING} s JOIN flower_types t ON t.name = s.pum_name "
    "ORDER BY 1, 2 ON CONFLICT (flower_type_id, name) DO NOTHING"
)
# The date's slice brought to the staged rows in one statement. The sub-statements share one
# snapshot: the DELETE sees only the rows from before (never the ones the upsert adds), and the
# rows it removes are exactly those whose key is not staged, which the upsert does not touch.
# RETURNING (xmax = 0) tells an inserted row (true) from an updated one (false); a row whose values
# did not change is neither (the WHERE … IS DISTINCT FROM skips it), so a re-run writes nothing.
_SYNC_SLICE = sa.text(
    "WITH staged AS ("
    "  SELECT s.flower_gubn, f.id AS flower_id, s.grade, s.min_price, s.avg_price, s.max_price,"
    "         s.total_amount, s.quantity"
    f"  FROM {_STAGING} s JOIN flower_types t ON t.name = s.pum_name"
    "  JOIN flowers f ON f.flower_type_id = t.id AND f.name = s.good_name"
    "), upserted AS ("
    f"  INSERT INTO {BIDDING_TABLE} AS b (sale_date, flower_gubn, flower_id, grade, min_price, avg_price,"
    "         max_price, total_amount, quantity)"
    "  SELECT CAST(:sale_date AS date), flower_gubn, flower_id, grade, min_price, avg_price, max_price,"
    "         total_amount, quantity FROM staged"
    "  ON CONFLICT (sale_date, flower_gubn, flower_id, grade) DO UPDATE SET"
    "    min_price = EXCLUDED.min_price, avg_price = EXCLUDED.avg_price, max_price = EXCLUDED.max_price,"
    "    total_amount = EXCLUDED.total_amount, quantity = EXCLUDED.quantity, updated_at = now()"
    "  WHERE (b.min_price, b.avg_price, b.max_price, b.total_amount, b.quantity) IS DISTINCT FROM"
    "        (EXCLUDED.min_price, EXCLUDED.avg_price, EXCLUDED.max_price, EXCLUDED.total_amount, EXCLUDED.quantity)"
    "  RETURNING (xmax = 0) AS inserted"
    "), vanished AS ("
    f"  DELETE FROM {BIDDING_TABLE} b WHERE b.sale_date = CAST(:sale_date AS date) AND NOT EXISTS ("
    "    SELECT 1 FROM staged n"
    "    WHERE n.flower_gubn = b.flower_gubn AND n.flower_id = b.flower_id AND n.grade = b.grade)"
    "  RETURNING 1"
    ") SELECT (SELECT count(*) FROM staged),"
    " (SELECT count(*) FROM upserted WHERE inserted), (SELECT count(*) FROM upserted WHERE NOT inserted),"
    " (SELECT count(*) FROM vanished)"
)


@dataclass(frozen=True)
class BiddingDayCounts:
    """What writing one sale date changed."""

    new_types: int
    new_flowers: int
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    rows: int  # rows of the date's slice after the write

    @property
    def written(self) -> int:
        return self.inserted + self.updated


def _columns(rows: pd.DataFrame) -> list[list]:
    # Plain Python values, column by column (a row-wise pandas loop costs far more).
    return [rows[column].tolist() for column in _FRAME_COLUMNS]


def write_bidding_day(conn: Connection, sale_date: date, rows: pd.DataFrame) -> BiddingDayCounts:
    """Upsert the date's 품목 and 품종 and bring its ``bidding_flowers`` slice to ``rows``
    (valid typed rows of that date, plain int64/str columns), in the caller's transaction."""
    # Two runs of one date at once wait for each other, so the second diffs against the first's
    # committed result (and their upserts cannot deadlock on rows taken in different orders).
    locks.hold_for_transaction(conn, locks.FLOWER_NORMALISED_DAY, sale_date.toordinal())
    conn.execute(_CREATE_STAGING)
    staged = copy_into(conn, _STAGING, _STAGING_COLUMNS, zip(*_columns(rows)))
    new_types = conn.execute(_INSERT_TYPES).rowcount
    new_flowers = conn.execute(_INSERT_FLOWERS).rowcount
    resolved, inserted, updated, deleted = conn.execute(_SYNC_SLICE, {"sale_date": sale_date}).one()
    if resolved != staged:  # pragma: no cover - the inserts above guarantee every name resolves
        raise RuntimeError(f"{sale_date}: {staged - resolved} staged rows found no flower")
    return BiddingDayCounts(
        new_types=new_types,
        new_flowers=new_flowers,
        inserted=inserted,
        updated=updated,
        deleted=deleted,
        unchanged=staged - inserted - updated,
        rows=staged,
    )


@dataclass(frozen=True)
class WrittenBiddingDay:
    """One validated sale date and what writing it changed."""

    day: ValidatedFlowerDay
    counts: BiddingDayCounts


class BlockedDays(Exception):
    """Sale dates whose validated rows failed a blocking check: none of the run's dates is written."""

    def __init__(self, days: Sequence[ValidatedFlowerDay]):
        self.days = list(days)
        super().__init__(
            "refusing to write sale dates whose validated rows failed a blocking check: "
            + "; ".join(f"{day.sale_date.isoformat()} ({', '.join(day.blocking_failures)})" for day in self.days)
            + ". Fix the source data or the check's configuration and re-materialise flower_auction_validated."
        )


def refuse_blocked_days(days: Sequence[ValidatedFlowerDay]) -> None:
    """Raise :class:`BlockedDays` when any of ``days`` failed a blocking check."""
    blocked = [day for day in days if not day.writable]
    if blocked:
        raise BlockedDays(blocked)


def write_bidding_days(
    engine: Engine, days: Sequence[ValidatedFlowerDay], *, run_id: str | None
) -> Iterator[WrittenBiddingDay]:
    """Write each of ``days`` (in the given order) with :func:`write_bidding_day`, yielding each
    date once it is committed.

    Refuses at once, before any write, when a date failed a blocking check (:class:`BlockedDays`).
    Each date is one transaction with its ``sync_runs`` row, marked successful inside it: a failure
    part-way marks that date's sync failed, keeps the dates already written and propagates.
    """
    refuse_blocked_days(days)
    return _write_days(engine, days, run_id)


def _write_days(engine: Engine, days: Sequence[ValidatedFlowerDay], run_id: str | None) -> Iterator[WrittenBiddingDay]:
    with engine.connect() as conn:
        for day in days:
            with (
                sync_run(
                    engine,
                    source=SOURCE_NAME,
                    table_name=BIDDING_TABLE,
                    partition_key=day.sale_date.isoformat(),
                    run_id=run_id,
                ) as run,
                conn.begin(),
            ):
                counts = write_bidding_day(conn, day.sale_date, day.rows)
                run.counts.fetched = day.served
                run.counts.rejected = day.rejected
                run.counts.inserted = counts.inserted
                run.counts.updated = counts.updated
                run.counts.deleted = counts.deleted
                run.counts.unchanged = counts.unchanged
                run.mark_success(conn)
            # Yielded after the commit, outside the sync's block: the caller's reporting is no part of it.
            yield WrittenBiddingDay(day, counts)
