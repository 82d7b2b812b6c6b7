"""The flower settlement corrections kept: ``bidding_flowers_history`` and the view ``bidding_flowers_versions``.

Why: settlements are corrected after the auction day, and the daily run re-fetches the last four
sale dates, so ``bidding_flowers`` was updated in place and the first-published prices were lost
(except in the raw archive). The prices become a versioned table like the AED registry:

- ``bidding_flowers`` holds the current version of each (sale date, group, 품종, 등급); its new
  column ``run_id`` names the run that wrote its values (``updated_at``: when);
- ``bidding_flowers_history`` keeps every version a sync replaced, with when it was written and by
  which run (``published_at``, ``published_run_id``: the replaced row's ``updated_at`` and
  ``run_id``), when it was replaced and by which run (``replaced_at``, ``replaced_run_id``), and why
  (``end_reason``: ``corrected``, the key served again with other values; ``withdrawn``, the key no
  longer served for that date);
- the view ``bidding_flowers_versions`` shows every version, the current and the replaced ones,
  numbered per key from the first published (``version`` 1) on, the current one ``is_current``.

A sync writes the history in the same transaction as the slice, one statement per sale date.

Upgrade keeps every row: the rows already in ``bidding_flowers`` become each key's first version
(``run_id`` unknown: NULL); corrections made before this revision are not recoverable here.
Downgrade drops the view, the history (the replaced versions go with it) and ``run_id``; the current
prices are not touched.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_VALUES = "min_price, avg_price, max_price, total_amount, quantity"
_KEY = "sale_date, flower_gubn, flower_id, grade"


def upgrade() -> None:
    op.add_column(
        "bidding_flowers",
        sa.Column("run_id", sa.Text, comment="the Dagster run that wrote the current values (NULL: before 0005)"),
    )
    op.create_table(
        "bidding_flowers_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("sale_date", sa.Date, nullable=False, comment="the auction date"),
        sa.Column("flower_gubn", sa.SmallInteger, nullable=False),
        sa.Column("flower_id", sa.BigInteger, sa.ForeignKey("flowers.id"), nullable=False),
        sa.Column("grade", sa.Text, nullable=False, comment="lvNm (등급)"),
        sa.Column("min_price", sa.BigInteger, nullable=False),
        sa.Column("avg_price", sa.BigInteger, nullable=False),
        sa.Column("max_price", sa.BigInteger, nullable=False),
        sa.Column("total_amount", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False, comment="when this version was written"),
        sa.Column("published_run_id", sa.Text, comment="the run that wrote it (NULL: before 0005)"),
        sa.Column(
            "replaced_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
            comment="when a sync replaced it",
        ),
        sa.Column("replaced_run_id", sa.Text, comment="the run that replaced it"),
        sa.Column("end_reason", sa.Text, nullable=False, comment="corrected or withdrawn"),
        sa.CheckConstraint("end_reason IN ('corrected', 'withdrawn')", name="ck_bidding_flowers_history_end_reason"),
        comment="the versions of bidding_flowers that a sync replaced (settlement corrections, withdrawn rows)",
    )
    op.create_index(
        "ix_bidding_flowers_history_key",
        "bidding_flowers_history",
        ["sale_date", "flower_gubn", "flower_id", "grade", "published_at"],
    )
    # Every version of every key: the replaced ones and the current one. A filter on sale_date (a
    # column of the window's partition) reaches both tables' indexes.
    op.execute(
        "CREATE VIEW bidding_flowers_versions AS "
        f"SELECT {_KEY}, {_VALUES}, published_at, published_run_id, replaced_at, replaced_run_id, end_reason, "
        f"row_number() OVER (PARTITION BY {_KEY} ORDER BY published_at, replaced_at NULLS LAST) AS version, "
        "replaced_at IS NULL AS is_current "
        f"FROM (SELECT {_KEY}, {_VALUES}, published_at, published_run_id, replaced_at, replaced_run_id, end_reason "
        "FROM bidding_flowers_history "
        f"UNION ALL SELECT {_KEY}, {_VALUES}, updated_at, run_id, NULL, NULL, NULL FROM bidding_flowers) v"
    )
    op.execute(
        "COMMENT ON VIEW bidding_flowers_versions IS 'every version of the settled flower prices: "
        "bidding_flowers_history (replaced) and bidding_flowers (current), version 1 = first published'"
    )


def downgrade() -> None:
    op.execute("DROP VIEW bidding_flowers_versions")
    op.drop_index("ix_bidding_flowers_history_key", table_name="bidding_flowers_history")
    op.drop_table("bidding_flowers_history")
    op.drop_column("bidding_flowers", "run_id")
