"""The Sunday reconciliation: rows edited by hand and missed deletions are found, repaired and reported."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from aed_pipeline_tests.support.aed_support import failure_messages, start_harness

DAY = dt.date(2026, 3, 1)  # a Sunday
RECONCILE = {"ops": {"aed_data": {"config": {"reconcile": True}}}}


@pytest.fixture
def small(fresh_database_url, tmp_path):
    harness = start_harness(fresh_database_url, tmp_path, day=DAY, aed_count=2000, num_of_rows=1000)
    yield harness
    harness.server.stop()


def _row(engine, serial: str) -> dict:
    with engine.connect() as conn:
        return dict(
            conn.execute(sa.text("SELECT * FROM aed_data WHERE equipment_serial = :s"), {"s": serial}).mappings().one()
        )


def _versions(engine) -> set[tuple]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT id, xmin::text FROM aed_data")).all())


def test_reconciliation_repairs_rows_edited_by_hand_that_the_daily_diff_cannot_see(small):
    assert small.materialize(DAY).success
    engine = small.engine
    with engine.connect() as conn:
        edited, other = (
            conn.execute(
                sa.text(
                    "SELECT equipment_serial FROM aed_data WHERE installation_address IS NOT NULL ORDER BY 1 LIMIT 2"
                )
            )
            .scalars()
            .all()
        )
    served = _row(engine, edited)
    with engine.begin() as conn:
        # A hand edit keeps the stored row_hash, so the hash diff believes the row is unchanged.
        conn.execute(
            sa.text(
                "UPDATE aed_data SET installation_address = 'edited by hand', latitude = 0 WHERE equipment_serial = :s"
            ),
            {"s": edited},
        )
        # A device that the registry no longer lists but the table still shows as active.
        conn.execute(
            sa.text(
                "INSERT INTO aed_data (equipment_serial, sido, gugun, row_hash, first_seen, last_seen, version_since) "
                "SELECT 'GHOST-0001', sido, gugun, row_hash, first_seen, last_seen, version_since FROM aed_data "
                "WHERE equipment_serial = :s"
            ),
            {"s": other},
        )

    daily = small.materialize(DAY, move_clock=False)
    assert daily.success, failure_messages(daily)
    assert _row(engine, edited)["installation_address"] == "edited by hand"  # invisible to the hash diff

    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE aed_data SET deleted_at = NULL, operation_status = NULL WHERE equipment_serial = 'GHOST-0001'"
            )
        )
    result = small.materialize(DAY, move_clock=False, run_config=RECONCILE)
    assert result.success, failure_messages(result)
    meta = small.metadata(result, "aed_data")
    assert meta["reconciled"] is True
    assert meta["drift_repaired"] == 1
    assert meta["deleted"] == 1 and "GHOST-0001" in meta["changes"]
    assert f"`{edited}` | installation_address | edited by hand → {served['installation_address']}" in meta["changes"]
    repaired = _row(engine, edited)
    assert repaired["installation_address"] == served["installation_address"]
    assert repaired["latitude"] == served["latitude"]
    ghost = _row(engine, "GHOST-0001")
    assert ghost["deleted_at"] is not None and ghost["operation_status"] == "removed"
    # The repair made no version; it is in the change feed, with the run that made it.
    with engine.connect() as conn:
        repairs = conn.execute(
            sa.text(
                "SELECT snapshot_date, run_id, equipment_serial, changed_columns, before, after FROM aed_changes "
                "WHERE change_type = 'repaired'"
            )
        ).all()
    assert repairs == [
        (
            DAY,
            result.run_id,
            edited,
            ["installation_address", "latitude"],
            {"installation_address": "edited by hand", "latitude": 0},
            {"installation_address": served["installation_address"], "latitude": served["latitude"]},
        )
    ]
    with engine.connect() as conn:
        analyzed = conn.execute(
            sa.text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'aed_data'")
        ).scalar()
    assert analyzed is not None

    # A second reconciliation finds nothing and writes nothing.
    before = _versions(engine)
    again = small.materialize(DAY, move_clock=False, run_config=RECONCILE)
    assert again.success
    assert small.metadata(again, "aed_data")["drift_repaired"] == 0
    assert _versions(engine) == before
