"""The current version of a device lives only in ``aed_data``; ``aed_data_history`` keeps the closed ones.

Why: the history used to hold every version, the open one too, so every device was written twice on
a first load and every change twice a day. Like SQL:2011 system-versioned tables (a current table
and a history table of past versions), the open version is now the ``aed_data`` row itself, with
``version_since`` (the first partition date of its values); ``aed_data_history`` holds the versions
that ended. The view ``aed_data_versions`` gives every version of every device, open or closed, with
``valid_from`` / ``valid_to``: the registry of any day is one query on it, as it was on the history.

Existing data moves without loss: each device's open history version gives its ``version_since``,
then the open versions leave the history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The columns the two tables share and the view shows (the device's fields), read from the schema as
# it stands at this revision, so later changes to the application's column list cannot alter it.
_NOT_DEVICE_FIELDS = ("id", "valid_from", "valid_to", "recorded_at")


def _device_columns() -> list[str]:
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
    return [c for c in rows if c not in _NOT_DEVICE_FIELDS]


def upgrade() -> None:
    op.add_column(
        "aed_data",
        sa.Column("version_since", sa.Date, comment="first partition date of the row's current values"),
    )
    op.execute(
        "UPDATE aed_data a SET version_since = h.valid_from FROM aed_data_history h "
        "WHERE h.equipment_serial = a.equipment_serial AND h.valid_to IS NULL"
    )
    # A removed device has no open version: its last one (now closed) gives the date.
    op.execute(
        "UPDATE aed_data a SET version_since = COALESCE((SELECT max(h.valid_from) FROM aed_data_history h "
        "WHERE h.equipment_serial = a.equipment_serial), a.first_seen) WHERE a.version_since IS NULL"
    )
    op.alter_column("aed_data", "version_since", nullable=False)
    op.execute("DELETE FROM aed_data_history WHERE valid_to IS NULL")
    op.execute(
        "COMMENT ON TABLE aed_data_history IS 'the closed versions of aed_data rows (SCD2); "
        "aed_data_versions shows them with the open ones'"
    )
    columns = ", ".join(_device_columns())
    op.execute(
        f"CREATE VIEW aed_data_versions AS "
        f"SELECT {columns}, valid_from, valid_to FROM aed_data_history "
        f"UNION ALL SELECT {columns}, version_since, NULL::date FROM aed_data WHERE deleted_at IS NULL"
    )
    op.execute(
        "COMMENT ON VIEW aed_data_versions IS 'every version of every AED device: the registry of a day D is "
        "WHERE valid_from <= D AND (valid_to IS NULL OR valid_to > D)'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW aed_data_versions")
    columns = ", ".join(_device_columns())
    op.execute(
        f"INSERT INTO aed_data_history ({columns}, valid_from, valid_to) "
        f"SELECT {columns}, version_since, NULL FROM aed_data WHERE deleted_at IS NULL"
    )
    op.execute("COMMENT ON TABLE aed_data_history IS 'SCD2 history of aed_data: the registry of any past day'")
    op.drop_column("aed_data", "version_since")
