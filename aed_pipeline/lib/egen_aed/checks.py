"""Snapshot-level integrity checks of the AED registry: is this day's snapshot as a whole believable?

Record-level problems quarantine single records (``aed_records``); these checks look at the whole
snapshot and, when one fails, stop the write so that a corrupted day never reaches ``aed_data``
(DESIGN.md §3, stages 2 and 4). Each returns a :class:`CheckOutcome` with counts and a few failing
examples for the Dagster UI. The comparisons are against the previous *applied* snapshot (a
rejected day is never the reference for the next one).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import pyarrow
import pyarrow.compute as pa_compute

from aed_pipeline.lib.core.archive import PageSetManifest
from aed_pipeline.lib.core.display import listed, shown
from aed_pipeline.lib.egen_aed.records import (
    CURRENT_SIDO_NAMES,
    KEY_COLUMNS,
    KOREA_LATITUDE,
    KOREA_LONGITUDE,
    region_key,
)

EXAMPLES = 5


@dataclass(frozen=True)
class IntegrityThresholds:
    """How far a snapshot may move before it is held back; every limit is a share (0.10 = 10 %)."""

    row_count_tolerance: float = 0.10
    max_null_share_increase: float = 0.05
    max_null_share_without_history: float = 0.5
    min_share_inside_korea: float = 0.95
    max_unknown_region_share: float = 0.001


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreviousSnapshot:
    """The newest applied snapshot before the one being checked (``aed_snapshots``)."""

    partition_date: str
    valid: int
    profile: Mapping[str, Any]


def inside_korea(frame: pd.DataFrame) -> pd.Series:
    """Rows whose coordinates lie in the box around Korea (rows without coordinates are not)."""
    lat, lon = frame["latitude"], frame["longitude"]
    return lat.between(*KOREA_LATITUDE) & lon.between(*KOREA_LONGITUDE)


@dataclass(frozen=True)
class SnapshotFigures:
    """What the whole-snapshot checks need to know of the valid rows: counts and a few examples.

    Plain values only, so the figures of a validated snapshot can be kept beside its rows file.
    """

    rows: int
    nulls: dict[str, int]
    inside: int
    outside_examples: list[str]
    unknown_pairs: list[tuple[str, str, int]]  # (시도, 시군구, devices), most devices first
    without_region: int
    duplicated_serials: list[tuple[str, int]]  # (serial, records), most records first

    def profile(self) -> dict[str, Any]:
        """The figures the next snapshot is compared with: rows and the null share of key columns."""
        rows = self.rows
        null_shares = {c: (self.nulls[c] / rows if rows else 0.0) for c in KEY_COLUMNS}
        share_inside = self.inside / rows if rows else 0.0
        return {"rows": rows, "null_shares": null_shares, "inside_korea_share": share_inside}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SnapshotFigures:
        return cls(
            rows=data["rows"],
            nulls=dict(data["nulls"]),
            inside=data["inside"],
            outside_examples=list(data["outside_examples"]),
            unknown_pairs=[(s, g, n) for s, g, n in data["unknown_pairs"]],
            without_region=data["without_region"],
            duplicated_serials=[(s, n) for s, n in data["duplicated_serials"]],
        )


class SnapshotTally:
    """Running figures of a snapshot's valid rows, fed a page at a time.

    Only counts, a few examples and the serials (as compact Arrow strings) are kept, so checking a
    snapshot ten times larger costs no more memory than its serials.
    """

    def __init__(self, known_pairs: Collection[tuple[str, str]]) -> None:
        self.known_pairs = set(known_pairs)
        self.rows = 0
        self.nulls = dict.fromkeys(KEY_COLUMNS, 0)
        self.inside = 0
        self.outside_examples: list[str] = []
        self.unknown_pairs: Counter[tuple[str, str]] = Counter()
        self.without_region = 0
        self._serials: list[pyarrow.Array] = []

    def add(self, frame: pd.DataFrame) -> None:
        """Count one page's valid rows."""
        self.rows += len(frame)
        for column in KEY_COLUMNS:
            self.nulls[column] += int(frame[column].isna().sum())
        inside = inside_korea(frame)
        self.inside += int(inside.sum())
        if len(self.outside_examples) < EXAMPLES:
            outside = frame.loc[~inside, ["equipment_serial", "latitude", "longitude"]].head(EXAMPLES)
            self.outside_examples += [
                f"{r.equipment_serial} ({shown(r.latitude)}, {shown(r.longitude)})" for r in outside.itertuples()
            ]
            del self.outside_examples[EXAMPLES:]
        pairs = frame[["sido", "gugun"]].dropna()
        for sido, gugun in zip(pairs["sido"].tolist(), pairs["gugun"].tolist()):
            if sido not in CURRENT_SIDO_NAMES or region_key(sido, gugun) not in self.known_pairs:
                self.unknown_pairs[(sido, gugun)] += 1
        self.without_region += int(frame["sido"].isna().sum())
        self._serials.append(pyarrow.array(frame["equipment_serial"], type=pyarrow.string()))

    def figures(self) -> SnapshotFigures:
        counts = pa_compute.value_counts(pyarrow.chunked_array(self._serials, type=pyarrow.string()))
        repeated = pa_compute.greater(counts.field("counts"), 1)
        duplicated = zip(
            counts.field("values").filter(repeated).to_pylist(), counts.field("counts").filter(repeated).to_pylist()
        )
        return SnapshotFigures(
            rows=self.rows,
            nulls=dict(self.nulls),
            inside=self.inside,
            outside_examples=list(self.outside_examples),
            unknown_pairs=[(s, g, n) for (s, g), n in self.unknown_pairs.most_common()],
            without_region=self.without_region,
            duplicated_serials=sorted(duplicated, key=lambda item: -item[1]),
        )


def check_unique_serials(figures: SnapshotFigures) -> CheckOutcome:
    duplicates = figures.duplicated_serials
    records = sum(n for _, n in duplicates)
    return CheckOutcome(
        "serials_unique",
        passed=not duplicates,
        description=(
            "every equipment_serial appears once"
            if not duplicates
            else f"{len(duplicates)} serials appear more than once ({records} records)"
        ),
        metadata={
            "duplicated_serials": len(duplicates),
            "records_with_duplicated_serial": records,
            "examples": listed((f"{s} ×{n}" for s, n in duplicates[:EXAMPLES]), ", "),
        },
    )


def check_records_match_total(manifest: PageSetManifest) -> CheckOutcome:
    missing = manifest.missing_pages()
    passed = manifest.total_count is not None and not missing and manifest.records == manifest.total_count
    if passed:
        description = f"{manifest.records} records fetched = totalCount"
    elif missing:
        description = f"pages missing from the archive: {missing[:EXAMPLES]}"
    else:
        description = f"{manifest.records} records fetched but the API announced totalCount {manifest.total_count}"
    per_page = {n: p.records for n, p in sorted(manifest.pages.items())}
    expected_per_page = manifest.request.get("num_of_rows")
    short = [n for n, r in per_page.items() if expected_per_page and r < expected_per_page and n != max(per_page)]
    return CheckOutcome(
        "records_match_total_count",
        passed=passed,
        description=description,
        metadata={
            "fetched": manifest.records,
            "total_count": manifest.total_count,
            "pages": len(manifest.pages),
            "expected_pages": manifest.expected_pages,
            "short_pages": ", ".join(str(n) for n in short[:EXAMPLES]),
        },
    )


def check_row_count(valid_rows: int, previous: PreviousSnapshot | None, tolerance: float) -> CheckOutcome:
    if previous is None or previous.valid == 0:
        return CheckOutcome(
            "row_count_stable",
            passed=True,
            description="no earlier applied snapshot to compare with",
            metadata={"rows": valid_rows},
        )
    change = (valid_rows - previous.valid) / previous.valid
    passed = abs(change) <= tolerance
    return CheckOutcome(
        "row_count_stable",
        passed=passed,
        description=(
            f"{valid_rows} valid rows vs {previous.valid} on {previous.partition_date} "
            f"({change:+.1%}; allowed ±{tolerance:.0%})"
        ),
        metadata={
            "rows": valid_rows,
            "previous_rows": previous.valid,
            "previous_partition": previous.partition_date,
            "change_share": round(change, 4),
            "tolerance": tolerance,
        },
    )


def check_column_collapse(
    profile: Mapping[str, Any], previous: PreviousSnapshot | None, thresholds: IntegrityThresholds
) -> CheckOutcome:
    shares: Mapping[str, float] = profile["null_shares"]
    before: Mapping[str, float] = previous.profile.get("null_shares", {}) if previous else {}
    collapsed: dict[str, tuple[float | None, float]] = {}
    for column, share in shares.items():
        if column in before:
            if share - before[column] > thresholds.max_null_share_increase:
                collapsed[column] = (before[column], share)
        elif share > thresholds.max_null_share_without_history:
            collapsed[column] = (None, share)
    return CheckOutcome(
        "no_column_collapse",
        passed=not collapsed,
        description=(
            "no key column lost its values"
            if not collapsed
            else "null share jumped in "
            + ", ".join(f"{c} ({'?' if b is None else f'{b:.1%}'} → {a:.1%})" for c, (b, a) in collapsed.items())
        ),
        metadata={
            "null_shares": {c: round(s, 4) for c, s in shares.items()},
            "previous_null_shares": {c: round(s, 4) for c, s in before.items()},
            "collapsed_columns": ", ".join(collapsed),
            "max_increase": thresholds.max_null_share_increase,
        },
    )


def check_inside_korea(figures: SnapshotFigures, min_share: float) -> CheckOutcome:
    share = figures.inside / figures.rows if figures.rows else 0.0
    return CheckOutcome(
        "coordinates_inside_korea",
        passed=share >= min_share,
        description=f"{share:.2%} of devices have coordinates inside Korea (at least {min_share:.0%} required)",
        metadata={
            "inside_share": round(share, 4),
            "outside_or_missing": figures.rows - figures.inside,
            "examples": listed(figures.outside_examples),
        },
    )


def check_region_pairs(figures: SnapshotFigures, max_share: float) -> CheckOutcome:
    """Devices whose 시도/시군구 is not in the reference (devices without a region are not counted)."""
    unknown = sum(n for _, _, n in figures.unknown_pairs)
    share = unknown / figures.rows if figures.rows else 0.0
    return CheckOutcome(
        "region_pairs_known",
        passed=share <= max_share,
        description=f"{unknown} devices ({share:.3%}) in a 시도/시군구 missing from the reference "
        f"(at most {max_share:.2%} allowed)",
        metadata={
            "unknown_devices": unknown,
            "unknown_pairs": len(figures.unknown_pairs),
            "without_region": figures.without_region,
            "examples": listed(f"{s} {g} ×{n}" for s, g, n in figures.unknown_pairs[:EXAMPLES]),
        },
    )
