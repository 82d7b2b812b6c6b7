"""The AED tables as the assets read them: their column descriptions, the reads the assets make (the
health-centre reference and the previous snapshot for validation) and the gauges the metrics read.
The checks on ``aed_data`` read the tables inside the apply's transaction (``write/audit.py``); the
change feed's reads are in ``changes.py``."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aed_pipeline.lib.core.kst import kst_date, kst_midnight
from aed_pipeline.lib.egen_aed.changes import newest_snapshot_changes
from aed_pipeline.lib.egen_aed.checks import PreviousSnapshot
from aed_pipeline.lib.egen_aed.records import SUNDAY_WEEK_COLUMNS, TIME_COLUMNS
from aed_pipeline.lib.ops.source import Gauge

#: ``aed_data``'s key: unique and never null.
AED_DATA_KEY = "equipment_serial"
#: ``aed_data``'s columns as (name, type, description), for the catalog's column schema.
AED_DATA_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("id", "bigint", "surrogate key"),
    (AED_DATA_KEY, "text", "serialSeq; unique"),
    ("sido", "text", "시도 (current official name)"),
    ("gugun", "text", "시군구"),
    ("jurisdiction_health_center", "text", "보건소; FK to health_centers.name"),
    ("installation_institution", "text", "org"),
    ("installation_address", "text", "buildAddress"),
    ("installation_position", "text", "buildPlace"),
    ("latitude", "double precision", "wgs84Lat"),
    ("longitude", "double precision", "wgs84Lon"),
    ("manufacturer", "text", "mfg"),
    ("model_name", "text", "model"),
    ("institution_tel", "text", "clerkTel"),
    ("manager", "text", "masked as served; never unmasked"),
    ("manager_tel", "text", "masked as served; never unmasked"),
    ("zipcode", "text", "zipcode1 || zipcode2"),
    *((column, "time", f"availability {column.split('_')[1]} (24:00 = end of day)") for column in TIME_COLUMNS),
    *((column, "boolean", f"available on Sunday of week {column[-1]}") for column in SUNDAY_WEEK_COLUMNS),
    ("access_control", "text", "derived: 24h, scheduled or unknown"),
    ("operation_status", "text", "active, or removed when soft-deleted"),
    ("row_hash", "bytea", "BLAKE2b of the device's normalised fields"),
    ("first_seen", "date", "first partition date the device appeared"),
    ("last_seen", "date", "last date written; for removed devices the last date seen"),
    ("version_since", "date", "the partition date since which the row's values hold (its open version)"),
    ("deleted_at", "timestamptz", "set when the device left the registry"),
    ("created_at", "timestamptz", "when the device's row was first written"),
    ("updated_at", "timestamptz", "when the row was last written (a change, a removal, a revival)"),
)
_CHANGED_VALUES = "jsonb: the changed columns' values {}, as stored (the masked manager fields as served)"
#: The change feed ``aed_changes`` (a view over the versions and the repairs; migration 0004).
AED_CHANGES_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("snapshot_date", "date", "the applied snapshot (partition date) the change was observed on"),
    ("previous_date", "date", "the applied snapshot before it, the change is relative to; NULL for the baseline"),
    ("run_id", "text", "the Dagster run that applied snapshot_date (for repaired: the reconciliation's run)"),
    (AED_DATA_KEY, "text", "serialSeq of the device"),
    (
        "change_type",
        "text",
        "baseline (in the first applied snapshot), new, changed, removed, revived, or repaired by a reconciliation",
    ),
    ("changed_columns", "text[]", "the aed_data columns whose values differ, in table order"),
    ("before", "jsonb", _CHANGED_VALUES.format("on previous_date; NULL when the device was absent")),
    ("after", "jsonb", _CHANGED_VALUES.format("on snapshot_date; NULL when the device is absent")),
)
#: The repairs of rows edited outside the sync (no version is created), written by a reconciliation.
AED_REPAIRS_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("id", "bigint", "surrogate key"),
    ("snapshot_date", "date", "the partition whose reconciliation repaired the row"),
    ("run_id", "text", "the Dagster run of the reconciliation"),
    (AED_DATA_KEY, "text", "serialSeq of the device"),
    ("changed_columns", "text[]", "the columns that had been edited, in table order"),
    ("before", "jsonb", "the stored (edited) values of those columns"),
    ("after", "jsonb", "the snapshot's values, restored"),
    ("repaired_at", "timestamptz", "when the reconciliation wrote the repair"),
)


def health_center_lookup(engine: Engine) -> dict[tuple[str, str], str]:
    """(시도, 시군구) → 보건소 name, from the shipped reference table."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT sido, gugun, name FROM health_centers")).all()
    return {(sido, gugun): name for sido, gugun, name in rows}


def previous_snapshot(engine: Engine, partition: date) -> PreviousSnapshot | None:
    """The newest snapshot applied before ``partition``: the reference of the drift checks."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT partition_date, valid, profile FROM aed_snapshots WHERE partition_date < :d "
                "ORDER BY partition_date DESC LIMIT 1"
            ),
            {"d": partition},
        ).first()
    if row is None:
        return None
    return PreviousSnapshot(partition_date=row[0].isoformat(), valid=row[1], profile=row[2])


_DEVICES = sa.text(
    "SELECT count(*) FILTER (WHERE deleted_at IS NULL), count(*) FILTER (WHERE deleted_at IS NOT NULL) FROM aed_data"
)
_NEWEST_SNAPSHOT = sa.text("SELECT max(partition_date) FROM aed_snapshots")


def warehouse_gauges(conn: Connection) -> list[Gauge]:
    """The registry's own gauges: devices by state, and the newest applied snapshot's date and age."""
    active, removed = conn.execute(_DEVICES).one()
    gauges = [
        Gauge(
            "edgen_aed_devices",
            "devices in aed_data: active or removed",
            {("active",): active, ("removed",): removed},
            labels=("state",),
        ),
        Gauge(
            "edgen_aed_newest_snapshot_changes",
            "device changes of the newest applied e-gen snapshot in the change feed aed_changes, by type",
            {(change_type,): n for change_type, n in newest_snapshot_changes(conn).items()},
            labels=("type",),
        ),
    ]
    newest = conn.execute(_NEWEST_SNAPSHOT).scalar()
    if newest is not None:
        gauges += [
            Gauge(
                "edgen_aed_newest_snapshot_timestamp",
                "the partition date of the newest e-gen snapshot applied, as unix time of its 00:00 KST",
                {(): kst_midnight(newest)},
            ),
            Gauge(
                "edgen_aed_newest_snapshot_age_days",
                "days from the newest applied e-gen snapshot to today's KST date",
                {(): (kst_date() - newest).days},
            ),
        ]
    return gauges
