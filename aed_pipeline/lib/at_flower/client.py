"""Client and parser for the aT 화훼유통정보 open API, kind=f001 (daily flower auction results).

The pipeline stores, for every auction day and flower category (절화, 관엽, 난,
춘란), the aggregated prices of the aT 양재 flower market.  One call per day and
category normally returns the whole day (``countPerPage`` 1000); the client
still pages with ``currentPage`` until a short page, and archives every page.

Wire facts this module relies on (SPEC.md §2):

* ``baseDate`` must be ``YYYY-MM-DD`` (another format silently returns 0 rows)
  and ``dataType`` must be lowercase.
* JSON: ``{"response":{"resultCd":"0","resultMsg":"OK","numOfRows":"N","items":[…]}}``,
  all values strings; ``numOfRows`` counts the rows in *this* response; no
  totalCount.  An empty day is ``numOfRows "0"`` with ``items []``.
* ``resultCd`` 1–3: key problems, 4: daily quota, 5: bad parameter (sent as XML
  when ``dataType`` is missing).
* An *unknown* key makes the server swallow an exception and answer with a
  non-JSON body (HTML error page or empty body).
* The key is issued by flower.at.or.kr (32 hex chars), not by data.go.kr.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import httpx
from lxml import etree

from aed_pipeline.lib.core.errors import (
    SOURCE_AT_FLOWER,
    SourceAuthError,
    SourceError,
    SourceQuotaExceeded,
    SourceRequestInvalid,
    SourceResponseInvalid,
)
from aed_pipeline.lib.core.http import (
    HttpOptions,
    SourceClient,
    body_snippet,
    build_url,
)
from aed_pipeline.lib.core.wire import (
    first_significant_char,
    json_value_text,
    may_hold_lone_surrogates,
    refuse_doctype,
    safe_xml_parser,
    without_lone_surrogates,
)

__all__ = [
    "AT_FLOWER_BASE_URL",
    "FLOWER_GUBN_NAMES",
    "AtFlowerClient",
    "FlowerPage",
    "ParsedFlowerPage",
    "at_flower_error",
    "f001_operation",
    "parse_flower_response",
]

logger = logging.getLogger(__name__)

AT_FLOWER_BASE_URL = "https://flower.at.or.kr/api/returnData.api"
DataType = Literal["json", "xml"]

#: Request code → the text the API puts in the ``flowerGubn`` field of each row.
FLOWER_GUBN_NAMES = {1: "절화", 2: "관엽", 3: "난", 4: "춘란"}

_KEY_HINT = "check AT_FLOWER_SERVICE_KEY (the key issued by flower.at.or.kr, not a data.go.kr key)"
_UNKNOWN_KEY_HINT = (
    "the aT API answers an unknown service key this way (it swallows the failed key lookup "
    f"and renders no JSON), so {_KEY_HINT}; otherwise it is an upstream failure"
)


def f001_operation(sale_date: date, flower_gubn: int) -> str:
    """The operation label used in logs and errors: ``f001 flowerGubn=1 baseDate=2026-11-23``."""
    return f"f001 flowerGubn={flower_gubn} baseDate={sale_date.isoformat()}"


def at_flower_error(code: str, message: str, *, operation: str, page: int | None) -> SourceError:
    """Map a non-zero ``resultCd`` to a typed error."""
    ctx: dict[str, Any] = {"source": SOURCE_AT_FLOWER, "operation": operation, "page": page, "code": code}
    shown = f"resultCd {code} {message!r}" if message else f"resultCd {code}"
    if code == "1":
        return SourceAuthError(f"service key error ({shown}); {_KEY_HINT}", **ctx)
    if code == "2":
        return SourceAuthError(f"service key outside its validity period ({shown}); {_KEY_HINT}", **ctx)
    if code == "3":
        return SourceAuthError(f"service key not approved ({shown}); {_KEY_HINT}", **ctx)
    if code == "4":
        return SourceQuotaExceeded(
            f"daily call quota of the aT flower service key is exhausted ({shown}); the quota resets at midnight KST",
            **ctx,
        )
    if code == "5":
        return SourceRequestInvalid(f"invalid request parameter ({shown})", **ctx)
    return SourceResponseInvalid(f"unexpected result code ({shown})", **ctx)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ParsedFlowerPage:
    """Records of one f001 response body; ``num_of_rows`` is the server's row count
    (``None`` if absent)."""

    records: list[dict[str, str]]
    num_of_rows: int | None
    format: DataType = "json"


def _invalid(detail: str, operation: str, page: int | None, code: str | None = None) -> SourceResponseInvalid:
    return SourceResponseInvalid(detail, source=SOURCE_AT_FLOWER, operation=operation, page=page, code=code)


def _count(value: str | None, operation: str, page: int | None) -> int | None:
    if value is None or not value.strip():
        return None
    text = value.strip().replace(",", "")
    if not (text.isascii() and text.isdigit()):  # "²".isdigit() is True, but int("²") fails
        raise _invalid(f"numOfRows is not a number: {value[:40]!r}", operation, page, "0")
    return int(text)


def parse_flower_response(
    raw: bytes,
    *,
    data_type: str = "json",
    operation: str = "f001",
    page: int | None = None,
) -> ParsedFlowerPage:
    """Parse an f001 response body (JSON or XML) into string records.

    The body is sniffed, not trusted to be ``data_type``: resultCd 5 arrives as
    XML when dataType is missing.  A body that is neither (HTML error page,
    empty body) raises :class:`SourceResponseInvalid` explaining that this is how
    the server answers an unknown service key.
    """
    first = first_significant_char(raw)
    if first == "{":
        return _parse_json(raw, operation, page)
    if first == "<":
        head = raw[:512].lower()
        if b"<response" in head:
            return _parse_xml(raw, operation, page)
    what = "an empty body" if not raw.strip() else f"a non-{data_type.upper()} body: {body_snippet(raw, 100)}"
    raise _invalid(f"the aT API returned {what}; {_UNKNOWN_KEY_HINT}", operation, page)


def _finish(
    code: str | None,
    message: str,
    num_of_rows: str | None,
    items: list[dict[str, str]] | None,
    fmt: DataType,
    operation: str,
    page: int | None,
) -> ParsedFlowerPage:
    if code is None:
        raise _invalid("envelope without resultCd", operation, page)
    code = code.strip()
    if code != "0":
        raise at_flower_error(code, message, operation=operation, page=page)
    records = items or []
    count = _count(num_of_rows, operation, page)
    if count is not None and count != len(records):
        # numOfRows is the row count of this response (SPEC §2.2); a mismatch hints at
        # a changed server but the rows themselves are fine, so only warn.
        logger.warning(
            "%s %s page %s: numOfRows says %d but %d items arrived",
            SOURCE_AT_FLOWER,
            operation,
            "-" if page is None else page,
            count,
            len(records),
        )
    return ParsedFlowerPage(records, count, fmt)


def _parse_json(raw: bytes, operation: str, page: int | None) -> ParsedFlowerPage:
    doc: Any = None
    decode_error = ""
    try:
        doc = json.loads(raw, parse_int=str, parse_float=str)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        decode_error = str(exc)
    if decode_error:
        raise _invalid(f"malformed or truncated JSON ({len(raw)} bytes): {decode_error[:200]}", operation, page)
    response = doc.get("response") if isinstance(doc, dict) else None
    if not isinstance(response, dict):
        raise _invalid(f"JSON without a 'response' envelope: {body_snippet(raw, 80)}", operation, page)
    code = json_value_text(response.get("resultCd"))
    message = json_value_text(response.get("resultMsg")) or ""
    items = response.get("items")
    if code is not None and code.strip() != "0":
        raise at_flower_error(code.strip(), message, operation=operation, page=page)
    # Items is an array on the wire; a bare object (seen defended against by other
    # clients) is one row; null/"" is no rows.
    if items in (None, ""):
        raw_items: list[Any] = []
    elif isinstance(items, list):
        raw_items = items
    elif isinstance(items, dict):
        inner = items.get("item") if set(items) == {"item"} else items
        raw_items = inner if isinstance(inner, list) else [inner]
    else:
        raise _invalid(f"unexpected items of type {type(items).__name__}", operation, page, code)
    # The rows are stored as served in public_bidding_flowers, whose text cannot hold NUL or a lone
    # surrogate (only JSON escapes produce either): both become U+FFFD, the replacement character.
    clean = _storable_served_text if b"\\u0000" in raw or may_hold_lone_surrogates(raw) else None
    records: list[dict[str, str]] = []
    for entry in raw_items:
        if not isinstance(entry, dict):
            raise _invalid(f"item is a {type(entry).__name__}, not an object", operation, page, code)
        record = {}
        for key, value in entry.items():
            text = json_value_text(value)
            if text is not None:
                record[key] = clean(text) if clean else text
        records.append(record)
    return _finish(code, message, json_value_text(response.get("numOfRows")), records, "json", operation, page)


def _storable_served_text(text: str) -> str:
    return without_lone_surrogates(text).replace("\x00", "\ufffd")


def _parse_xml(raw: bytes, operation: str, page: int | None) -> ParsedFlowerPage:
    root = None
    syntax_error = ""
    try:
        root = etree.fromstring(raw, safe_xml_parser())
    except etree.XMLSyntaxError as exc:
        syntax_error = str(exc)
    if root is None:
        raise _invalid(f"malformed or truncated XML ({len(raw)} bytes): {syntax_error[:200]}", operation, page)
    refused = refuse_doctype(root)
    if refused:
        raise _invalid(refused, operation, page)
    if root.tag != "response":
        raise _invalid(f"unexpected XML root <{str(root.tag)[:60]}>", operation, page)
    code = root.findtext("resultCd")
    message = (root.findtext("resultMsg") or "").strip()
    if code is not None and code.strip() != "0":
        raise at_flower_error(code.strip(), message, operation=operation, page=page)
    records = [{child.tag: child.text or "" for child in item} for item in root.iterfind("items/item")]
    return _finish(code, message, root.findtext("numOfRows"), records, "xml", operation, page)


# --------------------------------------------------------------------------- client


@dataclass(frozen=True)
class FlowerPage:
    """One fetched f001 page: parsed records plus the raw body for the archive."""

    sale_date: date
    flower_gubn: int
    page: int
    records: list[dict[str, str]] = field(repr=False)
    raw: bytes = field(repr=False)
    content_type: str
    data_type: DataType


class AtFlowerClient(SourceClient):
    """Reads daily flower auction results (f001) from the aT 화훼유통정보 API.

    Use as a context manager (closes its httpx.Client)::

        with AtFlowerClient(key) as client:
            for page in client.iter_day(date(2026, 11, 23), 1):
                archive(page.raw); load(page.records)
    """

    source = SOURCE_AT_FLOWER
    key_hint = _KEY_HINT
    default_read_timeout = 60.0

    def __init__(
        self,
        service_key: str,
        base_url: str = AT_FLOWER_BASE_URL,
        *,
        count_per_page: int = 1000,
        data_type: DataType = "json",
        max_pages_per_day: int = 200,
        http: HttpOptions | None = None,
    ) -> None:
        if count_per_page < 1:
            raise ValueError("count_per_page must be >= 1")
        if data_type not in ("json", "xml"):
            raise ValueError("data_type must be 'json' or 'xml'")
        # Not a data.go.kr key: no Encoding/Decoding forms; the base trims paste accidents.
        super().__init__(service_key, body_format=data_type, http=http)
        self.base_url = base_url
        self.count_per_page = count_per_page
        self.data_type: DataType = data_type
        self.max_pages_per_day = max_pages_per_day

    def __repr__(self) -> str:  # never show the key
        return f"AtFlowerClient(base_url={self.base_url!r}, count_per_page={self.count_per_page}, data_type={self.data_type!r})"

    # -- requests ----------------------------------------------------------------------

    def page_url(self, sale_date: date, flower_gubn: int, page: int) -> str:
        """The request URL (contains the key: redact before showing it)."""
        return build_url(
            self.base_url,
            [
                ("kind", "f001"),
                ("serviceKey", self._key),
                ("baseDate", sale_date.strftime("%Y-%m-%d")),
                ("flowerGubn", flower_gubn),
                ("dataType", self.data_type),
                ("countPerPage", self.count_per_page),
                ("currentPage", page),
            ],
        )

    def redacted_url(self, sale_date: date, flower_gubn: int, page: int) -> str:
        """The request URL with the key replaced by ``***``."""
        return self._http.redact(self.page_url(sale_date, flower_gubn, page))

    def fetch_page(self, sale_date: date, flower_gubn: int, page: int) -> FlowerPage:
        """Fetch and parse one page of a day's results (retrying transient failures)."""
        if page < 1:
            raise ValueError("page must be >= 1")
        if flower_gubn not in FLOWER_GUBN_NAMES:
            # The server does not validate it and silently returns 0 rows.
            raise ValueError(f"flower_gubn must be one of {sorted(FLOWER_GUBN_NAMES)}")
        operation = f001_operation(sale_date, flower_gubn)

        def interpret(response: httpx.Response) -> FlowerPage:
            return self._interpret(response, sale_date, flower_gubn, page, operation)

        result = self._http.get(
            self.page_url(sale_date, flower_gubn, page), operation=operation, page=page, interpret=interpret
        )
        # Debug: each line in a Dagster run is an event-log write (~25 ms), and a one-year backfill
        # fetches some 1,500 pages; the assets log each date (or the progress of a long run).
        logger.debug("%s %s page %d: %d records", SOURCE_AT_FLOWER, operation, page, len(result.records))
        return result

    def _interpret(
        self, response: httpx.Response, sale_date: date, flower_gubn: int, page: int, operation: str
    ) -> FlowerPage:
        raw = response.content
        status = response.status_code
        if status != 200:
            ctx: dict[str, Any] = {"source": SOURCE_AT_FLOWER, "operation": operation, "page": page, "code": status}
            if first_significant_char(raw) in ("{", "<") and b"resultCd" in raw[:1024]:
                parse_flower_response(raw, data_type=self.data_type, operation=operation, page=page)
            if status in (401, 403):
                raise SourceAuthError(f"HTTP {status}: {body_snippet(raw, 100)}; {_KEY_HINT}", **ctx)
            raise SourceRequestInvalid(f"unexpected HTTP {status}: {body_snippet(raw, 100)}", **ctx)
        parsed = parse_flower_response(raw, data_type=self.data_type, operation=operation, page=page)
        if len(parsed.records) > self.count_per_page:
            # The server ignored countPerPage: paging on would read the same rows forever.
            raise _invalid(
                f"page holds {len(parsed.records)} items but countPerPage is {self.count_per_page}",
                operation,
                page,
                "0",
            )
        return FlowerPage(
            sale_date=sale_date,
            flower_gubn=flower_gubn,
            page=page,
            records=parsed.records,
            raw=raw,
            content_type=response.headers.get("content-type", ""),
            data_type=parsed.format,
        )

    def iter_day(self, sale_date: date, flower_gubn: int) -> Iterator[FlowerPage]:
        """Yield every page of one day and category, stopping after the first short page.

        A day without an auction yields its single empty page (so that the caller
        can archive the evidence).  When the last full page is followed by an
        empty one, that empty page is yielded too.
        """
        page = 1
        while True:
            result = self.fetch_page(sale_date, flower_gubn, page)
            yield result
            if len(result.records) < self.count_per_page:
                return
            if page >= self.max_pages_per_day:
                raise _invalid(
                    f"more than {self.max_pages_per_day} full pages of {self.count_per_page} rows; "
                    "the server probably ignores currentPage",
                    f001_operation(sale_date, flower_gubn),
                    page,
                    "0",
                )
            page += 1
