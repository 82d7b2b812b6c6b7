"""The resumable AED fetch into the raw archive: it resumes from the first missing page, reuses a
complete snapshot, and never finishes an incomplete one on another day."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import httpx
import pytest

from aed_pipeline.lib.core.archive import PageSetManifest, RawArchive
from aed_pipeline.lib.core.errors import SourceQuotaExceeded
from aed_pipeline.lib.core.http import HttpOptions
from aed_pipeline.lib.egen_aed import fetch as fetch_module
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


class _Watched(httpx.BaseTransport):
    """The simulator's transport, noting how many requests are in flight at once (each takes a moment)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.in_flight, self.most_in_flight, self.started = inner, 0, 0, 0
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.started += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.02)
            return self.inner.handle_request(request)
        finally:
            with self._lock:
                self.in_flight -= 1


def test_the_next_pages_are_requested_while_one_is_read_and_archived_but_never_two_at_once(tmp_path):
    """The fetch asks for pages n+1 and n+2 while it parses and archives page n: every page exactly
    once, in order, one request at a time."""
    day = dt.date(2026, 3, 2)
    sim = Simulator(today=day, aed_count=1200)
    transport = _Watched(simulator_transport(sim))
    requested_when_read: dict[int, int] = {}
    requested_when_archived: dict[int, int] = {}

    class NotingClient(EgenClient):
        def read_full_down_page(self, served):
            if served.page_no > 1:  # page 1 is read first: it tells how many pages there are
                # Give the request for the next page, if one was sent off, the moment to start.
                waited = time.monotonic() + 2
                while transport.started <= served.page_no < 5 and time.monotonic() < waited:
                    time.sleep(0.005)
            requested_when_read[served.page_no] = transport.started
            return super().read_full_down_page(served)

    class NotingArchive(RawArchive):
        def add_page(self, manifest, page, raw, **kwargs):
            waited = time.monotonic() + 2
            while transport.started <= min(page + 1, 4) and time.monotonic() < waited:
                time.sleep(0.005)
            requested_when_archived[page] = transport.started
            return super().add_page(manifest, page, raw, **kwargs)

    with NotingClient("k", num_of_rows=250, http=HttpOptions(transport=transport)) as client:
        fetch = fetch_snapshot(client, NotingArchive(tmp_path), day, origin="simulator")
    assert fetch.complete and fetch.fetched_pages == (1, 2, 3, 4, 5)
    assert [int(r.params["pageNo"]) for r in sim.request_log] == [1, 2, 3, 4, 5]
    # Page n (after the first) is read once page n+1 has been asked for, and archived once n+2 has
    # (no more pages than there are); never more than two pages ahead.
    assert requested_when_read == {1: 1, 2: 3, 3: 4, 4: 5, 5: 5}
    assert requested_when_archived == {1: 3, 2: 4, 3: 5, 4: 5, 5: 5}
    assert transport.most_in_flight == 1


@pytest.mark.parametrize(("every", "lines"), [(0.0, 5), (3600.0, 0)])
def test_progress_is_logged_at_most_once_every_few_seconds(tmp_path, caplog, monkeypatch, every, lines):
    """Each log line of a Dagster run is an event-log write: the fetch says how far it got at most
    every PROGRESS_EVERY_SECONDS, and no page has an INFO line of its own."""
    monkeypatch.setattr(fetch_module, "PROGRESS_EVERY_SECONDS", every)
    day = dt.date(2026, 3, 2)
    caplog.set_level("INFO", logger="aed_pipeline")
    with EgenClient(
        "k", num_of_rows=250, http=HttpOptions(transport=simulator_transport(Simulator(today=day, aed_count=1200)))
    ) as client:
        fetch = fetch_snapshot(client, RawArchive(tmp_path), day, origin="simulator")
    assert fetch.complete
    progress = [r.getMessage() for r in caplog.records if "pages archived" in r.getMessage()]
    assert len(progress) == lines
    if lines:
        assert progress[-1] == f"e-gen snapshot 2026-03-02: 5 of 5 pages archived ({fetch.manifest.records} records)"
    assert [r for r in caplog.records if r.levelname == "INFO" and "records (totalCount" in r.getMessage()] == []
