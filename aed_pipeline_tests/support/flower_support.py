"""Running the flower assets through Dagster against the simulator server and an embedded database."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg

from aed_pipeline.defs.at_flower.assets import flower_auction_raw, flower_auction_validated, public_bidding_flowers
from aed_pipeline.defs.at_flower.jobs import partition_range_tags
from aed_pipeline.defs.at_flower.resources import AtFlowerApiResource
from aed_pipeline.defs.at_flower.tables import flower_tables
from aed_pipeline.defs.shared.io import PartitionedPickleIOManager
from aed_pipeline.defs.shared.resources import RawArchiveResource, WarehouseResource
from aed_pipeline.simulator import SimulatorServer

KEY = "MARKERAT0123456789ABCDEF01234567"
SETTLED = date(2026, 4, 30)  # a simulator clock at which every March 2026 date is settled
ASSETS = [flower_auction_raw, public_bidding_flowers, flower_auction_validated, flower_tables]
NO_WAIT = {"ops": {"flower_auction_raw": {"config": {"transient_retry_wait_seconds": 0}}}}


def flower_resources(server: SimulatorServer, database_url: str, tmp_path: Path, **api_config) -> dict:
    """The flower chain's resources: the simulator server as the live API (``api_config`` tunes it)."""
    return {
        "warehouse": WarehouseResource(database_url=database_url),
        "at_flower_api": AtFlowerApiResource(**{"service_key": KEY, "base_url": server.at_base_url, **api_config}),
        "raw_archive": RawArchiveResource(url=str(tmp_path / "archive")),
        "io_manager": PartitionedPickleIOManager(base_dir=str(tmp_path / "io")),
    }


def run(
    resources: dict,
    *,
    day: date | None = None,
    first: date | None = None,
    last: date | None = None,
    selection=None,
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """One Dagster run of the flower chain over one sale date or the range first … last."""
    config = run_config or NO_WAIT
    if selection is not None:  # Dagster refuses config for steps that are not selected
        selected = {asset.node_def.name for asset in selection}
        config = {"ops": {name: value for name, value in config["ops"].items() if name in selected}}
    return dg.materialize(
        ASSETS,
        partition_key=day.isoformat() if day else None,
        tags=partition_range_tags(first, last) if first else None,
        resources=resources,
        run_config=config,
        selection=selection,
        raise_on_error=False,
    )
