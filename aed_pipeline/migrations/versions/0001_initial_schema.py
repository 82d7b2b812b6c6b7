"""The initial schema: AED registry with history, flower auctions, quarantine and sync log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import csv
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

REFERENCE_CSV = Path(__file__).resolve().parents[1] / "reference" / "health_centers.csv"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun", "hol")


def _device_columns() -> list[sa.Column]:
    """The columns describing one AED, shared by the current table and its history."""
    availability = [
        sa.Column(f"{day}_{edge}", sa.Time, comment=f"{day} availability {edge} (HHMM; 24:00 = end of day)")
        for day in WEEKDAYS
        for edge in ("start", "end")
    ]
    sunday_weeks = [
        sa.Column(f"sun_week{n}", sa.Boolean, comment=f"available on the {n}. Sunday of the month") for n in range(1, 6)
    ]
    return [
        sa.Column("equipment_serial", sa.Text, nullable=False, comment="serialSeq"),
        sa.Column("sido", sa.Text),
        sa.Column("gugun", sa.Text),
        sa.Column(
            "jurisdiction_health_center",
            sa.Text,
            sa.ForeignKey("health_centers.name"),
            comment="the 보건소 of the device's 시도/시군구",
        ),
        sa.Column("installation_institution", sa.Text, comment="org"),
        sa.Column("installation_address", sa.Text, comment="buildAddress"),
        sa.Column("installation_position", sa.Text, comment="buildPlace"),
        sa.Column("latitude", sa.Float(precision=53), comment="wgs84Lat"),
        sa.Column("longitude", sa.Float(precision=53), comment="wgs84Lon"),
        sa.Column("manufacturer", sa.Text, comment="mfg"),
        sa.Column("model_name", sa.Text, comment="model"),
        sa.Column("institution_tel", sa.Text, comment="clerkTel"),
        sa.Column("manager", sa.Text, comment="masked as served (김**); never unmask"),
        sa.Column("manager_tel", sa.Text, comment="masked as served (010********); never unmask"),
        sa.Column("zipcode", sa.Text, comment="zipcode1 || zipcode2"),
        *availability,
        *sunday_weeks,
        sa.Column("access_control", sa.Text, comment="derived: 24h, scheduled or unknown"),
        sa.Column("operation_status", sa.Text, comment="derived: active or removed"),
        sa.Column("row_hash", sa.LargeBinary, nullable=False, comment="hash of the device's normalised fields"),
    ]


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    ]


def upgrade() -> None:
    health_centers = op.create_table(
        "health_centers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sido", sa.Text, nullable=False),
        sa.Column("gugun", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.UniqueConstraint("sido", "gugun", name="uq_health_centers_sido_gugun"),
        comment="shipped reference: every 시도/시군구 and its 보건소",
    )
    with REFERENCE_CSV.open(encoding="utf-8", newline="") as handle:
        rows = [
            {"sido": row["sido"], "gugun": row["gugun"], "name": row["health_center"]} for row in csv.DictReader(handle)
        ]
    op.bulk_insert(health_centers, rows)

    op.create_table(
        "aed_data",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        *_device_columns(),
        sa.Column("first_seen", sa.Date, nullable=False, comment="partition date the device first appeared"),
        sa.Column("last_seen", sa.Date, nullable=False, comment="latest partition date that served it"),
        sa.Column("deleted_at", sa.DateTime(timezone=True), comment="set when the device left the registry"),
        *_timestamps(),
        sa.UniqueConstraint("equipment_serial", name="uq_aed_data_equipment_serial"),
        comment="the current e-gen AED registry, one row per device (soft-deleted when gone)",
    )
    op.create_index("ix_aed_data_updated_at", "aed_data", ["updated_at"])
    op.create_index("ix_aed_data_sido_gugun", "aed_data", ["sido", "gugun"])
    op.create_index("ix_aed_data_jurisdiction_health_center", "aed_data", ["jurisdiction_health_center"])

    op.create_table(
        "aed_data_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        *_device_columns(),
        sa.Column("valid_from", sa.Date, nullable=False, comment="first partition date of this version"),
        sa.Column("valid_to", sa.Date, comment="first partition date it no longer held (NULL: current)"),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("equipment_serial", "valid_from", name="uq_aed_data_history_serial_valid_from"),
        comment="SCD2 history of aed_data: the registry of any past day",
    )
    op.create_index("ix_aed_data_history_valid", "aed_data_history", ["valid_from", "valid_to"])

    op.create_table(
        "public_bidding_flowers",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("sale_date", sa.Date, nullable=False, comment="the partition: auction date asked for"),
        sa.Column("flower_gubn", sa.SmallInteger, nullable=False, comment="group code asked for: 1..4"),
        sa.Column("sale_date_raw", sa.Text, comment="saleDate as served"),
        sa.Column("flower_gubn_raw", sa.Text, comment="flowerGubn as served (절화, 관엽, 난, 춘란)"),
        sa.Column("pum_name", sa.Text, comment="pumName (품목)"),
        sa.Column("good_name", sa.Text, comment="goodName (품종)"),
        sa.Column("lv_nm", sa.Text, comment="lvNm (등급)"),
        sa.Column("max_amt", sa.Text),
        sa.Column("min_amt", sa.Text),
        sa.Column("avg_amt", sa.Text),
        sa.Column("tot_amt", sa.Text),
        sa.Column("tot_qty", sa.Text),
        sa.Column("page", sa.Integer, nullable=False),
        sa.Column("row_in_page", sa.Integer, nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archive_ref", sa.Text, nullable=False, comment="raw archive object holding the page"),
        sa.UniqueConstraint(
            "sale_date", "flower_gubn", "page", "row_in_page", name="uq_public_bidding_flowers_position"
        ),
        comment="aT f001 rows exactly as served, one slice per sale date",
    )

    op.create_table(
        "flower_types",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True, comment="품목 (pumName)"),
        sa.Column("flower_gubn", sa.SmallInteger, comment="group it was first seen in"),
        *_timestamps(),
        comment="품목; grows by upsert, never deleted",
    )
    op.create_table(
        "flowers",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("flower_type_id", sa.BigInteger, sa.ForeignKey("flower_types.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False, comment="품종 (goodName)"),
        *_timestamps(),
        sa.UniqueConstraint("flower_type_id", "name", name="uq_flowers_type_name"),
        comment="품종, unique per name and 품목; grows by upsert, never deleted",
    )
    op.create_table(
        "bidding_flowers",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("sale_date", sa.Date, nullable=False, comment="the auction date (not the run time)"),
        sa.Column("flower_gubn", sa.SmallInteger, nullable=False),
        sa.Column("flower_id", sa.BigInteger, sa.ForeignKey("flowers.id"), nullable=False),
        sa.Column("grade", sa.Text, nullable=False, comment="lvNm (등급)"),
        sa.Column("min_price", sa.BigInteger, nullable=False),
        sa.Column("avg_price", sa.BigInteger, nullable=False),
        sa.Column("max_price", sa.BigInteger, nullable=False),
        sa.Column("total_amount", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        *_timestamps(),
        sa.UniqueConstraint(
            "sale_date", "flower_gubn", "flower_id", "grade", name="uq_bidding_flowers_date_flower_grade"
        ),
        sa.CheckConstraint("min_price <= avg_price AND avg_price <= max_price", name="ck_bidding_flowers_prices"),
        comment="settled auction prices per date, flower and grade",
    )
    op.create_index("ix_bidding_flowers_flower_id", "bidding_flowers", ["flower_id"])

    op.create_table(
        "rejected_records",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("source", sa.Text, nullable=False, comment="egen_aed or at_flower"),
        sa.Column("partition_key", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text),
        sa.Column("record", postgresql.JSONB, nullable=False, comment="the raw record as served"),
        sa.Column("failed_checks", postgresql.JSONB, nullable=False, comment="[{column, check, value}]"),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        comment="quarantine: records that failed validation, with the reasons",
    )
    op.create_index("ix_rejected_records_source_partition", "rejected_records", ["source", "partition_key"])

    op.create_table(
        "sync_runs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("table_name", sa.Text, nullable=False),
        sa.Column("partition_key", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("fetched", sa.Integer, nullable=False, server_default="0"),
        sa.Column("inserted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("revived", sa.Integer, nullable=False, server_default="0"),
        sa.Column("unchanged", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rejected", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error_type", sa.Text),
        sa.Column("error", sa.Text),
        sa.CheckConstraint("status IN ('running', 'success', 'failed')", name="ck_sync_runs_status"),
        comment="one row per table sync; feeds the metrics",
    )
    op.create_index("ix_sync_runs_source_started_at", "sync_runs", ["source", "started_at"])


def downgrade() -> None:
    for table in (
        "sync_runs",
        "rejected_records",
        "bidding_flowers",
        "flowers",
        "flower_types",
        "public_bidding_flowers",
        "aed_data_history",
        "aed_data",
        "health_centers",
    ):
        op.drop_table(table)
