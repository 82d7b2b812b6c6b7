"""The e-gen AED sync end to end: the simulator over localhost, Dagster, the embedded PostgreSQL."""

from __future__ import annotations

import datetime as dt
import http.server
import itertools
import threading

import dagster as dg
import pytest
import sqlalchemy as sa

from aed_pipeline.defs.egen_aed.assets import aed_data, aed_raw_snapshot, aed_validated
from aed_pipeline.defs.egen_aed.resources import EgenApiResource
from aed_pipeline.lib.egen_aed.fetch import ARCHIVE_SOURCE, PAGE_SET
from aed_pipeline.lib.egen_aed.tables import health_center_lookup, previous_snapshot
from aed_pipeline.lib.egen_aed.validate import validate_archived_snapshot
from aed_pipeline.lib.egen_aed.write.apply import apply_snapshot
from aed_pipeline_tests.support.aed_support import (
    AED_ASSETS,
    expected_hashes,
    failure_messages,
    start_harness,
)
from aed_pipeline_tests.support.helpers import RECORDED_AED_XML

EPOCH = dt.date(2026, 1, 1)  # the simulator serves exactly 81,464 devices on this date
DAY = dt.date(2026, 3, 2)


@pytest.fixture
def small(fresh_database_url, tmp_path):
    """A 3,000-device registry: every behaviour but the full-size one."""
    harness = start_harness(fresh_database_url, tmp_path, day=DAY, aed_count=3000, num_of_rows=1000)
    yield harness
    harness.server.stop()


def _active(engine) -> dict[str, bytes]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT equipment_serial, row_hash FROM aed_data WHERE deleted_at IS NULL")).all()
    return {serial: bytes(h) for serial, h in rows}


def _row_versions(engine) -> set[tuple]:
    """(table, id, xmin) of every row: any write, even of identical values, changes xmin."""
    with engine.connect() as conn:
        return {
            (table, *row)
            for table in ("aed_data", "aed_data_history")
            for row in conn.execute(sa.text(f"SELECT id, xmin::text FROM {table}")).all()
        }


def _history_on(engine, day: dt.date) -> dict[str, bytes]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT equipment_serial, row_hash FROM aed_data_versions "
                "WHERE valid_from <= :d AND (valid_to IS NULL OR valid_to > :d)"
            ),
            {"d": day},
        ).all()
    serials = [serial for serial, _ in rows]
    assert len(serials) == len(set(serials)), f"two versions of a device valid on {day}"
    return {serial: bytes(h) for serial, h in rows}


def test_full_registry_lands_then_the_next_day_applies_exactly_the_simulators_changes(fresh_database_url, tmp_path):
    harness = start_harness(fresh_database_url, tmp_path, day=EPOCH, aed_count=81464)
    try:
        first = harness.materialize(EPOCH)
        assert first.success, failure_messages(first)
        meta = harness.metadata(first, "aed_data")
        assert (meta["inserted"], meta["updated"], meta["deleted"], meta["dagster/row_count"]) == (81464, 0, 0, 81464)
        assert harness.metadata(first, "aed_raw_snapshot")["source"] == "live"

        with harness.engine.connect() as conn:
            types = dict(
                conn.execute(
                    sa.text(
                        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'aed_data'"
                    )
                ).all()
            )
            row = conn.execute(
                sa.text("SELECT latitude, mon_start, sun_week1, first_seen, row_hash FROM aed_data LIMIT 1")
            ).one()
            full_day = conn.execute(
                sa.text("SELECT count(*) FROM aed_data WHERE mon_end = '24:00' AND mon_start = '00:00'")
            ).scalar_one()
        assert types["latitude"] == "double precision" and types["mon_start"] == "time without time zone"
        assert types["sun_week1"] == "boolean" and types["row_hash"] == "bytea"
        assert isinstance(row.latitude, float) and isinstance(row.sun_week1, bool) and row.first_seen == EPOCH
        assert full_day > 10_000  # 2400 landed as 24:00, the end of the day

        # The simulator's own diff between the two days, computed from what it serves.
        before, after = harness.simulator_snapshot(EPOCH), harness.simulator_snapshot(EPOCH + dt.timedelta(days=1))
        added = after.keys() - before.keys()
        removed = before.keys() - after.keys()
        edited = {s for s in before.keys() & after.keys() if {**before[s], "rnum": ""} != {**after[s], "rnum": ""}}
        assert added and removed and edited

        second = harness.materialize(EPOCH + dt.timedelta(days=1))
        assert second.success, failure_messages(second)
        meta = harness.metadata(second, "aed_data")
        assert (meta["inserted"], meta["deleted"], meta["updated"], meta["revived"]) == (
            len(added),
            len(removed),
            len(edited),
            0,
        )
        assert meta["unchanged"] == len(after) - len(added) - len(edited)
        assert "| device | field | old → new |" in meta["changes"]
        with harness.engine.connect() as conn:
            deleted = set(
                conn.execute(sa.text("SELECT equipment_serial FROM aed_data WHERE deleted_at IS NOT NULL")).scalars()
            )
        assert deleted == removed
        assert set(_active(harness.engine)) == set(after)

        # The same day again: the snapshot is reused from the archive and not one row is written.
        versions = _row_versions(harness.engine)
        calls = len(harness.sim.request_log)
        third = harness.materialize(EPOCH + dt.timedelta(days=1))
        assert third.success, failure_messages(third)
        meta = harness.metadata(third, "aed_data")
        assert meta["unchanged"] == len(after) and meta["inserted"] == meta["updated"] == meta["deleted"] == 0
        assert _row_versions(harness.engine) == versions
        assert len(harness.sim.request_log) == calls
    finally:
        harness.server.stop()


class _RecordedAedHandler(http.server.BaseHTTPRequestHandler):
    """Stands in for the API: answers every request with the recorded real response.

    The recording answered a 5-row query of a 486-row district; as a whole registry of its own it
    must announce totalCount 5, or the snapshot would be (rightly) incomplete.
    """

    body = RECORDED_AED_XML.read_bytes().replace(b"<totalCount>486</totalCount>", b"<totalCount>5</totalCount>")

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def date_time_string(self, timestamp=None):
        return "Sat, 16 May 2026 08:07:08 GMT"  # the Date header as recorded

    def log_message(self, *args):
        pass


def test_recorded_real_response_lands_field_for_field(fresh_database_url, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordedAedHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        harness = start_harness(fresh_database_url, tmp_path, day=DAY, aed_count=10)
        harness.server.stop()
        harness.egen_base_url = f"http://127.0.0.1:{server.server_address[1]}/B552657/AEDInfoInqireService"
        result = harness.materialize(dt.date(2026, 5, 16), move_clock=False)
        assert result.success, failure_messages(result)
    finally:
        server.shutdown()
    with harness.engine.connect() as conn:
        rows = {
            r.equipment_serial: r
            for r in conn.execute(
                sa.text(
                    "SELECT equipment_serial, sido, gugun, jurisdiction_health_center, installation_institution, "
                    "installation_address, installation_position, latitude, longitude, manufacturer, model_name, "
                    "institution_tel, manager, manager_tel, zipcode, mon_start::text, mon_end::text, "
                    "sat_start::text, sun_week1, access_control FROM aed_data"
                )
            )
        }
    assert len(rows) == 5
    first = rows["031-150316-007123"]
    assert (first.sido, first.gugun, first.jurisdiction_health_center) == (
        "서울특별시",
        "종로구",
        "서울특별시 종로구보건소",
    )
    assert first.installation_institution == "지멘스(주)"
    assert first.installation_address == "서울특별시 종로구 종로3길 17, D타워 10층 (청진동)"
    assert first.installation_position == "출입구(10층)"
    assert (first.latitude, first.longitude) == (37.5709958592, 126.9789144773)
    assert (first.manufacturer, first.model_name) == ("라디안큐바이오", "Heart Guardian HR-501")
    assert (first.institution_tel, first.manager, first.manager_tel) == ("010-4697-2751", "김**", "010********")
    assert first.zipcode == "03155"
    assert (first.mon_start, first.mon_end, first.sat_start) == ("00:00:00", "24:00:00", "00:00:00")
    assert first.sun_week1 is True and first.access_control == "24h"
    second = rows["030-160127-008363"]
    assert (second.mon_start, second.mon_end, second.sat_start) == ("09:00:00", "17:30:00", None)
    assert second.sun_week1 is False and second.access_control == "scheduled"
    assert all(r.sido == "서울특별시" and r.gugun == "종로구" for r in rows.values())


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("null_coordinates", "no_column_collapse"),
        ("half_missing", "row_count_stable"),
        ("duplicate_serials", "serials_unique"),
        ("short_page", "records_match_total_count"),
        ("inflated_total", "records_match_total_count"),
    ],
)
def test_corrupted_snapshot_fails_a_blocking_check_and_changes_nothing(small, fault, check):
    assert small.materialize(DAY).success
    before = small.fingerprint()
    small.sim.faults.snapshot = fault
    if fault == "short_page":
        small.sim.faults.pages = {2}
    result = small.materialize(DAY + dt.timedelta(days=1))
    assert not result.success
    message = failure_messages(result)
    assert "blocking asset check" in message and check in message
    assert small.fingerprint() == before
    evaluations = {
        e.check_name: e.passed
        for e in (ev.event_specific_data for ev in result.all_events if ev.event_type_value == "ASSET_CHECK_EVALUATION")
    }
    assert evaluations[check] is False


def test_truncated_page_fails_the_fetch_naming_the_page_and_changes_nothing(small):
    assert small.materialize(DAY).success
    before = small.fingerprint()
    small.sim.faults.truncate_count = 1
    small.sim.faults.pages = {2}
    result = small.materialize(DAY + dt.timedelta(days=1))
    assert not result.success
    message = failure_messages(result)
    assert "e-gen" in message and "page 2" in message
    assert small.fingerprint() == before


def test_bad_values_are_quarantined_and_the_rest_syncs(small):
    small.sim.faults.snapshot = "bad_values"
    small.sim.faults.pages = {1}
    result = small.materialize(DAY)
    assert result.success, failure_messages(result)
    served = len(small.simulator_snapshot(DAY))
    assert small.metadata(result, "aed_data")["inserted"] == served - 3
    with small.engine.connect() as conn:
        rejected = conn.execute(
            sa.text(
                "SELECT record, failed_checks FROM rejected_records WHERE source = 'egen_aed' AND partition_key = :p"
            ),
            {"p": DAY.isoformat()},
        ).all()
    reasons = {check["column"]: (check["check"], check["value"]) for _, checks in rejected for check in checks}
    assert len(rejected) == 3
    assert reasons["latitude"][1] == "37.5x" and "str_matches" in reasons["latitude"][0]
    assert reasons["mon_start"][1] == "2561"
    assert reasons["equipment_serial"][0] == "not_nullable"
    assert any(record.get("wgs84Lat") == "37.5x" for record, _ in rejected)  # the raw record, as served
    # Re-running the partition replaces its quarantine instead of piling up duplicates.
    assert small.materialize(DAY).success
    with small.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM rejected_records")).scalar_one() == 3


def test_failure_after_the_staging_copy_leaves_every_table_as_before(small):
    assert small.materialize(DAY).success
    small.sim.today = DAY + dt.timedelta(days=1)
    assert small.materialize(DAY + dt.timedelta(days=1), assets=[aed_raw_snapshot]).success
    engine = small.engine
    validation = validate_archived_snapshot(
        small.archive,
        DAY + dt.timedelta(days=1),
        health_centers=health_center_lookup(engine),
        previous=previous_snapshot(engine, DAY + dt.timedelta(days=1)),
    )
    before = small.fingerprint()

    def crash(conn):
        staged = conn.execute(sa.text("SELECT count(*) FROM aed_stage")).scalar_one()
        assert staged == validation.snapshot.valid
        raise RuntimeError("injected failure after the staging COPY")

    with pytest.raises(RuntimeError, match="injected"):
        apply_snapshot(engine, validation.snapshot, after_stage=crash)
    assert small.fingerprint() == before
    with engine.connect() as conn:
        status, error = conn.execute(sa.text("SELECT status, error FROM sync_runs ORDER BY id DESC LIMIT 1")).one()
    assert status == "failed" and "injected" in error

    rerun = small.materialize(DAY + dt.timedelta(days=1))
    assert rerun.success, failure_messages(rerun)
    assert small.metadata(rerun, "aed_data")["updated"] > 0


def test_quota_exhausted_mid_fetch_writes_nothing_and_the_next_run_fetches_only_missing_pages(small):
    small.num_of_rows = 500  # 3,000 devices → 6 pages
    assert small.materialize(DAY).success
    before = small.fingerprint()
    next_day = DAY + dt.timedelta(days=1)
    small.sim.today = next_day
    small.sim.faults.egen_daily_quota = small.sim.calls_today("egen") + 3
    small.sim.request_log.clear()
    failed = small.materialize(next_day)
    assert not failed.success
    assert (
        "LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR" in failure_messages(failed)
        or "quota" in failure_messages(failed).lower()
    )
    assert small.fingerprint() == before
    manifest = small.archive.read_manifest(ARCHIVE_SOURCE, next_day.isoformat(), PAGE_SET)
    assert sorted(manifest.pages) == [1, 2, 3] and not manifest.complete
    with small.engine.connect() as conn:  # the refusal is a failed sync in the log (and the metrics)
        failed_syncs = conn.execute(
            sa.text("SELECT partition_key, error_type FROM sync_runs WHERE status = 'failed'")
        ).all()
    assert failed_syncs == [(next_day.isoformat(), "SourceQuotaExceeded")]

    small.sim.reset_faults()
    small.sim.request_log.clear()
    resumed = small.materialize(next_day)
    assert resumed.success, failure_messages(resumed)
    assert [int(r.params["pageNo"]) for r in small.sim.request_log if r.api == "egen"] == [4, 5, 6]
    raw_meta = small.metadata(resumed, "aed_raw_snapshot")
    assert (raw_meta["fetched_pages"], raw_meta["reused_pages"], raw_meta["complete"]) == (3, 3, True)
    assert set(_active(small.engine)) == set(small.simulator_snapshot(next_day))


def test_backfill_rebuilds_that_days_history_and_never_regresses_aed_data(small):
    days = [DAY + dt.timedelta(days=n) for n in range(4)]
    # Archive all four days, but apply only the first and the last.
    for day in days:
        assert small.materialize(day, assets=[aed_raw_snapshot]).success
    for day in (days[0], days[3]):
        assert small.materialize(day).success
    current = _active(small.engine)
    health_centers = health_center_lookup(small.engine)
    # Days 1 and 2 were never applied: the history says day 0's registry held until day 3.
    assert _history_on(small.engine, days[1]) == _history_on(small.engine, days[0])

    small.sim.today = days[3] + dt.timedelta(days=5)  # the API has moved on; the archive has not
    for day in (days[2], days[1]):
        result = small.materialize(day, move_clock=False)
        assert result.success, failure_messages(result)
        assert small.metadata(result, "aed_data")["mode"] == "history_only"
    assert _active(small.engine) == current
    for day in days:
        expected = expected_hashes(small.simulator_snapshot(day), health_centers)
        assert _history_on(small.engine, day) == expected, day


def test_past_partition_without_archive_fails_with_a_clear_message(small):
    result = small.materialize(DAY - dt.timedelta(days=3), move_clock=False)
    assert not result.success
    message = failure_messages(result)
    assert "serves only the current registry" in message and (DAY - dt.timedelta(days=3)).isoformat() in message
    assert small.fingerprint()["aed_data"][1] == 0


def test_history_answers_the_registry_of_every_simulated_date(small):
    days = [DAY + dt.timedelta(days=n) for n in range(0, 28, 4)]
    # Apply out of order: every other day first, then the ones in between as backfills.
    order = days[::2] + days[1::2]
    for day in days:
        assert small.materialize(day, assets=[aed_raw_snapshot]).success
    small.sim.today = days[-1]
    for day in order:
        result = small.materialize(day, move_clock=False)
        assert result.success, failure_messages(result)
    health_centers = health_center_lookup(small.engine)
    changed_days = 0
    for previous, day in itertools.pairwise(days):
        served = small.simulator_snapshot(day)
        assert _history_on(small.engine, day) == expected_hashes(served, health_centers), day
        changed_days += served.keys() != small.simulator_snapshot(previous).keys()
    assert changed_days >= 3  # the registry really moved over the period
    with small.engine.connect() as conn:
        # Values, not only hashes: a device's position as the history has it on a date = as served.
        probe = days[len(days) // 2]
        served = small.simulator_snapshot(probe)
        stored = dict(
            conn.execute(
                sa.text(
                    "SELECT equipment_serial, installation_position FROM aed_data_versions "
                    "WHERE valid_from <= :d AND (valid_to IS NULL OR valid_to > :d)"
                ),
                {"d": probe},
            ).all()
        )
    assert stored == {serial: record["buildPlace"] for serial, record in served.items()}


def test_missing_devices_guard_stops_the_sync_and_writes_nothing(small):
    assert small.materialize(DAY).success
    before = small.fingerprint()
    small.sim.faults.snapshot = "half_missing"
    lenient = {"ops": {"aed_validated": {"config": {"row_count_tolerance": 1.0}}}}
    result = small.materialize(DAY + dt.timedelta(days=1), run_config=lenient)
    assert not result.success
    message = failure_messages(result)
    assert "missing-devices guard" in message and "nothing was written" in message
    assert small.fingerprint() == before
    # An engineer who knows the registry really halved raises the guard for that run.
    allowed = {
        "ops": {
            "aed_validated": {"config": {"row_count_tolerance": 1.0}},
            "aed_data": {"config": {"missing_devices_guard": 0.6}},
        }
    }
    result = small.materialize(DAY + dt.timedelta(days=1), run_config=allowed)
    assert result.success, failure_messages(result)
    assert small.metadata(result, "aed_data")["deleted"] > 1000


def test_a_validated_snapshot_that_failed_its_checks_is_never_applied_later(small):
    assert small.materialize(DAY).success
    small.sim.faults.snapshot = "duplicate_serials"
    next_day = DAY + dt.timedelta(days=1)
    assert not small.materialize(next_day, assets=[aed_raw_snapshot, aed_validated]).success
    before = small.fingerprint()
    alone = small.materialize(next_day, assets=[aed_data], move_clock=False)
    assert not alone.success
    assert "failed blocking checks" in failure_messages(alone)
    assert small.fingerprint() == before


def test_a_transient_failure_left_over_by_the_client_retries_the_step(small):
    small.sim.faults.http_error_status = 503
    small.sim.faults.http_error_count = 1
    quick = {"ops": {"aed_raw_snapshot": {"config": {"transient_retry_wait_seconds": 0}}}}
    resources = small.resources
    # One attempt in the client, so that the 503 reaches the step.
    resources["egen_api"] = EgenApiResource(service_key="k", base_url=small.server.egen_base_url, max_attempts=1)

    small.sim.today = DAY
    result = dg.materialize(AED_ASSETS, partition_key=DAY.isoformat(), resources=resources, run_config=quick)
    assert result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 1 and retries[0].step_key == "aed_raw_snapshot"
    assert small.metadata(result, "aed_data")["inserted"] == len(small.simulator_snapshot(DAY))
