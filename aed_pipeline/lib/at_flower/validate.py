"""A run's sale dates validated: the valid rows of each date, its rejected rows, and the verdict
of the three blocking checks, per date.

This is what ``flower_auction_validated`` computes. :func:`validate_flower_batch` types and
validates the rows of several whole dates together (one pandera pass over thousands of rows is far
cheaper than one per date), then splits them by date, because every date is judged, quarantined
and written on its own; :func:`validate_flower_days` judges a run's dates from one such batch, in
memory. :func:`validate_loaded_days` reads the served rows from the warehouse (refusing dates never
loaded) batch by batch, about :data:`BATCH_ROWS` rows at a time, quarantines each batch's rejected
rows, stores each date's valid rows in a file (``rows.py``) and judges the run once every batch is
in: the memory holds one batch, however many dates the run covers. The checks see exactly what
they saw over the whole run at once: duplicates and price invariants are judged within a date, and
the volume check on the volumes of every date (a few numbers each).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Generic, TypeVar

import pandas as pd
from sqlalchemy.engine import Connection, Engine

from aed_pipeline.lib.at_flower import SOURCE_NAME
from aed_pipeline.lib.at_flower.checks import (
    GroupVolume,
    VolumeAnomaly,
    VolumeRule,
    duplicate_keys,
    find_volume_anomalies,
    groups_failing_price_invariants,
    volume_history_dates,
    volumes_by_date,
)
from aed_pipeline.lib.at_flower.fetch import archived_origin
from aed_pipeline.lib.at_flower.records import ValidatedFlowerDay, plain_valid_rows, served_record, validate_flower_rows
from aed_pipeline.lib.at_flower.rows import StoredFlowerDay, ValidatedRowsStore
from aed_pipeline.lib.at_flower.tables import (
    PUBLIC_TABLE,
    known_volumes,
    loaded_sale_dates,
    read_public_rows,
    served_row_counts,
)
from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.lib.core.kst import date_span
from aed_pipeline.lib.core.sync_log import replace_rejected_records

__all__ = [
    "BATCH_ROWS",
    "BLOCKING_CHECKS",
    "CHECK_DUPLICATE_KEYS",
    "CHECK_PRICE_INVARIANTS",
    "CHECK_VOLUME",
    "DatesNeverLoaded",
    "FlowerBatch",
    "FlowerDaysValidation",
    "date_batches",
    "quarantine_rejected_rows",
    "refuse_dates_never_loaded",
    "validate_flower_batch",
    "validate_flower_days",
    "validate_loaded_days",
]

#: The blocking checks by name (the Dagster asset checks carry the same names).
CHECK_DUPLICATE_KEYS = "no_duplicate_keys"
CHECK_PRICE_INVARIANTS = "price_invariants_hold_in_every_group"
CHECK_VOLUME = "volume_within_weekday_baseline"
BLOCKING_CHECKS = (CHECK_DUPLICATE_KEYS, CHECK_PRICE_INVARIANTS, CHECK_VOLUME)

#: Served rows validated together by :func:`validate_loaded_days` (whole dates: a date of more
#: rows is a batch of its own). Large enough that pandera's fixed cost per pass stays small beside
#: the rows' (a year in batches of one date took ten times as long as in one pass), small enough
#: that a batch's frames are a few MB.
BATCH_ROWS = 10_000

Rejection = tuple[dict[str, Any], list[dict[str, Any]]]
#: A validated day in memory (its frame) or stored (its file).
Day = TypeVar("Day", ValidatedFlowerDay, StoredFlowerDay)


@dataclass
class FlowerBatch:
    """Several whole dates validated together: each date's valid rows and rejections, and what the
    blocking checks need of them (no verdict yet: the volume check needs every date of the run)."""

    #: Per date, ascending; ``blocking_failures`` still empty.
    days: dict[date, ValidatedFlowerDay]
    #: Per date: ``(the row as served, its failed checks)`` for ``rejected_records``.
    rejected: dict[date, list[Rejection]]
    duplicates: pd.DataFrame
    price_groups: pd.DataFrame
    volumes: dict[date, dict[int, GroupVolume]]


@dataclass
class FlowerDaysValidation(Generic[Day]):
    """The outcome for every date of a run (dates in ascending order)."""

    days: dict[date, Day]
    duplicates: pd.DataFrame
    price_groups: pd.DataFrame
    anomalies: list[VolumeAnomaly]
    #: Dates the volume check did not judge, and why.
    not_judged: dict[date, str]
    #: Check name → the dates that failed it.
    failed_dates: dict[str, list[date]] = field(default_factory=dict)
    #: Per date: ``(the row as served, its failed checks)``, when kept (:func:`validate_flower_days`;
    #: :func:`validate_loaded_days` quarantines them batch by batch instead).
    rejected: dict[date, list[Rejection]] = field(default_factory=dict)

    @property
    def served_rows(self) -> int:
        return sum(day.served for day in self.days.values())

    @property
    def valid_rows(self) -> int:
        return sum(day.valid for day in self.days.values())

    @property
    def rejected_rows(self) -> int:
        return sum(day.rejected for day in self.days.values())


def validate_flower_batch(raw: pd.DataFrame, sale_dates: Sequence[date], *, price_check_min_rows: int) -> FlowerBatch:
    """Type and validate the served rows ``raw`` (``public_bidding_flowers`` rows of ``sale_dates``,
    whole dates), split by date."""
    validation = validate_flower_rows(raw)
    typed = validation.typed
    valid = plain_valid_rows(validation)
    served_positions = typed.groupby("sale_date").indices
    valid_positions = valid.groupby("sale_date").indices

    days: dict[date, ValidatedFlowerDay] = {}
    rejected: dict[date, list[Rejection]] = {}
    for sale_date in sorted(sale_dates):
        labels = typed.index[served_positions.get(sale_date, [])]
        rejected[sale_date] = [
            (served_record(raw, label), validation.reasons[label]) for label in labels if label in validation.reasons
        ]
        rows = valid.iloc[valid_positions.get(sale_date, [])].reset_index(drop=True)
        days[sale_date] = ValidatedFlowerDay(
            sale_date=sale_date, rows=rows, served=len(labels), rejected=len(rejected[sale_date])
        )
    return FlowerBatch(
        days=days,
        rejected=rejected,
        duplicates=duplicate_keys(typed),
        price_groups=groups_failing_price_invariants(typed, min_rows=price_check_min_rows),
        volumes=volumes_by_date(valid, sale_dates),
    )


def _judge(
    days: Mapping[date, Day],
    duplicates: list[pd.DataFrame],
    price_groups: list[pd.DataFrame],
    volumes: Mapping[date, dict[int, GroupVolume]],
    *,
    history: dict[date, dict[int, GroupVolume]],
    rule: VolumeRule,
    today: date,
    non_auction: Callable[[date], str | None],
) -> FlowerDaysValidation[Day]:
    """The blocking checks' verdict on every date of the run, from its batches' findings."""
    all_duplicates = _concatenated(duplicates)
    all_price_groups = _concatenated(price_groups)
    anomalies, not_judged = find_volume_anomalies(volumes, history, rule, today=today, non_auction=non_auction)
    failed_dates = {
        CHECK_DUPLICATE_KEYS: sorted(set(all_duplicates["sale_date"])),
        CHECK_PRICE_INVARIANTS: sorted(set(all_price_groups["sale_date"])),
        CHECK_VOLUME: sorted({anomaly.sale_date for anomaly in anomalies}),
    }
    judged = {
        sale_date: replace(
            day, blocking_failures=tuple(name for name in BLOCKING_CHECKS if sale_date in failed_dates[name])
        )
        for sale_date, day in sorted(days.items())
    }
    return FlowerDaysValidation(
        days=judged,
        duplicates=all_duplicates,
        price_groups=all_price_groups,
        anomalies=anomalies,
        not_judged=not_judged,
        failed_dates=failed_dates,
    )


def _concatenated(frames: list[pd.DataFrame]) -> pd.DataFrame:
    # The batches' findings in date order, as one pass over every row would have listed them.
    found = [frame for frame in frames if len(frame)]
    if not found:
        return frames[0]
    return found[0] if len(found) == 1 else pd.concat(found, ignore_index=True)


def validate_flower_days(
    raw: pd.DataFrame,
    sale_dates: Sequence[date],
    *,
    history: dict[date, dict[int, GroupVolume]],
    rule: VolumeRule,
    today: date,
    non_auction: Callable[[date], str | None],
    price_check_min_rows: int = 3,
) -> FlowerDaysValidation[ValidatedFlowerDay]:
    """Validate the served rows ``raw`` (``public_bidding_flowers`` rows of ``sale_dates``) in
    memory, as one batch, keeping each date's rejected rows in the outcome.

    ``history`` holds the volumes of dates synced before this run (``known_volumes``); ``today``
    (KST) tells which dates are still in settlement; ``non_auction(d)`` names why ``d`` has no
    auction, or None.
    """
    batch = validate_flower_batch(raw, sale_dates, price_check_min_rows=price_check_min_rows)
    outcome = _judge(
        batch.days,
        [batch.duplicates],
        [batch.price_groups],
        batch.volumes,
        history=history,
        rule=rule,
        today=today,
        non_auction=non_auction,
    )
    return replace(outcome, rejected=batch.rejected)


def date_batches(row_counts: Mapping[date, int], sale_dates: Sequence[date], *, max_rows: int) -> list[list[date]]:
    """``sale_dates`` (ascending) cut into runs of consecutive dates of at most ``max_rows`` served
    rows each (``row_counts``; a date missing from it has none); a larger date is a batch alone."""
    batches: list[list[date]] = []
    rows = 0
    for sale_date in sale_dates:
        count = row_counts.get(sale_date, 0)
        if not batches or rows + count > max_rows:
            batches.append([])
            rows = 0
        batches[-1].append(sale_date)
        rows += count
    return batches


class DatesNeverLoaded(Exception):
    """Sale dates of the run whose ``public_bidding_flowers`` slice no successful sync wrote."""

    def __init__(self, dates: Sequence[date]):
        self.dates = sorted(dates)
        shown = ", ".join(d.isoformat() for d in self.dates[:10]) + (" …" if len(self.dates) > 10 else "")
        super().__init__(
            f"{PUBLIC_TABLE} was never loaded for {date_span(self.dates)} ({shown}): materialise it "
            "for these dates first (an empty slice would wipe them downstream)"
        )


def refuse_dates_never_loaded(conn: Connection, sale_dates: Sequence[date]) -> None:
    """Raise :class:`DatesNeverLoaded` when a date of ``sale_dates`` (ascending) was never loaded:
    its empty slice is not "no auction", and validating it would wipe the date downstream."""
    never_loaded = set(sale_dates) - loaded_sale_dates(conn, sale_dates[0], sale_dates[-1])
    if never_loaded:
        raise DatesNeverLoaded(sorted(never_loaded))


def validate_loaded_days(
    engine: Engine,
    archive: RawArchive,
    sale_dates: Sequence[date],
    *,
    store: ValidatedRowsStore,
    rule: VolumeRule,
    today: date,
    non_auction: Callable[[date], str | None],
    run_id: str | None,
    price_check_min_rows: int = 3,
    batch_rows: int = BATCH_ROWS,
) -> FlowerDaysValidation[StoredFlowerDay]:
    """The served rows of ``sale_dates`` (ascending, one contiguous range) validated about
    ``batch_rows`` rows at a time, and judged against the volumes synced before them.

    Each batch's rejected rows replace its dates' ``rejected_records`` (each date in its own
    transaction, so a re-run does not pile them up) and each date's valid rows go to ``store``;
    each day's ``source`` is read from the archive's manifests. Raises :class:`DatesNeverLoaded`
    before reading any row.
    """
    with engine.connect() as conn:
        refuse_dates_never_loaded(conn, sale_dates)
        row_counts = served_row_counts(conn, sale_dates[0], sale_dates[-1])
        history = known_volumes(conn, *volume_history_dates(sale_dates, rule))
    stored: dict[date, StoredFlowerDay] = {}
    duplicates: list[pd.DataFrame] = []
    price_groups: list[pd.DataFrame] = []
    volumes: dict[date, dict[int, GroupVolume]] = {}
    for batch_dates in date_batches(row_counts, sale_dates, max_rows=batch_rows):
        with engine.connect() as conn:
            raw = read_public_rows(conn, batch_dates[0], batch_dates[-1])
        batch = validate_flower_batch(raw, batch_dates, price_check_min_rows=price_check_min_rows)
        del raw  # the batch's served text: the largest of its frames
        quarantine_rejected_rows(engine, batch.rejected, run_id=run_id)
        for sale_date, day in batch.days.items():
            # The derived tables report the origin (live, simulator) of the pages they were built from.
            stored[sale_date] = store.store(replace(day, source=archived_origin(archive, sale_date) or "unknown"))
        duplicates.append(batch.duplicates)
        price_groups.append(batch.price_groups)
        volumes.update(batch.volumes)
    return _judge(
        stored, duplicates, price_groups, volumes, history=history, rule=rule, today=today, non_auction=non_auction
    )


def quarantine_rejected_rows(engine: Engine, rejected: Mapping[date, list[Rejection]], *, run_id: str | None) -> None:
    """Replace each date's ``rejected_records`` with its rejected rows (``rejected``: every date of
    a batch, also those without any), each date in its own transaction."""
    with engine.connect() as conn:
        for sale_date, rows in rejected.items():
            # Each date's quarantine is replaced in its own transaction: a re-run does not pile up.
            with conn.begin():
                replace_rejected_records(
                    conn, source=SOURCE_NAME, partition_key=sale_date.isoformat(), run_id=run_id, rejected=rows
                )
