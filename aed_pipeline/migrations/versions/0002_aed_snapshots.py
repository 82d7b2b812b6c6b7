"""The applied AED snapshots (which partition dates aed_data and its history were built from), and an
index for looking up the sync log by source, table and partition.

Why: the history must know which dates were observed to re-derive one day (a backfill) without
claiming anything about the days around it, ``aed_data`` must know the newest applied date so an
older partition never regresses it, and the integrity checks compare a new snapshot with the
previous good one (row count, null shares of key columns).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aed_snapshots",
        sa.Column("partition_date", sa.Date, primary_key=True, comment="the KST date the snapshot was served"),
        sa.Column("total_count", sa.Integer, nullable=False, comment="totalCount announced by the API"),
        sa.Column("fetched", sa.Integer, nullable=False, comment="records in the archived pages"),
        sa.Column("valid", sa.Integer, nullable=False, comment="records applied (after quarantine)"),
        sa.Column("rejected", sa.Integer, nullable=False),
        sa.Column("profile", postgresql.JSONB, nullable=False, comment="null shares of the key columns etc."),
        sa.Column("archive_ref", sa.Text, nullable=False),
        sa.Column("archive_digest", sa.Text, nullable=False, comment="sha256 over the archived pages' hashes"),
        sa.Column("origin", sa.Text, nullable=False, comment="live or simulator"),
        sa.Column("run_id", sa.Text),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        comment="one row per AED partition applied to aed_data / aed_data_history",
    )
    # "Which dates were synced" lookups of both sources (the flower volume baseline, the metrics).
    op.create_index("ix_sync_runs_source_table_partition", "sync_runs", ["source", "table_name", "partition_key"])


def downgrade() -> None:
    op.drop_index("ix_sync_runs_source_table_partition", table_name="sync_runs")
    op.drop_table("aed_snapshots")
