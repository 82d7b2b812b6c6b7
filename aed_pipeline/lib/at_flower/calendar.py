"""The aT 양재 flower market's calendar: which sale dates are known to have no auction.

The market does not trade on Sundays and Korean public holidays (including substitute and
temporary holidays, as the ``holidays`` package lists them for KR). On such a date an empty
response is the normal answer, not a fault: the raw asset says so, and the volume check does not
count it as an anomaly nor use it as history. Market closures the package cannot know (a closure
announced by the market itself) are passed in as ``extra_closed``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from functools import lru_cache

__all__ = ["non_auction_reason"]

_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@lru_cache(maxsize=64)
def _korean_public_holidays(year: int) -> dict[date, str]:
    # Imported here: the package is ~75 ms of every run's start, and only flower runs need it.
    import holidays

    return dict(holidays.KR(years=year))


def non_auction_reason(sale_date: date, extra_closed: Collection[date] = ()) -> str | None:
    """Why ``sale_date`` has no auction (``"Sunday"``, ``"public holiday: Chuseok"``), or None
    when the market is expected to trade."""
    if sale_date in extra_closed:
        return "declared market closure"
    if sale_date.weekday() == 6:
        return "Sunday"
    holiday = _korean_public_holidays(sale_date.year).get(sale_date)
    if holiday:
        return f"public holiday: {holiday}"
    return None


def weekday_name(sale_date: date) -> str:
    return _WEEKDAY_NAMES[sale_date.weekday()]
