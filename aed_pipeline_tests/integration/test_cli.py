"""The `aed-pipeline` console script as the README uses it."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from aed_pipeline.defs.shared.resources import build_resources

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
        resources = build_resources()
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
