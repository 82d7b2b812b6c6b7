"""The resumable AED fetch into the raw archive: it resumes from the first missing page, reuses a
complete snapshot, and never finishes an incomplete one on another day."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from aed_pipeline.lib.core.archive import PageSetManifest, RawArchive
from aed_pipeline.lib.core.errors import SourceQuotaExceeded
from aed_pipeline.lib.core.http import HttpOptions
from aed_pipeline.lib.egen_aed.client import EgenClient
from aed_pipeline.lib.egen_aed.fetch import (
    ARCHIVE_SOURCE,
    PAGE_SET,
    SnapshotUnavailable,
    fetch_snapshot,
    first_partition,
)
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


def _archived(archive: RawArchive, day: str, *, complete: bool) -> None:
    """A snapshot manifest of ``day`` (no pages needed: only the manifest says what is archived)."""
    archive.write_manifest(
        PageSetManifest(
            source=ARCHIVE_SOURCE,
            partition=day,
            page_set=PAGE_SET,
            origin="simulator",
            format="xml",
            request={},
            complete=complete,
        )
    )


def test_aed_partitions_begin_at_the_first_complete_archived_snapshot(tmp_path):
    today = dt.date(2026, 3, 20)
    archive = RawArchive(tmp_path)
    # A fresh install: nothing archived, only today's registry can be had.
    assert first_partition(archive, today=today) == today
    # A past date tried without an archive leaves an empty folder (its lock), an interrupted fetch
    # an incomplete manifest, a damaged one an unreadable manifest: none of them can ever succeed.
    (tmp_path / ARCHIVE_SOURCE / "2026-03-01" / PAGE_SET).mkdir(parents=True)
    _archived(archive, "2026-03-02", complete=False)
    (tmp_path / ARCHIVE_SOURCE / "2026-03-03" / PAGE_SET).mkdir(parents=True)
    (tmp_path / ARCHIVE_SOURCE / "2026-03-03" / PAGE_SET / "manifest.json").write_text("{not json")
    (tmp_path / ARCHIVE_SOURCE / "notes").mkdir()
    assert first_partition(archive, today=today) == today
    _archived(archive, "2026-03-05", complete=True)
    _archived(archive, "2026-03-09", complete=True)
    assert first_partition(archive, today=today) == dt.date(2026, 3, 5)
    # A snapshot dated after today (a clock set back) does not move the start past today.
    assert first_partition(RawArchive(tmp_path), today=dt.date(2026, 3, 4)) == dt.date(2026, 3, 4)


def test_the_first_aed_partition_is_found_on_an_fsspec_archive_too():
    archive = RawArchive(f"memory://aed-archive-{uuid.uuid4().hex}")
    _archived(archive, "2026-03-04", complete=True)
    assert first_partition(archive, today=dt.date(2026, 3, 20)) == dt.date(2026, 3, 4)


def test_an_archive_that_cannot_be_listed_starts_the_aed_partitions_today(tmp_path, caplog):
    class Unreachable(RawArchive):
        def partitions(self, source: str) -> list[str]:
            raise RuntimeError("NoCredentialsError: unable to locate credentials")

    today = dt.date(2026, 3, 20)
    assert first_partition(Unreachable(tmp_path), today=today) == today
    assert "cannot be listed" in caplog.text and "begin today" in caplog.text
