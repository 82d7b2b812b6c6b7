"""The aT flower auctions in the registry of sources (``lib/sources.py``)."""

from __future__ import annotations

from datetime import time

from aed_pipeline.lib.at_flower import SOURCE_NAME
from aed_pipeline.lib.at_flower.calendar import non_auction_reason
from aed_pipeline.lib.at_flower.tables import BIDDING_TABLE, PUBLIC_TABLE, warehouse_gauges
from aed_pipeline.lib.core.settings import FLOWER_DEADLINE_ENV
from aed_pipeline.lib.ops.source import Source

AT_FLOWER = Source(
    name=SOURCE_NAME,
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
