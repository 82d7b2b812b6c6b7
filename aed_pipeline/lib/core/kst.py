"""Korean time: both sources date everything in KST (a partition is a KST calendar date)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

TIMEZONE_NAME = "Asia/Seoul"
KST = ZoneInfo(TIMEZONE_NAME)


def kst_date(moment: datetime | None = None) -> date:
    """The KST calendar date of an aware moment (of now when None)."""
    return (moment or datetime.now(UTC)).astimezone(KST).date()


def kst_midnight(day: date) -> float:
    """Unix seconds of 00:00 KST on ``day``: how a partition date is given to Prometheus."""
    return datetime.combine(day, time(), KST).timestamp()


def date_span(dates: Sequence[date]) -> str:
    """Ascending dates in a few words: ``2026-03-02``, or ``2026-03-02 … 2026-03-31 (30 dates)``."""
    if not dates:
        return "no dates"
    if len(dates) == 1:
        return dates[0].isoformat()
    return f"{dates[0].isoformat()} … {dates[-1].isoformat()} ({len(dates)} dates)"
