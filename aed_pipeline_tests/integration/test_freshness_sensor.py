"""The freshness sensor: a late partition alerts once, through a real HTTP server standing in for Slack."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time

from aed_pipeline.defs.shared import alerting as alerting_defs
from aed_pipeline.defs.shared.freshness import partition_freshness_sensor
from aed_pipeline_tests.support.alert_support import UI, Sensor, fields, header, instance, sink, slack

UTC = dt.UTC


@pytest.fixture
def clock(monkeypatch) -> dict[str, dt.datetime]:
    now = {"at": dt.datetime(2026, 3, 9, 21, 0, tzinfo=UTC)}
    monkeypatch.setattr(alerting_defs, "now", lambda: now["at"])
    return now


def _materialize(instance: dg.DagsterInstance, asset: str, partition: str, at: dt.datetime | None = None) -> None:
    """Record a materialisation of one partition, as a run of the asset would: at ``at``, by default
    at 05:00 KST on the partition's date (before either deadline, as the daily runs land)."""
    at = at or dt.datetime.fromisoformat(f"{partition}T05:00:00+09:00")
    with freeze_time(at):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=partition))


def test_a_late_partition_alerts_once_and_a_materialised_one_never(instance, sink, slack, clock):
    sensor = Sensor(partition_freshness_sensor, instance, sink)
    # Tuesday 2026-03-10 06:00 KST: Monday's AED partition and Monday's flowers are due; Monday's
    # flowers are in, Monday's AED partition is not (the AED sync ran until Sunday).
    _materialize(instance, "aed_data", "2026-03-08")
    _materialize(instance, "bidding_flowers", "2026-03-09")
    sensor.tick()
    [alert] = slack.take()
    assert header(alert) == "🚨 Partition not in by its deadline"
    assert fields(alert)["Asset"] == "aed_data" and fields(alert)["Partition"] == "2026-03-09"
    text = alert["blocks"][1]["text"]["text"]
    assert "due by 2026-03-09 07:00 KST" in text and f"{UI}/assets/aed_data" in text

    sensor.tick()
    assert slack.take() == []  # the same late partition is not alerted twice

    # Once it lands, later ticks stay quiet; the next day's partition is judged after its own deadline.
    _materialize(instance, "aed_data", "2026-03-09")
    clock["at"] = dt.datetime(2026, 3, 9, 21, 59, tzinfo=UTC)  # 06:59 KST on the 10th
    sensor.tick()
    assert slack.take() == []
    clock["at"] = dt.datetime(2026, 3, 9, 23, 30, tzinfo=UTC)  # 08:30 KST on the 10th
    sensor.tick()
    alerts = slack.take()
    assert sorted((fields(a)["Asset"], fields(a)["Partition"]) for a in alerts) == [
        ("aed_data", "2026-03-10"),
        ("bidding_flowers", "2026-03-10"),
    ]
    sensor.tick()
    assert slack.take() == []


def test_no_flower_alert_on_a_day_without_auction(instance, sink, slack, clock):
    sensor = Sensor(partition_freshness_sensor, instance, sink)
    _materialize(instance, "aed_data", "2026-03-08")
    _materialize(instance, "bidding_flowers", "2026-03-07")
    clock["at"] = dt.datetime(2026, 3, 8, 3, 0, tzinfo=UTC)  # Sunday 2026-03-08 12:00 KST
    sensor.tick()
    assert slack.take() == []


def test_an_alert_slack_refused_is_sent_on_the_next_tick_and_only_once(instance, sink, slack, clock):
    sensor = Sensor(partition_freshness_sensor, instance, sink)
    _materialize(instance, "aed_data", "2026-03-08")
    _materialize(instance, "bidding_flowers", "2026-03-09")
    slack.status = 500
    sensor.tick()
    assert slack.take() == []
    slack.status = 200
    sensor.tick()
    assert [fields(a)["Partition"] for a in slack.take()] == ["2026-03-09"]
    sensor.tick()
    assert slack.take() == []


def test_a_fresh_install_raises_no_freshness_alert(instance, sink, slack, clock):
    """Nothing was ever synced: no table owes a partition yet, whatever the time."""
    sensor = Sensor(partition_freshness_sensor, instance, sink)
    for at in (dt.datetime(2026, 3, 9, 21, 0, tzinfo=UTC), dt.datetime(2026, 3, 10, 23, 30, tzinfo=UTC)):
        clock["at"] = at
        sensor.tick()
        assert slack.take() == []


def test_freshness_is_judged_from_the_first_sync_on(instance, sink, slack, clock):
    """The first AED sync lands on Tuesday 10:00 KST (a backfill of Monday): Tuesday's 07:00 deadline
    had passed before it, so only Wednesday's is judged; flowers, never synced, owe nothing."""
    _materialize(instance, "aed_data", "2026-03-09", at=dt.datetime(2026, 3, 10, 1, 0, tzinfo=UTC))
    sensor = Sensor(partition_freshness_sensor, instance, sink)
    clock["at"] = dt.datetime(2026, 3, 10, 3, 0, tzinfo=UTC)  # Tuesday 12:00 KST
    sensor.tick()
    assert slack.take() == []
    clock["at"] = dt.datetime(2026, 3, 10, 23, 0, tzinfo=UTC)  # Wednesday 08:00 KST
    sensor.tick()
    assert [(fields(a)["Asset"], fields(a)["Partition"]) for a in slack.take()] == [("aed_data", "2026-03-11")]
