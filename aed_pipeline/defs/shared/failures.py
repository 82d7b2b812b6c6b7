"""What a step does when its source fails: one policy for every source.

A transient failure (the API's 5xx, a timeout, a dropped connection) that outlived the client's own
retries re-runs the step after a wait, up to a count; both are run config of the fetching asset
(:class:`StepRetryConfig`). A permanent failure (a bad key, the daily quota, a malformed page), or a
transient one that outlived every step retry, fails the step at once: the sync log records it first,
so the metrics and the alerts count it, and the run fails with one sentence saying what failed,
where, and what was kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import dagster as dg
from pydantic import Field

from aed_pipeline.lib.core.errors import SourceError

DEFAULT_TRANSIENT_RETRIES = 3
#: A step that refuses to write on purpose (e.g. the AED missing-devices guard) names, under this key
#: of its failure's metadata, the critical alert it raises (read by ``defs/shared/alerting.py``).
ALERT_RULE = "alert_rule"


class StepRetryConfig(dg.Config):
    """How a fetching step answers a transient source failure (run config, shown in the launchpad)."""

    transient_retries: int = Field(
        default=DEFAULT_TRANSIENT_RETRIES,
        description="Re-runs of the step after a transient failure (5xx, timeouts) that outlived the client's own "
        "retries; a permanent failure (key, quota, malformed response) is never re-run.",
    )
    transient_retry_wait_seconds: float = Field(
        default=120.0, description="Wait before such a re-run: a source's outages last minutes."
    )


def is_transient(error: BaseException) -> bool:
    """Whether trying the step again later can succeed with nobody doing anything."""
    return isinstance(error, SourceError) and error.transient


def retry_or_fail(
    context: dg.AssetExecutionContext,
    error: SourceError,
    config: StepRetryConfig,
    *,
    record_failure: Callable[[SourceError], None],
    failed: str = "",
    kept: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> NoReturn:
    """Re-run the step for a transient ``error``, or record the failed sync and fail the step.

    ``failed`` opens the failure's sentence (what was being done), ``kept`` closes it (what the next
    run can build on); the error itself names the source, operation, page and code.
    """
    if is_transient(error) and context.retry_number < config.transient_retries:
        context.log.warning(f"transient failure, the step will be re-run: {error}")
        raise dg.RetryRequested(
            max_retries=config.transient_retries, seconds_to_wait=config.transient_retry_wait_seconds
        ) from error
    # A permanent error, or a transient one that outlived every step retry: the sync log (hence the
    # metrics and alerts) records the failure with its cause either way.
    record_failure(error)
    gave_up = f" (still failing after {context.retry_number + 1} step attempts)" if is_transient(error) else ""
    raise dg.Failure(
        description=f"{failed}{type(error).__name__}: {error}{gave_up}{kept}",
        metadata={"error_type": type(error).__name__, **(metadata or {})},
        allow_retries=False,
    ) from error


def refused(error: Exception) -> dg.Failure:
    """The step's failure for a write that refused its data on purpose (a blocking check failed, the
    missing-devices guard tripped): not retried, its sentence as the description, and the alert
    rule the error carries (``alert_rule``), if any, for the critical alerts."""
    rule = getattr(error, "alert_rule", None)
    return dg.Failure(description=str(error), metadata={ALERT_RULE: rule} if rule else None, allow_retries=False)
