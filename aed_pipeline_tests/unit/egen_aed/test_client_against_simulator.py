"""The e-gen client against the simulator served over real sockets on localhost.

Every success shape and every error shape of the foundation issue: each error raises the right
typed exception, retries happen only where the failure is transient (counted on the server's side),
and the service key appears in no message and no log line. (The aT client's twin is
``unit/at_flower/test_client_against_simulator.py``.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import date
from urllib.parse import quote

import pytest

from aed_pipeline.lib.core.errors import (
    SourceAuthError,
    SourceError,
    SourceQuotaExceeded,
    SourceRequestInvalid,
    SourceResponseInvalid,
    SourceUnavailable,
)
from aed_pipeline.lib.core.http import HttpOptions, RetryPolicy
from aed_pipeline.lib.egen_aed.client import EgenClient
from aed_pipeline.simulator import Simulator, SimulatorServer
from aed_pipeline_tests.support.client_support import (
    AT_KEY,
    EGEN_KEY,
    FAST_HTTP,
    FAST_RETRIES,
    MONDAY,
    clean_simulator,
    requests_to,
    server,
    sim,
)
from aed_pipeline_tests.support.helpers import assert_no_key

EGEN_KEY_ENCODED = quote(EGEN_KEY, safe="")


def egen(server: SimulatorServer, key: str = EGEN_KEY, http: HttpOptions = FAST_HTTP, **options) -> EgenClient:
    options.setdefault("num_of_rows", 1000)
    return EgenClient(key, server.egen_base_url, http=http, **options)


# ------------------------------------------------------------------------- e-gen: successes


def test_full_download_in_xml_returns_every_device_once(sim: Simulator, server: SimulatorServer) -> None:
    with egen(server) as client:
        pages = list(client.iter_full_down())
    total = pages[0].total_count
    records = [record for page in pages for record in page.records]
    assert len(pages) == math.ceil(total / 1000) == requests_to(sim, "egen")
    assert len(records) == total
    assert len({record["serialSeq"] for record in records}) == total
    assert all(page.raw.startswith(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>') for page in pages)


def test_json_download_yields_the_same_strings_as_xml(server: SimulatorServer) -> None:
    with egen(server) as client:
        xml_records = [r for page in client.iter_full_down() for r in page.records]
    with egen(server, response_type="json") as client:
        json_records = [r for page in client.iter_full_down() for r in page.records]
    assert json_records == xml_records
    # Values the provider auto-types as JSON numbers come back as the XML strings.
    assert any(r.get("monEndTme") == "2400" for r in json_records)
    assert any(r.get("monSttTme") == "0900" for r in json_records)


def test_json_single_item_and_empty_pages(server: SimulatorServer) -> None:
    with egen(server, response_type="json") as client:
        total = client.fetch_full_down_page(1).total_count
    with egen(server, response_type="json", num_of_rows=total - 1) as client:
        last = client.fetch_full_down_page(2)
        beyond = client.fetch_full_down_page(3)
    assert b'"item":{' in last.raw and len(last.records) == 1
    assert b'"items":""' in beyond.raw and beyond.records == [] and beyond.total_count == total


@pytest.mark.parametrize("key", [EGEN_KEY, EGEN_KEY_ENCODED], ids=["decoding-key", "encoding-key"])
def test_either_key_form_is_accepted(server: SimulatorServer, key: str) -> None:
    with egen(server, key=key) as client:
        assert client.fetch_full_down_page(1).records


def test_resume_fetches_only_the_missing_pages(sim: Simulator, server: SimulatorServer) -> None:
    with egen(server) as client:
        pages = list(client.iter_full_down(pages=[2, 3]))
    assert [page.page_no for page in pages] == [2, 3]
    assert requests_to(sim, "egen") == 2


# ------------------------------------------------------------------------- e-gen: errors


def _egen_error(server: SimulatorServer, caplog: pytest.LogCaptureFixture, **options) -> SourceError:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SourceError) as raised, egen(server, **options) as client:
        client.fetch_full_down_page(2)
    assert_no_key(raised.value, caplog, EGEN_KEY, EGEN_KEY_ENCODED)
    assert "getAedFullDown" in str(raised.value) and "page 2" in str(raised.value)
    return raised.value


@pytest.mark.parametrize(
    "faults",
    [
        {"bad_key": True},
        {"bad_key": True, "envelope_without_declaration": True},
        {"bad_key": True, "envelope_json": True},
        {"egen_provider_error_count": 1},
    ],
    ids=["xml-envelope", "xml-envelope-no-declaration", "json-envelope", "provider-envelope-99"],
)
def test_unregistered_key_fails_at_once(sim, server, caplog, faults: dict) -> None:
    for name, value in faults.items():
        setattr(sim.faults, name, value)
    error = _egen_error(server, caplog)
    assert isinstance(error, SourceAuthError)
    assert "EGEN_SERVICE_KEY" in str(error)
    assert requests_to(sim, "egen") == 1


def test_a_double_encoded_key_is_rejected_as_unregistered(sim, server, caplog) -> None:
    error = _egen_error(server, caplog, key=quote(EGEN_KEY_ENCODED, safe=""))
    assert isinstance(error, SourceAuthError)


def test_daily_quota_fails_at_once_and_says_when_it_resets(sim, server, caplog) -> None:
    sim.faults.egen_daily_quota = 0
    error = _egen_error(server, caplog)
    assert isinstance(error, SourceQuotaExceeded)
    assert "midnight KST" in str(error) and "22" in str(error)
    assert requests_to(sim, "egen") == 1


def test_quota_exhausted_mid_snapshot_keeps_the_pages_fetched(sim, server) -> None:
    sim.faults.egen_daily_quota = 2
    fetched = []
    with pytest.raises(SourceQuotaExceeded), egen(server) as client:
        for page in client.iter_full_down():
            fetched.append(page.page_no)
    assert fetched == [1, 2]


@pytest.mark.parametrize(
    "faults",
    [
        {"http_error_status": 503, "http_error_count": 2},
        {"http_error_status": 502, "http_error_count": 2},
        {"http_error_status": 429, "http_error_count": 2},
        {"egen_per_second_count": 2},
        {"timeout_count": 1, "timeout_seconds": 2.0},
        {"reset_count": 2},
    ],
    ids=["503-burst", "502-burst", "429-burst", "per-second-quota-23", "timeout", "connection-reset"],
)
def test_transient_failures_are_retried_until_success(sim, server, faults: dict) -> None:
    for name, value in faults.items():
        setattr(sim.faults, name, value)
    failures = max(
        faults.get(name, 0) for name in ("http_error_count", "egen_per_second_count", "timeout_count", "reset_count")
    )
    with egen(server, http=HttpOptions(retry=FAST_RETRIES, read_timeout=0.5)) as client:
        page = client.fetch_full_down_page(1)
    assert page.records
    assert requests_to(sim, "egen") == failures + 1


def test_a_persistent_outage_gives_up_after_the_retry_budget(sim, server, caplog) -> None:
    sim.faults.http_error_status = 503
    sim.faults.http_error_count = -1
    error = _egen_error(server, caplog)
    assert isinstance(error, SourceUnavailable) and error.transient
    assert requests_to(sim, "egen") == FAST_RETRIES.max_attempts


@pytest.mark.parametrize("fault", ["truncate_count", "malformed_count"])
def test_a_broken_page_is_a_clear_invalid_response(sim, server, caplog, fault: str) -> None:
    setattr(sim.faults, fault, 1)
    error = _egen_error(server, caplog)
    assert isinstance(error, SourceResponseInvalid)
    assert requests_to(sim, "egen") == 1


def test_a_success_page_is_read_after_its_download_and_an_error_envelope_inside_it(sim, server) -> None:
    # The fetch parses a page while the next downloads; only a success envelope may wait, since
    # reading it cannot call for a retry. An error envelope is read in the retry loop, and retried
    # when transient (code 23, the per-second quota).
    with egen(server) as client:
        served = client.download_full_down_page(1)
        assert served.page is None
        assert client.read_full_down_page(served).records == client.fetch_full_down_page(1).records
    sim.faults.egen_per_second_count = 1
    before = requests_to(sim, "egen")
    with egen(server, http=HttpOptions(retry=FAST_RETRIES)) as client:
        assert client.download_full_down_page(1).page is None
    assert requests_to(sim, "egen") == before + 2
    sim.faults.egen_provider_error_count = 1
    with pytest.raises(SourceAuthError), egen(server) as client:
        client.download_full_down_page(1)


def test_a_default_user_agent_is_blocked_by_the_gateway(sim, server, caplog) -> None:
    error = _egen_error(server, caplog, http=HttpOptions(retry=FAST_RETRIES, user_agent="python-httpx/0.28.1"))
    assert isinstance(error, SourceRequestInvalid)
    assert "Request Blocked" in str(error) or "blocked" in str(error).lower()
    assert requests_to(sim, "egen") == 1
