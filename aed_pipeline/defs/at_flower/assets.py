"""The flower chain up to the validated frame: API pages → archive → rows as served → typed rows.

Every asset runs over the run's sale dates in ascending order (one date for the daily partition,
a whole range for a single-run backfill) and never reads ``context.partition_key``. The work is
done in ``aed_pipeline.lib.at_flower``; each asset calls it and reports what it did, per sale date
(the partition's metadata, a log line) and for the run (a summary on the newest date).
"""

from collections.abc import Collection
from contextlib import closing
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from aed_pipeline.defs.at_flower.partitions import flower_daily_partitions
from aed_pipeline.defs.at_flower.reporting import by_group_name, examples, group_names, no_auction_note
from aed_pipeline.defs.at_flower.resources import AtFlowerApiResource
from aed_pipeline.defs.shared.failures import StepRetryConfig, retry_or_fail, warehouse_step
from aed_pipeline.defs.shared.metadata import (
    OWNERS,
    add_run_summary,
    bounded,
    column_schema,
    joined_sources,
    log_date,
    markdown_table,
    run_sale_dates,
)
from aed_pipeline.defs.shared.resources import RawArchiveResource, WarehouseResource
from aed_pipeline.lib.at_flower.calendar import non_auction_reason, weekday_name
from aed_pipeline.lib.at_flower.checks import VolumeRule
from aed_pipeline.lib.at_flower.client import FLOWER_GUBN_NAMES
from aed_pipeline.lib.at_flower.fetch import FLOWER_ARCHIVE_SOURCE, ArchivedFlowerDay, FlowerDaysFetch
from aed_pipeline.lib.at_flower.records import VALID_COLUMNS, FlowerAuctionRows
from aed_pipeline.lib.at_flower.rows import StoredFlowerDay, ValidatedRowsStore
from aed_pipeline.lib.at_flower.source import AT_FLOWER
from aed_pipeline.lib.at_flower.tables import PUBLIC_BIDDING_FLOWERS_COLUMNS, PUBLIC_TABLE, table_row_counts
from aed_pipeline.lib.at_flower.validate import (
    BLOCKING_CHECKS,
    CHECK_DUPLICATE_KEYS,
    CHECK_PRICE_INVARIANTS,
    CHECK_VOLUME,
    DatesNeverLoaded,
    FlowerDaysValidation,
    validate_loaded_days,
)
from aed_pipeline.lib.at_flower.write.served import ServedDay, write_served_days
from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.lib.core.display import listed
from aed_pipeline.lib.core.errors import SourceError
from aed_pipeline.lib.core.kst import date_span, kst_date
from aed_pipeline.lib.core.sync_log import record_failed_sync

# --------------------------------------------------------------------------- raw pages


class FlowerRawConfig(StepRetryConfig):
    """How the raw fetch runs: parallel requests, transient failures, already archived dates."""

    fetch_concurrency: int = Field(
        default=4,
        description="Requests in flight at once (each for one date and flower group). The daily quota "
        "counts calls, not parallelism; lower it if the server starts dropping connections.",
    )
    transient_retry_wait_seconds: float = Field(
        default=300.0,
        description="Wait before re-running the step after a transient failure: the aT server's outages last minutes.",
    )
    skip_archived_dates: bool = Field(
        default=False,
        description="Do not fetch dates whose four groups are already completely archived. For resuming "
        "a long backfill stopped by the daily quota; leave off for the daily run, whose point is to "
        "re-fetch recent dates for settlement corrections.",
    )


@dg.asset(
    partitions_def=flower_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=AT_FLOWER.group,
    kinds={"api"},
    owners=OWNERS,
    pool="at_flower_api",
)
@warehouse_step("recording the failed aT fetch of flower_auction_raw in sync_runs")
def flower_auction_raw(
    context: dg.AssetExecutionContext,
    config: FlowerRawConfig,
    at_flower_api: AtFlowerApiResource,
    raw_archive: RawArchiveResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """The aT 양재 flower auction results (f001) of each sale date, all four groups (절화, 관엽, 난,
    춘란), every page, archived byte for byte with one manifest per group.

    The archive is what every later step reads, so that a date can be re-derived without the
    network and the source's answer on any day can be inspected. A date without an auction
    (Sunday, public holiday) succeeds with zero rows and says so. A transient failure re-runs the
    step, which keeps the dates this run already archived; a key, quota or parameter error fails
    it at once.
    """
    archive = raw_archive.archive()
    sale_dates = run_sale_dates(context)
    # A retry (after a transient failure) keeps the dates this run has already archived.
    this_run_since = _run_started_at(context) if context.retry_number > 0 else None
    fetch = FlowerDaysFetch(
        archive, sale_dates, reuse_archived=config.skip_archived_dates, reuse_completed_since=this_run_since
    )
    fetched = fetch.fetch(at_flower_api.client, origin=at_flower_api.source, concurrency=config.fetch_concurrency)
    try:
        with closing(fetched):
            for done, day in enumerate(fetched, start=1):
                log_date(context, done, len(fetch.to_fetch), _archived_day_line(day))
    except SourceError as error:
        retry_or_fail(
            context,
            error,
            config,
            # The sync log names the first date the run could not fetch.
            record_failure=lambda failure: record_failed_sync(
                warehouse.engine(),
                source=AT_FLOWER.name,
                table_name=PUBLIC_TABLE,
                partition_key=fetch.first_unfetched.isoformat(),
                run_id=context.run_id,
                error=failure,
            ),
            metadata={"source": at_flower_api.source},
        )
    days = fetch.ordered_days()
    for day in days:
        _report_archived_day(context, archive, day, reused=day.sale_date in fetch.reused)
    return dg.MaterializeResult(
        metadata=_report_archive_run(
            context, archive, sale_dates, days, source=at_flower_api.source, reused=fetch.reused
        )
    )


def _run_started_at(context: dg.AssetExecutionContext) -> datetime | None:
    record = context.instance.get_run_record_by_id(context.run_id)
    start = record.start_time if record is not None else None
    return datetime.fromtimestamp(start, UTC) if start else None


def _archived_day_line(day: ArchivedFlowerDay) -> str:
    note = no_auction_note(day)
    return (
        f"{day.sale_date.isoformat()}: {day.rows} rows in {day.pages} pages "
        f"{by_group_name(day.rows_by_group())}{'; ' + note if note else ''}"
    )


def _report_archived_day(
    context: dg.AssetExecutionContext, archive: RawArchive, day: ArchivedFlowerDay, *, reused: bool
) -> None:
    context.add_asset_metadata(
        {
            "dagster/partition_row_count": day.rows,
            "rows_by_group": by_group_name(day.rows_by_group()),
            "pages": day.pages,
            "bytes": day.bytes,
            "auction": no_auction_note(day) or "yes",
            "archive": str(archive.folder(FLOWER_ARCHIVE_SOURCE, day.sale_date.isoformat(), "")),
            "source": "+".join(sorted(day.origins)),
            "reused_from_archive": reused,
        },
        partition_key=day.sale_date.isoformat(),
    )


def _report_archive_run(
    context: dg.AssetExecutionContext,
    archive: RawArchive,
    sale_dates: list[date],
    days: list[ArchivedFlowerDay],
    *,
    source: str,
    reused: Collection[date],
) -> dict[str, Any]:
    """Attach the run's per-date table to the newest date; the run's metadata."""
    no_auction = [f"{d.sale_date.isoformat()} ({no_auction_note(d)})" for d in days if d.rows == 0]
    per_date = [
        [
            d.sale_date.isoformat(),
            weekday_name(d.sale_date)[:3],
            *by_group_name(d.rows_by_group()).values(),
            d.pages,
            no_auction_note(d),
        ]
        for d in days
    ]
    add_run_summary(
        context,
        sale_dates,
        {
            "run_dates_without_auction": listed(no_auction, ", "),
            "run_rows_per_date_and_group": dg.MetadataValue.md(
                markdown_table(
                    ["sale date", "day", *group_names(), "pages", "note"],
                    bounded(per_date, width=4 + len(FLOWER_GUBN_NAMES)),
                )
            ),
        },
    )
    return {
        "source": source,
        "run_dates": date_span(sale_dates),
        "run_rows": sum(d.rows for d in days),
        "run_pages": sum(d.pages for d in days),
        "run_bytes": sum(d.bytes for d in days),
        "run_dates_without_auction_count": len(no_auction),
        "run_dates_reused_from_archive": len(reused),
        "archive": str(archive.root / FLOWER_ARCHIVE_SOURCE),
    }


# --------------------------------------------------------------------------- rows as served


@dg.asset(
    deps=[flower_auction_raw],
    partitions_def=flower_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=AT_FLOWER.group,
    kinds={"postgres"},
    owners=OWNERS,
    metadata={
        "dagster/table_name": f"public.{PUBLIC_TABLE}",
        "dagster/column_schema": column_schema(PUBLIC_BIDDING_FLOWERS_COLUMNS),
    },
)
@warehouse_step("writing the served aT rows to public_bidding_flowers")
def public_bidding_flowers(
    context: dg.AssetExecutionContext,
    config: StepRetryConfig,
    warehouse: WarehouseResource,
    raw_archive: RawArchiveResource,
) -> dg.MaterializeResult:
    """The aT flower auction rows exactly as the API served them (text), with the sale date and
    group asked for, the fetch time and the archived page they come from.

    Built from the archive only. Each sale date's slice is replaced in one transaction with its
    ``sync_runs`` row, so a re-run never duplicates rows.
    """
    sale_dates = run_sale_dates(context)
    served = []
    engine = warehouse.engine()
    written = write_served_days(engine, raw_archive.archive(), sale_dates, run_id=context.run_id)
    for done, day in enumerate(written, start=1):
        served.append(day)
        _report_served_day(context, day)
        log_date(
            context,
            done,
            len(sale_dates),
            f"{day.sale_date.isoformat()}: {day.inserted} rows (replacing {day.deleted})",
        )
    with engine.connect() as conn:
        table_rows = table_row_counts(conn)[PUBLIC_TABLE]
    # Each date's slice is its partition's row count; the whole table's is the run's.
    return dg.MaterializeResult(
        metadata={**_report_served_run(context, sale_dates, served), "dagster/row_count": table_rows}
    )


def _report_served_day(context: dg.AssetExecutionContext, day: ServedDay) -> None:
    context.add_asset_metadata(
        {
            "dagster/partition_row_count": day.inserted,
            "rows_by_group": by_group_name(day.rows_by_group),
            "replaced_rows": day.deleted,
            "source": "+".join(sorted(day.origins)),
        },
        partition_key=day.sale_date.isoformat(),
    )


def _report_served_run(
    context: dg.AssetExecutionContext, sale_dates: list[date], served: list[ServedDay]
) -> dict[str, Any]:
    """Attach the run's per-date table to the newest date; the run's metadata."""
    per_date = [
        [d.sale_date.isoformat(), *by_group_name(d.rows_by_group).values(), d.deleted, d.inserted] for d in served
    ]
    add_run_summary(
        context,
        sale_dates,
        {
            "run_rows_per_date": dg.MetadataValue.md(
                markdown_table(
                    ["sale date", *group_names(), "replaced", "written"],
                    bounded(per_date, width=3 + len(FLOWER_GUBN_NAMES)),
                )
            )
        },
    )
    return {
        "source": joined_sources(origin for d in served for origin in d.origins),
        "run_dates": date_span(sale_dates),
        "run_rows": sum(d.inserted for d in served),
        "run_replaced_rows": sum(d.deleted for d in served),
    }


# --------------------------------------------------------------------------- validated rows

VALIDATED_FRAME_SCHEMA = column_schema(
    [
        (name, str(column.dtype), column.description or "")
        for name, column in FlowerAuctionRows.to_schema().columns.items()
        if name in VALID_COLUMNS
    ]
)


class FlowerValidationConfig(StepRetryConfig):
    """Thresholds of the blocking checks (see ``aed_pipeline.lib.at_flower.checks.VolumeRule``)."""

    volume_history_weeks: int = Field(default=8, description="Weeks back to look for the same weekday.")
    volume_min_history_dates: int = Field(
        default=3, description="Same-weekday auction dates needed before a date is judged."
    )
    volume_min_baseline_rows: float = Field(
        default=50.0, description="Groups trading fewer rows than this on average are too small to judge."
    )
    volume_low_ratio: float = Field(default=0.3, description="Anomalous below this share of the baseline.")
    volume_high_ratio: float = Field(default=3.0, description="Anomalous above this multiple of the baseline.")
    volume_unsettled_days: int = Field(
        default=1,
        description="The newest N sale dates (up to today KST) are still being settled: a low volume "
        "there is expected and not judged.",
    )
    extra_non_auction_dates: list[str] = Field(
        default_factory=list,
        description="Market closures the KR holiday calendar does not know (ISO dates): no auction expected.",
    )
    price_check_min_rows: int = Field(
        default=3, description="A group is judged for all-rows price failures from this many priced rows."
    )

    def volume_rule(self) -> VolumeRule:
        return VolumeRule(
            history_weeks=self.volume_history_weeks,
            min_history_dates=self.volume_min_history_dates,
            min_baseline_rows=self.volume_min_baseline_rows,
            low_ratio=self.volume_low_ratio,
            high_ratio=self.volume_high_ratio,
            unsettled_days=self.volume_unsettled_days,
        )


@dg.asset(
    deps=[public_bidding_flowers],
    partitions_def=flower_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=AT_FLOWER.group,
    kinds={"pandas", "pandera"},
    owners=OWNERS,
    metadata={"dagster/column_schema": VALIDATED_FRAME_SCHEMA},
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_DUPLICATE_KEYS,
            asset="flower_auction_validated",
            blocking=True,
            description="No (sale date, group, 품목, 품종, 등급) is served twice.",
        ),
        dg.AssetCheckSpec(
            CHECK_PRICE_INVARIANTS,
            asset="flower_auction_validated",
            blocking=True,
            description="No group has every priced row breaking min ≤ avg ≤ max or avg ≈ totAmt/totQty.",
        ),
        dg.AssetCheckSpec(
            CHECK_VOLUME,
            asset="flower_auction_validated",
            blocking=True,
            description="Each group's rows and quantity are within the band of the same weekday's trailing mean.",
        ),
    ],
)
@warehouse_step("validating the aT rows in flower_auction_validated")
def flower_auction_validated(
    context: dg.AssetExecutionContext,
    config: FlowerValidationConfig,
    warehouse: WarehouseResource,
    raw_archive: RawArchiveResource,
):
    """The flower auction rows typed (amounts and quantities as integers) and validated with the
    pandera model ``FlowerAuctionRows``: one ``StoredFlowerDay`` per sale date holding the verdict
    of the blocking checks, its counts and the file of its valid rows (``validated/at_flower/``).

    Invalid rows go to ``rejected_records`` with their reasons and the rest go on. Duplicate keys,
    a group whose every row breaks the price invariants, or a volume far from the same weekday's
    trailing mean fail a blocking check, and the tables are then not written. A long range is
    validated a few thousand rows at a time, so a year takes no more memory than a few days.
    """
    engine = warehouse.engine()
    sale_dates = run_sale_dates(context)
    rule = config.volume_rule()
    closures = {date.fromisoformat(text) for text in config.extra_non_auction_dates}
    try:
        outcome = validate_loaded_days(
            engine,
            raw_archive.archive(),
            sale_dates,
            rule=rule,
            store=ValidatedRowsStore.default(),
            today=kst_date(),
            non_auction=lambda d: non_auction_reason(d, closures),
            run_id=context.run_id,
            price_check_min_rows=config.price_check_min_rows,
        )
    except DatesNeverLoaded as error:
        # from None: the sentence is the whole failure (an alert reads the error's chain).
        raise dg.Failure(description=str(error), allow_retries=False) from None

    for done, day in enumerate(outcome.days.values(), start=1):
        _report_validated_day(context, day, outcome.not_judged.get(day.sale_date, "judged"), done, len(sale_dates))
    for check_name, dates in outcome.failed_dates.items():
        if dates:
            context.log.error(
                f"blocking check {check_name} failed for {', '.join(d.isoformat() for d in dates)}: "
                "the flower tables will not be written"
            )
    return dg.MaterializeResult(
        value={d.isoformat(): day for d, day in outcome.days.items()},
        check_results=_check_results(outcome, rule, config.price_check_min_rows),
        metadata=_report_validated_run(context, sale_dates, outcome),
    )


def _verdict(day: StoredFlowerDay) -> str:
    return ", ".join(day.blocking_failures) or "passed"


def _report_validated_day(
    context: dg.AssetExecutionContext, day: StoredFlowerDay, volume_check: str, done: int, total: int
) -> None:
    key = day.sale_date.isoformat()
    context.add_asset_metadata(
        {
            "dagster/partition_row_count": day.valid,
            "served_rows": day.served,
            "rejected_rows": day.rejected,
            "blocking_checks": _verdict(day),
            "volume_check": volume_check,
            "source": day.source,
        },
        partition_key=key,
    )
    log_date(
        context,
        done,
        total,
        f"{key}: {day.valid} valid, {day.rejected} rejected of {day.served}; blocking checks {_verdict(day)}",
    )


def _report_validated_run(
    context: dg.AssetExecutionContext, sale_dates: list[date], outcome: FlowerDaysValidation[StoredFlowerDay]
) -> dict[str, Any]:
    """Attach the run's per-date table to the newest date; the run's metadata."""
    per_date = [[d.isoformat(), v.served, v.valid, v.rejected, _verdict(v)] for d, v in outcome.days.items()]
    add_run_summary(
        context,
        sale_dates,
        {
            "run_dates_per_outcome": dg.MetadataValue.md(
                markdown_table(
                    ["sale date", "served", "valid", "rejected", "blocking checks"], bounded(per_date, width=5)
                )
            )
        },
    )
    return {
        "source": joined_sources(day.source for day in outcome.days.values()),
        "run_dates": date_span(sale_dates),
        "run_served_rows": outcome.served_rows,
        "run_valid_rows": outcome.valid_rows,
        "run_rejected_rows": outcome.rejected_rows,
    }


def _check_results(outcome: FlowerDaysValidation[StoredFlowerDay], rule: VolumeRule, price_check_min_rows: int) -> list:
    """One result per blocking check covering every date of the run; metadata names the dates
    that failed, with counts and a few examples."""
    dates_checked = len(outcome.days)
    anomalies = pd.DataFrame([anomaly.as_dict() for anomaly in outcome.anomalies])
    price_groups = outcome.price_groups.assign(flower_gubn=outcome.price_groups["flower_gubn"].map(FLOWER_GUBN_NAMES))
    metadata = {
        CHECK_DUPLICATE_KEYS: {
            "duplicate_keys": len(outcome.duplicates),
            "examples": examples(outcome.duplicates),
        },
        CHECK_PRICE_INVARIANTS: {
            "groups_failing": len(outcome.price_groups),
            "min_priced_rows": price_check_min_rows,
            "examples": examples(price_groups),
        },
        CHECK_VOLUME: {
            "dates_judged": dates_checked - len(outcome.not_judged),
            "anomalies": len(outcome.anomalies),
            "examples": examples(anomalies),
            "dates_not_judged": _not_judged_text(outcome.not_judged),
            "rule": str(rule),
        },
    }
    return [
        dg.AssetCheckResult(
            check_name=name,
            passed=not outcome.failed_dates[name],
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "failed_dates": listed((d.isoformat() for d in outcome.failed_dates[name]), ", "),
                "dates_checked": dates_checked,
                **metadata[name],
            },
        )
        for name in BLOCKING_CHECKS
    ]


def _not_judged_text(not_judged: dict[date, str], shown: int = 20) -> str:
    dates = sorted(not_judged)
    text = "; ".join(f"{d.isoformat()}: {not_judged[d]}" for d in dates[:shown])
    if len(dates) > shown:
        text += f"; … {len(dates) - shown} more"
    return text or "none"
