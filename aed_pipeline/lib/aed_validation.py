"""Validating one archived AED snapshot: parse the archived pages, type the records, check the whole.

No network: the pages come from the raw archive, verified against their sha256. Pages are parsed and
validated one at a time, so only one page's records exist as dicts at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from aed_pipeline.lib.aed_integrity import (
    CheckOutcome,
    IntegrityThresholds,
    PreviousSnapshot,
    check_column_collapse,
    check_inside_korea,
    check_records_match_total,
    check_region_pairs,
    check_row_count,
    check_unique_serials,
    snapshot_profile,
)
from aed_pipeline.lib.aed_records import validate_records
from aed_pipeline.lib.aed_snapshot import ARCHIVE_SOURCE, PAGE_SET, SnapshotUnavailable
from aed_pipeline.lib.aed_sync import ValidatedAedSnapshot
from aed_pipeline.lib.archive import RawArchive
from aed_pipeline.lib.egen import OPERATION_FULL_DOWN, parse_egen_response

# The checks that stop the write when they fail (each is a blocking Dagster asset check).
BLOCKING_CHECKS = (
    "serials_unique",
    "records_match_total_count",
    "row_count_stable",
    "no_column_collapse",
    "coordinates_inside_korea",
    "region_pairs_known",
)


@dataclass
class SnapshotValidation:
    snapshot: ValidatedAedSnapshot
    checks: list[CheckOutcome]
    rejected: list[tuple[dict[str, Any], list[dict[str, Any]]]]
    region_from_address: int


def validate_archived_snapshot(
    archive: RawArchive,
    partition: date,
    *,
    health_centers: Mapping[tuple[str, str], str],
    previous: PreviousSnapshot | None,
    thresholds: IntegrityThresholds = IntegrityThresholds(),
) -> SnapshotValidation:
    """Parse, type and check the archived snapshot of ``partition``."""
    manifest = archive.read_manifest(ARCHIVE_SOURCE, partition.isoformat(), PAGE_SET)
    if manifest is None or not manifest.pages:
        raise SnapshotUnavailable(
            f"no archived e-gen snapshot for {partition.isoformat()}: materialise aed_raw_snapshot first"
        )
    frames: list[pd.DataFrame] = []
    rejected: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    fetched = derived = 0
    for page_no, raw in archive.iter_pages(manifest):
        parsed = parse_egen_response(raw, response_type=manifest.format, operation=OPERATION_FULL_DOWN, page=page_no)
        result = validate_records(parsed.records, health_centers)
        frames.append(result.frame)
        rejected.extend(result.rejected)
        fetched += result.fetched
        derived += result.region_from_address
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    profile = snapshot_profile(frame)
    checks = [
        check_unique_serials(frame),
        check_records_match_total(manifest),
        check_row_count(len(frame), previous, thresholds.row_count_tolerance),
        check_column_collapse(profile, previous, thresholds),
        check_inside_korea(frame, thresholds.min_share_inside_korea),
        check_region_pairs(frame, health_centers.keys(), thresholds.max_unknown_region_share),
    ]
    snapshot = ValidatedAedSnapshot(
        partition_date=partition,
        frame=frame,
        fetched=fetched,
        total_count=manifest.total_count,
        rejected=len(rejected),
        profile=profile,
        archive_ref=archive.location(ARCHIVE_SOURCE, partition.isoformat(), PAGE_SET),
        archive_digest=manifest.digest(),
        origin=manifest.origin,
        blocking_failures=[c.name for c in checks if not c.passed and c.name in BLOCKING_CHECKS],
    )
    return SnapshotValidation(snapshot, checks, rejected, derived)
