"""The blocking checks of the flower sync: when a whole sale date must not be written.

A bad row is only rejected (:mod:`aed_pipeline.lib.at_flower.records`); these checks look at the
date as a whole and, when one fails, stop the table write for the run (the previous data stays):

* **duplicate keys**: (date, group, 품목, 품종, 등급) served more than once. The API groups by that
  key, so a repeat means the response (or the paging) is broken, and either copy could be wrong.
* **price invariants across a whole group**: every priced row of a group violating
  ``min ≤ avg ≤ max`` or ``avg ≈ totAmt/totQty`` is a systematic fault (swapped or shifted
  columns), not a few bad rows.
* **volume anomaly**: a group's rows or total quantity far from the trailing mean of the same
  weekday (:class:`VolumeRule`).

Each function is plain pandas/Python, testable without Dagster or a database.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pandas as pd

from aed_pipeline.lib.at_flower.client import FLOWER_GUBN_NAMES
from aed_pipeline.lib.at_flower.records import KEY_COLUMNS, average_matches_total, prices_ordered

__all__ = [
    "GroupVolume",
    "VolumeAnomaly",
    "VolumeRule",
    "duplicate_keys",
    "find_volume_anomalies",
    "groups_failing_price_invariants",
    "volume_history_dates",
    "volumes_by_date",
]


# --------------------------------------------------------------------------- duplicates


def duplicate_keys(typed: pd.DataFrame) -> pd.DataFrame:
    """Keys served more than once: one row per key with ``copies``; empty when there are none.

    Judged on every served row with a complete key (trimmed names), including rows rejected for
    other reasons: what matters is what the source sent.
    """
    keyed = typed.dropna(subset=list(KEY_COLUMNS))
    repeated = keyed[keyed.duplicated(list(KEY_COLUMNS), keep=False)]
    if repeated.empty:
        return pd.DataFrame(columns=[*KEY_COLUMNS, "copies"])
    counts = repeated.groupby(list(KEY_COLUMNS), sort=True).size().rename("copies").reset_index()
    return counts


# --------------------------------------------------------------------------- price invariants


def groups_failing_price_invariants(typed: pd.DataFrame, *, min_rows: int = 3) -> pd.DataFrame:
    """(date, group) whose every priced row breaks a price invariant.

    A row is *priced* when its five amounts are integers; it *fails* when ``min ≤ avg ≤ max`` or
    ``avg ≈ round(totAmt / totQty)`` does not hold. Groups with fewer than ``min_rows`` priced
    rows are not judged: one or two bad rows of a tiny group (춘란 often has a handful) say
    nothing about the response as a whole, and are rejected row by row anyway.

    Columns: ``sale_date``, ``flower_gubn``, ``priced_rows``, ``failing_rows``.
    """
    columns = ["sale_date", "flower_gubn", "priced_rows", "failing_rows"]
    amounts = ["max_amt", "min_amt", "avg_amt", "tot_amt", "tot_qty"]
    priced = typed[typed[amounts].notna().all(axis=1)]
    if priced.empty:
        return pd.DataFrame(columns=columns)
    failing = ~(prices_ordered(priced).astype(bool) & average_matches_total(priced).astype(bool))
    summary = (
        pd.DataFrame({"sale_date": priced["sale_date"], "flower_gubn": priced["flower_gubn"], "failing": failing})
        .groupby(["sale_date", "flower_gubn"], sort=True)["failing"]
        .agg(priced_rows="size", failing_rows="sum")
        .reset_index()
    )
    blocked = summary[(summary["priced_rows"] >= min_rows) & (summary["failing_rows"] == summary["priced_rows"])]
    return blocked[columns].reset_index(drop=True)


# --------------------------------------------------------------------------- volume anomaly


@dataclass(frozen=True)
class GroupVolume:
    """How much one flower group traded on one sale date (valid rows only)."""

    rows: int
    quantity: int


#: Volumes of the sale dates known so far: date → group → volume (a missing group traded nothing).
Volumes = Mapping[date, Mapping[int, GroupVolume]]


@dataclass(frozen=True)
class VolumeRule:
    """When a group's volume on a sale date is an anomaly.

    The baseline of a group on date D is the mean rows and mean total quantity of the same group
    on the same weekday in the ``history_weeks`` weeks before D, over the dates that are known
    (synced earlier or earlier in the same run) and were auction days. The market's volumes
    differ a lot by weekday (절화: 800–1,400 rows on Mon/Wed/Fri, a few dozen on other days), so
    only the same weekday is comparable; months and seasons move prices far more than volumes.

    D is anomalous for a group when its rows or quantity fall below ``low_ratio`` × or rise above
    ``high_ratio`` × the baseline. Not judged: a date without an auction (Sunday, public holiday,
    a declared closure); a date with fewer than ``min_history_dates`` comparable dates; a group
    whose baseline has fewer than ``min_baseline_rows`` rows (small groups swing by factors of
    several from week to week: 춘란 trades 0–12 rows); and, for the low side only, dates in
    settlement (the newest ``unsettled_days`` sale dates), which the API fills during the day.
    The defaults hold over a simulated year without a false alarm (see the tests and
    ``bench/flower_backfill.py``) while a day that lost most of its rows, or doubled, stands out.
    """

    history_weeks: int = 8
    min_history_dates: int = 3
    min_baseline_rows: float = 50.0
    low_ratio: float = 0.3
    high_ratio: float = 3.0
    unsettled_days: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.low_ratio < 1 < self.high_ratio:
            raise ValueError("volume ratios must satisfy 0 <= low_ratio < 1 < high_ratio")
        if self.history_weeks < 1 or self.min_history_dates < 1:
            raise ValueError("history_weeks and min_history_dates must be at least 1")


@dataclass(frozen=True)
class VolumeAnomaly:
    """A group whose volume on a sale date is outside the rule's band."""

    sale_date: date
    flower_gubn: int
    measure: str  # "rows" or "quantity"
    value: int
    baseline: float
    ratio: float
    history_dates: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "sale_date": self.sale_date.isoformat(),
            "group": FLOWER_GUBN_NAMES.get(self.flower_gubn, str(self.flower_gubn)),
            "measure": self.measure,
            "value": self.value,
            "baseline": round(self.baseline, 1),
            "ratio": round(self.ratio, 3),
            "history_dates": self.history_dates,
        }


def volumes_by_date(valid_rows: pd.DataFrame, sale_dates: Collection[date]) -> dict[date, dict[int, GroupVolume]]:
    """Rows and total quantity per date of ``sale_dates`` and group, from the valid rows (every
    group present; a group without rows traded nothing)."""
    volumes = {d: {gubn: GroupVolume(0, 0) for gubn in FLOWER_GUBN_NAMES} for d in sale_dates}
    if len(valid_rows):
        grouped = valid_rows.groupby(["sale_date", "flower_gubn"])["tot_qty"].agg(["size", "sum"])
        for (sale_date, gubn), rows, quantity in grouped.itertuples(name=None):
            if sale_date in volumes:
                volumes[sale_date][int(gubn)] = GroupVolume(int(rows), int(quantity))
    return volumes


def find_volume_anomalies(
    run_days: Volumes,
    history: Volumes,
    rule: VolumeRule,
    *,
    today: date,
    non_auction: Callable[[date], str | None],
) -> tuple[list[VolumeAnomaly], dict[date, str]]:
    """Judge every date of ``run_days`` against the same weekday's trailing baseline.

    ``history`` holds the volumes of dates synced before this run; the run's own earlier dates
    count too (and win over ``history`` for the same date). ``non_auction(d)`` names why ``d``
    has no auction, or None. Returns the anomalies and, for each date that was not judged,
    why (for the check's metadata).
    """
    known: dict[date, Mapping[int, GroupVolume]] = {**history, **run_days}
    anomalies: list[VolumeAnomaly] = []
    not_judged: dict[date, str] = {}
    unsettled_from = today - timedelta(days=rule.unsettled_days - 1)
    for sale_date in sorted(run_days):
        reason = non_auction(sale_date)
        if reason:
            not_judged[sale_date] = f"no auction ({reason})"
            continue
        baseline_dates = [
            earlier
            for week in range(1, rule.history_weeks + 1)
            if (earlier := sale_date - timedelta(weeks=week)) in known and not non_auction(earlier)
        ]
        if len(baseline_dates) < rule.min_history_dates:
            not_judged[sale_date] = (
                f"{len(baseline_dates)} earlier same-weekday auction dates known, {rule.min_history_dates} needed"
            )
            continue
        in_settlement = rule.unsettled_days > 0 and sale_date >= unsettled_from
        volumes = run_days[sale_date]
        for gubn in FLOWER_GUBN_NAMES:
            past = [known[d].get(gubn, GroupVolume(0, 0)) for d in baseline_dates]
            mean_rows = sum(v.rows for v in past) / len(past)
            if mean_rows < rule.min_baseline_rows:
                continue
            mean_quantity = sum(v.quantity for v in past) / len(past)
            current = volumes.get(gubn, GroupVolume(0, 0))
            for measure, value, baseline in (
                ("rows", current.rows, mean_rows),
                ("quantity", current.quantity, mean_quantity),
            ):
                if baseline <= 0:
                    continue
                ratio = value / baseline
                too_low = ratio < rule.low_ratio and not in_settlement
                if too_low or ratio > rule.high_ratio:
                    anomalies.append(
                        VolumeAnomaly(sale_date, gubn, measure, value, baseline, ratio, len(baseline_dates))
                    )
    return anomalies, not_judged


def volume_history_dates(run_dates: Collection[date], rule: VolumeRule) -> tuple[date, date]:
    """The range of earlier dates whose volumes the rule may need for ``run_dates`` (not empty)."""
    return min(run_dates) - timedelta(weeks=rule.history_weeks), max(run_dates) - timedelta(weeks=1)
