"""Running the AED assets against the simulator over localhost and a fresh embedded database."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from sqlalchemy.engine import Engine

from aed_pipeline.defs.egen_aed.assets import (
    PLAN_RUN_CONFIG,
    aed_data,
    aed_raw_snapshot,
    aed_sync_plan_job,
    aed_validated,
)
from aed_pipeline.defs.egen_aed.resources import EgenApiResource
from aed_pipeline.defs.shared.io import PartitionedPickleIOManager
from aed_pipeline.defs.shared.resources import RawArchiveResource, WarehouseResource
from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.lib.egen_aed.records import validate_records
from aed_pipeline.simulator import Simulator, SimulatorServer
from aed_pipeline_tests.support.helpers import AED_TABLES, table_state

AED_ASSETS = [aed_raw_snapshot, aed_validated, aed_data]


@dataclass
class AedHarness:
    sim: Simulator
    server: SimulatorServer
    database_url: str
    tmp: Path
    num_of_rows: int = 5000
    egen_base_url: str | None = None  # another stand-in for the API than the simulator

    @property
    def resources(self) -> dict[str, Any]:
        return {
            "warehouse": WarehouseResource(database_url=self.database_url),
            "egen_api": EgenApiResource(
                service_key="test-key",
                base_url=self.egen_base_url or self.server.egen_base_url,
                num_of_rows=self.num_of_rows,
            ),
            "raw_archive": RawArchiveResource(url=str(self.tmp / "archive")),
            "io_manager": PartitionedPickleIOManager(base_dir=str(self.tmp / "io")),
        }

    @property
    def engine(self) -> Engine:
        return WarehouseResource(database_url=self.database_url).engine()

    @property
    def archive(self) -> RawArchive:
        return RawArchive(self.tmp / "archive")

    def materialize(
        self, day: dt.date, *, assets=None, run_config: dict | None = None, move_clock: bool = True
    ) -> dg.ExecuteInProcessResult:
        """Materialise ``day`` (the simulator's clock is set to it unless told otherwise).

        ``assets`` selects a part of the chain (the others are then read as stored)."""
        if move_clock:
            self.sim.today = day
        return dg.materialize(
            AED_ASSETS,
            selection=assets,
            partition_key=day.isoformat(),
            resources=self.resources,
            run_config=run_config or {},
            raise_on_error=False,
        )

    def plan(
        self, day: dt.date, *, run_config: dict | None = None, move_clock: bool = True
    ) -> dg.ExecuteInProcessResult:
        """Run the job ``aed_sync_plan`` for ``day``; ``run_config`` is merged into its own (``plan: true``)."""
        if move_clock:
            self.sim.today = day
        config = {"ops": {**(run_config or {}).get("ops", {})}}
        data = config["ops"].setdefault("aed_data", {})
        data["config"] = {**data.get("config", {}), **PLAN_RUN_CONFIG["ops"]["aed_data"]["config"]}
        definitions = dg.Definitions(assets=AED_ASSETS, jobs=[aed_sync_plan_job], resources=self.resources)
        job = definitions.resolve_job_def(aed_sync_plan_job.name)
        return job.execute_in_process(partition_key=day.isoformat(), run_config=config, raise_on_error=False)

    def observation(self, result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
        """The metadata of the one observation of ``asset`` in a run."""
        [event] = [e for e in result.all_events if e.is_asset_observation and e.asset_key.to_user_string() == asset]
        return {k: v.value for k, v in event.event_specific_data.asset_observation.metadata.items()}

    def metadata(self, result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
        for event in result.get_asset_materialization_events():
            if event.asset_key.to_user_string() == asset:
                return {k: v.value for k, v in event.materialization.metadata.items()}
        raise AssertionError(f"{asset} was not materialised")

    def fingerprint(self) -> dict[str, Any]:
        """Every row of the AED tables (as text), to prove a failed run changed nothing."""
        return table_state(self.engine, AED_TABLES)

    def simulator_snapshot(self, day: dt.date) -> dict[str, dict[str, str]]:
        """The simulator's own view of the registry on ``day``: serial → record as served."""
        registry = self.sim.registry
        ids = registry.active_ids(day)
        return {r["serialSeq"]: r for r in registry.records(ids, day.toordinal())}


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    """Every failure text of a run (step failures with their cause chains)."""
    texts = []
    for event in result.all_events:
        if event.is_step_failure or event.is_run_failure:
            data = event.event_specific_data
            error = getattr(data, "error", None)
            while error is not None:
                texts.append(error.message)
                error = error.cause
            texts.append(event.message or "")
    return "\n".join(texts)


def expected_hashes(records: dict[str, dict[str, str]], health_centers) -> dict[str, bytes]:
    """serial → row_hash for the simulator's records of a day, as the pipeline computes them."""
    validated = validate_records(records.values(), health_centers)
    return dict(zip(validated.frame["equipment_serial"], validated.frame["row_hash"]))


def start_harness(database_url: str, tmp: Path, *, day: dt.date, aed_count: int, num_of_rows: int = 5000):
    sim = Simulator(today=day, aed_count=aed_count)
    server = SimulatorServer(sim)
    server.start()
    return AedHarness(sim=sim, server=server, database_url=database_url, tmp=tmp, num_of_rows=num_of_rows)
