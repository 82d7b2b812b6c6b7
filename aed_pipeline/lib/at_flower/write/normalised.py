"""The normalised flower tables: ``flower_types`` (품목), ``flowers`` (품종), ``bidding_flowers``.

One sale date is written in the caller's transaction, set-based, whatever its size:

1. COPY the date's valid rows into a temporary staging table;
2. ``INSERT … ON CONFLICT DO NOTHING`` the 품목 and 품종 not seen before (neither is ever deleted;
   a 품종 is unique per name *and* 품목, so 백합 메두사 and 장미 메두사 are two flowers);
3. diff the date's ``bidding_flowers`` slice against the staging rows: insert new keys, update
   changed prices (only when a value differs, so an unchanged re-run writes nothing), delete the
   keys the source no longer serves for that date; the rows it replaces (corrected or withdrawn)
   go to ``bidding_flowers_history`` in the same statement, with when and by which run they were
   written and replaced (the view ``bidding_flowers_versions`` shows every version);
4. the post-write checks (``write/audit.py``) on what the date's tables now hold: a failure rolls
   the date back.

A run's dates go through :func:`write_bidding_days`: each in its own transaction with its
``sync_runs`` row, none at all when one of them failed a blocking check; each date's validated rows
are read from their file (``rows.py``) when it is written, so one date's rows are in memory at a time.

The sale date is the auction date (the old Go scheduler stamped the run time), the grade is kept
(it used to be dropped), and no table is ever read whole into memory (it used to build maps of
every type and flower).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aed_pipeline.lib.at_flower import SOURCE_NAME
from aed_pipeline.lib.at_flower.rows import StoredFlowerDay
from aed_pipeline.lib.at_flower.tables import BIDDING_HISTORY_TABLE, BIDDING_TABLE, top_by_quantity
from aed_pipeline.lib.at_flower.write.audit import ROW_FINGERPRINT, post_write_checks
from aed_pipeline.lib.core import locks
from aed_pipeline.lib.core.audit import PostWriteCheck, PostWriteChecksFailed
from aed_pipeline.lib.core.sync_log import sync_run
from aed_pipeline.lib.core.warehouse import copy_into

__all__ = [
    "BIDDING_TABLE",
    "CORRECTED_VALUES",
    "BiddingDayCounts",
    "BlockedDays",
    "Correction",
    "PostWriteChecksFailed",
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
# The date's slice brought to the staged rows in one statement, its replaced versions kept. The
# sub-statements share one snapshot: the history INSERT and the DELETE see only the rows from before
# (never the ones the upsert adds or changes), so the history gets each replaced row's old values;
# the DELETE removes exactly the rows whose key is not staged, which the upsert does not touch.
# A row is replaced when its key is staged with other values (corrected: the upsert updates it) or
# not staged at all (withdrawn: the DELETE removes it); the same IS DISTINCT FROM decides both the
# history row and the update, so a re-run writes nothing anywhere. RETURNING (xmax = 0) tells an
# inserted row (true) from an updated one (false).
_VALUES = "min_price, avg_price, max_price, total_amount, quantity"
_DIFFERS = (
    "(b.min_price, b.avg_price, b.max_price, b.total_amount, b.quantity) IS DISTINCT FROM"
    " ({0}.min_price, {0}.avg_price, {0}.max_price, {0}.total_amount, {0}.quantity)"
)
_SYNC_SLICE = sa.text(
    "WITH staged AS ("
    "  SELECT s.flower_gubn, f.id AS flower_id, s.grade, s.min_price, s.avg_price, s.max_price,"
    "         s.total_amount, s.quantity"
    f"  FROM {_STAGING} s JOIN flower_types t ON t.name = s.pum_name"
    "  JOIN flowers f ON f.flower_type_id = t.id AND f.name = s.good_name"
    "), replaced AS ("
    f"  INSERT INTO {BIDDING_HISTORY_TABLE} (sale_date, flower_gubn, flower_id, grade, {_VALUES},"
    "         published_at, published_run_id, replaced_run_id, end_reason)"
    f"  SELECT b.sale_date, b.flower_gubn, b.flower_id, b.grade, {', '.join(f'b.{c}' for c in _VALUES.split(', '))},"
    "         b.updated_at, b.run_id, CAST(:run_id AS text),"
    "         CASE WHEN n.flower_id IS NULL THEN 'withdrawn' ELSE 'corrected' END"
    f"  FROM {BIDDING_TABLE} b LEFT JOIN staged n"
    "    ON n.flower_gubn = b.flower_gubn AND n.flower_id = b.flower_id AND n.grade = b.grade"
    f"  WHERE b.sale_date = CAST(:sale_date AS date) AND (n.flower_id IS NULL OR {_DIFFERS.format('n')})"
    "  RETURNING end_reason"
    "), upserted AS ("
    f"  INSERT INTO {BIDDING_TABLE} AS b (sale_date, flower_gubn, flower_id, grade, {_VALUES}, run_id)"
    f"  SELECT CAST(:sale_date AS date), flower_gubn, flower_id, grade, {_VALUES}, CAST(:run_id AS text)"
    "  FROM staged"
    "  ON CONFLICT (sale_date, flower_gubn, flower_id, grade) DO UPDATE SET"
    "    min_price = EXCLUDED.min_price, avg_price = EXCLUDED.avg_price, max_price = EXCLUDED.max_price,"
    "    total_amount = EXCLUDED.total_amount, quantity = EXCLUDED.quantity, run_id = EXCLUDED.run_id,"
    "    updated_at = now()"
    f"  WHERE {_DIFFERS.format('EXCLUDED')}"
    "  RETURNING (xmax = 0) AS inserted"
    "), vanished AS ("
    f"  DELETE FROM {BIDDING_TABLE} b WHERE b.sale_date = CAST(:sale_date AS date) AND NOT EXISTS ("
    "    SELECT 1 FROM staged n"
    "    WHERE n.flower_gubn = b.flower_gubn AND n.flower_id = b.flower_id AND n.grade = b.grade)"
    "  RETURNING 1"
    ") SELECT (SELECT count(*) FROM staged),"
    " (SELECT count(*) FROM upserted WHERE inserted), (SELECT count(*) FROM upserted WHERE NOT inserted),"
    " (SELECT count(*) FROM vanished),"
    " (SELECT count(*) FROM replaced WHERE end_reason = 'corrected'),"
    " (SELECT count(*) FROM replaced WHERE end_reason = 'withdrawn'),"
    f" (SELECT coalesce(sum({ROW_FINGERPRINT.format('')}), 0) FROM staged)"
)
# A sample of what the write replaced, before and after (the current row; none when withdrawn),
# the largest changes of the total amount first. Read only when something was replaced.
_CORRECTIONS_SAMPLE = sa.text(
    f"SELECT t.name, f.name, h.grade, h.end_reason, {', '.join(f'h.{c}' for c in _VALUES.split(', '))}, "
    f"{', '.join(f'b.{c}' for c in _VALUES.split(', '))} "
    f"FROM {BIDDING_HISTORY_TABLE} h JOIN flowers f ON f.id = h.flower_id "
    "JOIN flower_types t ON t.id = f.flower_type_id "
    f"LEFT JOIN {BIDDING_TABLE} b ON b.sale_date = h.sale_date AND b.flower_gubn = h.flower_gubn "
    "AND b.flower_id = h.flower_id AND b.grade = h.grade "
    "WHERE h.sale_date = :sale_date AND h.replaced_at = now() "
    "ORDER BY abs(coalesce(b.total_amount, 0) - h.total_amount) DESC, t.name, f.name, h.grade LIMIT :n"
)

#: Replaced rows shown per date with their values before and after.
CORRECTIONS_SAMPLE = 10
#: The values a correction may change, in the order of :attr:`Correction.before` and ``after``.
CORRECTED_VALUES = tuple(_VALUES.split(", "))

Hook = Callable[[Connection], None]


@dataclass(frozen=True)
class Correction:
    """One row a write replaced: its 품목, 품종 and 등급, why (``corrected`` or ``withdrawn``), and its
    :data:`CORRECTED_VALUES` before and after (``None`` after: withdrawn)."""

    pum_name: str
    good_name: str
    grade: str
    end_reason: str
    before: tuple[int, ...]
    after: tuple[int, ...] | None


@dataclass(frozen=True)
class BiddingDayCounts:
    """What writing one sale date changed, and what the checks before COMMIT found.

    ``corrected`` rows were served again with other values (``updated`` of them), ``withdrawn`` rows
    no longer served (``deleted``); both replaced versions are kept in ``bidding_flowers_history``,
    and ``corrections`` is a sample of them with their values before and after.
    """

    new_types: int
    new_flowers: int
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    rows: int  # rows of the date's slice after the write
    corrected: int = 0
    withdrawn: int = 0
    corrections: tuple[Correction, ...] = ()
    checks: tuple[PostWriteCheck, ...] = ()

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    @property
    def replaced(self) -> int:
        """Versions the write replaced, kept in the history: the corrected and the withdrawn rows."""
        return self.corrected + self.withdrawn


def _columns(rows: pd.DataFrame) -> list[list]:
    # Plain Python values, column by column (a row-wise pandas loop costs far more).
    return [rows[column].tolist() for column in _FRAME_COLUMNS]


def write_bidding_day(
    conn: Connection,
    sale_date: date,
    rows: pd.DataFrame,
    *,
    run_id: str | None = None,
    after_write: Hook | None = None,
) -> BiddingDayCounts:
    """Upsert the date's 품목 and 품종 and bring its ``bidding_flowers`` slice to ``rows``
    (valid typed rows of that date, plain int64/str columns), keeping the versions it replaces in
    ``bidding_flowers_history``, in the caller's transaction; ``run_id`` is the run writing.

    Then the post-write checks (``write/audit.py``) judge the date's tables before the caller's
    COMMIT: a failed one raises :class:`PostWriteChecksFailed`, which rolls the caller's
    transaction back. ``after_write`` runs inside the transaction right after the write, before the
    checks: the tests use it to prove that a write the checks refuse leaves every table as it was.
    """
    # Two runs of one date at once wait for each other, so the second diffs against the first's
    # committed result (and their upserts cannot deadlock on rows taken in different orders).
    locks.hold_for_transaction(conn, locks.FLOWER_NORMALISED_DAY, sale_date.toordinal())
    conn.execute(_CREATE_STAGING)
    staged = copy_into(conn, _STAGING, _STAGING_COLUMNS, zip(*_columns(rows)))
    new_types = conn.execute(_INSERT_TYPES).rowcount
    new_flowers = conn.execute(_INSERT_FLOWERS).rowcount
    resolved, inserted, updated, deleted, corrected, withdrawn, fingerprint = conn.execute(
        _SYNC_SLICE, {"sale_date": sale_date, "run_id": run_id}
    ).one()
    if resolved != staged:  # pragma: no cover - the inserts above guarantee every name resolves
        raise RuntimeError(f"{sale_date}: {staged - resolved} staged rows found no flower")
    if after_write is not None:
        after_write(conn)
    checks = post_write_checks(
        conn,
        sale_date,
        staging=_STAGING,
        validated_rows=staged,
        validated_fingerprint=fingerprint,
        replaced=updated + deleted,
        run_id=run_id,
    )
    if not all(check.passed for check in checks):
        raise PostWriteChecksFailed(BIDDING_TABLE, sale_date, checks)
    return BiddingDayCounts(
        new_types=new_types,
        new_flowers=new_flowers,
        inserted=inserted,
        updated=updated,
        deleted=deleted,
        unchanged=staged - inserted - updated,
        rows=staged,
        corrected=corrected,
        withdrawn=withdrawn,
        corrections=_corrections(conn, sale_date) if corrected + withdrawn else (),
        checks=checks,
    )


def _corrections(conn: Connection, sale_date: date) -> tuple[Correction, ...]:
    width = len(CORRECTED_VALUES)
    sample = conn.execute(_CORRECTIONS_SAMPLE, {"sale_date": sale_date, "n": CORRECTIONS_SAMPLE}).tuples()
    return tuple(
        Correction(
            pum_name,
            good_name,
            grade,
            end_reason,
            tuple(int(v) for v in values[:width]),
            None if values[width] is None else tuple(int(v) for v in values[width:]),
        )
        for pum_name, good_name, grade, end_reason, *values in sample
    )


@dataclass(frozen=True)
class WrittenBiddingDay:
    """One validated sale date (without its rows) and what writing it changed, with the date's
    largest rows by quantity (``top_by_quantity``) for its preview."""

    day: StoredFlowerDay
    counts: BiddingDayCounts
    top: tuple[tuple, ...] = ()


class BlockedDays(Exception):
    """Sale dates whose validated rows failed a blocking check: none of the run's dates is written."""

    def __init__(self, days: Sequence[StoredFlowerDay]):
        self.days = list(days)
        super().__init__(
            "refusing to write sale dates whose validated rows failed a blocking check: "
            + "; ".join(f"{day.sale_date.isoformat()} ({', '.join(day.blocking_failures)})" for day in self.days)
            + ". Fix the source data or the check's configuration and re-materialise flower_auction_validated."
        )


def refuse_blocked_days(days: Sequence[StoredFlowerDay]) -> None:
    """Raise :class:`BlockedDays` when any of ``days`` failed a blocking check."""
    blocked = [day for day in days if not day.writable]
    if blocked:
        raise BlockedDays(blocked)


def write_bidding_days(
    engine: Engine, days: Sequence[StoredFlowerDay], *, run_id: str | None, after_write: Hook | None = None
) -> Iterator[WrittenBiddingDay]:
    """Write each of ``days`` (in the given order) with :func:`write_bidding_day`, yielding each
    date once it is committed; a date's rows are read from their file just before it is written.

    Refuses at once, before any write, when a date failed a blocking check (:class:`BlockedDays`).
    Each date is one transaction with its ``sync_runs`` row, marked successful inside it: a failure
    part-way (a failed post-write check among them: :class:`PostWriteChecksFailed`) rolls that date
    back, marks its sync failed with the reason, keeps the dates already written and propagates.
    ``after_write`` is :func:`write_bidding_day`'s test hook.
    """
    refuse_blocked_days(days)
    return _write_days(engine, days, run_id, after_write)


def _write_days(
    engine: Engine, days: Sequence[StoredFlowerDay], run_id: str | None, after_write: Hook | None
) -> Iterator[WrittenBiddingDay]:
    with engine.connect() as conn:
        for day in days:
            rows = day.load().rows  # before the date's sync starts: a missing file is no failed write
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
                counts = write_bidding_day(conn, day.sale_date, rows, run_id=run_id, after_write=after_write)
                run.counts.fetched = day.served
                run.counts.rejected = day.rejected
                run.counts.inserted = counts.inserted
                run.counts.updated = counts.updated
                run.counts.deleted = counts.deleted
                run.counts.unchanged = counts.unchanged
                run.mark_success(conn)
            # Yielded after the commit, outside the sync's block: the caller's reporting is no part of it.
            yield WrittenBiddingDay(day, counts, tuple(top_by_quantity(rows)))
