"""A run's sale dates validated as a whole: the valid rows of each date, its rejected rows, and
the verdict of the three blocking checks, per date.

This is what ``flower_auction_validated`` computes: :func:`validate_flower_days` as one plain
function, where the rows of all the run's dates are typed and validated together (one pandera pass
for a year is far cheaper than 365), then split by date, because every date is judged, quarantined
and written on its own; :func:`validate_loaded_days` reads its input from the warehouse (refusing
dates never loaded), and :func:`quarantine_rejected_rows` writes the rejected rows per date.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

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
from aed_pipeline.lib.at_flower.tables import PUBLIC_TABLE, known_volumes, loaded_sale_dates, read_public_rows
from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.lib.core.kst import date_span
from aed_pipeline.lib.core.sync_log import replace_rejected_records

__all__ = [
    "BLOCKING_CHECKS",
    "CHECK_DUPLICATE_KEYS",
    "CHECK_PRICE_INVARIANTS",
    "CHECK_VOLUME",
    "DatesNeverLoaded",
    "FlowerDaysValidation",
    "quarantine_rejected_rows",
    "refuse_dates_never_loaded",
    "validate_flower_days",
    "validate_loaded_days",
]

#: The blocking checks by name (the Dagster asset checks carry the same names).
CHECK_DUPLICATE_KEYS = "no_duplicate_keys"
CHECK_PRICE_INVARIANTS = "price_invariants_hold_in_every_group"
CHECK_VOLUME = "volume_within_weekday_baseline"
BLOCKING_CHECKS = (CHECK_DUPLICATE_KEYS, CHECK_PRICE_INVARIANTS, CHECK_VOLUME)

Rejection = tuple[dict[str, Any], list[dict[str, Any]]]


@dataclass
class FlowerDaysValidation:
    """The outcome for every date of a run (dates in ascending order)."""

    days: dict[date, ValidatedFlowerDay]
    #: Per date: ``(the row as served, its failed checks)`` for ``rejected_records``.
    rejected: dict[date, list[Rejection]]
    duplicates: pd.DataFrame
    price_groups: pd.DataFrame
    anomalies: list[VolumeAnomaly]
    #: Dates the volume check did not judge, and why.
    not_judged: dict[date, str]
    #: Check name → the dates that failed it.
    failed_dates: dict[str, list[date]] = field(default_factory=dict)

    @property
    def served_rows(self) -> int:
        return sum(day.served for day in self.days.values())

    @property
    def valid_rows(self) -> int:
        return sum(len(day.rows) for day in self.days.values())

    @property
    def rejected_rows(self) -> int:
        return sum(len(rows) for rows in self.rejected.values())


def validate_flower_days(
    raw: pd.DataFrame,
    sale_dates: Sequence[date],
    *,
    history: dict[date, dict[int, GroupVolume]],
    rule: VolumeRule,
    today: date,
    non_auction: Callable[[date], str | None],
    price_check_min_rows: int = 3,
) -> FlowerDaysValidation:
    """Validate the served rows ``raw`` (``public_bidding_flowers`` rows of ``sale_dates``).

    ``history`` holds the volumes of dates synced before this run (``known_volumes``); ``today``
    (KST) tells which dates are still in settlement; ``non_auction(d)`` names why ``d`` has no
    auction, or None.
    """
    validation = validate_flower_rows(raw)
    typed = validation.typed
    valid = plain_valid_rows(validation)
    served_positions = typed.groupby("sale_date").indices
    valid_positions = valid.groupby("sale_date").indices

    duplicates = duplicate_keys(typed)
    price_groups = groups_failing_price_invariants(typed, min_rows=price_check_min_rows)
    anomalies, not_judged = find_volume_anomalies(
        volumes_by_date(valid, sale_dates), history, rule, today=today, non_auction=non_auction
    )
    failed_dates = {
        CHECK_DUPLICATE_KEYS: sorted(set(duplicates["sale_date"])),
        CHECK_PRICE_INVARIANTS: sorted(set(price_groups["sale_date"])),
        CHECK_VOLUME: sorted({anomaly.sale_date for anomaly in anomalies}),
    }

    days: dict[date, ValidatedFlowerDay] = {}
    rejected: dict[date, list[Rejection]] = {}
    for sale_date in sorted(sale_dates):
        labels = typed.index[served_positions.get(sale_date, [])]
        rejected[sale_date] = [
            (served_record(raw, label), validation.reasons[label]) for label in labels if label in validation.reasons
        ]
        rows = valid.iloc[valid_positions.get(sale_date, [])].reset_index(drop=True)
        days[sale_date] = ValidatedFlowerDay(
            sale_date=sale_date,
            rows=rows,
            served=len(labels),
            rejected=len(rejected[sale_date]),
            blocking_failures=tuple(name for name in BLOCKING_CHECKS if sale_date in failed_dates[name]),
        )
    return FlowerDaysValidation(
        days=days,
        rejected=rejected,
        duplicates=duplicates,
        price_groups=price_groups,
        anomalies=anomalies,
        not_judged=not_judged,
        failed_dates=failed_dates,
    )


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
    rule: VolumeRule,
    today: date,
    non_auction: Callable[[date], str | None],
    price_check_min_rows: int = 3,
) -> FlowerDaysValidation:
    """:func:`validate_flower_days` over the served rows of ``sale_dates`` (ascending, one
    contiguous range) and the volumes synced before them, each day's ``source`` read from the
    archive's manifests. Raises :class:`DatesNeverLoaded` before reading any row."""
    with engine.connect() as conn:
        refuse_dates_never_loaded(conn, sale_dates)
        raw = read_public_rows(conn, sale_dates[0], sale_dates[-1])
        history = known_volumes(conn, *volume_history_dates(sale_dates, rule))
    outcome = validate_flower_days(
        raw,
        sale_dates,
        history=history,
        rule=rule,
        today=today,
        non_auction=non_auction,
        price_check_min_rows=price_check_min_rows,
    )
    # The derived tables report the origin (live, simulator) of the pages they were built from.
    sources = {d: archived_origin(archive, d) or "unknown" for d in outcome.days}
    return replace(outcome, days={d: replace(day, source=sources[d]) for d, day in outcome.days.items()})


def quarantine_rejected_rows(
    engine: Engine, outcome: FlowerDaysValidation, *, run_id: str | None
) -> Iterator[ValidatedFlowerDay]:
    """Replace each date's ``rejected_records`` with its rejected rows, yielding the date's
    validated day once committed."""
    with engine.connect() as conn:
        for sale_date, day in outcome.days.items():
            # Each date's quarantine is replaced in its own transaction: a re-run does not pile up.
            with conn.begin():
                replace_rejected_records(
                    conn,
                    source=SOURCE_NAME,
                    partition_key=sale_date.isoformat(),
                    run_id=run_id,
                    rejected=outcome.rejected[sale_date],
                )
            yield day
