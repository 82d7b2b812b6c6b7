"""The Slack webhook sink on its own, against a real HTTP server standing in for Slack: the webhook
URL (its secret path) never appears in logs, errors or the sink's repr."""

from __future__ import annotations

import logging

import pytest

from aed_pipeline.lib.ops.alerting import Alert, AlertDeliveryError, SlackWebhookSink
from aed_pipeline_tests.support.alert_support import HOOK_SECRET, UI, slack
from aed_pipeline_tests.support.helpers import exception_texts


def test_the_webhook_url_never_appears_in_logs_or_errors(slack, caplog):
    alert = Alert(
        severity="critical",
        rule="consecutive_failures",
        what="boom",
        job="aed_sync",
        run_id="r" * 36,
        run_url=f"{UI}/runs/{'r' * 36}",
    )
    caplog.set_level(logging.DEBUG)  # httpx logs each request URL at INFO
    SlackWebhookSink(slack.url).send_critical(alert)
    slack.status = 403
    with pytest.raises(AlertDeliveryError, match="HTTP 403") as refused:
        SlackWebhookSink(slack.url).send_critical(alert)
    dead = slack.url.replace(str(slack.server.server_address[1]), "9")  # nothing listens on port 9
    with pytest.raises(AlertDeliveryError, match="could not be reached") as unreachable:
        SlackWebhookSink(dead, timeout_seconds=2).send_critical(alert)
    assert any(r.name == "httpx" for r in caplog.records)  # the request was logged, without its URL
    for exc in (refused.value, unreachable.value):
        assert not any(HOOK_SECRET in text for text in exception_texts(exc))
    assert not any(HOOK_SECRET in r.getMessage() for r in caplog.records)
    assert HOOK_SECRET not in repr(SlackWebhookSink(slack.url))
