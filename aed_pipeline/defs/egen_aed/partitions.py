"""The AED partitions: one per KST date.

The registry can only be fetched for today, so its newest partition is today's KST date; earlier
dates exist for re-deriving history from their archived snapshots.
"""

from aed_pipeline.defs.shared.partitions import kst_daily_partitions

AED_START_DATE_ENV = "AED_PIPELINE_AED_START_DATE"

aed_daily_partitions = kst_daily_partitions(AED_START_DATE_ENV, "2026-01-01")
