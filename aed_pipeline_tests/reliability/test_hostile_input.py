"""Hostile input (issue 7 §5): random and mutated pages and records against the parsers and validators.

Properties, each checked with hypothesis on real pages (recorded and simulator-rendered) mutated
at random, and on random records:

* ``parse_egen_response`` / ``parse_flower_response`` return a parsed page or raise one of the typed
  ``SourceError`` classes naming the operation and the page; nothing else escapes (no KeyError,
  lxml error, UnicodeDecodeError, RecursionError …), DTDs (billion laughs, external entities) are
  refused, and what they return PostgreSQL can store (no lone surrogate; for the aT rows, no NUL).
* ``validate_records`` and ``validate_flower_rows`` never raise: every record is valid with sane typed
  values, or rejected with at least one ``{column, check, value}`` reason, storable as jsonb, and the
  masked manager fields never appear in a reason.
* Hostile but storable text lands in ``aed_data`` exactly as served (after the documented trimming);
  NUL is quarantined with a reason, a lone surrogate becomes U+FFFD; no COPY fails.

Hypothesis runs derandomized (the same examples on every run, CI-reproducible) without a deadline.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from aed_pipeline.lib.at_flower.client import ParsedFlowerPage, parse_flower_response
from aed_pipeline.lib.at_flower.fetch import API_FIELD_COLUMNS
from aed_pipeline.lib.at_flower.records import AMOUNT_COLUMNS, NAME_COLUMNS, plain_valid_rows, validate_flower_rows
from aed_pipeline.lib.at_flower.tables import PUBLIC_FRAME_COLUMNS, read_public_rows
from aed_pipeline.lib.at_flower.write.served import replace_public_slice
from aed_pipeline.lib.core.archive import PageSetManifest, RawArchive
from aed_pipeline.lib.core.errors import (
    SourceAuthError,
    SourceQuotaExceeded,
    SourceRateLimited,
    SourceRequestInvalid,
    SourceResponseInvalid,
    SourceUnavailable,
)
from aed_pipeline.lib.core.sync_log import replace_rejected_records
from aed_pipeline.lib.core.warehouse import warehouse_engine
from aed_pipeline.lib.egen_aed.checks import IntegrityThresholds
from aed_pipeline.lib.egen_aed.client import OPERATION_FULL_DOWN, ParsedEgenPage, parse_egen_response
from aed_pipeline.lib.egen_aed.fetch import ARCHIVE_SOURCE, PAGE_SET
from aed_pipeline.lib.egen_aed.records import (
    API_FIELDS,
    MAX_TEXT_LENGTH,
    PERSONAL_COLUMNS,
    SUNDAY_WEEK_COLUMNS,
    TIME_COLUMNS,
    validate_records,
)
from aed_pipeline.lib.egen_aed.source import EGEN_AED
from aed_pipeline.lib.egen_aed.tables import health_center_lookup
from aed_pipeline.lib.egen_aed.validate import validate_archived_snapshot
from aed_pipeline.lib.egen_aed.write.apply import apply_snapshot
from aed_pipeline.simulator import AT_PATH, EGEN_PREFIX, Simulator

HOSTILE = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: For the validators, whose cost is per call (pandera): fewer calls with more records each.
HOSTILE_BATCHES = settings(HOSTILE, max_examples=30)

#: Every typed error a body can turn into: an error envelope maps to its meaning (key, quota, rate,
#: request, outage), anything unreadable to SourceResponseInvalid.
TYPED_ERRORS = (
    SourceAuthError,
    SourceQuotaExceeded,
    SourceRateLimited,
    SourceUnavailable,
    SourceRequestInvalid,
    SourceResponseInvalid,
)
PAGE = 7
FLOWER_OPERATION = "f001 flowerGubn=1 baseDate=2026-03-03"
RECORDED = Path("/work/shared/api/recorded")
SIM_DAY = dt.date(2026, 3, 3)
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# --------------------------------------------------------------------------- seed pages


def _sim_bodies(api: str, queries: list[str], **faults: Any) -> list[bytes]:
    sim = Simulator(aed_count=40, today=SIM_DAY, egen_service_keys={"good"}, at_service_keys={"good"})
    for name, value in faults.items():
        setattr(sim.faults, name, value)
    path = f"{EGEN_PREFIX}/getAedFullDown" if api == "egen" else AT_PATH
    headers = {"User-Agent": "Mozilla/5.0 (hostile tests)"}
    return [sim.handle("GET", f"http://sim{path}?{query}", headers).body for query in queries]


def _egen_seeds() -> list[bytes]:
    pages = "serviceKey=good&pageNo=2&numOfRows=5"
    seeds = [
        path.read_bytes()
        for path in sorted(RECORDED.rglob("*"))
        if path.suffix in (".xml", ".html", ".txt") and not path.name.endswith(".headers.txt")
    ]
    seeds += _sim_bodies("egen", [pages, pages + "&_type=json", "serviceKey=bad&pageNo=1&numOfRows=5"])
    seeds += _sim_bodies("egen", ["serviceKey=good&pageNo=1&numOfRows=1&_type=json"])  # items.item is one object
    seeds += _sim_bodies("egen", ["serviceKey=bad&pageNo=1&numOfRows=5&_type=json"], envelope_json=True)
    quota = "LIMITED NUMBER OF SERVICE REQUESTS EXCEEDS ERROR."
    seeds += _sim_bodies(
        "egen",
        [pages, pages + "&_type=json"],
        egen_provider_error_count=2,
        egen_provider_error_code="22",
        egen_provider_error_msg=quota,
    )
    return seeds


def _flower_seeds() -> list[bytes]:
    day = "serviceKey=good&kind=f001&baseDate=2026-02-27&flowerGubn=1&countPerPage=5&currentPage=1"
    unknown_key = "serviceKey=unknown&kind=f001&dataType=json"
    seeds = _sim_bodies("at", [day + "&dataType=json", day + "&dataType=xml", unknown_key])
    seeds += _sim_bodies("at", [day + "&dataType=json", day + "&dataType=xml"], at_result_code=4)
    seeds += _sim_bodies("at", ["serviceKey=good&kind=f001&flowerGubn=1"])  # resultCd 5 in XML
    return seeds


EGEN_SEEDS = _egen_seeds()
FLOWER_SEEDS = _flower_seeds()

# --------------------------------------------------------------------------- mutations

SQL_LIKE = ["'; DROP TABLE aed_data; --", "1' OR '1'='1", 'x"); DELETE FROM aed_data_history; --', "$$ $q$ \\. \\N"]
MOJIBAKE = [
    "서울특별시 종로구".encode().decode("cp949", errors="replace"),
    "서울특별시 종로구".encode().decode("latin-1"),
    "자동심장충격기".encode("cp949").decode("utf-8", errors="replace"),
]
HOSTILE_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(SQL_LIKE + MOJIBAKE + ["", " ", "\x00", "a\x00b", "\ud800", "x\udfffy", "\t\n\r", "\\.", "NULL"]),
    st.text(alphabet=st.characters(codec=None, categories=["Cc", "Cs", "Zs", "Nd", "No"]), max_size=12),
    st.sampled_from(["x" * 100_000, "가" * (MAX_TEXT_LENGTH + 1), "y" * MAX_TEXT_LENGTH]),
)

SNIPPETS = [
    b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>',
    b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    b"&b;",
    b"&x;",
    b"&#0;",
    b"&#xD800;",
    b"&amp;",
    b"&lt;",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b"<?pi x?>",
    b"\\u0000",
    b"\\ud800",
    b"\\udfff\\ud800",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"[" * 3000,
    b"{" * 100,
    b'{"a":' * 2000,
    b"<a>" * 300,
    b"9" * 5000,
    b"-1",
    b"NaN",
    b"Infinity",
    b"1e309",
    b'"item":null',
    b'"item":""',
    b'"items":[1,2]',
    b'"totalCount":"-5"',
    b"<item/>",
    b"<item><item>x</item></item>",
    b"<resultCode>30</resultCode>",
    b'"resultCode":22',
    b'"resultCd":"4"',
    b"<numOfRows>\xc2\xb2</numOfRows>",
    b'"numOfRows":"\xc2\xb2"',
    b"<totalCount>1_000</totalCount>",
    b"<x xmlns='urn:x'>",
    "서울특별시".encode("cp949"),
]


def _tags(raw: bytes) -> list[re.Match[bytes]]:
    return list(re.finditer(rb"</?[A-Za-z_][\w.-]*\s*/?>", raw))


DESTRUCTIVE = ["flip", "truncate", "garbage", "snippet", "drop_tag", "dup_tag", "encoding", "bom", "huge"]
GENTLE = ["text_node", "json_value"]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], kinds: list[str]) -> bytes:
    """A seed page with 1–4 random mutations: byte flips, truncation, garbage, hostile snippets,
    tags removed or duplicated, another encoding, BOMs, a huge text node (destructive ones); hostile
    text in a text node or a re-typed JSON value (gentle ones, which keep the page parseable)."""
    raw = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(kinds))
        at = draw(st.integers(0, max(0, len(raw))))
        if kind == "flip" and raw:
            raw[min(at, len(raw) - 1)] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            raw = raw[:at]
        elif kind == "garbage":
            raw[at:at] = draw(st.binary(min_size=1, max_size=40))
        elif kind == "snippet":
            raw[at:at] = draw(st.sampled_from(SNIPPETS))
        elif kind in ("drop_tag", "dup_tag") and (tags := _tags(bytes(raw))):
            tag = tags[draw(st.integers(0, len(tags) - 1))]
            raw[tag.start() : tag.end()] = b"" if kind == "drop_tag" else tag.group() * draw(st.integers(2, 3))
        elif kind == "encoding":
            text = bytes(raw).decode("utf-8", errors="replace")
            codec = draw(st.sampled_from(["cp949", "latin-1", "utf-16", "utf-16-be", "utf-32"]))
            raw = bytearray(text.encode(codec, errors="replace"))
        elif kind == "bom":
            raw[0:0] = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf\xef\xbb\xbf"]))
        elif kind == "huge":
            fill = draw(st.sampled_from([b"x", "가".encode(), b"&amp;", b" "]))
            raw[at:at] = fill * (200_000 // len(fill))
        elif kind == "text_node" and (nodes := list(re.finditer(rb">([^<]+)<", bytes(raw)))):
            node = nodes[draw(st.integers(0, len(nodes) - 1))]
            text = draw(HOSTILE_TEXT).replace("&", "&amp;").replace("<", "&lt;")
            raw[node.start(1) : node.end(1)] = text.encode("utf-8", errors="surrogatepass")
        elif kind == "json_value":
            raw = bytearray(_retyped_json(bytes(raw), draw))
    return bytes(raw)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _retyped_json(raw: bytes, draw: st.DrawFn) -> bytes:
    """Replace one value anywhere in a JSON document by a random JSON value (wrong types, nulls …)."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return raw
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            paths.append((node, key))
            walk(child)

    walk(doc)
    if not paths:
        return raw
    node, key = paths[draw(st.integers(0, len(paths) - 1))]
    node[key] = draw(JSON_VALUES | HOSTILE_TEXT)
    return json.dumps(doc, ensure_ascii=draw(st.booleans()), allow_nan=True).encode("utf-8", errors="surrogatepass")


def random_bodies(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        mutated(seeds, GENTLE),
        mutated(seeds, DESTRUCTIVE + GENTLE),
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda t: ("<" + t).encode("utf-8", errors="surrogatepass")),
        st.text(max_size=200).map(lambda t: ("{" + t).encode("utf-8", errors="surrogatepass")),
    )


def _assert_typed(exc: Exception, operation: str) -> None:
    assert type(exc) in TYPED_ERRORS, f"{type(exc).__name__} escaped: {exc!r}"[:500]
    assert exc.operation == operation and exc.page == PAGE
    assert operation in str(exc) and f"page {PAGE}" in str(exc)


def _assert_storable(records: list[dict[str, str]], *, nul_allowed: bool) -> None:
    for record in records:
        for key, value in record.items():
            assert isinstance(key, str) and isinstance(value, str)
            bad = UNSTORABLE.findall(value)
            assert not [c for c in bad if c != "\x00" or not nul_allowed], (key, value[:80])


# --------------------------------------------------------------------------- parsers


@HOSTILE
@given(raw=random_bodies(EGEN_SEEDS))
@example(raw=b'{"response":' + b"[" * 100_000)  # RecursionError escaped before the fix
@example(
    raw=b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "x"><!ENTITY b "&a;&a;&a;">]><response><header>'
    b"<resultCode>00</resultCode></header><body><items><item><org>&b;</org>&b;</item></items>"
    b"<totalCount>1</totalCount></body></response>"
)  # entity nodes became record keys before the fix
def test_egen_parser_returns_a_page_or_raises_a_typed_source_error(raw: bytes) -> None:
    """Any body: a parsed e-gen page whose records are text PostgreSQL can hold (NUL is left for
    validation to quarantine), or a typed SourceError naming the operation and the page; and the
    parsed records go through validation without an exception."""
    try:
        parsed = parse_egen_response(raw, operation=OPERATION_FULL_DOWN, page=PAGE)
    except Exception as exc:
        _assert_typed(exc, OPERATION_FULL_DOWN)
        event(type(exc).__name__)
        return
    event(f"parsed ({'some' if parsed.records else 'no'} records)")
    assert isinstance(parsed, ParsedEgenPage) and parsed.total_count >= len(parsed.records)
    _assert_storable(parsed.records, nul_allowed=True)
    _check_validation(parsed.records)


@HOSTILE
@given(raw=random_bodies(FLOWER_SEEDS))
@example(raw=b'{"response":{"resultCd":"0","numOfRows":"\xc2\xb2","items":[]}}')  # ValueError before the fix
@example(raw=b'{"response":{"resultCd":"0","items":[{"pumName":"a\\u0000b","goodName":"\\udc80"}]}}')
def test_flower_parser_returns_a_page_or_raises_a_typed_source_error(raw: bytes) -> None:
    """Any body: a parsed f001 page whose values public_bidding_flowers can store as served (NUL and
    lone surrogates became U+FFFD), or a typed SourceError naming the operation and the page."""
    try:
        parsed = parse_flower_response(raw, operation=FLOWER_OPERATION, page=PAGE)
    except Exception as exc:
        _assert_typed(exc, FLOWER_OPERATION)
        event(type(exc).__name__)
        return
    event(f"parsed ({'some' if parsed.records else 'no'} records)")
    assert isinstance(parsed, ParsedFlowerPage)
    _assert_storable(parsed.records, nul_allowed=False)


@pytest.mark.parametrize("parse", [parse_egen_response, parse_flower_response])
@pytest.mark.parametrize(
    "dtd",
    [
        b'<!DOCTYPE response [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>',
        b'<!DOCTYPE response [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
        b'<!DOCTYPE response SYSTEM "http://127.0.0.1:9/evil.dtd">',
    ],
    ids=["billion_laughs", "external_entity", "external_dtd"],
)
def test_xml_with_a_dtd_is_refused(parse, dtd: bytes) -> None:
    """Entity expansion and external entities never happen: the body is refused as a whole (an
    external DTD already by the parser, which may not touch the network)."""
    body = (
        b'<?xml version="1.0"?>' + dtd + b"<response><header><resultCode>00</resultCode></header><resultCd>0</resultCd>"
        b"<body><items><item><org>&d;&x;</org></item></items><totalCount>1</totalCount></body></response>"
    ).replace(b"&d;&x;", b"&d;" if b"ENTITY d" in dtd else b"&x;" if b"ENTITY x" in dtd else b"x")
    with pytest.raises(SourceResponseInvalid, match=r"declares a DTD|Attempt to load network entity"):
        parse(body, operation="op", page=PAGE)


# --------------------------------------------------------------------------- AED records

COORDINATE = st.one_of(
    st.sampled_from(
        [
            "37.5709958592",
            "126.9789144773",
            "  37.5 ",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "Infinity",
            "1e309",
            "-0",
            "+37.5",
            "999",
            "-91",
            "180.0000001",
            "٣٧.٥",
            "３７.５",
            "37,5",
            "37.5.1",
            "0x25",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-1000, 1000),
    HOSTILE_TEXT,
)
TIME = st.one_of(
    st.sampled_from(["0000", "2400", "0900", "2359", "2401", "0960", "9", "0٩00", "０９００", " 0900 "]),
    st.integers(0, 9999),
    HOSTILE_TEXT,
)
FIELD_VALUE = {
    **{name: HOSTILE_TEXT | st.none() | st.integers() for name in API_FIELDS},
    "wgs84Lat": COORDINATE | st.none(),
    "wgs84Lon": COORDINATE | st.none(),
    "sido": st.sampled_from(["서울특별시", "서울", "강원도", "Seoul"]) | HOSTILE_TEXT,
    **{name: TIME | st.none() for name in API_FIELDS if name.endswith("Tme")},
    **{name: st.sampled_from(["Y", "N", "y", "", "YN"]) | HOSTILE_TEXT for name in API_FIELDS if name.endswith("Yon")},
}
#: Every manager value carries this marker, so a reason that echoes one is easy to see.
MANAGER_MARK = "MGR⚑"


@st.composite
def aed_records(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = {
        "serialSeq": draw(st.one_of(st.text(min_size=1, max_size=12), HOSTILE_TEXT, st.integers())),
        "buildAddress": draw(
            st.sampled_from(["서울특별시 종로구 종로3길 17", "경기도 수원시 장안구 1"]) | HOSTILE_TEXT
        ),
        "wgs84Lat": draw(st.sampled_from(["37.57", "35.1"]) | COORDINATE),
        "wgs84Lon": draw(st.sampled_from(["126.97", "129.0"]) | COORDINATE),
    }
    for name in draw(st.sets(st.sampled_from(API_FIELDS), max_size=12)):
        record[name] = draw(FIELD_VALUE[name])
    for name in draw(st.sets(st.sampled_from(["serialSeq", "wgs84Lat", "sido", "gugun"]), max_size=2)):
        record.pop(name, None)  # missing keys
    for name in ("manager", "managerTel"):
        if draw(st.booleans()):
            record[name] = MANAGER_MARK + draw(HOSTILE_TEXT)
    record.update(draw(st.dictionaries(st.text(max_size=10), HOSTILE_TEXT, max_size=2)))  # extra keys
    return record


HEALTH_CENTERS = {("서울특별시", "종로구"): "종로구보건소", ("경기도", "수원시"): "수원시장안구보건소"}


def _check_validation(records: list[dict[str, Any]]) -> None:
    result = validate_records(records, HEALTH_CENTERS)
    frame = result.frame
    assert len(frame) + len(result.rejected) == len(records) == result.fetched
    for column in ("latitude", "longitude"):
        values = frame[column].dropna()
        assert all(math.isfinite(v) for v in values), column
    for column in TIME_COLUMNS:
        times = frame[column].dropna()
        assert times.str.fullmatch(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00", flags=re.ASCII).all(), column
    for column in SUNDAY_WEEK_COLUMNS:
        assert frame[column].dropna().isin([True, False]).all()
    assert frame["equipment_serial"].notna().all() and (frame["equipment_serial"].str.len() > 0).all()
    for column in frame.columns:
        if frame[column].dtype == "str" or column in PERSONAL_COLUMNS:
            texts = frame[column].dropna()
            assert not texts.str.contains("\x00", regex=False).any() and (texts.str.len() <= MAX_TEXT_LENGTH).all()
    assert all(len(h) == 16 for h in frame["row_hash"])
    for record, reasons in result.rejected:
        assert reasons and all(set(r) == {"column", "check", "value"} and r["column"] and r["check"] for r in reasons)
        for reason in reasons:
            if reason["column"] in PERSONAL_COLUMNS:
                assert reason["value"] is None
        # Storable in rejected_records (jsonb: valid UTF-8, no \u0000) and no manager text in a reason.
        for document in (record, reasons):
            text = json.dumps(document, ensure_ascii=False, default=str)
            text.encode("utf-8")
            assert "\\u0000" not in text
        assert MANAGER_MARK not in json.dumps(reasons, ensure_ascii=False, default=str)


@HOSTILE_BATCHES
@given(records=st.lists(aed_records(), min_size=1, max_size=25))
@example(records=[{"serialSeq": "S1", "wgs84Lat": "٣٧.٥", "wgs84Lon": "126.9"}])  # ValueError before the fix
@example(records=[{"serialSeq": "S1", "monSttTme": "0٩00"}])  # valid before the fix, then a failed COPY
@example(records=[{"serialSeq": "S1", "org": "a\udc80b", "manager": MANAGER_MARK + "\x00"}])  # UnicodeEncodeError
@example(records=[{"serialSeq": "S1", "wgs84Lat": "1e309", "wgs84Lon": "NaN"}])
def test_every_aed_record_is_valid_and_sane_or_quarantined_with_a_reason(records: list[dict[str, Any]]) -> None:
    _check_validation(records)


# --------------------------------------------------------------------------- flower rows

#: What public_bidding_flowers can return: text without NUL or lone surrogates (the parser replaces them).
STORED_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
AMOUNT = st.one_of(
    st.integers(-(10**18), 10**18).map(str),
    st.sampled_from(
        [
            "1,234",
            "12,816,580",
            "1,23",
            " 7 ",
            "-0",
            "+5",
            "NaN",
            "inf",
            "1e3",
            "12.5",
            "１０",
            "٣",
            "9" * 15,
            "9" * 16,
            "999,999,999,999,999",
            "",
            "N/A",
        ]
    ),
    STORED_TEXT,
    st.none(),
)


@st.composite
def flower_frames(draw: st.DrawFn) -> pd.DataFrame:
    rows = []
    for n in range(draw(st.integers(1, 15))):
        gubn = draw(st.integers(1, 4))
        rows.append(
            {
                "sale_date": dt.date(2026, 3, 2),
                "flower_gubn": gubn,
                "sale_date_raw": draw(st.sampled_from(["2026-03-02", "2026-3-2", ""]) | STORED_TEXT | st.none()),
                "flower_gubn_raw": draw(st.sampled_from(["절화", "관엽", "난", "춘란"]) | STORED_TEXT | st.none()),
                **{
                    c: draw(
                        st.sampled_from(["장미", "레드", "특", " "])
                        | st.sampled_from(SQL_LIKE + MOJIBAKE)
                        | STORED_TEXT
                        | st.none()
                    )
                    for c in NAME_COLUMNS
                },
                **{c: draw(AMOUNT) for c in AMOUNT_COLUMNS},
                "page": 1,
                "row_in_page": n + 1,
            }
        )
    return pd.DataFrame(rows, columns=list(PUBLIC_FRAME_COLUMNS)).astype(object)


@HOSTILE_BATCHES
@given(raw=flower_frames())
def test_every_flower_row_is_valid_or_rejected_with_a_reason(raw: pd.DataFrame) -> None:
    validation = validate_flower_rows(raw)
    assert set(validation.reasons) == set(validation.valid.index[~validation.valid])
    for reasons in validation.reasons.values():
        assert reasons and all(set(r) == {"column", "check", "value"} for r in reasons)
        json.dumps(reasons, ensure_ascii=False, default=str).encode("utf-8")
    valid = plain_valid_rows(validation)
    for column in AMOUNT_COLUMNS:
        assert ((valid[column] >= 0) & (valid[column] < 10**15)).all()
    for column in NAME_COLUMNS:
        assert all(isinstance(v, str) and v.strip() for v in valid[column])
    assert (valid["min_amt"] <= valid["avg_amt"]).all() and (valid["avg_amt"] <= valid["max_amt"]).all()


# --------------------------------------------------------------------------- all the way into PostgreSQL

#: Valid but hostile text: each must land in aed_data exactly as served.
LANDING = [
    "'; DROP TABLE aed_data; --",
    'Robert"); DELETE FROM aed_data_history WHERE ("1"="1',
    "\\.",
    "before\n\\.\nafter",
    "back\\slash \\N \\x00 \\\\ literal",
    "tab\there\nnew\r\nline\rcr",
    'quote "double" and \'single\' ""',
    'comma,separated,"values",',
    "$$dollar$$ $tag$ x $tag$ E'\\x41'",
    "서울 🚑 \u200b zero\u202eRTL \ufeffbom",
    "서울특별시".encode().decode("latin-1"),
    "서울특별시".encode().decode("cp949", errors="replace"),
    "\\N",
    "NULL",
    "ctl \x01\x02\x1b[31m\x7f\x85 end",
    "z" * MAX_TEXT_LENGTH,
]


def _json_page(records: list[dict[str, str]]) -> bytes:
    body = {
        "response": {
            "header": {"resultCode": "00", "resultMsg": "NORMAL SERVICE."},
            "body": {"items": {"item": records}, "numOfRows": 1000, "pageNo": 1, "totalCount": len(records)},
        }
    }
    return json.dumps(body, ensure_ascii=True).encode()  # \u escapes for every control character


def test_hostile_text_lands_as_text_and_unstorable_text_never_crashes_a_copy(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """Hostile strings in every free-text field go through the archive, validation, the Parquet rows
    file and the CSV COPY into aed_data unchanged; a NUL is quarantined (with its reason, the NUL
    written as ``\\x00`` in rejected_records) and a lone surrogate arrives as U+FFFD."""
    text_fields = {
        "org": "installation_institution",
        "buildPlace": "installation_position",
        "mfg": "manufacturer",
        "model": "model_name",
        "clerkTel": "institution_tel",
        "manager": "manager",
        "managerTel": "manager_tel",
    }
    base = {
        "buildAddress": "서울특별시 종로구 종로3길 17",
        "sido": "서울특별시",
        "gugun": "종로구",
        "wgs84Lat": "37.57",
        "wgs84Lon": "126.97",
        "monSttTme": "0900",
        "monEndTme": "2400",
    }
    records = []
    for n, text in enumerate(LANDING):
        records.append({**base, "serialSeq": f"H{n:02d}-{text[:20]}", **dict.fromkeys(text_fields, text)})
    records.append({**base, "serialSeq": "NUL-1", "org": "before\x00after"})
    records.append({**base, "serialSeq": "SURROGATE-1", "org": "lone \udc80 half"})
    raw = _json_page(records)

    archive = RawArchive(tmp_path / "archive")
    manifest = PageSetManifest(
        source=ARCHIVE_SOURCE,
        partition=SIM_DAY.isoformat(),
        page_set=PAGE_SET,
        origin="simulator",
        format="json",
        request={"operation": OPERATION_FULL_DOWN},
    )
    archive.add_page(manifest, 1, raw, records=len(records), content_type="application/json")
    manifest.total_count, manifest.expected_pages, manifest.complete = len(records), 1, True
    archive.write_manifest(manifest)

    engine = warehouse_engine(fresh_database_url)
    validation = validate_archived_snapshot(
        archive,
        SIM_DAY,
        health_centers=health_center_lookup(engine),
        previous=None,
        thresholds=IntegrityThresholds(),
        rows_path=tmp_path / "rows.parquet",
    )
    assert validation.snapshot.blocking_failures == []
    with engine.begin() as conn:
        replace_rejected_records(
            conn,
            source=EGEN_AED.name,
            partition_key=SIM_DAY.isoformat(),
            run_id="hostile",
            rejected=validation.rejected,
        )
    apply_snapshot(engine, validation.snapshot)

    with engine.connect() as conn:
        stored = {
            row[0]: row[1:]
            for row in conn.execute(
                sa.text(f"SELECT equipment_serial, {', '.join(text_fields.values())} FROM aed_data")
            )
        }
        quarantined = conn.execute(
            sa.text("SELECT record ->> 'serialSeq', record ->> 'org', failed_checks FROM rejected_records")
        ).all()
    for n, text in enumerate(LANDING):
        assert stored[f"H{n:02d}-{text[:20]}"] == (text,) * len(text_fields), text
    assert stored["SURROGATE-1"][0] == "lone \ufffd half"
    assert "NUL-1" not in stored
    assert quarantined == [
        (
            "NUL-1",
            "before\\x00after",
            [
                {
                    "column": "installation_institution",
                    "check": "text_without_nul_and_bounded",
                    "value": "before\\x00after",
                }
            ],
        )
    ]


def test_hostile_flower_rows_land_as_served_in_public_bidding_flowers(fresh_database_url: str) -> None:
    """The aT rows are stored as served before any validation: hostile text arrives unchanged through
    the COPY; NUL and a lone surrogate, which PostgreSQL text cannot hold, arrive as U+FFFD; the rows
    read back validate without an exception (the SQL-looking row is valid, the others are judged)."""
    sale_date = dt.date(2026, 2, 27)
    names = [*LANDING, "before\x00after", "lone \udc80 half"]
    items = [
        {
            "saleDate": "2026-02-27",
            "flowerGubn": "절화",
            "pumName": name,
            "goodName": name,
            "lvNm": "특",
            "maxAmt": "1,000",
            "minAmt": "500",
            "avgAmt": "700",
            "totAmt": "7,000",
            "totQty": "10",
        }
        for name in names
    ]
    raw = json.dumps(
        {"response": {"resultCd": "0", "resultMsg": "OK", "numOfRows": str(len(items)), "items": items}}
    ).encode()
    parsed = parse_flower_response(raw, operation=FLOWER_OPERATION, page=1)
    fields = [field for field, _ in API_FIELD_COLUMNS]
    rows = [
        (sale_date, 1, *map(record.get, fields), 1, n, "2026-02-28T00:00:00+00:00", "archive/page-1")
        for n, record in enumerate(parsed.records, start=1)
    ]

    engine = warehouse_engine(fresh_database_url)
    with engine.begin() as conn:
        replace_public_slice(conn, sale_date, rows)
    with engine.connect() as conn:
        stored = read_public_rows(conn, sale_date, sale_date)
    expected = [*LANDING, "before\ufffdafter", "lone \ufffd half"]
    assert stored["pum_name"].tolist() == expected and stored["good_name"].tolist() == expected
    validation = validate_flower_rows(stored)
    assert validation.valid.iloc[0]  # "'; DROP TABLE aed_data; --" is a name like any other
    assert all(validation.reasons.get(label) for label in validation.valid.index[~validation.valid])
