"""Every way the UI launches work, for both groups, sent as the UI sends it, against `dg dev`
started as README command (a) says.

One `dg dev` for the module: its own ``DAGSTER_HOME`` (a copy of ``.dagster_home/dagster.yaml``),
its own ``AED_PIPELINE_HOME``, a database of its own on the session's embedded PostgreSQL, and the
simulator server as both APIs. The launches that do not depend on each other go out together
when the module starts (the daemon queues them under the pools and run limits, as it would a
person's clicks); each test then waits for its own and checks the run and the tables.

The webserver runs with a fixed string-hash seed under which Dagster 1.13.27 refused the flower
range launched from the asset graph while the flower tables were a non-subsettable multi-asset
("Targeted subset must match between every key …": the partition subsets it compares with ``!=``
depend on set iteration order).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dagster._core.instance import DagsterInstance

from aed_pipeline.defs.shared.resources import WarehouseResource
from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.lib.core.http import HttpOptions
from aed_pipeline.lib.egen_aed.client import EgenClient
from aed_pipeline.lib.egen_aed.fetch import ARCHIVE_SOURCE, PAGE_SET, fetch_snapshot
from aed_pipeline.lib.egen_aed.tables import health_center_lookup
from aed_pipeline.simulator import Simulator, SimulatorServer, simulator_transport
from aed_pipeline_tests.support.aed_support import expected_hashes
from aed_pipeline_tests.support.ui_support import (
    ASSET_JOB,
    DagsterDev,
    Ui,
    start_dagster_dev,
    tags_of,
    ui_database,
    ui_environment,
)

AED_COUNT = 300
AED_DAY = dt.date(2026, 3, 12)  # the simulator's today: the only date the e-gen API serves
ARCHIVED_DAYS = [AED_DAY - dt.timedelta(days=n) for n in (5, 4, 3, 2, 1)]  # archived by earlier daily runs
AED_RANGE, AED_JOB_RANGE, AED_JOB_DAY = ARCHIVED_DAYS[:2], ARCHIVED_DAYS[2:4], ARCHIVED_DAYS[4]
NEVER_ARCHIVED = AED_DAY - dt.timedelta(days=7)
AED_ASSETS = ["aed_raw_snapshot", "aed_validated", "aed_data"]
FLOWER_ASSETS = [
    "flower_auction_raw",
    "public_bidding_flowers",
    "flower_auction_validated",
    "flower_types",
    "flowers",
    "bidding_flowers",
]
# Sale dates at least two days before the simulator's today carry their final settlement.
FLOWER_SINGLE = "2026-03-03"
FLOWER_RANGE = ["2026-03-04", "2026-03-05", "2026-03-06"]
FLOWER_JOB_RANGE = ["2026-03-09", "2026-03-10"]
FLOWER_WINDOW = ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
FLOWER_FAILING = "2026-02-25"
HASH_SEED = "3"
MAX_RUNTIME_TAG = "dagster/max_runtime"


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Simulator, SimulatorServer]]:
    sim = Simulator(today=AED_DAY, aed_count=AED_COUNT)
    with SimulatorServer(sim) as server:
        yield sim, server


@pytest.fixture(scope="module")
def warehouse_url(embedded_pg) -> Iterator[str]:
    """A database of the module's own on the session's server, migrated before any run starts."""
    with ui_database(embedded_pg) as url:
        yield url


@pytest.fixture(scope="module")
def engine(warehouse_url: str) -> sa.Engine:
    return WarehouseResource(database_url=warehouse_url).engine()


@pytest.fixture(scope="module")
def ui_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The UI's AED_PIPELINE_HOME, its archive already holding the snapshots of three earlier days."""
    home = tmp_path_factory.mktemp("ui_aed_home")
    archive = RawArchive(home / "archive")
    for day in ARCHIVED_DAYS:
        then = Simulator(today=day, aed_count=AED_COUNT)
        with EgenClient("k", num_of_rows=5000, http=HttpOptions(transport=simulator_transport(then))) as client:
            assert fetch_snapshot(client, archive, day, origin="simulator").complete
    return home


@pytest.fixture(scope="module")
def dev(world, warehouse_url, ui_home, tmp_path_factory) -> Iterator[DagsterDev]:
    _, server = world
    running = start_dagster_dev(
        tmp_path_factory.mktemp("ui_dev"),
        {
            **ui_environment(ui_home, warehouse_url, server.egen_base_url, server.at_base_url),
            "PYTHONHASHSEED": HASH_SEED,
        },
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def ui(dev: DagsterDev) -> Ui:
    return Ui(dev.url)


@pytest.fixture(scope="module")
def launched(ui: Ui) -> dict[str, str]:
    """The launches of the first wave, sent at once: run ids and backfill ids by name."""
    return {
        "aed_single": ui.launch_partition(AED_ASSETS, AED_DAY.isoformat()),
        "aed_range": ui.launch_backfill(AED_ASSETS, [d.isoformat() for d in AED_RANGE]),
        "aed_job": ui.launch_partition(AED_ASSETS, AED_JOB_DAY.isoformat(), job_page="aed_sync"),
        "aed_job_range": ui.launch_backfill(AED_ASSETS, [d.isoformat() for d in AED_JOB_RANGE], job_page="aed_sync"),
        "aed_never_archived": ui.launch_partition(AED_ASSETS, NEVER_ARCHIVED.isoformat()),
        "flower_single": ui.launch_partition(FLOWER_ASSETS, FLOWER_SINGLE),
        "flower_range": ui.launch_backfill(FLOWER_ASSETS, FLOWER_RANGE),
        "flower_job": ui.launch_backfill(FLOWER_ASSETS, FLOWER_JOB_RANGE, job_page="flower_sync"),
    }


# --------------------------------------------------------------------------- what every UI run is


def assert_runs_as_the_jobs_do(ui: Ui, run: dict[str, Any]) -> None:
    """One process for every step (the in-process executor) and the one-hour limit: the job's
    ``dagster/max_runtime`` tag, or the instance's ``run_monitoring.max_runtime_seconds`` (3600)
    for a run of the asset graph, which carries no tag."""
    events = ui.events(run["id"])
    types = {event.get("eventType") for event in events}
    assert not types & {"STEP_WORKER_STARTING", "STEP_WORKER_STARTED"}, types
    in_process = [e for e in events if (e.get("message") or "").startswith("Executing steps in process")]
    assert len(in_process) == 1, [e.get("message") for e in events if e.get("eventType") == "ENGINE_EVENT"]
    tags = tags_of(run)
    assert tags.get("dagster/from_ui") == "true"
    if run["jobName"] == ASSET_JOB:
        assert MAX_RUNTIME_TAG not in tags
    else:
        assert tags[MAX_RUNTIME_TAG] == "3600"


def scalar(engine: sa.Engine, statement: str, **params) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(statement), params).scalar_one()


def served_flower_rows(sim: Simulator, day: str) -> int:
    return sum(len(sim.flower_rows(day, str(gubn))) for gubn in (1, 2, 3, 4))


def assert_flower_dates_loaded(engine: sa.Engine, sim: Simulator, days: list[str]) -> None:
    """Each date's slice of both flower tables holds what the API serves, and its latest sync succeeded."""
    for day in days:
        expected = served_flower_rows(sim, day)
        d = dt.date.fromisoformat(day)
        for table in ("public_bidding_flowers", "bidding_flowers"):
            assert scalar(engine, f"SELECT count(*) FROM {table} WHERE sale_date = :d", d=d) == expected, (table, day)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT DISTINCT ON (table_name) table_name, status FROM sync_runs "
                    "WHERE partition_key = :d AND table_name IN ('public_bidding_flowers', 'bidding_flowers') "
                    "ORDER BY table_name, id DESC"
                ),
                {"d": day},
            ).all()
        latest = {table: status for table, status in rows}
        assert latest == {"public_bidding_flowers": "success", "bidding_flowers": "success"}, (day, latest)


def versions_on(engine: sa.Engine, day: dt.date) -> dict[str, bytes]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT equipment_serial, row_hash FROM aed_data_versions "
                "WHERE valid_from <= :d AND (valid_to IS NULL OR valid_to > :d)"
            ),
            {"d": day},
        ).all()
    return {serial: bytes(h) for serial, h in rows}


def registry_on(engine: sa.Engine, day: dt.date) -> dict[str, bytes]:
    """The simulator's registry of ``day``, hashed as the pipeline hashes it."""
    registry = Simulator(today=day, aed_count=AED_COUNT).registry
    records = {r["serialSeq"]: r for r in registry.records(registry.active_ids(day), day.toordinal())}
    return expected_hashes(records, health_center_lookup(engine))


def partition_of(run: dict[str, Any]) -> str:
    """The one partition a run covers: its ``dagster/partition`` tag, or a range of one date (how an
    asset backfill tags its runs)."""
    tags = tags_of(run)
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start, end = tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]
    assert start == end, tags
    return start


def partitions_of(runs: list[dict[str, Any]]) -> list[str]:
    return sorted(partition_of(run) for run in runs)


# --------------------------------------------------------------------------- the UI itself


def test_the_ui_starts_as_the_readme_says_with_the_dev_instance(dev: DagsterDev, ui: Ui) -> None:
    log = dev.startup_log()
    assert "superseded" not in log
    assert "No dagster instance configuration file" not in log
    assert "virtual environment does not match" not in log
    instance = DagsterInstance.from_config(str(Path(dev.log).parent / "dagster_home"))
    assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 3600
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    assert type(instance.run_storage).__name__ == "SqliteRunStorage"
    # The daemons that queue, backfill and watch the runs are up.
    for _ in range(60):
        daemons = ui.daemons()
        if all(daemons[d]["healthy"] for d in ("MONITORING", "BACKFILL", "QUEUED_RUN_COORDINATOR")):
            break
        time.sleep(1)
    assert all(daemons[d]["required"] and daemons[d]["healthy"] for d in ("MONITORING", "BACKFILL")), daemons


# --------------------------------------------------------------------------- AED


def test_a_single_aed_partition_from_the_asset_graph(ui: Ui, launched, engine, world) -> None:
    run = ui.wait_run(launched["aed_single"])
    assert (run["status"], run["jobName"], tags_of(run)["dagster/partition"]) == (
        "SUCCESS",
        ASSET_JOB,
        AED_DAY.isoformat(),
    )
    assert_runs_as_the_jobs_do(ui, run)
    # Today's partition is the newest: aed_data holds its registry, whatever older dates ran meanwhile.
    assert versions_on(engine, AED_DAY) == registry_on(engine, AED_DAY)
    assert scalar(engine, "SELECT count(*) FROM aed_data WHERE deleted_at IS NULL") == len(registry_on(engine, AED_DAY))


def test_an_aed_range_from_the_asset_graph_runs_one_partition_per_run(ui: Ui, launched, engine) -> None:
    backfill = ui.wait_backfill(launched["aed_range"])
    assert backfill["isAssetBackfill"] and backfill["status"] == "COMPLETED_SUCCESS", backfill
    runs = backfill["runs"]
    assert partitions_of(runs) == [d.isoformat() for d in AED_RANGE]
    for run in runs:
        assert (run["status"], run["jobName"]) == ("SUCCESS", ASSET_JOB)
        assert_runs_as_the_jobs_do(ui, ui.run(run["id"]))
    for day in AED_RANGE:
        assert versions_on(engine, day) == registry_on(engine, day)


def test_materialize_all_on_the_aed_sync_job(ui: Ui, launched, engine) -> None:
    run = ui.wait_run(launched["aed_job"])
    assert (run["status"], run["jobName"], tags_of(run)["dagster/partition"]) == (
        "SUCCESS",
        "aed_sync",
        AED_JOB_DAY.isoformat(),
    )
    assert_runs_as_the_jobs_do(ui, run)
    assert versions_on(engine, AED_JOB_DAY) == registry_on(engine, AED_JOB_DAY)


def test_materialize_all_on_the_aed_sync_job_over_a_range_runs_one_date_per_run(ui: Ui, launched, engine) -> None:
    backfill = ui.wait_backfill(launched["aed_job_range"])
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    runs = backfill["runs"]
    assert partitions_of(runs) == [d.isoformat() for d in AED_JOB_RANGE]
    for run in runs:
        assert (run["status"], run["jobName"]) == ("SUCCESS", "aed_sync")
        assert_runs_as_the_jobs_do(ui, ui.run(run["id"]))
    for day in AED_JOB_RANGE:
        assert versions_on(engine, day) == registry_on(engine, day)


def test_a_past_aed_date_without_an_archive_fails_in_one_sentence(ui: Ui, launched, ui_home) -> None:
    run = ui.wait_run(launched["aed_never_archived"])
    assert run["status"] == "FAILURE"
    [failure] = [e for e in ui.events(run["id"]) if e["__typename"] == "ExecutionStepFailureEvent"]
    assert failure["stepKey"] == "aed_raw_snapshot"
    where = RawArchive(ui_home / "archive").location(ARCHIVE_SOURCE, NEVER_ARCHIVED.isoformat(), PAGE_SET)
    sentence = failure["failureMetadata"]["description"]
    assert failure["error"]["message"] == f"dagster._core.definitions.events.Failure: {sentence}\n"
    assert sentence.startswith(f"cannot materialise e-gen AED partition {NEVER_ARCHIVED.isoformat()}: ")
    assert "serves only the current registry" in sentence and f"no archived snapshot for it at {where}" in sentence
    # The sentence is the whole failure: no chained traceback under it.
    assert failure["error"]["cause"] is None and failure["error"]["causes"] == []


# --------------------------------------------------------------------------- flowers


def test_a_single_flower_partition_from_the_asset_graph(ui: Ui, launched, engine, world) -> None:
    run = ui.wait_run(launched["flower_single"])
    assert (run["status"], run["jobName"], tags_of(run)["dagster/partition"]) == ("SUCCESS", ASSET_JOB, FLOWER_SINGLE)
    assert_runs_as_the_jobs_do(ui, run)
    assert_flower_dates_loaded(engine, world[0], [FLOWER_SINGLE])


def test_a_flower_range_from_the_asset_graph_is_one_run(ui: Ui, launched, engine, world) -> None:
    backfill = ui.wait_backfill(launched["flower_range"])
    assert backfill["isAssetBackfill"] and backfill["status"] == "COMPLETED_SUCCESS", backfill
    [run] = backfill["runs"]
    tags = tags_of(run)
    assert (run["status"], run["jobName"]) == ("SUCCESS", ASSET_JOB)
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        FLOWER_RANGE[0],
        FLOWER_RANGE[-1],
    )
    assert_runs_as_the_jobs_do(ui, ui.run(run["id"]))
    assert_flower_dates_loaded(engine, world[0], FLOWER_RANGE)


def test_materialize_all_on_the_flower_sync_job_over_a_range(ui: Ui, launched, engine, world) -> None:
    backfill = ui.wait_backfill(launched["flower_job"])
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    [run] = backfill["runs"]
    tags = tags_of(run)
    assert (run["status"], run["jobName"]) == ("SUCCESS", "flower_sync")
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        FLOWER_JOB_RANGE[0],
        FLOWER_JOB_RANGE[-1],
    )
    assert_runs_as_the_jobs_do(ui, ui.run(run["id"]))
    assert_flower_dates_loaded(engine, world[0], FLOWER_JOB_RANGE)


def test_a_backfill_of_the_missing_flower_partitions(ui: Ui, launched, engine, world) -> None:
    # The dates of the window already materialised by the runs above.
    ui.wait_run(launched["flower_single"])
    ui.wait_backfill(launched["flower_range"])
    missing = ui.missing_partitions(FLOWER_ASSETS, FLOWER_WINDOW)
    assert missing == ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"]
    before = {
        day: scalar(engine, "SELECT count(*) FROM sync_runs WHERE partition_key = :d", d=day)
        for day in (FLOWER_SINGLE, FLOWER_RANGE[0])
    }
    backfill = ui.wait_backfill(ui.launch_backfill(FLOWER_ASSETS, missing, job_page="flower_sync"))
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    [run] = backfill["runs"]
    tags = tags_of(run)
    assert run["status"] == "SUCCESS"
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        missing[0],
        missing[-1],
    )
    assert_runs_as_the_jobs_do(ui, ui.run(run["id"]))
    assert_flower_dates_loaded(engine, world[0], missing)
    # The dates already there were not synced again.
    for day, count in before.items():
        assert scalar(engine, "SELECT count(*) FROM sync_runs WHERE partition_key = :d", d=day) == count
    assert ui.missing_partitions(FLOWER_ASSETS, FLOWER_WINDOW) == []


def test_re_execute_a_failed_flower_run_from_failure(ui: Ui, launched, engine, world) -> None:
    sim = world[0]
    # Nothing else may be fetching flowers while the aT API refuses: the fault is the simulator's.
    ui.wait_backfill(launched["flower_job"])
    sim.faults.api = "at"
    sim.faults.at_result_code = 4  # the daily quota: a permanent error, the step is not retried
    try:
        failed = ui.wait_run(ui.launch_partition(FLOWER_ASSETS, FLOWER_FAILING))
    finally:
        sim.reset_faults()
    assert failed["status"] == "FAILURE"
    assert scalar(engine, "SELECT count(*) FROM bidding_flowers WHERE sale_date = :d", d=FLOWER_FAILING) == 0

    child = ui.reexecute_from_failure(failed["id"])
    assert (child["parentRunId"], child["rootRunId"]) == (failed["id"], failed["id"])
    run = ui.wait_run(child["id"])
    assert (run["status"], run["jobName"], tags_of(run)["dagster/partition"]) == ("SUCCESS", ASSET_JOB, FLOWER_FAILING)
    assert tags_of(run)["dagster/is_resume_retry"] == "true"
    assert_runs_as_the_jobs_do(ui, run)
    assert_flower_dates_loaded(engine, sim, [FLOWER_FAILING])
