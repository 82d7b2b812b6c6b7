"""Typed errors raised by the source API clients (e-gen AED and aT flower).

The Dagster assets decide what to do with a failed fetch from the exception *class*:
a transient failure (``transient = True``) is worth retrying later in the same or
the next run, while a permanent one (bad key, exhausted daily quota, bad
parameter, unparseable response) needs a human or the next day.  Every
exception names the source, the operation, the page and the provider/gateway
code so that an operator can act on the message alone.

Messages are built from already-redacted text: the clients never put a service
key into ``detail`` or ``operation``, and never chain an httpx exception (whose
message would contain the request URL, including the key).
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = [
    "SOURCE_AT_FLOWER",
    "SOURCE_EGEN",
    "SourceAuthError",
    "SourceError",
    "SourceQuotaExceeded",
    "SourceRateLimited",
    "SourceRequestInvalid",
    "SourceResponseInvalid",
    "SourceUnavailable",
]

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

#: Human-readable source names used in every message.
SOURCE_EGEN = "e-gen AED"
SOURCE_AT_FLOWER = "aT flower"


class SourceError(Exception):
    """A call to an upstream public-data API failed.

    Attributes:
        source: ``"e-gen AED"`` or ``"aT flower"``.
        operation: what was being fetched, e.g. ``"getAedFullDown"`` or
            ``"f001 flowerGubn=1 baseDate=2026-11-23"``.
        page: the page number requested, or ``None`` when not page-specific.
        code: provider/gateway result code (``"30"``, ``"4"``) or HTTP status
            (``502``); ``None`` when there is none (timeouts, malformed bodies).
        detail: the redacted explanation.
        attempts: how many attempts were made, set when retries were exhausted.
    """

    #: Whether retrying later can succeed without a human doing anything.
    transient: bool = False

    def __init__(
        self,
        detail: str,
        *,
        source: str,
        operation: str,
        page: int | None = None,
        code: str | int | None = None,
        attempts: int | None = None,
    ) -> None:
        self.detail = detail
        self.source = source
        self.operation = operation
        self.page = page
        self.code = code
        self.attempts = attempts
        super().__init__(self._render())

    def _render(self) -> str:
        page = "-" if self.page is None else str(self.page)
        code = "n/a" if self.code is None else str(self.code)
        # The detail quotes what the server sent; a control character in it (a NUL in a garbage
        # body) would make the message unstorable in PostgreSQL's sync log and garble a terminal.
        detail = _CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", self.detail)
        text = f"{self.source} {self.operation} page {page} failed (code {code}): {detail}"
        if self.attempts is not None:
            text += f" [gave up after {self.attempts} attempt{'s' if self.attempts != 1 else ''}]"
        return text

    def with_attempts(self, attempts: int) -> SourceError:
        """Record how many attempts were made and refresh the message (returns self)."""
        self.attempts = attempts
        self.args = (self._render(),)
        return self

    def scrubbed(self, redactor: Callable[[str], str]) -> SourceError:
        """Pass detail and operation through ``redactor`` (defence in depth) and return self."""
        self.detail = redactor(self.detail)
        self.operation = redactor(self.operation)
        self.args = (self._render(),)
        return self

    def __reduce__(self) -> tuple[Callable[..., SourceError], tuple[object, ...]]:
        # Keep pickling (Dagster multiprocess) working with keyword-only args.
        return (
            _rebuild,
            (type(self), self.detail, self.source, self.operation, self.page, self.code, self.attempts),
        )


def _rebuild(  # pragma: no cover - trivial
    cls: type[SourceError],
    detail: str,
    source: str,
    operation: str,
    page: int | None,
    code: str | int | None,
    attempts: int | None,
) -> SourceError:
    return cls(detail, source=source, operation=operation, page=page, code=code, attempts=attempts)


class SourceAuthError(SourceError):
    """The service key was rejected: unregistered, expired, unapproved or wrong form.

    e-gen gateway codes 20, 21, 29, 30, 31, 32, 33; aT resultCd 1, 2, 3; HTTP 401/403.
    """

    transient = False


class SourceQuotaExceeded(SourceError):
    """The daily call quota of the key is used up (e-gen code 22, aT resultCd 4).

    Not transient within a run: the counter resets at midnight KST, so the
    schedule should simply try again the next day.
    """

    transient = False


class SourceUnavailable(SourceError):
    """The source is temporarily unavailable: HTTP 5xx, timeouts, dropped connections,
    gateway codes 01/02/04/05/99.  Raised after the retries are exhausted."""

    transient = True


class SourceRateLimited(SourceUnavailable):
    """The per-second quota was hit (HTTP 429, e-gen code 23).

    A subclass of :class:`SourceUnavailable` because it is handled the same way
    (back off and retry); kept distinct so that operators can tell throttling
    from outages in the logs.
    """

    transient = True


class SourceRequestInvalid(SourceError):
    """The request itself is wrong: bad/missing parameter (e-gen 10/11/12, aT resultCd 5)
    or the gateway refused it (HTTP 400 "Request Blocked")."""

    transient = False


class SourceResponseInvalid(SourceError):
    """The response cannot be understood: malformed or truncated XML/JSON, an unexpected
    envelope, inconsistent counts, or a non-JSON body from the aT API."""

    transient = False
