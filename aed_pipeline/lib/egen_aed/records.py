"""From e-gen records (strings as served) to typed ``aed_data`` rows, with every bad record explained.

Stage 1 of the AED validation (DESIGN.md §3): the API's fields are mapped to the table's columns
as normalised text, validated with a pandera ``DataFrameModel`` (lazily: every failure of every
record is collected), and only then converted to types, so the conversion cannot fail. A record
that fails goes to quarantine with its raw fields and the failed checks; the others go on.

Normalisation, and why:

* ``sido``/``gugun`` come from their fields when the API sends them (``getAedFullDown`` does),
  otherwise from the head of ``buildAddress`` (the list operation and some records send only the
  address). Old and short 시도 names are mapped to the current ones (강원도 → 강원특별자치도,
  전라북도 → 전북특별자치도, 서울 → 서울특별시 …), so one province has one name.
* ``jurisdiction_health_center`` is looked up in the shipped ``health_centers`` reference by
  (시도, 시군구); cities with 일반구 are kept at city level there (수원시 장안구 → 수원시).
* Times ``HHMM`` become ``HH:MM`` (PostgreSQL ``time`` accepts ``24:00``, the end of day);
  ``Y``/``N`` become booleans; coordinates become floats; ``zipcode1`` + ``zipcode2`` one zipcode.
* ``row_hash`` hashes the device's own normalised fields only, never response artefacts such as
  ``rnum`` (the row number shifts for every later row when one device is removed).
* ``manager``/``managerTel`` arrive masked (``김**``, ``010********``) and stay exactly so.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pa_compute
from pandera.typing import Series

from aed_pipeline.lib.core.wire import storable_text, without_lone_surrogates

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun", "hol")
TIME_COLUMNS = tuple(f"{day}_{edge}" for day in WEEKDAYS for edge in ("start", "end"))
SUNDAY_WEEK_COLUMNS = tuple(f"sun_week{n}" for n in range(1, 6))

# API field → column, for the fields that map one to one.
TEXT_FIELD_COLUMNS = {
    "serialSeq": "equipment_serial",
    "org": "installation_institution",
    "buildAddress": "installation_address",
    "buildPlace": "installation_position",
    "mfg": "manufacturer",
    "model": "model_name",
    "clerkTel": "institution_tel",
    "manager": "manager",
    "managerTel": "manager_tel",
}
TIME_FIELD_COLUMNS = {
    f"{day}{'Stt' if edge == 'start' else 'End'}Tme": f"{day}_{edge}" for day in WEEKDAYS for edge in ("start", "end")
}
SUNDAY_WEEK_FIELDS = {
    "sunFrtYon": "sun_week1",
    "sunScdYon": "sun_week2",
    "sunThiYon": "sun_week3",
    "sunFurYon": "sun_week4",
    "sunFifYon": "sun_week5",
}
API_FIELDS = (
    *TEXT_FIELD_COLUMNS,
    "sido",
    "gugun",
    "wgs84Lat",
    "wgs84Lon",
    "zipcode1",
    "zipcode2",
    *TIME_FIELD_COLUMNS,
    *SUNDAY_WEEK_FIELDS,
)

# The device's columns in aed_data / aed_data_history, in table order (see migration 0001).
DEVICE_COLUMNS = (
    "equipment_serial",
    "sido",
    "gugun",
    "jurisdiction_health_center",
    "installation_institution",
    "installation_address",
    "installation_position",
    "latitude",
    "longitude",
    "manufacturer",
    "model_name",
    "institution_tel",
    "manager",
    "manager_tel",
    "zipcode",
    *TIME_COLUMNS,
    *SUNDAY_WEEK_COLUMNS,
    "access_control",
    "operation_status",
    "row_hash",
)
# What row_hash covers: the device's own fields (operation_status is the sync's, not the source's).
HASHED_COLUMNS = tuple(c for c in DEVICE_COLUMNS if c not in ("operation_status", "row_hash"))
# Never shown in reports or logs (masked as served, but still personal).
PERSONAL_COLUMNS = frozenset({"manager", "manager_tel"})
# Columns whose null share is watched for a collapse between snapshots.
KEY_COLUMNS = (
    "latitude",
    "longitude",
    "sido",
    "gugun",
    "installation_address",
    "installation_institution",
    "model_name",
)

CURRENT_SIDO_NAMES = (
    "서울특별시",
    "부산광역시",
    "대구광역시",
    "인천광역시",
    "광주광역시",
    "대전광역시",
    "울산광역시",
    "세종특별자치시",
    "경기도",
    "강원특별자치도",
    "충청북도",
    "충청남도",
    "전북특별자치도",
    "전라남도",
    "경상북도",
    "경상남도",
    "제주특별자치도",
)
SEJONG = "세종특별자치시"
# Former and short names of 시도 as they appear in old rows and addresses → the current name.
SIDO_ALIASES = {
    "강원도": "강원특별자치도",
    "전라북도": "전북특별자치도",
    "제주도": "제주특별자치도",
    "서울": "서울특별시",
    "서울시": "서울특별시",
    "부산": "부산광역시",
    "부산시": "부산광역시",
    "대구": "대구광역시",
    "대구시": "대구광역시",
    "인천": "인천광역시",
    "인천시": "인천광역시",
    "광주": "광주광역시",
    "광주시": "광주광역시",
    "대전": "대전광역시",
    "대전시": "대전광역시",
    "울산": "울산광역시",
    "울산시": "울산광역시",
    "세종": SEJONG,
    "세종시": SEJONG,
    "경기": "경기도",
    "강원": "강원특별자치도",
    "충북": "충청북도",
    "충남": "충청남도",
    "전북": "전북특별자치도",
    "전남": "전라남도",
    "경북": "경상북도",
    "경남": "경상남도",
    "제주": "제주특별자치도",
}

# A generous box around the Republic of Korea (마라도 33.11 N … 고성 38.6 N; 124.6 E … 독도 131.87 E).
KOREA_LATITUDE = (32.5, 39.0)
KOREA_LONGITUDE = (124.0, 132.0)

MAX_TEXT_LENGTH = 1000
# ASCII digits only: Python's \d also matches other scripts' digits (٣٧.٥, ０９００), which neither
# float parsing in pandas nor PostgreSQL's time type accept.
_HHMM = r"\A(?:(?:[01][0-9]|2[0-3])[0-5][0-9]|2400)\Z"
_DEGREES = r"\A[-+]?[0-9]{1,3}(?:\.[0-9]+)?\Z"
_YN = r"\A[YN]\Z"


def normalize_sido(name: str | None) -> str | None:
    """The current official name of a 시도 (old and short names mapped), None when empty."""
    if name is None:
        return None
    name = name.strip()
    if not name:
        return None
    return SIDO_ALIASES.get(name, name)


def region_from_address(address: str | None) -> tuple[str | None, str | None]:
    """(시도, 시군구) from the head of a road address, or (None, None) when it does not start so.

    ``서울특별시 종로구 종로3길 17`` → (서울특별시, 종로구); ``세종특별자치시 한누리대로 2130`` →
    (세종특별자치시, 세종특별자치시); ``경기도 수원시 장안구 …`` → (경기도, 수원시).
    """
    if not address:
        return None, None
    tokens = address.split()
    if not tokens:
        return None, None
    sido = normalize_sido(tokens[0])
    if sido not in CURRENT_SIDO_NAMES:
        return None, None
    if sido == SEJONG:
        return sido, SEJONG
    if len(tokens) > 1 and tokens[1][-1:] in ("시", "군", "구"):
        return sido, tokens[1]
    return sido, None


def region_key(sido: str | None, gugun: str | None) -> tuple[str | None, str | None]:
    """The (시도, 시군구) key of the health-centre reference for a device's region."""
    if sido == SEJONG:
        return sido, SEJONG
    if gugun:
        # 일반구 of a city (수원시 장안구) belong to the city's entry.
        head = gugun.split()[0]
        return sido, head
    return sido, gugun


class AedRecordSchema(pa.DataFrameModel):
    """Format rules for one AED record, checked on its text before any conversion.

    Nulls are allowed wherever the API may leave an element out; the serial is the only
    required field. Every text is bounded and free of NUL characters (PostgreSQL text cannot
    hold them).

    The columns are ``Series[Any]`` because every one is text by construction (records_table
    reads each field as a string): pandera's own per-column dtype check cost as much as the
    format checks themselves, so :func:`failed_checks_by_row` checks the frame's dtypes once.
    """

    equipment_serial: Series[Any] = pa.Field(nullable=False, str_length={"min_value": 1, "max_value": 64})
    sido: Series[Any] = pa.Field(nullable=True)
    gugun: Series[Any] = pa.Field(nullable=True)
    installation_institution: Series[Any] = pa.Field(nullable=True)
    installation_address: Series[Any] = pa.Field(nullable=True)
    installation_position: Series[Any] = pa.Field(nullable=True)
    latitude: Series[Any] = pa.Field(nullable=True, str_matches=_DEGREES)
    longitude: Series[Any] = pa.Field(nullable=True, str_matches=_DEGREES)
    manufacturer: Series[Any] = pa.Field(nullable=True)
    model_name: Series[Any] = pa.Field(nullable=True)
    institution_tel: Series[Any] = pa.Field(nullable=True)
    manager: Series[Any] = pa.Field(nullable=True)
    manager_tel: Series[Any] = pa.Field(nullable=True)
    zipcode: Series[Any] = pa.Field(nullable=True, str_matches=r"\A\d{3,7}\Z")
    mon_start: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    mon_end: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    tue_start: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    tue_end: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    wed_start: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    wed_end: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    thu_start: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    thu_end: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    fri_start: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    fri_end: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    sat_start: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    sat_end: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    sun_start: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    sun_end: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    hol_start: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    hol_end: Series[Any] = pa.Field(nullable=True, str_matches=_HHMM)
    sun_week1: Series[Any] = pa.Field(nullable=True, str_matches=_YN)
    sun_week2: Series[Any] = pa.Field(nullable=True, str_matches=_YN)
    sun_week3: Series[Any] = pa.Field(nullable=True, str_matches=_YN)
    sun_week4: Series[Any] = pa.Field(nullable=True, str_matches=_YN)
    sun_week5: Series[Any] = pa.Field(nullable=True, str_matches=_YN)

    @pa.check(
        "equipment_serial",
        "sido",
        "gugun",
        "installation_institution",
        "installation_address",
        "installation_position",
        "manufacturer",
        "model_name",
        "institution_tel",
        "manager",
        "manager_tel",
        name="text_without_nul_and_bounded",
    )
    def text_without_nul_and_bounded(cls, series: Series[str]) -> Series[bool]:
        return ~series.str.contains("\x00", regex=False) & (series.str.len() <= MAX_TEXT_LENGTH)

    class Config:
        strict = False  # helper columns (the record's position) travel along


TEXT_SCHEMA_COLUMNS = tuple(AedRecordSchema.to_schema().columns)


@dataclass
class ValidatedRecords:
    """The outcome of stage 1 for a snapshot: typed valid rows and the quarantined records."""

    frame: pd.DataFrame
    rejected: list[tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=list)
    fetched: int = 0
    region_from_address: int = 0


_API_SCHEMA = pyarrow.schema([(name, pyarrow.large_string()) for name in API_FIELDS])


def records_table(records: Iterable[Mapping[str, Any]]) -> pyarrow.Table:
    """The records as an Arrow table of their API fields (large strings; an absent element is null).

    A value that is not text becomes its text, and a lone surrogate (which only a JSON escape can
    produce, and which Arrow strings cannot hold) becomes U+FFFD, as the parsers already do.
    """
    records = list(records)
    try:
        return pyarrow.Table.from_pylist(records, schema=_API_SCHEMA)
    except (pyarrow.ArrowException, UnicodeEncodeError):
        pass  # a value that is not text, or a lone surrogate: pandas converts or replaces it below
    try:
        frame = pd.DataFrame.from_records(records, columns=list(API_FIELDS)).astype("str")
    except UnicodeEncodeError:
        records = [{k: without_lone_surrogates(v) if isinstance(v, str) else v for k, v in r.items()} for r in records]
        frame = pd.DataFrame.from_records(records, columns=list(API_FIELDS)).astype("str")
    return pyarrow.Table.from_pandas(frame, schema=_API_SCHEMA, preserve_index=False)


def records_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`records_table` as a pandas frame (pandas' str dtype, stored in Arrow: no copy)."""
    return records_table(records).to_pandas()


def _clean(series: pd.Series) -> pd.Series:
    """Strip surrounding whitespace; an empty value is no value."""
    stripped = series.str.strip()
    return stripped.where(stripped != "", None)


def map_to_columns(raw: pd.DataFrame, health_centers: Mapping[tuple[str, str], str]) -> tuple[pd.DataFrame, int]:
    """The API fields as ``aed_data`` columns, still text; and how many regions came from addresses."""
    out = pd.DataFrame(index=raw.index)
    for api_field, column in TEXT_FIELD_COLUMNS.items():
        out[column] = _clean(raw[api_field])
    sido = _clean(raw["sido"]).map(normalize_sido, na_action="ignore")
    gugun = _clean(raw["gugun"])
    missing = sido.isna() | gugun.isna()
    derived = 0
    if missing.any():
        sido = sido.astype(object)
        gugun = gugun.astype(object)
        for index in raw.index[missing.to_numpy()]:
            address = out.at[index, "installation_address"]
            address_sido, address_gugun = region_from_address(address if isinstance(address, str) else None)
            if pd.isna(sido[index]) and address_sido:
                sido[index] = address_sido
                derived += 1
            if pd.isna(gugun[index]) and address_gugun and sido[index] == address_sido:
                gugun[index] = address_gugun
    out["sido"] = sido.astype("str")
    out["gugun"] = gugun.astype("str")
    out["latitude"] = _clean(raw["wgs84Lat"])
    out["longitude"] = _clean(raw["wgs84Lon"])
    zip1, zip2 = _clean(raw["zipcode1"]), _clean(raw["zipcode2"])
    out["zipcode"] = zip1.fillna("").str.cat(zip2.fillna("")).replace("", None)
    for api_field, column in TIME_FIELD_COLUMNS.items():
        out[column] = _clean(raw[api_field])
    for api_field, column in SUNDAY_WEEK_FIELDS.items():
        out[column] = _clean(raw[api_field])
    keys = [region_key(s, g) for s, g in zip(_none(out["sido"]), _none(out["gugun"]))]
    out["jurisdiction_health_center"] = pd.Series(
        [health_centers.get((sido, gugun)) if sido and gugun else None for sido, gugun in keys],
        index=out.index,
        dtype="str",
    )
    return out, derived


def _none(series: pd.Series) -> list[Any]:
    """The values as a list with None for nulls (pandas' NaN is not a value to compare)."""
    return [None if (v is None or (isinstance(v, float) and math.isnan(v))) else v for v in series.tolist()]


def failed_checks_by_row(text: pd.DataFrame) -> dict[Any, list[dict[str, Any]]]:
    """Run the pandera model lazily; the failures of every bad record, by frame index."""
    not_text = [column for column in TEXT_SCHEMA_COLUMNS if column in text and text[column].dtype != "str"]
    if not_text:
        # Our own mapping is broken, not a record: no record can make a column anything but text.
        raise TypeError(f"the AED text columns {', '.join(not_text)} are not text before validation")
    try:
        AedRecordSchema.validate(text, lazy=True)
    except pa.errors.SchemaErrors as errors:
        failures: dict[Any, list[dict[str, Any]]] = {}
        cases = errors.failure_cases
        for column, check, value, index in zip(cases["column"], cases["check"], cases["failure_case"], cases["index"]):
            if index is None or (isinstance(index, float) and math.isnan(index)):
                # A frame-level failure (a missing column): our own mapping is broken, not a record.
                raise
            shown = None if column in PERSONAL_COLUMNS else _json_value(value)
            if isinstance(shown, str):
                shown = storable_text(shown)  # a NUL is a reason to reject, and must still be storable
            failures.setdefault(index, []).append({"column": column, "check": str(check), "value": shown})
        return failures
    return {}


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None if value is None or math.isnan(value) else str(value)
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def to_typed(text: pd.DataFrame) -> pd.DataFrame:
    """Convert validated text columns to the table's types and add the derived columns."""
    typed = pd.DataFrame(index=text.index)
    for column in DEVICE_COLUMNS:
        if column in ("latitude", "longitude"):
            typed[column] = pd.to_numeric(text[column], errors="raise").astype("float64")
        elif column in TIME_COLUMNS:
            typed[column] = _hh_mm(text[column])
        elif column in SUNDAY_WEEK_COLUMNS:
            typed[column] = text[column].map({"Y": True, "N": False}).astype("boolean")
        elif column in ("access_control", "operation_status", "row_hash"):
            continue
        else:
            typed[column] = text[column]
    typed["access_control"] = _access_control(typed)
    typed["operation_status"] = "active"
    typed["row_hash"] = row_hashes(typed)
    return typed[list(DEVICE_COLUMNS)]


_TIME_SEPARATOR = pyarrow.scalar(":", type=pyarrow.large_string())


def _hh_mm(values: pd.Series) -> pd.Series:
    """``HHMM`` → ``HH:MM`` (nulls stay null), in Arrow: 16 time columns per page make pandas' str ops show."""
    hhmm = pyarrow.array(values, type=pyarrow.large_string())
    hh_mm = pa_compute.binary_join_element_wise(
        pa_compute.utf8_slice_codeunits(hhmm, 0, 2), pa_compute.utf8_slice_codeunits(hhmm, 2, 4), _TIME_SEPARATOR
    )
    return pd.Series(hh_mm, index=values.index, dtype="str")


def _access_control(typed: pd.DataFrame) -> pd.Series:
    """``24h`` when every weekday runs 00:00–24:00, ``scheduled`` with any hours, else ``unknown``."""
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    around_the_clock = pd.Series(True, index=typed.index)
    any_hours = pd.Series(False, index=typed.index)
    for day in days:
        start, end = typed[f"{day}_start"], typed[f"{day}_end"]
        around_the_clock &= (start == "00:00").fillna(False) & (end == "24:00").fillna(False)
        any_hours |= start.notna() | end.notna()
    result = np.where(around_the_clock, "24h", np.where(any_hours, "scheduled", "unknown"))
    return pd.Series(result, index=typed.index, dtype="str")


def row_hashes(typed: pd.DataFrame) -> list[bytes]:
    """A 16-byte BLAKE2b of each row's hashed columns (unit separator between, a marker for null)."""
    texts = [
        pa_compute.fill_null(pyarrow.array(typed[c].astype("str"), type=pyarrow.large_string()), "\x00")
        for c in HASHED_COLUMNS
    ]
    joined = pa_compute.binary_join_element_wise(*texts, pyarrow.scalar("\x1f", type=pyarrow.large_string()))
    # As UTF-8 bytes straight from Arrow: no Python str to build and encode again per row.
    utf8 = joined.cast(pyarrow.large_binary())
    return [hashlib.blake2b(text, digest_size=16).digest() for text in utf8.to_pylist()]


def validate_records(
    records: Iterable[Mapping[str, Any]], health_centers: Mapping[tuple[str, str], str]
) -> ValidatedRecords:
    """Stage 1 for a batch of records: typed valid rows, and each bad record with its reasons."""
    return validate_frame(records_frame(records), health_centers)


def validate_frame(raw: pd.DataFrame, health_centers: Mapping[tuple[str, str], str]) -> ValidatedRecords:
    """:func:`validate_records` for records already in a frame of :func:`records_frame`."""
    text, derived = map_to_columns(raw, health_centers)
    failures = failed_checks_by_row(text)
    rejected = []
    if failures:
        bad = sorted(failures)
        for index in bad:
            # As served, but storable: rejected_records is jsonb, which cannot hold "\u0000" either.
            record = {k: storable_text(v) for k, v in raw.loc[index].items() if isinstance(v, str)}
            rejected.append((record, failures[index]))
        text = text.drop(index=bad)
    typed = to_typed(text).reset_index(drop=True)
    return ValidatedRecords(frame=typed, rejected=rejected, fetched=len(raw), region_from_address=derived)
