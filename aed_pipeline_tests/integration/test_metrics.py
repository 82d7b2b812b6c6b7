"""The Prometheus endpoint after real syncs: scraped over HTTP, parsed by prometheus-client's parser.

The warehouse is filled by real Dagster runs (two AED days on a small simulator registry, one
flower Monday) plus a failed table sync written through ``sync_log``; every figure served must be
the one ``sync_runs`` and the tables hold.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from aed_pipeline.defs.at_flower.assets import flower_auction_raw, flower_auction_validated, public_bidding_flowers
from aed_pipeline.defs.at_flower.resources import AtFlowerApiResource
from aed_pipeline.defs.at_flower.tables import flower_tables
from aed_pipeline.defs.shared.io import PartitionedPickleIOManager
from aed_pipeline.defs.shared.resources import RawArchiveResource, WarehouseResource
from aed_pipeline.lib.at_flower.source import AT_FLOWER
from aed_pipeline.lib.at_flower.write.normalised import write_bidding_day
from aed_pipeline.lib.core.kst import kst_date, kst_midnight
from aed_pipeline.lib.core.sync_log import sync_run
from aed_pipeline.lib.core.warehouse import warehouse_engine
from aed_pipeline.lib.egen_aed.changes import CHANGE_TYPES
from aed_pipeline.lib.egen_aed.source import EGEN_AED
from aed_pipeline.lib.egen_aed.write.types import MissingDevicesGuardTripped
from aed_pipeline.lib.ops.metrics import DURATION_BUCKETS, RECORD_STATUSES, MetricsServer
from aed_pipeline_tests.support.aed_support import failure_messages, start_harness
from aed_pipeline_tests.support.metrics_support import fetch, flower_table, samples_of, scrape, series, value

CLI = str(Path(sys.executable).parent / "aed-pipeline")
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "aed_pipeline_dashboard.json"
AED_DAY = date(2026, 3, 2)
AED_DEVICES = 400
FLOWER_MONDAY = date(2026, 3, 9)
FLOWER_ASSETS = [flower_auction_raw, public_bidding_flowers, flower_auction_validated, flower_tables]


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def synced_url(embedded_pg, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database after two AED days, one flower Monday, one flower fetch refused for the quota
    and one failed AED table sync."""
    name = f"test_metrics_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(embedded_pg.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = embedded_pg.url(name)
    tmp = tmp_path_factory.mktemp("metrics")

    harness = start_harness(url, tmp / "aed", day=AED_DAY, aed_count=AED_DEVICES, num_of_rows=200)
    try:
        for day in (AED_DAY, AED_DAY + timedelta(days=1)):
            result = harness.materialize(day)
            assert result.success, failure_messages(result)
        # A flower fetch refused by the API (resultCd 4, the daily quota) before any table write.
        harness.sim.faults.at_result_code = 4
        refused = dg.materialize(
            FLOWER_ASSETS,
            partition_key=(FLOWER_MONDAY - timedelta(days=7)).isoformat(),
            resources={
                "warehouse": WarehouseResource(database_url=url),
                "at_flower_api": AtFlowerApiResource(service_key="test-key", base_url=harness.server.at_base_url),
                "raw_archive": RawArchiveResource(url=str(tmp / "flower_archive")),
                "io_manager": PartitionedPickleIOManager(base_dir=str(tmp / "io")),
            },
            raise_on_error=False,
        )
        assert not refused.success
    finally:
        harness.server.stop()

    flowers = dg.materialize(
        FLOWER_ASSETS,
        partition_key=FLOWER_MONDAY.isoformat(),
        resources={
            "warehouse": WarehouseResource(database_url=url),
            "at_flower_api": AtFlowerApiResource(),  # the built-in simulator
            "raw_archive": RawArchiveResource(url=str(tmp / "flower_archive")),
            "io_manager": PartitionedPickleIOManager(base_dir=str(tmp / "io")),
        },
    )
    assert flowers.success
    # A settlement correction of one row of that Monday, written as a sync writes it.
    _correct_one_flower_row(warehouse_engine(url), FLOWER_MONDAY)

    with (
        pytest.raises(MissingDevicesGuardTripped),
        sync_run(
            warehouse_engine(url),
            source=EGEN_AED.name,
            table_name="aed_data",
            partition_key=(AED_DAY + timedelta(days=2)).isoformat(),
            run_id="failed-run",
        ) as run,
    ):
        run.counts.fetched = 360
        raise MissingDevicesGuardTripped("40 of 400 active devices are absent")
    yield url
    with psycopg.connect(embedded_pg.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _correct_one_flower_row(engine: sa.Engine, sale_date: date) -> None:
    """Write ``sale_date``'s slice again with the total amount of its first row raised by 10 원."""
    with engine.begin() as conn:
        frame = pd.read_sql_query(
            sa.text(
                "SELECT b.flower_gubn, t.name AS pum_name, f.name AS good_name, b.grade AS lv_nm, "
                "b.min_price AS min_amt, b.avg_price AS avg_amt, b.max_price AS max_amt, b.total_amount AS tot_amt, "
                "b.quantity AS tot_qty FROM bidding_flowers b JOIN flowers f ON f.id = b.flower_id "
                "JOIN flower_types t ON t.id = f.flower_type_id WHERE b.sale_date = :d ORDER BY b.id"
            ),
            conn,
            params={"d": sale_date},
        )
        frame.loc[0, "tot_amt"] += 10
        counts = write_bidding_day(conn, sale_date, frame, run_id="correcting-run")
    assert (counts.corrected, counts.withdrawn) == (1, 0)


@pytest.fixture(scope="module")
def synced_engine(synced_url: str) -> sa.Engine:
    return warehouse_engine(synced_url)


@pytest.fixture(scope="module")
def exposition(synced_engine: sa.Engine) -> str:
    """The text of one scrape of the synced warehouse."""
    with MetricsServer(synced_engine, port=0) as server:
        return fetch(server.url)


@pytest.fixture(scope="module")
def scraped(exposition: str) -> dict[tuple[str, frozenset], float]:
    return samples_of(exposition)


SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def served_series_names(text: str) -> set[str]:
    """Every series name the exposition declares, also of families with no sample yet (no error so far)."""
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SAMPLE_SUFFIXES[family.type]
    }


def query(engine: sa.Engine, statement: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(statement), params).all()]


# --------------------------------------------------------------------------- sync_runs figures


def test_runs_and_records_equal_the_sums_of_sync_runs(scraped, synced_engine) -> None:
    expected_runs = query(synced_engine, "SELECT source, table_name, status, count(*) FROM sync_runs GROUP BY 1, 2, 3")
    assert {(s, t, st) for s, t, st, _ in expected_runs} == {
        ("egen_aed", "aed_data", "success"),
        ("egen_aed", "aed_data", "failed"),
        ("at_flower", "public_bidding_flowers", "success"),
        ("at_flower", "public_bidding_flowers", "failed"),  # the fetch refused for the quota
        ("at_flower", "bidding_flowers", "success"),
    }
    for source, table, status, runs in expected_runs:
        if source == EGEN_AED.name:
            assert value(scraped, "edgen_sync_runs_total", status=status) == runs
        else:
            assert value(scraped, "flower_sync_runs_total", table=table, status=status) == runs
    assert value(scraped, "flower_sync_runs_total", table="bidding_flowers", status="failed") == 0
    assert value(scraped, "edgen_sync_runs_total", status="success") == 2

    columns = ", ".join(f"sum({c})" for c in RECORD_STATUSES)
    [aed] = query(synced_engine, f"SELECT {columns} FROM sync_runs WHERE source = 'egen_aed' AND status = 'success'")
    assert {s: value(scraped, "edgen_sync_records_total", status=s) for s in RECORD_STATUSES} == dict(
        zip(RECORD_STATUSES, aed)
    )
    # Real figures: every device in aed_data was inserted once; each applied snapshot was fetched whole.
    [(devices,)] = query(synced_engine, "SELECT count(*) FROM aed_data")
    assert value(scraped, "edgen_sync_records_total", status="inserted") == devices >= AED_DEVICES * 0.9
    [(fetched, snapshots)] = query(synced_engine, "SELECT sum(fetched), count(*) FROM aed_snapshots")
    assert value(scraped, "edgen_sync_records_total", status="fetched") == fetched and snapshots == 2
    for table in ("public_bidding_flowers", "bidding_flowers"):
        [flower] = query(
            synced_engine, f"SELECT {columns} FROM sync_runs WHERE table_name = :t AND status = 'success'", t=table
        )
        assert {s: value(scraped, "flower_sync_records_total", table=table, status=s) for s in RECORD_STATUSES} == dict(
            zip(RECORD_STATUSES, flower)
        )
    [(written,)] = query(synced_engine, "SELECT count(*) FROM bidding_flowers")
    assert value(scraped, "flower_sync_records_total", table="bidding_flowers", status="inserted") == written > 500


def test_a_failed_sync_counts_as_an_error_of_its_type(scraped) -> None:
    # A warehouse outage's type is served from 0 on, for every table.
    assert series(scraped, "edgen_sync_errors_total") == {
        frozenset({("type", "MissingDevicesGuardTripped")}): 1,
        frozenset({("type", "WarehouseUnavailable")}): 0,
    }
    assert series(scraped, "flower_sync_errors_total") == {
        frozenset({("type", "SourceQuotaExceeded"), ("table", "public_bidding_flowers")}): 1,
        frozenset({("type", "WarehouseUnavailable"), ("table", "public_bidding_flowers")}): 0,
        frozenset({("type", "WarehouseUnavailable"), ("table", "bidding_flowers")}): 0,
    }
    assert value(scraped, "edgen_sync_runs_total", status="failed") == 1
    assert value(scraped, "edgen_sync_duration_seconds_count", status="failed") == 1


def test_records_count_only_successful_syncs(scraped, synced_engine) -> None:
    [(failed_fetched,)] = query(
        synced_engine, "SELECT fetched FROM sync_runs WHERE source = 'egen_aed' AND status = 'failed'"
    )
    [(success_fetched,)] = query(
        synced_engine, "SELECT sum(fetched) FROM sync_runs WHERE source = 'egen_aed' AND status = 'success'"
    )
    assert failed_fetched == 360
    assert value(scraped, "edgen_sync_records_total", status="fetched") == success_fetched


def test_last_success_and_newest_partition_are_those_of_sync_runs(scraped, synced_engine) -> None:
    [(aed_finished,)] = query(
        synced_engine, "SELECT max(finished_at) FROM sync_runs WHERE source = 'egen_aed' AND status = 'success'"
    )
    assert value(scraped, "edgen_sync_last_success_timestamp") == pytest.approx(aed_finished.timestamp())
    assert value(scraped, "edgen_sync_newest_partition_timestamp") == kst_midnight(AED_DAY + timedelta(days=1))
    for table, finished in query(
        synced_engine, "SELECT table_name, max(finished_at) FROM sync_runs WHERE source = 'at_flower' GROUP BY 1"
    ):
        labels = flower_table(table)
        assert value(scraped, "flower_sync_last_success_timestamp", **labels) == pytest.approx(finished.timestamp())
        assert value(scraped, "flower_sync_newest_partition_timestamp", **labels) == kst_midnight(FLOWER_MONDAY)
    assert value(scraped, "edgen_sync_running") == 0


def test_duration_histogram_places_every_finished_sync_in_its_buckets(scraped, synced_engine) -> None:
    durations = query(
        synced_engine,
        "SELECT source, table_name, status, extract(epoch FROM finished_at - started_at)::float8 FROM sync_runs",
    )
    for source, prefix in ((EGEN_AED.name, "edgen_sync"), (AT_FLOWER.name, "flower_sync")):
        for table, status in {(t, st) for s, t, st, _ in durations if s == source}:
            seconds = [d for s, t, st, d in durations if (s, t, st) == (source, table, status)]
            labels = {"status": status} | (flower_table(table) if source == AT_FLOWER.name else {})
            name = f"{prefix}_duration_seconds"
            assert value(scraped, f"{name}_count", **labels) == len(seconds)
            assert value(scraped, f"{name}_sum", **labels) == pytest.approx(sum(seconds))
            for bound in DURATION_BUCKETS:
                assert value(scraped, f"{name}_bucket", le=repr(float(bound)), **labels) == sum(
                    d <= bound for d in seconds
                )
            assert value(scraped, f"{name}_bucket", le="+Inf", **labels) == len(seconds)


# --------------------------------------------------------------------------- warehouse gauges


def test_warehouse_gauges_match_the_tables(scraped, synced_engine) -> None:
    [(active, removed)] = query(
        synced_engine,
        "SELECT count(*) FILTER (WHERE deleted_at IS NULL), "
        "count(*) FILTER (WHERE deleted_at IS NOT NULL) FROM aed_data",
    )
    assert value(scraped, "edgen_aed_devices", state="active") == active >= AED_DEVICES * 0.9
    assert value(scraped, "edgen_aed_devices", state="removed") == removed
    newest = AED_DAY + timedelta(days=1)
    assert value(scraped, "edgen_aed_newest_snapshot_timestamp") == kst_midnight(newest)
    assert value(scraped, "edgen_aed_newest_snapshot_age_days") == (kst_date() - newest).days
    changes = dict(
        query(
            synced_engine,
            "SELECT change_type, count(*) FROM aed_changes WHERE snapshot_date = "
            "(SELECT max(partition_date) FROM aed_snapshots) GROUP BY 1",
        )
    )
    assert changes.get("changed")  # the second day changed devices
    for change_type in CHANGE_TYPES:
        assert value(scraped, "edgen_aed_newest_snapshot_changes", type=change_type) == changes.get(change_type, 0)
    for table in ("public_bidding_flowers", "flower_types", "flowers", "bidding_flowers"):
        [(rows,)] = query(synced_engine, f"SELECT count(*) FROM {table}")
        assert value(scraped, "flower_rows", table=table) == rows > 0
    # The settlement corrections kept, a counter by reason (every reason served, 0 when none).
    replaced = dict(query(synced_engine, "SELECT end_reason, count(*) FROM bidding_flowers_history GROUP BY 1"))
    assert replaced == {"corrected": 1}
    assert series(scraped, "flower_price_corrections_total") == {
        frozenset({("reason", "corrected")}): 1,
        frozenset({("reason", "withdrawn")}): 0,
    }
    [(quarantined,)] = query(synced_engine, "SELECT count(*) FROM rejected_records WHERE source = 'egen_aed'")
    assert value(scraped, "edgen_sync_quarantined_records") == quarantined
    assert value(scraped, "aed_pipeline_metrics_up") == 1


# --------------------------------------------------------------------------- the command line


def test_metrics_serve_binds_to_localhost_and_serves_the_configured_database(synced_url, scraped) -> None:
    env = {**os.environ, "AED_PIPELINE_DATABASE_URL": synced_url}
    server = subprocess.Popen([CLI, "metrics", "serve", "--port", "0"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        announced = server.stdout.readline()
        url = announced.rsplit(" at ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        samples = scrape(url)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
    assert server.returncode == 0
    for name in (
        "edgen_sync_runs_total",
        "edgen_sync_records_total",
        "flower_sync_records_total",
        "flower_rows",
        "flower_price_corrections_total",
    ):
        assert series(samples, name) == series(scraped, name)


# --------------------------------------------------------------------------- the Grafana dashboard

PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def queried_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, labels, durations or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges and subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    expr = re.sub(r"\$\{?\w+\}?", "", expr)  # dashboard variables such as $__rate_interval
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\()?", expr):
        if not match.group(2) and match.group(1).lower() not in PROMQL_WORDS:
            names.add(match.group(1))
    return names


def test_the_dashboard_imports_as_is_and_queries_only_served_metrics(exposition) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] >= 36
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert (variable["name"], variable["query"]) == ("DS_PROMETHEUS", "prometheus")

    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    titles = " | ".join(p["title"].lower() for p in panels)
    for topic in ("success rate", "duration", "errors", "records by status", "last success"):
        assert topic in titles
    served = served_series_names(exposition)
    queried = set()
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            names = queried_metrics(target["expr"])
            assert names, target["expr"]
            assert names <= served, (panel["title"], names - served)
            queried |= names
    assert len({p["id"] for p in panels}) == len(panels)
    # The metrics, for both sources, are all on the dashboard.
    for prefix in ("edgen_sync", "flower_sync"):
        for suffix in (
            "duration_seconds_bucket",
            "records_total",
            "errors_total",
            "last_success_timestamp",
            "runs_total",
        ):
            assert f"{prefix}_{suffix}" in queried
    # So are the changes and the corrections an operator charts.
    assert {"edgen_aed_newest_snapshot_changes", "flower_price_corrections_total"} <= queried


def test_the_expression_parser_finds_metric_names_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, table) (rate(flower_sync_duration_seconds_bucket{status="success"}'
        "[$__rate_interval]))) / on (table) group_left time() - edgen_sync_last_success_timestamp offset 1d"
    )
    assert queried_metrics(expr) == {"flower_sync_duration_seconds_bucket", "edgen_sync_last_success_timestamp"}
