"""The AED records: the region from the address and the current sido names, the row hash, and every
failure of a record collected with its value (masked personal fields kept masked)."""

from __future__ import annotations

import pytest

from aed_pipeline.lib.egen_aed.client import parse_egen_response
from aed_pipeline.lib.egen_aed.records import (
    failed_checks_by_row,
    map_to_columns,
    normalize_sido,
    records_frame,
    region_from_address,
    row_hashes,
    validate_records,
)
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


def test_values_served_as_json_numbers_are_validated_as_their_text():
    # The JSON variant types 1800 and 37.5 as numbers; validation sees them as the text XML serves.
    record = {**_recorded_records()[0], "monEndTme": 1800, "wgs84Lat": 37.5, "zipcode1": 3154}
    result = validate_records([record], HEALTH_CENTERS)
    assert result.rejected == []
    assert result.frame.loc[0, "mon_end"] == "18:00" and result.frame.loc[0, "latitude"] == 37.5


def test_a_column_that_is_not_text_is_our_own_error_named_before_any_record_is_judged():
    # The schema leaves the dtype to this one check of the frame: a mapping that yields numbers fails
    # loudly instead of judging records by the text of those numbers.
    text, _ = map_to_columns(records_frame(_recorded_records()), HEALTH_CENTERS)
    text["latitude"] = text["latitude"].astype("float64")
    with pytest.raises(TypeError, match="latitude are not text"):
        failed_checks_by_row(text)
