"""The production Dagster instance (deploy/dagster.yaml) on a real PostgreSQL, and its Helm twin.

The instance is loaded exactly as dagster-webserver and dagster-daemon load it: ``DAGSTER_HOME``
holding a copy of deploy/dagster.yaml, the ``DAGSTER_PG_*`` variables pointing at a database of
its own on the embedded PostgreSQL (reached over TCP, as a production server is), separate from the
warehouse database. A flower partition is materialised through it, from the simulator over real
sockets, and read back from the Postgres run and event-log storage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from dagster._core.events import RunFailureReason
from dagster._core.execution.retries import auto_reexecution_should_retry_run
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.tags import RUN_FAILURE_REASON_TAG, WILL_RETRY_TAG
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from aed_pipeline.defs.at_flower.assets import flower_auction_raw, flower_auction_validated, public_bidding_flowers
from aed_pipeline.defs.at_flower.resources import AtFlowerApiResource
from aed_pipeline.defs.at_flower.tables import flower_tables
from aed_pipeline.defs.egen_aed.assets import aed_raw_snapshot
from aed_pipeline.defs.shared.io import PartitionedPickleIOManager
from aed_pipeline.defs.shared.partitions import MAX_RUNTIME_SECONDS
from aed_pipeline.defs.shared.resources import RawArchiveResource, WarehouseResource
from aed_pipeline.lib.core.embedded_postgres import EmbeddedPostgres
from aed_pipeline.simulator import Simulator, SimulatorServer

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KEY = "MARKERPROD0123456789ABCDEF012345"
MONDAY = date(2026, 3, 9)
SETTLED = date(2026, 4, 30)  # the simulator's clock: the Monday's auction is settled
ASSETS = [flower_auction_raw, public_bidding_flowers, flower_auction_validated, flower_tables]
NO_WAIT = {"ops": {"flower_auction_raw": {"config": {"transient_retry_wait_seconds": 0}}}}
FLOWER_POOL = "at_flower_api"


class _TcpToUnixSocket(socketserver.ThreadingTCPServer):
    """The embedded PostgreSQL listens on a Unix socket only; this puts it on a localhost TCP port,
    so that the instance reaches it by host and port exactly as it reaches a production server."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        super().__init__(("127.0.0.1", 0), _Forward)

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Forward(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.server.socket_path)
        back = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
        back.start()
        _pipe(self.request, upstream)
        back.join()
        upstream.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="module")
def dagster_home(embedded_pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """DAGSTER_HOME with deploy/dagster.yaml, and the DAGSTER_PG_* variables of a database and role
    of its own (not the warehouse's) on the embedded PostgreSQL."""
    name = f"dagster_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    with psycopg.connect(embedded_pg.conninfo("postgres"), autocommit=True) as conn:
        # Identifiers built here from a random hex suffix, never from outside input.
        conn.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
    [socket_path] = Path(embedded_pg.socket_dir).glob(".s.PGSQL.*[0-9]")
    forwarder = _TcpToUnixSocket(str(socket_path))
    threading.Thread(target=forwarder.serve_forever, daemon=True).start()
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DAGSTER_HOME", str(home))
        env.setenv("DAGSTER_PG_HOST", "127.0.0.1")
        env.setenv("DAGSTER_PG_PORT", str(forwarder.port))
        env.setenv("DAGSTER_PG_USER", name)
        env.setenv("DAGSTER_PG_PASSWORD", password)
        env.setenv("DAGSTER_PG_DB", name)
        yield home
    forwarder.shutdown()
    forwarder.server_close()
    with psycopg.connect(embedded_pg.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{name}"')


@pytest.fixture
def instance(dagster_home: Path) -> Iterator[dg.DagsterInstance]:
    """The instance as the webserver and the daemon load it: from DAGSTER_HOME."""
    loaded = dg.DagsterInstance.get()
    yield loaded
    loaded.dispose()


@pytest.fixture
def dagster_db(embedded_pg: EmbeddedPostgres, dagster_home: Path) -> Iterator[psycopg.Connection]:
    """A plain connection to Dagster's own database, to see what the instance really stored."""
    with psycopg.connect(embedded_pg.conninfo(os.environ["DAGSTER_PG_DB"]), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(today=SETTLED, at_service_keys={KEY})


@pytest.fixture(scope="module")
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as running:
        yield running


@pytest.fixture
def resources(sim: Simulator, server: SimulatorServer, fresh_database_url: str, tmp_path: Path) -> Iterator[dict]:
    sim.reset_faults()
    yield {
        "warehouse": WarehouseResource(database_url=fresh_database_url),
        "at_flower_api": AtFlowerApiResource(service_key=KEY, base_url=server.at_base_url),
        "raw_archive": RawArchiveResource(url=str(tmp_path / "archive")),
        "io_manager": PartitionedPickleIOManager(base_dir=str(tmp_path / "io")),
    }
    sim.reset_faults()


def materialize_monday(instance: dg.DagsterInstance, resources: dict) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        partition_key=MONDAY.isoformat(),
        instance=instance,
        resources=resources,
        run_config=NO_WAIT,
        raise_on_error=False,
    )


def pool_info(instance: dg.DagsterInstance, pool: str):
    """A pool's limit and slots, set up from the default limit the first time as the queue daemon
    and the executor do when they first meet a pool."""
    storage = instance.event_log_storage
    if pool not in {limit.name for limit in storage.get_pool_limits()}:
        storage.initialize_concurrency_limit_to_default(pool)
    return storage.get_concurrency_info(pool)


def written_config() -> dict:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


def test_the_instance_keeps_runs_events_and_schedules_in_postgres(instance, dagster_db) -> None:
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    tables = {row[0] for row in dagster_db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"runs", "event_logs", "jobs", "job_ticks", "concurrency_limits", "concurrency_slots"} <= tables
    # Dagster's database holds Dagster's tables only: the warehouse lives in another database.
    assert not tables & {"aed_data", "bidding_flowers", "sync_runs", "rejected_records"}


def test_run_retries_monitoring_queue_and_pools_are_configured_as_written(instance) -> None:
    written = written_config()
    assert instance.run_retries_enabled
    assert instance.run_retries_max_retries == written["run_retries"]["max_retries"] > 0
    assert instance.run_retries_retry_on_asset_or_op_failure is False

    assert instance.run_monitoring_enabled
    monitoring = written["run_monitoring"]
    assert instance.run_monitoring_start_timeout_seconds == monitoring["start_timeout_seconds"]
    assert instance.run_monitoring_max_runtime_seconds == MAX_RUNTIME_SECONDS
    assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0

    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    queue = instance.get_concurrency_config().run_queue_config
    assert queue.max_concurrent_runs == written["concurrency"]["runs"]["max_concurrent_runs"]
    assert queue.tag_concurrency_limits == written["concurrency"]["runs"]["tag_concurrency_limits"]
    assert queue.should_block_op_concurrency_limited_runs

    pools = instance.event_log_storage.get_pool_config()
    assert pools.default_pool_limit == 1
    assert pools.pool_granularity.value == "op"
    # Both APIs' fetch steps are in a pool, and each pool starts at one slot.
    for asset, pool in ((aed_raw_snapshot, "egen_api"), (flower_auction_raw, FLOWER_POOL)):
        assert asset.op.pool == pool
        info = pool_info(instance, pool)
        assert (info.limit, info.slot_count, info.using_default_limit) == (1, 1, True)
    assert not instance.telemetry_enabled


def test_a_flower_partition_materialised_through_the_instance_is_read_back_from_postgres(
    instance, dagster_db, resources
) -> None:
    result = materialize_monday(instance, resources)
    assert result.success

    # A new instance object, as the webserver would load it, sees the run and its events.
    reloaded = dg.DagsterInstance.get()
    try:
        record = reloaded.get_run_record_by_id(result.run_id)
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert record.dagster_run.tags["dagster/partition"] == MONDAY.isoformat()
        for asset in ("flower_auction_raw", "public_bidding_flowers", "bidding_flowers"):
            [event] = reloaded.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[MONDAY.isoformat()]), limit=5
            ).records
            assert event.run_id == result.run_id
        partitions = reloaded.get_materialized_partitions(dg.AssetKey("bidding_flowers"))
        assert partitions == {MONDAY.isoformat()}
    finally:
        reloaded.dispose()

    [(stored,)] = dagster_db.execute(
        "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
        (result.run_id,),
    ).fetchall()
    assert stored == len(result.get_asset_materialization_events())
    # The fetch step held the API's single slot and gave it back when it finished.
    info = instance.event_log_storage.get_concurrency_info(FLOWER_POOL)
    assert info.limit == 1 and info.claimed_slots == [] and info.pending_steps == []


def test_a_fetch_waits_while_another_run_holds_the_api_pool_slot(instance, resources) -> None:
    storage = instance.event_log_storage
    assert pool_info(instance, FLOWER_POOL).limit == 1
    other_run = f"other-run-{uuid.uuid4().hex[:8]}"
    assert storage.claim_concurrency_slot(FLOWER_POOL, other_run, "flower_auction_raw").is_claimed
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.update(result=materialize_monday(instance, resources)))
    try:
        worker.start()
        [step] = _wait_for(
            lambda: [s for s in storage.get_concurrency_info(FLOWER_POOL).pending_steps if s.run_id != other_run]
        )
        assert step.step_key == "flower_auction_raw"
        time.sleep(1)  # the waiting run keeps waiting while the slot is held
        assert instance.get_run_by_id(step.run_id).status == dg.DagsterRunStatus.STARTED
        raw = instance.fetch_materializations(dg.AssetKey("flower_auction_raw"), limit=100).records
        assert all(record.run_id != step.run_id for record in raw)
    finally:
        storage.free_concurrency_slots_for_run(other_run)
        worker.join(timeout=120)
    assert outcome["result"].success
    assert outcome["result"].run_id == step.run_id


def test_a_failed_asset_is_not_retried_as_a_run_but_a_crashed_worker_would_be(instance, sim, resources) -> None:
    sim.faults.at_daily_quota = 0
    result = materialize_monday(instance, resources)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    assert run.tags[RUN_FAILURE_REASON_TAG] == RunFailureReason.STEP_FAILURE.value
    assert run.tags[WILL_RETRY_TAG] == "false"
    # The same run, had its worker died instead, would be started again by the daemon.
    assert auto_reexecution_should_retry_run(instance, run, RunFailureReason.UNEXPECTED_TERMINATION)


def test_the_helm_values_configure_the_same_instance() -> None:
    """deploy/helm/values.yaml cannot be rendered here (no Helm, no cluster); it must at least parse
    and say what deploy/dagster.yaml says."""
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    written = written_config()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlScheme"] == written["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["generatePostgresqlPasswordSecret"] is False
    [code] = values["dagster-user-deployments"]["deployments"]
    assert code["dagsterApiGrpcArgs"] == ["-m", "aed_pipeline.definitions"]

    daemon = values["dagsterDaemon"]
    retries = written["run_retries"]
    assert daemon["runRetries"] == {
        "enabled": True,
        "maxRetries": retries["max_retries"],
        "retryOnAssetOrOpFailure": retries["retry_on_asset_or_op_failure"],
    }
    monitoring = daemon["runMonitoring"]
    for key, value in written["run_monitoring"].items():
        assert monitoring[_camel(key)] == value, key

    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    pools = written["concurrency"]["pools"]
    assert concurrency["pools"] == {
        "defaultLimit": pools["default_limit"],
        "granularity": pools["granularity"],
        "opGranularityRunBuffer": pools["op_granularity_run_buffer"],
    }
    runs = written["concurrency"]["runs"]
    assert concurrency["runs"]["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert concurrency["runs"]["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _wait_for(probe, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := probe():
            return found
        time.sleep(0.2)
    raise AssertionError("timed out waiting")
