"""The flower sync job and the daily run it is launched with."""

from datetime import date, timedelta

import dagster as dg

from aed_pipeline.defs.at_flower.partitions import flower_daily_partitions
from aed_pipeline.defs.shared.partitions import (
    MAX_RUNTIME_SECONDS,
    MAX_RUNTIME_TAG,
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
)
from aed_pipeline.lib.at_flower.source import AT_FLOWER

FLOWER_SYNC_JOB_NAME = AT_FLOWER.job
#: Settlements are corrected after the auction day: the daily run re-fetches this many earlier dates.
SETTLEMENT_CORRECTION_DAYS = 3

# In-process: the chain is strictly sequential, and a process per step costs seconds (DESIGN §9).
flower_sync_job = dg.define_asset_job(
    FLOWER_SYNC_JOB_NAME,
    selection=dg.AssetSelection.groups(AT_FLOWER.group),
    partitions_def=flower_daily_partitions,
    executor_def=dg.in_process_executor,
    tags={MAX_RUNTIME_TAG: str(MAX_RUNTIME_SECONDS)},
    description="The aT flower auction sync: raw pages → rows as served → validated rows → flower tables, "
    "over one sale date or a range of them in one run.",
)


def partition_range_tags(first: date, last: date) -> dict[str, str]:
    """Run tags that make one run cover the sale dates ``first`` … ``last``."""
    return {PARTITION_RANGE_START_TAG: first.isoformat(), PARTITION_RANGE_END_TAG: last.isoformat()}


def flower_daily_run_request(today: date) -> dg.RunRequest:
    """The daily flower run for ``today`` (a KST date): the newest sale date, today, plus the
    previous :data:`SETTLEMENT_CORRECTION_DAYS` dates again for late settlement corrections, as one run."""
    first = today - timedelta(days=SETTLEMENT_CORRECTION_DAYS)
    return dg.RunRequest(
        run_key=f"{FLOWER_SYNC_JOB_NAME}:{today.isoformat()}",
        job_name=FLOWER_SYNC_JOB_NAME,
        tags=partition_range_tags(first, today),
    )
