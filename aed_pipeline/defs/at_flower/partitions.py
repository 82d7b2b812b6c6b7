"""The flower partitions: one per sale date (KST).

Auctions settle during the day, so today is included as well and re-fetched on the following days.
"""

from aed_pipeline.defs.shared.partitions import kst_daily_partitions

FLOWER_START_DATE_ENV = "AED_PIPELINE_FLOWER_START_DATE"

flower_daily_partitions = kst_daily_partitions(FLOWER_START_DATE_ENV, "2020-01-01")
