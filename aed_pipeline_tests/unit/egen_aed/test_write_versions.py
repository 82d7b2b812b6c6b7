"""The AED versions: the open one is the ``aed_data`` row, the closed ones are in ``aed_data_history``.

Each test applies simulator registries straight through ``apply_snapshot`` (the layer that keeps
the versions) on the embedded PostgreSQL, and judges the result by what a data engineer reads: the
view ``aed_data_versions`` and ``aed_data``, compared with the same dates applied in plain order.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from aed_pipeline.lib.core.warehouse import downgrade_schema, upgrade_schema, warehouse_engine
from aed_pipeline.lib.egen_aed.records import validate_records
from aed_pipeline.lib.egen_aed.rows import DeviceRowsWriter
from aed_pipeline.lib.egen_aed.tables import health_center_lookup
from aed_pipeline.lib.egen_aed.validate import ValidatedAedSnapshot
from aed_pipeline.lib.egen_aed.write.apply import apply_snapshot
from aed_pipeline.simulator import Simulator

DAY = dt.date(2026, 3, 2)
DEVICES = 400
# Far-apart dates, so that each one changes, adds and removes devices; the guard is not under test.
GUARD = 0.5


@pytest.fixture(scope="module")
def registry() -> Simulator:
    return Simulator(today=DAY, aed_count=DEVICES)


def _snapshot(
    sim: Simulator, day: dt.date, engine, tmp: Path, *, served_as: dt.date | None = None
) -> ValidatedAedSnapshot:
    """The simulator's registry of ``day`` as a validated snapshot of partition ``served_as`` (default ``day``)."""
    records = sim.registry.records(sim.registry.active_ids(day), day.toordinal())
    validated = validate_records(records, health_center_lookup(engine))
    partition = served_as or day
    path = tmp / f"{partition}-{day}.parquet"
    with DeviceRowsWriter(path) as writer:
        writer.write(validated.frame)
    return ValidatedAedSnapshot(
        partition_date=partition,
        rows_path=str(path),
        valid=len(validated.frame),
        fetched=len(records),
        total_count=len(records),
        rejected=len(validated.rejected),
        profile={},
        archive_ref=str(path),
        archive_digest=day.isoformat(),
        origin="simulator",
    )


def _apply(engine, sim, tmp, day, **kwargs):
    return apply_snapshot(engine, _snapshot(sim, day, engine, tmp, **kwargs), missing_devices_guard=GUARD)


def _versions(engine) -> set[tuple]:
    """Every version of every device, as the view shows it."""
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.text("SELECT equipment_serial, row_hash, valid_from, valid_to FROM aed_data_versions")
            ).all()
        )


def _current(engine) -> set[tuple]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.text(
                    "SELECT equipment_serial, row_hash, version_since, deleted_at IS NULL, first_seen FROM aed_data"
                )
            ).all()
        )


def _assert_well_formed(engine) -> None:
    """The history holds closed versions only, never two at once, never two equal ones in a row, and
    every one of them ends before its device's open version begins."""
    with engine.connect() as conn:
        open_in_history = conn.execute(sa.text("SELECT count(*) FROM aed_data_history WHERE valid_to IS NULL")).scalar()
        overlapping_or_unmerged = conn.execute(
            sa.text(
                "SELECT count(*) FROM aed_data_versions a JOIN aed_data_versions b USING (equipment_serial) "
                "WHERE a.valid_from < b.valid_from AND (a.valid_to IS NULL OR a.valid_to > b.valid_from "
                "OR (a.valid_to = b.valid_from AND a.row_hash = b.row_hash))"
            )
        ).scalar()
        empty = conn.execute(sa.text("SELECT count(*) FROM aed_data_history WHERE valid_to <= valid_from")).scalar()
    assert (open_in_history, overlapping_or_unmerged, empty) == (0, 0, 0)


def test_a_first_load_writes_each_device_once_and_the_view_shows_it(registry, fresh_database_url, tmp_path):
    engine = warehouse_engine(fresh_database_url)
    result = _apply(engine, registry, tmp_path, DAY)
    with engine.connect() as conn:
        history = conn.execute(sa.text("SELECT count(*) FROM aed_data_history")).scalar()
        on_day = conn.execute(
            sa.text("SELECT count(*) FROM aed_data_versions WHERE valid_from <= :d AND valid_to IS NULL"), {"d": DAY}
        ).scalar()
    assert result.inserted == on_day == len(registry.registry.active_ids(DAY))
    assert (history, result.history_opened, result.history_closed) == (0, result.inserted, 0)


def test_a_change_closes_exactly_the_versions_it_ends(registry, fresh_database_url, tmp_path):
    engine = warehouse_engine(fresh_database_url)
    later = DAY + dt.timedelta(days=40)
    _apply(engine, registry, tmp_path, DAY)
    result = _apply(engine, registry, tmp_path, later)
    assert result.updated and result.deleted and result.inserted  # the dates really differ
    with engine.connect() as conn:
        history = conn.execute(sa.text("SELECT count(*) FROM aed_data_history")).scalar()
    assert history == result.history_closed == result.updated + result.deleted
    _assert_well_formed(engine)


def test_a_rerun_of_the_newest_date_with_other_values_gives_the_versions_of_a_single_run(
    registry, fresh_database_url, reference_database_url, tmp_path
):
    """The newest date applied once with a wrong registry (another day's), then again with its own,
    has the versions as if the wrong one had never been applied: versions rejoined, none left empty.
    Devices only the wrong one listed stay in ``aed_data`` soft-deleted, as every removed device does."""
    engine = warehouse_engine(fresh_database_url)
    later, wrong = DAY + dt.timedelta(days=30), DAY + dt.timedelta(days=90)
    _apply(engine, registry, tmp_path, DAY)
    _apply(engine, registry, tmp_path, wrong, served_as=later)
    _apply(engine, registry, tmp_path, later)
    _assert_well_formed(engine)

    reference = warehouse_engine(reference_database_url)
    _apply(reference, registry, tmp_path, DAY)
    _apply(reference, registry, tmp_path, later)
    assert _versions(engine) == _versions(reference)
    current, expected = _current(engine), _current(reference)
    only_wrong = current - expected
    assert only_wrong and all(not active for _, _, _, active, _ in only_wrong)
    assert {row[0] for row in only_wrong}.isdisjoint(row[0] for row in expected)
    assert current - only_wrong == expected


def test_dates_applied_out_of_order_give_the_versions_of_plain_order(
    registry, fresh_database_url, reference_database_url, tmp_path
):
    days = [DAY + dt.timedelta(days=n) for n in (0, 20, 45, 70)]
    engine = warehouse_engine(fresh_database_url)
    for day in (days[0], days[3], days[1], days[2]):  # the last two are backfills
        _apply(engine, registry, tmp_path, day)
    _assert_well_formed(engine)

    reference = warehouse_engine(reference_database_url)
    for day in days:
        _apply(reference, registry, tmp_path, day)
    assert _versions(engine) == _versions(reference)
    # first_seen differs by design (a backfill never moves aed_data back); the versions do not.
    assert {row[:4] for row in _current(engine)} == {row[:4] for row in _current(reference)}


def test_the_migration_moves_open_versions_both_ways_without_loss(registry, fresh_database_url, tmp_path):
    engine = warehouse_engine(fresh_database_url)
    for n in (0, 30, 60):
        _apply(engine, registry, tmp_path, DAY + dt.timedelta(days=n))
    versions, current = _versions(engine), _current(engine)
    downgrade_schema(engine, "0002")
    with engine.connect() as conn:
        everything = set(
            conn.execute(sa.text("SELECT equipment_serial, row_hash, valid_from, valid_to FROM aed_data_history")).all()
        )
    assert everything == versions  # before 0003 the history held every version, the open ones too
    upgrade_schema(engine)
    assert _versions(engine) == versions and _current(engine) == current
    _assert_well_formed(engine)
