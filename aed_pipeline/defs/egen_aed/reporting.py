"""What ``aed_data`` reports: the metadata of a sync (its materialisation) and of a plan (an
observation), the results of the checks judged inside the transaction, and their readable tables.

A sync and a plan of the same date report the same keys with the same values (counts, the changes,
the change feed's rows by type); a plan adds what only it shows: the guard's verdict when it would
refuse, every device it would soft-delete, a sample of the feed's rows, and the checks' verdicts.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

import dagster as dg

from aed_pipeline.defs.shared.metadata import markdown_table, post_write_check_results
from aed_pipeline.lib.egen_aed.changes import FeedChange
from aed_pipeline.lib.egen_aed.validate import ValidatedAedSnapshot
from aed_pipeline.lib.egen_aed.write.types import AedSyncResult, PostWriteCheck, RetiredDevice

#: A plan's report lists at most this many devices, and this many rows of the change feed.
PLAN_DEVICES_SHOWN = 100
PLAN_FEED_ROWS_SHOWN = 50


def sync_metadata(result: AedSyncResult, snapshot: ValidatedAedSnapshot, reconcile: bool) -> dict[str, Any]:
    """The metadata a sync and its plan share: what was (or would be) written."""
    return {
        "source": snapshot.origin,
        "mode": result.mode,
        "inserted": result.inserted,
        "updated": result.updated,
        "deleted": result.deleted,
        "revived": result.revived,
        "unchanged": result.unchanged,
        "reconciled": reconcile,
        "drift_repaired": result.drifted,
        "rejected_rows": snapshot.rejected,
        "history_versions_opened": result.history_opened,
        "history_versions_closed": result.history_closed,
        "missing_devices": result.guard.describe() if result.guard else "not judged",
        "change_feed": dg.MetadataValue.json(feed_counts_json(result)),
        "database_seconds": round(result.database_seconds, 3),
        "staging_copy_seconds": round(result.stage_seconds, 3),
        "newest_applied_partition": str(result.newest_applied),
        "changes": dg.MetadataValue.md(change_report(result)),
    }


def plan_metadata(result: AedSyncResult, snapshot: ValidatedAedSnapshot, reconcile: bool) -> dict[str, Any]:
    """A plan's observation of ``aed_data``: the sync's metadata, the verdicts, the devices, the feed."""
    refusal = result.guard is not None and result.guard.tripped
    verdict = (
        "the sync would refuse this snapshot (missing-devices guard)"
        if refusal
        else "the sync would write this"
        if result.checks_passed
        else "the sync would roll back (a post-write check fails)"
    )
    return {
        "plan": f"{verdict}; rolled back, nothing was written",
        **sync_metadata(result, snapshot, reconcile),
        "post_write_checks": dg.MetadataValue.md(checks_table(result.checks)),
        "would_soft_delete": dg.MetadataValue.md(retired_report(result.soft_deleted)),
        "change_feed_rows": dg.MetadataValue.md(feed_report(result.feed)),
    }


def log_line(result: AedSyncResult, partition: date) -> str:
    """The run log's one line of a sync (or of its plan, which says it wrote nothing)."""
    counts = (
        f"{result.inserted} inserted, {result.updated} updated, {result.deleted} deleted, {result.revived} revived, "
        f"{result.unchanged} unchanged; change feed {result.feed_counts.get(partition, {})}"
    )
    if not result.planned:
        return f"aed_data {partition} ({result.mode}): {counts}"
    guard = result.guard.describe() if result.guard else "not judged"
    checks = "pass" if result.checks_passed else "FAIL"
    return (
        f"plan of aed_data {partition} ({result.mode}), rolled back, nothing written: would be {counts}; "
        f"{len(result.soft_deleted)} soft-deleted; guard: {guard}; post-write checks {checks}"
    )


def feed_counts_json(result: AedSyncResult) -> dict[str, dict[str, int]]:
    return {day.isoformat(): counts for day, counts in result.feed_counts.items()}


def check_results(checks: tuple[PostWriteCheck, ...]) -> list[dg.AssetCheckResult]:
    """The checks judged inside the transaction, as Dagster check results on ``aed_data``."""
    return post_write_check_results("aed_data", checks)


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


def checks_table(checks: tuple[PostWriteCheck, ...]) -> str:
    return markdown_table(
        ["check", "verdict", "figures", "failing examples"],
        [
            [
                c.name,
                "passes" if c.passed else "FAILS",
                ", ".join(f"{k} {v}" for k, v in c.figures.items()),
                ", ".join(c.examples) or "—",
            ]
            for c in checks
        ],
    )


def retired_report(devices: tuple[RetiredDevice, ...]) -> str:
    """Every device the sync would soft-delete, by 보건소, then the first of them one by one."""
    if not devices:
        return "none"
    by_center = Counter(d.jurisdiction_health_center or "(none)" for d in devices)
    lines = [
        f"**{len(devices)}** devices would be soft-deleted.",
        "",
        markdown_table(["보건소", "devices"], by_center.most_common()),
        "",
        markdown_table(
            ["device", "시도", "시군구", "installation institution", "address"],
            [
                [
                    f"`{d.equipment_serial}`",
                    d.sido or "",
                    d.gugun or "",
                    d.installation_institution or "",
                    d.installation_address or "",
                ]
                for d in devices[:PLAN_DEVICES_SHOWN]
            ],
        ),
    ]
    if len(devices) > PLAN_DEVICES_SHOWN:
        lines += ["", f"… and {len(devices) - PLAN_DEVICES_SHOWN} more."]
    return "\n".join(lines)


def feed_report(rows: tuple[FeedChange, ...]) -> str:
    """The first rows of the change feed the sync would give its dates."""
    if not rows:
        return "none"
    shown = [
        [r.snapshot_date.isoformat(), f"`{r.equipment_serial}`", r.change_type, ", ".join(r.changed_columns)]
        for r in rows[:PLAN_FEED_ROWS_SHOWN]
    ]
    more = f"\n\n… and {len(rows) - PLAN_FEED_ROWS_SHOWN} more rows." if len(rows) > PLAN_FEED_ROWS_SHOWN else ""
    return markdown_table(["snapshot date", "device", "change", "changed columns"], shown) + more


def _cell(value: str | None) -> str:
    return "∅" if value is None else value.replace("|", "\\|")
