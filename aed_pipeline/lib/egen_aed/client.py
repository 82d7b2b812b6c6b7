"""Client and parser for the e-gen AED open API (data.go.kr 15000652, AEDInfoInqireService).

The pipeline keeps a full snapshot of the national AED registry: it pages
through ``getAedFullDown`` (5,000 rows per page by default, ~15 calls per
sync against a 1,000 calls/day quota), archives every page byte for byte, and
parses it into string records.  The parser is a pure function so that archived
pages can be re-parsed later without the network.

Wire facts this module relies on (see SPEC.md §1):

* XML is the native format; values are text and missing values are *absent
  elements*, so a record dict only has the keys the provider sent.
* ``_type=json`` gives a converted form whose scalars are auto-typed
  (``2400`` becomes a number, ``"0900"`` stays a string) and whose
  ``items.item`` is a list, a bare object (1 row) or ``items == ""`` (0 rows).
  We always hand back the string form, keeping the JSON number text as is.
* Errors come mostly with HTTP 200: the provider envelope with a non-``00``
  ``resultCode``, or the data.go.kr gateway's ``OpenAPI_ServiceResponse`` –
  which is XML even when JSON was asked – so the parser sniffs the body.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx
from lxml import etree

from aed_pipeline.lib.core.errors import (
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
    HttpOptions,
    SourceClient,
    body_snippet,
    build_url,
    normalize_service_key,
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
    "EGEN_BASE_URL",
    "OPERATION_FULL_DOWN",
    "EgenClient",
    "EgenPage",
    "ParsedEgenPage",
    "egen_error",
    "page_count",
    "parse_egen_response",
]

logger = logging.getLogger(__name__)

EGEN_BASE_URL = "https://apis.data.go.kr/B552657/AEDInfoInqireService"
OPERATION_FULL_DOWN = "getAedFullDown"
ResponseType = Literal["xml", "json"]

# Gateway/provider codes (data.go.kr error table, SPEC §1.6) by meaning.
_CODE_NAMES = {
    "01": "APPLICATION_ERROR",
    "02": "DB_ERROR",
    "03": "NODATA_ERROR",
    "04": "HTTP_ERROR",
    "05": "SERVICETIMEOUT_ERROR",
    "10": "INVALID_REQUEST_PARAMETER_ERROR",
    "11": "NO_MANDATORY_REQUEST_PARAMETERS_ERROR",
    "12": "NO_OPENAPI_SERVICE_ERROR",
    "20": "SERVICE_ACCESS_DENIED_ERROR",
    "21": "TEMPORARILY_DISABLE_THE_SERVICEKEY_ERROR",
    "22": "LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR",
    "23": "LIMITED_NUMBER_OF_SERVICE_REQUESTS_PER_SECOND_EXCEEDS_ERROR",
    "29": "BLACKLIST_IP_ACCESS_ERROR",
    "30": "SERVICE_KEY_IS_NOT_REGISTERED_ERROR",
    "31": "DEADLINE_HAS_EXPIRED_ERROR",
    "32": "UNREGISTERED_IP_ERROR",
    "33": "UNSIGNED_CALL_ERROR",
    "99": "UNKNOWN_ERROR",
}
_AUTH_CODES = {"20", "21", "29", "30", "31", "32", "33"}
_TRANSIENT_CODES = {"01", "02", "04", "05", "99"}
_REQUEST_CODES = {"10", "11", "12"}

_AUTH_HINT = (
    "check EGEN_SERVICE_KEY (both the Encoding and the Decoding key shown on data.go.kr are "
    "accepted; a newly issued key can take a while to be activated)"
)


def _normalize_name(text: str) -> str:
    """``'SERVICE KEY IS NOT REGISTERED ERROR.'`` → ``'SERVICE_KEY_IS_NOT_REGISTERED_ERROR'``."""
    return "_".join(text.upper().replace(".", " ").replace("_", " ").split())


_NAME_TO_CODE = {_normalize_name(name): code for code, name in _CODE_NAMES.items()}
# Older spellings of code 20 seen in the wild.
_NAME_TO_CODE.update({"SERVICE_KEY_IS_NULL": "20", "PERMISSION_DENIED": "20"})


def _normalize_code(code: str | None) -> str | None:
    if code is None:
        return None
    code = code.strip()
    # "0" / "3" from a JSON number or a sloppy provider → the two-digit table form.
    return code.zfill(2) if code.isdigit() and len(code) < 2 else code


def _code_from_messages(*messages: str | None) -> str | None:
    for message in messages:
        if message:
            name = _normalize_name(message)
            for known, code in _NAME_TO_CODE.items():
                if known in name:
                    return code
    return None


def egen_error(
    code: str | None,
    message: str,
    *,
    operation: str,
    page: int | None,
) -> SourceError:
    """Map an e-gen/data.go.kr result code (non-``00``, non-``03``) to a typed error."""
    code = _normalize_code(code)
    ctx: dict[str, Any] = {"source": SOURCE_EGEN, "operation": operation, "page": page, "code": code}
    name = _CODE_NAMES.get(code or "", "unknown code")
    described = f"{message or name} ({name})" if message and _normalize_name(message) != name else name
    # Some provider-hosted services answer an unregistered key with code 99 and the
    # message "SERVICE KEY IS NOT REGISTERED ERROR." – the message wins over the code.
    if code not in _AUTH_CODES and _code_from_messages(message) in _AUTH_CODES:
        return SourceAuthError(f"service key rejected: {described}; {_AUTH_HINT}", **ctx)
    if code in _AUTH_CODES:
        return SourceAuthError(f"service key rejected: {described}; {_AUTH_HINT}", **ctx)
    if code == "22":
        return SourceQuotaExceeded(
            f"daily call quota of the e-gen AED service key is exhausted: {described}; "
            "the quota resets at midnight KST",
            **ctx,
        )
    if code == "23":
        return SourceRateLimited(f"per-second call limit exceeded: {described}", **ctx)
    if code in _REQUEST_CODES:
        return SourceRequestInvalid(f"request rejected: {described}", **ctx)
    if code in _TRANSIENT_CODES:
        return SourceUnavailable(f"provider/gateway error: {described}", **ctx)
    return SourceResponseInvalid(f"unexpected result code: {described}", **ctx)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ParsedEgenPage:
    """Records and counters of one e-gen response body.

    ``records`` are dicts of field name → string exactly as sent; absent fields
    are absent keys.  ``page_no``/``num_of_rows`` are ``None`` when the body does
    not carry them (NODATA envelope).  ``format`` is the detected body format.
    """

    records: list[dict[str, str]]
    total_count: int
    page_no: int | None
    num_of_rows: int | None
    format: ResponseType = "xml"


def _invalid(detail: str, operation: str, page: int | None, code: str | None = None) -> SourceResponseInvalid:
    return SourceResponseInvalid(detail, source=SOURCE_EGEN, operation=operation, page=page, code=code)


def _to_int(value: Any, what: str, operation: str, page: int | None) -> int:
    text = "" if value is None else str(value).strip()
    try:
        return int(text)
    except ValueError:
        raise _invalid(f"{what} is not an integer: {text[:40]!r}", operation, page) from None


def _opt_int(value: Any, what: str, operation: str, page: int | None) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _to_int(value, what, operation, page)


def parse_egen_response(
    raw: bytes,
    *,
    response_type: str = "xml",
    operation: str = OPERATION_FULL_DOWN,
    page: int | None = None,
) -> ParsedEgenPage:
    """Parse an e-gen AED response body (XML or JSON) into string records.

    ``response_type`` is only the requested format: the body is sniffed because
    the gateway's error envelope is XML even for ``_type=json``.  Raises the
    typed :mod:`aed_pipeline.lib.core.errors` exceptions for error envelopes and
    for malformed bodies; NODATA (code 03) is an empty page.
    """
    first = first_significant_char(raw)
    if first == "<":
        return _parse_xml(raw, operation, page)
    if first in ("{", "["):
        return _parse_json(raw, operation, page)
    raise _invalid(
        f"body is neither XML nor JSON (requested {response_type}): {body_snippet(raw)}",
        operation,
        page,
    )


def _parse_xml(raw: bytes, operation: str, page: int | None) -> ParsedEgenPage:
    root = None
    syntax_error = ""
    try:
        root = etree.fromstring(raw, safe_xml_parser())
    except etree.XMLSyntaxError as exc:
        syntax_error = str(exc)
    if root is None:
        # Raised outside the except block: no chained lxml exception.
        raise _invalid(
            f"malformed or truncated XML ({len(raw)} bytes): {syntax_error[:200]}; starts with {body_snippet(raw, 80)}",
            operation,
            page,
        )
    refused = refuse_doctype(root)
    if refused:
        raise _invalid(refused, operation, page)
    tag = root.tag if isinstance(root.tag, str) else ""
    if tag == "OpenAPI_ServiceResponse":
        header = root.find("cmmMsgHeader")
        fields = {} if header is None else {c.tag: (c.text or "").strip() for c in header if isinstance(c.tag, str)}
        _raise_gateway(fields, operation, page)
    if tag != "response":
        raise _invalid(f"unexpected XML root <{tag[:60]}>: {body_snippet(raw, 80)}", operation, page)

    code = _normalize_code(root.findtext("header/resultCode"))
    message = (root.findtext("header/resultMsg") or "").strip()
    if code is None:
        raise _invalid("XML envelope without header/resultCode", operation, page)
    if code == "03":
        return ParsedEgenPage([], 0, page, None, "xml")
    if code != "00":
        raise egen_error(code, message, operation=operation, page=page)

    body = root.find("body")
    if body is None:
        raise _invalid("success envelope without <body>", operation, page, code)
    total_count = _to_int(body.findtext("totalCount"), "totalCount", operation, page)
    page_no = _opt_int(body.findtext("pageNo"), "pageNo", operation, page)
    num_of_rows = _opt_int(body.findtext("numOfRows"), "numOfRows", operation, page)
    # Hot loop for 5,000-row pages: one dict comprehension per item; comments and
    # processing instructions were already dropped by the parser.  Text is kept
    # exactly as XML gives it; an empty element becomes "".
    records = [{child.tag: child.text or "" for child in item} for item in body.iterfind("items/item")]
    return _checked(ParsedEgenPage(records, total_count, page_no, num_of_rows, "xml"), operation, page)


def _raise_gateway(fields: dict[str, Any], operation: str, page: int | None) -> None:
    """Raise the error described by a data.go.kr ``cmmMsgHeader``."""
    err_msg = json_value_text(fields.get("errMsg")) or ""
    auth_msg = json_value_text(fields.get("returnAuthMsg")) or ""
    code = _normalize_code(json_value_text(fields.get("returnReasonCode")))
    # errMsg and returnAuthMsg are swapped in some responses; the specific one is
    # whichever is not the generic "SERVICE ERROR".
    specific = next(
        (m for m in (auth_msg, err_msg) if m and _normalize_name(m) != "SERVICE_ERROR"),
        auth_msg or err_msg,
    )
    if not code:
        code = _code_from_messages(auth_msg, err_msg)
    if code is None:
        raise _invalid(f"gateway error envelope without a reason code: {specific or 'no message'}", operation, page)
    raise egen_error(code, specific, operation=operation, page=page)


def _parse_json(raw: bytes, operation: str, page: int | None) -> ParsedEgenPage:
    doc: Any = None
    decode_error = ""
    try:
        # parse_int/parse_float=str keep the provider's number text (37.5709958592,
        # 2400) exactly instead of round-tripping through float.
        doc = json.loads(raw, parse_int=str, parse_float=str)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        decode_error = str(exc)
    if decode_error:
        raise _invalid(f"malformed or truncated JSON ({len(raw)} bytes): {decode_error[:200]}", operation, page)
    if not isinstance(doc, dict):
        raise _invalid(f"unexpected JSON document: {body_snippet(raw, 80)}", operation, page)
    # A lone surrogate escape ("\ud800") decodes to text no UTF-8 store can hold: it becomes U+FFFD.
    clean = without_lone_surrogates if may_hold_lone_surrogates(raw) else None
    gateway = doc.get("OpenAPI_ServiceResponse")
    if isinstance(gateway, dict):
        header = gateway.get("cmmMsgHeader")
        _raise_gateway(header if isinstance(header, dict) else {}, operation, page)
    response = doc.get("response")
    if not isinstance(response, dict):
        raise _invalid(f"JSON without a 'response' envelope: {body_snippet(raw, 80)}", operation, page)
    header = response.get("header")
    header = header if isinstance(header, dict) else {}
    code = _normalize_code(json_value_text(header.get("resultCode")))
    message = json_value_text(header.get("resultMsg")) or ""
    if code is None:
        raise _invalid("JSON envelope without header.resultCode", operation, page)
    if code == "03":
        return ParsedEgenPage([], 0, page, None, "json")
    if code != "00":
        raise egen_error(code, message, operation=operation, page=page)

    body = response.get("body")
    if not isinstance(body, dict):
        raise _invalid("success envelope without 'body'", operation, page, code)
    total_count = _to_int(body.get("totalCount"), "totalCount", operation, page)
    page_no = _opt_int(body.get("pageNo"), "pageNo", operation, page)
    num_of_rows = _opt_int(body.get("numOfRows"), "numOfRows", operation, page)

    items = body.get("items")
    # Three shapes for the same thing (SPEC §1.3): {"item": [...]} for ≥2 rows,
    # {"item": {...}} for 1 row, and "" (or null) for 0 rows.
    if items in ("", None):
        raw_items: list[Any] = []
    elif isinstance(items, dict):
        item = items.get("item")
        if item in ("", None):
            raw_items = []
        elif isinstance(item, list):
            raw_items = item
        elif isinstance(item, dict):
            raw_items = [item]
        else:
            raise _invalid(f"unexpected items.item of type {type(item).__name__}", operation, page)
    elif isinstance(items, list):
        raw_items = items
    else:
        raise _invalid(f"unexpected items of type {type(items).__name__}", operation, page)

    records: list[dict[str, str]] = []
    for entry in raw_items:
        if not isinstance(entry, dict):
            raise _invalid(f"item is a {type(entry).__name__}, not an object", operation, page)
        record: dict[str, str] = {}
        for key, value in entry.items():
            text = json_value_text(value)
            if text is not None:  # null ≙ absent element in XML
                record[key] = clean(text) if clean else text
        records.append(record)
    return _checked(ParsedEgenPage(records, total_count, page_no, num_of_rows, "json"), operation, page)


def _checked(parsed: ParsedEgenPage, operation: str, page: int | None) -> ParsedEgenPage:
    if parsed.total_count < 0:
        raise _invalid(f"negative totalCount {parsed.total_count}", operation, page, "00")
    if parsed.num_of_rows is not None and len(parsed.records) > parsed.num_of_rows:
        raise _invalid(
            f"page holds {len(parsed.records)} items but numOfRows is {parsed.num_of_rows}",
            operation,
            page,
            "00",
        )
    if len(parsed.records) > parsed.total_count:
        raise _invalid(
            f"page holds {len(parsed.records)} items but totalCount is {parsed.total_count}",
            operation,
            page,
            "00",
        )
    return parsed


# --------------------------------------------------------------------------- client


def page_count(total_count: int, num_of_rows: int) -> int:
    """Number of pages needed to read ``total_count`` rows at ``num_of_rows`` per page."""
    if num_of_rows < 1:
        raise ValueError("num_of_rows must be >= 1")
    return max(0, math.ceil(total_count / num_of_rows))


@dataclass(frozen=True)
class EgenPage:
    """One fetched ``getAedFullDown`` page: parsed records plus the raw body for the archive.

    ``response_type`` is the format of ``raw`` as detected from the body (it can
    differ from the requested one for gateway envelopes); ``num_of_rows`` is the
    page size that was requested; ``served_at`` is the server's ``Date`` header (None when it
    sent none): the API serves only the current registry, so this dates the snapshot.
    """

    page_no: int
    num_of_rows: int
    total_count: int
    records: list[dict[str, str]] = field(repr=False)
    raw: bytes = field(repr=False)
    content_type: str
    response_type: ResponseType
    served_at: datetime | None = None


@dataclass(frozen=True)
class ServedPage:
    """One ``getAedFullDown`` response as the API served it, before its records are read: see
    :meth:`EgenClient.download_full_down_page`. ``page`` is the parsed page when it had to be read
    at once (any body but a success envelope)."""

    page_no: int
    raw: bytes = field(repr=False)
    content_type: str
    served_at: datetime | None
    page: EgenPage | None = field(default=None, repr=False)


# A body opening as a success envelope (what every full page of the API looks like, declaration
# optional): its parse can only succeed or find the body malformed, neither of which is retried.
_XML_SUCCESS_HEAD = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^<>]*\?>\s*)?<response>\s*<header>\s*<resultCode>\s*0?0\s*</resultCode>"
)


def served_date_header(response: httpx.Response) -> datetime | None:
    """The response's ``Date`` header as an aware datetime, or None if absent or unreadable."""
    value = response.headers.get("date")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class EgenClient(SourceClient):
    """Reads the national AED registry from the e-gen open API, page by page.

    Use as a context manager (closes its httpx.Client)::

        with EgenClient(key) as client:
            for page in client.iter_full_down():
                archive(page.raw); load(page.records)

    ``service_key`` may be the Encoding or the Decoding key from data.go.kr.
    """

    source = SOURCE_EGEN
    key_hint = _AUTH_HINT

    def __init__(
        self,
        service_key: str,
        base_url: str = EGEN_BASE_URL,
        *,
        num_of_rows: int = 5000,
        response_type: ResponseType = "xml",
        http: HttpOptions | None = None,
    ) -> None:
        if num_of_rows < 1:
            raise ValueError("num_of_rows must be >= 1")
        if response_type not in ("xml", "json"):
            raise ValueError("response_type must be 'xml' or 'json'")
        super().__init__(service_key, body_format=response_type, http=http)
        self.base_url = base_url.rstrip("/")
        self.num_of_rows = num_of_rows
        self.response_type: ResponseType = response_type

    def _key_forms(self, service_key: str) -> tuple[str, list[str]]:
        # Sent decoded (and encoded once by build_url), whichever of the two forms was given;
        # the given form is a secret too.
        key = normalize_service_key(service_key)
        return key, [service_key, key]

    def __repr__(self) -> str:  # never show the key
        return f"EgenClient(base_url={self.base_url!r}, num_of_rows={self.num_of_rows}, response_type={self.response_type!r})"

    # -- requests ----------------------------------------------------------------------

    def full_down_url(self, page_no: int) -> str:
        """The request URL for a page (contains the key: redact before showing it)."""
        params: list[tuple[str, str | int]] = [
            ("serviceKey", self._key),
            ("pageNo", page_no),
            ("numOfRows", self.num_of_rows),
        ]
        if self.response_type == "json":
            params.append(("_type", "json"))
        return build_url(f"{self.base_url}/{OPERATION_FULL_DOWN}", params)

    def redacted_url(self, page_no: int) -> str:
        """The request URL with the key replaced by ``***`` (for logs and archive metadata)."""
        return self._http.redact(self.full_down_url(page_no))

    def page_count(self, total_count: int) -> int:
        """Pages needed for ``total_count`` rows at this client's page size."""
        return page_count(total_count, self.num_of_rows)

    def fetch_full_down_page(self, page_no: int) -> EgenPage:
        """Fetch and parse one ``getAedFullDown`` page (retrying transient failures)."""
        return self.read_full_down_page(self.download_full_down_page(page_no))

    def download_full_down_page(self, page_no: int) -> ServedPage:
        """The network half of :meth:`fetch_full_down_page`: one page's response, transient failures
        retried, its records not yet read (:meth:`read_full_down_page` reads them).

        Whatever could be a transient failure (HTTP 429 or 5xx, a dropped connection, an error
        envelope) is read here, inside the retry loop. Only a body opening as a success envelope is
        left unparsed: reading it can only succeed or find it malformed, which no retry mends, so
        the fetch parses one page while the next downloads.
        """
        if page_no < 1:
            raise ValueError("page_no must be >= 1")
        operation = OPERATION_FULL_DOWN

        def interpret(response: httpx.Response) -> ServedPage:
            if response.status_code != 200:
                self._raise_for_status(response, operation, page_no)
            served = ServedPage(
                page_no, response.content, response.headers.get("content-type", ""), served_date_header(response)
            )
            if _XML_SUCCESS_HEAD.match(served.raw, 0, 512):
                return served
            return replace(served, page=self._read(served, operation))

        return self._http.get(self.full_down_url(page_no), operation=operation, page=page_no, interpret=interpret)

    def read_full_down_page(self, served: ServedPage) -> EgenPage:
        """The records of a downloaded page, checked against the request (raises the client's typed
        errors for a malformed page)."""
        page = served.page or self._read(served, OPERATION_FULL_DOWN)
        # Debug: each line in a Dagster run is an event-log write (~25 ms); the fetch logs progress.
        logger.debug(
            "%s %s page %d: %d records (totalCount %d)",
            SOURCE_EGEN,
            OPERATION_FULL_DOWN,
            page.page_no,
            len(page.records),
            page.total_count,
        )
        return page

    def _read(self, served: ServedPage, operation: str) -> EgenPage:
        raw, page_no = served.raw, served.page_no
        parsed = parse_egen_response(raw, response_type=self.response_type, operation=operation, page=page_no)
        if len(parsed.records) > self.num_of_rows:
            raise _invalid(
                f"page holds {len(parsed.records)} items but only {self.num_of_rows} were requested",
                operation,
                page_no,
                "00",
            )
        if parsed.page_no is not None and parsed.page_no != page_no:
            # Not fatal: the records are still valid rows; the totalCount check of the
            # snapshot asset catches missing rows.  Worth a warning for the operator.
            logger.warning(
                "%s %s: asked for page %d, response says pageNo %d",
                SOURCE_EGEN,
                operation,
                page_no,
                parsed.page_no,
            )
        return EgenPage(
            page_no=page_no,
            num_of_rows=self.num_of_rows,
            total_count=parsed.total_count,
            records=parsed.records,
            raw=raw,
            content_type=served.content_type,
            response_type=parsed.format,
            served_at=served.served_at,
        )

    def _raise_for_status(self, response: httpx.Response, operation: str, page_no: int) -> None:
        """Map a non-200, non-5xx/429 answer (those are handled by SourceHttp)."""
        raw = response.content
        status = response.status_code
        ctx: dict[str, Any] = {"source": SOURCE_EGEN, "operation": operation, "page": page_no, "code": status}
        head = raw[:512]
        if b"OpenAPI_ServiceResponse" in head or b"<response" in head or first_significant_char(raw) == "{":
            # Some gateways send the usual error envelope with 401/403/429: its code
            # is more precise than the status.
            parsed = parse_egen_response(raw, response_type=self.response_type, operation=operation, page=page_no)
            raise SourceRequestInvalid(f"HTTP {status} with a success envelope ({len(parsed.records)} items)", **ctx)
        snippet = body_snippet(raw, 100)
        if status == 400:
            raise SourceRequestInvalid(
                "the data.go.kr gateway blocked the request (HTTP 400 'Request Blocked'): "
                f"check the User-Agent header and the request parameters; body: {snippet}",
                **ctx,
            )
        if status in (401, 403):
            raise SourceAuthError(f"HTTP {status}: {snippet}; {_AUTH_HINT}", **ctx)
        raise SourceRequestInvalid(f"unexpected HTTP {status}: {snippet}", **ctx)

    def iter_full_down(
        self,
        start_page: int = 1,
        pages: Iterable[int] | None = None,
    ) -> Iterator[EgenPage]:
        """Yield every ``getAedFullDown`` page of the current snapshot.

        Without ``pages``: fetch ``start_page`` (to learn totalCount), then every
        page up to ``ceil(totalCount / num_of_rows)``.  With ``pages``: fetch only
        those pages, in ascending order, once each – for resuming a run whose
        other pages are already archived.
        """
        if pages is not None:
            for page_no in sorted(set(pages)):
                yield self.fetch_full_down_page(page_no)
            return
        first = self.fetch_full_down_page(start_page)
        yield first
        last_page = self.page_count(first.total_count)
        for page_no in range(start_page + 1, last_page + 1):
            page = self.fetch_full_down_page(page_no)
            if page.total_count != first.total_count:
                # The registry changed during the sync; the snapshot asset decides
                # whether that is acceptable, we only make it visible.
                logger.warning(
                    "%s: totalCount changed during the sync (%d on page %d, %d on page %d)",
                    SOURCE_EGEN,
                    first.total_count,
                    start_page,
                    page.total_count,
                    page_no,
                )
            yield page
