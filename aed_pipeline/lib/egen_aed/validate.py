"""Validating one archived AED snapshot: parse the archived pages, type the records, check the whole.

No network: the pages come from the raw archive, verified against their sha256, or, when the fetch
kept its parse of a page (``parsed.py``), from that parse of the same bytes. Pages are parsed,
validated and written to the validated rows file one at a time, and the whole-snapshot checks work
from running figures, so memory holds one page, never the snapshot.

Validation is a pure function of the archived pages, the health-centre reference and this code, so
its result (the rows file, the figures and the quarantined records) is kept under a key of the
three and reused when the same snapshot is validated again (a re-run of a day, a retry): only the
checks against the previous snapshot and the thresholds are evaluated anew.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from aed_pipeline.lib.core.archive import PageSetManifest, RawArchive
from aed_pipeline.lib.core.files import write_atomically
from aed_pipeline.lib.egen_aed.checks import (
    CheckOutcome,
    IntegrityThresholds,
    PreviousSnapshot,
    SnapshotFigures,
    SnapshotTally,
    check_column_collapse,
    check_inside_korea,
    check_records_match_total,
    check_region_pairs,
    check_row_count,
    check_unique_serials,
)
from aed_pipeline.lib.egen_aed.client import OPERATION_FULL_DOWN, parse_egen_response
from aed_pipeline.lib.egen_aed.fetch import ARCHIVE_SOURCE, PAGE_SET, SnapshotUnavailable
from aed_pipeline.lib.egen_aed.parsed import ParsedPages, parsing_code_digest
from aed_pipeline.lib.egen_aed.records import records_frame, validate_frame
from aed_pipeline.lib.egen_aed.rows import DeviceRowsWriter, validated_rows_path

# The checks that stop the write when they fail (each is a blocking Dagster asset check).
BLOCKING_CHECKS = (
    "serials_unique",
    "records_match_total_count",
    "row_count_stable",
    "no_column_collapse",
    "coordinates_inside_korea",
    "region_pairs_known",
)
DEFAULT_THRESHOLDS = IntegrityThresholds()

Rejected = list[tuple[dict[str, Any], list[dict[str, Any]]]]


@dataclass
class ValidatedAedSnapshot:
    """One day's snapshot after validation: what ``aed_validated`` hands to ``aed_data``.

    The ``valid`` rows themselves are in the file at ``rows_path`` (``rows.py``), never in memory.
    """

    partition_date: date
    rows_path: str
    valid: int
    fetched: int
    total_count: int | None
    rejected: int
    profile: dict[str, Any]
    archive_ref: str
    archive_digest: str
    origin: str
    blocking_failures: list[str] = field(default_factory=list)


@dataclass
class SnapshotValidation:
    snapshot: ValidatedAedSnapshot
    checks: list[CheckOutcome]
    rejected: Rejected
    region_from_address: int
    reused: bool = False


@dataclass
class _Validated:
    """What validating the pages produced, besides the rows file; kept beside it as JSON."""

    key: str
    fetched: int
    region_from_address: int
    figures: SnapshotFigures
    rejected: Rejected

    def to_json(self) -> str:
        return json.dumps(
            {
                "key": self.key,
                "fetched": self.fetched,
                "region_from_address": self.region_from_address,
                "figures": self.figures.to_json(),
                "rejected": self.rejected,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> _Validated:
        data = json.loads(text)
        return cls(
            key=data["key"],
            fetched=data["fetched"],
            region_from_address=data["region_from_address"],
            figures=SnapshotFigures.from_json(data["figures"]),
            rejected=[(record, failures) for record, failures in data["rejected"]],
        )


def validation_key(archive_digest: str, health_centers: Mapping[tuple[str, str], str]) -> str:
    """The identity of a validation result: the archived pages, the health-centre reference, the code."""
    digest = hashlib.sha256(f"{archive_digest}\n{parsing_code_digest()}\n".encode())
    for (sido, gugun), name in sorted(health_centers.items()):
        digest.update(f"{sido}\x1f{gugun}\x1f{name}\n".encode())
    return digest.hexdigest()


def validate_archived_snapshot(
    archive: RawArchive,
    partition: date,
    *,
    health_centers: Mapping[tuple[str, str], str],
    previous: PreviousSnapshot | None,
    thresholds: IntegrityThresholds = DEFAULT_THRESHOLDS,
    rows_path: str | Path | None = None,
    parsed: ParsedPages | None = None,
) -> SnapshotValidation:
    """Parse, type and check the archived snapshot of ``partition`` (or reuse the kept result).

    The valid rows go to ``rows_path`` (default: :func:`validated_rows_path` of the validation key).
    A page whose parse the fetch kept in ``parsed`` is read from there instead of parsed again.
    """
    manifest = archive.read_manifest(ARCHIVE_SOURCE, partition.isoformat(), PAGE_SET)
    if manifest is None or not manifest.pages:
        raise SnapshotUnavailable(
            f"no archived e-gen snapshot for {partition.isoformat()} at "
            f"{archive.location(ARCHIVE_SOURCE, partition.isoformat(), PAGE_SET)}: materialise aed_raw_snapshot first"
        )
    digest = manifest.digest()
    key = validation_key(digest, health_centers)
    rows_path = Path(rows_path) if rows_path is not None else validated_rows_path(partition.isoformat(), key)
    summary_path = rows_path.with_suffix(".json")
    validated = _kept(rows_path, summary_path, key)
    reused = validated is not None
    if validated is None:
        validated = _validate_pages(archive, manifest, health_centers, rows_path, key, parsed)
        write_atomically(summary_path, validated.to_json().encode("utf-8"))
    figures = validated.figures
    profile = figures.profile()
    checks = [
        check_unique_serials(figures),
        check_records_match_total(manifest),
        check_row_count(figures.rows, previous, thresholds.row_count_tolerance),
        check_column_collapse(profile, previous, thresholds),
        check_inside_korea(figures, thresholds.min_share_inside_korea),
        check_region_pairs(figures, thresholds.max_unknown_region_share),
    ]
    snapshot = ValidatedAedSnapshot(
        partition_date=partition,
        rows_path=str(rows_path),
        valid=figures.rows,
        fetched=validated.fetched,
        total_count=manifest.total_count,
        rejected=len(validated.rejected),
        profile=profile,
        archive_ref=archive.location(ARCHIVE_SOURCE, partition.isoformat(), PAGE_SET),
        archive_digest=digest,
        origin=manifest.origin,
        blocking_failures=[c.name for c in checks if not c.passed and c.name in BLOCKING_CHECKS],
    )
    return SnapshotValidation(snapshot, checks, validated.rejected, validated.region_from_address, reused)


def _validate_pages(
    archive: RawArchive,
    manifest: PageSetManifest,
    health_centers: Mapping[tuple[str, str], str],
    rows_path: Path,
    key: str,
    parsed: ParsedPages | None,
) -> _Validated:
    tally = SnapshotTally(health_centers.keys())
    rejected: Rejected = []
    fetched = derived = 0
    with DeviceRowsWriter(rows_path) as writer:
        for batch in _served_batches(archive, manifest, parsed):
            result = validate_frame(batch, health_centers)
            writer.write(result.frame)
            tally.add(result.frame)
            rejected.extend(result.rejected)
            fetched += result.fetched
            derived += result.region_from_address
    if parsed is not None:
        parsed.discard(entry.sha256 for entry in manifest.pages.values())
    return _Validated(key, fetched, derived, tally.figures(), rejected)


#: Records validated together. pandas and pandera cost about as much per call as per 5,000 rows,
#: so pages are validated several at a time; a fixed batch keeps memory flat however large the
#: snapshot.
VALIDATION_BATCH_ROWS = 10_000


def _served_batches(
    archive: RawArchive, manifest: PageSetManifest, parsed: ParsedPages | None
) -> Iterator[pd.DataFrame]:
    """The archived records as served, in page order, in frames of about ``VALIDATION_BATCH_ROWS``."""
    pending: list[pd.DataFrame] = []
    rows = 0
    for page_no in sorted(manifest.pages):
        served = parsed.read(manifest.pages[page_no].sha256) if parsed is not None else None
        if served is None:
            page = parse_egen_response(
                archive.read_page(manifest, page_no),
                response_type=manifest.format,
                operation=OPERATION_FULL_DOWN,
                page=page_no,
            )
            served = records_frame(page.records)
        pending.append(served)
        rows += len(served)
        if rows >= VALIDATION_BATCH_ROWS:
            yield pd.concat(pending, ignore_index=True)
            pending, rows = [], 0
    if pending:
        yield pd.concat(pending, ignore_index=True)


def _kept(rows_path: Path, summary_path: Path, key: str) -> _Validated | None:
    """The kept result of validating the same snapshot with the same reference and code, if whole."""
    try:
        validated = _Validated.from_json(summary_path.read_text(encoding="utf-8"))
        rows = pq.read_metadata(rows_path).num_rows
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return validated if validated.key == key and rows == validated.figures.rows else None
