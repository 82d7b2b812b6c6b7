"""Daily partitions in Korean time: a partition is a KST calendar date, today's being the newest.

Each source defines its own (``defs/<source>/partitions.py``) with :func:`kst_daily_partitions`;
the run tags below are Dagster's, the same for every source.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import dagster as dg

from aed_pipeline.lib.core.kst import TIMEZONE_NAME

KST = TIMEZONE_NAME


def kst_daily_partitions(start_env: str, default_start: str | Callable[[], str]) -> dg.DailyPartitionsDefinition:
    """One partition per KST date from the date in ``start_env`` (``YYYY-MM-DD``; ``default_start``
    when unset, called if it is a function) up to and including today's KST date (``end_offset=1``:
    today's data is served today)."""
    start = os.environ.get(start_env) or (default_start() if callable(default_start) else default_start)
    return dg.DailyPartitionsDefinition(start_date=start, timezone=KST, end_offset=1)


#: Dagster's run tags for the partition of a run, or the range of partitions of a single-run backfill.
PARTITION_TAG = "dagster/partition"
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
#: Dagster's run-monitoring tag: a run still going after this many seconds is failed by the daemon
#: (``run_monitoring`` in ``dagster.yaml``), which raises the critical "run over 1 hour" alert.
MAX_RUNTIME_TAG = "dagster/max_runtime"
MAX_RUNTIME_SECONDS = 3600
#: A run longer than this goes into the daily warning summary.
SLOW_RUN_SECONDS = 45 * 60
