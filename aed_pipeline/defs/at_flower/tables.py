"""The normalised flower tables, written from the validated frame one sale date at a time."""

import dagster as dg

from aed_pipeline.defs.at_flower.reporting import (
    BIDDING_FLOWERS_SCHEMA,
    FLOWER_TYPES_SCHEMA,
    FLOWERS_SCHEMA,
    OWNERS,
    add_run_summary,
    bounded,
    date_span,
    joined_sources,
    log_date,
    markdown_table,
    run_sale_dates,
)
from aed_pipeline.defs.shared.freshness import FLOWER_FRESHNESS_POLICY
from aed_pipeline.defs.shared.io import per_partition
from aed_pipeline.defs.shared.partitions import flower_daily_partitions
from aed_pipeline.defs.shared.resources import WarehouseResource
from aed_pipeline.lib.at_flower.records import ValidatedFlowerDay
from aed_pipeline.lib.at_flower.tables import BIDDING_TABLE, TOP_COLUMNS, table_row_counts, top_by_quantity
from aed_pipeline.lib.at_flower.write.normalised import write_bidding_day
from aed_pipeline.lib.core.sync_log import SYNC_SOURCE_FLOWER, sync_run

VALIDATED = dg.AssetKey("flower_auction_validated")


def _table_spec(
    name: str, description: str, schema: dg.TableSchema, deps: list, freshness_policy: dg.FreshnessPolicy | None = None
) -> dg.AssetSpec:
    return dg.AssetSpec(
        name,
        freshness_policy=freshness_policy,
        description=description,
        deps=deps,
        group_name="flowers",
        kinds={"postgres"},
        owners=OWNERS,
        metadata={"dagster/table_name": f"public.{name}", "dagster/column_schema": schema},
    )


FLOWER_TYPES = dg.AssetKey("flower_types")
FLOWERS = dg.AssetKey("flowers")
BIDDING_FLOWERS = dg.AssetKey("bidding_flowers")


def _table_specs() -> list[dg.AssetSpec]:
    # Built in a function: a module-level AssetSpec would also be loaded as an asset of its own.
    return [
        _table_spec(
            FLOWER_TYPES.path[-1],
            "품목 (pumName) of the aT flower auction. Grows by upsert as new 품목 are served; never deleted.",
            FLOWER_TYPES_SCHEMA,
            [VALIDATED],
        ),
        _table_spec(
            FLOWERS.path[-1],
            "품종 (goodName) of the aT flower auction, unique per name and 품목. Grows by upsert; never deleted.",
            FLOWERS_SCHEMA,
            [VALIDATED, FLOWER_TYPES],
        ),
        _table_spec(
            BIDDING_FLOWERS.path[-1],
            "Settled aT 양재 auction prices per sale date, 품종 and grade (min/avg/max, total amount, "
            "quantity). Each sale date's slice is brought to the validated rows of that date.",
            BIDDING_FLOWERS_SCHEMA,
            [VALIDATED, FLOWERS],
            FLOWER_FRESHNESS_POLICY,
        ),
    ]


@dg.multi_asset(
    name="flower_tables",
    specs=_table_specs(),
    ins={"validated": dg.AssetIn(VALIDATED)},
    partitions_def=flower_daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def flower_tables(context: dg.AssetExecutionContext, validated, warehouse: WarehouseResource):
    """Writes ``flower_types``, ``flowers`` and ``bidding_flowers`` for each sale date of the run.

    Dates go in ascending order, each in one transaction with its ``sync_runs`` row: new 품목 and
    품종 are upserted, and the date's ``bidding_flowers`` slice is brought to the validated rows
    (inserted, updated, deleted; unchanged rows are not touched). A failure part-way keeps the
    dates already written. A date whose validated frame failed a blocking check is never written,
    even when this asset is materialised on its own later.
    """
    engine = warehouse.engine()
    sale_dates = run_sale_dates(context)
    loaded = per_partition([d.isoformat() for d in sale_dates], validated)
    days: list[ValidatedFlowerDay] = [loaded[d.isoformat()] for d in sale_dates]

    blocked = [day for day in days if not day.writable]
    if blocked:
        raise dg.Failure(
            description="refusing to write sale dates whose validated rows failed a blocking check: "
            + "; ".join(f"{day.sale_date.isoformat()} ({', '.join(day.blocking_failures)})" for day in blocked)
            + ". Fix the source data or the check's configuration and re-materialise flower_auction_validated.",
            metadata={"blocked_dates": ", ".join(day.sale_date.isoformat() for day in blocked)},
            allow_retries=False,
        )

    totals = {"new_types": 0, "new_flowers": 0, "inserted": 0, "updated": 0, "deleted": 0, "unchanged": 0}
    per_date = []
    with engine.connect() as conn:
        for done, day in enumerate(days, start=1):
            key = day.sale_date.isoformat()
            with (
                sync_run(
                    engine,
                    source=SYNC_SOURCE_FLOWER,
                    table_name=BIDDING_TABLE,
                    partition_key=key,
                    run_id=context.run_id,
                ) as run,
                conn.begin(),
            ):
                counts = write_bidding_day(conn, day.sale_date, day.rows)
                run.counts.fetched = day.served
                run.counts.rejected = day.rejected
                run.counts.inserted = counts.inserted
                run.counts.updated = counts.updated
                run.counts.deleted = counts.deleted
                run.counts.unchanged = counts.unchanged
                run.mark_success(conn)
            for name in totals:
                totals[name] += getattr(counts, name)
            per_date.append(
                [
                    key,
                    counts.rows,
                    counts.inserted,
                    counts.updated,
                    counts.deleted,
                    counts.unchanged,
                    counts.new_types,
                    counts.new_flowers,
                ]
            )
            context.add_asset_metadata({"new_types": counts.new_types}, asset_key=FLOWER_TYPES, partition_key=key)
            context.add_asset_metadata({"new_flowers": counts.new_flowers}, asset_key=FLOWERS, partition_key=key)
            top = top_by_quantity(day.rows)
            context.add_asset_metadata(
                {
                    "dagster/row_count": counts.rows,
                    "rows_written": counts.written,
                    "inserted": counts.inserted,
                    "updated": counts.updated,
                    "deleted": counts.deleted,
                    "unchanged": counts.unchanged,
                    "rejected_rows": day.rejected,
                    "source": day.source,
                    "top_10_by_quantity": dg.MetadataValue.md(markdown_table(TOP_COLUMNS, top) if top else "no rows"),
                },
                asset_key=BIDDING_FLOWERS,
                partition_key=key,
            )
            log_date(
                context,
                done,
                len(days),
                f"{key}: {counts.rows} rows ({counts.inserted} new, {counts.updated} changed, {counts.deleted} gone, "
                f"{counts.unchanged} unchanged); {counts.new_types} new 품목, {counts.new_flowers} new 품종",
            )
        table_rows = table_row_counts(conn)

    add_run_summary(
        context,
        sale_dates,
        {
            "run_rows_per_date": dg.MetadataValue.md(
                markdown_table(
                    ["sale date", "rows", "inserted", "updated", "deleted", "unchanged", "new 품목", "new 품종"],
                    bounded(per_date, width=8),
                )
            )
        },
        asset_key=BIDDING_FLOWERS,
    )
    common = {"source": joined_sources(day.source for day in days), "run_dates": date_span(sale_dates)}
    yield dg.MaterializeResult(
        asset_key=FLOWER_TYPES,
        metadata={**common, "run_new_types": totals["new_types"], "dagster/row_count": table_rows["flower_types"]},
    )
    yield dg.MaterializeResult(
        asset_key=FLOWERS,
        metadata={**common, "run_new_flowers": totals["new_flowers"], "dagster/row_count": table_rows["flowers"]},
    )
    yield dg.MaterializeResult(
        asset_key=BIDDING_FLOWERS,
        metadata={
            **common,
            "run_rows_written": totals["inserted"] + totals["updated"],
            "run_inserted": totals["inserted"],
            "run_updated": totals["updated"],
            "run_deleted": totals["deleted"],
            "run_unchanged": totals["unchanged"],
        },
    )
