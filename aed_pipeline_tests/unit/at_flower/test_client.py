"""Tests for the aT flower f001 client and parser (httpx.MockTransport only)."""

from __future__ import annotations

import json
import logging
from datetime import date
from urllib.parse import parse_qs

import httpx
import pytest

from aed_pipeline.lib.at_flower.client import (
    AtFlowerClient,
    FlowerPage,
    f001_operation,
    parse_flower_response,
)
from aed_pipeline.lib.core.errors import (
    SourceAuthError,
    SourceError,
    SourceQuotaExceeded,
    SourceRequestInvalid,
    SourceResponseInvalid,
    SourceUnavailable,
)
from aed_pipeline.lib.core.http import HttpOptions, RetryPolicy
from aed_pipeline_tests.support.helpers import ScriptedHandler, assert_no_key

KEY = "MARKERKEY0123456789ABCDEF0123456"  # 32 chars like a real aT key
DAY = date(2026, 11, 23)
OPERATION = "f001 flowerGubn=1 baseDate=2026-11-23"

SAMPLE_ROW = {
    "saleDate": "2018-08-16",
    "flowerGubn": "절화",
    "pumName": "거베라",
    "goodName": "미니(혼합)",
    "lvNm": "특2",
    "maxAmt": "4300",
    "minAmt": "1050",
    "avgAmt": "3243",
    "totAmt": "12816580",
    "totQty": "3952",
}
SAMPLE_JSON = (
    '{"response":{"resultCd":"0","resultMsg":"OK","numOfRows":"1","items":[{"saleDate":"2018-08-16",'
    '"flowerGubn":"절화","pumName":"거베라","goodName":"미니(혼합)","lvNm":"특2","maxAmt":"4300",'
    '"minAmt":"1050","avgAmt":"3243","totAmt":"12816580","totQty":"3952"}]}}'
).encode()
EMPTY_DAY = b'{"response":{"resultCd":"0","resultMsg":"OK","numOfRows":"0","items":[]}}'

RESULT_MSGS = {
    "1": "서비스 키 오류입니다.",
    "2": "기간을 다시 설정하여 주십시오.",
    "3": "미승인된 공공데이터입니다. 관리자에게 문의하십시오.",
    "4": "금일 호출 건수가 만료 되었습니다.",
    "5": "파라미터 입력값이 잘못되었습니다.(kind|serviceKey|dataType)",
}


def error_json(code: str) -> bytes:
    return json.dumps(
        {"response": {"resultCd": code, "resultMsg": RESULT_MSGS[code], "numOfRows": None, "items": None}},
        ensure_ascii=False,
    ).encode()


def xml_body(rows: list[dict[str, str]], code: str = "0", msg: str = "OK", decl: bool = True) -> bytes:
    items = "".join("<item>" + "".join(f"<{k}>{v}</{k}>" for k, v in r.items()) + "</item>" for r in rows)
    head = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' if decl else ""
    return (
        f"{head}<response><resultCd>{code}</resultCd><resultMsg>{msg}</resultMsg>"
        f"<numOfRows>{len(rows)}</numOfRows><items>{items}</items></response>"
    ).encode()


def json_rows(n: int, offset: int = 0) -> bytes:
    rows = [dict(SAMPLE_ROW, goodName=f"품종{offset + i}") for i in range(n)]
    return json.dumps(
        {"response": {"resultCd": "0", "resultMsg": "OK", "numOfRows": str(n), "items": rows}}, ensure_ascii=False
    ).encode()


def json_response(body: bytes, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=body, headers={"Content-Type": "application/json;charset=UTF-8"})


def make_client(handler, retry: RetryPolicy | None = None, **kw) -> tuple[AtFlowerClient, list[float]]:
    delays: list[float] = []
    http = HttpOptions(transport=httpx.MockTransport(handler), sleep=delays.append, rng=lambda: 1.0, retry=retry)
    client = AtFlowerClient(KEY, http=http, **kw)
    return client, delays


# --------------------------------------------------------------------------- request


def test_request_url_parameters():
    handler = ScriptedHandler(json_response(SAMPLE_JSON))
    client, _ = make_client(handler, count_per_page=1000)
    with client:
        page = client.fetch_page(DAY, 1, 1)
    request = handler.requests[0]
    assert str(request.url).startswith("https://flower.at.or.kr/api/returnData.api?kind=f001&serviceKey=MARKERKEY")
    assert parse_qs(request.url.query.decode()) == {
        "kind": ["f001"],
        "serviceKey": [KEY],
        "baseDate": ["2026-11-23"],
        "flowerGubn": ["1"],
        "dataType": ["json"],
        "countPerPage": ["1000"],
        "currentPage": ["1"],
    }
    assert request.headers["user-agent"].startswith("Mozilla/5.0")
    assert isinstance(page, FlowerPage)
    assert page.records == [SAMPLE_ROW]
    assert page.raw == SAMPLE_JSON
    assert (page.sale_date, page.flower_gubn, page.page, page.data_type) == (DAY, 1, 1, "json")
    assert page.content_type.startswith("application/json")


def test_key_with_special_chars_encoded_once():
    odd_key = "MARKERKEY+/=%zz"
    handler = ScriptedHandler(json_response(EMPTY_DAY))
    with AtFlowerClient(
        odd_key, http=HttpOptions(transport=httpx.MockTransport(handler), sleep=lambda s: None)
    ) as client:
        client.fetch_page(DAY, 2, 1)
        assert "MARKERKEY" not in client.redacted_url(DAY, 2, 1)
    assert "serviceKey=MARKERKEY%2B%2F%3D%25zz&" in str(handler.requests[0].url)
    assert parse_qs(handler.requests[0].url.query.decode())["serviceKey"] == [odd_key]


def test_xml_data_type_requested():
    handler = ScriptedHandler(
        httpx.Response(200, content=xml_body([SAMPLE_ROW]), headers={"Content-Type": "application/xml"})
    )
    client, _ = make_client(handler, data_type="xml")
    with client:
        page = client.fetch_page(DAY, 3, 1)
    assert parse_qs(handler.requests[0].url.query.decode())["dataType"] == ["xml"]
    assert page.records == [SAMPLE_ROW] and page.data_type == "xml"


def test_invalid_flower_gubn_rejected_locally():
    client, _ = make_client(ScriptedHandler(json_response(EMPTY_DAY)))
    with client, pytest.raises(ValueError):
        client.fetch_page(DAY, 7, 1)


# --------------------------------------------------------------------------- parser


def test_parse_sample_json():
    parsed = parse_flower_response(SAMPLE_JSON, data_type="json", operation=OPERATION, page=1)
    assert parsed.records == [SAMPLE_ROW] and parsed.num_of_rows == 1 and parsed.format == "json"


def test_parse_empty_day():
    parsed = parse_flower_response(EMPTY_DAY, data_type="json", operation=OPERATION, page=1)
    assert parsed.records == [] and parsed.num_of_rows == 0


def test_parse_bare_object_and_numbers_become_strings():
    raw = (
        b'{"response":{"resultCd":0,"resultMsg":"OK","numOfRows":1,"items":{"saleDate":"2018-08-16",'
        b'"maxAmt":4300,"avgAmt":3243.50,"totQty":3952,"lvNm":null}}}'
    )
    parsed = parse_flower_response(raw, data_type="json", operation=OPERATION, page=1)
    assert parsed.records == [{"saleDate": "2018-08-16", "maxAmt": "4300", "avgAmt": "3243.50", "totQty": "3952"}]
    assert parsed.num_of_rows == 1


def test_parse_item_wrapper_object():
    raw = b'{"response":{"resultCd":"0","resultMsg":"OK","numOfRows":"1","items":{"item":[{"pumName":"\xec\x9e\xa5\xeb\xaf\xb8"}]}}}'
    assert parse_flower_response(raw, operation=OPERATION, page=1).records == [{"pumName": "장미"}]


@pytest.mark.parametrize("decl", [True, False])
def test_parse_xml_with_and_without_declaration(decl):
    parsed = parse_flower_response(
        xml_body([SAMPLE_ROW, SAMPLE_ROW], decl=decl), data_type="xml", operation=OPERATION, page=1
    )
    assert parsed.records == [SAMPLE_ROW, SAMPLE_ROW] and parsed.num_of_rows == 2 and parsed.format == "xml"


def test_parse_xml_empty_day():
    parsed = parse_flower_response(xml_body([]), data_type="xml", operation=OPERATION, page=1)
    assert parsed.records == [] and parsed.num_of_rows == 0


def test_result_cd_5_as_xml_when_json_was_asked():
    raw = xml_body([], code="5", msg=RESULT_MSGS["5"], decl=False)
    with pytest.raises(SourceRequestInvalid) as info:
        parse_flower_response(raw, data_type="json", operation=OPERATION, page=1)
    assert info.value.code == "5"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \n",
        b"<html><head><title>Error</title></head><body>500 Internal Server Error</body></html>",
        b"<!DOCTYPE html><html><body>error</body></html>",
        b"OK",
    ],
)
def test_non_json_body_explains_unknown_key(raw):
    with pytest.raises(SourceResponseInvalid) as info:
        parse_flower_response(raw, data_type="json", operation=OPERATION, page=1)
    text = str(info.value)
    assert "unknown service key" in text and "AT_FLOWER_SERVICE_KEY" in text and "upstream" in text
    assert "aT flower" in text and OPERATION in text and "page 1" in text


@pytest.mark.parametrize("cut", [5, 40, -3])
def test_truncated_json_is_response_invalid(cut):
    with pytest.raises(SourceResponseInvalid) as info:
        parse_flower_response(SAMPLE_JSON[:cut], data_type="json", operation=OPERATION, page=2)
    assert "page 2" in str(info.value) and info.value.__cause__ is None


def test_truncated_xml_is_response_invalid():
    with pytest.raises(SourceResponseInvalid):
        parse_flower_response(xml_body([SAMPLE_ROW])[:-15], data_type="xml", operation=OPERATION, page=1)


def test_unexpected_json_envelope():
    with pytest.raises(SourceResponseInvalid):
        parse_flower_response(b'{"result":"ok"}', operation=OPERATION, page=1)


# --------------------------------------------------------------------------- result codes via client


@pytest.mark.parametrize(
    "code, expected, phrase",
    [
        ("1", SourceAuthError, "service key error"),
        ("2", SourceAuthError, "validity period"),
        ("3", SourceAuthError, "not approved"),
        ("4", SourceQuotaExceeded, "midnight KST"),
        ("5", SourceRequestInvalid, "invalid request parameter"),
    ],
)
def test_result_codes_are_permanent_one_call(code, expected, phrase, caplog):
    caplog.set_level(logging.DEBUG)
    handler = ScriptedHandler(json_response(error_json(code)))
    client, delays = make_client(handler)
    with client, pytest.raises(SourceError) as info:
        client.fetch_page(DAY, 1, 2)
    exc = info.value
    assert type(exc) is expected and exc.transient is False
    assert len(handler.requests) == 1 and delays == []
    text = str(exc)
    assert phrase in text and "aT flower" in text and OPERATION in text and "page 2" in text and f"code {code}" in text
    if expected is SourceAuthError:
        assert "AT_FLOWER_SERVICE_KEY" in text
    assert_no_key(exc, caplog)


def test_unknown_key_html_body_via_client(caplog):
    caplog.set_level(logging.DEBUG)
    handler = ScriptedHandler(httpx.Response(200, content=b"", headers={"Content-Type": "text/html"}))
    client, delays = make_client(handler)
    with client, pytest.raises(SourceResponseInvalid) as info:
        client.fetch_page(DAY, 1, 1)
    assert len(handler.requests) == 1 and delays == []
    assert "unknown service key" in str(info.value)
    assert_no_key(info.value, caplog)


# --------------------------------------------------------------------------- transient failures


@pytest.mark.parametrize(
    "exc_type", [httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadTimeout, httpx.ReadError]
)
def test_dropped_connections_are_retried(exc_type, caplog):
    caplog.set_level(logging.DEBUG)
    handler = ScriptedHandler(exc_type, exc_type, json_response(SAMPLE_JSON))
    client, delays = make_client(handler)
    with client:
        page = client.fetch_page(DAY, 1, 1)
    assert page.records == [SAMPLE_ROW]
    assert len(handler.requests) == 3 and delays == [1.0, 2.0]
    assert all("MARKERKEY" not in r.getMessage() for r in caplog.records)


def test_500_exhausted(caplog):
    caplog.set_level(logging.DEBUG)
    handler = ScriptedHandler(httpx.Response(500, text="<html>NullPointerException</html>"))
    client, delays = make_client(handler, retry=RetryPolicy(max_attempts=4, base_delay=2.0, max_delay=5.0))
    with client, pytest.raises(SourceUnavailable) as info:
        client.fetch_page(DAY, 1, 1)
    assert len(handler.requests) == 4 and delays == [2.0, 4.0, 5.0]
    assert "4 attempts" in str(info.value) and "code 500" in str(info.value)
    assert_no_key(info.value, caplog)


def test_429_retried():
    handler = ScriptedHandler(json_response(b"slow", status=429), json_response(SAMPLE_JSON))
    client, delays = make_client(handler)
    with client:
        client.fetch_page(DAY, 1, 1)
    assert len(handler.requests) == 2 and delays == [1.0]


def test_http_403_is_auth_error():
    handler = ScriptedHandler(httpx.Response(403, text="Forbidden"))
    client, _ = make_client(handler)
    with client, pytest.raises(SourceAuthError):
        client.fetch_page(DAY, 1, 1)
    assert len(handler.requests) == 1


# --------------------------------------------------------------------------- iter_day


def _paging(total: int, per_page: int):
    def respond(request: httpx.Request) -> httpx.Response:
        q = parse_qs(request.url.query.decode())
        assert q["countPerPage"] == [str(per_page)]
        page = int(q["currentPage"][0])
        start = (page - 1) * per_page
        n = max(0, min(per_page, total - start))
        return json_response(json_rows(n, offset=start))

    return ScriptedHandler(respond)


def test_iter_day_pages_until_short_page():
    handler = _paging(total=7, per_page=3)
    client, _ = make_client(handler, count_per_page=3)
    with client:
        pages = list(client.iter_day(DAY, 1))
    assert [p.page for p in pages] == [1, 2, 3]
    assert [len(p.records) for p in pages] == [3, 3, 1]
    assert [r["goodName"] for p in pages for r in p.records] == [f"품종{i}" for i in range(7)]
    assert [parse_qs(r.url.query.decode())["currentPage"][0] for r in handler.requests] == ["1", "2", "3"]


def test_iter_day_empty_day_yields_one_empty_page():
    handler = ScriptedHandler(json_response(EMPTY_DAY))
    client, _ = make_client(handler)
    with client:
        pages = list(client.iter_day(DAY, 4))
    assert len(pages) == 1 and pages[0].records == [] and pages[0].raw == EMPTY_DAY
    assert len(handler.requests) == 1


def test_iter_day_exact_multiple_reads_trailing_empty_page():
    handler = _paging(total=6, per_page=3)
    client, _ = make_client(handler, count_per_page=3)
    with client:
        pages = list(client.iter_day(DAY, 1))
    assert [len(p.records) for p in pages] == [3, 3, 0]


def test_iter_day_stops_when_server_ignores_paging():
    handler = ScriptedHandler(json_response(json_rows(3)))
    client, _ = make_client(handler, count_per_page=3, max_pages_per_day=4)
    with client, pytest.raises(SourceResponseInvalid, match="ignores currentPage"):
        list(client.iter_day(DAY, 1))
    assert len(handler.requests) == 4


def test_page_larger_than_count_per_page_is_invalid():
    handler = ScriptedHandler(json_response(json_rows(5)))
    client, _ = make_client(handler, count_per_page=3)
    with client, pytest.raises(SourceResponseInvalid, match="countPerPage"):
        client.fetch_page(DAY, 1, 1)


def test_operation_label_and_repr():
    assert f001_operation(DAY, 1) == OPERATION
    client, _ = make_client(ScriptedHandler(json_response(EMPTY_DAY)))
    with client:
        assert "MARKERKEY" not in repr(client)


def test_empty_key_is_auth_error():
    with pytest.raises(SourceAuthError, match="AT_FLOWER_SERVICE_KEY"):
        AtFlowerClient("")
