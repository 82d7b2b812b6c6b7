"""The normalised flower tables, written from the validated rows one sale date at a time."""

from datetime import date
from typing import Any

import dagster as dg

from aed_pipeline.defs.at_flower.partitions import flower_daily_partitions
from aed_pipeline.defs.shared.failures import StepRetryConfig, refused, warehouse_step
from aed_pipeline.defs.shared.freshness import freshness_policy
from aed_pipeline.defs.shared.io import per_partition
from aed_pipeline.defs.shared.metadata import (
    OWNERS,
    add_run_summary,
    bounded,
    column_schema,
    joined_sources,
    log_date,
    markdown_table,
    post_write_check_results,
    run_sale_dates,
    warehouse_table_spec,
)
from aed_pipeline.defs.shared.resources import WarehouseResource
from aed_pipeline.lib.at_flower.rows import StoredFlowerDay
from aed_pipeline.lib.at_flower.source import AT_FLOWER
from aed_pipeline.lib.at_flower.tables import (
    BIDDING_FLOWERS_COLUMNS,
    BIDDING_HISTORY_COLUMNS,
    BIDDING_HISTORY_TABLE,
    BIDDING_VERSIONS_COLUMNS,
    BIDDING_VERSIONS_VIEW,
    FLOWER_TYPES_COLUMNS,
    FLOWERS_COLUMNS,
    TOP_COLUMNS,
    Column,
    table_row_counts,
)
from aed_pipeline.lib.at_flower.write.audit import POST_WRITE_CHECKS
from aed_pipeline.lib.at_flower.write.normalised import (
    CORRECTED_VALUES,
    BlockedDays,
    Correction,
    PostWriteChecksFailed,
    WrittenBiddingDay,
    write_bidding_days,
)
from aed_pipeline.lib.core.audit import PostWriteCheck
from aed_pipeline.lib.core.display import MISSING, listed, shown
from aed_pipeline.lib.core.kst import date_span

VALIDATED = dg.AssetKey("flower_auction_validated")


def _table_spec(
    name: str,
    description: str,
    columns: tuple[Column, ...],
    deps: list,
    freshness_policy: dg.FreshnessPolicy | None = None,
) -> dg.AssetSpec:
    return dg.AssetSpec(
        name,
        freshness_policy=freshness_policy,
        description=description,
        deps=deps,
        group_name=AT_FLOWER.group,
        kinds={"postgres"},
        owners=OWNERS,
        metadata={"dagster/table_name": f"public.{name}", "dagster/column_schema": column_schema(columns)},
    )


FLOWER_TYPES = dg.AssetKey("flower_types")
FLOWERS = dg.AssetKey("flowers")
BIDDING_FLOWERS = dg.AssetKey("bidding_flowers")
TABLES = (FLOWER_TYPES, FLOWERS, BIDDING_FLOWERS)


def _table_specs() -> list[dg.AssetSpec]:
    # Built in a function: a module-level AssetSpec would also be loaded as an asset of its own.
    return [
        _table_spec(
            FLOWER_TYPES.path[-1],
            "품목 (pumName) of the aT flower auction. Grows by upsert as new 품목 are served; never deleted.",
            FLOWER_TYPES_COLUMNS,
            [VALIDATED],
        ),
        _table_spec(
            FLOWERS.path[-1],
            "품종 (goodName) of the aT flower auction, unique per name and 품목. Grows by upsert; never deleted.",
            FLOWERS_COLUMNS,
            [VALIDATED, FLOWER_TYPES],
        ),
        _table_spec(
            BIDDING_FLOWERS.path[-1],
            "Settled aT 양재 auction prices per sale date, 품종 and grade (min/avg/max, total amount, "
            "quantity): the current version. Each sale date's slice is brought to the validated rows of that "
            "date; the rows it replaces (settlement corrections, withdrawn rows) are kept in "
            "bidding_flowers_history (every version: view bidding_flowers_versions). The checks are judged "
            "inside each date's transaction: a failure rolls that date back.",
            BIDDING_FLOWERS_COLUMNS,
            [VALIDATED, FLOWERS],
            freshness_policy(AT_FLOWER),
        ),
    ]


# Subsettable, so that the UI may select any of the three (a range launched from the asset graph
# is refused for a non-subsettable multi-asset: dagster-graphql 1.13 compares the keys' partition
# subsets with `!=`, which TimeWindowPartitionsSubset does not define, so equal subsets can differ).
# A run still writes all three tables of each date in one transaction, whatever was selected:
# flowers reference flower_types and bidding_flowers reference flowers.
@dg.multi_asset(
    name="flower_tables",
    specs=_table_specs(),
    ins={"validated": dg.AssetIn(VALIDATED)},
    partitions_def=flower_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
    check_specs=[
        dg.AssetCheckSpec(name, asset=BIDDING_FLOWERS, blocking=True, description=text)
        for name, text in POST_WRITE_CHECKS.items()
    ],
)
@warehouse_step("writing flower_types, flowers and bidding_flowers")
def flower_tables(context: dg.AssetExecutionContext, config: StepRetryConfig, validated, warehouse: WarehouseResource):
    """Writes ``flower_types``, ``flowers`` and ``bidding_flowers`` for each sale date of the run.

    Dates go in ascending order, each in one transaction with its ``sync_runs`` row: new 품목 and
    품종 are upserted, and the date's ``bidding_flowers`` slice is brought to the validated rows
    (inserted, updated, deleted; unchanged rows are not touched), the replaced rows kept in
    ``bidding_flowers_history``. The checks on ``bidding_flowers`` are judged inside each date's
    transaction before COMMIT: a failure rolls that date back and fails the run with the checks'
    results (the dates before it stay written). The three tables are always
    written together, also when only some of them are selected; only the selected ones are
    reported as materialised. A failure part-way keeps the dates already written. A date whose
    validated frame failed a blocking check is never written, even when this asset is
    materialised on its own later.
    """
    engine = warehouse.engine()
    sale_dates = run_sale_dates(context)
    selected = set(context.selected_asset_keys)
    beyond = [key.to_user_string() for key in TABLES if key not in selected]
    if beyond:
        context.log.info(
            f"writing {', '.join(beyond)} as well, beyond the selection: the three flower tables of a date are "
            "written in one transaction"
        )
    loaded = per_partition([d.isoformat() for d in sale_dates], validated)
    stale = [d for d in sale_dates if not isinstance(loaded[d.isoformat()], StoredFlowerDay)]
    if stale:
        # A value stored by an earlier version (the whole frame): not worth a second reader.
        raise dg.Failure(
            description=f"flower_auction_validated of {date_span(stale)} was stored by an earlier version of the "
            "pipeline: re-materialise it for these dates",
            allow_retries=False,
        )
    days: list[StoredFlowerDay] = [loaded[d.isoformat()] for d in sale_dates]
    try:
        writes = write_bidding_days(engine, days, run_id=context.run_id)
    except BlockedDays as blocked:
        # from None: the sentence is the whole failure (an alert reads the error's chain).
        raise dg.Failure(
            description=str(blocked),
            metadata={"blocked_dates": ", ".join(day.sale_date.isoformat() for day in blocked.days)},
            allow_retries=False,
        ) from None

    checked = {key.name for key in context.selected_asset_check_keys if key.asset_key == BIDDING_FLOWERS}
    written: list[WrittenBiddingDay] = []
    try:
        for done, write in enumerate(writes, start=1):
            written.append(write)
            _report_written_day(context, write, done, len(days), selected)
    except PostWriteChecksFailed as exc:
        # Reported on bidding_flowers, then the step fails; from None: the sentence is the whole failure.
        yield from _check_results(written, exc.checks, exc.partition, checked)
        raise refused(exc) from None
    with engine.connect() as conn:
        table_rows = table_row_counts(conn)
    results = _report_tables_run(context, sale_dates, written, table_rows, selected)
    yield from (result for result in results if result.asset_key in selected)
    yield from _check_results(written, None, None, checked)


def _check_results(
    written: list[WrittenBiddingDay],
    failing: tuple[PostWriteCheck, ...] | None,
    failing_date: date | None,
    checked: set[str],
) -> list[dg.AssetCheckResult]:
    """One result per check on ``bidding_flowers`` over the run's dates: the verdicts of the dates
    written, and of the date whose checks failed (``failing``), whose figures and examples it shows."""
    verdicts: dict[str, list[tuple[date, PostWriteCheck]]] = {}
    for write in written:
        for check in write.counts.checks:
            verdicts.setdefault(check.name, []).append((write.day.sale_date, check))
    if failing is not None and failing_date is not None:
        for check in failing:
            verdicts.setdefault(check.name, []).append((failing_date, check))
    judged = {
        name: next(((d, c) for d, c in reversed(dated) if not c.passed), dated[-1]) for name, dated in verdicts.items()
    }
    summary = {
        name: {
            "dates_checked": len(verdicts[name]),
            "dates_failed": listed((d.isoformat() for d, c in verdicts[name] if not c.passed), ", "),
            "sale_date_shown": shown_date.isoformat(),
        }
        for name, (shown_date, _) in judged.items()
    }
    return post_write_check_results(
        BIDDING_FLOWERS,
        tuple(check for name, (_, check) in judged.items() if name in checked),
        extra=summary,
    )


def _report_written_day(
    context: dg.AssetExecutionContext, write: WrittenBiddingDay, done: int, total: int, selected: set[dg.AssetKey]
) -> None:
    day, counts = write.day, write.counts
    key = day.sale_date.isoformat()
    if FLOWER_TYPES in selected:
        context.add_asset_metadata({"new_types": counts.new_types}, asset_key=FLOWER_TYPES, partition_key=key)
    if FLOWERS in selected:
        context.add_asset_metadata({"new_flowers": counts.new_flowers}, asset_key=FLOWERS, partition_key=key)
    if BIDDING_FLOWERS in selected:
        top = write.top
        context.add_asset_metadata(
            {
                "dagster/partition_row_count": counts.rows,
                "rows_written": counts.written,
                "inserted": counts.inserted,
                "updated": counts.updated,
                "deleted": counts.deleted,
                "unchanged": counts.unchanged,
                "corrections": counts.replaced,
                "corrected": counts.corrected,
                "withdrawn": counts.withdrawn,
                "corrections_sample": dg.MetadataValue.md(corrections_table(counts.corrections, counts.replaced)),
                "rejected_rows": day.rejected,
                "source": day.source,
                "top_10_by_quantity": dg.MetadataValue.md(
                    markdown_table(TOP_COLUMNS, [[shown(v) for v in row] for row in top]) if top else "no rows"
                ),
            },
            asset_key=BIDDING_FLOWERS,
            partition_key=key,
        )
    log_date(
        context,
        done,
        total,
        f"{key}: {counts.rows} rows ({counts.inserted} new, {counts.updated} corrected, {counts.deleted} withdrawn, "
        f"{counts.unchanged} unchanged; {counts.replaced} replaced versions kept); {counts.new_types} new 품목, "
        f"{counts.new_flowers} new 품종",
    )


def _report_tables_run(
    context: dg.AssetExecutionContext,
    sale_dates: list[date],
    written: list[WrittenBiddingDay],
    table_rows: dict[str, int],
    selected: set[dg.AssetKey],
) -> list[dg.MaterializeResult]:
    """Attach the run's per-date table to the newest date of ``bidding_flowers`` (when selected);
    each table's result."""
    per_date = [
        [
            w.day.sale_date.isoformat(),
            w.counts.rows,
            w.counts.inserted,
            w.counts.updated,
            w.counts.deleted,
            w.counts.unchanged,
            w.counts.replaced,
            w.counts.new_types,
            w.counts.new_flowers,
        ]
        for w in written
    ]
    if BIDDING_FLOWERS in selected:
        add_run_summary(
            context,
            sale_dates,
            {
                "run_rows_per_date": dg.MetadataValue.md(
                    markdown_table(
                        [
                            "sale date",
                            "rows",
                            "inserted",
                            "updated",
                            "deleted",
                            "unchanged",
                            "corrections",
                            "new 품목",
                            "new 품종",
                        ],
                        bounded(per_date, width=9),
                    )
                ),
                "run_corrections_sample": dg.MetadataValue.md(_run_corrections(written)),
            },
            asset_key=BIDDING_FLOWERS,
        )

    def total(name: str) -> int:
        return sum(getattr(w.counts, name) for w in written)

    common: dict[str, Any] = {
        "source": joined_sources(w.day.source for w in written),
        "run_dates": date_span(sale_dates),
    }
    return [
        dg.MaterializeResult(
            asset_key=FLOWER_TYPES,
            metadata={**common, "run_new_types": total("new_types"), "dagster/row_count": table_rows["flower_types"]},
        ),
        dg.MaterializeResult(
            asset_key=FLOWERS,
            metadata={**common, "run_new_flowers": total("new_flowers"), "dagster/row_count": table_rows["flowers"]},
        ),
        dg.MaterializeResult(
            asset_key=BIDDING_FLOWERS,
            metadata={
                **common,
                "run_rows_written": total("inserted") + total("updated"),
                "run_inserted": total("inserted"),
                "run_updated": total("updated"),
                "run_deleted": total("deleted"),
                "run_unchanged": total("unchanged"),
                "run_corrections": total("replaced"),
                "run_corrected": total("corrected"),
                "run_withdrawn": total("withdrawn"),
                "dagster/row_count": table_rows["bidding_flowers"],
            },
        ),
    ]


# --------------------------------------------------------------------------- the corrections

CORRECTION_COLUMNS = ("품목 (item)", "품종 (variety)", "등급 (grade)", "why", *CORRECTED_VALUES)
#: Dates of a run's summary that show their corrections.
RUN_CORRECTION_DATES = 5


def corrections_table(corrections: tuple[Correction, ...], total: int) -> str:
    """The sample of replaced rows as a markdown table: each value before → after (one value when it
    did not change; ``∅`` after a withdrawal), with how many the sample leaves out."""
    if not corrections:
        return "none: no published row was corrected or withdrawn"

    def cell(before: int, after: int | None) -> str:
        return str(before) if after == before else f"{before} → {MISSING if after is None else after}"

    rows = [
        [
            c.pum_name,
            c.good_name,
            c.grade,
            c.end_reason,
            *(cell(b, None if c.after is None else a) for b, a in zip(c.before, c.after or c.before)),
        ]
        for c in corrections
    ]
    more = (
        f"\n\n… and {total - len(corrections)} more (bidding_flowers_versions has them all)."
        if total > len(rows)
        else ""
    )
    return markdown_table(CORRECTION_COLUMNS, rows) + more


def _run_corrections(written: list[WrittenBiddingDay]) -> str:
    corrected = [w for w in written if w.counts.replaced]
    if not corrected:
        return "none: no published row was corrected or withdrawn"
    parts = [
        f"**{w.day.sale_date.isoformat()}**: {w.counts.replaced} replaced\n\n"
        + corrections_table(w.counts.corrections, w.counts.replaced)
        for w in corrected[-RUN_CORRECTION_DATES:]
    ]
    earlier = len(corrected) - RUN_CORRECTION_DATES
    lead = [f"… {earlier} earlier dates with corrections (see each partition's metadata)"] if earlier > 0 else []
    return "\n\n".join(lead + parts)


# The history and the versions, in the catalog beside bidding_flowers: a table and a view its
# transaction keeps (external assets: nothing materialises them on their own).
bidding_flowers_history = warehouse_table_spec(
    BIDDING_HISTORY_TABLE,
    deps=[BIDDING_FLOWERS],
    group=AT_FLOWER.group,
    columns=BIDDING_HISTORY_COLUMNS,
    description="The versions of bidding_flowers a sync replaced: settlement corrections (served again with "
    "other values) and withdrawn rows, with when and by which run each was written and replaced. Written in the "
    "transaction of each sale date's slice; never deleted.",
)
bidding_flowers_versions = warehouse_table_spec(
    BIDDING_VERSIONS_VIEW,
    deps=[BIDDING_FLOWERS, bidding_flowers_history],
    group=AT_FLOWER.group,
    columns=BIDDING_VERSIONS_COLUMNS,
    description="Every version of the settled flower prices (a view): the replaced ones of "
    "bidding_flowers_history and the current ones of bidding_flowers, numbered per sale date, 품종 and grade "
    "from the first published (version 1); is_current marks the one bidding_flowers holds.",
)
