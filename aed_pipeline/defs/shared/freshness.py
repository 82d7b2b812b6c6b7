"""Freshness: the policies the UI shows as asset health, and the sensor that alerts.

Each source of the registry (``lib/sources.py``) names the asset that must hold the partition of
every expected KST date by a deadline (e.g. ``aed_data`` by 07:00; ``bidding_flowers`` by
``AED_PIPELINE_FLOWER_DEADLINE`` on auction days). Open-source Dagster raises no alert when a
``FreshnessPolicy`` is missed, so the sensor below does, once per late partition, through the alert
sink; a table is judged only from its first successful sync, so a fresh install raises nothing.
"""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from aed_pipeline.defs.shared import alerting
from aed_pipeline.defs.shared.alerting import AlertSinkResource
from aed_pipeline.defs.shared.partitions import KST
from aed_pipeline.lib.ops.alerting import Alert, AlertDeliveryError
from aed_pipeline.lib.ops.freshness import FreshnessRule, freshness_rule
from aed_pipeline.lib.ops.source import Source
from aed_pipeline.lib.sources import SOURCES


def freshness_policy(source: Source) -> dg.FreshnessPolicy:
    """The UI's asset health for ``source``'s fresh asset: materialised at least once between 00:00
    KST and the deadline, every day."""
    deadline = freshness_rule(source).deadline
    return dg.FreshnessPolicy.cron(
        deadline_cron=f"{deadline.minute} {deadline.hour} * * *",
        lower_bound_delta=timedelta(hours=deadline.hour, minutes=deadline.minute),
        timezone=KST,
    )


def watched_rules() -> list[FreshnessRule]:
    """One rule per source of the registry (deadlines as configured now)."""
    return [freshness_rule(source) for source in SOURCES]


def _materialized(instance: dg.DagsterInstance, asset: str, partition: str) -> bool:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    return bool(records)


def _first_materialized_at(instance: dg.DagsterInstance, asset: str) -> datetime | None:
    """When the asset was first materialised (its first successful sync), or None if never."""
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1, ascending=True).records
    return datetime.fromtimestamp(records[0].timestamp, UTC) if records else None


def late_partitions(instance: dg.DagsterInstance, now: datetime, alerted: dict[str, str]) -> list[tuple[str, str, str]]:
    """(asset, partition, what) for each watched table whose due partition is missing and was not
    alerted yet; ``alerted`` maps each asset to the newest partition already alerted. A table is
    judged only from its first materialisation on (nothing on a fresh install)."""
    late = []
    for rule in watched_rules():
        due = rule.judged_partition(now, _first_materialized_at(instance, rule.asset))
        if due is None or alerted.get(rule.asset, "") >= due.isoformat():
            continue
        if _materialized(instance, rule.asset, due.isoformat()):
            continue
        late.append(
            (
                rule.asset,
                due.isoformat(),
                f"partition {due.isoformat()} of {rule.asset} is not materialised; it was due by "
                f"{rule.deadline_of(due):%Y-%m-%d %H:%M} KST",
            )
        )
    return late


@dg.sensor(
    name="partition_freshness",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (critical, once per partition) when the newest due KST partition of a source's table "
    + " or ".join(f"{s.fresh_asset} ({freshness_rule(s).deadline:%H:%M} KST)" for s in SOURCES)
    + " is not materialised by its deadline.",
)
def partition_freshness_sensor(context: dg.SensorEvaluationContext, alert_sink: AlertSinkResource) -> dg.SensorResult:
    alerted: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    late = late_partitions(context.instance, alerting.now(), alerted)
    sink = alert_sink.sink(context.log)
    for asset, partition, what in late:
        alert = Alert(
            severity="critical",
            rule="partition_late",
            what=f"{what}. Asset: {alert_sink.ui_url.rstrip('/')}/assets/{asset}",
            asset=asset,
            partition=partition,
        )
        try:
            sink.send_critical(alert)
        except AlertDeliveryError as exc:
            # The cursor keeps what was delivered: this one is sent again on the next tick.
            context.log.warning(str(exc))
            break
        alerted[asset] = partition
    return dg.SensorResult(
        skip_reason=f"{len(late)} late partition(s) found" if late else "every due partition is in",
        cursor=json.dumps(alerted, sort_keys=True),
    )
