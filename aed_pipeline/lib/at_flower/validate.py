"""A run's sale dates validated as a whole: the valid rows of each date, its rejected rows, and
the verdict of the three blocking checks, per date.

This is what ``flower_auction_validated`` computes, as one plain function: the rows of all the
run's dates are typed and validated together (one pandera pass for a year is far cheaper than 365),
then split by date, because every date is judged, quarantined and written on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd

from aed_pipeline.lib.at_flower.checks import (
    GroupVolume,
    VolumeAnomaly,
    VolumeRule,
    duplicate_keys,
    find_volume_anomalies,
    groups_failing_price_invariants,
    volumes_by_date,
)
from aed_pipeline.lib.at_flower.records import ValidatedFlowerDay, plain_valid_rows, served_record, validate_flower_rows

__all__ = [
    "BLOCKING_CHECKS",
    "CHECK_DUPLICATE_KEYS",
    "CHECK_PRICE_INVARIANTS",
    "CHECK_VOLUME",
    "FlowerDaysValidation",
    "validate_flower_days",
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
