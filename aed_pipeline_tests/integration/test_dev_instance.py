"""The dev instance of README command (a), ``.dagster_home/dagster.yaml``: loaded as `dg dev` loads it,
and the same as the production instance (deploy/dagster.yaml) in everything but its storage and run retries."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dagster._core.instance import DagsterInstance
from dagster._core.run_coordinator import QueuedRunCoordinator

from aed_pipeline.defs.shared.partitions import MAX_RUNTIME_SECONDS

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / ".dagster_home" / "dagster.yaml"
DEPLOY = ROOT / "deploy" / "dagster.yaml"


def test_the_dev_instance_queues_pools_and_watches_runs_on_sqlite(tmp_path: Path) -> None:
    shutil.copy(DEV, tmp_path / "dagster.yaml")
    instance = DagsterInstance.from_config(str(tmp_path))
    assert type(instance.run_storage).__name__ == "SqliteRunStorage"  # no server to start
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    assert instance.run_monitoring_enabled
    # The one-hour limit for every run, also those launched from the asset graph (no tag of their own).
    assert instance.run_monitoring_max_runtime_seconds == MAX_RUNTIME_SECONDS
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    assert yaml.safe_load(DEV.read_text())["telemetry"] == {"enabled": False}


def test_the_dev_instance_is_the_production_one_but_for_its_storage_and_run_retries() -> None:
    dev, deploy = yaml.safe_load(DEV.read_text()), yaml.safe_load(DEPLOY.read_text())
    # No run retries on one machine: a dead run is in front of whoever launched it (and the retry
    # daemon's first start on a new home warns, which README command (a) must not).
    assert set(deploy) - set(dev) == {"storage", "run_retries"} and set(dev) <= set(deploy)
    for section in dev:
        assert dev[section] == deploy[section], section


def test_git_keeps_the_dev_instance_config_and_ignores_the_rest_of_its_home() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    assert not ignored(".dagster_home/dagster.yaml")
    assert ignored(".dagster_home/history/runs.db") and ignored(".dagster_home/storage/run.log")
