"""The AED snapshot streams through files, never held whole: the validated rows file, its COPY, reuse, HTTP bodies."""

from __future__ import annotations

import datetime as dt
import gc

import httpx
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.lib.core.http import HttpOptions
from aed_pipeline.lib.core.warehouse import warehouse_engine
from aed_pipeline.lib.egen_aed.client import EgenClient
from aed_pipeline.lib.egen_aed.fetch import fetch_snapshot
from aed_pipeline.lib.egen_aed.records import DEVICE_COLUMNS, validate_records
from aed_pipeline.lib.egen_aed.rows import DeviceRowsWriter, csv_chunks, read_device_rows
from aed_pipeline.lib.egen_aed.validate import validate_archived_snapshot
from aed_pipeline.simulator import Simulator, SimulatorServer, simulator_transport

DAY = dt.date(2026, 3, 2)
HEALTH_CENTERS = {("서울특별시", "종로구"): "서울특별시 종로구보건소"}


def _tricky_frame() -> pd.DataFrame:
    """Two typed rows whose text needs CSV quoting, and nulls in every kind of column."""
    records = [
        {
            "serialSeq": "A-1",
            "org": 'say "hi", then\nleave',
            "buildAddress": "서울특별시 종로구 종로 1",
            "wgs84Lat": "37.5709958592",
            "wgs84Lon": "126.97795321234567",
            "monSttTme": "0000",
            "monEndTme": "2400",
            "sunFrtYon": "Y",
            "manager": "김**",
        },
        {"serialSeq": "A-2", "org": "\\N", "wgs84Lat": "0.30000000000000004", "wgs84Lon": "1", "sunFrtYon": "N"},
    ]
    return validate_records(records, HEALTH_CENTERS).frame


def test_the_rows_file_copies_into_postgresql_value_for_value(fresh_database_url, tmp_path):
    frame = _tricky_frame()
    path = tmp_path / "rows.parquet"
    with DeviceRowsWriter(path) as writer:
        writer.write(frame.iloc[:1])
        writer.write(frame.iloc[1:])
    expected = list(read_device_rows(path))
    assert len(expected) == 2 and expected[1][DEVICE_COLUMNS.index("installation_institution")] == "\\N"

    warehouse_engine(fresh_database_url)  # the schema
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in DEVICE_COLUMNS)
    with psycopg.connect(fresh_database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute(
            sql.SQL("CREATE TEMPORARY TABLE csv_copy AS SELECT {c} FROM aed_data WITH NO DATA").format(c=columns)
        )
        conn.execute(
            sql.SQL("CREATE TEMPORARY TABLE row_copy AS SELECT {c} FROM aed_data WITH NO DATA").format(c=columns)
        )
        with conn.cursor().copy(sql.SQL("COPY csv_copy ({c}) FROM STDIN (FORMAT csv)").format(c=columns)) as copy:
            for chunk in csv_chunks(path):
                copy.write(chunk)
        with conn.cursor().copy(sql.SQL("COPY row_copy ({c}) FROM STDIN").format(c=columns)) as copy:
            for row in expected:
                copy.write_row(row)
        ordered = sql.SQL("SELECT t::text FROM {t} t ORDER BY equipment_serial")
        via_csv = conn.execute(ordered.format(t=sql.Identifier("csv_copy"))).fetchall()
        via_rows = conn.execute(ordered.format(t=sql.Identifier("row_copy"))).fetchall()
        values = conn.execute(
            "SELECT latitude, installation_institution, installation_address, mon_end::text, sun_week1 "
            "FROM csv_copy ORDER BY equipment_serial"
        ).fetchall()
    assert via_csv == via_rows
    assert values == [
        (37.5709958592, 'say "hi", then\nleave', "서울특별시 종로구 종로 1", "24:00:00", True),
        (0.30000000000000004, "\\N", None, None, False),
    ]


def test_a_record_without_region_or_address_is_kept_without_a_region():
    frame = validate_records([{"serialSeq": "B-1", "org": "어딘가"}], HEALTH_CENTERS).frame
    assert len(frame) == 1
    assert frame.at[0, "sido"] is None or pd.isna(frame.at[0, "sido"])
    assert pd.isna(frame.at[0, "jurisdiction_health_center"])


def _archive_a_snapshot(tmp_path, aed_count: int = 700) -> RawArchive:
    sim = Simulator(today=DAY, aed_count=aed_count)
    archive = RawArchive(tmp_path / "archive")
    with EgenClient("k", num_of_rows=200, http=HttpOptions(transport=simulator_transport(sim))) as client:
        assert fetch_snapshot(client, archive, DAY, origin="simulator").complete
    return archive


def test_the_same_snapshot_validated_again_reuses_the_kept_result(tmp_path):
    archive = _archive_a_snapshot(tmp_path)
    rows_path = tmp_path / "validated.parquet"
    first = validate_archived_snapshot(archive, DAY, health_centers=HEALTH_CENTERS, previous=None, rows_path=rows_path)
    rows = list(read_device_rows(first.snapshot.rows_path))
    assert not first.reused and first.snapshot.valid == len(rows) > 600

    again = validate_archived_snapshot(archive, DAY, health_centers=HEALTH_CENTERS, previous=None, rows_path=rows_path)
    assert again.reused
    assert again.snapshot == first.snapshot
    assert [(c.name, c.passed, c.metadata) for c in again.checks] == [
        (c.name, c.passed, c.metadata) for c in first.checks
    ]
    assert again.rejected == [(dict(r), list(f)) for r, f in first.rejected]
    assert list(read_device_rows(again.snapshot.rows_path)) == rows


def test_another_reference_or_a_damaged_rows_file_is_validated_anew(tmp_path):
    archive = _archive_a_snapshot(tmp_path)
    rows_path = tmp_path / "validated.parquet"
    first = validate_archived_snapshot(archive, DAY, health_centers=HEALTH_CENTERS, previous=None, rows_path=rows_path)
    other = validate_archived_snapshot(
        archive,
        DAY,
        health_centers={**HEALTH_CENTERS, ("경기도", "수원시"): "경기도 수원시보건소"},
        previous=None,
        rows_path=rows_path,
    )
    assert not other.reused

    with open(rows_path, "r+b") as handle:
        handle.truncate(100)
    repaired = validate_archived_snapshot(
        archive, DAY, health_centers=HEALTH_CENTERS, previous=None, rows_path=rows_path
    )
    assert not repaired.reused
    assert len(list(read_device_rows(rows_path))) == first.snapshot.valid


def test_a_fetched_page_leaves_no_response_behind_for_the_garbage_collector():
    """httpx's response and its stream form a cycle; the page body must go with the page, not at the next full GC."""
    sim = Simulator(today=DAY, aed_count=300)
    with SimulatorServer(sim) as server, EgenClient("k", server.egen_base_url, num_of_rows=100) as client:
        gc.collect()
        gc.disable()
        try:
            page = client.fetch_full_down_page(1)
            assert len(page.records) == 100
            del page
            assert not [o for o in gc.get_objects() if isinstance(o, httpx.Response)]
        finally:
            gc.enable()


@pytest.mark.parametrize("pages", [1, 3])
def test_a_snapshot_of_any_page_count_validates_to_the_same_rows(tmp_path, pages):
    """Page boundaries do not change the validated rows (each page is validated on its own)."""
    sim = Simulator(today=DAY, aed_count=450)
    archive = RawArchive(tmp_path / "archive")
    with EgenClient("k", num_of_rows=450 // pages + 1, http=HttpOptions(transport=simulator_transport(sim))) as client:
        fetch_snapshot(client, archive, DAY, origin="simulator")
    validation = validate_archived_snapshot(
        archive, DAY, health_centers=HEALTH_CENTERS, previous=None, rows_path=tmp_path / "validated.parquet"
    )
    whole = validate_records(sim.registry.records(sim.registry.active_ids(DAY), DAY.toordinal()), HEALTH_CENTERS)
    assert list(read_device_rows(validation.snapshot.rows_path)) == [
        tuple(None if pd.isna(v) else v for v in row) for row in whole.frame.itertuples(index=False)
    ]
