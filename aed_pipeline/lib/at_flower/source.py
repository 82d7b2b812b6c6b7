"""The aT flower auctions in the registry of sources (``lib/sources.py``)."""

from __future__ import annotations

from datetime import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from aed_pipeline.lib.at_flower.calendar import non_auction_reason
from aed_pipeline.lib.at_flower.write.normalised import BIDDING_TABLE
from aed_pipeline.lib.at_flower.write.served import PUBLIC_TABLE
from aed_pipeline.lib.core.settings import FLOWER_DEADLINE_ENV
from aed_pipeline.lib.core.sync_log import SYNC_SOURCE_FLOWER
from aed_pipeline.lib.ops.source import Gauge, Source

FLOWER_TABLES = ("public_bidding_flowers", "flower_types", "flowers", "bidding_flowers")
_FLOWER_ROWS = sa.text(" UNION ALL ".join(f"SELECT '{table}', count(*) FROM {table}" for table in FLOWER_TABLES))


def warehouse_gauges(conn: Connection) -> list[Gauge]:
    """``flower_rows{table}``: rows in each flower table."""
    rows: dict[tuple[str, ...], float] = {
        (table,): float(count) for table, count in conn.execute(_FLOWER_ROWS).tuples()
    }
    return [Gauge("flower_rows", "rows in each flower table", rows, labels=("table",))]


AT_FLOWER = Source(
    name=SYNC_SOURCE_FLOWER,
    title="aT flower auction results",
    group="flowers",
    job="flower_sync",
    validated_asset="flower_auction_validated",
    synced_tables=(PUBLIC_TABLE, BIDDING_TABLE),
    metrics_prefix="flower_sync",
    fresh_asset=BIDDING_TABLE,
    # The schedule runs at 06:30 KST; the deadline is configurable (AED_PIPELINE_FLOWER_DEADLINE).
    deadline=time(8, 0),
    deadline_env=FLOWER_DEADLINE_ENV,
    # A Sunday or a public holiday has no sale to wait for.
    not_expected_because=non_auction_reason,
    warehouse_gauges=warehouse_gauges,
)
