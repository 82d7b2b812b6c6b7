"""The Dagster code location loads, validates, and wires its resources from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from aed_pipeline.definitions import defs, environment_resources
from aed_pipeline.defs.at_flower.partitions import flower_daily_partitions
from aed_pipeline.defs.at_flower.resources import AtFlowerApiResource
from aed_pipeline.defs.egen_aed.partitions import aed_daily_partitions
from aed_pipeline.defs.egen_aed.resources import EgenApiResource
from aed_pipeline.defs.shared.resources import WarehouseResource

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_definitions_load_with_the_three_resources() -> None:
    definitions = defs()
    resources = definitions.resources or {}
    assert isinstance(resources["warehouse"], WarehouseResource)
    assert isinstance(resources["egen_api"], EgenApiResource)
    assert isinstance(resources["at_flower_api"], AtFlowerApiResource)


def test_without_keys_the_api_resources_use_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EGEN_SERVICE_KEY", "AT_FLOWER_SERVICE_KEY"):
        monkeypatch.delenv(name, raising=False)
    resources = environment_resources()
    assert resources["egen_api"].source == "simulator"
    assert resources["at_flower_api"].source == "simulator"


def test_service_keys_are_passed_as_env_vars_never_as_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EGEN_SERVICE_KEY", "MARKER-EGEN-KEY")
    monkeypatch.setenv("AT_FLOWER_SERVICE_KEY", "MARKER-AT-KEY")
    resources = environment_resources()
    # The resource's config holds the EnvVar (the variable's name); Dagster resolves it at run time.
    assert resources["egen_api"].service_key == dg.EnvVar("EGEN_SERVICE_KEY")
    assert resources["at_flower_api"].service_key == dg.EnvVar("AT_FLOWER_SERVICE_KEY")
    assert "MARKER-EGEN-KEY" not in repr(resources["egen_api"])


def test_partitions_are_kst_dates_with_today_as_the_newest() -> None:
    assert aed_daily_partitions.timezone == "Asia/Seoul"
    assert flower_daily_partitions.timezone == "Asia/Seoul"
    from datetime import datetime
    from zoneinfo import ZoneInfo

    today_kst = datetime.now(ZoneInfo("Asia/Seoul")).date().isoformat()
    assert aed_daily_partitions.get_last_partition_key() == today_kst
    assert flower_daily_partitions.get_first_partition_key() == "2020-01-01"


def test_every_job_and_the_implicit_asset_job_run_in_process() -> None:
    """A run launched from the asset graph (the implicit ``__ASSET_JOB``) runs as the sync jobs do."""
    definitions = defs()
    jobs = [definitions.resolve_implicit_global_asset_job_def()] + [
        definitions.resolve_job_def(name) for name in ("aed_sync", "flower_sync")
    ]
    assert [job.executor_def for job in jobs] == [dg.in_process_executor] * 3


def test_without_a_start_date_the_aed_partitions_begin_where_the_archive_begins(tmp_path: Path) -> None:
    """The code location as `dg dev` loads it, in a process of its own: the first AED partition is
    the first date archived complete, today's KST date when nothing is; flowers keep their start."""
    from aed_pipeline.lib.core.archive import PageSetManifest, RawArchive
    from aed_pipeline.lib.core.kst import kst_date
    from aed_pipeline.lib.egen_aed.fetch import ARCHIVE_SOURCE, PAGE_SET

    probe = (
        "from aed_pipeline.definitions import defs; import dagster as dg; g = defs().resolve_asset_graph(); "
        "print(g.get(dg.AssetKey('aed_data')).partitions_def.get_first_partition_key(), "
        "g.get(dg.AssetKey('bidding_flowers')).partitions_def.get_first_partition_key())"
    )

    def first_keys() -> list[str]:
        env = {**os.environ, "AED_PIPELINE_HOME": str(tmp_path)}
        env.pop("AED_PIPELINE_AED_START_DATE")
        env.pop("AED_PIPELINE_ARCHIVE_URL", None)
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert first_keys() == [kst_date().isoformat(), "2020-01-01"]
    RawArchive(tmp_path / "archive").write_manifest(
        PageSetManifest(ARCHIVE_SOURCE, "2026-02-10", PAGE_SET, "live", "xml", {}, complete=True)
    )
    assert first_keys() == ["2026-02-10", "2020-01-01"]


def _run(*command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": ""}
    env.pop("DAGSTER_HOME")
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_dagster_definitions_validate_passes() -> None:
    result = _run(str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dg_check_defs_passes() -> None:
    result = _run(str(BIN / "dg"), "check", "defs")
    assert result.returncode == 0, result.stdout + result.stderr


def test_simulator_mode_fetches_through_the_in_process_simulator_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING")
    with EgenApiResource(num_of_rows=50).client() as client:
        page = client.fetch_full_down_page(1)
    assert len(page.records) == 50 and page.total_count > 80_000
    assert "EGEN_SERVICE_KEY is not set" in caplog.text and "simulator" in caplog.text

    from datetime import date

    with AtFlowerApiResource().client() as client:
        pages = list(client.iter_day(date(2025, 11, 24), 1))
    assert sum(len(page.records) for page in pages) > 100


def test_the_warehouse_resource_gives_a_migrated_engine_on_the_embedded_server(embedded_pg) -> None:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    warehouse = WarehouseResource()
    in_use = make_url(warehouse.redacted_url())
    assert (in_use.database, in_use.query["host"]) == ("aed_pipeline", embedded_pg.socket_dir)
    with warehouse.engine().connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM health_centers")).scalar_one() == 232


def test_the_aed_chain_its_blocking_checks_and_job_are_defined() -> None:
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    chain = [dg.AssetKey(k) for k in ("aed_raw_snapshot", "aed_validated", "aed_data")]
    for key in chain:
        node = graph.get(key)
        assert node.group_name == "aed" and node.partitions_def.timezone == "Asia/Seoul"
    assert graph.get(chain[1]).parent_keys == {chain[0]} and graph.get(chain[2]).parent_keys == {chain[1]}
    blocking = {k.name for k in graph.asset_check_keys if k.asset_key == chain[1] and graph.get(k).blocking}
    assert blocking == {
        "serials_unique",
        "records_match_total_count",
        "row_count_stable",
        "no_column_collapse",
        "coordinates_inside_korea",
        "region_pairs_known",
    }
    assert graph.get(chain[0]).pools == {"egen_api"}
    metadata = graph.get(chain[2]).metadata
    assert metadata["dagster/table_name"] == "public.aed_data"
    assert "equipment_serial" in {c.name for c in metadata["dagster/column_schema"].columns}
    job = definitions.resolve_job_def("aed_sync")
    assert set(job.asset_layer.selected_asset_keys) == set(chain)


def test_every_column_of_every_table_in_the_catalog_is_described() -> None:
    """The asset page's Columns table: a blank description is a column nobody explained."""
    graph = defs().resolve_asset_graph()
    undescribed = []
    tables = 0
    for key in graph.get_all_asset_keys():
        schema = graph.get(key).metadata.get("dagster/column_schema")
        if schema is None:
            continue
        tables += 1
        undescribed += [f"{key.to_user_string()}.{c.name}" for c in schema.columns if not (c.description or "").strip()]
    assert tables >= 10 and undescribed == []


def test_every_asset_in_the_catalog_has_owners() -> None:
    graph = defs().resolve_asset_graph()
    unowned = [key.to_user_string() for key in graph.get_all_asset_keys() if not graph.get(key).owners]
    assert unowned == []
