"""The e-gen AED registry in the registry of sources (``lib/sources.py``)."""

from __future__ import annotations

from datetime import time

from aed_pipeline.lib.egen_aed import SOURCE_NAME
from aed_pipeline.lib.egen_aed.tables import warehouse_gauges
from aed_pipeline.lib.ops.source import Source

EGEN_AED = Source(
    name=SOURCE_NAME,
    title="e-gen AED registry",
    group="aed",
    job="aed_sync",
    validated_asset="aed_validated",
    synced_tables=("aed_data",),
    metrics_prefix="edgen_sync",
    fresh_asset="aed_data",
    # The schedule runs at 04:00 KST; three hours absorb its step retries.
    deadline=time(7, 0),
    warehouse_gauges=warehouse_gauges,
)
