"""The aT flower client against the simulator served over real sockets on localhost.

Every success shape and every error shape of the foundation issue: each error raises the right
typed exception, retries happen only where the failure is transient (counted on the server's side),
and the service key appears in no message and no log line. (The e-gen client's twin is
``unit/egen_aed/test_client_against_simulator.py``.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date

import pytest

from aed_pipeline.lib.at_flower.client import AtFlowerClient
from aed_pipeline.lib.core.errors import (
    SourceAuthError,
    SourceError,
    SourceQuotaExceeded,
    SourceRequestInvalid,
    SourceResponseInvalid,
)
from aed_pipeline.lib.core.http import HttpOptions, RetryPolicy
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

SUNDAY = date(2026, 11, 22)
# Auction results settle after the day: two days later the simulator serves the final rows.
SETTLED = date(2026, 11, 25)


def at(server: SimulatorServer, key: str = AT_KEY, http: HttpOptions = FAST_HTTP, **options) -> AtFlowerClient:
    return AtFlowerClient(key, server.at_base_url, http=http, **options)


# ------------------------------------------------------------------------- successes


def test_a_monday_of_cut_flowers_is_read_page_by_page(sim, server) -> None:
    sim.today = SETTLED
    with at(server, count_per_page=300) as client:
        pages = list(client.iter_day(MONDAY, 1))
    records = [r for page in pages for r in page.records]
    assert len(records) >= 800
    assert all(len(page.records) == 300 for page in pages[:-1]) and len(pages[-1].records) < 300
    assert {r["saleDate"] for r in records} == {MONDAY.isoformat()}
    assert {r["flowerGubn"] for r in records} == {"절화"}
    assert all(isinstance(value, str) for r in records for value in r.values())


def test_a_sunday_is_one_empty_page(sim, server) -> None:
    with at(server) as client:
        pages = list(client.iter_day(SUNDAY, 1))
    assert len(pages) == 1 and pages[0].records == []
    assert requests_to(sim, "at") == 1


def test_xml_gives_the_same_rows_as_json(sim, server) -> None:
    sim.today = SETTLED
    with at(server) as client:
        json_rows = [r for page in client.iter_day(MONDAY, 1) for r in page.records]
    with at(server, data_type="xml") as client:
        xml_rows = [r for page in client.iter_day(MONDAY, 1) for r in page.records]
    assert xml_rows == json_rows and json_rows


# ------------------------------------------------------------------------- errors


def _at_error(server: SimulatorServer, caplog: pytest.LogCaptureFixture, key: str = AT_KEY) -> SourceError:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SourceError) as raised, at(server, key=key) as client:
        list(client.iter_day(MONDAY, 1))
    assert_no_key(raised.value, caplog, key)
    assert "f001" in str(raised.value)
    return raised.value


@pytest.mark.parametrize(
    ("result_code", "expected"),
    [
        (1, SourceAuthError),
        (2, SourceAuthError),
        (3, SourceAuthError),
        (4, SourceQuotaExceeded),
        (5, SourceRequestInvalid),
    ],
)
def test_each_result_code_fails_at_once_with_its_own_error(sim, server, caplog, result_code: int, expected) -> None:
    sim.faults.at_result_code = result_code
    error = _at_error(server, caplog)
    assert type(error) is expected
    assert requests_to(sim, "at") == 1


def test_an_expired_key_is_a_key_error(sim, server, caplog) -> None:
    sim.faults.at_expired_keys = {AT_KEY}
    error = _at_error(server, caplog)
    assert isinstance(error, SourceAuthError) and "AT_FLOWER_SERVICE_KEY" in str(error)


def test_an_unknown_key_gets_a_non_json_body_and_a_clear_error(sim, server, caplog) -> None:
    error = _at_error(server, caplog, key="UNKNOWNKEY00000000000000000000000")
    assert isinstance(error, SourceResponseInvalid)
    assert "service key" in str(error).lower()
    assert requests_to(sim, "at") == 1


def test_the_daily_quota_is_not_retried(sim, server, caplog) -> None:
    sim.faults.at_daily_quota = 0
    error = _at_error(server, caplog)
    assert isinstance(error, SourceQuotaExceeded) and "midnight KST" in str(error)
    assert requests_to(sim, "at") == 1


def test_a_5xx_burst_on_the_at_api_is_retried(sim, server) -> None:
    sim.today = SETTLED
    sim.faults.api = "at"
    sim.faults.http_error_count = 2
    with at(server) as client:
        rows = [r for page in client.iter_day(MONDAY, 1) for r in page.records]
    assert rows
    assert requests_to(sim, "at") == 2 + len(rows) // 1000 + 1
