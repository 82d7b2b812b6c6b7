"""The simulator core: one ``Simulator.handle(method, url, headers)`` shared by both transports.

It stands for the outside world (data.go.kr gateway + e-gen AED service, and flower.at.or.kr) and
shares no code with the project's clients or parsers.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import numpy as np

from . import _recorded
from .aed_data import GUGUNS, ITEM_FIELDS, SEJONG_INDEX, SIDO_NAMES, get_registry
from .flower_data import GUBN_TEXT, served_rows

KST = dt.timezone(dt.timedelta(hours=9))
EGEN_PREFIX = "/B552657/AEDInfoInqireService"
AT_PATH = "/api/returnData.api"
SAMPLE_DATE = dt.date(2018, 8, 16)

AT_MESSAGES = {
    0: "OK",
    1: "서비스 키 오류입니다.",
    2: "기간을 다시 설정하여 주십시오.",
    3: "미승인된 공공데이터입니다. 관리자에게 문의하십시오.",
    4: "금일 호출 건수가 만료 되었습니다.",
    5: "파라미터 입력값이 잘못되었습니다.(kind|serviceKey|dataType)",
}
GATEWAY_CODES = {
    30: "SERVICE_KEY_IS_NOT_REGISTERED_ERROR",
    22: "LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR",
    23: "LIMITED_NUMBER_OF_SERVICE_REQUESTS_PER_SECOND_EXCEEDS_ERROR",
    12: "NO_OPENAPI_SERVICE_ERROR",
}
_DEFAULT_UA = re.compile(r"^(python-httpx|python-requests|curl|wget)", re.IGNORECASE)
_AT_UNKNOWN_KEY_HTML = (
    '<!DOCTYPE html>\n<html lang="ko">\n<head>\n<meta charset="UTF-8">\n<title>화훼유통정보시스템</title>\n'
    '</head>\n<body>\n<div class="error">\n<h2>요청하신 페이지를 처리할 수 없습니다.</h2>\n'
    "<p>잠시 후 다시 이용해 주십시오.</p>\n</div>\n</body>\n</html>\n"
).encode()


@dataclass
class SimResponse:
    """A response, or an ``action`` the transport must perform instead (``timeout`` / ``reset``)."""

    status: int
    headers: dict[str, str]
    body: bytes
    action: str | None = None  # None | "timeout" | "reset"
    delay: float = 0.0  # seconds the real server sleeps before a timeout/reset action
    is_data: bool = False  # a data page (truncate/malformed faults apply to it)


class LoggedRequest(NamedTuple):
    api: str  # "egen" | "at" | "unknown"
    path: str
    params: dict[str, str]  # first value of every query parameter, key parameters removed


@dataclass
class Faults:
    """Mutable fault configuration. Set attributes on ``sim.faults``; ``sim.reset_faults()`` clears them.

    Scope: ``api`` ("egen", "at" or "both") and ``pages`` (None = all pages; else a set of page
    numbers: e-gen ``pageNo``, aT ``currentPage``) restrict every fault below. Counters named
    ``*_count`` mean "the next N matching requests" (decremented as they fire); -1 = every
    matching request.
    """

    api: str = "both"
    pages: set[int] | None = None
    # transport-level
    latency: float = 0.0  # seconds added before answering
    http_error_status: int = 503  # status of the error burst (429, 500, 502, 503, 504 ...)
    http_error_count: int = 0
    http_error_body: bytes = b""  # empty or short text body
    timeout_count: int = 0
    timeout_seconds: float = 30.0  # the real server sleeps this long, then closes without answering
    reset_count: int = 0  # close the connection without answering
    truncate_count: int = 0  # success body cut in half
    malformed_count: int = 0  # success body replaced by invalid XML/JSON garbage
    # e-gen / data.go.kr gateway
    bad_key: bool = False  # every e-gen request answered as SERVICE_KEY_IS_NOT_REGISTERED (30)
    egen_daily_quota: int | None = None  # after N successful calls today: code 22
    egen_per_second_count: int = 0  # code 23 for the next N requests
    egen_provider_error_count: int = 0  # <response><header><resultCode>99 ... for the next N
    egen_provider_error_code: str = "99"
    egen_provider_error_msg: str = "SERVICE KEY IS NOT REGISTERED ERROR."
    envelope_json: bool = False  # OpenAPI_ServiceResponse rendered as JSON instead of XML
    envelope_without_declaration: bool = False  # XML envelope without <?xml ...?>
    # None | "null_coordinates" | "half_missing" | "duplicate_serials" (every 5th record repeats the
    # previous one's serialSeq) | "short_page" (a page with only the first half of its items,
    # well-formed; scope it with ``pages``) | "inflated_total" (totalCount 2 % above the records)
    # | "bad_values" (the first three records of a page: coordinate "37.5x", time "2561", empty serial)
    snapshot: str | None = None
    # aT
    at_result_code: int | None = None  # force resultCd 1..5 ...
    at_result_code_count: int = -1  # ... for the next N requests (-1 = while set)
    at_daily_quota: int | None = None  # after N successful calls today: resultCd 4
    at_expired_keys: set[str] = field(default_factory=set)  # resultCd 2
    at_unapproved_keys: set[str] = field(default_factory=set)  # resultCd 3
    at_bad_rows: bool = False  # in each data page: row 1 gets minAmt > maxAmt, row 2 a non-numeric totAmt


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_XML_TAGS = tuple((k, f"<{k}>", f"</{k}>") for k in ITEM_FIELDS)
_NUM = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


@functools.lru_cache(maxsize=1 << 16)
def _json_scalar(v: str) -> str:
    """Auto-typing of the data.go.kr XML->JSON converter: a number iff it parses as one w/o leading zero."""
    if _NUM.fullmatch(v):
        return v
    return json.dumps(v, ensure_ascii=False)


def _first(qs: dict[str, list[str]], name: str) -> str | None:
    v = qs.get(name)
    return v[0] if v else None


def _int_param(v: str | None, default: int) -> int | None:
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        return None


class Simulator:
    """Offline stand-in for the e-gen AED API (via the data.go.kr gateway) and the aT f001 API.

    * ``seed`` and ``today`` fix the data: same seed + same date => byte-identical responses.
      ``sim.today`` may be reassigned at any time (tests move the clock). None = today in KST.
    * ``aed_count`` devices are active on 2026-01-01; the registry then evolves day by day.
    * ``egen_service_keys`` / ``at_service_keys``: accepted keys in DECODED form (None = any non-empty).
    * The flower data settles late: for sale date D the rows depend on ``today`` (D > today: none;
      D == today: ~60 % of the rows; D == today-1: all rows, a few with provisional prices;
      D <= today-2: final). Moving ``today`` forward therefore changes a past day's prices.
    """

    def __init__(
        self,
        seed: int = 20260101,
        today: dt.date | None = None,
        aed_count: int = 81464,
        egen_service_keys: set[str] | None = None,
        at_service_keys: set[str] | None = None,
    ):
        self.seed = seed
        self._today = today
        self.aed_count = aed_count
        self.egen_service_keys = egen_service_keys
        self.at_service_keys = at_service_keys
        self.faults = Faults()
        self.request_log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._egen_calls: dict[dt.date, int] = {}
        self._at_calls: dict[dt.date, int] = {}

    # ------------------------------------------------------------------ state
    @property
    def today(self) -> dt.date:
        return self._today if self._today is not None else dt.datetime.now(KST).date()

    @today.setter
    def today(self, value: dt.date | None) -> None:
        self._today = value

    def http_date(self) -> str:
        """The ``Date`` header of the simulated world: the current KST time of day on ``today``."""
        now = dt.datetime.now(KST)
        simulated = dt.datetime.combine(self.today, now.time(), tzinfo=KST)
        return formatdate(simulated.timestamp(), usegmt=True)

    def reset_faults(self) -> None:
        self.faults = Faults()

    def reset_counters(self) -> None:
        """Forget the request log and the daily call counters (quota)."""
        with self._lock:
            self.request_log.clear()
            self._egen_calls.clear()
            self._at_calls.clear()

    @property
    def registry(self):
        return get_registry(self.seed, self.aed_count)

    def calls_today(self, api: str) -> int:
        """Successful data calls counted against the daily quota on ``today``."""
        d = self._egen_calls if api == "egen" else self._at_calls
        return d.get(self.today, 0)

    # ------------------------------------------------------------------ fault helpers
    def _in_scope(self, api: str, page: int | None) -> bool:
        f = self.faults
        if f.api not in ("both", api):
            return False
        return not (f.pages is not None and page not in f.pages)

    def _take(self, name: str) -> bool:
        """Consume one unit of counter fault ``name`` if it is armed (caller checked the scope)."""
        with self._lock:
            n = getattr(self.faults, name)
            if n == 0:
                return False
            if n > 0:
                setattr(self.faults, name, n - 1)
            return True

    # ------------------------------------------------------------------ entry point
    def handle(self, method: str, url: str, headers: Mapping[str, str]) -> SimResponse:
        parts = urlsplit(url)
        path = parts.path
        qs = parse_qs(parts.query, keep_blank_values=True)
        hdrs = {k.lower(): v for k, v in headers.items()}
        if path.startswith(EGEN_PREFIX + "/"):
            api = "egen"
            page = _int_param(_first(qs, "pageNo"), 1)
        elif path == AT_PATH:
            api = "at"
            page = _int_param(_first(qs, "currentPage"), 1)
        else:
            api, page = "unknown", None
        logged = {k: v[0] for k, v in qs.items() if k.lower() != "servicekey"}
        with self._lock:
            self.request_log.append(LoggedRequest(api, path, logged))
        if api == "unknown":
            return SimResponse(404, {"Content-Type": "text/html"}, b"<html><body><h1>404 Not Found</h1></body></html>")

        scoped = self._in_scope(api, page)
        f = self.faults
        if scoped and f.latency > 0:
            time.sleep(f.latency)
        if scoped and self._take("timeout_count"):
            return SimResponse(0, {}, b"", action="timeout", delay=f.timeout_seconds)
        if scoped and self._take("reset_count"):
            return SimResponse(0, {}, b"", action="reset")
        if scoped and self._take("http_error_count"):
            return SimResponse(f.http_error_status, {"Content-Type": "text/plain; charset=utf-8"}, f.http_error_body)

        if api == "egen":
            resp = self._egen(path[len(EGEN_PREFIX) + 1 :], qs, hdrs, scoped)
        else:
            resp = self._at(qs, scoped)
        resp.headers.setdefault("Date", self.http_date())
        if resp.status == 200 and resp.is_data:
            if scoped and self._take("truncate_count"):
                resp.body = resp.body[: len(resp.body) // 2]
            elif scoped and self._take("malformed_count"):
                resp.body = (
                    b'{"response":{"header":{"resultCode":"00",\x00garbage<<'
                    if resp.headers.get("Content-Type", "").startswith("application/json")
                    else b'<?xml version="1.0" encoding="UTF-8"?><response><header><resultCode>00</resu\x00lt<<&garbage'
                )
        return resp

    # ------------------------------------------------------------------ e-gen
    def _envelope(self, code: int) -> SimResponse:
        msg = GATEWAY_CODES[code]
        if self.faults.envelope_json:
            body = json.dumps(
                {
                    "OpenAPI_ServiceResponse": {
                        "cmmMsgHeader": {
                            "errMsg": "SERVICE ERROR",
                            "returnAuthMsg": msg,
                            "returnReasonCode": f"{code:02d}",
                        }
                    }
                },
                separators=(",", ":"),
            ).encode()
            return SimResponse(200, {"Content-Type": "application/json;charset=UTF-8"}, body)
        decl = "" if self.faults.envelope_without_declaration else '<?xml version="1.0" encoding="UTF-8"?>\n'
        body = (
            f"{decl}<OpenAPI_ServiceResponse><cmmMsgHeader><errMsg>SERVICE ERROR</errMsg>"
            f"<returnAuthMsg>{msg}</returnAuthMsg><returnReasonCode>{code:02d}</returnReasonCode>"
            f"</cmmMsgHeader></OpenAPI_ServiceResponse>"
        ).encode()
        return SimResponse(200, {"Content-Type": "text/xml;charset=UTF-8"}, body)

    def _provider_error(self, code: str, msg: str, as_json: bool) -> SimResponse:
        if as_json:
            body = json.dumps(
                {"response": {"header": {"resultCode": code, "resultMsg": msg}}},
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
            return SimResponse(
                200, {"Content-Type": "application/json;charset=UTF-8", "Server": _recorded.EGEN_SERVER_HEADER}, body
            )
        body = (
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><response><header><resultCode>{code}'
            f"</resultCode><resultMsg>{_xml_escape(msg)}</resultMsg></header></response>"
        ).encode()
        return SimResponse(200, dict(_recorded.EGEN_SUCCESS_HEADERS), body)

    def _egen(self, op: str, qs: dict[str, list[str]], hdrs: dict[str, str], scoped: bool) -> SimResponse:
        ua = hdrs.get("user-agent", "")
        if not ua or _DEFAULT_UA.match(ua):
            return SimResponse(400, dict(_recorded.REQUEST_BLOCKED_400_HEADERS), _recorded.REQUEST_BLOCKED_400_BODY)
        if "ServiceKey" in qs and "serviceKey" not in qs:
            return SimResponse(502, dict(_recorded.FORWARDING_502_HEADERS), _recorded.FORWARDING_502_BODY)
        key = _first(qs, "serviceKey")
        f = self.faults
        if (
            not key
            or (self.egen_service_keys is not None and key not in self.egen_service_keys)
            or (scoped and f.bad_key)
        ):
            return self._envelope(30)
        if op not in ("getAedFullDown", "getEgytAedManageInfoInqire"):
            return self._envelope(12)
        today = self.today
        if scoped and f.egen_daily_quota is not None and self._egen_calls.get(today, 0) >= f.egen_daily_quota:
            return self._envelope(22)
        if scoped and self._take("egen_per_second_count"):
            return self._envelope(23)
        as_json = _first(qs, "_type") == "json"
        if scoped and self._take("egen_provider_error_count"):
            return self._provider_error(f.egen_provider_error_code, f.egen_provider_error_msg, as_json)
        page_no = _int_param(_first(qs, "pageNo"), 1)
        rows = _int_param(_first(qs, "numOfRows"), 10)
        if page_no is None or rows is None or page_no < 1 or rows < 1:
            return self._provider_error("10", "INVALID REQUEST PARAMETER ERROR.", as_json)
        with self._lock:
            self._egen_calls[today] = self._egen_calls.get(today, 0) + 1
        full_down = op == "getAedFullDown"
        body, ctype = self.render_aed_page(
            page_no,
            rows,
            as_json=as_json,
            full_down=full_down,
            q0=_first(qs, "Q0"),
            q1=_first(qs, "Q1"),
            snapshot=f.snapshot if scoped else None,
        )
        headers = dict(_recorded.EGEN_SUCCESS_HEADERS)
        headers["Content-Type"] = ctype
        resp = SimResponse(200, headers, body)
        resp.is_data = True
        return resp

    def aed_ids(
        self, *, full_down: bool = True, q0: str | None = None, q1: str | None = None, snapshot: str | None = None
    ):
        """Device ids served for today's snapshot (page order)."""
        reg = self.registry
        ids = reg.active_ids(self.today, snapshot)
        if not full_down:
            sido = reg.sido[ids]
            mask = sido != SEJONG_INDEX
            if q0:
                mask &= sido == (SIDO_NAMES.index(q0) if q0 in SIDO_NAMES else 255)
            if q1:
                gnames = [g[1] for g in GUGUNS]
                gidx = [k for k, n in enumerate(gnames) if n == q1]
                mask &= np.isin(reg.gugun[ids], gidx)
            ids = ids[mask]
        return ids

    def render_aed_page(
        self,
        page_no: int,
        rows: int,
        *,
        as_json: bool = False,
        full_down: bool = True,
        q0: str | None = None,
        q1: str | None = None,
        snapshot: str | None = None,
    ) -> tuple[bytes, str]:
        """Body and content type of one e-gen success page (no faults, no counting)."""
        reg = self.registry
        ids = self.aed_ids(full_down=full_down, q0=q0, q1=q1, snapshot=snapshot)
        total = len(ids)
        start = (page_no - 1) * rows
        page_ids = ids[start : start + rows] if start < total else ids[:0]
        recs = reg.records(
            page_ids, self.today.toordinal(), full_down=full_down, null_coordinates=snapshot == "null_coordinates"
        )
        if snapshot == "duplicate_serials":
            for n in range(1, len(recs)):
                if (start + n) % 5 == 0:
                    recs[n]["serialSeq"] = recs[n - 1]["serialSeq"]
        elif snapshot == "short_page":
            recs = recs[: len(recs) // 2]
        elif snapshot == "bad_values" and recs:
            # One record each with a non-numeric coordinate, an impossible time and an empty serial.
            recs[0]["wgs84Lat"] = "37.5x"
            if len(recs) > 1:
                recs[1]["monSttTme"] = "2561"
            if len(recs) > 2:
                recs[2]["serialSeq"] = ""
        elif snapshot == "inflated_total":
            total += max(1, total // 50)
        if as_json:
            items = []
            js = _json_scalar
            for n, rec in enumerate(recs, start + 1):
                rec["rnum"] = str(n)
                items.append(
                    "{" + ",".join([f'"{k}":{js(v)}' for k in ITEM_FIELDS if (v := rec.get(k)) is not None]) + "}"
                )
            if not items:
                items_s = '""'
            elif len(items) == 1:
                items_s = '{"item":' + items[0] + "}"
            else:
                items_s = '{"item":[' + ",".join(items) + "]}"
            body = (
                '{"response":{"header":{"resultCode":"00","resultMsg":"NORMAL SERVICE."},"body":{"items":'
                f'{items_s},"numOfRows":{rows},"pageNo":{page_no},"totalCount":{total}}}}}}}'
            )
            return body.encode(), "application/json;charset=UTF-8"
        parts = [
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><response><header><resultCode>00'
            "</resultCode><resultMsg>NORMAL SERVICE.</resultMsg></header><body><items>"
        ]
        esc = _xml_escape
        for n, rec in enumerate(recs, start + 1):
            rec["rnum"] = str(n)
            parts.append(
                "<item>"
                + "".join(
                    [
                        f"{o}{esc(v) if ('&' in v or '<' in v or '>' in v) else v}{c}"
                        for k, o, c in _XML_TAGS
                        if (v := rec.get(k)) is not None
                    ]
                )
                + "</item>"
            )
        parts.append(
            f"</items><numOfRows>{rows}</numOfRows><pageNo>{page_no}</pageNo>"
            f"<totalCount>{total}</totalCount></body></response>"
        )
        return "".join(parts).encode(), "application/xml"

    # ------------------------------------------------------------------ aT
    def _at_result(self, code: int, data_type: str | None) -> SimResponse:
        msg = AT_MESSAGES[code]
        if data_type == "json":
            body = (
                '{"response":{"resultCd":"%d","resultMsg":%s,"numOfRows":null,"items":null}}'  # noqa: UP031 (the body's own braces)
                % (code, json.dumps(msg, ensure_ascii=False))
            ).encode()
            return SimResponse(200, {"Content-Type": "application/json;charset=UTF-8"}, body)
        body = (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><response>'
            f"<resultCd>{code}</resultCd><resultMsg>{_xml_escape(msg)}</resultMsg></response>"
        ).encode()
        return SimResponse(200, {"Content-Type": "application/xml;charset=UTF-8"}, body)

    def _at(self, qs: dict[str, list[str]], scoped: bool) -> SimResponse:
        if not qs:
            return SimResponse(
                500,
                {"Content-Type": "text/html;charset=UTF-8"},
                b"<html><head><title>500 Internal Server Error</title></head><body>"
                b"<h1>HTTP Status 500 - java.lang.NullPointerException</h1></body></html>",
            )
        f = self.faults
        kind = _first(qs, "kind")
        key = _first(qs, "serviceKey")
        data_type = _first(qs, "dataType")
        if not kind or not key or not data_type or data_type.lower() not in ("json", "xml") or kind != "f001":
            return self._at_result(5, data_type if data_type in ("json", "xml") else None)
        if data_type not in ("json", "xml"):  # 'JSON': passes validation, no view renders it
            return SimResponse(200, {"Content-Type": "text/html;charset=UTF-8"}, b"")
        sample = key == "sample"
        if not sample:
            if (
                self.at_service_keys is not None
                and key not in self.at_service_keys
                and key not in f.at_expired_keys
                and key not in f.at_unapproved_keys
            ):
                return SimResponse(200, {"Content-Type": "text/html;charset=UTF-8"}, _AT_UNKNOWN_KEY_HTML)
            if key in f.at_expired_keys:
                return self._at_result(2, data_type)
            if key in f.at_unapproved_keys:
                return self._at_result(3, data_type)
        if scoped and f.at_result_code is not None and self._take("at_result_code_count"):
            return self._at_result(f.at_result_code, data_type)
        today = self.today
        if not sample and scoped and f.at_daily_quota is not None and self._at_calls.get(today, 0) >= f.at_daily_quota:
            return self._at_result(4, data_type)
        per_page = _int_param(_first(qs, "countPerPage"), 10)
        cur = _int_param(_first(qs, "currentPage"), 1)
        if per_page is None or cur is None:
            return self._at_result(5, data_type)
        if not sample:
            with self._lock:
                self._at_calls[today] = self._at_calls.get(today, 0) + 1
        rows = self.flower_rows(
            _first(qs, "baseDate") or "",
            _first(qs, "flowerGubn") or "",
            pum=_first(qs, "pumName"),
            good=_first(qs, "goodName"),
            sample=sample,
        )
        if per_page < 1 or cur < 1:
            page = []
        else:
            page = rows[(cur - 1) * per_page : cur * per_page]
        if scoped and f.at_bad_rows and len(page) >= 2:
            page = [list(x) for x in page]
            page[0][6] = page[0][5] + 1000  # minAmt above maxAmt
            page[1][8] = "N/A"  # totAmt not a number
        resp = self._render_flowers(page, data_type)
        resp.is_data = True
        return resp

    def flower_rows(
        self, base_date: str, gubn: str, *, pum: str | None = None, good: str | None = None, sample: bool = False
    ) -> list[tuple]:
        """All rows served today for (baseDate, flowerGubn) before paging."""
        if sample:
            day = SAMPLE_DATE
            today = max(self.today, SAMPLE_DATE + dt.timedelta(days=2))
        else:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", base_date):
                return []
            try:
                day = dt.date.fromisoformat(base_date)
            except ValueError:
                return []
            today = self.today
        if gubn not in ("1", "2", "3", "4"):
            return []
        rows = served_rows(self.seed, day, int(gubn), today)
        if pum:
            rows = [x for x in rows if pum in x[2]]
        if good:
            rows = [x for x in rows if good in x[3]]
        return rows

    @staticmethod
    def _render_flowers(page: list[tuple], data_type: str) -> SimResponse:
        names = (
            "saleDate",
            "flowerGubn",
            "pumName",
            "goodName",
            "lvNm",
            "maxAmt",
            "minAmt",
            "avgAmt",
            "totAmt",
            "totQty",
        )
        if data_type == "json":
            items = ",".join(
                "{" + ",".join(f'"{k}":{json.dumps(str(v), ensure_ascii=False)}' for k, v in zip(names, row)) + "}"
                for row in page
            )
            body = f'{{"response":{{"resultCd":"0","resultMsg":"OK","numOfRows":"{len(page)}","items":[{items}]}}}}'
            return SimResponse(200, {"Content-Type": "application/json;charset=UTF-8"}, body.encode())
        items = "".join(
            "<item>" + "".join(f"<{k}>{_xml_escape(str(v))}</{k}>" for k, v in zip(names, row)) + "</item>"
            for row in page
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><response><resultCd>0</resultCd>'
            f"<resultMsg>OK</resultMsg><numOfRows>{len(page)}</numOfRows>"
            + (f"<items>{items}</items>" if page else "<items/>")
            + "</response>"
        )
        return SimResponse(200, {"Content-Type": "application/xml;charset=UTF-8"}, body.encode())


__all__ = ["GUBN_TEXT", "Faults", "LoggedRequest", "SimResponse", "Simulator"]
