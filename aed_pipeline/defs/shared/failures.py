"""What a step does when its source or the warehouse fails: one policy for every source and step.

A transient failure re-runs the step after a wait, up to a count; both are run config of the step
(:class:`StepRetryConfig`). Transient are the API's 5xx, timeouts and dropped connections that
outlived the client's own retries (``SourceError.transient``), and a warehouse outage: its
connection lost or refused, the server shut down or restarting (``is_warehouse_outage`` in
``lib/core/warehouse.py``), in any step that touches the warehouse (:func:`warehouse_step`). A re-run
runs the step's body again from the start, so its transactions start afresh; the interrupted one
was rolled back by the server and wrote nothing.

A permanent failure (a bad key, the daily quota, a malformed page; a constraint violation, a missing
table, credentials the warehouse refuses), or a transient one that outlived every step retry, fails
the step at once, with one sentence saying what failed, where, and what was kept. The sync log
records it (an outage's failure once the warehouse is back), so the metrics and the alerts count it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import dagster as dg
from pydantic import Field

from aed_pipeline.lib.core.errors import SourceError
from aed_pipeline.lib.core.kst import date_span
from aed_pipeline.lib.core.sync_log import error_type_of
from aed_pipeline.lib.core.warehouse import (
    WAREHOUSE_UNAVAILABLE,
    database_error_text,
    discard_pooled_connections,
    driver_error,
    is_database_error,
    is_login_refusal,
    is_warehouse_outage,
)

if TYPE_CHECKING:
    from aed_pipeline.defs.shared.resources import WarehouseResource

DEFAULT_TRANSIENT_RETRIES = 3
#: A step that refuses to write on purpose (e.g. the AED missing-devices guard) names, under this key
#: of its failure's metadata, the critical alert it raises (read by ``defs/shared/alerting.py``).
ALERT_RULE = "alert_rule"


class StepRetryConfig(dg.Config):
    """How a step answers a transient failure of its source or the warehouse (run config, shown in the launchpad)."""

    transient_retries: int = Field(
        default=DEFAULT_TRANSIENT_RETRIES,
        description="Re-runs of the step after a transient failure: the API's 5xx or timeouts that outlived the "
        "client's own retries, or the warehouse's connection lost or refused (a restart, a failover). A permanent "
        "failure (key, quota, malformed response; a constraint violation, a missing table, refused credentials) "
        "is never re-run.",
    )
    transient_retry_wait_seconds: float = Field(
        default=120.0,
        description="Wait before such a re-run: a source's outages last minutes, a warehouse restart or failover "
        "a minute or two.",
    )


def is_transient(error: BaseException) -> bool:
    """Whether trying the step again later can succeed with nobody doing anything."""
    return (isinstance(error, SourceError) and error.transient) or is_warehouse_outage(error)


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


# --------------------------------------------------------------------------- the warehouse

Step = TypeVar("Step", bound=Callable[..., Any])


def warehouse_step(doing: str) -> Callable[[Step], Step]:
    """The step policy for an asset's warehouse errors, put under its ``@dg.asset``:
    ``@warehouse_step("applying the validated e-gen snapshot to aed_data")``.

    The asset takes ``context``, a ``config`` of :class:`StepRetryConfig` and the ``warehouse``
    resource. A warehouse outage anywhere in its body (the sync log, the reads, the writes and their
    checks) re-runs the step; once it outlived every retry, or for any other database error at once,
    the step fails with one sentence naming the warehouse (password redacted), what the step was
    ``doing`` for which partitions, and, for an outage, how many attempts were made.
    """

    def decorate(fn: Step) -> Step:
        parameters = inspect.signature(fn).parameters
        missing = {"context", "config", "warehouse"} - set(parameters)
        if missing:
            raise TypeError(f"{fn.__name__} needs {', '.join(sorted(missing))} for the warehouse step policy")

        def guard(kwargs: dict[str, Any], context: dg.AssetExecutionContext, error: Exception) -> NoReturn:
            config, warehouse = kwargs["config"], kwargs["warehouse"]
            if not isinstance(config, StepRetryConfig):  # checked at run time: annotations may be strings
                raise TypeError(f"{fn.__name__}'s config must be a StepRetryConfig") from error
            warehouse_failed(context, error, config, warehouse, doing=doing)

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def steps(context: dg.AssetExecutionContext, **kwargs: Any) -> Iterator[Any]:
                try:
                    yield from fn(context, **kwargs)
                except Exception as error:
                    if not is_database_error(error):
                        raise
                    guard(kwargs, context, error)

            return steps  # type: ignore[return-value]

        @functools.wraps(fn)
        def step(context: dg.AssetExecutionContext, **kwargs: Any) -> Any:
            try:
                return fn(context, **kwargs)
            except Exception as error:
                if not is_database_error(error):
                    raise
                guard(kwargs, context, error)

        return step  # type: ignore[return-value]

    return decorate


def warehouse_failed(
    context: dg.AssetExecutionContext,
    error: Exception,
    config: StepRetryConfig,
    warehouse: WarehouseResource,
    *,
    doing: str,
) -> NoReturn:
    """Re-run the step for a warehouse outage, or fail it in one sentence (see :func:`warehouse_step`).

    No traceback of the driver's goes with an outage or a refused login: the sentence says it all.
    A database error of another kind (a bug, a schema out of step) keeps its cause for the developer.
    """
    where = warehouse.described()
    reason = database_error_text(error, warehouse.database_url)
    what = f"{doing} for {date_span(sorted(date.fromisoformat(key) for key in context.partition_keys))}"
    attempts = context.retry_number + 1
    if is_warehouse_outage(error):
        # The pooled connections died with the server's sessions; the next attempt connects afresh.
        discard_pooled_connections()
        if context.retry_number < config.transient_retries:
            context.log.warning(
                f"the warehouse {where} is unavailable while {what} ({reason}): step attempt {attempts} of "
                f"{config.transient_retries + 1} failed, the step is re-run in {config.transient_retry_wait_seconds:g} s"
            )
            raise dg.RetryRequested(
                max_retries=config.transient_retries, seconds_to_wait=config.transient_retry_wait_seconds
            ) from None
        raise dg.Failure(
            description=f"The warehouse {where} was unavailable while {what}: gave up after {attempts} step "
            f"attempt{'s' if attempts != 1 else ''} ({reason}); an interrupted transaction writes nothing, so the "
            "tables keep what was committed before and a re-run starts the step over.",
            metadata={"error_type": WAREHOUSE_UNAVAILABLE, "warehouse": where, "step_attempts": attempts},
            allow_retries=False,
        ) from None
    error_type = type(driver_error(error)).__name__
    metadata = {"error_type": error_type_of(error), "warehouse": where, "step_attempts": attempts}
    if is_login_refusal(error):
        raise dg.Failure(
            description=f"The warehouse {where} refused the login while {what} ({reason}): not retried, the "
            "credentials or the database name need fixing (AED_PIPELINE_DATABASE_URL).",
            metadata=metadata,
            allow_retries=False,
        ) from None
    raise dg.Failure(
        description=f"The warehouse {where} failed while {what} ({error_type}: {reason}): not retried, "
        "another attempt would fail the same way; nothing of the failed transaction was written.",
        metadata=metadata,
        allow_retries=False,
    ) from error
