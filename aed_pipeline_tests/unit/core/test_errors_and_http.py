"""Tests for the shared error hierarchy and HTTP helpers (URL encoding, redaction, retries)."""

from __future__ import annotations

import logging
import pickle
from urllib.parse import parse_qs

import httpx
import pytest

from aed_pipeline.lib.core.errors import (
    SOURCE_AT_FLOWER,
    SOURCE_EGEN,
    SourceAuthError,
    SourceError,
    SourceQuotaExceeded,
    SourceRateLimited,
    SourceRequestInvalid,
    SourceResponseInvalid,
    SourceUnavailable,
)
from aed_pipeline.lib.core.http import (
    DEFAULT_USER_AGENT,
    HttpOptions,
    RetryPolicy,
    SourceHttp,
    build_url,
    normalize_service_key,
    redact,
    redact_url,
    secret_variants,
)
from aed_pipeline_tests.support.helpers import ScriptedHandler, assert_no_key

DECODED = "MARKERKEY+abc/def=="
ENCODED = "MARKERKEY%2Babc%2Fdef%3D%3D"


def _http(handler, retry: RetryPolicy | None = None) -> tuple[SourceHttp, list[float]]:
    delays: list[float] = []
    http = SourceHttp(
        source=SOURCE_EGEN,
        secrets=[ENCODED],
        http=HttpOptions(transport=httpx.MockTransport(handler), sleep=delays.append, rng=lambda: 1.0, retry=retry),
    )
    return http, delays


def _ok(response: httpx.Response) -> str:
    return response.text


# --------------------------------------------------------------------------- errors


def test_transient_flags():
    assert SourceError.transient is False
    assert SourceAuthError.transient is False
    assert SourceQuotaExceeded.transient is False
    assert SourceRequestInvalid.transient is False
    assert SourceResponseInvalid.transient is False
    assert SourceUnavailable.transient is True
    assert SourceRateLimited.transient is True
    assert issubclass(SourceRateLimited, SourceUnavailable)


def test_message_names_source_operation_page_code_and_attempts():
    exc = SourceUnavailable(
        "HTTP 502", source=SOURCE_AT_FLOWER, operation="f001 flowerGubn=1 baseDate=2026-11-23", page=2, code=502
    )
    text = str(exc)
    assert "aT flower" in text and "f001 flowerGubn=1 baseDate=2026-11-23" in text
    assert "page 2" in text and "code 502" in text
    exc.with_attempts(5)
    assert "gave up after 5 attempts" in str(exc)
    assert exc.attempts == 5
    none = SourceResponseInvalid("bad", source=SOURCE_EGEN, operation="getAedFullDown")
    assert "page -" in str(none) and "code n/a" in str(none)


def test_errors_pickle_roundtrip():
    exc = SourceQuotaExceeded("daily", source=SOURCE_EGEN, operation="getAedFullDown", page=3, code="22")
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is SourceQuotaExceeded
    assert (clone.source, clone.operation, clone.page, clone.code) == (SOURCE_EGEN, "getAedFullDown", 3, "22")
    assert str(clone) == str(exc)


# --------------------------------------------------------------------------- keys & URLs


@pytest.mark.parametrize("given", [ENCODED, DECODED, f"  {ENCODED}\n", ENCODED.replace("%2B", "%2b")])
def test_normalize_service_key(given):
    assert normalize_service_key(given) == DECODED


def test_normalize_decodes_only_once():
    # "%252B" is a double-encoded "+": one decode gives "%2B", not "+".
    assert normalize_service_key("abc%252Bdef") == "abc%2Bdef"
    assert normalize_service_key(DECODED) == DECODED
    assert normalize_service_key("0123456789abcdef0123456789ABCDEF") == "0123456789abcdef0123456789ABCDEF"


def test_build_url_encodes_once_and_httpx_keeps_it():
    url = build_url("https://example.test/svc/op", [("serviceKey", DECODED), ("pageNo", 1), ("Q0", "서울특별시")])
    assert url == (
        "https://example.test/svc/op?serviceKey=MARKERKEY%2Babc%2Fdef%3D%3D&pageNo=1"
        "&Q0=%EC%84%9C%EC%9A%B8%ED%8A%B9%EB%B3%84%EC%8B%9C"
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok")

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.get(url)
    raw_query = seen[0].url.query.decode()
    assert "serviceKey=MARKERKEY%2Babc%2Fdef%3D%3D&" in raw_query  # not %252B, not a raw '+'
    assert parse_qs(raw_query)["serviceKey"] == [DECODED]
    assert parse_qs(raw_query)["Q0"] == ["서울특별시"]


def test_redact_url_any_case():
    for name in ("serviceKey", "ServiceKey", "SERVICEKEY", "servicekey", "service_key"):
        url = f"https://x.test/a?{name}={ENCODED}&pageNo=1"
        assert redact_url(url) == f"https://x.test/a?{name}=***&pageNo=1"
    assert redact_url(httpx.URL(f"https://x.test/a?pageNo=1&serviceKey={ENCODED}")).endswith("serviceKey=***")


def test_redact_removes_all_forms():
    text = f"a {DECODED} b {ENCODED} c {ENCODED.lower()} d MARKERKEY+abc%2Fdef%3D%3D e"
    cleaned = redact(text, [ENCODED])
    assert "MARKERKEY" not in cleaned.replace("MARKERKEY+abc%2Fdef%3D%3D", "")
    assert DECODED not in cleaned and ENCODED not in cleaned
    assert secret_variants("") == set()


# --------------------------------------------------------------------------- retry policy


def test_retry_policy_backoff_and_cap():
    policy = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=5.0)
    assert [policy.backoff_ceiling(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.delay(3, rng=lambda: 0.5) == 2.0
    assert policy.delay(3, rng=lambda: 0.0) == 0.0
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


# --------------------------------------------------------------------------- SourceHttp


def test_user_agent_is_browser_like():
    rec = ScriptedHandler(httpx.Response(200, text="ok"))
    http, _ = _http(rec)
    assert http.get("https://x.test/op", operation="op", page=1, interpret=_ok) == "ok"
    ua = rec.requests[0].headers["user-agent"]
    assert ua == DEFAULT_USER_AGENT and "python-httpx" not in ua and ua.startswith("Mozilla/5.0")


def test_5xx_then_success_retries_with_backoff():
    rec = ScriptedHandler(
        httpx.Response(502, text="Error forwarding request to backend server\n"),
        httpx.Response(503, text="unavailable"),
        httpx.Response(200, text="fine"),
    )
    http, delays = _http(rec)
    assert http.get("https://x.test/op", operation="op", page=1, interpret=_ok) == "fine"
    assert len(rec.requests) == 3
    assert delays == [1.0, 2.0]


def test_retries_exhausted_raise_unavailable_with_attempt_count(caplog):
    caplog.set_level(logging.DEBUG)
    rec = ScriptedHandler(httpx.Response(503, text="down"))
    http, delays = _http(rec, retry=RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=30.0))
    url = build_url("https://x.test/op", [("serviceKey", DECODED), ("pageNo", 4)])
    with pytest.raises(SourceUnavailable) as info:
        http.get(url, operation="getAedFullDown", page=4, interpret=_ok)
    assert len(rec.requests) == 5
    assert delays == [1.0, 2.0, 4.0, 8.0]
    exc = info.value
    assert exc.attempts == 5 and exc.code == 503
    assert "gave up after 5 attempts" in str(exc)
    retry_logs = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retry_logs) == 4
    assert "attempt 1/5" in retry_logs[0].getMessage() and "serviceKey=***" in retry_logs[0].getMessage()
    assert_no_key(exc, caplog)


def test_429_is_rate_limited_and_retried():
    rec = ScriptedHandler(httpx.Response(429, text="slow down"), httpx.Response(200, text="ok"))
    http, delays = _http(rec)
    assert http.get("https://x.test/op", operation="op", page=1, interpret=_ok) == "ok"
    assert len(rec.requests) == 2 and delays == [1.0]
    rec = ScriptedHandler(httpx.Response(429, text="slow down"))
    http, _ = _http(rec, retry=RetryPolicy(max_attempts=2))
    with pytest.raises(SourceRateLimited):
        http.get("https://x.test/op", operation="op", page=1, interpret=_ok)
    assert len(rec.requests) == 2


@pytest.mark.parametrize(
    "exc_type",
    [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError],
)
def test_transport_errors_are_retried_and_not_chained(exc_type, caplog):
    caplog.set_level(logging.DEBUG)
    url = build_url("https://x.test/op", [("serviceKey", DECODED)])
    rec = ScriptedHandler(exc_type, httpx.Response(200, text="ok"))
    http, delays = _http(rec)
    assert http.get(url, operation="op", page=1, interpret=_ok) == "ok"
    assert len(rec.requests) == 2 and delays == [1.0]

    rec = ScriptedHandler(exc_type)
    http, delays = _http(rec, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(SourceUnavailable) as info:
        http.get(url, operation="op", page=1, interpret=_ok)
    exc = info.value
    assert len(rec.requests) == 3 and delays == [1.0, 2.0]
    assert exc_type.__name__ in str(exc)
    assert exc.__cause__ is None and exc.__context__ is None
    assert_no_key(exc, caplog)


def test_permanent_error_from_interpret_is_not_retried():
    rec = ScriptedHandler(httpx.Response(200, text="x"))
    http, delays = _http(rec)

    def interpret(response):
        raise SourceAuthError("bad key", source=SOURCE_EGEN, operation="op", page=1, code="30")

    with pytest.raises(SourceAuthError):
        http.get("https://x.test/op", operation="op", page=1, interpret=interpret)
    assert len(rec.requests) == 1 and delays == []


def test_httpx_logger_is_redacted(caplog):
    caplog.set_level(logging.DEBUG)
    rec = ScriptedHandler(httpx.Response(200, text="ok"))
    http, _ = _http(rec)
    url = build_url("https://x.test/op", [("serviceKey", DECODED)])
    http.get(url, operation="op", page=1, interpret=_ok)
    httpx_records = [r for r in caplog.records if r.name == "httpx"]
    assert httpx_records, "httpx logs every request at INFO; the filter must see it"
    assert all("MARKERKEY" not in r.getMessage() for r in caplog.records)
    assert any("serviceKey=***" in r.getMessage() for r in httpx_records)


def test_external_client_is_not_closed():
    rec = ScriptedHandler(httpx.Response(200, text="ok"))
    client = httpx.Client(transport=httpx.MockTransport(rec))
    http = SourceHttp(source=SOURCE_EGEN, secrets=[ENCODED], http=HttpOptions(client=client, sleep=lambda s: None))
    assert http.get("https://x.test/op", operation="op", page=None, interpret=_ok) == "ok"
    assert rec.requests[0].headers["user-agent"] == DEFAULT_USER_AGENT
    http.close()
    assert not client.is_closed
    client.close()
