"""When the flower sync runs: every day at 06:30 KST, over the newest sale date and the 3 before it."""

import dagster as dg

from aed_pipeline.defs.at_flower.jobs import flower_daily_run_request, flower_sync_job
from aed_pipeline.defs.shared.partitions import KST
from aed_pipeline.lib.core.kst import kst_date


@dg.schedule(
    name="flower_daily",
    job=flower_sync_job,
    cron_schedule="30 6 * * *",
    execution_timezone=KST,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="06:30 KST: one run over today's sale date and the 3 before it (late settlement corrections).",
)
def flower_daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return flower_daily_run_request(kst_date(context.scheduled_execution_time))
