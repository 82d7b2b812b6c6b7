"""The sync plan (the apply rolled back) and the post-write checks judged before COMMIT.

A plan runs the same code as the sync and rolls it back: it must report exactly what the sync of
the same date then writes, and leave every table byte for byte as it was. A post-write check that
fails rolls the sync back: the tables stay as they were and ``sync_runs`` says why.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from aed_pipeline.lib.core.warehouse import warehouse_engine
from aed_pipeline.lib.egen_aed.changes import feed_rows
from aed_pipeline.lib.egen_aed.write.apply import apply_snapshot
from aed_pipeline.lib.egen_aed.write.types import MissingDevicesGuardTripped, PostWriteChecksFailed
from aed_pipeline.simulator import Simulator
from aed_pipeline_tests.support.feed_support import SimulatedRegistry
from aed_pipeline_tests.support.helpers import AED_TABLES, table_state

DAY = dt.date(2026, 3, 2)
DEVICES = 3000
#: Every table an AED sync writes, the run log and the repairs included.
WRITTEN = (*AED_TABLES, "aed_repairs", "sync_runs")
#: What a plan and the sync it foresees must agree on.
SAME = (
    "mode",
    "inserted",
    "updated",
    "deleted",
    "revived",
    "unchanged",
    "drifted",
    "history_opened",
    "history_closed",
    "changes",
    "drift",
    "inserted_examples",
    "deleted_examples",
    "feed_counts",
    "guard",
    "checks",
)


@pytest.fixture(scope="module")
def world() -> SimulatedRegistry:
    return SimulatedRegistry(Simulator(today=DAY, aed_count=DEVICES))


def _same(plan, sync) -> None:
    assert plan.planned and not sync.planned
    assert {k: getattr(plan, k) for k in SAME} == {k: getattr(sync, k) for k in SAME}


def test_a_plan_reports_what_the_sync_then_writes_and_leaves_every_table_as_it_was(world, fresh_database_url, tmp_path):
    engine = warehouse_engine(fresh_database_url)
    later = DAY + dt.timedelta(days=9)
    for day in (DAY, later):  # a first load, then a day with changes, new and removed devices
        snapshot = world.snapshot(day, tmp_path)
        before = table_state(engine, WRITTEN)
        plan = apply_snapshot(engine, snapshot, run_id=f"plan-{day}", plan=True)
        assert table_state(engine, WRITTEN) == before
        sync = apply_snapshot(engine, snapshot, run_id=f"plan-{day}")
        _same(plan, sync)
        with engine.connect() as conn:
            assert plan.feed == feed_rows(conn, [day], limit=1000)
            deleted = set(
                conn.execute(sa.text("SELECT equipment_serial FROM aed_data WHERE deleted_at IS NOT NULL")).scalars()
            )
        assert {d.equipment_serial for d in plan.soft_deleted} == deleted
    assert sync.deleted and sync.updated and sync.inserted  # the later date really changed things


def test_a_plan_of_a_backfill_foresees_the_two_days_it_re_derives(world, fresh_database_url, tmp_path):
    engine = warehouse_engine(fresh_database_url)
    first, middle, last = DAY, DAY + dt.timedelta(days=5), DAY + dt.timedelta(days=10)
    for day in (first, last):
        apply_snapshot(engine, world.snapshot(day, tmp_path))
    snapshot = world.snapshot(middle, tmp_path)
    before = table_state(engine, WRITTEN)
    plan = apply_snapshot(engine, snapshot, plan=True)
    assert table_state(engine, WRITTEN) == before
    assert plan.mode == "history_only" and list(plan.feed_counts) == [middle, last]
    sync = apply_snapshot(engine, snapshot)
    _same(plan, sync)
    with engine.connect() as conn:
        assert plan.feed == feed_rows(conn, [middle, last], limit=1000)


def test_a_plan_shows_the_devices_the_guard_holds_back_and_the_refusal_says_how_to_see_and_pass_it(
    world, fresh_database_url, tmp_path
):
    engine = warehouse_engine(fresh_database_url)
    apply_snapshot(engine, world.snapshot(DAY, tmp_path))
    later = DAY + dt.timedelta(days=1)
    vanished = sorted(world.devices(DAY).keys() & world.devices(later).keys())[:300]  # 10 %
    half_served = world.snapshot(later, tmp_path, drop=vanished)
    before = table_state(engine, WRITTEN)

    plan = apply_snapshot(engine, half_served, plan=True)
    assert plan.guard.tripped and plan.guard.missing >= len(vanished)
    assert set(vanished) <= {d.equipment_serial for d in plan.soft_deleted}
    assert all(d.jurisdiction_health_center for d in plan.soft_deleted)
    assert table_state(engine, WRITTEN) == before

    with pytest.raises(MissingDevicesGuardTripped) as refusal:
        apply_snapshot(engine, half_served)
    message = str(refusal.value)
    assert "nothing was written" in message and f"aed_sync_plan for partition {later}" in message
    assert f"missing_devices_guard: {plan.guard.guard_that_lets_it_through:g}" in message
    # The refusal is a failed sync_runs row; the data tables are as they were.
    assert {t: before[t] for t in (*AED_TABLES, "aed_repairs")} == table_state(engine, (*AED_TABLES, "aed_repairs"))

    # Let through with the guard the message names: it soft-deletes exactly the devices the plan listed.
    sync = apply_snapshot(engine, half_served, missing_devices_guard=plan.guard.guard_that_lets_it_through)
    assert not sync.guard.tripped and sync.deleted == len(plan.soft_deleted)


def _soft_delete_one(conn) -> None:
    conn.execute(
        sa.text(
            "UPDATE aed_data SET deleted_at = now() WHERE equipment_serial = "
            "(SELECT min(equipment_serial) FROM aed_data WHERE deleted_at IS NULL)"
        )
    )


def _unknown_health_center(conn) -> None:
    # Inside the apply's transaction, so the dropped key comes back with the rollback.
    conn.execute(sa.text("ALTER TABLE aed_data DROP CONSTRAINT aed_data_jurisdiction_health_center_fkey"))
    conn.execute(
        sa.text(
            "UPDATE aed_data SET jurisdiction_health_center = 'nowhere 보건소' WHERE equipment_serial = "
            "(SELECT min(equipment_serial) FROM aed_data)"
        )
    )


def _duplicate_serial(conn) -> None:
    conn.execute(sa.text("ALTER TABLE aed_data DROP CONSTRAINT uq_aed_data_equipment_serial"))
    conn.execute(
        sa.text(
            "INSERT INTO aed_data (equipment_serial, row_hash, first_seen, last_seen, version_since, deleted_at) "
            "SELECT equipment_serial, row_hash, first_seen, last_seen, version_since, now() FROM aed_data "
            "ORDER BY equipment_serial LIMIT 1"
        )
    )


@pytest.mark.parametrize(
    ("violation", "check", "example"),
    [
        (_soft_delete_one, "active_rows_match_snapshot", "validated, not active: "),
        (_unknown_health_center, "health_centers_exist", ": nowhere 보건소"),
        (_duplicate_serial, "serials_unique_in_table", " (2 rows)"),
    ],
)
def test_a_post_write_check_that_fails_rolls_the_sync_back_and_says_why(
    world, fresh_database_url, tmp_path, violation, check, example
):
    engine = warehouse_engine(fresh_database_url)
    apply_snapshot(engine, world.snapshot(DAY, tmp_path))
    snapshot = world.snapshot(DAY + dt.timedelta(days=3), tmp_path)
    before = table_state(engine, (*AED_TABLES, "aed_repairs"))

    with pytest.raises(PostWriteChecksFailed) as failure:
        apply_snapshot(engine, snapshot, run_id="audited", after_diff=violation)
    assert table_state(engine, (*AED_TABLES, "aed_repairs")) == before
    verdicts = {c.name: c for c in failure.value.checks}
    assert [name for name, c in verdicts.items() if not c.passed] == [check]
    assert any(example in e for e in verdicts[check].examples), verdicts[check]
    with engine.connect() as conn:
        status, error_type, error = conn.execute(
            sa.text("SELECT status, error_type, error FROM sync_runs WHERE run_id = 'audited'")
        ).one()
    assert (status, error_type) == ("failed", "PostWriteChecksFailed")
    assert check in error and "rolled back" in error and "nothing was written" in error
    with engine.connect() as conn:  # the constraints the injection dropped came back with the rollback
        names = set(conn.execute(sa.text("SELECT conname FROM pg_constraint")).scalars())
    assert {"aed_data_jurisdiction_health_center_fkey", "uq_aed_data_equipment_serial"} <= names

    # The same violation in a plan: reported, not raised, and rolled back all the same.
    plan = apply_snapshot(engine, snapshot, plan=True, after_diff=violation)
    assert not plan.checks_passed and [c.name for c in plan.checks if not c.passed] == [check]
    assert table_state(engine, (*AED_TABLES, "aed_repairs")) == before
    # Without the violation the sync goes through.
    assert apply_snapshot(engine, snapshot).checks_passed
