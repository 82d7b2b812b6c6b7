"""The flower fetch into the raw archive and the rows-as-served slice, on the real embedded
PostgreSQL and the simulator over real sockets, without Dagster: a day archived per group and read
back exactly as served, parallel fetching, half a day refused, the slice replaced, never duplicated."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from aed_pipeline.lib.at_flower.client import AtFlowerClient
from aed_pipeline.lib.at_flower.fetch import (
    FLOWER_ARCHIVE_SOURCE,
    archive_flower_days,
    archived_flower_day,
    archived_public_rows,
    page_set_name,
)
from aed_pipeline.lib.at_flower.tables import read_public_rows
from aed_pipeline.lib.at_flower.write.served import replace_public_slice
from aed_pipeline.lib.core.archive import ArchiveError, RawArchive
from aed_pipeline.lib.core.warehouse import warehouse_engine
from aed_pipeline.simulator import Simulator, SimulatorServer

KEY = "MARKERAT0123456789ABCDEF01234567"
MONDAY = date(2026, 3, 9)
SETTLED = date(2026, 4, 30)


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(Simulator(today=SETTLED, at_service_keys={KEY})) as running:
        yield running


@pytest.fixture
def engine(fresh_database_url: str) -> sa.Engine:
    return warehouse_engine(fresh_database_url)


def client(server: SimulatorServer) -> AtFlowerClient:
    return AtFlowerClient(KEY, server.at_base_url)


def test_a_day_is_archived_per_group_and_read_back_exactly_as_served(server, tmp_path: Path) -> None:
    archive = RawArchive(tmp_path / "archive")
    [day] = archive_flower_days(lambda: client(server), archive, [MONDAY], origin="simulator")
    expected = {g: server.sim.flower_rows(MONDAY.isoformat(), str(g)) for g in (1, 2, 3, 4)}
    assert day.rows_by_group() == {g: len(rows) for g, rows in expected.items()}
    assert 800 <= day.rows_by_group()[1] <= 1400  # a formal 절화 auction: two pages of 1,000
    assert day.pages == 2 + 1 + 1 + 1
    rows, origins = archived_public_rows(archive, MONDAY)
    assert origins == {"simulator"}
    first = rows[0]
    assert first[:2] == (MONDAY, 1)
    assert first[2:12] == tuple(str(value) for value in expected[1][0])
    assert first[12:14] == (1, 1)
    assert first[15].startswith(str(tmp_path / "archive" / FLOWER_ARCHIVE_SOURCE / MONDAY.isoformat() / "gubn-1"))


def test_parallel_fetching_archives_the_same_pages_as_sequential(server, tmp_path: Path) -> None:
    dates = [date(2026, 3, d) for d in range(7, 12)]
    sequential = RawArchive(tmp_path / "one")
    parallel = RawArchive(tmp_path / "four")
    list(archive_flower_days(lambda: client(server), sequential, dates, origin="simulator", concurrency=1))
    days = list(archive_flower_days(lambda: client(server), parallel, dates, origin="simulator", concurrency=4))
    assert [d.sale_date for d in days] == dates
    for sale_date in dates:
        for gubn in (1, 2, 3, 4):
            one = sequential.read_manifest(FLOWER_ARCHIVE_SOURCE, sale_date.isoformat(), page_set_name(gubn))
            four = parallel.read_manifest(FLOWER_ARCHIVE_SOURCE, sale_date.isoformat(), page_set_name(gubn))
            assert one.complete and four.complete and one.digest() == four.digest()


def test_half_a_day_in_the_archive_is_refused(server, tmp_path: Path) -> None:
    archive = RawArchive(tmp_path / "archive")
    list(archive_flower_days(lambda: client(server), archive, [MONDAY], origin="simulator"))
    archive.discard(FLOWER_ARCHIVE_SOURCE, MONDAY.isoformat(), page_set_name(3))
    assert archived_flower_day(archive, MONDAY) is None
    with pytest.raises(ArchiveError, match="gubn-3"):
        archived_public_rows(archive, MONDAY)


def test_the_rows_as_served_slice_is_replaced_never_duplicated(server, engine, tmp_path: Path) -> None:
    archive = RawArchive(tmp_path / "archive")
    list(archive_flower_days(lambda: client(server), archive, [MONDAY], origin="simulator"))
    rows, _ = archived_public_rows(archive, MONDAY)
    for expected_deleted in (0, len(rows)):
        with engine.begin() as conn:
            counts = replace_public_slice(conn, MONDAY, rows)
        assert (counts.deleted, counts.inserted) == (expected_deleted, len(rows))
    with engine.connect() as conn:
        back = read_public_rows(conn, MONDAY, MONDAY)
    assert len(back) == len(rows)
    assert back.iloc[0]["pum_name"] == rows[0][4] and back.iloc[0]["tot_qty"] == rows[0][11]
