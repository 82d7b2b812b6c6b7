"""The AED change feed: the view ``aed_changes``, derived from the versions, and ``aed_repairs``.

Why: the registry's consumers want what the source never offered, an incremental sync: which devices
changed since a date, and how. The feed has one row per device change between consecutive applied
snapshots (``aed_snapshots``): the snapshot date, the date before it the change is relative to, the
run that applied the date, the serial, the change type, the changed columns and their values before
and after (as stored: the masked manager fields as served, never unmasked).

The feed is a view over ``aed_data_versions``, not rows written beside them, so it agrees with the
versions by construction, also after a backfill re-derives a day between two applied dates (the
changes of that day and of the next applied day then follow from the new versions). A version that
begins on an applied date and one that ends there make a ``changed`` row; one that only begins there
is ``new`` (``revived`` when the device had an earlier version), one that only ends there is
``removed``. The first applied date has no date before it: its devices are ``baseline`` rows, so a
consumer starting from nothing replays the feed from its first date and holds the registry.

A reconciliation repairs rows edited by hand without creating a version; ``aed_repairs`` records
each repair (written in the apply's transaction), and the feed shows it as ``repaired``.

The indexes make one day's feed a few index scans: versions beginning on a date (the history's
``valid_from`` index exists; ``aed_data.version_since`` is new) and ending on it (``valid_to``).

Downgrade drops the view, the functions, the indexes and ``aed_repairs`` (the record of the repairs
goes with it); the registry, its versions and the applied snapshots are not touched.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Not the device's fields: the keys and the bookkeeping of the versions (compared and shown: the rest).
_NOT_COMPARED = ("id", "equipment_serial", "row_hash", "valid_from", "valid_to", "recorded_at")


def _compared_columns() -> list[str]:
    """The device's fields, in table order, read from the schema as it stands at this revision."""
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'aed_data_history' ORDER BY ordinal_position"
            )
        )
        .scalars()
    )
    return [c for c in rows if c not in _NOT_COMPARED]


def upgrade() -> None:
    op.create_index(
        "ix_aed_data_version_since", "aed_data", ["version_since"], postgresql_where=sa.text("deleted_at IS NULL")
    )
    op.create_index("ix_aed_data_history_valid_to", "aed_data_history", ["valid_to"])
    op.create_table(
        "aed_repairs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("snapshot_date", sa.Date, nullable=False, comment="the partition whose reconciliation repaired it"),
        sa.Column("run_id", sa.Text, comment="the Dagster run that repaired it"),
        sa.Column("equipment_serial", sa.Text, nullable=False),
        sa.Column("changed_columns", postgresql.ARRAY(sa.Text), nullable=False, comment="in table order"),
        sa.Column("before", postgresql.JSONB, nullable=False, comment="the stored (edited) values of those columns"),
        sa.Column("after", postgresql.JSONB, nullable=False, comment="the snapshot's values, restored"),
        sa.Column("repaired_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        comment="rows of aed_data edited outside the sync, repaired by a reconciliation (no version is created)",
    )
    op.create_index("ix_aed_repairs_snapshot_date", "aed_repairs", ["snapshot_date"])

    names = ", ".join(f"'{c}'" for c in _compared_columns())  # identifiers read from the catalog, not values
    # The columns whose values differ between two versions (their rows as jsonb; NULL: no version), in
    # table order, with those values before and after. The planner inlines it; the fenced subquery
    # (OFFSET 0) builds each row's jsonb once, and as an aggregate it yields one row, so a query that
    # reads none of its columns (counts by change type) drops the join and never computes it.
    op.execute(
        "CREATE FUNCTION aed_changed_fields(old_fields jsonb, new_fields jsonb) "
        "RETURNS TABLE (changed_columns text[], before jsonb, after jsonb) "
        "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ "
        "SELECT array_agg(c.name ORDER BY c.position), "
        "CASE WHEN bool_and(f.old_json IS NOT NULL) THEN jsonb_object_agg(c.name, nullif(f.old_json -> c.name, 'null')) END, "
        "CASE WHEN bool_and(f.new_json IS NOT NULL) THEN jsonb_object_agg(c.name, nullif(f.new_json -> c.name, 'null')) END "
        "FROM (SELECT old_fields AS old_json, new_fields AS new_json OFFSET 0) f "
        f"CROSS JOIN unnest(ARRAY[{names}]::text[]) WITH ORDINALITY AS c(name, position) "
        "WHERE nullif(f.old_json -> c.name, 'null') IS DISTINCT FROM nullif(f.new_json -> c.name, 'null') $$"
    )
    op.execute(
        "COMMENT ON FUNCTION aed_changed_fields(jsonb, jsonb) IS 'the AED columns that differ between two "
        "versions (jsonb rows), in table order, with their values before and after'"
    )
    # One applied date at a time (a filter on snapshot_date reaches aed_snapshots' key): the versions
    # that begin on it (n) and end on it (o), matched by serial.
    op.execute(
        "CREATE VIEW aed_changes AS "
        "SELECT a.snapshot_date, a.previous_date, a.run_id, d.equipment_serial, d.change_type, "
        "f.changed_columns, f.before, f.after "
        "FROM (SELECT s.partition_date AS snapshot_date, s.run_id, (SELECT max(p.partition_date) "
        "FROM aed_snapshots p WHERE p.partition_date < s.partition_date) AS previous_date FROM aed_snapshots s) a "
        "CROSS JOIN LATERAL (SELECT coalesce(n.equipment_serial, o.equipment_serial) AS equipment_serial, "
        "CASE WHEN a.previous_date IS NULL THEN 'baseline' "
        "WHEN n.equipment_serial IS NULL THEN 'removed' "
        "WHEN o.equipment_serial IS NOT NULL THEN 'changed' "
        "WHEN EXISTS (SELECT 1 FROM aed_data_history h WHERE h.equipment_serial = n.equipment_serial "
        "AND h.valid_to < a.snapshot_date) THEN 'revived' ELSE 'new' END AS change_type, "
        "o.version AS old_version, n.version AS new_version "
        "FROM (SELECT v.equipment_serial, v AS version FROM aed_data_versions v "
        "WHERE v.valid_from = a.snapshot_date) n "
        "FULL JOIN (SELECT v.equipment_serial, v AS version FROM aed_data_versions v "
        "WHERE v.valid_to = a.snapshot_date) o ON o.equipment_serial = n.equipment_serial) d "
        "LEFT JOIN LATERAL aed_changed_fields(to_jsonb(d.old_version), to_jsonb(d.new_version)) f ON true "
        "UNION ALL "
        "SELECT r.snapshot_date, (SELECT max(p.partition_date) FROM aed_snapshots p "
        "WHERE p.partition_date < r.snapshot_date), r.run_id, r.equipment_serial, 'repaired', "
        "r.changed_columns, r.before, r.after FROM aed_repairs r"
    )
    op.execute(
        "COMMENT ON VIEW aed_changes IS 'the AED change feed: one row per device change between consecutive "
        "applied snapshots (baseline, new, changed, removed, revived; repaired by a reconciliation), derived from "
        "aed_data_versions'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW aed_changes")
    op.execute("DROP FUNCTION aed_changed_fields(jsonb, jsonb)")
    op.drop_index("ix_aed_repairs_snapshot_date", table_name="aed_repairs")
    op.drop_table("aed_repairs")
    op.drop_index("ix_aed_data_history_valid_to", table_name="aed_data_history")
    op.drop_index("ix_aed_data_version_since", table_name="aed_data")
