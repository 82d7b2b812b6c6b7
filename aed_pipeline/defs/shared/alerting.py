"""Alerting: two sensors reading Dagster's event log and run records, and the sink they post to.

``critical_alerts`` (every 30 s) reads each failed run once, after a cursor on the event log, and
alerts at once on a failed blocking check, the third consecutive failed run of a job, a run over
its ``dagster/max_runtime`` (failed by run monitoring, or still running), and the AED
missing-devices guard. ``daily_warning_summary`` posts once per KST day, at or after 09:00, the
warnings of every run that finished since the previous summary: steps or runs that failed and
recovered on retry, runs over 45 minutes, failed non-blocking checks and rejected rows.

Every piece of state that keeps an alert from repeating lives in the sensor's JSON cursor. Both
sensors read run-status events (``fetch_run_status_changes``) and then the run's own log, which
every Dagster event-log storage answers (the default SQLite storage cannot query other events
across runs).
"""

import base64
import json
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus, RunsFilter, RunStatusChangeRecordsFilter

from aed_pipeline.defs.shared.failures import ALERT_RULE
from aed_pipeline.defs.shared.partitions import (
    MAX_RUNTIME_SECONDS,
    MAX_RUNTIME_TAG,
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    PARTITION_TAG,
    SLOW_RUN_SECONDS,
)
from aed_pipeline.lib.core import settings
from aed_pipeline.lib.core.kst import KST
from aed_pipeline.lib.ops.alerting import Alert, AlertDeliveryError, AlertSink, LogSink, SlackWebhookSink, run_url
from aed_pipeline.lib.sources import SOURCES

CRITICAL_INTERVAL_SECONDS = 30
SUMMARY_INTERVAL_SECONDS = 300
SUMMARY_HOUR_KST = 9
#: Without a cursor (the first tick ever), events of this many seconds back are considered.
FIRST_LOOKBACK_SECONDS = 24 * 3600
#: A failure's predecessors are looked for among the job's newest finished runs.
CONSECUTIVE_FAILURES = 3
RUN_HISTORY_LIMIT = 50
EVENTS_PER_TICK = 200
#: The assets whose materialisations report the rows their validation rejected, under ``rejected_rows``.
VALIDATED_ASSETS = frozenset(source.validated_asset for source in SOURCES)
REJECTED_ROWS = "rejected_rows"
MAX_RUNTIME_TEXT = "maximum runtime"
RETRY_NUMBER_TAG = "dagster/retry_number"


def now() -> datetime:
    """The current moment (aware); one place, so that tests can set the clock of the 09:00 summary."""
    return datetime.now(UTC)


class AlertSinkResource(dg.ConfigurableResource):
    """Where alerts go: the Slack incoming webhook when configured, the log otherwise."""

    webhook_url: str | None = None
    ui_url: str = settings.DEFAULT_UI_URL
    timeout_seconds: float = 10.0

    def sink(self, log) -> AlertSink:
        if self.webhook_url:
            return SlackWebhookSink(self.webhook_url, timeout_seconds=self.timeout_seconds)
        return LogSink(log)

    def run_url(self, run_id: str) -> str:
        return run_url(self.ui_url, run_id)


def build_alert_sink() -> AlertSinkResource:
    """The alert sink as configured by the environment; the webhook URL only as an EnvVar."""
    return AlertSinkResource(
        webhook_url=(
            dg.EnvVar(settings.SLACK_WEBHOOK_URL_ENV) if settings.env_or_none(settings.SLACK_WEBHOOK_URL_ENV) else None
        ),
        ui_url=settings.env_or_none(settings.UI_URL_ENV) or settings.DEFAULT_UI_URL,
    )


# --------------------------------------------------------------------------- reading runs


def _partition(run: dg.DagsterRun, partition: str | None = None) -> str | None:
    if partition:
        return partition
    tags = run.tags
    if tags.get(PARTITION_TAG):
        return tags[PARTITION_TAG]
    if tags.get(PARTITION_RANGE_START_TAG):
        return f"{tags[PARTITION_RANGE_START_TAG]}…{tags.get(PARTITION_RANGE_END_TAG, '')}"
    return None


def _max_runtime(run: dg.DagsterRun) -> float:
    try:
        return float(run.tags.get(MAX_RUNTIME_TAG, MAX_RUNTIME_SECONDS))
    except ValueError:
        return float(MAX_RUNTIME_SECONDS)


def _duration(record) -> float | None:
    if record.start_time is None or record.end_time is None:
        return None
    return record.end_time - record.start_time


class _AlertFactory:
    """Builds alerts for one run, with its job, partition and link filled in."""

    def __init__(self, record, sink_resource: AlertSinkResource):
        self.run = record.dagster_run
        self.sink_resource = sink_resource

    def __call__(
        self, severity: str, rule: str, what: str, *, asset: str | None = None, partition: str | None = None
    ) -> Alert:
        return Alert(
            severity=severity,
            rule=rule,
            what=what,
            job=self.run.job_name,
            asset=asset,
            partition=_partition(self.run, partition),
            run_id=self.run.run_id,
            run_url=self.sink_resource.run_url(self.run.run_id),
        )


def _check_evaluations(instance: dg.DagsterInstance, run_id: str):
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        yield entry.dagster_event.event_specific_data


def _is_blocking_failure(evaluation) -> bool:
    return (not evaluation.passed) and bool(evaluation.blocking) and evaluation.severity == dg.AssetCheckSeverity.ERROR


def _third_consecutive_failure(instance: dg.DagsterInstance, record) -> bool:
    """Whether this failed run is exactly the 3rd failure in a row of its job (by end time)."""
    finished = [
        r
        for r in instance.get_run_records(
            RunsFilter(
                job_name=record.dagster_run.job_name, statuses=[DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]
            ),
            limit=RUN_HISTORY_LIMIT,
        )
        if r.end_time is not None and r.end_time <= record.end_time
    ]
    finished.sort(key=lambda r: (r.end_time, r.storage_id), reverse=True)
    statuses = [r.dagster_run.status for r in finished[: CONSECUTIVE_FAILURES + 1]]
    failures = [s == DagsterRunStatus.FAILURE for s in statuses]
    return (
        bool(finished)
        and finished[0].dagster_run.run_id == record.dagster_run.run_id
        and failures[:CONSECUTIVE_FAILURES] == [True] * CONSECUTIVE_FAILURES
        and (len(failures) == CONSECUTIVE_FAILURES or not failures[CONSECUTIVE_FAILURES])
    )


def failed_run_alerts(instance: dg.DagsterInstance, run_id: str, sink_resource: AlertSinkResource) -> list[Alert]:
    """The critical alerts one failed run raises (none when it failed for an ordinary reason once or twice)."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return []
    alert = _AlertFactory(record, sink_resource)
    alerts: list[Alert] = []

    held_back: dict[tuple[str, str | None], list[str]] = {}
    for evaluation in _check_evaluations(instance, run_id):
        if _is_blocking_failure(evaluation):
            held_back.setdefault((evaluation.asset_key.to_user_string(), evaluation.partition), []).append(
                evaluation.check_name
            )
    for (asset, partition), checks in held_back.items():
        alerts.append(
            alert(
                "critical",
                "blocking_check_failed",
                f"blocking check(s) failed: {', '.join(checks)}; the data was held back and the tables keep "
                "their previous contents",
                asset=asset,
                partition=partition,
            )
        )

    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        failure = entry.dagster_event.event_specific_data.user_failure_data
        rule = failure.metadata.get(ALERT_RULE) if failure is not None else None
        if rule is not None:
            alerts.append(alert("critical", rule.value, failure.description or "", asset=entry.step_key))

    if _third_consecutive_failure(instance, record):
        message = next(
            (e.message for e in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE) if e.message), ""
        )
        alerts.append(
            alert(
                "critical",
                "consecutive_failures",
                f"job {record.dagster_run.job_name} failed {CONSECUTIVE_FAILURES} times in a row; latest: {message}",
            )
        )
    return alerts


def _stopped_for_max_runtime(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether run monitoring stopped the run for exceeding ``dagster/max_runtime``."""
    entries = instance.all_logs(run_id, of_type={DagsterEventType.RUN_CANCELING, DagsterEventType.RUN_FAILURE})
    return any(MAX_RUNTIME_TEXT in (entry.message or "").lower() for entry in entries)


def _over_runtime_alert(record, sink_resource: AlertSinkResource, state: str) -> Alert:
    limit = _max_runtime(record.dagster_run)
    return _AlertFactory(record, sink_resource)(
        "critical", "run_over_max_runtime", f"the run {state} its maximum runtime of {limit / 60:.0f} minutes"
    )


# --------------------------------------------------------------------------- critical sensor


def _load(cursor: str | None) -> dict[str, Any]:
    return json.loads(cursor) if cursor else {}


def _storage_id(position: int | str | None) -> int | None:
    """The event-log position a cursor holds: a storage id (cursors written before it was stored as a
    plain number hold Dagster's base64 JSON ``{"type": "STORAGE_ID", "value": N}``)."""
    if position is None or isinstance(position, int):
        return position
    return int(json.loads(base64.b64decode(position))["value"])


def _status_changes(instance: dg.DagsterInstance, event_type, after: int | None, at: datetime):
    """Run-status events after the storage id ``after``, oldest first (the last day's when there is
    no position yet)."""
    records_filter = (
        RunStatusChangeRecordsFilter(event_type, after_storage_id=after)
        if after is not None
        else RunStatusChangeRecordsFilter(event_type, after_timestamp=at.timestamp() - FIRST_LOOKBACK_SECONDS)
    )
    return instance.fetch_run_status_changes(records_filter, limit=EVENTS_PER_TICK, ascending=True)


def _running_over_limit(instance: dg.DagsterInstance, at: datetime):
    for record in instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING])):
        if record.start_time is not None and at.timestamp() - record.start_time > _max_runtime(record.dagster_run):
            yield record


def evaluate_critical_alerts(
    instance: dg.DagsterInstance, sink_resource: AlertSinkResource, sink: AlertSink, cursor: str | None, log
) -> tuple[str, int]:
    """Send the critical alerts that are due; return the new cursor and the number of alerts sent.

    The cursor holds the position after the last failed run handled (``failures``), the runs already
    alerted as over their maximum runtime (``long_runs``: run id → when, kept a day), and the alerts
    already sent for the next failed run when a delivery error interrupted its handling (``sent``).
    """
    at = now()
    state = _load(cursor)
    long_runs: dict[str, float] = state.get("long_runs", {})
    failures_after = _storage_id(state.get("failures"))
    sent_for_next: list[str] = state.get("sent", [])
    sent = 0
    try:
        for record in _running_over_limit(instance, at):
            run_id = record.dagster_run.run_id
            if run_id not in long_runs:
                sink.send_critical(_over_runtime_alert(record, sink_resource, "is still going past"))
                long_runs[run_id] = at.timestamp()
                sent += 1

        for change in _status_changes(instance, DagsterEventType.RUN_FAILURE, failures_after, at).records:
            run_id = change.run_id
            alerts = failed_run_alerts(instance, run_id, sink_resource)
            if run_id not in long_runs and _stopped_for_max_runtime(instance, run_id):
                alerts.append(_over_runtime_alert(instance.get_run_record_by_id(run_id), sink_resource, "exceeded"))
            for alert in alerts:
                key = f"{alert.rule}:{alert.asset}:{alert.partition}"
                if key not in sent_for_next:
                    sink.send_critical(alert)
                    sent_for_next.append(key)
                    sent += 1
                if alert.rule == "run_over_max_runtime":
                    long_runs[run_id] = at.timestamp()
            failures_after = change.storage_id
            sent_for_next = []
    except AlertDeliveryError as exc:
        # The run being handled is handled again next tick; what was already sent for it is remembered.
        log.error(f"alert delivery failed, retrying on the next tick: {exc}")
    long_runs = {run_id: t for run_id, t in long_runs.items() if at.timestamp() - t < FIRST_LOOKBACK_SECONDS}
    return json.dumps({"failures": failures_after, "long_runs": long_runs, "sent": sent_for_next}), sent


@dg.sensor(
    minimum_interval_seconds=CRITICAL_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Critical alerts at once: a failed blocking check, the 3rd consecutive failed run of a job, a run "
    "over 1 hour, the AED missing-devices guard. Each event alerts once (cursor on the event log).",
)
def critical_alerts(context: dg.SensorEvaluationContext, alert_sink: AlertSinkResource) -> dg.SensorResult:
    cursor, sent = evaluate_critical_alerts(
        context.instance, alert_sink, alert_sink.sink(context.log), context.cursor, context.log
    )
    return dg.SensorResult(cursor=cursor, skip_reason=None if sent else "no new critical event")


# --------------------------------------------------------------------------- daily warning summary


def finished_run_warnings(instance: dg.DagsterInstance, run_id: str, sink_resource: AlertSinkResource) -> list[Alert]:
    """The warnings of one finished run: recovered retries, slowness, soft check failures, rejected rows."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        return []
    run = record.dagster_run
    warning = _AlertFactory(record, sink_resource)
    warnings: list[Alert] = []
    succeeded = run.status == DagsterRunStatus.SUCCESS

    if succeeded:
        retried: dict[str, int] = {}
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY):
            retried[entry.step_key] = retried.get(entry.step_key, 0) + 1
        for step, count in retried.items():
            warnings.append(
                warning(
                    "warning",
                    "retry_recovered",
                    f"step {step} failed and succeeded on retry ({count} retries)",
                    asset=step,
                )
            )
        if int(run.tags.get(RETRY_NUMBER_TAG, "0") or 0) > 0:
            warnings.append(
                warning(
                    "warning",
                    "retry_recovered",
                    f"run succeeded on run retry {run.tags[RETRY_NUMBER_TAG]} (the earlier attempts failed)",
                )
            )

    duration = _duration(record)
    if duration is not None and SLOW_RUN_SECONDS < duration <= _max_runtime(run):
        warnings.append(
            warning(
                "warning", "slow_run", f"run {'succeeded' if succeeded else 'failed'} after {duration / 60:.0f} minutes"
            )
        )

    for evaluation in _check_evaluations(instance, run_id):
        if not evaluation.passed and not _is_blocking_failure(evaluation):
            warnings.append(
                warning(
                    "warning",
                    "check_warning",
                    f"check {evaluation.check_name} failed ({evaluation.severity.value})"
                    + (f": {evaluation.description}" if evaluation.description else ""),
                    asset=evaluation.asset_key.to_user_string(),
                    partition=evaluation.partition,
                )
            )

    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.dagster_event.event_specific_data.materialization
        asset = materialization.asset_key.to_user_string()
        value = materialization.metadata.get(REJECTED_ROWS) if asset in VALIDATED_ASSETS else None
        rejected = getattr(value, "value", None)
        if isinstance(rejected, int) and rejected > 0:
            warnings.append(
                warning(
                    "warning",
                    "rejected_rows",
                    f"{rejected} row(s) rejected (kept in rejected_records)",
                    asset=asset,
                    partition=materialization.partition,
                )
            )
    return warnings


def _all_status_changes(instance: dg.DagsterInstance, event_type, after: int | None, at: datetime):
    """Every run-status event of the type after the storage id ``after``; the records and the
    position after them."""
    records = []
    while True:
        page = _status_changes(instance, event_type, after, at)
        records += page.records
        if page.records:
            after = page.records[-1].storage_id
        if not page.has_more:
            return records, after


def summary_due(at: datetime, last_day: str | None) -> date | None:
    """The KST day whose summary is due at ``at`` (at or after 09:00 KST, once a day), or None."""
    local = at.astimezone(KST)
    if local.hour < SUMMARY_HOUR_KST or last_day == local.date().isoformat():
        return None
    return local.date()


def evaluate_daily_summary(
    instance: dg.DagsterInstance, sink_resource: AlertSinkResource, sink: AlertSink, cursor: str | None, log
) -> tuple[str | None, int]:
    """Post the day's warning summary when due; return the new cursor and the number of warnings posted.

    The cursor holds the KST day of the last summary and, per run outcome, the position after the
    last finished run summarised: the next summary starts where this one ended.
    """
    at = now()
    state = _load(cursor)
    day = summary_due(at, state.get("day"))
    if day is None:
        return cursor, 0
    warnings: list[Alert] = []
    positions: dict[str, int | None] = {}
    for name, event_type in (("success", DagsterEventType.RUN_SUCCESS), ("failure", DagsterEventType.RUN_FAILURE)):
        records, positions[name] = _all_status_changes(instance, event_type, _storage_id(state.get(name)), at)
        for change in records:
            warnings += finished_run_warnings(instance, change.run_id, sink_resource)
    if warnings:
        try:
            sink.send_summary(day, warnings)
        except AlertDeliveryError as exc:
            log.error(f"daily warning summary not delivered, retrying on the next tick: {exc}")
            return cursor, 0
    else:
        log.info(f"daily warning summary {day.isoformat()}: no warnings")
    return json.dumps({"day": day.isoformat(), **positions}), len(warnings)


@dg.sensor(
    minimum_interval_seconds=SUMMARY_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Once a day at 09:00 KST, one message with the warnings of the runs finished since the last one: "
    "retries that recovered, runs over 45 minutes, failed non-blocking checks, rejected rows.",
)
def daily_warning_summary(context: dg.SensorEvaluationContext, alert_sink: AlertSinkResource) -> dg.SensorResult:
    cursor, posted = evaluate_daily_summary(
        context.instance, alert_sink, alert_sink.sink(context.log), context.cursor, context.log
    )
    return dg.SensorResult(cursor=cursor, skip_reason=None if posted else "no summary due")
