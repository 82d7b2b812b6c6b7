"""Which partition must be in by now: the rule behind the freshness sensor, at the KST edges."""

from __future__ import annotations

import datetime as dt

import pytest

from aed_pipeline.lib.at_flower.source import AT_FLOWER
from aed_pipeline.lib.egen_aed.source import EGEN_AED
from aed_pipeline.lib.ops.freshness import freshness_rule, parse_deadline

UTC = dt.UTC


def _utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_aed_is_due_today_from_0700_kst_and_yesterday_before():
    rule = freshness_rule(EGEN_AED)
    # 2026-03-01 06:59 KST = 2026-02-28 21:59 UTC: today's deadline has not passed, yesterday's has.
    assert rule.due_partition(_utc(2026, 2, 28, 21, 59)) == dt.date(2026, 2, 28)
    # 07:00 KST: today's partition is due.
    assert rule.due_partition(_utc(2026, 2, 28, 22, 0)) == dt.date(2026, 3, 1)
    # Just after midnight KST (15:00 UTC) the new KST date is not due yet.
    assert rule.due_partition(_utc(2026, 2, 28, 15, 1)) == dt.date(2026, 2, 28)


def test_flowers_are_due_on_auction_days_only():
    rule = freshness_rule(AT_FLOWER, dt.time(8, 0))
    # Monday 2026-03-09 08:00 KST: Monday's sale date is due.
    assert rule.due_partition(_utc(2026, 3, 8, 23, 0)) == dt.date(2026, 3, 9)
    # Sunday 2026-03-08 noon KST: no auction on Sunday, so Saturday's is the newest due.
    assert rule.due_partition(_utc(2026, 3, 8, 3, 0)) == dt.date(2026, 3, 7)
    # 삼일절 falls on Sunday 1 March 2026, so Monday the 2nd is its substitute holiday: at noon KST
    # on that Monday the newest due sale date is still Saturday 28 February.
    assert rule.due_partition(_utc(2026, 3, 2, 3, 0)) == dt.date(2026, 2, 28)
    # 설날 2026 is 16–18 February (Mon–Wed): on the Wednesday the newest auction day is Saturday the 14th.
    assert rule.due_partition(_utc(2026, 2, 18, 3, 0)) == dt.date(2026, 2, 14)


def test_a_configured_deadline_moves_the_due_date():
    early, late = freshness_rule(AT_FLOWER, dt.time(7, 0)), freshness_rule(AT_FLOWER, dt.time(10, 30))
    monday_0800_kst = _utc(2026, 3, 8, 23, 0)
    assert early.due_partition(monday_0800_kst) == dt.date(2026, 3, 9)
    assert late.due_partition(monday_0800_kst) == dt.date(2026, 3, 7)


def test_a_malformed_deadline_is_refused_with_the_expected_form():
    assert parse_deadline(" 09:15 ") == dt.time(9, 15)
    with pytest.raises(ValueError, match="HH:MM"):
        parse_deadline("9 o'clock")


def test_a_table_is_judged_only_from_its_first_sync():
    rule = freshness_rule(EGEN_AED)
    tuesday_noon_kst = _utc(2026, 3, 10, 3, 0)
    # Never synced (a fresh install): nothing is due.
    assert rule.judged_partition(tuesday_noon_kst, None) is None
    # First synced on Monday: Tuesday's partition is due by Tuesday 07:00 KST as usual.
    assert rule.judged_partition(tuesday_noon_kst, _utc(2026, 3, 9, 1, 0)) == dt.date(2026, 3, 10)
    # First synced at 06:59 KST on Tuesday, before the deadline: judged.
    assert rule.judged_partition(tuesday_noon_kst, _utc(2026, 3, 9, 21, 59)) == dt.date(2026, 3, 10)
    # First synced at 10:00 KST on Tuesday, after the deadline had passed: Tuesday is not judged,
    # Wednesday is.
    first = _utc(2026, 3, 10, 1, 0)
    assert rule.judged_partition(tuesday_noon_kst, first) is None
    assert rule.judged_partition(_utc(2026, 3, 10, 22, 0), first) == dt.date(2026, 3, 11)
