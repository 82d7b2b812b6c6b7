"""Which partitions each schedule tick targets, at the timezone edges (KST is UTC+9, so a KST date
starts at 15:00 UTC the day before, and a KST Sunday starts on a UTC Saturday)."""

from __future__ import annotations

import datetime as dt
import itertools
from functools import lru_cache

import dagster as dg
import pytest
from dagster._config import process_config
from dagster._utils.schedules import cron_string_iterator  # what the daemon uses to compute ticks

from aed_pipeline.definitions import defs
from aed_pipeline.defs.at_flower.jobs import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG

UTC = dt.UTC
KST = dt.timezone(dt.timedelta(hours=9))


@lru_cache(maxsize=1)
def _repository() -> dg.RepositoryDefinition:
    return defs().get_repository_def()


def _ticks(name: str, after: dt.datetime, count: int) -> list[dt.datetime]:
    schedule = _repository().get_schedule_def(name)
    times = cron_string_iterator(after.timestamp(), schedule.cron_schedule, schedule.execution_timezone)
    return [t.astimezone(UTC) for t in itertools.islice(times, count)]


def _run_request(name: str, tick: dt.datetime) -> dg.RunRequest:
    schedule = _repository().get_schedule_def(name)
    result = schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=tick, repository_def=_repository())
    )
    (request,) = result.run_requests
    return request


@pytest.mark.parametrize("name", ["aed_daily", "aed_sunday_reconciliation", "flower_daily"])
def test_every_schedule_runs_by_default_in_korean_time(name):
    schedule = _repository().get_schedule_def(name)
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.execution_timezone == "Asia/Seoul"


def test_aed_daily_fires_at_04_kst_and_targets_the_kst_date_not_the_utc_one():
    # 04:00 KST on 1 March is 19:00 UTC on 28 February.
    ticks = _ticks("aed_daily", dt.datetime(2026, 2, 28, 12, 0, tzinfo=UTC), 2)
    assert ticks == [dt.datetime(2026, 2, 28, 19, 0, tzinfo=UTC), dt.datetime(2026, 3, 1, 19, 0, tzinfo=UTC)]
    request = _run_request("aed_daily", ticks[0])
    assert request.partition_key == "2026-03-01"
    assert request.job_name == "aed_sync"
    assert not request.run_config  # the daily run trusts the hash diff


def test_aed_daily_across_the_new_year_in_kst():
    tick = _ticks("aed_daily", dt.datetime(2026, 12, 31, 18, 0, tzinfo=UTC), 1)[0]
    assert tick == dt.datetime(2026, 12, 31, 19, 0, tzinfo=UTC)  # 2027-01-01 04:00 KST
    assert _run_request("aed_daily", tick).partition_key == "2027-01-01"


def test_sunday_reconciliation_fires_on_the_kst_sunday_which_is_a_utc_saturday():
    # From Wednesday 2026-02-25: the next tick is Sunday 1 March 02:00 KST = Saturday 28 February 17:00 UTC.
    ticks = _ticks("aed_sunday_reconciliation", dt.datetime(2026, 2, 25, 0, 0, tzinfo=UTC), 2)
    assert ticks == [dt.datetime(2026, 2, 28, 17, 0, tzinfo=UTC), dt.datetime(2026, 3, 7, 17, 0, tzinfo=UTC)]
    assert all(t.astimezone(KST).weekday() == 6 and t.astimezone(KST).hour == 2 for t in ticks)
    assert all(t.weekday() == 5 for t in ticks)  # Saturday in UTC
    request = _run_request("aed_sunday_reconciliation", ticks[0])
    assert request.partition_key == "2026-03-01"
    assert request.run_config == {"ops": {"aed_data": {"config": {"reconcile": True}}}}
    assert request.run_key == "aed_reconciliation:2026-03-01"


def test_the_reconciliation_run_config_is_accepted_by_the_job():
    job = _repository().get_job("aed_sync")
    request = _run_request("aed_sunday_reconciliation", dt.datetime(2026, 2, 28, 17, 0, tzinfo=UTC))
    assert process_config(job.run_config_schema.config_type, request.run_config).success


def test_flower_daily_fires_at_0630_kst_over_the_newest_sale_date_and_the_three_before():
    # 06:30 KST on 2 March is 21:30 UTC on 1 March.
    tick = _ticks("flower_daily", dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC), 1)[0]
    assert tick == dt.datetime(2026, 3, 1, 21, 30, tzinfo=UTC)
    request = _run_request("flower_daily", tick)
    assert request.job_name == "flower_sync"
    assert request.tags[PARTITION_RANGE_START_TAG] == "2026-02-27"
    assert request.tags[PARTITION_RANGE_END_TAG] == "2026-03-02"


def test_flower_daily_across_the_new_year_in_kst():
    tick = _ticks("flower_daily", dt.datetime(2025, 12, 31, 12, 0, tzinfo=UTC), 1)[0]
    assert tick == dt.datetime(2025, 12, 31, 21, 30, tzinfo=UTC)  # 2026-01-01 06:30 KST
    request = _run_request("flower_daily", tick)
    assert (request.tags[PARTITION_RANGE_START_TAG], request.tags[PARTITION_RANGE_END_TAG]) == (
        "2025-12-29",
        "2026-01-01",
    )
