"""What every source's assets use to describe themselves and report a run: their owners, the
run's partition dates, per-date logging, run summaries attached once, markdown tables, column
schemas. Source-neutral; no definitions live here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    from aed_pipeline.lib.core.audit import PostWriteCheck

#: Who answers for every asset of the platform (the UI's *Owners*); one team for both sources.
OWNERS = ["team:data-engineering"]
#: Longest per-date table in a run's summary; a longer run lists its first and last dates (every
#: date's own figures are in its partition's metadata).
RUN_TABLE_MAX_DATES = 62
#: Runs up to this many dates log every date; longer ones (backfills) log progress every
#: PROGRESS_EVERY dates, since each log line is an event Dagster stores.
LOG_EVERY_DATE_UP_TO = 31
PROGRESS_EVERY = 30


def run_sale_dates(context: dg.AssetExecutionContext) -> list[date]:
    """The dates of the run's partitions, ascending: one for a daily run, many for a single-run backfill."""
    return sorted(date.fromisoformat(key) for key in context.partition_keys)


def log_date(context: dg.AssetExecutionContext, done: int, total: int, message: str) -> None:
    """Log one date's outcome: every date of a short run, progress of a long one."""
    if total <= LOG_EVERY_DATE_UP_TO:
        context.log.info(message)
    elif done % PROGRESS_EVERY == 0 or done == total:
        context.log.info(f"{done}/{total} dates done; latest: {message}")


def add_run_summary(
    context: dg.AssetExecutionContext,
    dates: Sequence[date],
    summary: Mapping[str, Any],
    asset_key: dg.AssetKey | None = None,
) -> None:
    """Attach the run's summary (per-date tables) to the newest date's materialisation only.

    Metadata of the returned ``MaterializeResult`` is copied onto the event of every partition of
    the run: a year's backfill would store the same tables 365 times. The newest date is the event
    the UI shows first.
    """
    extra = {"asset_key": asset_key} if asset_key is not None else {}
    context.add_asset_metadata(dict(summary), partition_key=dates[-1].isoformat(), **extra)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def bounded(rows: Sequence[Sequence[Any]], width: int) -> list[Sequence[Any]]:
    """At most :data:`RUN_TABLE_MAX_DATES` rows: the first and last halves with a marker between."""
    if len(rows) <= RUN_TABLE_MAX_DATES:
        return list(rows)
    half = RUN_TABLE_MAX_DATES // 2
    skipped = len(rows) - 2 * half
    return [
        *rows[:half],
        [f"… {skipped} more dates (see each partition's metadata)", *[""] * (width - 1)],
        *rows[-half:],
    ]


def joined_sources(sources: Iterable[str]) -> str:
    """One ``source`` value for a run: ``simulator``, ``live``, or both joined by ``+``."""
    names = {part for source in sources for part in source.split("+") if part}
    return "+".join(sorted(names)) or "unknown"


def column_schema(columns: Sequence[tuple[str, str, str]]) -> dg.TableSchema:
    """A table's ``dagster/column_schema`` from ``(name, type, description)`` tuples."""
    return dg.TableSchema(columns=[dg.TableColumn(name, type_, description=text) for name, type_, text in columns])


def warehouse_table_spec(
    name: str,
    *,
    deps: Sequence[dg.AssetKey | dg.AssetSpec | str],
    group: str,
    columns: Sequence[tuple[str, str, str]],
    description: str,
) -> dg.AssetSpec:
    """A table or view a sync's transaction keeps beside its asset, in the catalog as an external
    asset (nothing materialises it on its own): its columns, its name in the warehouse, its owners."""
    return dg.AssetSpec(
        name,
        deps=deps,
        group_name=group,
        kinds={"postgres"},
        owners=OWNERS,
        metadata={"dagster/column_schema": column_schema(columns), "dagster/table_name": f"public.{name}"},
        description=description,
    )


def post_write_check_results(
    asset_key: dg.AssetKey | str,
    checks: Sequence[PostWriteCheck],
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dg.AssetCheckResult]:
    """The checks a write judged inside its transaction, as Dagster check results on ``asset_key``:
    each check's figures, its failing examples, and ``extra[check name]`` as further metadata."""
    return [
        dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=check.name,
            passed=check.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=None if check.passed else check.describe(),
            metadata={
                **check.figures,
                **(extra or {}).get(check.name, {}),
                **(
                    {"failing_examples": dg.MetadataValue.md("\n".join(f"- `{e}`" for e in check.examples))}
                    if check.examples
                    else {}
                ),
            },
        )
        for check in checks
    ]
