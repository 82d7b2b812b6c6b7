"""The flower sync through Dagster: the simulator over real sockets, the embedded PostgreSQL.

Each test is one "done means" behaviour of the flower issue: a Monday and empty days, re-runs,
late settlement corrections, a one-month single-run backfill, bad rows, API errors, transient
failures, the blocking checks, and the daily run.
"""

from __future__ import annotations

import functools
import pickle
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from aed_pipeline.defs.at_flower import tables as flower_table_defs
from aed_pipeline.defs.at_flower.assets import flower_auction_raw, flower_auction_validated, public_bidding_flowers
from aed_pipeline.defs.at_flower.jobs import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    flower_daily_run_request,
    flower_sync_job,
)
from aed_pipeline.defs.at_flower.resources import AtFlowerApiResource
from aed_pipeline.defs.at_flower.tables import flower_tables
from aed_pipeline.lib.at_flower import validate as flower_validate
from aed_pipeline.lib.at_flower.calendar import non_auction_reason
from aed_pipeline.lib.at_flower.checks import VolumeRule
from aed_pipeline.lib.at_flower.fetch import archived_flower_day
from aed_pipeline.lib.at_flower.rows import StoredFlowerDay, ValidatedRowsMissing, ValidatedRowsStore
from aed_pipeline.lib.at_flower.validate import CHECK_DUPLICATE_KEYS, CHECK_PRICE_INVARIANTS, CHECK_VOLUME
from aed_pipeline.lib.at_flower.write.audit import POST_WRITE_CHECKS
from aed_pipeline.lib.at_flower.write.normalised import write_bidding_days
from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.simulator import Simulator, SimulatorServer
from aed_pipeline_tests.support.flower_support import ASSETS, KEY, NO_WAIT, SETTLED, flower_resources, run
from aed_pipeline_tests.support.helpers import DUPLICATE_A_SERVED_FLOWER_ROW, FLOWER_TABLES, table_state

MONDAY = date(2026, 3, 9)
SUNDAY = date(2026, 3, 8)
HOLIDAY = date(2026, 3, 2)  # Alternative holiday for Independence Movement Day (a Monday)


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(today=SETTLED, at_service_keys={KEY})


@pytest.fixture(scope="module")
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as running:
        yield running


@pytest.fixture(autouse=True)
def clean_simulator(sim: Simulator) -> Iterator[None]:
    sim.reset_faults()
    sim.reset_counters()
    sim.today = SETTLED
    yield
    sim.reset_faults()


@pytest.fixture
def resources(server: SimulatorServer, fresh_database_url: str, tmp_path: Path) -> dict:
    return flower_resources(server, fresh_database_url, tmp_path)


@pytest.fixture
def engine(resources: dict) -> sa.Engine:
    return resources["warehouse"].engine()


def scalar(engine: sa.Engine, statement: str, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(statement), params).scalar_one()


def rows(engine: sa.Engine, statement: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(statement), params).all()]


def served_per_group(sim: Simulator, day: date) -> dict[int, int]:
    return {gubn: len(sim.flower_rows(day.isoformat(), str(gubn))) for gubn in (1, 2, 3, 4)}


def materialization(result: dg.ExecuteInProcessResult, asset: str, day: date) -> dict:
    """The metadata values of ``asset``'s materialisation for ``day`` in this run."""
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        if mat.asset_key == dg.AssetKey(asset) and mat.partition == day.isoformat():
            return {key: value.value for key, value in mat.metadata.items()}
    raise AssertionError(f"no materialisation of {asset} for {day}")


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    [failure] = result.get_step_failure_events()
    return failure.step_failure_data.error.to_string()


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def bidding_snapshot(engine: sa.Engine) -> list[tuple]:
    return rows(
        engine,
        "SELECT id, sale_date, flower_id, grade, min_price, avg_price, max_price, total_amount, "
        "quantity, updated_at FROM bidding_flowers ORDER BY id",
    )


def nothing_written(engine: sa.Engine) -> bool:
    """No table holds a row, and the sync log holds no sync but failed ones."""
    return scalar(engine, "SELECT count(*) FROM sync_runs WHERE status <> 'failed'") == 0 and all(
        scalar(engine, f"SELECT count(*) FROM {table}") == 0
        for table in ("public_bidding_flowers", "bidding_flowers", "flowers", "rejected_records")
    )


# --------------------------------------------------------------------------- one date


def test_a_monday_of_cut_flowers_lands_in_every_table_with_its_auction_date(sim, resources, engine) -> None:
    result = run(resources, day=MONDAY)
    assert result.success
    expected = served_per_group(sim, MONDAY)
    total = sum(expected.values())
    assert 800 <= expected[1] <= 1400

    assert dict(rows(engine, "SELECT flower_gubn, count(*) FROM public_bidding_flowers GROUP BY 1")) == {
        gubn: n for gubn, n in expected.items() if n
    }
    assert rows(engine, "SELECT sale_date, count(*) FROM bidding_flowers GROUP BY 1") == [(MONDAY, total)]
    assert rows(engine, "SELECT table_name, status, fetched, inserted, rejected FROM sync_runs ORDER BY 1") == [
        ("bidding_flowers", "success", total, total, 0),
        ("public_bidding_flowers", "success", total, total, 0),
    ]
    raw = materialization(result, "flower_auction_raw", MONDAY)
    # A configured key is the live API to the resource, even at the simulator server's URL.
    assert (raw["dagster/partition_row_count"], raw["auction"], raw["source"]) == (total, "yes", "live")
    assert raw["rows_by_group"] == {"절화": expected[1], "관엽": expected[2], "난": expected[3], "춘란": expected[4]}
    table = materialization(result, "bidding_flowers", MONDAY)
    assert (table["dagster/partition_row_count"], table["rows_written"], table["source"]) == (total, total, "live")
    assert table["top_10_by_quantity"].count("\n") == 11  # header, rule and ten rows
    types = materialization(result, "flower_types", MONDAY)
    assert types["new_types"] == scalar(engine, "SELECT count(*) FROM flower_types") == types["dagster/row_count"]
    assert all(evaluation.passed for evaluation in check_results(result).values())
    assert set(check_results(result)) == {
        CHECK_DUPLICATE_KEYS,
        CHECK_PRICE_INVARIANTS,
        CHECK_VOLUME,
        *POST_WRITE_CHECKS,
    }
    assert table["corrections"] == 0 and table["corrections_sample"].startswith("none")
    assert KEY not in repr(result.all_events)


def test_the_tables_report_their_whole_row_count_and_each_date_its_slice(resources, engine) -> None:
    first = run(resources, day=MONDAY)
    second = run(resources, day=MONDAY + timedelta(days=2))
    assert first.success and second.success
    wednesday = MONDAY + timedelta(days=2)
    for asset, table in (("public_bidding_flowers", "public_bidding_flowers"), ("bidding_flowers", "bidding_flowers")):
        meta = materialization(second, asset, wednesday)
        assert meta["dagster/partition_row_count"] == scalar(
            engine, f"SELECT count(*) FROM {table} WHERE sale_date = :day", day=wednesday
        )
        assert meta["dagster/row_count"] == scalar(engine, f"SELECT count(*) FROM {table}")
        assert meta["dagster/row_count"] > meta["dagster/partition_row_count"] > 0
    top = materialization(second, "bidding_flowers", wednesday)["top_10_by_quantity"]
    assert top.splitlines()[0].startswith("| 품목 (item) | 품종 (variety) | 등급 (grade) |")


def test_one_selected_flower_table_still_writes_all_three_in_one_transaction(resources, engine) -> None:
    upstream = [flower_auction_raw, public_bidding_flowers, flower_auction_validated]
    assert run(resources, day=MONDAY, selection=upstream).success
    with dg.instance_for_test() as instance:
        only = dg.materialize(
            ASSETS,
            selection=[dg.AssetKey("flowers")],
            partition_key=MONDAY.isoformat(),
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
        logged = [entry.user_message for entry in instance.all_logs(only.run_id)]
    assert only.success
    # Only the selected table is reported; the three are written, the other two said so in the log.
    assert {e.asset_key.to_user_string() for e in only.get_asset_materialization_events()} == {"flowers"}
    assert scalar(engine, "SELECT count(*) FROM bidding_flowers WHERE sale_date = :d", d=MONDAY) > 0
    assert scalar(engine, "SELECT count(*) FROM flower_types") > 0
    assert materialization(only, "flowers", MONDAY)["dagster/row_count"] == scalar(
        engine, "SELECT count(*) FROM flowers"
    )
    assert any("writing flower_types, bidding_flowers as well, beyond the selection" in m for m in logged), logged


def test_the_tables_declare_their_name_and_column_schema(engine) -> None:
    for key in ("flower_types", "flowers", "bidding_flowers"):
        metadata = flower_tables.specs_by_key[dg.AssetKey(key)].metadata
        assert metadata["dagster/table_name"] == f"public.{key}"
        assert isinstance(metadata["dagster/column_schema"], dg.TableSchema)
    # Every column of the table or view, described, in the order the database has them.
    for spec in (
        flower_table_defs.bidding_flowers_history,
        flower_table_defs.bidding_flowers_versions,
        flower_tables.specs_by_key[dg.AssetKey("bidding_flowers")],
    ):
        name = spec.key.path[-1]
        assert spec.metadata["dagster/table_name"] == f"public.{name}"
        columns = spec.metadata["dagster/column_schema"].columns
        assert all(column.description for column in columns if column.name not in ("created_at", "updated_at"))
        assert [column.name for column in columns] == [
            row[0]
            for row in rows(
                engine,
                "SELECT column_name FROM information_schema.columns WHERE table_name = :t ORDER BY ordinal_position",
                t=name,
            )
        ]
    assert (
        "dagster/column_schema" in public_bidding_flowers.specs_by_key[dg.AssetKey("public_bidding_flowers")].metadata
    )


def test_without_a_key_every_materialisation_says_the_data_came_from_the_simulator(resources) -> None:
    resources["at_flower_api"] = AtFlowerApiResource()  # no key: the built-in simulator
    result = run(resources, day=SUNDAY)
    assert result.success
    for asset in (
        "flower_auction_raw",
        "public_bidding_flowers",
        "flower_auction_validated",
        "flower_types",
        "flowers",
        "bidding_flowers",
    ):
        assert materialization(result, asset, SUNDAY)["source"] == "simulator"


@pytest.mark.parametrize(
    ("day", "reason"), [(SUNDAY, "no auction (Sunday)"), (HOLIDAY, "no auction (public holiday: Alternative")]
)
def test_a_sunday_or_a_public_holiday_succeeds_with_zero_rows_and_says_so(resources, engine, day, reason) -> None:
    result = run(resources, day=day)
    assert result.success
    raw = materialization(result, "flower_auction_raw", day)
    assert raw["dagster/partition_row_count"] == 0 and raw["auction"].startswith(reason)
    assert materialization(result, "bidding_flowers", day)["dagster/partition_row_count"] == 0
    assert scalar(engine, "SELECT count(*) FROM bidding_flowers") == 0
    assert rows(engine, "SELECT table_name, status, fetched FROM sync_runs ORDER BY 1") == [
        ("bidding_flowers", "success", 0),
        ("public_bidding_flowers", "success", 0),
    ]


def test_rerunning_a_date_changes_nothing(resources, engine) -> None:
    assert run(resources, day=MONDAY).success
    before = bidding_snapshot(engine)
    public_before = scalar(engine, "SELECT count(*) FROM public_bidding_flowers")
    assert run(resources, day=MONDAY).success
    assert bidding_snapshot(engine) == before
    assert scalar(engine, "SELECT count(*) FROM public_bidding_flowers") == public_before
    assert rows(
        engine,
        "SELECT inserted, updated, deleted, unchanged FROM sync_runs WHERE table_name = 'bidding_flowers' ORDER BY id",
    ) == [
        (len(before), 0, 0, 0),
        (0, 0, 0, len(before)),
    ]


def test_a_corrected_settlement_is_picked_up_by_the_refetch(sim, resources, engine) -> None:
    sim.today = MONDAY + timedelta(days=1)  # the day after: every row, a few with provisional prices
    assert run(resources, day=MONDAY).success
    provisional = rows(engine, "SELECT avg_price, total_amount FROM bidding_flowers ORDER BY id")
    sim.today = MONDAY + timedelta(days=2)  # settled: the provisional prices are corrected
    assert run(resources, day=MONDAY).success

    final = {
        (row[2], row[3], row[4]): (int(row[6]), int(row[7]), int(row[5]), int(row[8]), int(row[9]))
        for gubn in (1, 2, 3, 4)
        for row in sim.flower_rows(MONDAY.isoformat(), str(gubn))
    }
    stored = {
        (pum, good, grade): (low, avg, high, total, quantity)
        for pum, good, grade, low, avg, high, total, quantity in rows(
            engine,
            "SELECT t.name, f.name, b.grade, b.min_price, b.avg_price, b.max_price, b.total_amount, b.quantity "
            "FROM bidding_flowers b JOIN flowers f ON f.id = b.flower_id JOIN flower_types t ON t.id = f.flower_type_id",
        )
    }
    assert stored == final
    corrected = rows(engine, "SELECT updated FROM sync_runs WHERE table_name = 'bidding_flowers' ORDER BY id")[-1][0]
    changed = sum(
        a != b
        for a, b in zip(provisional, rows(engine, "SELECT avg_price, total_amount FROM bidding_flowers ORDER BY id"))
    )
    assert corrected == changed > 0


# --------------------------------------------------------------------------- the versions kept

VALUES = "v.min_price, v.avg_price, v.max_price, v.total_amount, v.quantity"
ROOT = Path(__file__).resolve().parents[2]


def documented_queries(path: Path) -> list[str]:
    """The SQL blocks of a document that read the flower versions."""
    blocks = re.findall(r"```sql\n(.*?);\n```", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [block for block in blocks if "bidding_flowers_versions" in block]


def served_values(sim: Simulator, day: date) -> dict[tuple, tuple]:
    """What the simulator serves today for ``day``: (group, 품목, 품종, 등급) → (min, avg, max, total, qty)."""
    return {
        (gubn, row[2], row[3], row[4]): (int(row[6]), int(row[7]), int(row[5]), int(row[8]), int(row[9]))
        for gubn in (1, 2, 3, 4)
        for row in sim.flower_rows(day.isoformat(), str(gubn))
    }


def stored_versions(engine: sa.Engine, day: date) -> dict[tuple, list[tuple]]:
    """Every version of ``day`` in bidding_flowers_versions, per key, first published first."""
    versions: dict[tuple, list[tuple]] = {}
    for gubn, pum, good, grade, *rest in rows(
        engine,
        f"SELECT v.flower_gubn, t.name, f.name, v.grade, {VALUES}, v.version, v.is_current, v.published_run_id, "
        "v.replaced_run_id, v.end_reason FROM bidding_flowers_versions v JOIN flowers f ON f.id = v.flower_id "
        "JOIN flower_types t ON t.id = f.flower_type_id WHERE v.sale_date = :d ORDER BY 1, 2, 3, 4, v.version",
        d=day,
    ):
        versions.setdefault((gubn, pum, good, grade), []).append(tuple(rest))
    return versions


def test_the_late_settlement_leaves_exactly_the_versions_the_simulator_served(sim, resources, engine) -> None:
    """Partial on the day, complete (some prices provisional) the next, final two days after: each
    sync of the date on those days adds exactly the versions it was served, field for field."""
    served: dict[tuple, list[tuple[tuple, str]]] = {}  # key → [(values, run id)] as served, changes only
    metadata = []
    for offset in (0, 1, 2, 3):  # the fourth day serves the final rows again: nothing to write
        sim.today = MONDAY + timedelta(days=offset)
        result = run(resources, day=MONDAY)
        assert result.success
        metadata.append(materialization(result, "bidding_flowers", MONDAY))
        for key, values in served_values(sim, MONDAY).items():
            if not served.get(key) or served[key][-1][0] != values:
                served.setdefault(key, []).append((values, result.run_id))

    stored = stored_versions(engine, MONDAY)
    assert set(stored) == set(served) == set(served_values(sim, MONDAY))
    for key, versions in served.items():
        expected = [
            (
                *values,
                number,
                number == len(versions),  # the last one served is the current one
                run_id,
                None if number == len(versions) else versions[number][1],  # replaced by the next run
                None if number == len(versions) else "corrected",
            )
            for number, (values, run_id) in enumerate(versions, start=1)
        ]
        assert stored[key] == expected, key
    # Some rows were first published partial-day with their final prices, turned provisional the
    # next day and back to final after: three versions.
    assert {len(v) for v in served.values()} == {1, 2, 3}
    history = scalar(engine, "SELECT count(*) FROM bidding_flowers_history WHERE sale_date = :d", d=MONDAY)
    assert history == sum(len(v) - 1 for v in served.values())

    corrections = [m["corrections"] for m in metadata]
    assert corrections[0] == 0 and corrections[1] > 0 and corrections[2] > 0 and corrections[3] == 0
    assert sum(corrections) == history
    assert " → " in metadata[2]["corrections_sample"] and "avg_price" in metadata[2]["corrections_sample"]
    assert rows(engine, "SELECT updated, deleted FROM sync_runs WHERE table_name = 'bidding_flowers' ORDER BY id") == [
        (0, 0),
        (corrections[1], 0),
        (corrections[2], 0),
        (0, 0),
    ]

    # The README's query (first-published against final prices of the day) gives those versions' ends;
    # the queries of docs/flower-sync.md run as written.
    [readme_query] = documented_queries(ROOT / "README.md")
    expected_ends = {
        (MONDAY, pum, good, grade, versions[0][0][1], versions[-1][0][1], len(versions))
        for (_, pum, good, grade), versions in served.items()
        if len(versions) > 1
    }
    assert set(rows(engine, readme_query)) == expected_ends
    docs = documented_queries(ROOT / "docs" / "flower-sync.md")
    assert docs[0] == readme_query and len(docs) == 2
    rows(engine, docs[1])


def test_a_violation_before_commit_fails_the_run_with_the_checks_and_rolls_that_date_back(
    sim, resources, engine, monkeypatch
) -> None:
    tuesday = MONDAY + timedelta(days=1)
    sim.today = tuesday + timedelta(days=1)  # Monday final, Tuesday's prices partly provisional
    assert run(resources, first=MONDAY, last=tuesday).success
    before = table_state(engine, (*FLOWER_TABLES, "bidding_flowers_history"))

    calls = []

    def tamper_with_the_second_date(conn) -> None:  # after the write, before the checks
        calls.append(1)
        if len(calls) == 2:
            conn.execute(
                sa.text(
                    "UPDATE bidding_flowers SET total_amount = total_amount + 10 "
                    "WHERE id = (SELECT min(id) FROM bidding_flowers WHERE sale_date = :d)"
                ),
                {"d": tuesday},
            )

    monkeypatch.setattr(
        flower_table_defs,
        "write_bidding_days",
        functools.partial(write_bidding_days, after_write=tamper_with_the_second_date),
    )
    sim.today = tuesday + timedelta(days=2)  # Tuesday settled: its corrections would be written
    result = run(resources, first=MONDAY, last=tuesday)
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error.cause is None  # one sentence, no chained traceback
    assert error.message.count("\n") <= 1
    assert "post-write checks failed inside the transaction of bidding_flowers 2026-03-10" in error.message
    assert "rolled back" in error.message and "slice_matches_validated FAILED" in error.message

    evaluations = check_results(result)
    assert {name: evaluations[name].passed for name in POST_WRITE_CHECKS} == {
        "slice_matches_validated": False,
        "keys_unique_in_slice": True,
        "prices_ordered_in_slice": True,
        "replaced_versions_kept": True,
    }
    failed = evaluations["slice_matches_validated"]
    assert failed.blocking and failed.metadata["dates_failed"].value == tuesday.isoformat()
    assert failed.metadata["dates_checked"].value == 2
    assert "in the table, not validated: " in failed.metadata["failing_examples"].value
    assert not result.get_asset_materialization_events() or all(
        e.asset_key.to_user_string() not in ("bidding_flowers", "flowers", "flower_types")
        for e in result.get_asset_materialization_events()
    )
    # Monday was written again unchanged, Tuesday rolled back: every table as before.
    assert table_state(engine, (*FLOWER_TABLES, "bidding_flowers_history")) == {
        **before,
        "public_bidding_flowers": table_state(engine, ("public_bidding_flowers",))["public_bidding_flowers"],
    }
    status, error_type, message = rows(
        engine,
        "SELECT status, error_type, error FROM sync_runs WHERE table_name = 'bidding_flowers' "
        "AND partition_key = :d ORDER BY id DESC LIMIT 1",
        d=tuesday.isoformat(),
    )[0]
    assert (status, error_type) == ("failed", "PostWriteChecksFailed") and "slice_matches_validated" in message
    assert rows(
        engine,
        "SELECT status FROM sync_runs WHERE table_name = 'bidding_flowers' AND partition_key = :d ORDER BY id",
        d=MONDAY.isoformat(),
    ) == [("success",), ("success",)]


# --------------------------------------------------------------------------- a range in one run


def test_a_month_backfill_is_one_run_writing_every_date_once(sim, resources, engine) -> None:
    first, last = date(2026, 2, 1), date(2026, 2, 28)
    result = run(resources, first=first, last=last)
    assert result.success
    steps = [event.step_key for event in result.all_events if event.event_type_value == "STEP_SUCCESS"]
    assert sorted(steps) == sorted(
        ["flower_auction_raw", "public_bidding_flowers", "flower_auction_validated", "flower_tables"]
    )
    dates = [first + timedelta(days=n) for n in range(28)]
    expected = {d: sum(served_per_group(sim, d).values()) for d in dates}
    assert dict(rows(engine, "SELECT sale_date, count(*) FROM public_bidding_flowers GROUP BY 1")) == {
        d: n for d, n in expected.items() if n
    }
    assert dict(rows(engine, "SELECT sale_date, count(*) FROM bidding_flowers GROUP BY 1")) == {
        d: n for d, n in expected.items() if n
    }
    assert rows(
        engine,
        "SELECT table_name, count(DISTINCT partition_key), count(*) FROM sync_runs "
        "WHERE status = 'success' GROUP BY 1 ORDER BY 1",
    ) == [
        ("bidding_flowers", 28, 28),
        ("public_bidding_flowers", 28, 28),
    ]
    for asset in (
        "flower_auction_raw",
        "public_bidding_flowers",
        "flower_auction_validated",
        "flower_types",
        "flowers",
        "bidding_flowers",
    ):
        assert {
            e.event_specific_data.materialization.partition
            for e in result.get_asset_materialization_events()
            if e.event_specific_data.materialization.asset_key == dg.AssetKey(asset)
        } == {d.isoformat() for d in dates}
    for d in dates:
        assert materialization(result, "bidding_flowers", d)["dagster/partition_row_count"] == expected[d]
    seollal = materialization(result, "flower_auction_raw", date(2026, 2, 17))
    assert seollal["auction"] == "no auction (public holiday: Korean New Year)"
    summary = materialization(result, "flower_auction_raw", last)
    assert "2026-02-17 (no auction (public holiday: Korean New Year))" in summary["run_dates_without_auction"]
    assert summary["run_dates"] == "2026-02-01 … 2026-02-28 (28 dates)"


# --------------------------------------------------------------------------- bad input


def test_bad_rows_are_rejected_with_reasons_and_the_rest_land(sim, resources, engine) -> None:
    sim.faults.at_bad_rows = True  # in each page: row 1 minAmt > maxAmt, row 2 totAmt "N/A"
    result = run(resources, day=MONDAY)
    assert result.success
    served = served_per_group(sim, MONDAY)
    pages_with_bad_rows = sum(1 for n in served.values() for start in range(0, n, 1000) if min(1000, n - start) >= 2)
    rejected = rows(
        engine, "SELECT record, failed_checks FROM rejected_records WHERE partition_key = :key", key=MONDAY.isoformat()
    )
    assert len(rejected) == 2 * pages_with_bad_rows
    checks = [check for _, failed in rejected for check in failed]
    assert {"column": "totAmt", "check": "integer", "value": "N/A"} in checks
    order = [check for check in checks if check["check"] == "min_le_avg_le_max"]
    assert len(order) == pages_with_bad_rows
    assert int(order[0]["value"]["minAmt"]) > int(order[0]["value"]["maxAmt"])
    assert any(record["totAmt"] == "N/A" and record["saleDate"] == MONDAY.isoformat() for record, _ in rejected)
    total = sum(served.values())
    assert scalar(engine, "SELECT count(*) FROM bidding_flowers") == total - len(rejected)
    assert rows(engine, "SELECT fetched, inserted, rejected FROM sync_runs WHERE table_name = 'bidding_flowers'") == [
        (total, total - len(rejected), len(rejected))
    ]
    assert all(evaluation.passed for evaluation in check_results(result).values())


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"at_result_code": 1}, "service key error (resultCd 1"),
        ({"at_expired_keys": {KEY}}, "service key outside its validity period (resultCd 2"),
        ({"at_unapproved_keys": {KEY}}, "service key not approved (resultCd 3"),
        ({"at_daily_quota": 0}, "daily call quota of the aT flower service key is exhausted (resultCd 4"),
        ({"at_result_code": 5}, "invalid request parameter (resultCd 5"),
        ("unknown key", "the aT API returned a non-JSON body"),
    ],
    ids=["resultCd1", "resultCd2", "resultCd3", "quota", "bad-parameter", "non-json"],
)
def test_an_api_error_fails_the_run_at_once_with_a_clear_message_and_writes_nothing(
    sim, resources, engine, tmp_path, fault, message
) -> None:
    if fault == "unknown key":
        resources["at_flower_api"] = AtFlowerApiResource(service_key="MARKERUNKNOWNKEY", base_url=sim_url(resources))
    else:
        for name, value in fault.items():
            setattr(sim.faults, name, value)
    result = run(resources, day=MONDAY)
    assert not result.success
    text = failure_message(result)
    assert message in text
    assert "aT flower f001 flowerGubn=" in text and "baseDate=2026-03-09" in text
    assert [e.step_key for e in result.get_step_failure_events()] == ["flower_auction_raw"]
    assert not any(event.event_type_value == "STEP_UP_FOR_RETRY" for event in result.all_events)
    assert len(sim.request_log) <= 4  # at most one request per group, none repeated
    assert nothing_written(engine)
    assert archived_flower_day(RawArchive(tmp_path / "archive"), MONDAY) is None
    # The refusal is in the sync log (and so in the metrics' errors), without the key.
    [(table, partition, error_type, error)] = rows(
        engine, "SELECT table_name, partition_key, error_type, error FROM sync_runs WHERE status = 'failed'"
    )
    assert (table, partition) == ("public_bidding_flowers", MONDAY.isoformat())
    assert error_type.startswith("Source") and message in error
    for marker in (KEY, "MARKERUNKNOWNKEY"):
        assert marker not in repr(result.all_events)
        assert marker not in error


def test_a_backfill_stopped_by_the_quota_resumes_without_fetching_archived_dates_again(sim, resources, engine) -> None:
    tuesday, wednesday = date(2026, 3, 10), date(2026, 3, 11)
    sequential = {
        "ops": {"flower_auction_raw": {"config": {"fetch_concurrency": 1, "transient_retry_wait_seconds": 0}}}
    }
    sim.faults.at_daily_quota = 4  # Tuesday's four groups (one page each), then resultCd 4
    stopped = run(resources, first=tuesday, last=wednesday, run_config=sequential)
    assert not stopped.success and "resultCd 4" in failure_message(stopped)
    assert nothing_written(engine)

    sim.faults.at_daily_quota = None  # the next day
    sim.reset_counters()
    resume = {
        "ops": {
            "flower_auction_raw": {
                "config": {**sequential["ops"]["flower_auction_raw"]["config"], "skip_archived_dates": True}
            }
        }
    }
    resumed = run(resources, first=tuesday, last=wednesday, run_config=resume)
    assert resumed.success
    assert {entry.params["baseDate"] for entry in sim.request_log} == {wednesday.isoformat()}
    assert materialization(resumed, "flower_auction_raw", tuesday)["reused_from_archive"] is True
    assert dict(rows(engine, "SELECT sale_date, count(*) FROM bidding_flowers GROUP BY 1")) == {
        d: sum(served_per_group(sim, d).values()) for d in (tuesday, wednesday)
    }


def test_a_retry_does_not_fetch_again_the_dates_the_run_already_archived(sim, server, resources, engine) -> None:
    tuesday, wednesday = date(2026, 3, 10), date(2026, 3, 11)  # Wednesday's 절화 needs a second page
    resources["at_flower_api"] = AtFlowerApiResource(service_key=KEY, base_url=server.at_base_url, max_attempts=1)
    sim.faults.pages = {2}
    sim.faults.http_error_count = 1  # the only page 2 of the range fails once: after Tuesday is archived
    sequential = {
        "ops": {"flower_auction_raw": {"config": {"fetch_concurrency": 1, "transient_retry_wait_seconds": 0}}}
    }
    result = run(resources, first=tuesday, last=wednesday, run_config=sequential)
    assert result.success
    assert any(event.event_type_value == "STEP_UP_FOR_RETRY" for event in result.all_events)
    requests_per_date = {d.isoformat(): 0 for d in (tuesday, wednesday)}
    for entry in sim.request_log:
        requests_per_date[entry.params["baseDate"]] += 1
    assert requests_per_date == {"2026-03-10": 4, "2026-03-11": 2 + 5}
    assert materialization(result, "flower_auction_raw", tuesday)["reused_from_archive"] is True
    assert dict(rows(engine, "SELECT sale_date, count(*) FROM bidding_flowers GROUP BY 1")) == {
        d: sum(served_per_group(sim, d).values()) for d in (tuesday, wednesday)
    }


def sim_url(resources: dict) -> str:
    return resources["at_flower_api"].base_url


def test_a_transient_failure_is_retried_by_dagster_and_then_succeeds(sim, server, resources, engine) -> None:
    # One attempt per request in the client, so the 503 reaches the asset, which asks Dagster to retry.
    resources["at_flower_api"] = AtFlowerApiResource(service_key=KEY, base_url=server.at_base_url, max_attempts=1)
    sim.faults.http_error_status = 503
    sim.faults.http_error_count = 1
    result = run(resources, day=MONDAY)
    assert result.success
    assert any(event.event_type_value == "STEP_UP_FOR_RETRY" for event in result.all_events)
    assert scalar(engine, "SELECT count(*) FROM bidding_flowers") == sum(served_per_group(sim, MONDAY).values())


# --------------------------------------------------------------------------- blocking checks

TABLE_STEPS = [flower_auction_validated, flower_tables]
RAW_STEPS = [flower_auction_raw, public_bidding_flowers]


def test_an_auction_day_served_empty_fails_the_volume_check_and_the_tables_keep_their_data(
    sim, resources, engine
) -> None:
    later = MONDAY + timedelta(weeks=1)
    assert run(resources, day=MONDAY).success
    before = bidding_snapshot(engine)
    sim.today = later - timedelta(days=1)  # the API has nothing yet for the next Monday: served empty
    config = {
        "ops": {
            **NO_WAIT["ops"],
            "flower_auction_validated": {"config": {"volume_min_history_dates": 1, "volume_unsettled_days": 0}},
        }
    }
    result = run(resources, day=later, run_config=config)

    assert not result.success
    assert "blocking asset check" in failure_message(result) and CHECK_VOLUME in failure_message(result)
    volume = check_results(result)[CHECK_VOLUME]
    assert not volume.passed and volume.severity == dg.AssetCheckSeverity.ERROR
    assert volume.metadata["failed_dates"].value == later.isoformat()
    assert volume.metadata["anomalies"].value == 2  # 절화 rows and quantity
    assert check_results(result)[CHECK_DUPLICATE_KEYS].passed
    assert bidding_snapshot(engine) == before
    assert not any(
        e.event_specific_data.materialization.asset_key == dg.AssetKey("bidding_flowers")
        for e in result.get_asset_materialization_events()
    )

    # The verdict is stored with the frame: the tables refuse the date even when run on their own.
    alone = run(resources, day=later, selection=[flower_tables])
    assert not alone.success
    assert "refusing to write sale dates whose validated rows failed a blocking check: 2026-03-16" in (
        failure_message(alone)
    )
    assert bidding_snapshot(engine) == before


def test_duplicate_keys_fail_their_check_and_nothing_reaches_the_tables(resources, engine) -> None:
    assert run(resources, day=MONDAY, selection=RAW_STEPS).success
    with engine.begin() as conn:  # the source serves one row twice
        conn.execute(sa.text(DUPLICATE_A_SERVED_FLOWER_ROW))
    result = run(resources, day=MONDAY, selection=TABLE_STEPS)
    assert not result.success
    duplicates = check_results(result)[CHECK_DUPLICATE_KEYS]
    assert not duplicates.passed
    assert duplicates.metadata["duplicate_keys"].value == 1
    assert "난" in duplicates.metadata["examples"].value or "3" in duplicates.metadata["examples"].value
    assert scalar(engine, "SELECT count(*) FROM bidding_flowers") == 0
    assert scalar(engine, "SELECT count(*) FROM rejected_records") == 2  # both copies quarantined


def test_a_group_breaking_the_price_invariants_in_every_row_fails_its_check(resources, engine) -> None:
    assert run(resources, day=MONDAY, selection=RAW_STEPS).success
    with engine.begin() as conn:  # e.g. swapped columns for one group: every 난 row has min > max
        conn.execute(
            sa.text("UPDATE public_bidding_flowers SET min_amt = (max_amt::bigint + 10)::text WHERE flower_gubn = 3")
        )
    result = run(resources, day=MONDAY, selection=TABLE_STEPS)
    assert not result.success
    prices = check_results(result)[CHECK_PRICE_INVARIANTS]
    assert not prices.passed
    assert prices.metadata["groups_failing"].value == 1 and "난" in prices.metadata["examples"].value
    assert CHECK_PRICE_INVARIANTS in failure_message(result)
    assert scalar(engine, "SELECT count(*) FROM bidding_flowers") == 0


def test_validating_a_date_whose_rows_were_never_loaded_is_refused(resources, engine) -> None:
    result = run(resources, day=MONDAY, selection=TABLE_STEPS)
    assert not result.success
    assert "public_bidding_flowers was never loaded for 2026-03-09" in failure_message(result)
    assert scalar(engine, "SELECT count(*) FROM bidding_flowers") == 0


# --------------------------------------------------------------------------- the daily run


def test_the_daily_run_writes_today_and_the_three_days_before_in_one_run(sim, resources, engine) -> None:
    today = date(2026, 3, 12)
    request = flower_daily_run_request(today)
    assert request.job_name == "flower_sync"
    assert (request.tags[PARTITION_RANGE_START_TAG], request.tags[PARTITION_RANGE_END_TAG]) == (
        "2026-03-09",
        "2026-03-12",
    )
    sim.today = today
    definitions = dg.Definitions(assets=ASSETS, jobs=[flower_sync_job], resources=resources)
    result = definitions.resolve_job_def(request.job_name).execute_in_process(
        tags=request.tags, run_config=NO_WAIT, raise_on_error=False
    )
    assert result.success
    dates = [today - timedelta(days=n) for n in (3, 2, 1, 0)]
    assert rows(
        engine,
        "SELECT partition_key FROM sync_runs WHERE table_name = 'bidding_flowers' AND status = 'success' ORDER BY 1",
    ) == [(d.isoformat(),) for d in dates]
    per_date = dict(rows(engine, "SELECT sale_date, count(*) FROM bidding_flowers GROUP BY 1"))
    assert per_date == {d: sum(served_per_group(sim, d).values()) for d in dates}
    # Today's auction is still settling: only part of its rows are served yet.
    sim.today = today + timedelta(days=2)
    assert per_date[today] < sum(served_per_group(sim, today).values())


# --------------------------------------------------------------------------- one date at a time in memory


def test_a_range_passes_from_the_validation_to_the_tables_as_one_small_value_per_date(
    sim, resources, engine, tmp_path
) -> None:
    first, last = MONDAY - timedelta(days=7), MONDAY
    assert run(resources, first=first, last=last).success
    io_folder = tmp_path / "io" / "flower_auction_validated"
    for n in range(8):
        day = first + timedelta(days=n)
        pickled = io_folder / f"{day.isoformat()}.pickle"
        stored = pickle.loads(pickled.read_bytes())
        # What the IO manager stores and the tables load per date: counts, verdict, a file name; no rows.
        assert isinstance(stored, StoredFlowerDay) and stored.sale_date == day and stored.writable
        assert not any(isinstance(value, pd.DataFrame) for value in vars(stored).values())
        assert pickled.stat().st_size < 1024
        rows = stored.load().rows
        assert set(rows["sale_date"]) <= {day} and len(rows) == stored.valid
        assert stored.valid == scalar(engine, "SELECT count(*) FROM bidding_flowers WHERE sale_date = :d", d=day)


def test_the_validation_reads_the_served_rows_a_batch_at_a_time_and_judges_them_as_one_pass(
    resources, engine, tmp_path, monkeypatch
) -> None:
    first, last = MONDAY - timedelta(days=7), MONDAY + timedelta(days=2)
    dates = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    assert run(resources, first=first, last=last, selection=RAW_STEPS).success
    wednesday = first + timedelta(days=2)
    with engine.begin() as conn:  # a duplicate on one date, every 절화 row breaking min ≤ max on another
        conn.execute(sa.text(DUPLICATE_A_SERVED_FLOWER_ROW + " AND sale_date = :d"), {"d": MONDAY})
        conn.execute(
            sa.text(
                "UPDATE public_bidding_flowers SET min_amt = (max_amt::bigint + 10)::text "
                "WHERE flower_gubn = 1 AND sale_date = :d"
            ),
            {"d": wednesday},
        )
    served = dict(rows(engine, "SELECT sale_date, count(*) FROM public_bidding_flowers GROUP BY 1"))
    reads: list[tuple[date, date, int]] = []
    read_for_real = flower_validate.read_public_rows

    def read_public_rows(conn, read_first, read_last):  # the real read, its ranges and sizes recorded
        frame = read_for_real(conn, read_first, read_last)
        reads.append((read_first, read_last, len(frame)))
        return frame

    monkeypatch.setattr(flower_validate, "read_public_rows", read_public_rows)

    def validate(batch_rows: int, folder: str):
        reads.clear()
        outcome = flower_validate.validate_loaded_days(
            engine,
            resources["raw_archive"].archive(),
            dates,
            store=ValidatedRowsStore(tmp_path / folder),
            rule=VolumeRule(),
            today=SETTLED,
            non_auction=non_auction_reason,
            run_id=None,
            batch_rows=batch_rows,
        )
        return outcome, list(reads)

    one_pass, one_read = validate(10**9, "one_pass")
    by_date, date_reads = validate(1, "by_date")

    assert one_read == [(first, last, sum(served.values()))]
    # One date per read, none of more rows than that date's: a run's memory is one batch, not the run.
    assert [(read_first, read_last) for read_first, read_last, _ in date_reads] == [(d, d) for d in dates]
    assert [n for _, _, n in date_reads] == [served.get(d, 0) for d in dates]
    assert (
        by_date.failed_dates
        == one_pass.failed_dates
        == {
            CHECK_DUPLICATE_KEYS: [MONDAY],
            CHECK_PRICE_INVARIANTS: [wednesday],
            CHECK_VOLUME: [],
        }
    )
    assert by_date.duplicates.equals(one_pass.duplicates) and by_date.price_groups.equals(one_pass.price_groups)
    assert (by_date.anomalies, by_date.not_judged) == (one_pass.anomalies, one_pass.not_judged)
    for d in dates:
        alone, together = by_date.days[d], one_pass.days[d]
        assert (alone.served, alone.valid, alone.rejected, alone.blocking_failures, alone.source) == (
            together.served,
            together.valid,
            together.rejected,
            together.blocking_failures,
            together.source,
        )
        assert alone.load().rows.equals(together.load().rows)


def test_the_tables_read_each_dates_rows_only_when_they_write_it(resources, engine, tmp_path) -> None:
    first, second = MONDAY - timedelta(days=1), MONDAY  # a Sunday without rows, then a Monday
    third = MONDAY + timedelta(days=1)
    assert run(resources, first=first, last=third, selection=[*RAW_STEPS, flower_auction_validated]).success
    io_folder = tmp_path / "io" / "flower_auction_validated"
    days = [pickle.loads((io_folder / f"{d.isoformat()}.pickle").read_bytes()) for d in (first, second, third)]
    writes = write_bidding_days(engine, days, run_id="one-at-a-time")
    assert next(writes).day.sale_date == first
    assert next(writes).day.sale_date == second
    Path(days[2].rows_file).unlink()  # after the Monday was written: had it been read before, this would not matter
    with pytest.raises(
        ValidatedRowsMissing, match=r"^the validated rows of 2026-03-10 \(.*\) are gone: re-materialise"
    ):
        next(writes)
    assert dict(rows(engine, "SELECT sale_date, count(*) FROM bidding_flowers GROUP BY 1")) == {second: days[1].valid}
