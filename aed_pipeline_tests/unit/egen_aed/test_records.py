"""The AED sync's plain-Python parts: record mapping and hashing, the raw archive, the resumable fetch."""

from __future__ import annotations

import datetime as dt
import gzip

import pytest

from aed_pipeline.lib.core.archive import ArchiveError, PageSetManifest, RawArchive
from aed_pipeline.lib.core.errors import SourceQuotaExceeded
from aed_pipeline.lib.egen_aed.client import EgenClient, parse_egen_response
from aed_pipeline.lib.egen_aed.fetch import ARCHIVE_SOURCE, PAGE_SET, SnapshotUnavailable, fetch_snapshot
from aed_pipeline.lib.egen_aed.records import (
    normalize_sido,
    region_from_address,
    row_hashes,
    validate_records,
)
from aed_pipeline.simulator import Simulator, simulator_transport
from aed_pipeline_tests.support.helpers import RECORDED_AED_XML

HEALTH_CENTERS = {
    ("서울특별시", "종로구"): "서울특별시 종로구보건소",
    ("경기도", "수원시"): "경기도 수원시보건소",
    ("세종특별자치시", "세종특별자치시"): "세종특별자치시보건소",
    ("강원특별자치도", "춘천시"): "강원특별자치도 춘천시보건소",
}


def _recorded_records() -> list[dict[str, str]]:
    return parse_egen_response(RECORDED_AED_XML.read_bytes(), response_type="xml", operation="t", page=1).records


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("서울특별시 종로구 종로3길 17, D타워 10층 (청진동)", ("서울특별시", "종로구")),
        ("세종특별자치시 한누리대로 2130", ("세종특별자치시", "세종특별자치시")),
        ("경기도 수원시 장안구 송원로 1", ("경기도", "수원시")),
        ("강원도 춘천시 중앙로 1", ("강원특별자치도", "춘천시")),
        ("컨벤시아대로 165 동북아무역센터", (None, None)),
        ("", (None, None)),
    ],
)
def test_region_from_address(address, expected):
    assert region_from_address(address) == expected


def test_old_and_short_sido_names_become_the_current_ones():
    assert normalize_sido("강원도") == "강원특별자치도"
    assert normalize_sido("전라북도") == "전북특별자치도"
    assert normalize_sido(" 서울 ") == "서울특별시"
    assert normalize_sido("경기도") == "경기도"
    assert normalize_sido("  ") is None


def test_region_fields_win_over_the_address_and_old_names_are_normalised():
    record = {**_recorded_records()[0], "sido": "강원도", "gugun": "춘천시"}
    frame = validate_records([record], HEALTH_CENTERS).frame
    assert (frame.at[0, "sido"], frame.at[0, "gugun"]) == ("강원특별자치도", "춘천시")
    assert frame.at[0, "jurisdiction_health_center"] == "강원특별자치도 춘천시보건소"


def test_row_hash_covers_the_device_and_not_the_row_number():
    first, second = _recorded_records()[:2]
    renumbered = {**first, "rnum": "4711"}
    edited = {**first, "buildPlace": "2층 로비"}
    frame = validate_records([first, renumbered, edited, second], HEALTH_CENTERS).frame
    hashes = row_hashes(frame)
    assert list(frame["row_hash"]) == hashes
    assert hashes[0] == hashes[1] and hashes[0] != hashes[2] and hashes[0] != hashes[3]


def test_every_failure_of_a_record_is_collected_with_its_value():
    record = {
        **_recorded_records()[0],
        "wgs84Lat": "NaN",
        "wgs84Lon": "inf",
        "monEndTme": "2401",
        "sunFrtYon": "y",
        "org": "x" * 1001,
        "buildPlace": "a\x00b",
    }
    result = validate_records([record, _recorded_records()[1]], HEALTH_CENTERS)
    assert len(result.frame) == 1 and len(result.rejected) == 1
    raw, failures = result.rejected[0]
    assert raw["wgs84Lat"] == "NaN"
    assert {f["column"] for f in failures} == {
        "latitude",
        "longitude",
        "mon_end",
        "sun_week1",
        "installation_institution",
        "installation_position",
    }


def test_masked_personal_fields_stay_masked_and_out_of_failure_reports():
    record = {**_recorded_records()[0], "manager": "김" * 1001}
    result = validate_records([record], HEALTH_CENTERS)
    ((_, failures),) = result.rejected
    assert failures == [{"column": "manager", "check": "text_without_nul_and_bounded", "value": None}]
    records = _recorded_records()
    frame = validate_records(records, HEALTH_CENTERS).frame
    assert list(frame["manager"]) == [r["manager"] for r in records]
    assert list(frame["manager_tel"]) == [r["managerTel"] for r in records]
    assert all(m.endswith("**") for m in frame["manager"])


def test_archive_pages_are_compressed_content_hashed_and_verified(tmp_path):
    archive = RawArchive(tmp_path)
    manifest = PageSetManifest(
        source="egen_aed",
        partition="2026-03-02",
        page_set="snapshot",
        origin="simulator",
        format="xml",
        request={"num_of_rows": 10},
    )
    body = RECORDED_AED_XML.read_bytes()
    entry = archive.add_page(manifest, 1, body, records=5, content_type="application/xml")
    path = tmp_path / "egen_aed" / "2026-03-02" / "snapshot" / entry.file
    assert entry.file.startswith("page-00001-") and entry.sha256[:16] in entry.file
    assert gzip.decompress(path.read_bytes()) == body and entry.stored_bytes < entry.bytes
    reread = archive.read_manifest("egen_aed", "2026-03-02", "snapshot")
    assert archive.read_page(reread, 1) == body and reread.records == 5

    path.write_bytes(gzip.compress(body.replace(b"31", b"32")))
    with pytest.raises(ArchiveError, match=r"page 1 is corrupted.*sha256"):
        archive.read_page(reread, 1)
    path.write_bytes(b"not gzip")
    with pytest.raises(ArchiveError, match="not valid gzip"):
        archive.read_page(reread, 1)


def test_archive_works_on_any_fsspec_url():
    archive = RawArchive("memory://aed-archive-test/raw")
    manifest = PageSetManifest(
        source="egen_aed", partition="2026-03-02", page_set="snapshot", origin="live", format="xml", request={}
    )
    archive.add_page(manifest, 1, b"<response/>", records=0)
    reread = archive.read_manifest("egen_aed", "2026-03-02", "snapshot")
    assert archive.read_page(reread, 1) == b"<response/>"
    assert archive.location("egen_aed", "2026-03-02", "snapshot").startswith("memory://")


def test_fetch_resumes_from_the_first_missing_page_and_reuses_a_complete_snapshot(tmp_path):
    day = dt.date(2026, 3, 2)
    sim = Simulator(today=day, aed_count=1200)
    archive = RawArchive(tmp_path)
    with EgenClient("k", num_of_rows=250, transport=simulator_transport(sim)) as client:
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
        with pytest.raises(SnapshotUnavailable, match="serves only the current registry"):
            fetch_snapshot(client, archive, day - dt.timedelta(days=1), origin="simulator")
        # A complete past snapshot stays readable without the API.
        assert fetch_snapshot(client, archive, day, origin="simulator").complete


def test_an_incomplete_snapshot_cannot_be_finished_on_another_day(tmp_path):
    day = dt.date(2026, 3, 2)
    sim = Simulator(today=day, aed_count=600)
    archive = RawArchive(tmp_path)
    with EgenClient("k", num_of_rows=200, transport=simulator_transport(sim)) as client:
        sim.faults.egen_daily_quota = 1
        with pytest.raises(SourceQuotaExceeded):
            fetch_snapshot(client, archive, day, origin="simulator")
        sim.reset_faults()
        sim.today = day + dt.timedelta(days=1)
        with pytest.raises(SnapshotUnavailable, match=r"incomplete snapshot for it \(1 of 3 pages"):
            fetch_snapshot(client, archive, day, origin="simulator")
