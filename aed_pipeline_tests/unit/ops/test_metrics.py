"""The Prometheus endpoint on its own, without Dagster: every scrape reads the tables anew, and an
unreadable database serves ``up 0`` and never shows its password."""

from __future__ import annotations

import logging
from datetime import date

from aed_pipeline.lib.at_flower.source import AT_FLOWER
from aed_pipeline.lib.core.sync_log import sync_run
from aed_pipeline.lib.core.warehouse import create_warehouse_engine, warehouse_engine
from aed_pipeline.lib.ops.metrics import MetricsServer, kst_midnight
from aed_pipeline_tests.support.metrics_support import flower_table, scrape, series, value


def test_each_scrape_reads_the_table_anew(fresh_database_url) -> None:
    engine = warehouse_engine(fresh_database_url)
    with MetricsServer(engine, port=0) as server:
        empty = scrape(server.url)
        # Every series a dashboard rates exists from the start, at zero.
        assert value(empty, "edgen_sync_runs_total", status="success") == 0
        assert value(empty, "flower_sync_runs_total", table="public_bidding_flowers", status="failed") == 0
        assert value(empty, "edgen_sync_records_total", status="inserted") == 0
        assert value(empty, "edgen_sync_duration_seconds_count", status="success") == 0
        assert series(empty, "edgen_sync_last_success_timestamp") == {}
        assert series(empty, "edgen_aed_newest_snapshot_timestamp") == {}
        assert value(empty, "edgen_aed_newest_snapshot_changes", type="changed") == 0

        with sync_run(
            engine, source=AT_FLOWER.name, table_name="bidding_flowers", partition_key="2026-03-09", run_id="r1"
        ) as run:
            run.counts.fetched = run.counts.inserted = 7
            with engine.begin() as conn:
                run.mark_success(conn)
        with sync_run(
            engine, source=AT_FLOWER.name, table_name="bidding_flowers", partition_key="2026-03-10", run_id="r2"
        ) as run:
            assert value(scrape(server.url), "flower_sync_running", table="bidding_flowers") == 1
            run.counts.fetched, run.counts.unchanged = 7, 7
            with engine.begin() as conn:
                run.mark_success(conn)
        after = scrape(server.url)
    labels = flower_table("bidding_flowers")
    assert value(after, "flower_sync_runs_total", status="success", **labels) == 2
    assert value(after, "flower_sync_records_total", status="fetched", **labels) == 14
    assert value(after, "flower_sync_records_total", status="inserted", **labels) == 7
    assert value(after, "flower_sync_records_total", status="unchanged", **labels) == 7
    assert value(after, "flower_sync_running", **labels) == 0
    assert value(after, "flower_sync_newest_partition_timestamp", **labels) == kst_midnight(date(2026, 3, 10))


def test_an_unreadable_database_serves_up_0_and_never_shows_the_password(caplog) -> None:
    password = "Sup3r-secret-pw"
    # Port 1 on localhost: nothing listens, every connection is refused.
    engine = create_warehouse_engine(f"postgresql+psycopg://etl:{password}@127.0.0.1:1/warehouse?connect_timeout=2")
    with caplog.at_level(logging.ERROR, logger="aed_pipeline.lib.ops.metrics"), MetricsServer(engine, port=0) as server:
        first = scrape(server.url)
        second = scrape(server.url)  # the server survived the first failure
    for samples in (first, second):
        assert value(samples, "aed_pipeline_metrics_up") == 0
        assert {name for name, _ in samples} == {
            "aed_pipeline_metrics_up",
            "aed_pipeline_metrics_scrape_duration_seconds",
        }
    assert len(caplog.records) == 2 and "cannot read the warehouse" in caplog.text
    assert password not in caplog.text
