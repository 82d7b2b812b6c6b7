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
from aed_pipeline.defs.egen_aed.reporting import check_results, log_line, plan_metadata, sync_metadata
from aed_pipeline.defs.egen_aed.resources import EgenApiResource
from aed_pipeline.defs.shared.failures import StepRetryConfig, refused, retry_or_fail, warehouse_step
from aed_pipeline.defs.shared.freshness import freshness_policy
from aed_pipeline.defs.shared.metadata import OWNERS, warehouse_table_spec
from aed_pipeline.defs.shared.partitions import MAX_RUNTIME_SECONDS, MAX_RUNTIME_TAG
from aed_pipeline.defs.shared.resources import RawArchiveResource, WarehouseResource
from aed_pipeline.lib.core.display import MISSING, NONE, is_missing, listed, shown
from aed_pipeline.lib.core.errors import SourceError
from aed_pipeline.lib.core.sync_log import record_failed_sync, replace_rejected_records
from aed_pipeline.lib.egen_aed.checks import IntegrityThresholds
from aed_pipeline.lib.egen_aed.fetch import SnapshotUnavailable, fetch_snapshot, snapshot_summary
from aed_pipeline.lib.egen_aed.parsed import ParsedPages
from aed_pipeline.lib.egen_aed.source import EGEN_AED
from aed_pipeline.lib.egen_aed.tables import (
    AED_CHANGES_COLUMNS,
    AED_DATA_COLUMNS,
    AED_DATA_KEY,
    AED_REPAIRS_COLUMNS,
    health_center_lookup,
    previous_snapshot,
)
from aed_pipeline.lib.egen_aed.validate import BLOCKING_CHECKS, ValidatedAedSnapshot, validate_archived_snapshot
from aed_pipeline.lib.egen_aed.write.apply import apply_snapshot
from aed_pipeline.lib.egen_aed.write.audit import POST_WRITE_CHECKS
from aed_pipeline.lib.egen_aed.write.types import (
    DEFAULT_MISSING_DEVICES_GUARD,
    PLAN_JOB,
    MissingDevicesGuardTripped,
    PostWriteChecksFailed,
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
    plan: bool = Field(
        default=False,
        description="Only show what the sync would write (the job aed_sync_plan sets it): the whole apply, the "
        "guard (reporting, not stopping), the diff, the change feed's rows and the post-write checks, in a "
        "transaction that is rolled back; reported as an observation of aed_data, nothing materialised.",
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
                client,
                raw_archive.archive(),
                partition,
                origin=egen_api.source,
                refetch=config.refetch,
                parsed=ParsedPages.default(),
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
            parsed=ParsedPages.default(),
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
            "blocking_failures": listed(snapshot.blocking_failures, ", "),
            "rejected_examples": dg.MetadataValue.md(examples) if examples else dg.MetadataValue.text(NONE),
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
AED_DATA = dg.AssetKey("aed_data")


# A multi-asset of one table so that a plan can leave aed_data and its checks unmaterialised
# (can_subset: the outputs are optional); the checks hold the write back, so they are blocking.
@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            AED_DATA,
            deps=[aed_validated],
            group_name=GROUP,
            owners=OWNERS,
            kinds={"postgres"},
            freshness_policy=freshness_policy(EGEN_AED),
            metadata={"dagster/column_schema": AED_DATA_SCHEMA, "dagster/table_name": "public.aed_data"},
            description=(
                "The current e-gen AED registry, one row per device, diff-applied in one transaction (insert, "
                "update, soft-delete, revive; unchanged rows untouched); the versions it ends go to "
                "aed_data_history (every version: view aed_data_versions). An older partition only re-derives "
                "that day's history. The checks are judged inside the transaction: a failure rolls it back. "
                "With config plan (job aed_sync_plan) it only reports what it would write."
            ),
        )
    ],
    partitions_def=aed_daily_partitions,
    backfill_policy=ONE_PARTITION_PER_RUN,
    can_subset=True,
    check_specs=[
        dg.AssetCheckSpec(name, asset=AED_DATA, blocking=True, description=text)
        for name, text in POST_WRITE_CHECKS.items()
    ],
)
@warehouse_step("applying the validated e-gen snapshot to aed_data")
def aed_data(
    context: dg.AssetExecutionContext,
    config: AedDataConfig,
    aed_validated: ValidatedAedSnapshot,
    warehouse: WarehouseResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    if AED_DATA not in context.selected_asset_keys:
        raise dg.Failure(
            description="the checks of aed_data are judged inside its write's transaction: materialise aed_data "
            f"(or see what it would write with the job {PLAN_JOB}) to evaluate them",
            allow_retries=False,
        )
    partition = aed_validated.partition_date
    try:
        result = apply_snapshot(
            warehouse.engine(),
            aed_validated,
            run_id=context.run_id,
            missing_devices_guard=config.missing_devices_guard,
            reconcile=config.reconcile,
            plan=config.plan,
        )
    except PostWriteChecksFailed as exc:
        yield from check_results(exc.checks)  # reported on aed_data, then the step fails
        raise refused(exc) from exc
    except (MissingDevicesGuardTripped, SnapshotRejected) as exc:
        # from None: the refusal's sentence and its alert rule are the whole failure.
        raise refused(exc) from None
    if result.planned:
        context.log_event(
            dg.AssetObservation(
                asset_key=AED_DATA,
                partition=context.partition_key,
                metadata=plan_metadata(result, aed_validated, config.reconcile),
            )
        )
        context.log.info(log_line(result, partition))
        return
    context.log.info(log_line(result, partition))
    yield dg.MaterializeResult(
        asset_key=AED_DATA,
        metadata={
            **sync_metadata(result, aed_validated, config.reconcile),
            "dagster/row_count": result.active_rows,
            "duration_seconds": round(result.duration_seconds, 3),
        },
        check_results=check_results(result.checks),
    )


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

#: The run config that makes ``aed_data`` a plan (see :class:`AedDataConfig`).
PLAN_RUN_CONFIG = {"ops": {"aed_data": {"config": {"plan": True}}}}

# The same chain, the same steps: aed_data runs its apply in a transaction it rolls back.
aed_sync_plan_job = dg.define_asset_job(
    PLAN_JOB,
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=aed_daily_partitions,
    executor_def=dg.in_process_executor,
    tags={MAX_RUNTIME_TAG: str(MAX_RUNTIME_SECONDS)},
    config=PLAN_RUN_CONFIG,
    description="What the AED sync of one KST date would write, before it writes: fetch (or reuse) and validate "
    "the snapshot, then aed_data's whole apply (guard, diff, change feed, post-write checks) in a transaction "
    "that is rolled back. Reported as an observation of aed_data (counts, changes, the devices it would "
    "soft-delete); nothing is materialised on aed_data, no aed_snapshots or sync_runs row is written.",
)

# The change feed and the repairs, in the catalog beside aed_data: a view and a table aed_data's
# transaction keeps (external assets: nothing materialises them on their own).
aed_changes = warehouse_table_spec(
    "aed_changes",
    deps=[AED_DATA],
    group=GROUP,
    columns=AED_CHANGES_COLUMNS,
    description="The AED change feed (a view over aed_data_versions and aed_repairs): one row per device change "
    "between consecutive applied snapshots, with the change type, the changed columns and their values before and "
    "after. Command line: aed-pipeline aed changes --since DATE.",
)
aed_repairs = warehouse_table_spec(
    "aed_repairs",
    deps=[AED_DATA],
    group=GROUP,
    columns=AED_REPAIRS_COLUMNS,
    description="Rows of aed_data edited outside the sync and repaired by a reconciliation (no version is "
    "created), written in aed_data's transaction; the change feed shows them as repaired.",
)
