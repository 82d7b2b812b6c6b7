"""Korean time: both sources date everything in KST (a partition is a KST calendar date)."""

from __future__ import annotations

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
