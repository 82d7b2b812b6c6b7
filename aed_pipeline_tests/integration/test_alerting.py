"""Alerting end to end: real runs on a test Dagster instance, the sensors, a real HTTP server as Slack.

Each alert rule is caused by what really causes it (a failing check, failing runs, a run left going
past its maximum runtime and Dagster's own run monitoring, the missing-devices guard), the sensor
is evaluated, and the JSON Slack received is asserted; evaluating again with the returned cursor
must post nothing more.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster import DagsterEventType, DagsterRunStatus
from dagster._core.events import DagsterEvent
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.utils import make_new_run_id
from dagster._daemon.monitoring.run_monitoring import check_run_timeout

from aed_pipeline.defs.at_flower.assets import flower_auction_raw, flower_auction_validated, public_bidding_flowers
from aed_pipeline.defs.at_flower.jobs import flower_sync_job
from aed_pipeline.defs.at_flower.resources import AtFlowerApiResource
from aed_pipeline.defs.at_flower.tables import flower_tables
from aed_pipeline.defs.shared import alerting as alerting_defs
from aed_pipeline.defs.shared.alerting import build_alert_sink, critical_alerts, daily_warning_summary
from aed_pipeline.defs.shared.io import PartitionedPickleIOManager
from aed_pipeline.defs.shared.resources import RawArchiveResource, WarehouseResource, build_resources
from aed_pipeline.lib.core import settings
from aed_pipeline.lib.core.kst import KST
from aed_pipeline.lib.ops.alerting import LogSink
from aed_pipeline.simulator import Simulator, SimulatorServer
from aed_pipeline_tests.support.aed_support import AED_ASSETS, start_harness
from aed_pipeline_tests.support.alert_support import (
    HOOK_SECRET,
    UI,
    FakeSlack,
    Sensor,
    fields,
    header,
    instance,
    sink,
    slack,
)
from aed_pipeline_tests.support.helpers import DUPLICATE_A_SERVED_FLOWER_ROW

MONDAY = dt.date(2026, 3, 9)
SETTLED = dt.date(2026, 4, 30)
NO_WAIT = {"ops": {"flower_auction_raw": {"config": {"transient_retry_wait_seconds": 0}}}}


# --------------------------------------------------------------------------- flower runs on the instance


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(today=SETTLED)


@pytest.fixture(scope="module")
def sim_server(sim: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as running:
        yield running


@pytest.fixture
def flower_resources(sim, sim_server, fresh_database_url: str, tmp_path: Path) -> dict:
    sim.reset_faults()
    sim.reset_counters()
    sim.today = SETTLED
    return {
        "warehouse": WarehouseResource(database_url=fresh_database_url),
        "at_flower_api": AtFlowerApiResource(service_key="test-key", base_url=sim_server.at_base_url, max_attempts=1),
        "raw_archive": RawArchiveResource(url=str(tmp_path / "archive")),
        "io_manager": PartitionedPickleIOManager(base_dir=str(tmp_path / "io")),
    }


def flower_run(instance, resources, day=MONDAY, assets=None) -> dg.ExecuteInProcessResult:
    """One run of the real ``flower_sync`` job (or a part of its assets) for one sale date."""
    job = dg.Definitions(
        assets=[flower_auction_raw, public_bidding_flowers, flower_auction_validated, flower_tables],
        jobs=[flower_sync_job],
        resources=resources,
    ).resolve_job_def("flower_sync")
    selected = {a.node_def.name for a in assets} if assets else None
    config = {"ops": {k: v for k, v in NO_WAIT["ops"].items() if selected is None or k in selected}}
    return job.execute_in_process(
        instance=instance,
        partition_key=day.isoformat(),
        run_config=config,
        asset_selection=[key for a in assets for key in a.keys] if assets else None,
        raise_on_error=False,
    )


def recorded_run(
    instance, *, started: float, finished: float | None = None, job: str = "aed_sync", tags: dict | None = None
) -> str:
    """A run whose start (and end) Dagster recorded at the given moments: a long run without waiting for it."""
    run = instance.add_run(
        DagsterRun(
            job_name=job,
            run_id=make_new_run_id(),
            status=DagsterRunStatus.NOT_STARTED,
            tags={"dagster/max_runtime": "3600", **(tags or {})},
        )
    )
    events = [(DagsterEventType.RUN_START, started)] + ([(DagsterEventType.RUN_SUCCESS, finished)] if finished else [])
    for event_type, moment in events:
        instance.handle_new_event(
            EventLogEntry(
                error_info=None,
                level=logging.DEBUG,
                user_message="",
                run_id=run.run_id,
                timestamp=moment,
                job_name=job,
                dagster_event=DagsterEvent(event_type.value, job_name=job),
            )
        )
    return run.run_id


# --------------------------------------------------------------------------- critical rules


def test_a_failed_blocking_check_alerts_once_with_asset_partition_and_run_link(instance, flower_resources, slack, sink):
    alerts = Sensor(critical_alerts, instance, sink)
    raw = [flower_auction_raw, public_bidding_flowers]
    assert flower_run(instance, flower_resources, assets=raw).success
    with flower_resources["warehouse"].engine().begin() as conn:  # the source serves one row twice
        conn.execute(sa.text(DUPLICATE_A_SERVED_FLOWER_ROW))
    failed = flower_run(instance, flower_resources, assets=[flower_auction_validated, flower_tables])
    assert not failed.success

    alerts.tick()
    [payload] = slack.take()
    assert header(payload) == "🚨 Blocking check failed (data held back)"
    assert "duplicate_keys" in payload["blocks"][1]["text"]["text"]
    assert fields(payload) == {
        "Job": "flower_sync",
        "Asset": "flower_auction_validated",
        "Partition": MONDAY.isoformat(),
        "Run": f"<{UI}/runs/{failed.run_id}|run {failed.run_id[:8]}>",
    }
    assert payload["text"].startswith(":rotating_light: [critical] Blocking check failed")
    assert slack.paths == [f"/services/T000/B000/{HOOK_SECRET}"]

    alerts.tick()
    assert slack.take() == []


def test_the_third_consecutive_failed_run_of_a_job_alerts_once_and_a_success_starts_the_count_again(
    instance, flower_resources, sim, slack, sink
):
    alerts = Sensor(critical_alerts, instance, sink)
    sim.faults.at_result_code = 1
    for _attempt in range(2):
        assert not flower_run(instance, flower_resources).success
        alerts.tick()
    assert slack.take() == []  # two failures: not yet

    third = flower_run(instance, flower_resources)
    alerts.tick()
    [payload] = slack.take()
    assert header(payload) == "🚨 3 consecutive failed runs"
    assert "job flower_sync failed 3 times in a row" in payload["blocks"][1]["text"]["text"]
    assert fields(payload)["Run"] == f"<{UI}/runs/{third.run_id}|run {third.run_id[:8]}>"

    assert not flower_run(instance, flower_resources).success  # the 4th in a row: already alerted
    alerts.tick()
    alerts.tick()
    assert slack.take() == []

    sim.faults.at_result_code = None
    assert flower_run(instance, flower_resources).success
    sim.faults.at_result_code = 1
    for _attempt in range(3):
        assert not flower_run(instance, flower_resources).success
    alerts.tick()
    assert [header(p) for p in slack.take()] == ["🚨 3 consecutive failed runs"]


def test_a_run_still_going_past_its_max_runtime_alerts_once_and_its_termination_does_not_alert_again(
    instance, slack, sink
):
    alerts = Sensor(critical_alerts, instance, sink)
    run_id = recorded_run(instance, started=time.time() - 3700)
    recorded_run(instance, started=time.time() - 600)  # ten minutes in: fine

    alerts.tick()
    [payload] = slack.take()
    assert header(payload) == "🚨 Run over 1 hour"
    assert "still going past its maximum runtime of 60 minutes" in payload["blocks"][1]["text"]["text"]
    assert fields(payload)["Job"] == "aed_sync" and run_id[:8] in fields(payload)["Run"]
    alerts.tick()
    assert slack.take() == []

    # Dagster's run monitoring (the daemon's own check) now fails the run: the same event, no second alert.
    check_run_timeout(instance, instance.get_run_record_by_id(run_id), logging.getLogger(__name__), 3600)
    assert instance.get_run_record_by_id(run_id).dagster_run.status == DagsterRunStatus.FAILURE
    alerts.tick()
    assert slack.take() == []


def test_a_run_failed_by_run_monitoring_for_its_max_runtime_alerts_once(instance, slack, sink):
    run_id = recorded_run(instance, started=time.time() - 3700)
    check_run_timeout(instance, instance.get_run_record_by_id(run_id), logging.getLogger(__name__), 3600)

    alerts = Sensor(critical_alerts, instance, sink)
    alerts.tick()
    [payload] = slack.take()
    assert header(payload) == "🚨 Run over 1 hour"
    assert "exceeded its maximum runtime of 60 minutes" in payload["blocks"][1]["text"]["text"]
    alerts.tick()
    assert slack.take() == []


def test_the_missing_devices_guard_alerts_once_naming_the_counts(instance, fresh_database_url, tmp_path, slack, sink):
    day = dt.date(2026, 3, 2)
    harness = start_harness(fresh_database_url, tmp_path, day=day, aed_count=3000, num_of_rows=1000)
    try:

        def run(on: dt.date, config: dict | None = None):
            harness.sim.today = on
            return dg.materialize(
                AED_ASSETS,
                partition_key=on.isoformat(),
                resources=harness.resources,
                run_config=config or {},
                instance=instance,
                raise_on_error=False,
            )

        assert run(day).success
        harness.sim.faults.snapshot = "half_missing"
        failed = run(day + dt.timedelta(days=1), {"ops": {"aed_validated": {"config": {"row_count_tolerance": 1.0}}}})
        assert not failed.success
    finally:
        harness.server.stop()

    alerts = Sensor(critical_alerts, instance, sink)
    alerts.tick()
    [payload] = slack.take()
    assert header(payload) == "🚨 Missing-devices guard tripped"
    what = payload["blocks"][1]["text"]["text"]
    assert re.match(r"missing-devices guard: \d{3,4} of \d{4} active devices \(\d+\.\d%\) are absent", what)
    assert "nothing was written" in what
    assert fields(payload)["Asset"] == "aed_data" and fields(payload)["Partition"] == "2026-03-03"
    alerts.tick()
    assert slack.take() == []


# --------------------------------------------------------------------------- the daily warning summary


@dg.asset(check_specs=[dg.AssetCheckSpec("row_count_plausible", asset="soft_checked")])
def soft_checked() -> dg.MaterializeResult:
    """An asset whose non-blocking check warns: the kind of failure that only goes into the summary."""
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                check_name="row_count_plausible",
                passed=False,
                severity=dg.AssetCheckSeverity.WARN,
                description="fewer rows than usual",
            )
        ]
    )


def _next_nine_five_kst(after: dt.datetime) -> dt.datetime:
    local = after.astimezone(KST)
    due = local.replace(hour=9, minute=5, second=0, microsecond=0)
    return due if due > local else due + dt.timedelta(days=1)


def test_the_daily_summary_posts_every_warning_once_at_nine_kst(
    instance, flower_resources, sim, slack, sink, monkeypatch
):
    clock = {"now": None}
    monkeypatch.setattr(alerting_defs, "now", lambda: clock["now"])
    due = _next_nine_five_kst(dt.datetime.now(dt.UTC))

    sim.faults.http_error_status, sim.faults.http_error_count = 503, 1  # retried by Dagster, then fine
    retried = flower_run(instance, flower_resources)
    assert retried.success
    sim.reset_faults()
    sim.faults.at_bad_rows = True  # rows rejected by validation, the rest lands
    rejected = flower_run(instance, flower_resources, day=MONDAY + dt.timedelta(days=2))
    assert rejected.success
    assert dg.materialize([soft_checked], instance=instance).success
    now = time.time()
    slow = recorded_run(instance, started=now - 50 * 60, finished=now)
    recovered = recorded_run(instance, started=now - 60, finished=now, tags={"dagster/retry_number": "1"})

    summary = Sensor(daily_warning_summary, instance, sink)
    clock["now"] = due - dt.timedelta(minutes=10)  # 08:55 KST: not yet
    summary.tick()
    assert slack.take() == []

    clock["now"] = due
    summary.tick()
    [payload] = slack.take()
    assert payload["text"] == f":warning: Daily warning summary {due.date().isoformat()} (KST): 5 warning(s)"
    sections = {block["text"]["text"].split("\n")[0]: block["text"]["text"] for block in payload["blocks"][1:]}
    assert set(sections) == {
        "*Failed, then recovered on retry* (2)",
        "*Runs over 45 minutes* (1)",
        "*Non-blocking check failed* (1)",
        "*Rows rejected by validation* (1)",
    }
    recovered_text = sections["*Failed, then recovered on retry* (2)"]
    assert "step flower_auction_raw failed and succeeded on retry (1 retries)" in recovered_text
    assert f"run {retried.run_id[:8]}" in recovered_text and f"run {recovered[:8]}" in recovered_text
    assert "run succeeded on run retry 1" in recovered_text
    assert "run succeeded after 50 minutes" in sections["*Runs over 45 minutes* (1)"] and slow[:8] in str(payload)
    assert (
        "soft_checked: check row_count_plausible failed (WARN): fewer rows than usual"
        in (sections["*Non-blocking check failed* (1)"])
    )
    rejected_text = sections["*Rows rejected by validation* (1)"]
    assert "flower_auction_validated · 2026-03-11:" in rejected_text and "row(s) rejected" in rejected_text
    assert "job flower_sync · flower_auction_validated · 2026-03-11" in rejected_text
    assert "public_bidding_flowers" not in rejected_text and f"{UI}/runs/{rejected.run_id}" in rejected_text

    clock["now"] = due + dt.timedelta(hours=3)  # later the same day: nothing again
    summary.tick()
    clock["now"] = due + dt.timedelta(days=1)  # the next day, nothing new happened: no message
    summary.tick()
    assert slack.take() == []


def test_the_daily_summary_is_posted_the_next_tick_when_slack_refused_it(instance, slack, sink, monkeypatch):
    due = _next_nine_five_kst(dt.datetime.now(dt.UTC))
    monkeypatch.setattr(alerting_defs, "now", lambda: due)
    assert dg.materialize([soft_checked], instance=instance).success
    summary = Sensor(daily_warning_summary, instance, sink)
    slack.status = 500
    summary.tick()
    slack.status = 200
    summary.tick()
    summary.tick()
    assert [p["text"] for p in slack.take()] == [f":warning: Daily warning summary {due.date()} (KST): 1 warning(s)"]


# --------------------------------------------------------------------------- sinks and configuration


def test_an_alert_refused_by_slack_is_sent_on_the_next_tick_and_only_once(instance, flower_resources, sim, slack, sink):
    sim.faults.at_result_code = 1
    for _attempt in range(3):
        assert not flower_run(instance, flower_resources).success
    alerts = Sensor(critical_alerts, instance, sink)
    slack.status = 500
    alerts.tick()
    assert slack.take() == []
    slack.status = 200
    alerts.tick()
    alerts.tick()
    assert [header(p) for p in slack.take()] == ["🚨 3 consecutive failed runs"]


def test_without_a_webhook_alerts_go_to_the_log(instance, monkeypatch, caplog):
    monkeypatch.delenv(settings.SLACK_WEBHOOK_URL_ENV, raising=False)
    monkeypatch.setenv(settings.UI_URL_ENV, UI)
    resource = build_alert_sink()
    assert resource.webhook_url is None and resource.ui_url == UI
    run_id = recorded_run(instance, started=time.time() - 3700)
    log = logging.getLogger("alert_test")
    assert isinstance(resource.sink(log), LogSink)
    with caplog.at_level(logging.INFO, logger="alert_test"):
        alerting_defs.evaluate_critical_alerts(instance, resource, resource.sink(log), None, log)
    [record] = [r for r in caplog.records if r.name == "alert_test"]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("[critical] Run over 1 hour: job aed_sync:")
    assert f"{UI}/runs/{run_id}" in record.getMessage()


def test_the_alert_sink_is_a_resource_and_both_sensors_run_by_default(monkeypatch, slack):
    monkeypatch.setenv(settings.SLACK_WEBHOOK_URL_ENV, slack.url)
    configured = build_resources()["alert_sink"]
    assert isinstance(configured.webhook_url, dg.EnvVar)  # the UI shows the variable's name, not the URL
    assert configured.webhook_url.env_var_name == settings.SLACK_WEBHOOK_URL_ENV
    for sensor in (critical_alerts, daily_warning_summary):
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.required_resource_keys == {"alert_sink"}
