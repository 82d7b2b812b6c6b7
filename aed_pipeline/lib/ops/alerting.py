"""Alerts for the people on call: what broke, where, and a link to the run.

Critical alerts (data corruption stopped, a job failing again and again, a run hanging, the
missing-devices guard) go out one by one, at once; warnings (retries that recovered, slow runs,
non-blocking check failures, rejected rows) go out once a day as one summary grouped by rule.

A sink delivers them: a Slack incoming webhook when one is configured, the log otherwise. The
webhook URL is itself the credential, so it never appears in a log line or an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, Protocol

import httpx

from aed_pipeline.lib.core.http import register_secret

logger = logging.getLogger(__name__)

Severity = Literal["critical", "warning"]

#: Alert rules, with the title a reader sees. Critical first, then the daily-summary warnings.
RULE_TITLES = {
    "blocking_check_failed": "Blocking check failed (data held back)",
    "consecutive_failures": "3 consecutive failed runs",
    "run_over_max_runtime": "Run over 1 hour",
    "missing_devices_guard": "Missing-devices guard tripped",
    "partition_late": "Partition not in by its deadline",
    "retry_recovered": "Failed, then recovered on retry",
    "slow_run": "Runs over 45 minutes",
    "check_warning": "Non-blocking check failed",
    "rejected_rows": "Rows rejected by validation",
}
#: Slack section text is limited to 3,000 characters; a summary lists at most this many per rule.
SUMMARY_ITEMS_PER_RULE = 15


@dataclass(frozen=True)
class Alert:
    """One thing that went wrong, said once."""

    severity: Severity
    rule: str
    what: str
    job: str | None = None
    asset: str | None = None
    partition: str | None = None
    run_id: str | None = None
    run_url: str | None = None

    @property
    def title(self) -> str:
        return RULE_TITLES.get(self.rule, self.rule)

    def where(self) -> str:
        """Job, asset and partition in one short phrase (those that are known)."""
        parts = [f"job {self.job}" if self.job else "", self.asset or "", self.partition or ""]
        return " · ".join(p for p in parts if p) or "unknown"

    def line(self) -> str:
        """The alert as one plain line (for the log and the fallback text of a message)."""
        run = f" (run {self.run_id[:8]}: {self.run_url})" if self.run_id and self.run_url else ""
        return f"[{self.severity}] {self.title}: {self.where()}: {self.what}{run}"


def run_url(ui_url: str, run_id: str) -> str:
    """The run's page in the Dagster UI."""
    return f"{ui_url.rstrip('/')}/runs/{run_id}"


def _mrkdwn_escape(text: str) -> str:
    # Slack's mrkdwn gives &, < and > a meaning of their own.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _run_link(alert: Alert) -> str:
    if not (alert.run_id and alert.run_url):
        return ""
    return f"<{alert.run_url}|run {alert.run_id[:8]}>"


def critical_payload(alert: Alert) -> dict[str, Any]:
    """The Slack message of one critical alert: text (notifications) plus blocks (the message)."""
    fields = [
        ("Job", alert.job),
        ("Asset", alert.asset),
        ("Partition", alert.partition),
        ("Run", _run_link(alert) or None),
    ]
    return {
        "text": f":rotating_light: {alert.line()}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"🚨 {alert.title}"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn_escape(alert.what)[:2900]}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in fields if value],
            },
        ],
    }


def summary_payload(day: date, warnings: Sequence[Alert]) -> dict[str, Any]:
    """The daily summary: one message listing the warnings grouped by rule."""
    by_rule: dict[str, list[Alert]] = {}
    for warning in warnings:
        by_rule.setdefault(warning.rule, []).append(warning)
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"Daily warning summary {day.isoformat()} (KST)"},
        }
    ]
    for rule in sorted(by_rule, key=lambda r: list(RULE_TITLES).index(r) if r in RULE_TITLES else len(RULE_TITLES)):
        items = by_rule[rule]
        lines = [
            f"• {_mrkdwn_escape(item.where())}: {_mrkdwn_escape(item.what)} {_run_link(item)}".rstrip()
            for item in items[:SUMMARY_ITEMS_PER_RULE]
        ]
        if len(items) > SUMMARY_ITEMS_PER_RULE:
            lines.append(f"… and {len(items) - SUMMARY_ITEMS_PER_RULE} more")
        text = f"*{RULE_TITLES.get(rule, rule)}* ({len(items)})\n" + "\n".join(lines)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:2990]}})
    return {
        "text": f":warning: Daily warning summary {day.isoformat()} (KST): {len(warnings)} warning(s)",
        "blocks": blocks,
    }


class AlertDeliveryError(Exception):
    """The alert could not be delivered (the message never names the webhook URL)."""


class AlertSink(Protocol):
    def send_critical(self, alert: Alert) -> None: ...

    def send_summary(self, day: date, warnings: Sequence[Alert]) -> None: ...


class SlackWebhookSink:
    """Posts alerts to a Slack incoming webhook."""

    def __init__(
        self, webhook_url: str, *, timeout_seconds: float = 10.0, transport: httpx.BaseTransport | None = None
    ):
        # httpx logs every request URL at INFO; the registered secret is redacted from those lines.
        register_secret(webhook_url)
        self._url = webhook_url
        self._timeout = timeout_seconds
        self._transport = transport

    def __repr__(self) -> str:
        return "SlackWebhookSink(webhook_url=***)"

    def send_critical(self, alert: Alert) -> None:
        self.post(critical_payload(alert))

    def send_summary(self, day: date, warnings: Sequence[Alert]) -> None:
        self.post(summary_payload(day, warnings))

    def post(self, payload: dict[str, Any]) -> None:
        """Post one message; raise :class:`AlertDeliveryError` unless Slack answers 2xx."""
        failure: str | None = None
        try:
            with httpx.Client(timeout=self._timeout, transport=self._transport) as client:
                response = client.post(self._url, json=payload)
        except httpx.HTTPError as exc:
            # Built outside the handler: the httpx exception (which carries the URL) stays out of the chain.
            failure = f"the Slack webhook could not be reached: {type(exc).__name__}"
        if failure:
            raise AlertDeliveryError(failure)
        if not response.is_success:
            raise AlertDeliveryError(f"the Slack webhook answered HTTP {response.status_code}: {response.text[:200]!r}")


class LogSink:
    """Without a webhook, alerts go to the log: critical ones as errors, the summary as a warning."""

    def __init__(self, log: logging.Logger | Any = logger):
        self._log = log

    def send_critical(self, alert: Alert) -> None:
        self._log.error(alert.line())

    def send_summary(self, day: date, warnings: Sequence[Alert]) -> None:
        lines = "\n".join(f"  {warning.line()}" for warning in warnings)
        self._log.warning(f"daily warning summary {day.isoformat()} (KST): {len(warnings)} warning(s)\n{lines}")
