"""The change feed ``aed_changes``: the simulator's own day-to-day diff, field for field, whatever the
order the dates are applied in, the baseline, revived devices, repairs, and the migration both ways.

Each test applies simulator registries straight through ``apply_snapshot`` on the embedded
PostgreSQL and compares the view with the diff of the simulator's records (mapped to the
``aed_data`` columns by validation) between consecutive applied dates.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter

import pytest
import sqlalchemy as sa

from aed_pipeline.lib.core.warehouse import downgrade_schema, upgrade_schema, warehouse_engine
from aed_pipeline.lib.egen_aed.changes import feed_counts, newest_snapshot_changes
from aed_pipeline.lib.egen_aed.write.apply import apply_snapshot
from aed_pipeline.simulator import Simulator
from aed_pipeline_tests.support.feed_support import SimulatedRegistry, expected_feed, stored_feed
from aed_pipeline_tests.support.helpers import AED_TABLES, table_state

DAY = dt.date(2026, 3, 2)
DEVICES = 6000  # ~14 edits, ~1 new and ~1 removed device a day
WEEK = [DAY + dt.timedelta(days=n) for n in range(8)]  # seven day-to-day diffs
GUARD = 0.5


@pytest.fixture(scope="module")
def world() -> SimulatedRegistry:
    """The simulator's registries, each date validated once for the whole module."""
    return SimulatedRegistry(Simulator(today=DAY, aed_count=DEVICES))


def test_the_feed_is_the_simulators_day_to_day_diff_over_a_week_applied_in_and_out_of_order(
    world, fresh_database_url, tmp_path
):
    engine = warehouse_engine(fresh_database_url)
    # A later date first, then one before it (the baseline moves), newest dates and backfills mixed.
    order = [WEEK[3], WEEK[0], WEEK[1], WEEK[7], WEEK[5], WEEK[2], WEEK[6], WEEK[4]]
    applied = {}
    for day in order:
        result = apply_snapshot(engine, world.snapshot(day, tmp_path), run_id=f"run-{day}")
        applied[day] = world.devices(day)
        expected = expected_feed(applied)
        assert stored_feed(engine) == expected, f"after applying {day}"
        # What the write reports of the feed is the feed of the dates it touched.
        with engine.connect() as conn:
            assert result.feed_counts == feed_counts(conn, list(result.feed_counts)), day
    kinds = Counter(change_type for change_type, _ in expected.values())
    assert kinds["baseline"] == len(applied[WEEK[0]])
    assert kinds["changed"] > 50 and kinds["new"] and kinds["removed"], kinds
    with engine.connect() as conn:
        runs = dict(conn.execute(sa.text("SELECT DISTINCT snapshot_date, run_id FROM aed_changes")).tuples().all())
        previous = dict(conn.execute(sa.text("SELECT DISTINCT snapshot_date, previous_date FROM aed_changes")).all())
        newest = newest_snapshot_changes(conn)
    assert runs == {day: f"run-{day}" for day in WEEK}
    assert previous == {WEEK[0]: None, **{day: before for before, day in itertools.pairwise(WEEK)}}
    assert {k: v for k, v in newest.items() if v} == dict(
        Counter(t for (d, _), (t, _) in expected.items() if d == WEEK[7])
    )


def test_devices_absent_for_a_day_are_removed_then_revived_with_their_values_as_served(
    world, fresh_database_url, tmp_path
):
    engine = warehouse_engine(fresh_database_url)
    day0, day1, day2 = WEEK[:3]
    vanished = sorted(world.devices(day0).keys() & world.devices(day2).keys())[:40]
    applied = {day0: world.devices(day0), day1: world.devices(day1, vanished), day2: world.devices(day2)}
    # The middle day, served without them, is applied last (a backfill): the revival follows from it.
    for day, drop in ((day0, ()), (day2, ()), (day1, vanished)):
        apply_snapshot(engine, world.snapshot(day, tmp_path, drop=drop), missing_devices_guard=GUARD)
    feed = stored_feed(engine)
    assert feed == expected_feed(applied)
    for serial in vanished:
        assert feed[(day1, serial)][0] == "removed" and feed[(day2, serial)][0] == "revived"
        removed = feed[(day1, serial)][1]
        assert {column: before for column, (before, _) in removed.items()} == {
            column: value for column, value in applied[day0][serial].items() if value is not None
        }
    # The manager fields appear as stored (baseline, removed, revived): masked as served, never unmasked.
    managers = [v for (_, s), (_, fields) in feed.items() if s in vanished for v in fields["manager"] if v is not None]
    assert len(managers) == 3 * len(vanished) and all(value.endswith("**") for value in managers)


def test_a_reconciliation_repair_is_in_the_feed_and_makes_no_version(world, fresh_database_url, tmp_path):
    engine = warehouse_engine(fresh_database_url)
    snapshot = world.snapshot(DAY, tmp_path)
    apply_snapshot(engine, snapshot)
    serial = min(world.devices(DAY))
    served = world.devices(DAY)[serial]
    before = stored_feed(engine)
    with engine.begin() as conn:  # edited by hand: the stored hash still matches the snapshot
        conn.execute(
            sa.text("UPDATE aed_data SET installation_position = 'edited', zipcode = NULL WHERE equipment_serial = :s"),
            {"s": serial},
        )
    result = apply_snapshot(engine, snapshot, run_id="reconciliation", reconcile=True)
    assert result.drifted == 1
    assert result.feed_counts == {DAY: {"baseline": len(world.devices(DAY)), "repaired": 1}}
    assert stored_feed(engine) == before  # no version was made: the values as served are back
    with engine.connect() as conn:
        repairs = conn.execute(
            sa.text(
                "SELECT run_id, change_type, changed_columns, before, after FROM aed_changes "
                "WHERE change_type = 'repaired'"
            )
        ).all()
    assert repairs == [
        (
            "reconciliation",
            "repaired",
            ["installation_position", "zipcode"],
            {"installation_position": "edited", "zipcode": None},
            {"installation_position": served["installation_position"], "zipcode": served["zipcode"]},
        )
    ]


def test_the_migration_up_and_down_keeps_the_registry_and_gives_the_same_feed(world, fresh_database_url, tmp_path):
    engine = warehouse_engine(fresh_database_url)
    for day in (WEEK[0], WEEK[2], WEEK[1]):
        apply_snapshot(engine, world.snapshot(day, tmp_path))
    feed, tables = stored_feed(engine), table_state(engine, AED_TABLES)
    downgrade_schema(engine, "0003")
    assert table_state(engine, AED_TABLES) == tables
    assert "aed_changes" not in sa.inspect(engine).get_view_names()
    assert "aed_repairs" not in sa.inspect(engine).get_table_names()
    upgrade_schema(engine)
    assert table_state(engine, AED_TABLES) == tables
    assert stored_feed(engine) == feed
