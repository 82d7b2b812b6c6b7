"""The flower sync's plain logic, without Dagster or a database: typing, row validation and its
reasons, the blocking checks' computations, and the auction calendar."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aed_pipeline.lib.at_flower.calendar import non_auction_reason
from aed_pipeline.lib.at_flower.checks import (
    GroupVolume,
    VolumeRule,
    duplicate_keys,
    find_volume_anomalies,
    groups_failing_price_invariants,
    volumes_by_date,
)
from aed_pipeline.lib.at_flower.records import (
    parse_integer_text,
    plain_valid_rows,
    type_flower_rows,
    validate_flower_rows,
)
from aed_pipeline.lib.at_flower.validate import (
    CHECK_DUPLICATE_KEYS,
    CHECK_PRICE_INVARIANTS,
    CHECK_VOLUME,
    validate_flower_days,
)
from aed_pipeline.simulator import Simulator

MONDAY = date(2026, 3, 9)


def served(**overrides) -> dict:
    """One public_bidding_flowers row as read back (text as served), consistent unless overridden:
    avg 3243 = round(12816580 / 3952) (the SPEC's real row)."""
    row = {
        "sale_date": MONDAY,
        "flower_gubn": 1,
        "sale_date_raw": MONDAY.isoformat(),
        "flower_gubn_raw": "절화",
        "pum_name": "거베라",
        "good_name": "미니(혼합)",
        "lv_nm": "특2",
        "max_amt": "4300",
        "min_amt": "1050",
        "avg_amt": "3243",
        "tot_amt": "12816580",
        "tot_qty": "3952",
        "page": 1,
        "row_in_page": 1,
    }
    row.update(overrides)
    return row


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame([{k: v for k, v in row.items()} for row in rows]).astype(object)


def reasons_of(rows: list[dict]) -> list[list[dict]]:
    validation = validate_flower_rows(frame(*rows))
    return [validation.reasons.get(label, []) for label in validation.typed.index]


# --------------------------------------------------------------------------- typing


def test_integer_text_tolerates_thousands_separators_and_spaces_and_rejects_the_rest() -> None:
    values = pd.Series(
        ["1,234", " 56 ", "12,816,580", "-7", "0", "N/A", "", None, "1,23", "12.5", "１２", "1e3"], dtype=object
    )
    parsed = parse_integer_text(values)
    assert parsed.tolist()[:5] == [1234, 56, 12816580, -7, 0]
    assert parsed.iloc[5:].isna().all()
    assert str(parsed.dtype) == "Int64"


@given(st.integers(min_value=0, max_value=10**15 - 1))
def test_every_non_negative_integer_round_trips_with_and_without_separators(number: int) -> None:
    parsed = parse_integer_text(pd.Series([str(number), f"{number:,}"], dtype=object))
    assert parsed.tolist() == [number, number]


def test_names_are_trimmed_and_amounts_typed() -> None:
    typed = type_flower_rows(frame(served(pum_name=" 장미 ", max_amt="4,300")))
    assert typed.loc[0, "pum_name"] == "장미"
    assert typed.loc[0, "max_amt"] == 4300


# --------------------------------------------------------------------------- row validation


def test_a_consistent_row_passes_and_becomes_plain_integers() -> None:
    validation = validate_flower_rows(frame(served(), served(lv_nm="특1", max_amt="5,000")))
    assert validation.reasons == {}
    valid = plain_valid_rows(validation)
    assert len(valid) == 2
    assert valid["max_amt"].tolist() == [4300, 5000]
    assert str(valid["tot_qty"].dtype) == "int64"


def test_min_above_max_is_rejected_with_the_three_amounts_as_served() -> None:
    [reasons] = reasons_of([served(min_amt="5300")])
    assert {
        "column": "minAmt,avgAmt,maxAmt",
        "check": "min_le_avg_le_max",
        "value": {"minAmt": "5300", "avgAmt": "3243", "maxAmt": "4300"},
    } in reasons


def test_a_non_numeric_amount_is_rejected_as_not_an_integer_with_its_text() -> None:
    [reasons] = reasons_of([served(tot_amt="N/A")])
    assert reasons == [{"column": "totAmt", "check": "integer", "value": "N/A"}]


def test_an_empty_or_missing_value_is_reported_as_required() -> None:
    [empty, missing] = reasons_of([served(tot_qty=""), served(lv_nm="특1", good_name=None)])
    assert {"column": "totQty", "check": "required", "value": ""} in empty
    assert {"column": "goodName", "check": "required", "value": None} in missing


def test_a_negative_amount_is_rejected() -> None:
    [reasons] = reasons_of([served(min_amt="-1050")])
    assert {"column": "minAmt", "check": "non_negative", "value": "-1050"} in reasons


def test_the_average_must_be_the_rounded_total_over_the_quantity_within_one_won() -> None:
    ok_by_one, off_by_two, zero_quantity = reasons_of(
        [
            served(avg_amt="3244"),
            served(lv_nm="특1", avg_amt="3245"),
            served(lv_nm="특3", tot_qty="0", tot_amt="0", min_amt="0", avg_amt="0", max_amt="0"),
        ]
    )
    assert ok_by_one == []
    assert [r["check"] for r in off_by_two] == ["avg_is_total_over_quantity"]
    assert [r["check"] for r in zero_quantity] == ["avg_is_total_over_quantity"]


def test_a_row_served_for_another_date_or_group_is_rejected() -> None:
    other_date, other_group = reasons_of(
        [served(sale_date_raw="2026-03-08"), served(lv_nm="특1", flower_gubn_raw="관엽")]
    )
    assert other_date == [{"column": "saleDate", "check": "sale_date_is_partition", "value": "2026-03-08"}]
    assert other_group == [{"column": "flowerGubn", "check": "flower_gubn_matches_request", "value": "관엽"}]


def test_both_copies_of_a_repeated_key_are_rejected_and_reported_as_duplicates() -> None:
    rows = [served(), served(row_in_page=2, pum_name="거베라 "), served(lv_nm="특1")]
    validation = validate_flower_rows(frame(*rows))
    assert sorted(validation.reasons) == [0, 1]
    assert all(r[0]["check"] == "unique_key" for r in validation.reasons.values())
    duplicates = duplicate_keys(validation.typed)
    assert duplicates[["pum_name", "lv_nm", "copies"]].values.tolist() == [["거베라", "특2", 2]]


def test_every_failure_of_a_row_is_collected() -> None:
    [reasons] = reasons_of([served(min_amt="-5", tot_amt="N/A", lv_nm="")])
    checks = {(r["column"], r["check"]) for r in reasons}
    assert {("minAmt", "non_negative"), ("totAmt", "integer"), ("lvNm", "not_blank")} <= checks


# --------------------------------------------------------------------------- price invariants per group


def _group(n: int, gubn: int = 3, **overrides) -> list[dict]:
    return [
        served(flower_gubn=gubn, flower_gubn_raw={1: "절화", 3: "난"}[gubn], good_name=f"품종{i}", **overrides)
        for i in range(n)
    ]


def test_a_group_whose_every_priced_row_breaks_the_invariants_is_reported() -> None:
    rows = _group(4, min_amt="9999") + _group(5, gubn=1)
    typed = validate_flower_rows(frame(*rows)).typed
    failing = groups_failing_price_invariants(typed, min_rows=3)
    assert failing[["flower_gubn", "priced_rows", "failing_rows"]].values.tolist() == [[3, 4, 4]]


def test_one_good_row_or_a_tiny_group_keeps_a_group_from_being_reported() -> None:
    one_good = [*_group(3, min_amt="9999"), served(flower_gubn=3, flower_gubn_raw="난", good_name="좋은")]
    tiny = _group(2, gubn=1, min_amt="9999")
    typed = validate_flower_rows(frame(*(one_good + tiny))).typed
    assert groups_failing_price_invariants(typed, min_rows=3).empty


# --------------------------------------------------------------------------- volume anomaly

RULE = VolumeRule()
NOT_CLOSED = lambda d: None  # noqa: E731 - a calendar without closures, for synthetic histories
TODAY = date(2030, 1, 1)


def _weekly(start: date, weeks: int, rows: int, quantity: int) -> dict[date, dict[int, GroupVolume]]:
    return {start + timedelta(weeks=w): {1: GroupVolume(rows, quantity)} for w in range(weeks)}


def test_a_day_that_lost_most_of_its_rows_or_doubled_thrice_is_an_anomaly() -> None:
    history = _weekly(MONDAY - timedelta(weeks=4), 4, 1000, 1_000_000)
    low = MONDAY
    anomalies, _ = find_volume_anomalies(
        {low: {1: GroupVolume(100, 100_000)}}, history, RULE, today=TODAY, non_auction=NOT_CLOSED
    )
    assert {(a.sale_date, a.flower_gubn, a.measure) for a in anomalies} == {(low, 1, "rows"), (low, 1, "quantity")}
    high, _ = find_volume_anomalies(
        {low: {1: GroupVolume(3500, 1_000_000)}}, history, RULE, today=TODAY, non_auction=NOT_CLOSED
    )
    assert [(a.measure, round(a.ratio, 1)) for a in high] == [("rows", 3.5)]


def test_a_normal_day_a_holiday_and_a_day_without_history_are_not_anomalies() -> None:
    history = _weekly(MONDAY - timedelta(weeks=4), 4, 1000, 1_000_000)
    run = {MONDAY: {1: GroupVolume(900, 950_000)}, MONDAY + timedelta(weeks=30): {1: GroupVolume(0, 0)}}
    closed = {MONDAY + timedelta(weeks=30)}
    anomalies, not_judged = find_volume_anomalies(
        run, history, RULE, today=TODAY, non_auction=lambda d: "public holiday" if d in closed else None
    )
    assert anomalies == []
    assert not_judged == {MONDAY + timedelta(weeks=30): "no auction (public holiday)"}
    _, without_history = find_volume_anomalies(
        {MONDAY: {1: GroupVolume(0, 0)}}, {}, RULE, today=TODAY, non_auction=NOT_CLOSED
    )
    assert "0 earlier same-weekday auction dates known, 3 needed" in without_history[MONDAY]


def test_small_groups_are_not_judged_and_the_unsettled_newest_date_is_not_judged_low() -> None:
    history = _weekly(MONDAY - timedelta(weeks=4), 4, 20, 500)
    small, _ = find_volume_anomalies(
        {MONDAY: {1: GroupVolume(1, 5)}}, history, RULE, today=TODAY, non_auction=NOT_CLOSED
    )
    assert small == []
    big_history = _weekly(MONDAY - timedelta(weeks=4), 4, 1000, 1_000_000)
    in_settlement, _ = find_volume_anomalies(
        {MONDAY: {1: GroupVolume(0, 0)}}, big_history, RULE, today=MONDAY, non_auction=NOT_CLOSED
    )
    assert in_settlement == []
    doubled_thrice, _ = find_volume_anomalies(
        {MONDAY: {1: GroupVolume(4000, 4_000_000)}}, big_history, RULE, today=MONDAY, non_auction=NOT_CLOSED
    )
    assert len(doubled_thrice) == 2


def test_earlier_dates_of_the_same_run_are_history_and_holidays_are_left_out_of_it() -> None:
    first = MONDAY - timedelta(weeks=4)
    run = {**_weekly(first, 4, 1000, 1_000_000), MONDAY: {1: GroupVolume(50, 50_000)}}
    holiday = first + timedelta(weeks=1)
    run[holiday] = {1: GroupVolume(0, 0)}
    anomalies, _not_judged = find_volume_anomalies(
        run, {}, RULE, today=TODAY, non_auction=lambda d: "public holiday" if d == holiday else None
    )
    assert [a.sale_date for a in anomalies] == [MONDAY, MONDAY]
    assert anomalies[0].history_dates == 3  # the holiday is no baseline


def test_volumes_per_date_and_group_count_valid_rows_and_quantities() -> None:
    rows = plain_valid_rows(validate_flower_rows(frame(served(), served(lv_nm="특1"))))
    volumes = volumes_by_date(rows, [MONDAY, MONDAY + timedelta(days=1)])
    assert volumes[MONDAY][1] == GroupVolume(2, 2 * 3952)
    assert volumes[MONDAY][2] == GroupVolume(0, 0)
    assert volumes[MONDAY + timedelta(days=1)][1] == GroupVolume(0, 0)


@pytest.fixture(scope="module")
def simulated_year() -> dict[date, dict[int, GroupVolume]]:
    """Rows and quantities per date and group that the simulator serves, settled, for 2025."""
    sim = Simulator(today=date(2026, 1, 10))
    year = {}
    for offset in range(365):
        day = date(2025, 1, 1) + timedelta(days=offset)
        year[day] = {}
        for gubn in (1, 2, 3, 4):
            rows = sim.flower_rows(day.isoformat(), str(gubn))
            year[day][gubn] = GroupVolume(len(rows), sum(int(row[9]) for row in rows))
    return year


def test_the_default_volume_rule_raises_no_false_alarm_over_a_simulated_year(simulated_year) -> None:
    anomalies, not_judged = find_volume_anomalies(
        simulated_year, {}, RULE, today=date(2026, 1, 10), non_auction=non_auction_reason
    )
    assert anomalies == []
    assert len(not_judged) < 120  # Sundays, holidays and the first weeks: most dates are judged


def test_the_default_volume_rule_catches_an_auction_day_served_empty_in_that_year(simulated_year) -> None:
    outage = date(2025, 6, 16)  # a Monday with a formal 절화 auction
    year = {**simulated_year, outage: {g: GroupVolume(0, 0) for g in (1, 2, 3, 4)}}
    anomalies, _ = find_volume_anomalies(year, {}, RULE, today=date(2026, 1, 10), non_auction=non_auction_reason)
    assert {(a.sale_date, a.flower_gubn) for a in anomalies} == {(outage, 1)}


# --------------------------------------------------------------------------- a run's dates together


def test_each_date_of_a_run_gets_its_own_rows_rejections_and_verdict() -> None:
    tuesday = MONDAY + timedelta(days=1)
    raw = frame(
        served(),
        served(row_in_page=2),  # the same key again: a duplicate on Monday
        served(sale_date=tuesday, sale_date_raw=tuesday.isoformat()),
        served(sale_date=tuesday, sale_date_raw=tuesday.isoformat(), lv_nm="특1", tot_amt="N/A"),
    )
    outcome = validate_flower_days(
        raw,
        [MONDAY, tuesday, tuesday + timedelta(days=1)],
        history={},
        rule=RULE,
        today=TODAY,
        non_auction=NOT_CLOSED,
    )
    monday, tue, wednesday = outcome.days.values()
    assert monday.blocking_failures == (CHECK_DUPLICATE_KEYS,) and not monday.writable
    assert (monday.served, len(monday.rows), monday.rejected) == (2, 0, 2)
    assert tue.writable and (tue.served, len(tue.rows), tue.rejected) == (2, 1, 1)
    assert outcome.rejected[tuesday][0][0]["totAmt"] == "N/A"
    assert outcome.rejected[tuesday][0][1] == [{"column": "totAmt", "check": "integer", "value": "N/A"}]
    assert wednesday.writable and (wednesday.served, len(wednesday.rows)) == (0, 0)
    assert outcome.failed_dates == {CHECK_DUPLICATE_KEYS: [MONDAY], CHECK_PRICE_INVARIANTS: [], CHECK_VOLUME: []}
    assert (outcome.served_rows, outcome.valid_rows, outcome.rejected_rows) == (4, 1, 3)


# --------------------------------------------------------------------------- calendar


def test_sundays_public_holidays_and_declared_closures_have_no_auction() -> None:
    assert non_auction_reason(date(2026, 3, 8)) == "Sunday"
    assert non_auction_reason(date(2026, 3, 2)) == "public holiday: Alternative holiday for Independence Movement Day"
    assert non_auction_reason(date(2025, 10, 6)) == "public holiday: Chuseok"
    assert non_auction_reason(MONDAY) is None
    assert non_auction_reason(MONDAY, {MONDAY}) == "declared market closure"
