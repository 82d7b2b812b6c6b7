"""Fetching the e-gen AED snapshot of one KST date into the raw archive, resumably.

The API has no change cursor and serves only *today's* registry, so a snapshot is the set of all
``getAedFullDown`` pages fetched on its date. Every page is archived as it arrives; a fetch that
dies part-way (the daily quota exhausted at page 60 of 82, a network failure) keeps its pages, and
the next attempt for the same date fetches only the missing ones. A snapshot is complete when every
page is archived and the records add up to ``totalCount``.

The date of a snapshot is the date the API served it, read from the response's ``Date`` header
(the real clock when the server sends none): a past date can only be re-derived from its archive,
and today's registry is never stored under another date.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from aed_pipeline.lib.core.archive import ArchiveError, PageSetManifest, RawArchive, utc_now_iso
from aed_pipeline.lib.core.kst import kst_date
from aed_pipeline.lib.egen_aed import SOURCE_NAME
from aed_pipeline.lib.egen_aed.client import OPERATION_FULL_DOWN, EgenPage, ServedPage, page_count
from aed_pipeline.lib.egen_aed.parsed import ParsedPages

logger = logging.getLogger(__name__)

ARCHIVE_SOURCE = SOURCE_NAME  # the archive's folder of this source
PAGE_SET = "snapshot"


class SnapshotUnavailable(Exception):
    """The snapshot of a date cannot be had: not archived, and the API no longer serves that date."""


class FullDownClient(Protocol):
    """What the fetch needs of :class:`~aed_pipeline.lib.egen_aed.client.EgenClient`: a page's
    download and the reading of its records, apart, so that the two can overlap."""

    num_of_rows: int
    response_type: str

    def download_full_down_page(self, page_no: int) -> ServedPage: ...

    def read_full_down_page(self, served: ServedPage) -> EgenPage: ...


#: Pages downloaded ahead of the one being read and archived. Two keep the API busy while a page
#: is parsed and archived (each about as long as the API takes to serve one); still one request
#: at a time, in page order (one download thread).
PAGES_AHEAD = 2

#: At most one progress line per this many seconds: each line in a Dagster run is an event-log write
#: (~25 ms each on the dev instance's SQLite, most of a page's own time at 5,000 records).
PROGRESS_EVERY_SECONDS = 5.0


@dataclass(frozen=True)
class SnapshotFetch:
    """What one materialisation of the raw snapshot did."""

    manifest: PageSetManifest
    fetched_pages: tuple[int, ...]
    reused_pages: int
    location: str

    @property
    def complete(self) -> bool:
        return self.manifest.complete


def is_complete(manifest: PageSetManifest) -> bool:
    """Every page archived and the records adding up to the announced ``totalCount``."""
    return (
        manifest.total_count is not None and not manifest.missing_pages() and manifest.records == manifest.total_count
    )


def snapshot_summary(manifest: PageSetManifest) -> str:
    missing = manifest.missing_pages()
    return (
        f"{len(manifest.pages)} of {manifest.expected_pages} pages, {manifest.records} records, "
        f"totalCount {manifest.total_count}" + (f", missing pages {_ranges(missing)}" if missing else "")
    )


def fetch_snapshot(
    client: FullDownClient,
    archive: RawArchive,
    partition: date,
    *,
    origin: str,
    refetch: bool = False,
    parsed: ParsedPages | None = None,
) -> SnapshotFetch:
    """Make the archive hold the complete snapshot of ``partition``, fetching only what is missing.

    A complete archived snapshot is reused without calling the API (unless ``refetch``). An
    incomplete one is resumed when it was made with the same paging; otherwise it is started over.
    Raises :class:`SnapshotUnavailable` when the API serves another date than ``partition``, and
    the client's ``SourceError`` for API failures (the pages archived so far stay). The records
    parsed from each fetched page are kept in ``parsed``, for the validation not to parse it again.
    """
    # One fetch of a date at a time: the second waits, then reuses or resumes what the first archived.
    with archive.locked(ARCHIVE_SOURCE, partition.isoformat(), PAGE_SET):
        return _fetch_snapshot(client, archive, partition, origin=origin, refetch=refetch, parsed=parsed)


def _fetch_snapshot(
    client: FullDownClient,
    archive: RawArchive,
    partition: date,
    *,
    origin: str,
    refetch: bool,
    parsed: ParsedPages | None,
) -> SnapshotFetch:
    key = partition.isoformat()
    location = archive.location(ARCHIVE_SOURCE, key, PAGE_SET)
    manifest = archive.read_manifest(ARCHIVE_SOURCE, key, PAGE_SET)
    request = {"operation": OPERATION_FULL_DOWN, "num_of_rows": client.num_of_rows}
    if manifest is not None and is_complete(manifest) and not refetch:
        logger.info("e-gen snapshot %s is archived complete at %s: reused", key, location)
        return SnapshotFetch(manifest, (), len(manifest.pages), location)
    if manifest is not None and (refetch or manifest.request != request or _all_pages_there(manifest)):
        # Other page boundaries, a forced refetch, or all pages there but records != totalCount:
        # the archived pages cannot be completed, only replaced.
        logger.info("e-gen snapshot %s: starting over (%s)", key, snapshot_summary(manifest))
        manifest = None
    if manifest is None:
        manifest = PageSetManifest(
            source=ARCHIVE_SOURCE,
            partition=key,
            page_set=PAGE_SET,
            origin=origin,
            format=client.response_type,
            request=request,
        )
    reused = len(manifest.pages)
    fetched: list[int] = []
    restarted = False
    page_no = 1 if manifest.total_count is None else None
    # The next missing pages are downloaded while this one is read and archived: the API's time to
    # serve a page and ours to parse and archive the one before overlap. One download thread, so
    # still one request at a time and in page order.
    progress_due = time.monotonic() + PROGRESS_EVERY_SECONDS
    # The parse is kept from a thread of its own too (an Arrow table written as a file): mostly
    # while the next page is parsed by libxml2, which lets go of the GIL. One page at a time.
    keeping: Future[None] | None = None
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="egen-fetch") as downloads,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="egen-keep") as keeper,
    ):
        ahead: dict[int, Future[ServedPage]] = {}
        while True:
            if page_no is None:
                missing = manifest.missing_pages()
                if not missing:
                    break
                page_no = missing[0]
            downloaded = ahead.pop(page_no, None)
            served = downloaded.result() if downloaded is not None else client.download_full_down_page(page_no)
            if manifest.total_count is not None:
                _download_ahead(downloads, ahead, client, [n for n in manifest.missing_pages() if n != page_no])
            page = client.read_full_down_page(served)
            served_on = kst_date(page.served_at)
            if served_on != partition:
                raise SnapshotUnavailable(_wrong_date_message(partition, served_on, manifest, location))
            if manifest.total_count is not None and page.total_count != manifest.total_count and not restarted:
                # The registry was refreshed between this fetch and the archived pages: their
                # boundaries no longer line up. Start over once, from this page's view.
                logger.warning(
                    "e-gen snapshot %s: totalCount moved from %d to %d; fetching every page again",
                    key,
                    manifest.total_count,
                    page.total_count,
                )
                manifest.pages.clear()
                manifest.total_count = manifest.expected_pages = None
                reused = 0
                fetched.clear()
                restarted = True
            if manifest.total_count is None:
                manifest.total_count = page.total_count
                manifest.expected_pages = max(1, page_count(page.total_count, client.num_of_rows))
            # After the first page (or a restart) the pages to come are known only now.
            _download_ahead(downloads, ahead, client, [n for n in manifest.missing_pages() if n != page_no])
            manifest.origin = origin
            manifest.format = page.response_type
            entry = archive.add_page(
                manifest, page_no, page.raw, records=len(page.records), content_type=page.content_type
            )
            if parsed is not None:
                if keeping is not None:
                    keeping.result()
                keeping = keeper.submit(parsed.keep, entry.sha256, page.records)
            fetched.append(page_no)
            page_no = None
            if time.monotonic() >= progress_due:
                progress_due = time.monotonic() + PROGRESS_EVERY_SECONDS
                logger.info(
                    "e-gen snapshot %s: %d of %d pages archived (%d records)",
                    key,
                    len(manifest.pages),
                    manifest.expected_pages,
                    manifest.records,
                )
        if keeping is not None:
            keeping.result()
    manifest.complete = is_complete(manifest)
    manifest.completed_at = utc_now_iso()
    archive.write_manifest(manifest)
    if not manifest.complete:
        logger.warning("e-gen snapshot %s archived but inconsistent: %s", key, snapshot_summary(manifest))
    return SnapshotFetch(manifest, tuple(fetched), reused, location)


def _download_ahead(
    downloads: ThreadPoolExecutor, ahead: dict[int, Future[ServedPage]], client: FullDownClient, upcoming: list[int]
) -> None:
    """Ask the download thread for the first :data:`PAGES_AHEAD` of ``upcoming`` not yet asked for."""
    for page_no in upcoming[:PAGES_AHEAD]:
        if page_no not in ahead:
            ahead[page_no] = downloads.submit(client.download_full_down_page, page_no)


def first_partition(archive: RawArchive, *, today: date | None = None) -> date:
    """The first AED partition that can succeed: the earliest date whose snapshot is archived
    complete, else ``today`` (today's KST date by default).

    Only today's registry can be fetched, so a date before the archive begins could only ever
    fail. The archive is listed once and the manifests read from the earliest date on until a
    complete one is found (usually the first). An archive that cannot be listed (an object store
    out of reach) gives today, with a warning: the partitions must load even then.
    """
    today = today or kst_date()
    try:
        names = archive.partitions(ARCHIVE_SOURCE)
    except Exception as exc:  # each fsspec backend raises its own errors (s3fs: botocore's, not OSError)
        logger.warning("the e-gen archive at %s cannot be listed (%s): AED partitions begin today", archive.root, exc)
        return today
    for name in names:
        day = _date_or_none(name)
        if day is None or day > today:
            continue
        try:
            manifest = archive.read_manifest(ARCHIVE_SOURCE, name, PAGE_SET)
        except (OSError, ArchiveError):
            continue  # an unreadable manifest holds no snapshot a run could re-derive
        if manifest is not None and manifest.complete:
            return day
    return today


def _date_or_none(name: str) -> date | None:
    try:
        return date.fromisoformat(name)
    except ValueError:
        return None


def _all_pages_there(manifest: PageSetManifest) -> bool:
    return manifest.expected_pages is not None and not manifest.missing_pages()


def _wrong_date_message(partition: date, served_on: date, manifest: PageSetManifest, location: str) -> str:
    have = (
        f"the archive at {location} holds an incomplete snapshot for it ({snapshot_summary(manifest)})"
        if manifest.pages
        else f"there is no archived snapshot for it at {location}"
    )
    return (
        f"cannot materialise e-gen AED partition {partition.isoformat()}: the e-gen API serves only the "
        f"current registry (it served the registry of {served_on.isoformat()}), so a past date can only "
        f"be re-derived from its archived snapshot, and {have}"
    )


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` → ``1-3, 7``."""
    parts: list[str] = []
    start: int | None = None
    previous = 0  # read only once start is set
    for n in numbers:
        if start is None:
            start = previous = n
        elif n == previous + 1:
            previous = n
        else:
            parts.append(f"{start}-{previous}" if start != previous else str(start))
            start = previous = n
    if start is not None:
        parts.append(f"{start}-{previous}" if start != previous else str(start))
    return ", ".join(parts)
