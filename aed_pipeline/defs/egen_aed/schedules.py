"""When the AED sync runs: every day at 04:00 KST, and a full reconciliation on Sunday at 02:00 KST.

The registry can only be fetched as it is now, so each tick targets the KST date it fires on.
"""

import dagster as dg

from aed_pipeline.defs.egen_aed.assets import aed_sync_job
from aed_pipeline.defs.shared.partitions import KST
from aed_pipeline.lib.core.kst import kst_date

RECONCILE_RUN_CONFIG = {"ops": {"aed_data": {"config": {"reconcile": True}}}}

# A partitioned schedule: at 04:00 KST it targets the newest partition, today's KST date
# (the partitions end one day ahead, ``end_offset=1``).
aed_daily_schedule = dg.build_schedule_from_partitioned_job(
    aed_sync_job,
    name="aed_daily",
    hour_of_day=4,
    minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The day's AED registry at 04:00 KST: fetch, validate and apply today's KST partition.",
)


@dg.schedule(
    name="aed_sunday_reconciliation",
    job=aed_sync_job,
    cron_schedule="0 2 * * 0",
    execution_timezone=KST,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sunday 02:00 KST: today's partition as a full reconciliation, comparing every stored row with "
    "the snapshot (hand edits, missed deletions), repairing and reporting drift, then ANALYZE.",
)
def aed_sunday_reconciliation(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = kst_date(context.scheduled_execution_time)
    return dg.RunRequest(
        run_key=f"aed_reconciliation:{day.isoformat()}",
        partition_key=day.isoformat(),
        run_config=RECONCILE_RUN_CONFIG,
        tags={"aed_pipeline/run_kind": "reconciliation"},
    )
