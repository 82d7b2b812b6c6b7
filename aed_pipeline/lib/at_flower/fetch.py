"""One sale date of the aT flower auction, fetched into the raw archive and read back from it.

A sale date is four request series (flowerGubn 1 절화, 2 관엽, 3 난, 4 춘란); each is archived as
its own page set ``gubn-{n}`` under ``at_flower/{sale date}/``, with a manifest. The derived tables
are built from these archived bytes only (never from the network), so that a date can be
re-derived, and an engineer can see exactly what the API served.

Re-fetching a date starts a fresh manifest for each group: settlements are corrected after the
fact, so the newest answer replaces the previous one. The page files are content-hashed, so the
previous versions left beside it are harmless.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from aed_pipeline.lib.at_flower import SOURCE_NAME
from aed_pipeline.lib.at_flower.client import FLOWER_GUBN_NAMES, AtFlowerClient, f001_operation, parse_flower_response
from aed_pipeline.lib.core.archive import ArchiveError, PageSetManifest, RawArchive, utc_now_iso

__all__ = [
    "FLOWER_ARCHIVE_SOURCE",
    "PUBLIC_ROW_COLUMNS",
    "ArchivedFlowerDay",
    "ArchivedFlowerGroup",
    "FlowerDaysFetch",
    "archive_flower_day",
    "archive_flower_days",
    "archive_flower_group",
    "archived_flower_day",
    "archived_origin",
    "archived_public_rows",
    "page_set_name",
]

#: The archive's folder for this source (``{root}/at_flower/{sale date}/gubn-{n}/``).
FLOWER_ARCHIVE_SOURCE = SOURCE_NAME

#: API field → column of ``public_bidding_flowers``, in the table's order.
API_FIELD_COLUMNS = (
    ("saleDate", "sale_date_raw"),
    ("flowerGubn", "flower_gubn_raw"),
    ("pumName", "pum_name"),
    ("goodName", "good_name"),
    ("lvNm", "lv_nm"),
    ("maxAmt", "max_amt"),
    ("minAmt", "min_amt"),
    ("avgAmt", "avg_amt"),
    ("totAmt", "tot_amt"),
    ("totQty", "tot_qty"),
)

_API_FIELDS = tuple(field for field, _ in API_FIELD_COLUMNS)

#: The columns of one ``public_bidding_flowers`` row as produced by :func:`archived_public_rows`.
PUBLIC_ROW_COLUMNS = (
    "sale_date",
    "flower_gubn",
    *(column for _, column in API_FIELD_COLUMNS),
    "page",
    "row_in_page",
    "fetched_at",
    "archive_ref",
)


def page_set_name(flower_gubn: int) -> str:
    """The archive page set of one flower group: ``gubn-1`` … ``gubn-4``."""
    return f"gubn-{flower_gubn}"


@dataclass(frozen=True)
class ArchivedFlowerGroup:
    """What the archive holds for one sale date and flower group."""

    flower_gubn: int
    pages: int
    rows: int
    bytes: int
    location: str
    origin: str


@dataclass(frozen=True)
class ArchivedFlowerDay:
    """What the archive holds for one sale date: its four groups."""

    sale_date: date
    groups: tuple[ArchivedFlowerGroup, ...]

    @property
    def rows(self) -> int:
        return sum(group.rows for group in self.groups)

    @property
    def pages(self) -> int:
        return sum(group.pages for group in self.groups)

    @property
    def bytes(self) -> int:
        return sum(group.bytes for group in self.groups)

    @property
    def origins(self) -> set[str]:
        return {group.origin for group in self.groups}

    def rows_by_group(self) -> dict[int, int]:
        return {group.flower_gubn: group.rows for group in self.groups}


def _group_summary(archive: RawArchive, manifest: PageSetManifest, flower_gubn: int) -> ArchivedFlowerGroup:
    return ArchivedFlowerGroup(
        flower_gubn=flower_gubn,
        pages=len(manifest.pages),
        rows=manifest.records,
        bytes=manifest.bytes,
        location=archive.location(manifest.source, manifest.partition, manifest.page_set),
        origin=manifest.origin,
    )


def archive_flower_group(
    client: AtFlowerClient, archive: RawArchive, sale_date: date, flower_gubn: int, *, origin: str
) -> ArchivedFlowerGroup:
    """Fetch every page of one sale date and flower group and archive them byte for byte.

    ``origin`` (``live``/``simulator``) is recorded in the manifest. Errors of the client
    (:class:`~aed_pipeline.lib.core.errors.SourceError`) propagate: a group whose fetch failed keeps no
    complete manifest, so nothing downstream can mistake it for a finished day.
    """
    # One fetch of a group at a time, and none while it is read (archived_public_rows): a fetch
    # rewrites the manifest page by page, and a reader in between would find half a group.
    with archive.locked(FLOWER_ARCHIVE_SOURCE, sale_date.isoformat(), page_set_name(flower_gubn)):
        return _archive_flower_group(client, archive, sale_date, flower_gubn, origin=origin)


def _archive_flower_group(
    client: AtFlowerClient, archive: RawArchive, sale_date: date, flower_gubn: int, *, origin: str
) -> ArchivedFlowerGroup:
    partition = sale_date.isoformat()
    manifest = PageSetManifest(
        source=FLOWER_ARCHIVE_SOURCE,
        partition=partition,
        page_set=page_set_name(flower_gubn),
        origin=origin,
        format=client.data_type,
        request={
            "kind": "f001",
            "baseDate": partition,
            "flowerGubn": flower_gubn,
            "dataType": client.data_type,
            "countPerPage": client.count_per_page,
        },
    )
    for page in client.iter_day(sale_date, flower_gubn):
        archive.add_page(manifest, page.page, page.raw, records=len(page.records), content_type=page.content_type)
    # f001 announces no total: the set is complete when the client has seen the short last page.
    manifest.expected_pages = len(manifest.pages)
    manifest.total_count = manifest.records
    manifest.complete = True
    manifest.completed_at = utc_now_iso()
    archive.write_manifest(manifest)
    return _group_summary(archive, manifest, flower_gubn)


def archive_flower_day(
    client: AtFlowerClient, archive: RawArchive, sale_date: date, *, origin: str
) -> ArchivedFlowerDay:
    """Fetch and archive the four flower groups of ``sale_date``, one after the other."""
    groups = tuple(archive_flower_group(client, archive, sale_date, gubn, origin=origin) for gubn in FLOWER_GUBN_NAMES)
    return ArchivedFlowerDay(sale_date, groups)


def archive_flower_days(
    open_client: Callable[[], AtFlowerClient],
    archive: RawArchive,
    sale_dates: Sequence[date],
    *,
    origin: str,
    concurrency: int = 1,
) -> Generator[ArchivedFlowerDay, None, None]:
    """Fetch and archive the four groups of every date of ``sale_dates``, yielding each date's
    :class:`ArchivedFlowerDay` in the given order as soon as it is complete.

    Up to ``concurrency`` page series (one date and group each) are fetched at once, each worker
    with its own client from ``open_client`` (closed at the end): the API's latency then overlaps
    with the archiving. The daily quota counts calls, which concurrency does not change. The first
    error stops the fetch (requests not started yet are cancelled) and propagates.
    """
    if concurrency <= 1:
        with open_client() as client:
            for sale_date in sale_dates:
                yield archive_flower_day(client, archive, sale_date, origin=origin)
        return

    local = threading.local()
    clients: list[AtFlowerClient] = []
    clients_lock = threading.Lock()

    def fetch_group(sale_date: date, flower_gubn: int) -> ArchivedFlowerGroup:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = open_client()
            with clients_lock:
                clients.append(client)
        return archive_flower_group(client, archive, sale_date, flower_gubn, origin=origin)

    executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="at-flower-fetch")
    try:
        # Submitted in date order, so the pool works on the earliest dates first and a date is
        # complete soon after its predecessor; only small summaries are kept in memory.
        futures = [
            [executor.submit(fetch_group, sale_date, gubn) for gubn in FLOWER_GUBN_NAMES] for sale_date in sale_dates
        ]
        for sale_date, group_futures in zip(sale_dates, futures):
            yield ArchivedFlowerDay(sale_date, tuple(future.result() for future in group_futures))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        for client in clients:
            client.close()


def _complete_manifest(archive: RawArchive, sale_date: date, flower_gubn: int) -> PageSetManifest | None:
    manifest = archive.read_manifest(FLOWER_ARCHIVE_SOURCE, sale_date.isoformat(), page_set_name(flower_gubn))
    return manifest if manifest is not None and manifest.complete else None


def archived_origin(archive: RawArchive, sale_date: date) -> str | None:
    """Where the archived pages of ``sale_date`` came from (``live``/``simulator``), or None when
    nothing complete is archived. A date's four groups are always fetched together, by the same
    client, so the first group's manifest speaks for the date."""
    manifest = _complete_manifest(archive, sale_date, min(FLOWER_GUBN_NAMES))
    return manifest.origin if manifest is not None else None


def archived_flower_day(
    archive: RawArchive, sale_date: date, *, completed_since: datetime | None = None
) -> ArchivedFlowerDay | None:
    """The archived day when all four groups are completely archived (each completed at or after
    ``completed_since``, when given), else None."""
    groups = []
    for flower_gubn in FLOWER_GUBN_NAMES:
        manifest = _complete_manifest(archive, sale_date, flower_gubn)
        if manifest is None:
            return None
        if completed_since is not None and (
            manifest.completed_at is None
            or datetime.fromisoformat(manifest.completed_at) < completed_since.replace(microsecond=0)
        ):
            return None
        groups.append(_group_summary(archive, manifest, flower_gubn))
    return ArchivedFlowerDay(sale_date, tuple(groups))


def _iter_group_rows(
    archive: RawArchive, manifest: PageSetManifest, sale_date: date, flower_gubn: int
) -> Iterator[tuple[Any, ...]]:
    folder = archive.location(manifest.source, manifest.partition, manifest.page_set)
    operation = f001_operation(sale_date, flower_gubn)
    for page, raw in archive.iter_pages(manifest):
        entry = manifest.pages[page]
        parsed = parse_flower_response(raw, data_type=manifest.format, operation=operation, page=page)
        archive_ref = f"{folder}/{entry.file}"
        head = (sale_date, flower_gubn)
        for row_in_page, record in enumerate(parsed.records, start=1):
            yield head + tuple(map(record.get, _API_FIELDS)) + (page, row_in_page, entry.fetched_at, archive_ref)


def archived_public_rows(archive: RawArchive, sale_date: date) -> tuple[list[tuple[Any, ...]], set[str]]:
    """Every archived row of ``sale_date`` as a ``public_bidding_flowers`` row (see
    :data:`PUBLIC_ROW_COLUMNS`), and the origins (``live``/``simulator``) of the pages.

    The values stay the text the API served (a missing field is None); the sale date and group
    are the ones asked for. Raises :class:`ArchiveError` when a group was not completely
    archived: the table must not be built from half a day.
    """
    rows: list[tuple[Any, ...]] = []
    origins: set[str] = set()
    for flower_gubn in FLOWER_GUBN_NAMES:
        # Not while another run refetches the group (see archive_flower_group).
        with archive.locked(FLOWER_ARCHIVE_SOURCE, sale_date.isoformat(), page_set_name(flower_gubn)):
            manifest = _complete_manifest(archive, sale_date, flower_gubn)
            if manifest is None:
                raise ArchiveError(
                    f"aT flower {sale_date.isoformat()} {page_set_name(flower_gubn)} "
                    f"({FLOWER_GUBN_NAMES[flower_gubn]}) is not completely archived in {archive!r}: "
                    "materialise flower_auction_raw for this date first"
                )
            origins.add(manifest.origin)
            rows.extend(_iter_group_rows(archive, manifest, sale_date, flower_gubn))
    return rows, origins


class FlowerDaysFetch:
    """One run's sale dates brought into the archive, in ascending order.

    With ``reuse_archived``, every date whose four groups are completely archived is read from
    the archive instead of fetched; with ``reuse_completed_since`` (a retry of a run: when the run
    started), only those completed since then. :meth:`fetch` fetches and archives the other dates;
    :attr:`days` holds every day known so far, reused or fetched.
    """

    def __init__(
        self,
        archive: RawArchive,
        sale_dates: Sequence[date],
        *,
        reuse_archived: bool = False,
        reuse_completed_since: datetime | None = None,
    ):
        self.archive = archive
        self.sale_dates = sorted(sale_dates)
        self.reused: dict[date, ArchivedFlowerDay] = {}
        if reuse_archived or reuse_completed_since is not None:
            since = None if reuse_archived else reuse_completed_since
            self.reused = {
                d: day
                for d in self.sale_dates
                if (day := archived_flower_day(archive, d, completed_since=since)) is not None
            }
        self.to_fetch = [d for d in self.sale_dates if d not in self.reused]
        self.days: dict[date, ArchivedFlowerDay] = dict(self.reused)

    def fetch(
        self, open_client: Callable[[], AtFlowerClient], *, origin: str, concurrency: int = 1
    ) -> Generator[ArchivedFlowerDay, None, None]:
        """Fetch and archive :attr:`to_fetch` (see :func:`archive_flower_days`), yielding each
        day once complete; the first error stops the fetch and propagates."""
        fetched = archive_flower_days(open_client, self.archive, self.to_fetch, origin=origin, concurrency=concurrency)
        with closing(fetched):
            for day in fetched:
                self.days[day.sale_date] = day
                yield day

    @property
    def first_unfetched(self) -> date:
        """The first date still to fetch (the one a failed fetch stopped at); the last date when none is left."""
        unfetched = [d for d in self.to_fetch if d not in self.days]
        return unfetched[0] if unfetched else self.sale_dates[-1]

    def ordered_days(self) -> list[ArchivedFlowerDay]:
        """Every date's day, ascending; once :meth:`fetch` has run to its end."""
        return [self.days[d] for d in self.sale_dates]
