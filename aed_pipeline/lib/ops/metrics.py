"""Prometheus metrics of both syncs, read from ``sync_runs`` and the warehouse tables on every scrape.

Nothing is counted in memory: each scrape queries the database (one read-only snapshot), so the
figures are always those of the tables, every process serving them agrees, and a restart loses
nothing. Per source, under its prefix (``edgen_sync_`` for the e-gen AED registry, ``flower_sync_``
for the aT flower auctions):

- ``<prefix>_duration_seconds`` histogram of finished table syncs, labelled ``status``;
- ``<prefix>_runs_total{status}`` finished syncs, success or failed (the success rate);
- ``<prefix>_records_total{status}`` records of successful syncs: fetched, inserted, updated,
  deleted, revived, unchanged, rejected;
- ``<prefix>_errors_total{type}`` failed syncs by the exception type that failed them (a warehouse
  outage as ``WarehouseUnavailable``, served from 0);
- ``<prefix>_last_success_timestamp`` when the newest successful sync finished (unix seconds);
- ``<prefix>_newest_partition_timestamp`` the newest partition date synced successfully (00:00 KST);
- ``<prefix>_running`` syncs marked running (one left running for long was killed mid-way);
- ``<prefix>_quarantined_records`` records currently in ``rejected_records``.

A source writing more than one table (the flowers) labels its series with ``table`` too. The
sources come from the registry (``lib/sources.py``), each adding gauges of its own tables
(``warehouse_gauges``): ``edgen_aed_devices{state}``, ``edgen_aed_newest_snapshot_timestamp`` /
``_age_days``, ``edgen_aed_newest_snapshot_changes{type}`` (the change feed), ``flower_rows{table}``,
``flower_price_corrections_total{reason}`` (the settlement corrections kept in
``bidding_flowers_history``). ``aed_pipeline_metrics_up`` is 0 when the database could not be read;
the scrape then still answers, with that alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from wsgiref.simple_server import WSGIRequestHandler, make_server

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from aed_pipeline.lib.core.http import redact
from aed_pipeline.lib.core.kst import kst_midnight
from aed_pipeline.lib.core.sync_log import SyncCounts
from aed_pipeline.lib.core.warehouse import WAREHOUSE_UNAVAILABLE
from aed_pipeline.lib.ops.source import Gauge, Source
from aed_pipeline.lib.sources import SOURCES

logger = logging.getLogger(__name__)

DEFAULT_PORT = 9464  # the port Prometheus' own exporters conventionally leave for application metrics

# Upper bounds (seconds) of the duration buckets: a flower table sync of one date takes well under a
# second, a national AED snapshot tens of seconds; 45 minutes and 1 hour are the alert limits.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 2700, 3600, 7200)
RECORD_STATUSES = tuple(SyncCounts().as_dict())  # fetched, inserted, updated, deleted, revived, unchanged, rejected
RUN_STATUSES = ("success", "failed")
# A scrape must not hang on a locked or overloaded database: Prometheus would time out anyway.
STATEMENT_TIMEOUT_MS = 10_000


_RUN_SUMMARY = sa.text(
    "SELECT source, table_name, status, count(*) AS runs, "
    + ", ".join(f"coalesce(sum({c}), 0) AS {c}" for c in RECORD_STATUSES)
    + ", max(finished_at) AS last_finished, max(partition_key) AS newest_partition "
    "FROM sync_runs GROUP BY source, table_name, status"
)
_ERRORS = sa.text(
    "SELECT source, table_name, coalesce(error_type, 'unknown') AS error_type, count(*) AS runs "
    "FROM sync_runs WHERE status = 'failed' GROUP BY 1, 2, 3"
)
# One row per (source, table, status, bucket bound): the cumulative count Prometheus expects (le).
_DURATIONS = sa.text(
    "WITH finished AS (SELECT source, table_name, status, "
    "extract(epoch FROM finished_at - started_at)::float8 AS seconds "
    "FROM sync_runs WHERE status IN ('success', 'failed') AND finished_at IS NOT NULL) "
    "SELECT source, table_name, status, bound, count(*) FILTER (WHERE seconds <= bound) AS le_count, "
    "count(*) AS total, sum(seconds) AS seconds "
    "FROM finished CROSS JOIN unnest(CAST(:bounds AS float8[])) AS b(bound) "
    "GROUP BY 1, 2, 3, 4"
)
_QUARANTINE = sa.text("SELECT source, count(*) FROM rejected_records GROUP BY source")


class SyncMetricsCollector:
    """A prometheus_client collector computing every metric from the warehouse at scrape time."""

    def __init__(self, engine: Engine, sources: Sequence[Source] = SOURCES):
        self.engine = engine
        self.sources = tuple(sources)

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        try:
            # One read-only snapshot: the figures of a scrape agree with each other.
            snapshot = self.engine.connect().execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            with snapshot as conn:
                conn.execute(sa.text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
                families = [*self._sync_families(conn), *self._warehouse_families(conn)]
            up = 1
        except SQLAlchemyError as exc:
            # The scrape still answers: an unreadable database is itself what the dashboard must show.
            logger.error("metrics: cannot read the warehouse (%s): %s", type(exc).__name__, self._redacted(exc))
            families, up = [], 0
        yield from families
        yield GaugeMetricFamily(
            "aed_pipeline_metrics_up", "1 when the last scrape could read the warehouse, 0 when it could not", up
        )
        yield GaugeMetricFamily(
            "aed_pipeline_metrics_scrape_duration_seconds",
            "time the last scrape spent reading the warehouse",
            time.perf_counter() - started,
        )

    def _redacted(self, exc: SQLAlchemyError) -> str:
        # The driver's own message, without SQLAlchemy's statement dump; never the database password.
        message = str(getattr(exc, "orig", None) or exc).strip()
        password = self.engine.url.password
        return redact(message, [str(password)] if password else [])

    def _sync_families(self, conn: Connection) -> Iterator[Metric]:
        summary = conn.execute(_RUN_SUMMARY).mappings().all()
        errors = conn.execute(_ERRORS).mappings().all()
        durations = conn.execute(_DURATIONS, {"bounds": [float(b) for b in DURATION_BUCKETS]}).mappings().all()
        quarantined: dict[str, int] = dict(conn.execute(_QUARANTINE).tuples().all())
        for spec in self.sources:
            yield from self._source_families(
                spec,
                [r for r in summary if r["source"] == spec.name],
                [r for r in errors if r["source"] == spec.name],
                [r for r in durations if r["source"] == spec.name],
                quarantined.get(spec.name, 0),
            )

    def _source_families(self, spec: Source, summary, errors, durations, quarantined: int) -> Iterator[Metric]:
        names = _label_names(spec)
        # Every known series starts at 0, so that rate() and increase() see a sync's first success or failure.
        runs = defaultdict(int, {(*_labels(spec, t), s): 0 for t in spec.synced_tables for s in RUN_STATUSES})
        records = defaultdict(int, {(*_labels(spec, t), s): 0 for t in spec.synced_tables for s in RECORD_STATUSES})
        running = defaultdict(int, {_labels(spec, t): 0 for t in spec.synced_tables})
        last_success: dict[tuple, float] = {}
        newest_partition: dict[tuple, float] = {}
        for row in summary:
            labels = _labels(spec, row["table_name"])
            if row["status"] == "running":
                running[labels] += row["runs"]
                continue
            runs[(*labels, row["status"])] += row["runs"]
            if row["status"] != "success":
                continue
            for status in RECORD_STATUSES:
                records[(*labels, status)] += row[status]
            last_success[labels] = max(last_success.get(labels, 0.0), row["last_finished"].timestamp())
            newest = kst_midnight(date.fromisoformat(row["newest_partition"]))
            newest_partition[labels] = max(newest_partition.get(labels, 0.0), newest)

        yield _histogram(spec, durations)
        yield _counter(f"{spec.metrics_prefix}_runs", "finished table syncs by outcome", [*names, "status"], runs)
        yield _counter(
            f"{spec.metrics_prefix}_records",
            "records handled by successful table syncs, by outcome",
            [*names, "status"],
            records,
        )
        # A warehouse outage has its own type (sync_log's error_type_of), served from 0 on so that
        # increase() sees the first one.
        error_counts: dict[tuple, int] = defaultdict(
            int, {(*_labels(spec, t), WAREHOUSE_UNAVAILABLE): 0 for t in spec.synced_tables}
        )
        for row in errors:
            error_counts[(*_labels(spec, row["table_name"]), row["error_type"])] += row["runs"]
        yield _counter(
            f"{spec.metrics_prefix}_errors", "failed table syncs by error type", [*names, "type"], error_counts
        )
        yield _gauge(
            f"{spec.metrics_prefix}_last_success_timestamp",
            "unix time the newest successful table sync finished",
            names,
            last_success,
        )
        yield _gauge(
            f"{spec.metrics_prefix}_newest_partition_timestamp",
            "the newest partition date synced successfully, as unix time of its 00:00 KST",
            names,
            newest_partition,
        )
        yield _gauge(
            f"{spec.metrics_prefix}_running",
            "table syncs marked running (one running for hours was killed mid-way)",
            names,
            running,
        )
        yield GaugeMetricFamily(
            f"{spec.metrics_prefix}_quarantined_records", "records of the source held in rejected_records", quarantined
        )

    def _warehouse_families(self, conn: Connection) -> Iterator[Metric]:
        for spec in self.sources:
            for gauge in spec.warehouse_gauges(conn):
                yield _reading(gauge)


def _label_names(spec: Source) -> list[str]:
    # ``table`` only where it tells series apart: a source writing a single table has none.
    return ["table"] if len(spec.synced_tables) > 1 else []


def _labels(spec: Source, table: str) -> tuple[str, ...]:
    return (table,) if len(spec.synced_tables) > 1 else ()


def _reading(gauge: Gauge) -> Metric:
    kind = CounterMetricFamily if gauge.kind == "counter" else GaugeMetricFamily
    if not gauge.labels:
        return kind(gauge.name, gauge.documentation, gauge.values.get((), 0))
    family = kind(gauge.name, gauge.documentation, labels=list(gauge.labels))
    for label_values, value in gauge.values.items():
        family.add_metric(list(label_values), value)
    return family


def _counter(name: str, documentation: str, labels: list[str], values: Mapping[tuple, float]) -> Metric:
    return _filled(CounterMetricFamily(name, documentation, labels=labels), values)


def _gauge(name: str, documentation: str, labels: list[str], values: Mapping[tuple, float]) -> Metric:
    return _filled(GaugeMetricFamily(name, documentation, labels=labels), values)


def _filled(family: CounterMetricFamily | GaugeMetricFamily, values: Mapping[tuple, float]) -> Metric:
    for label_values, value in sorted(values.items()):
        family.add_metric(list(label_values), value)
    return family


def _histogram(spec: Source, rows) -> HistogramMetricFamily:
    """The duration histogram from the per-bound counts; sources without ``table`` sum over tables."""
    bucket_counts: dict[tuple, dict[float, int]] = {
        (*_labels(spec, t), "success"): {b: 0 for b in DURATION_BUCKETS} for t in spec.synced_tables
    }
    totals: dict[tuple, list[float]] = {labels: [0, 0.0] for labels in bucket_counts}
    for row in rows:
        labels = (*_labels(spec, row["table_name"]), row["status"])
        buckets = bucket_counts.setdefault(labels, {b: 0 for b in DURATION_BUCKETS})
        buckets[row["bound"]] += row["le_count"]
        if row["bound"] == DURATION_BUCKETS[0]:  # total and sum repeat on every bound's row: take them once
            total = totals.setdefault(labels, [0, 0.0])
            total[0] += row["total"]
            total[1] += row["seconds"]
    family = HistogramMetricFamily(
        f"{spec.metrics_prefix}_duration_seconds",
        "wall time of finished table syncs, from sync_runs started_at to finished_at",
        labels=[*_label_names(spec), "status"],
    )
    for labels, buckets in sorted(bucket_counts.items()):
        count, seconds = totals[labels]
        family.add_metric(
            list(labels),
            [(_bound(b), buckets[b]) for b in DURATION_BUCKETS] + [("+Inf", count)],
            sum_value=seconds,
        )
    return family


def _bound(value: float) -> str:
    return repr(float(value))


class _QuietHandler(WSGIRequestHandler):
    """No stderr line per scrape: Prometheus scrapes every 15 to 60 seconds, forever."""

    def log_message(self, format, *args) -> None:
        pass


class MetricsServer:
    """``/metrics`` over HTTP for one warehouse; ``port=0`` takes a free port (see :attr:`url`)."""

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = DEFAULT_PORT):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SyncMetricsCollector(engine))
        self._server = make_server(host, port, make_wsgi_app(self.registry), ThreadingWSGIServer, _QuietHandler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}/metrics"

    def start(self) -> MetricsServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until Ctrl-C."""
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
