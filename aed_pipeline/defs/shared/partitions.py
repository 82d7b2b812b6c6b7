"""Daily partitions in Korean time: a partition is a KST calendar date.

The AED registry can only be fetched for today, so its newest partition is today's KST date
(``end_offset=1``); earlier dates exist for re-deriving history from their archived snapshots. A
flower partition is one sale date; auctions settle during the day, so today is included as well
and re-fetched on the following days.
"""

from __future__ import annotations

import os

import dagster as dg

from aed_pipeline.lib.core.kst import TIMEZONE_NAME

KST = TIMEZONE_NAME
AED_START_DATE_ENV = "AED_PIPELINE_AED_START_DATE"
FLOWER_START_DATE_ENV = "AED_PIPELINE_FLOWER_START_DATE"

aed_daily_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get(AED_START_DATE_ENV) or "2026-01-01",
    timezone=KST,
    end_offset=1,
)

flower_daily_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get(FLOWER_START_DATE_ENV) or "2020-01-01",
    timezone=KST,
    end_offset=1,
)

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
