"""The flower chain up to the validated frame: API pages → archive → rows as served → typed rows.

Every asset runs over the run's sale dates in ascending order (one date for the daily partition,
a whole range for a single-run backfill) and never reads ``context.partition_key``.
"""

from collections import Counter
from contextlib import closing
from dataclasses import replace
from datetime import UTC, date, datetime

import dagster as dg
import pandas as pd
from pydantic import Field

from aed_pipeline.defs.at_flower.reporting import (
    OWNERS,
    PUBLIC_BIDDING_FLOWERS_SCHEMA,
    add_run_summary,
    archived_sources,
    bounded,
    by_group_name,
    date_span,
    group_names,
    joined_sources,
    log_date,
    markdown_table,
    run_sale_dates,
)
from aed_pipeline.defs.shared.failures import StepRetryConfig, retry_or_fail
from aed_pipeline.defs.shared.partitions import flower_daily_partitions
from aed_pipeline.defs.shared.resources import AtFlowerApiResource, RawArchiveResource, WarehouseResource
from aed_pipeline.lib.at_flower.calendar import non_auction_reason, weekday_name
from aed_pipeline.lib.at_flower.checks import VolumeRule, volume_history_dates
from aed_pipeline.lib.at_flower.client import FLOWER_GUBN_NAMES
from aed_pipeline.lib.at_flower.fetch import (
    FLOWER_ARCHIVE_SOURCE,
    ArchivedFlowerDay,
    archive_flower_days,
    archived_flower_day,
    archived_public_rows,
)
from aed_pipeline.lib.at_flower.records import VALID_COLUMNS, FlowerAuctionRows
from aed_pipeline.lib.at_flower.tables import PUBLIC_TABLE, known_volumes, loaded_sale_dates, read_public_rows
from aed_pipeline.lib.at_flower.validate import (
    BLOCKING_CHECKS,
    CHECK_DUPLICATE_KEYS,
    CHECK_PRICE_INVARIANTS,
    CHECK_VOLUME,
    FlowerDaysValidation,
    validate_flower_days,
)
from aed_pipeline.lib.at_flower.write.served import replace_public_slice
from aed_pipeline.lib.core.errors import SourceError
from aed_pipeline.lib.core.kst import kst_date
from aed_pipeline.lib.core.sync_log import SYNC_SOURCE_FLOWER, record_failed_sync, replace_rejected_records, sync_run

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


def _run_started_at(context: dg.AssetExecutionContext) -> datetime | None:
    record = context.instance.get_run_record_by_id(context.run_id)
    start = record.start_time if record is not None else None
    return datetime.fromtimestamp(start, UTC) if start else None


def _no_auction_note(day: ArchivedFlowerDay) -> str:
    reason = non_auction_reason(day.sale_date)
    if day.rows == 0:
        return f"no auction ({reason})" if reason else f"no rows served on a {weekday_name(day.sale_date)}"
    return ""


@dg.asset(
    partitions_def=flower_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="flowers",
    kinds={"api"},
    owners=OWNERS,
    pool="at_flower_api",
)
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
    reused = {}
    # A retry (after a transient failure) keeps the dates this run has already archived.
    this_run_since = _run_started_at(context) if context.retry_number > 0 else None
    if config.skip_archived_dates or this_run_since is not None:
        since = None if config.skip_archived_dates else this_run_since
        reused = {
            d: day for d in sale_dates if (day := archived_flower_day(archive, d, completed_since=since)) is not None
        }
    to_fetch = [d for d in sale_dates if d not in reused]
    days: dict[date, ArchivedFlowerDay] = dict(reused)

    fetched = archive_flower_days(
        at_flower_api.client, archive, to_fetch, origin=at_flower_api.source, concurrency=config.fetch_concurrency
    )
    try:
        with closing(fetched):
            for done, day in enumerate(fetched, start=1):
                days[day.sale_date] = day
                note = _no_auction_note(day)
                log_date(
                    context,
                    done,
                    len(to_fetch),
                    f"{day.sale_date.isoformat()}: {day.rows} rows in {day.pages} pages "
                    f"{by_group_name(day.rows_by_group())}{'; ' + note if note else ''}",
                )
    except SourceError as error:
        # The sync log names the first date the run could not fetch.
        unfetched = [d for d in to_fetch if d not in days]
        failed_date = unfetched[0] if unfetched else sale_dates[-1]
        retry_or_fail(
            context,
            error,
            config,
            record_failure=lambda failure: record_failed_sync(
                warehouse.engine(),
                source=SYNC_SOURCE_FLOWER,
                table_name=PUBLIC_TABLE,
                partition_key=failed_date.isoformat(),
                run_id=context.run_id,
                error=failure,
            ),
            metadata={"source": at_flower_api.source},
        )

    ordered = [days[d] for d in sale_dates]
    for day in ordered:
        context.add_asset_metadata(
            {
                "dagster/row_count": day.rows,
                "rows_by_group": by_group_name(day.rows_by_group()),
                "pages": day.pages,
                "bytes": day.bytes,
                "auction": _no_auction_note(day) or "yes",
                "archive": str(archive.folder(FLOWER_ARCHIVE_SOURCE, day.sale_date.isoformat(), "")),
                "source": "+".join(sorted(day.origins)),
                "reused_from_archive": day.sale_date in reused,
            },
            partition_key=day.sale_date.isoformat(),
        )
    no_auction = [f"{d.sale_date.isoformat()} ({_no_auction_note(d)})" for d in ordered if d.rows == 0]
    add_run_summary(
        context,
        sale_dates,
        {
            "run_dates_without_auction": ", ".join(no_auction) if no_auction else "none",
            "run_rows_per_date_and_group": dg.MetadataValue.md(
                markdown_table(
                    ["sale date", "day", *group_names(), "pages", "note"],
                    bounded(
                        [
                            [
                                d.sale_date.isoformat(),
                                weekday_name(d.sale_date)[:3],
                                *by_group_name(d.rows_by_group()).values(),
                                d.pages,
                                _no_auction_note(d),
                            ]
                            for d in ordered
                        ],
                        width=4 + len(FLOWER_GUBN_NAMES),
                    ),
                )
            ),
        },
    )
    return dg.MaterializeResult(
        metadata={
            "source": at_flower_api.source,
            "run_dates": date_span(sale_dates),
            "run_rows": sum(d.rows for d in ordered),
            "run_pages": sum(d.pages for d in ordered),
            "run_bytes": sum(d.bytes for d in ordered),
            "run_dates_without_auction_count": len(no_auction),
            "run_dates_reused_from_archive": len(reused),
            "archive": str(archive.root / FLOWER_ARCHIVE_SOURCE),
        }
    )


# --------------------------------------------------------------------------- rows as served


@dg.asset(
    deps=[flower_auction_raw],
    partitions_def=flower_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="flowers",
    kinds={"postgres"},
    owners=OWNERS,
    metadata={"dagster/table_name": f"public.{PUBLIC_TABLE}", "dagster/column_schema": PUBLIC_BIDDING_FLOWERS_SCHEMA},
)
def public_bidding_flowers(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, raw_archive: RawArchiveResource
) -> dg.MaterializeResult:
    """The aT flower auction rows exactly as the API served them (text), with the sale date and
    group asked for, the fetch time and the archived page they come from.

    Built from the archive only. Each sale date's slice is replaced in one transaction with its
    ``sync_runs`` row, so a re-run never duplicates rows.
    """
    engine = warehouse.engine()
    archive = raw_archive.archive()
    sale_dates = run_sale_dates(context)
    origins: set[str] = set()
    per_date = []
    with engine.connect() as conn:
        for done, sale_date in enumerate(sale_dates, start=1):
            key = sale_date.isoformat()
            with sync_run(
                engine, source=SYNC_SOURCE_FLOWER, table_name=PUBLIC_TABLE, partition_key=key, run_id=context.run_id
            ) as run:
                rows, day_origins = archived_public_rows(archive, sale_date)
                with conn.begin():
                    counts = replace_public_slice(conn, sale_date, rows)
                    run.counts.fetched = len(rows)
                    run.counts.inserted = counts.inserted
                    run.counts.deleted = counts.deleted
                    run.mark_success(conn)
            origins |= day_origins
            rows_by_group = by_group_name(Counter(row[1] for row in rows))
            per_date.append([key, *rows_by_group.values(), counts.deleted, counts.inserted])
            context.add_asset_metadata(
                {
                    "dagster/row_count": counts.inserted,
                    "rows_by_group": rows_by_group,
                    "replaced_rows": counts.deleted,
                    "source": "+".join(sorted(day_origins)),
                },
                partition_key=key,
            )
            log_date(context, done, len(sale_dates), f"{key}: {counts.inserted} rows (replacing {counts.deleted})")
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
    return dg.MaterializeResult(
        metadata={
            "source": joined_sources(origins),
            "run_dates": date_span(sale_dates),
            "run_rows": sum(row[-1] for row in per_date),
            "run_replaced_rows": sum(row[-2] for row in per_date),
        }
    )


# --------------------------------------------------------------------------- validated rows

EXAMPLES = 5
VALIDATED_FRAME_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(name, str(column.dtype), description=column.description or "")
        for name, column in FlowerAuctionRows.to_schema().columns.items()
        if name in VALID_COLUMNS
    ]
)


class FlowerValidationConfig(dg.Config):
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


def _examples(frame: pd.DataFrame) -> dg.MetadataValue:
    shown = frame.head(EXAMPLES).astype(str)
    return dg.MetadataValue.md(markdown_table(list(shown.columns), shown.values.tolist()) if len(shown) else "none")


@dg.asset(
    deps=[public_bidding_flowers],
    partitions_def=flower_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="flowers",
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
def flower_auction_validated(
    context: dg.AssetExecutionContext,
    config: FlowerValidationConfig,
    warehouse: WarehouseResource,
    raw_archive: RawArchiveResource,
):
    """The flower auction rows typed (amounts and quantities as integers) and validated with the
    pandera model ``FlowerAuctionRows``: one ``ValidatedFlowerDay`` per sale date holding the valid
    rows and the verdict of the blocking checks.

    Invalid rows go to ``rejected_records`` with their reasons and the rest go on. Duplicate keys,
    a group whose every row breaks the price invariants, or a volume far from the same weekday's
    trailing mean fail a blocking check, and the tables are then not written.
    """
    engine = warehouse.engine()
    sale_dates = run_sale_dates(context)
    rule = config.volume_rule()
    closures = {date.fromisoformat(text) for text in config.extra_non_auction_dates}

    with engine.connect() as conn:
        _refuse_dates_never_loaded(conn, sale_dates)
        # A run's partition keys are one contiguous range of dates.
        raw = read_public_rows(conn, sale_dates[0], sale_dates[-1])
        history = known_volumes(conn, *volume_history_dates(sale_dates, rule))
    outcome = validate_flower_days(
        raw,
        sale_dates,
        history=history,
        rule=rule,
        today=kst_date(),
        non_auction=lambda d: non_auction_reason(d, closures),
        price_check_min_rows=config.price_check_min_rows,
    )
    sources = archived_sources(raw_archive.archive(), sale_dates)
    validated = {d.isoformat(): replace(outcome.days[d], source=sources[d]) for d in sale_dates}

    with engine.connect() as conn:
        for done, sale_date in enumerate(sale_dates, start=1):
            key = sale_date.isoformat()
            day = validated[key]
            # Each date's quarantine is replaced in its own transaction: a re-run does not pile up.
            with conn.begin():
                replace_rejected_records(
                    conn,
                    source=SYNC_SOURCE_FLOWER,
                    partition_key=key,
                    run_id=context.run_id,
                    rejected=outcome.rejected[sale_date],
                )
            verdict = ", ".join(day.blocking_failures) or "passed"
            context.add_asset_metadata(
                {
                    "dagster/row_count": len(day.rows),
                    "served_rows": day.served,
                    "rejected_rows": day.rejected,
                    "blocking_checks": verdict,
                    "volume_check": outcome.not_judged.get(sale_date, "judged"),
                    "source": day.source,
                },
                partition_key=key,
            )
            log_date(
                context,
                done,
                len(sale_dates),
                f"{key}: {len(day.rows)} valid, {day.rejected} rejected of {day.served}; blocking checks {verdict}",
            )
    for check_name, dates in outcome.failed_dates.items():
        if dates:
            context.log.error(
                f"blocking check {check_name} failed for {', '.join(d.isoformat() for d in dates)}: "
                "the flower tables will not be written"
            )

    add_run_summary(
        context,
        sale_dates,
        {
            "run_dates_per_outcome": dg.MetadataValue.md(
                markdown_table(
                    ["sale date", "served", "valid", "rejected", "blocking checks"],
                    bounded(
                        [
                            [
                                d.isoformat(),
                                v.served,
                                len(v.rows),
                                v.rejected,
                                ", ".join(v.blocking_failures) or "passed",
                            ]
                            for d, v in outcome.days.items()
                        ],
                        width=5,
                    ),
                )
            )
        },
    )
    return dg.MaterializeResult(
        value=validated,
        check_results=_check_results(outcome, rule, config.price_check_min_rows),
        metadata={
            "source": joined_sources(sources.values()),
            "run_dates": date_span(sale_dates),
            "run_served_rows": outcome.served_rows,
            "run_valid_rows": outcome.valid_rows,
            "run_rejected_rows": outcome.rejected_rows,
        },
    )


def _refuse_dates_never_loaded(conn, sale_dates: list[date]) -> None:
    never_loaded = sorted(set(sale_dates) - loaded_sale_dates(conn, sale_dates[0], sale_dates[-1]))
    if never_loaded:
        shown = ", ".join(d.isoformat() for d in never_loaded[:10]) + (" …" if len(never_loaded) > 10 else "")
        raise dg.Failure(
            description=f"{PUBLIC_TABLE} was never loaded for {date_span(never_loaded)} ({shown}): materialise it "
            "for these dates first (an empty slice would wipe them downstream)",
            allow_retries=False,
        )


def _check_results(outcome: FlowerDaysValidation, rule: VolumeRule, price_check_min_rows: int) -> list:
    """One result per blocking check covering every date of the run; metadata names the dates
    that failed, with counts and a few examples."""
    dates_checked = len(outcome.days)
    anomalies = pd.DataFrame([anomaly.as_dict() for anomaly in outcome.anomalies])
    price_groups = outcome.price_groups.assign(flower_gubn=outcome.price_groups["flower_gubn"].map(FLOWER_GUBN_NAMES))
    metadata = {
        CHECK_DUPLICATE_KEYS: {
            "duplicate_keys": len(outcome.duplicates),
            "examples": _examples(outcome.duplicates),
        },
        CHECK_PRICE_INVARIANTS: {
            "groups_failing": len(outcome.price_groups),
            "min_priced_rows": price_check_min_rows,
            "examples": _examples(price_groups),
        },
        CHECK_VOLUME: {
            "dates_judged": dates_checked - len(outcome.not_judged),
            "anomalies": len(outcome.anomalies),
            "examples": _examples(anomalies),
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
                "failed_dates": ", ".join(d.isoformat() for d in outcome.failed_dates[name]) or "none",
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
