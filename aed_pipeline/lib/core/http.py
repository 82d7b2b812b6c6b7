"""Shared HTTP plumbing for the public-data clients: URLs, redaction, retries.

Both sources authenticate with a service key in the query string, so the key
ends up in every URL.  This module makes sure that

* the key is percent-encoded exactly once (data.go.kr answers a double- or
  un-encoded key with code 30 "SERVICE KEY IS NOT REGISTERED"),
* no URL, log line or exception ever shows the key (:func:`redact_url`,
  :func:`redact`, and a logging filter on the ``httpx`` logger, which would
  otherwise log every request URL at INFO level),
* transient failures (5xx, 429, timeouts, dropped connections, per-second
  throttling) are retried with exponential backoff and full jitter, while
  permanent ones surface at once.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Self, TypedDict, TypeVar
from urllib.parse import quote, quote_plus, unquote

import httpx

from aed_pipeline.lib.core.errors import (
    SourceAuthError,
    SourceError,
    SourceRateLimited,
    SourceRequestInvalid,
    SourceUnavailable,
)
from aed_pipeline.lib.core.wire import accept_header

__all__ = [
    "DEFAULT_USER_AGENT",
    "HttpOptions",
    "RetryPolicy",
    "SourceClient",
    "SourceHttp",
    "body_snippet",
    "build_url",
    "normalize_service_key",
    "redact",
    "redact_url",
    "register_secret",
    "secret_variants",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The data.go.kr gateway answers default tool user-agents (curl, python-httpx)
#: with HTTP 400 "Request Blocked"; a fixed browser-like string gets through.
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)

_PERCENT_ESCAPE_RE = re.compile(r"%[0-9A-Fa-f]{2}")
# Any spelling of the key parameter (serviceKey, ServiceKey, SERVICEKEY, service_key).
_KEY_PARAM_RE = re.compile(r"(?i)(\bservice_?key=)[^&\s\"'<>#]*")


# --------------------------------------------------------------------------- keys


def normalize_service_key(key: str) -> str:
    """Return the *decoded* form of a data.go.kr service key.

    data.go.kr shows two forms of the same key: the "Encoding" key
    (percent-encoded, with ``%2B``, ``%2F``, ``%3D``) and the "Decoding" key
    (raw base64 with ``+ / =``).  Operators paste either; we keep the decoded
    form and encode it ourselves exactly once when building URLs.  We decode
    only when the key contains a percent escape, and only once, so a raw key is
    never mangled (``unquote`` rather than ``unquote_plus``: a literal ``+`` in
    a decoded key is data, not a space).
    """
    key = key.strip()
    if _PERCENT_ESCAPE_RE.search(key):
        return unquote(key)
    return key


def secret_variants(key: str) -> set[str]:
    """Every textual form in which ``key`` could appear in a URL, log or message."""
    if not key or not key.strip():
        return set()
    decoded = normalize_service_key(key)
    variants = {key, key.strip(), decoded, quote(decoded, safe=""), quote(decoded), quote_plus(decoded)}
    return {v for v in variants if v}


# Keys known to this process, so that the logging filter on third-party loggers can
# redact the decoded form too, not only ``serviceKey=`` parameters.
_REGISTERED_SECRETS: set[str] = set()
_REGISTERED_LOCK = threading.Lock()
_REDACT_RE_CACHE: dict[frozenset[str], re.Pattern[str]] = {}


# Real service keys are long (data.go.kr and aT issue 32+ characters). A shorter "key" (a test's
# "k") would, redacted from every log line of the process, mangle unrelated words instead.
MIN_REDACTED_SECRET_LENGTH = 8


def register_secret(key: str) -> None:
    """Remember ``key`` (all its forms) for redaction in log records of any logger."""
    variants = {v for v in secret_variants(key) if len(v) >= MIN_REDACTED_SECRET_LENGTH}
    with _REGISTERED_LOCK:
        _REGISTERED_SECRETS.update(variants)


def _registered_secrets() -> frozenset[str]:
    with _REGISTERED_LOCK:
        return frozenset(_REGISTERED_SECRETS)


def _secret_pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    if not secrets:
        return None
    pattern = _REDACT_RE_CACHE.get(secrets)
    if pattern is None:
        # Longest first so that an encoded form is replaced before a substring of it;
        # case-insensitive so that ``%2b`` and ``%2B`` are both caught.
        alternatives = sorted(secrets, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(s) for s in alternatives), re.IGNORECASE)
        if len(_REDACT_RE_CACHE) < 64:
            _REDACT_RE_CACHE[secrets] = pattern
    return pattern


def redact_url(url: str | httpx.URL) -> str:
    """Replace the value of the ``serviceKey`` parameter (any case) with ``***``."""
    return _KEY_PARAM_RE.sub(r"\1***", str(url))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove service keys from arbitrary text.

    Replaces ``serviceKey=…`` parameters, every encoded/decoded form of each
    key in ``secrets``, and every key registered with :func:`register_secret`.
    """
    text = redact_url(text)
    all_secrets: set[str] = set(_registered_secrets())
    for secret in secrets:
        all_secrets.update(secret_variants(secret))
    pattern = _secret_pattern(frozenset(all_secrets))
    if pattern is not None:
        text = pattern.sub("***", text)
    return text


class _RedactingFilter(logging.Filter):
    """Scrubs service keys from records of third-party loggers (httpx logs each URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not our business; let logging report it
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


_FILTER = _RedactingFilter()
for _name in ("httpx", "httpcore"):
    _lg = logging.getLogger(_name)
    if not any(isinstance(f, _RedactingFilter) for f in _lg.filters):
        _lg.addFilter(_FILTER)


# --------------------------------------------------------------------------- URLs


def build_url(base_url: str, params: Sequence[tuple[str, str | int]]) -> str:
    """Assemble ``base_url?name=value&…`` with every value percent-encoded exactly once.

    We build the query string ourselves and hand httpx a ``str`` URL: httpx keeps
    existing ``%XX`` escapes as they are, whereas letting httpx encode a dict of
    params would encode an already-encoded key a second time (→ code 30).
    ``safe=""`` also encodes ``/``, ``+`` and ``=``, which base64 keys contain.
    """
    query = "&".join(f"{name}={quote(str(value), safe='')}" for name, value in params)
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}{query}"


def body_snippet(body: bytes, limit: int = 160) -> str:
    """A short, single-line, redacted preview of a response body for error messages."""
    text = body[: limit * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return redact(text) if text else "<empty body>"


# --------------------------------------------------------------------------- retry


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for transient failures.

    The delay before retry ``n`` (1-based: the retry after attempt ``n``) is
    ``uniform(0, min(max_delay, base_delay * factor ** (n - 1)))``.  Full jitter
    spreads the retries of parallel runs so they do not hit the gateway's
    per-second limit together.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise ValueError("delays must be >= 0 and factor >= 1")

    def backoff_ceiling(self, attempt: int) -> float:
        """Upper bound of the delay after the ``attempt``-th failed attempt."""
        return min(self.max_delay, self.base_delay * self.factor ** (attempt - 1))

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Full-jitter delay after the ``attempt``-th failed attempt."""
        return rng() * self.backoff_ceiling(attempt)


@dataclass(frozen=True)
class HttpOptions:
    """How a client talks HTTP, the same for every source: transport, timeouts, retries, test hooks.

    Attributes:
        transport: optional httpx transport (tests pass ``httpx.MockTransport``,
            the Dagster resource may pass the simulator's in-process transport).
        client: optional ready httpx.Client (not closed by us); overrides transport.
        connect_timeout: seconds.
        read_timeout: seconds; ``None`` for the client's own default.
        retry: backoff policy for transient failures (``None``: :class:`RetryPolicy` defaults).
        sleep / rng: injectable so tests run instantly and can assert delays.
        user_agent: the ``User-Agent`` header (see :data:`DEFAULT_USER_AGENT`).
    """

    transport: httpx.BaseTransport | None = None
    client: httpx.Client | None = None
    connect_timeout: float = 10.0
    read_timeout: float | None = None
    retry: RetryPolicy | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random
    user_agent: str = DEFAULT_USER_AGENT


# --------------------------------------------------------------------------- transport


class _RequestContext(TypedDict):
    """Which request failed: the keyword arguments every :class:`SourceError` takes."""

    source: str
    operation: str
    page: int | None


class SourceHttp:
    """One httpx.Client plus retry and redaction, shared by the e-gen and aT clients.

    Args:
        source: source name for messages (``"e-gen AED"``).
        secrets: the service key(s) to keep out of logs and messages.
        http: transport, timeouts, retry policy and test hooks.
        headers: extra default headers (e.g. ``Accept``).
        default_read_timeout: seconds, when ``http.read_timeout`` is ``None``.
    """

    def __init__(
        self,
        *,
        source: str,
        secrets: Iterable[str],
        http: HttpOptions | None = None,
        headers: dict[str, str] | None = None,
        default_read_timeout: float = 120.0,
    ) -> None:
        http = http or HttpOptions()
        self.source = source
        self._secrets = frozenset(s for key in secrets for s in secret_variants(key))
        for secret in self._secrets:
            register_secret(secret)
        self.retry = http.retry or RetryPolicy()
        self._sleep = http.sleep
        self._rng = http.rng
        request_headers = {"User-Agent": http.user_agent}
        request_headers.update(headers or {})
        if http.client is not None:
            self._client = http.client
            self._owns_client = False
            self._headers = request_headers
        else:
            read_timeout = default_read_timeout if http.read_timeout is None else http.read_timeout
            self._client = httpx.Client(
                transport=http.transport,
                timeout=httpx.Timeout(read_timeout, connect=http.connect_timeout),
                headers=request_headers,
                follow_redirects=True,
            )
            self._owns_client = True
            self._headers = {}

    # -- redaction ------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """Remove this client's key (any form) and any ``serviceKey=`` value from text."""
        return redact(text, self._secrets)

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # -- requests ---------------------------------------------------------------------

    def get(
        self,
        url: str,
        *,
        operation: str,
        page: int | None,
        interpret: Callable[[httpx.Response], T],
    ) -> T:
        """GET ``url`` and turn the response into a result with ``interpret``.

        HTTP 429/5xx and transport failures are mapped here; ``interpret`` maps
        everything else (it raises :class:`SourceError` subclasses).  Transient
        errors are retried per the policy; the last one is re-raised with the
        number of attempts.  Errors are raised outside ``except`` blocks so that
        no httpx exception (whose text contains the URL) is chained as context.
        """
        attempt = 0
        while True:
            attempt += 1
            failure: SourceError | None = None
            try:
                return self._attempt(url, operation=operation, page=page, interpret=interpret)
            except SourceError as exc:
                failure = exc
            assert failure is not None
            failure.scrubbed(self.redact)
            failure.__cause__ = None
            failure.__context__ = None
            if not failure.transient:
                raise failure
            if attempt >= self.retry.max_attempts:
                raise failure.with_attempts(attempt)
            delay = self.retry.delay(attempt, self._rng)
            logger.warning(
                "%s %s page %s: attempt %d/%d failed (%s: %s); retrying in %.2f s [%s]",
                self.source,
                operation,
                "-" if page is None else page,
                attempt,
                self.retry.max_attempts,
                type(failure).__name__,
                failure.detail,
                delay,
                self.redact(redact_url(url)),
            )
            self._sleep(delay)

    def _attempt(
        self,
        url: str,
        *,
        operation: str,
        page: int | None,
        interpret: Callable[[httpx.Response], T],
    ) -> T:
        ctx: _RequestContext = {"source": self.source, "operation": operation, "page": page}
        failure: SourceError | None = None
        response: httpx.Response | None = None
        logger.debug("%s GET %s", self.source, self.redact(url))
        try:
            response = self._client.get(url, headers=self._headers or None)
        except (httpx.UnsupportedProtocol, httpx.TooManyRedirects) as exc:
            # Configuration problems: retrying cannot help.
            failure = SourceRequestInvalid(f"request failed: {type(exc).__name__}: {self.redact(str(exc))}", **ctx)
        except httpx.TimeoutException as exc:
            failure = SourceUnavailable(f"timed out: {type(exc).__name__}: {self.redact(str(exc))}", **ctx)
        except httpx.RequestError as exc:
            # ConnectError, ReadError, RemoteProtocolError (the aT server drops TLS
            # connections intermittently), DecodingError …
            failure = SourceUnavailable(f"transport error: {type(exc).__name__}: {self.redact(str(exc))}", **ctx)
        if failure is not None:
            raise failure
        assert response is not None

        status = response.status_code
        if status == 429:
            raise SourceRateLimited(
                f"HTTP 429 Too Many Requests (per-second limit): {body_snippet(response.content)}",
                code=429,
                **ctx,
            )
        if status >= 500:
            raise SourceUnavailable(
                f"HTTP {status} ({response.headers.get('content-type', 'no content type')}): "
                f"{self.redact(body_snippet(response.content))}",
                code=status,
                **ctx,
            )
        try:
            return interpret(response)
        finally:
            # The body is read; httpx's response and its stream refer to each other, a cycle only
            # the rare full garbage collection frees, with the body (MBs per page) held in it.
            response.stream = httpx.ByteStream(b"")

    def __enter__(self) -> SourceHttp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SourceClient:
    """Base of the API clients: checks the service key, owns a :class:`SourceHttp` and closes it
    as a context manager.

    A subclass names its source and the hint for a missing key, checks its own arguments and
    then calls ``super().__init__``.
    """

    #: Source name for messages (``errors.SOURCE_EGEN``, ``errors.SOURCE_AT_FLOWER``).
    source: ClassVar[str]
    #: What to check when the key is missing or refused; ends the error message.
    key_hint: ClassVar[str]
    #: Seconds to wait for a response when ``HttpOptions.read_timeout`` is ``None``.
    default_read_timeout: ClassVar[float] = 120.0

    _key: str
    _http: SourceHttp

    def __init__(self, service_key: str, *, body_format: Literal["xml", "json"], http: HttpOptions | None) -> None:
        if not service_key or not service_key.strip():
            raise SourceAuthError(
                f"no service key configured; {self.key_hint}",
                source=self.source,
                operation="configuration",
            )
        self._key, secrets = self._key_forms(service_key)
        self._http = SourceHttp(
            source=self.source,
            secrets=secrets,
            http=http,
            headers={"Accept": accept_header(body_format)},
            default_read_timeout=self.default_read_timeout,
        )

    def _key_forms(self, service_key: str) -> tuple[str, list[str]]:
        """The key as sent (before URL encoding) and the forms of it to keep out of logs.

        By default the given key, trimmed of paste accidents.
        """
        key = service_key.strip()
        return key, [key]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
