"""The e-gen AED sync as Dagster assets: raw snapshot → validated rows → ``aed_data`` (with history).

One partition is one KST date. The API serves only the current registry, so today's partition
fetches and older partitions re-derive their day from the archived snapshot. The blocking checks
on ``aed_validated`` stop a corrupted snapshot before ``aed_data``; the checks on ``aed_data`` confirm
the write. The logic lives in ``aed_pipeline.lib``; this module wires it to Dagster.

Each partition is a full national snapshot (~81k devices), so a backfill runs one partition per
run (``BackfillPolicy.multi_run(1)``): memory stays that of one snapshot, a bad day fails alone, and
the code may rely on ``context.partition_key`` because a run never spans a range.

The snapshot is never held whole: pages are validated one at a time into a Parquet rows file
(``lib/egen_aed/rows.py``); ``aed_validated`` hands ``aed_data`` a reference to it, which the sync
streams into PostgreSQL's COPY.
"""

from collections.abc import Iterator
from datetime import date

import dagster as dg
from pydantic import Field

from aed_pipeline.defs.egen_aed.partitions import aed_daily_partitions
from aed_pipeline.defs.egen_aed.resources import EgenApiResource
from aed_pipeline.defs.shared.failures import StepRetryConfig, refused, retry_or_fail, warehouse_step
from aed_pipeline.defs.shared.freshness import freshness_policy
from aed_pipeline.defs.shared.metadata import OWNERS
from aed_pipeline.defs.shared.partitions import MAX_RUNTIME_SECONDS, MAX_RUNTIME_TAG
from aed_pipeline.defs.shared.resources import RawArchiveResource, WarehouseResource
from aed_pipeline.lib.core.display import MISSING, is_missing, shown
from aed_pipeline.lib.core.errors import SourceError
from aed_pipeline.lib.core.sync_log import record_failed_sync, replace_rejected_records
from aed_pipeline.lib.egen_aed.checks import IntegrityThresholds
from aed_pipeline.lib.egen_aed.fetch import SnapshotUnavailable, fetch_snapshot, snapshot_summary
from aed_pipeline.lib.egen_aed.source import EGEN_AED
from aed_pipeline.lib.egen_aed.tables import (
    AED_DATA_COLUMNS,
    AED_DATA_KEY,
    health_center_lookup,
    post_write_figures,
    previous_snapshot,
)
from aed_pipeline.lib.egen_aed.validate import BLOCKING_CHECKS, ValidatedAedSnapshot, validate_archived_snapshot
from aed_pipeline.lib.egen_aed.write.apply import apply_snapshot
from aed_pipeline.lib.egen_aed.write.types import (
    DEFAULT_MISSING_DEVICES_GUARD,
    AedSyncResult,
    MissingDevicesGuardTripped,
    SnapshotRejected,
)

GROUP = EGEN_AED.group
EGEN_API_POOL = "egen_api"
ONE_PARTITION_PER_RUN = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)

CHECK_DESCRIPTIONS = {
    "serials_unique": "Every equipment_serial appears once in the snapshot.",
    "records_match_total_count": "Every page is archived and the records add up to the API's totalCount.",
    "row_count_stable": "The valid row count is within the tolerance (±10 %) of the previous applied snapshot.",
    "no_column_collapse": "No key column (coordinates, region, address …) suddenly lost its values.",
    "coordinates_inside_korea": "At least the configured share of devices lies inside Korea.",
    "region_pairs_known": "시도/시군구 pairs are in the health-centre reference.",
}


class AedRawSnapshotConfig(StepRetryConfig):
    refetch: bool = Field(
        default=False,
        description="Fetch today's snapshot again even when a complete one is archived for the date.",
    )


class AedValidationConfig(StepRetryConfig):
    row_count_tolerance: float = Field(
        default=0.10, description="Allowed change of the row count vs the previous snapshot."
    )
    max_null_share_increase: float = Field(default=0.05, description="Allowed increase of a key column's null share.")
    max_null_share_without_history: float = Field(
        default=0.5, description="Largest null share of a key column when there is no previous snapshot."
    )
    min_share_inside_korea: float = Field(
        default=0.95, description="Smallest share of devices with coordinates inside Korea."
    )
    max_unknown_region_share: float = Field(
        default=0.001, description="Largest share of devices whose 시도/시군구 is not in the reference."
    )

    def thresholds(self) -> IntegrityThresholds:
        return IntegrityThresholds(
            row_count_tolerance=self.row_count_tolerance,
            max_null_share_increase=self.max_null_share_increase,
            max_null_share_without_history=self.max_null_share_without_history,
            min_share_inside_korea=self.min_share_inside_korea,
            max_unknown_region_share=self.max_unknown_region_share,
        )


class AedDataConfig(StepRetryConfig):
    missing_devices_guard: float = Field(
        default=DEFAULT_MISSING_DEVICES_GUARD,
        description="Largest share of active devices that may vanish in one sync; above it nothing is written.",
    )
    reconcile: bool = Field(
        default=False,
        description="A full reconciliation (the Sunday schedule): compare every field of every stored row with "
        "the snapshot instead of trusting row_hash, repair and report drift (rows edited by hand), then ANALYZE.",
    )


def _partition_date(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


@dg.asset(
    partitions_def=aed_daily_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"api", "xml"},
    pool=EGEN_API_POOL,
    backfill_policy=ONE_PARTITION_PER_RUN,
    description=(
        "Every getAedFullDown page of the day's e-gen registry, archived byte for byte (compressed, "
        "content-hashed) with a manifest. Resumes a fetch that died part-way; a past date reuses its archive."
    ),
)
@warehouse_step("recording the failed e-gen fetch of aed_raw_snapshot in sync_runs")
def aed_raw_snapshot(
    context: dg.AssetExecutionContext,
    config: AedRawSnapshotConfig,
    egen_api: EgenApiResource,
    raw_archive: RawArchiveResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    partition = _partition_date(context)
    try:
        with egen_api.client() as client:
            fetch = fetch_snapshot(
                client, raw_archive.archive(), partition, origin=egen_api.source, refetch=config.refetch
            )
    except SourceError as exc:
        retry_or_fail(
            context,
            exc,
            config,
            record_failure=lambda error: record_failed_sync(
                warehouse.engine(),
                source=EGEN_AED.name,
                table_name="aed_data",
                partition_key=partition.isoformat(),
                run_id=context.run_id,
                error=error,
            ),
            failed=f"e-gen snapshot of {partition} not complete: ",
            kept=" (the pages archived so far are kept; the next run fetches only the missing ones)",
            metadata={"source": egen_api.source},
        )
    except SnapshotUnavailable as exc:
        # from None: the sentence (which date, why, where the archive was looked in) is the whole
        # failure; a chained traceback would bury it in the UI.
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    manifest = fetch.manifest
    context.log.info("e-gen snapshot %s: %s", partition, snapshot_summary(manifest))
    return dg.MaterializeResult(
        metadata={
            "source": egen_api.source,
            "complete": manifest.complete,
            "pages": len(manifest.pages),
            "fetched_pages": len(fetch.fetched_pages),
            "reused_pages": fetch.reused_pages,
            "total_count": manifest.total_count,
            "records": manifest.records,
            "bytes": manifest.bytes,
            "stored_bytes": manifest.stored_bytes,
            "sha256": manifest.digest(),
            "fetched_at": manifest.completed_at,
            "archive": dg.MetadataValue.path(fetch.location),
        }
    )


@dg.asset(
    partitions_def=aed_daily_partitions,
    group_name=GROUP,
    owners=OWNERS,
    deps=[aed_raw_snapshot],
    kinds={"pandas", "pandera"},
    backfill_policy=ONE_PARTITION_PER_RUN,
    check_specs=[
        dg.AssetCheckSpec(name, asset="aed_validated", blocking=True, description=CHECK_DESCRIPTIONS[name])
        for name in BLOCKING_CHECKS
    ],
    description=(
        "The day's snapshot parsed from the archive (no network), mapped to aed_data columns and validated "
        "with pandera; bad records quarantined in rejected_records. Blocking checks hold back a snapshot "
        "that is wrong as a whole."
    ),
)
@warehouse_step("validating the e-gen snapshot in aed_validated")
def aed_validated(
    context: dg.AssetExecutionContext,
    config: AedValidationConfig,
    raw_archive: RawArchiveResource,
    warehouse: WarehouseResource,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    partition = _partition_date(context)
    engine = warehouse.engine()
    try:
        validation = validate_archived_snapshot(
            raw_archive.archive(),
            partition,
            health_centers=health_center_lookup(engine),
            previous=previous_snapshot(engine, partition),
            thresholds=config.thresholds(),
        )
    except SnapshotUnavailable as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None  # the sentence is the failure
    snapshot = validation.snapshot
    with engine.begin() as conn:
        replace_rejected_records(
            conn,
            source=EGEN_AED.name,
            partition_key=partition.isoformat(),
            run_id=context.run_id,
            rejected=validation.rejected,
        )
    examples = "\n".join(
        f"- `{shown(record.get('serialSeq'))}`: "
        + ", ".join(f"{f['column']} {f['check']} ({_example_value(f['value'])})" for f in failures)
        for record, failures in validation.rejected[:10]
    )
    yield dg.Output(
        snapshot,
        metadata={
            "source": snapshot.origin,
            "dagster/row_count": snapshot.valid,
            "fetched": snapshot.fetched,
            "rejected_rows": snapshot.rejected,
            "region_from_address": validation.region_from_address,
            "blocking_failures": ", ".join(snapshot.blocking_failures) or "none",
            "rejected_examples": dg.MetadataValue.md(examples or "none"),
            "null_shares": snapshot.profile["null_shares"],
            "rows_file": dg.MetadataValue.path(snapshot.rows_path),
            "reused_validation": validation.reused,
        },
    )
    for check in validation.checks:
        yield dg.AssetCheckResult(
            check_name=check.name,
            passed=check.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=check.description,
            metadata=check.metadata,
        )


AED_DATA_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(
            name,
            type_,
            description=text,
            constraints=dg.TableColumnConstraints(nullable=False, unique=True) if name == AED_DATA_KEY else None,
        )
        for name, type_, text in AED_DATA_COLUMNS
    ]
)

POST_WRITE_CHECKS = {
    "active_rows_match_snapshot": "aed_data's active rows (and the versions valid on the date) = the validated rows.",
    "health_centers_exist": "Every jurisdiction_health_center exists in health_centers.",
    "serials_unique_in_table": "equipment_serial is unique in aed_data.",
}


@dg.asset(
    partitions_def=aed_daily_partitions,
    group_name=GROUP,
    owners=OWNERS,
    kinds={"postgres"},
    backfill_policy=ONE_PARTITION_PER_RUN,
    freshness_policy=freshness_policy(EGEN_AED),
    check_specs=[
        dg.AssetCheckSpec(name, asset="aed_data", description=text) for name, text in POST_WRITE_CHECKS.items()
    ],
    metadata={"dagster/column_schema": AED_DATA_SCHEMA, "dagster/table_name": "public.aed_data"},
    description=(
        "The current e-gen AED registry, one row per device, diff-applied in one transaction (insert, update, "
        "soft-delete, revive; unchanged rows untouched); the versions it ends go to aed_data_history "
        "(every version: view aed_data_versions). "
        "An older partition only re-derives that day's history."
    ),
)
@warehouse_step("applying the validated e-gen snapshot to aed_data")
def aed_data(
    context: dg.AssetExecutionContext,
    config: AedDataConfig,
    aed_validated: ValidatedAedSnapshot,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    engine = warehouse.engine()
    try:
        result = apply_snapshot(
            engine,
            aed_validated,
            run_id=context.run_id,
            missing_devices_guard=config.missing_devices_guard,
            reconcile=config.reconcile,
        )
    except (MissingDevicesGuardTripped, SnapshotRejected) as exc:
        # from None: the refusal's sentence and its alert rule are the whole failure.
        raise refused(exc) from None
    partition = aed_validated.partition_date
    figures = post_write_figures(engine, partition)
    valid_rows = aed_validated.valid
    active_ok = figures.versions_on_date == valid_rows and (
        result.mode != "current" or figures.active_rows == valid_rows
    )
    context.log.info(
        "aed_data %s (%s): %d inserted, %d updated, %d deleted, %d revived, %d unchanged",
        partition,
        result.mode,
        result.inserted,
        result.updated,
        result.deleted,
        result.revived,
        result.unchanged,
    )
    return dg.MaterializeResult(
        metadata={
            "source": aed_validated.origin,
            "mode": result.mode,
            "inserted": result.inserted,
            "updated": result.updated,
            "deleted": result.deleted,
            "revived": result.revived,
            "unchanged": result.unchanged,
            "reconciled": config.reconcile,
            "drift_repaired": result.drifted,
            "rejected_rows": aed_validated.rejected,
            "history_versions_opened": result.history_opened,
            "history_versions_closed": result.history_closed,
            "dagster/row_count": figures.active_rows,
            "duration_seconds": round(result.duration_seconds, 3),
            "database_seconds": round(result.database_seconds, 3),
            "staging_copy_seconds": round(result.stage_seconds, 3),
            "newest_applied_partition": str(result.newest_applied),
            "changes": dg.MetadataValue.md(change_report(result)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="active_rows_match_snapshot",
                passed=active_ok,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "validated_rows": valid_rows,
                    "active_rows": figures.active_rows,
                    "versions_on_date": figures.versions_on_date,
                    "mode": result.mode,
                },
            ),
            dg.AssetCheckResult(
                check_name="health_centers_exist",
                passed=figures.unknown_health_centers == 0,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"rows_with_unknown_health_center": figures.unknown_health_centers},
            ),
            dg.AssetCheckResult(
                check_name="serials_unique_in_table",
                passed=figures.duplicate_serials == 0,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"duplicate_serials": figures.duplicate_serials},
            ),
        ],
    )


def change_report(result: AedSyncResult) -> str:
    """A readable markdown account of what changed: field by field for a sample of the updates."""
    lines = [
        f"**{result.inserted}** inserted · **{result.updated}** updated · **{result.deleted}** deleted · "
        f"**{result.revived}** revived · **{result.unchanged}** unchanged ({result.mode})"
    ]
    if result.changes:
        lines += ["", "| device | field | old → new |", "|---|---|---|"]
        lines += [f"| `{c.equipment_serial}` | {c.column} | {_cell(c.old)} → {_cell(c.new)} |" for c in result.changes]
    if result.drift:
        lines += [
            "",
            f"Drift repaired by the reconciliation (**{result.drifted}** rows edited outside the sync, sample):",
            "",
            "| device | field | stored → snapshot |",
            "|---|---|---|",
        ]
        lines += [f"| `{c.equipment_serial}` | {c.column} | {_cell(c.old)} → {_cell(c.new)} |" for c in result.drift]
    if result.inserted_examples:
        lines += ["", "New devices (sample): " + ", ".join(f"`{s}`" for s in result.inserted_examples)]
    if result.deleted_examples:
        lines += ["", "Removed devices (sample): " + ", ".join(f"`{s}`" for s in result.deleted_examples)]
    return "\n".join(lines)


def _cell(value: str | None) -> str:
    return shown(value).replace("|", "\\|")


def _example_value(value: object) -> str:
    """A rejected value as written in the examples: quoted as served, ``∅`` when there is none."""
    return MISSING if is_missing(value) else repr(value)


aed_sync_job = dg.define_asset_job(
    EGEN_AED.job,
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=aed_daily_partitions,
    executor_def=dg.in_process_executor,
    tags={MAX_RUNTIME_TAG: str(MAX_RUNTIME_SECONDS)},
    description="The e-gen AED chain for one KST date: fetch (or reuse) the snapshot, validate, apply.",
)
