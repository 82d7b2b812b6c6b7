"""The `aed-pipeline` console script as the README uses it: the simulator server, the database commands."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from aed_pipeline.cli import main as cli_main
from aed_pipeline.definitions import environment_resources
from aed_pipeline.lib.core.warehouse import create_warehouse_engine, head_revision
from aed_pipeline_tests.support.helpers import PLATFORM_TABLES

CLI = str(Path(sys.executable).parent / "aed-pipeline")


def test_simulator_serve_drives_the_real_clients_configured_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    server = subprocess.Popen(
        [CLI, "simulator", "serve", "--port", "0", "--aed-count", "700"], stdout=subprocess.PIPE, text=True
    )
    try:
        egen_url = server.stdout.readline().split(": ", 1)[1].strip()
        at_url = server.stdout.readline().split(": ", 1)[1].strip()
        assert egen_url.startswith("http://127.0.0.1:") and egen_url.endswith("/B552657/AEDInfoInqireService")
        assert at_url.endswith("/api/returnData.api")

        monkeypatch.setenv("EGEN_BASE_URL", egen_url)
        monkeypatch.setenv("EGEN_SERVICE_KEY", "any-key")
        monkeypatch.setenv("AT_FLOWER_BASE_URL", at_url)
        monkeypatch.setenv("AT_FLOWER_SERVICE_KEY", "any-key")
        resources = environment_resources()
        # Dagster resolves EnvVar at run time; outside a run, hand the resolved values over.
        egen = resources["egen_api"].model_copy(update={"service_key": "any-key"})
        at = resources["at_flower_api"].model_copy(update={"service_key": "any-key"})
        assert egen.source == at.source == "live"

        with egen.client() as client:
            pages = list(client.iter_full_down())
        assert sum(len(page.records) for page in pages) == pages[0].total_count >= 650
        with at.client() as client:
            rows = [row for page in client.iter_day(date(2025, 11, 24), 1) for row in page.records]
        assert rows and {row["saleDate"] for row in rows} == {"2025-11-24"}
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
    assert server.returncode == 0


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_cli_db_url_prints_the_url_in_use_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AED_PIPELINE_DATABASE_URL", "postgresql://etl:s3cret@db.internal/warehouse")
    assert cli_main(["db", "url"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == "postgresql+psycopg://etl:***@db.internal/warehouse"
    assert "s3cret" not in out


def test_cli_db_upgrade_migrates_the_embedded_database(embedded_pg, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["db", "upgrade"]) == 0
    assert f"is at revision {head_revision()}" in capsys.readouterr().out
    engine = create_warehouse_engine(embedded_pg.url())
    assert _tables(engine) >= PLATFORM_TABLES
    engine.dispose()
