"""Helpers shared by the tests: a scripted HTTP handler, the key-leak assertion, the tables' state."""

from __future__ import annotations

import traceback
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine


class ScriptedHandler:
    """An httpx.MockTransport handler replaying a script of steps; the last step repeats.

    A step is an ``httpx.Response`` (returned), an exception instance (raised), an httpx exception
    class (raised with the request), or a callable taking the request and returning a response.
    ``requests`` records every request received, so tests can count attempts.
    """

    def __init__(self, *steps):
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, type) and issubclass(step, BaseException):
            raise step(f"failed {request.url}", request=request)
        if callable(step) and not isinstance(step, httpx.Response):
            return step(request)
        return step


def exception_texts(exc: BaseException) -> list[str]:
    """Every text an operator could see of ``exc``: str, repr, args of its whole chain, traceback."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), *map(str, current.args)]
        current = current.__cause__ or current.__context__
    texts.append("".join(traceback.format_exception(exc)))
    return texts


def assert_no_key(exc: BaseException, caplog: pytest.LogCaptureFixture, *markers: str) -> None:
    """No form of the service key (default marker ``MARKERKEY``) in the exception or the logs."""
    for marker in markers or ("MARKERKEY",):
        for text in exception_texts(exc):
            assert marker not in text
        for record in caplog.records:
            assert marker not in record.getMessage()


RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
RECORDED_AED_XML = RECORDED / "aed" / "getEgytAedManageInfoInqire_Q0-seoul_Q1-jongno_rows5_2026-05-16.xml"


def synthetic_aed_page(records: int) -> bytes:
    """A getAedFullDown-style XML page of ``records`` copies of the recorded page's first item."""
    raw = RECORDED_AED_XML.read_bytes()
    one = raw[raw.index(b"<item>") : raw.index(b"</item>") + len(b"</item>")]
    return (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><response><header><resultCode>00</resultCode>'
        b"<resultMsg>NORMAL SERVICE.</resultMsg></header><body><items>"
        + one * records
        + f"</items><numOfRows>{records}</numOfRows><pageNo>1</pageNo>"
        f"<totalCount>{records}</totalCount></body></response>".encode()
    )


#: The flower source serving one row twice: a copy of a 난 (group 3) row of ``public_bidding_flowers``.
DUPLICATE_A_SERVED_FLOWER_ROW = (
    "INSERT INTO public_bidding_flowers (sale_date, flower_gubn, sale_date_raw, flower_gubn_raw, pum_name, "
    "good_name, lv_nm, max_amt, min_amt, avg_amt, tot_amt, tot_qty, page, row_in_page, fetched_at, "
    "archive_ref) SELECT sale_date, flower_gubn, sale_date_raw, flower_gubn_raw, pum_name, good_name, lv_nm, "
    "max_amt, min_amt, avg_amt, tot_amt, tot_qty, page, 9999, fetched_at, archive_ref "
    "FROM public_bidding_flowers WHERE flower_gubn = 3 AND row_in_page = 1"
)


#: The tables that hold synced data (not the run log): a failed run must leave them as they were.
AED_TABLES = ("aed_data", "aed_data_history", "aed_snapshots")
FLOWER_TABLES = ("public_bidding_flowers", "flower_types", "flowers", "bidding_flowers")
DATA_TABLES = (*AED_TABLES, *FLOWER_TABLES, "rejected_records")


#: The platform's tables: the migrations create at least these (the warehouse and CLI db upgrade tests).
PLATFORM_TABLES = {
    "aed_data",
    "aed_data_history",
    "health_centers",
    "public_bidding_flowers",
    "flower_types",
    "flowers",
    "bidding_flowers",
    "rejected_records",
    "sync_runs",
}


def table_state(engine: Engine, tables: tuple[str, ...] = DATA_TABLES) -> dict[str, tuple[str, int]]:
    """Every row of ``tables`` as text, digested: table → (md5 of the sorted rows, row count).

    Two states are equal only if every row of every table is; the count is for the reports."""
    with engine.connect() as conn:
        return {
            table: tuple(
                conn.execute(
                    sa.text(
                        f"SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), ''), count(*) FROM {table} t"
                    )
                ).one()
            )
            for table in tables
        }
