"""The resumable AED fetch into the raw archive: it resumes from the first missing page, reuses a
complete snapshot, and never finishes an incomplete one on another day."""

from __future__ import annotations

import datetime as dt

import pytest

from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.lib.core.errors import SourceQuotaExceeded
from aed_pipeline.lib.core.http import HttpOptions
from aed_pipeline.lib.egen_aed.client import EgenClient
from aed_pipeline.lib.egen_aed.fetch import ARCHIVE_SOURCE, PAGE_SET, SnapshotUnavailable, fetch_snapshot
from aed_pipeline.simulator import Simulator, simulator_transport


def test_fetch_resumes_from_the_first_missing_page_and_reuses_a_complete_snapshot(tmp_path):
    day = dt.date(2026, 3, 2)
    sim = Simulator(today=day, aed_count=1200)
    archive = RawArchive(tmp_path)
    with EgenClient("k", num_of_rows=250, http=HttpOptions(transport=simulator_transport(sim))) as client:
        sim.faults.egen_daily_quota = 2
        with pytest.raises(SourceQuotaExceeded):
            fetch_snapshot(client, archive, day, origin="simulator")
        partial = archive.read_manifest(ARCHIVE_SOURCE, day.isoformat(), PAGE_SET)
        assert sorted(partial.pages) == [1, 2] and partial.expected_pages == 5 and not partial.complete

        sim.reset_faults()
        sim.request_log.clear()
        fetch = fetch_snapshot(client, archive, day, origin="simulator")
        assert fetch.fetched_pages == (3, 4, 5) and fetch.reused_pages == 2 and fetch.complete
        assert fetch.manifest.records == fetch.manifest.total_count
        assert [int(r.params["pageNo"]) for r in sim.request_log] == [3, 4, 5]

        sim.request_log.clear()
        again = fetch_snapshot(client, archive, day, origin="simulator")
        assert again.fetched_pages == () and sim.request_log == []

        sim.today = day + dt.timedelta(days=1)
        with pytest.raises(SnapshotUnavailable, match="serves only the current registry") as refused:
            fetch_snapshot(client, archive, day - dt.timedelta(days=1), origin="simulator")
        # The sentence says where the snapshot was looked for.
        assert f"no archived snapshot for it at {archive.location(ARCHIVE_SOURCE, '2026-03-01', PAGE_SET)}" in str(
            refused.value
        )
        # A complete past snapshot stays readable without the API.
        assert fetch_snapshot(client, archive, day, origin="simulator").complete


def test_an_incomplete_snapshot_cannot_be_finished_on_another_day(tmp_path):
    day = dt.date(2026, 3, 2)
    sim = Simulator(today=day, aed_count=600)
    archive = RawArchive(tmp_path)
    with EgenClient("k", num_of_rows=200, http=HttpOptions(transport=simulator_transport(sim))) as client:
        sim.faults.egen_daily_quota = 1
        with pytest.raises(SourceQuotaExceeded):
            fetch_snapshot(client, archive, day, origin="simulator")
        sim.reset_faults()
        sim.today = day + dt.timedelta(days=1)
        with pytest.raises(SnapshotUnavailable, match=r"incomplete snapshot for it \(1 of 3 pages"):
            fetch_snapshot(client, archive, day, origin="simulator")
