"""The change feed, the sync plan and the checks before COMMIT, through Dagster, the simulator over
localhost and the embedded PostgreSQL; the feed on the command line and the documented queries."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from aed_pipeline.cli import main as cli_main
from aed_pipeline.defs.egen_aed import assets
from aed_pipeline.lib.egen_aed.changes import FEED_COLUMNS
from aed_pipeline.lib.egen_aed.write.apply import apply_snapshot
from aed_pipeline_tests.support.aed_support import failure_messages, start_harness
from aed_pipeline_tests.support.helpers import DATA_TABLES, table_state

DAY = dt.date(2026, 3, 2)
NEXT = DAY + dt.timedelta(days=1)
LATER = DAY + dt.timedelta(days=9)  # far enough for changed, new and removed devices among 3,000
DOCS = Path(__file__).resolve().parents[2] / "docs" / "aed-sync.md"
#: Everything a plan must leave as it was: the data tables, the repairs and the run log.
UNTOUCHED = (*DATA_TABLES, "aed_repairs", "sync_runs")
#: What the plan's observation and the sync's materialisation of the same date agree on.
SAME_KEYS = (
    "mode",
    "inserted",
    "updated",
    "deleted",
    "revived",
    "unchanged",
    "drift_repaired",
    "history_versions_opened",
    "history_versions_closed",
    "missing_devices",
    "change_feed",
    "changes",
    "newest_applied_partition",
)
LENIENT = {"ops": {"aed_validated": {"config": {"row_count_tolerance": 1.0}}}}


@pytest.fixture
def small(fresh_database_url, tmp_path):
    harness = start_harness(fresh_database_url, tmp_path, day=DAY, aed_count=3000, num_of_rows=1000)
    yield harness
    harness.server.stop()


def _events(result, kind: str, asset: str = "aed_data") -> list:
    def key(event):
        return event.asset_key or getattr(event.event_specific_data, "asset_key", None)

    return [e for e in result.all_events if e.event_type_value == kind and key(e) and key(e).to_user_string() == asset]


def _check_evaluations(result) -> dict:
    return {e.event_specific_data.check_name: e.event_specific_data for e in _events(result, "ASSET_CHECK_EVALUATION")}


def test_the_plan_job_observes_what_aed_data_would_write_and_the_sync_then_writes_exactly_that(small):
    assert small.materialize(DAY).success
    before = table_state(small.engine, UNTOUCHED)

    plan = small.plan(LATER)
    assert plan.success, failure_messages(plan)
    assert not _events(plan, "ASSET_MATERIALIZATION") and not _check_evaluations(plan)
    assert {e.asset_key.to_user_string() for e in plan.get_asset_materialization_events()} == {
        "aed_raw_snapshot",
        "aed_validated",
    }
    [observation] = _events(plan, "ASSET_OBSERVATION")
    assert observation.partition == LATER.isoformat()
    planned = small.observation(plan, "aed_data")
    assert planned["plan"] == "the sync would write this; rolled back, nothing was written"
    assert "| active_rows_match_snapshot | passes |" in planned["post_write_checks"]
    assert table_state(small.engine, UNTOUCHED) == before

    sync = small.materialize(LATER)
    assert sync.success, failure_messages(sync)
    written = small.metadata(sync, "aed_data")
    assert {k: planned[k] for k in SAME_KEYS} == {k: written[k] for k in SAME_KEYS}
    assert written["updated"] and written["deleted"] == planned["change_feed"][LATER.isoformat()]["removed"]
    with small.engine.connect() as conn:
        removed = conn.execute(sa.text("SELECT equipment_serial FROM aed_data WHERE deleted_at IS NOT NULL")).scalars()
        assert f"**{written['deleted']}** devices would be soft-deleted" in planned["would_soft_delete"]
        assert all(f"`{serial}`" in planned["would_soft_delete"] for serial in removed)
    assert all(e.passed for e in _check_evaluations(sync).values()) and len(_check_evaluations(sync)) == 3


def test_the_guard_refusal_names_the_plan_which_lists_the_vanished_devices_and_the_guard_that_passes(small):
    assert small.materialize(DAY).success
    small.sim.faults.snapshot = "half_missing"
    refused = small.materialize(NEXT, run_config=LENIENT)
    assert not refused.success
    message = failure_messages(refused)
    assert f"launch the job aed_sync_plan for partition {NEXT}" in message and "plan: true" in message
    guard = float(re.search(r"missing_devices_guard: ([0-9]+(?:\.[0-9]+)?)", message).group(1))
    assert 0.4 < guard < 0.6

    before = table_state(small.engine, UNTOUCHED)
    plan = small.plan(NEXT, run_config=LENIENT, move_clock=False)
    assert plan.success, failure_messages(plan)
    planned = small.observation(plan, "aed_data")
    assert planned["plan"].startswith("the sync would refuse this snapshot (missing-devices guard)")
    assert "the sync would refuse the snapshot" in planned["missing_devices"]
    assert "| 보건소 | devices |" in planned["would_soft_delete"]
    assert table_state(small.engine, UNTOUCHED) == before

    through = {"ops": {**LENIENT["ops"], "aed_data": {"config": {"missing_devices_guard": guard}}}}
    result = small.materialize(NEXT, run_config=through, move_clock=False)
    assert result.success, failure_messages(result)
    written = small.metadata(result, "aed_data")
    assert f"**{written['deleted']}** devices would be soft-deleted" in planned["would_soft_delete"]
    assert written["deleted"] > 1000


def test_a_failed_post_write_check_fails_the_run_with_its_examples_and_writes_nothing(small, monkeypatch):
    assert small.materialize(DAY).success
    before = table_state(small.engine, (*DATA_TABLES, "aed_repairs"))

    def soft_delete_one(conn):
        conn.execute(
            sa.text(
                "UPDATE aed_data SET deleted_at = now() WHERE equipment_serial = "
                "(SELECT min(equipment_serial) FROM aed_data WHERE deleted_at IS NULL)"
            )
        )

    monkeypatch.setattr(assets, "apply_snapshot", functools.partial(apply_snapshot, after_diff=soft_delete_one))
    result = small.materialize(NEXT)
    assert not result.success
    message = failure_messages(result)
    assert (
        "post-write checks failed" in message and "rolled back" in message and "active_rows_match_snapshot" in message
    )
    assert not _events(result, "ASSET_MATERIALIZATION")
    evaluations = _check_evaluations(result)
    assert {name: e.passed for name, e in evaluations.items()} == {
        "active_rows_match_snapshot": False,
        "health_centers_exist": True,
        "serials_unique_in_table": True,
    }
    failed = evaluations["active_rows_match_snapshot"]
    assert failed.blocking and "validated, not active: " in failed.metadata["failing_examples"].value
    assert failed.metadata["active_rows"].value == failed.metadata["validated_rows"].value - 1
    # Rejected records are the validation's (committed by aed_validated); aed_data wrote nothing.
    assert {t: v for t, v in table_state(small.engine, (*DATA_TABLES, "aed_repairs")).items()} == {
        **before,
        "rejected_records": table_state(small.engine, ("rejected_records",))["rejected_records"],
    }
    with small.engine.connect() as conn:
        status, error_type, error = conn.execute(
            sa.text("SELECT status, error_type, error FROM sync_runs ORDER BY id DESC LIMIT 1")
        ).one()
    assert (status, error_type) == ("failed", "PostWriteChecksFailed") and "active_rows_match_snapshot" in error


def _feed(engine, since: dt.date) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT {', '.join(FEED_COLUMNS)} FROM aed_changes WHERE snapshot_date >= :d "
                "ORDER BY snapshot_date, equipment_serial, change_type"
            ),
            {"d": since},
        ).mappings()
        return [dict(r) for r in rows]


def test_the_feed_names_each_run_and_the_command_line_streams_it_as_csv_and_jsonl(small, monkeypatch, capsys):
    days = [DAY + dt.timedelta(days=n) for n in range(3)]
    runs = {}
    for day in days:
        result = small.materialize(day)
        assert result.success, failure_messages(result)
        runs[day] = result.run_id
        assert small.metadata(result, "aed_data")["change_feed"][day.isoformat()]
    feed = _feed(small.engine, days[1])
    assert feed and {(r["snapshot_date"], r["run_id"]) for r in feed} == {(d, runs[d]) for d in days[1:]}
    assert {r["previous_date"] for r in feed if r["snapshot_date"] == days[2]} == {days[1]}

    monkeypatch.setenv("AED_PIPELINE_DATABASE_URL", small.database_url)
    assert cli_main(["aed", "changes", "--since", days[1].isoformat(), "--format", "jsonl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = [json.loads(json.dumps(r, ensure_ascii=False, default=str)) for r in feed]
    assert [json.loads(line) for line in lines] == expected

    assert cli_main(["aed", "changes", "--since", days[2].isoformat(), "--until", days[2].isoformat()]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    on_day = [r for r in expected if r["snapshot_date"] == days[2].isoformat()]
    assert [r["equipment_serial"] for r in rows] == [r["equipment_serial"] for r in on_day]
    assert [json.loads(r["changed_columns"]) for r in rows] == [r["changed_columns"] for r in on_day]
    assert [json.loads(r["after"] or "null") for r in rows] == [r["after"] for r in on_day]
    assert cli_main(["aed", "changes", "--since", days[2].isoformat(), "--until", days[0].isoformat()]) == 2

    # The documented queries run as written (counted in the database: psycopg reads no 24:00 time).
    blocks = re.findall(r"```sql\n(.*?);\n```", DOCS.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) >= 4
    with small.engine.connect() as conn:
        counts = [conn.exec_driver_sql(f"SELECT count(*) FROM ({block}) q").scalar_one() for block in blocks]
    assert counts[0] and counts[1]  # the registry and the changes of 2026-03-03, one of the days synced
