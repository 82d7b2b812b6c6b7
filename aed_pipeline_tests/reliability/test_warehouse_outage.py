"""A warehouse outage (issue 17): a real PostgreSQL restarted or stopped under a running sync.

Each test runs the chain through Dagster against a PostgreSQL server of its own (``OwnPostgres``: a
data directory under the test's temporary folder, its own socket and port, a password over TCP), so
that restarting it disturbs no other test. The moment is chosen exactly:

- during the AED staging COPY: the rows fed to COPY pause after the first page; the test sees the
  backend in ``COPY "aed_stage"`` in ``pg_stat_activity``, runs ``pg_ctl restart -m fast`` (every
  session ends with an admin shutdown) and lets the feed go on into the dead connection;
- during a flower date's write: right after the statement that starts the second date's write of a
  two-date run (the delete of its ``public_bidding_flowers`` slice, or the diff of its
  ``bidding_flowers`` slice), inside that date's transaction.

A restart is survived by one step retry and the tables equal a clean run's on another database
(AED history and snapshots, flower tables, quarantine). A server kept stopped past the retries fails
the run with one sentence (the warehouse with its password as ``***``, the step's work, the attempt
count), the tables are as before once it is back, and the interrupted ``sync_runs`` row ends
``failed`` (``WarehouseUnavailable``), never ``running``. Bad credentials, a missing table and a
constraint violation fail at once: one attempt. Each test prints its rows before → after (``-s``).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import event

from aed_pipeline.lib.core.warehouse import WAREHOUSE_UNAVAILABLE
from aed_pipeline.lib.egen_aed import rows as aed_rows
from aed_pipeline.lib.egen_aed.write import apply as aed_apply
from aed_pipeline.lib.ops.metrics import SyncMetricsCollector
from aed_pipeline.simulator import Simulator, SimulatorServer
from aed_pipeline_tests.support.aed_support import AedHarness
from aed_pipeline_tests.support.flower_support import KEY as AT_KEY
from aed_pipeline_tests.support.flower_support import SETTLED, flower_resources
from aed_pipeline_tests.support.flower_support import run as run_flowers
from aed_pipeline_tests.support.helpers import AED_TABLES
from aed_pipeline_tests.support.metrics_support import samples_of, series
from aed_pipeline_tests.support.own_postgres import PASSWORD, OwnPostgres
from aed_pipeline_tests.support.reliability_support import (
    create_database,
    drop_database,
    flower_content,
    sync_runs,
)

D0, D1 = dt.date(2026, 3, 2), dt.date(2026, 3, 9)  # AED: a day synced, then a week of changes
F0, F1, F2 = dt.date(2026, 3, 10), dt.date(2026, 3, 11), dt.date(2026, 3, 12)  # flowers: Tue; Wed + Thu
DEVICES, PAGE_ROWS = 2000, 500  # four pages: four CSV chunks into the staging COPY
RETRIES = 2  # step retries in these runs: three attempts in all
AED_STEPS = ("aed_raw_snapshot", "aed_validated", "aed_data")
FLOWER_STEPS = ("flower_auction_raw", "public_bidding_flowers", "flower_auction_validated", "flower_tables")
# Surrogate keys, clocks, run ids and archive paths differ between two correct runs of the same data
# (a soft delete is compared as a flag, its clock left out).
VOLATILE = [
    "id",
    "created_at",
    "updated_at",
    "recorded_at",
    "applied_at",
    "rejected_at",
    "deleted_at",
    "run_id",
    "archive_ref",
]


def fast_retries(steps: tuple[str, ...], retries: int = RETRIES) -> dict[str, Any]:
    """Run config: every step retries a transient failure ``retries`` times, without waiting."""
    config = {"transient_retries": retries, "transient_retry_wait_seconds": 0}
    return {"ops": {step: {"config": config} for step in steps}}


def content(engine: sa.Engine, tables: tuple[str, ...]) -> dict[str, tuple[str, int]]:
    """Every row of ``tables`` without its VOLATILE columns, digested: equal for two correct runs."""
    with engine.connect() as conn:
        return {
            table: tuple(
                conn.execute(
                    sa.text(
                        "SELECT coalesce(md5(string_agg(r, '|' ORDER BY r)), ''), count(*) FROM (SELECT "
                        "((to_jsonb(t) - CAST(:volatile AS text[])) || jsonb_build_object('removed', "
                        "coalesce(to_jsonb(t) -> 'deleted_at', 'null') <> 'null'))::text AS r "
                        f"FROM {table} t) s"
                    ),
                    {"volatile": VOLATILE},
                ).one()
            )
            for table in tables
        }


def aed_content(engine: sa.Engine) -> dict[str, tuple[str, int]]:
    return content(engine, (*AED_TABLES, "rejected_records"))


def rows(state: dict[str, tuple[str, int]]) -> str:
    return ", ".join(f"{table} {count}" for table, (_, count) in state.items())


def attempts(result: dg.ExecuteInProcessResult, step: str) -> int:
    """How many times ``step`` ran in the run (a retry restarts it rather than starting it)."""
    return sum(e.event_type_value in ("STEP_START", "STEP_RESTARTED") and e.step_key == step for e in result.all_events)


def step_failure(result: dg.ExecuteInProcessResult, step: str) -> tuple[str, list[str]]:
    """The description of ``step``'s failure and the class names of its error's whole chain."""
    [failure] = [e for e in result.get_step_failure_events() if e.step_key == step]
    data = failure.step_failure_data
    chain, error = [], data.error
    while error is not None:
        chain.append(error.cls_name or "")
        error = error.cause or error.context
    assert data.user_failure_data is not None, "a dg.Failure of the step policy"
    return data.user_failure_data.description or "", chain


def errors_by_type(engine: sa.Engine, metric: str) -> dict[str, float]:
    """The metrics endpoint's failed syncs by type (``metric``), the types counted at least once."""
    registry = CollectorRegistry()
    registry.register(SyncMetricsCollector(engine))
    counted = series(samples_of(generate_latest(registry).decode()), metric)
    return {dict(labels)["type"]: count for labels, count in counted.items() if count}


def assert_no_password(result: dg.ExecuteInProcessResult) -> None:
    """The password is in no event of the run: no message, no metadata, no error."""
    assert PASSWORD not in repr(result.all_events)


@pytest.fixture
def own_pg(tmp_path: Path) -> Iterator[OwnPostgres]:
    server = OwnPostgres(tmp_path / "pg")
    yield server
    server.remove()


# --------------------------------------------------------------------------- AED


@pytest.fixture(scope="module")
def aed_sim() -> Iterator[tuple[Simulator, SimulatorServer]]:
    sim = Simulator(today=D0, aed_count=DEVICES)
    with SimulatorServer(sim) as server:
        yield sim, server


def aed_harness(aed_sim, url: str, tmp: Path) -> AedHarness:
    sim, server = aed_sim
    return AedHarness(sim=sim, server=server, database_url=url, tmp=tmp, num_of_rows=PAGE_ROWS)


@pytest.fixture(scope="module")
def aed_reference(aed_sim, embedded_pg, tmp_path_factory) -> dict[str, tuple[str, int]]:
    """The AED tables after clean runs of D0 and D1 on a database of the session's server."""
    name = create_database(embedded_pg)
    try:
        harness = aed_harness(aed_sim, embedded_pg.url(name), tmp_path_factory.mktemp("aed_reference"))
        assert harness.materialize(D0).success and harness.materialize(D1).success
        return aed_content(harness.engine)
    finally:
        drop_database(embedded_pg, name)


class CopyGate:
    """Holds the first staging COPY after its first chunk until the test has done its deed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # A page's rows per COPY chunk: four chunks, the first in the COPY when the gate closes.
        monkeypatch.setattr(aed_rows, "READ_BATCH_ROWS", PAGE_ROWS)
        self.in_copy, self.go_on = threading.Event(), threading.Event()
        self._armed = True
        self.copying = False  # whether the backend was in the COPY when the deed was done
        original = aed_apply.csv_chunks

        def chunks(path):
            for number, chunk in enumerate(original(path)):
                if number == 1 and self._armed:  # the first page is in COPY, the rest not yet
                    self._armed = False
                    self.in_copy.set()
                    assert self.go_on.wait(60)
                yield chunk

        monkeypatch.setattr(aed_apply, "csv_chunks", chunks)

    def during_copy(self, server: OwnPostgres, deed: Callable[[], None]) -> threading.Thread:
        """Once the backend is in the staging COPY, do ``deed`` (restart, stop), then let the feed go on."""

        def watch() -> None:
            try:
                assert self.in_copy.wait(120)
                with server.admin(server.database) as conn:
                    copying = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                        "AND query LIKE 'COPY \"aed_stage\"%%'"
                    ).fetchone()
                self.copying = copying is not None and copying[0] == 1
                deed()
            finally:
                self.go_on.set()

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        return thread


def test_a_warehouse_restart_during_the_aed_staging_copy_is_survived_by_a_step_retry_and_equals_a_clean_run(
    aed_sim, aed_reference, own_pg, tmp_path, monkeypatch
) -> None:
    harness = aed_harness(aed_sim, own_pg.url(), tmp_path)
    assert harness.materialize(D0).success
    engine = harness.engine
    before = aed_content(engine)

    gate = CopyGate(monkeypatch)
    watcher = gate.during_copy(own_pg, own_pg.restart)
    result = harness.materialize(D1, run_config=fast_retries(AED_STEPS))
    watcher.join(60)

    assert gate.copying, "the restart came while the backend was in the staging COPY"
    assert result.success
    assert [attempts(result, step) for step in AED_STEPS] == [1, 1, 2]
    after = aed_content(engine)
    assert after == aed_reference  # aed_data, aed_data_history, aed_snapshots, rejected_records
    # The interrupted attempt's row was marked failed as an outage once the server was back.
    assert [r[:2] for r in sync_runs(engine)] == [
        ("success", None),
        ("failed", WAREHOUSE_UNAVAILABLE),
        ("success", None),
    ]
    assert_no_password(result)
    assert errors_by_type(engine, "edgen_sync_errors_total") == {WAREHOUSE_UNAVAILABLE: 1}
    print(f"\nAED restart mid-COPY: recovered in 2 attempts; rows {rows(before)} → {rows(after)} (= clean run)")


def test_a_warehouse_stopped_past_the_retries_fails_the_run_in_one_sentence_and_the_rows_end_failed(
    aed_sim, aed_reference, own_pg, tmp_path, monkeypatch
) -> None:
    harness = aed_harness(aed_sim, own_pg.url(), tmp_path)
    assert harness.materialize(D0).success
    engine = harness.engine
    before = aed_content(engine)

    gate = CopyGate(monkeypatch)
    watcher = gate.during_copy(own_pg, own_pg.stop)
    result = harness.materialize(D1, run_config=fast_retries(AED_STEPS))
    watcher.join(60)

    assert gate.copying and not result.success
    assert attempts(result, "aed_data") == RETRIES + 1
    sentence, chain = step_failure(result, "aed_data")
    redacted = own_pg.url("***")
    assert sentence == (
        f"The warehouse {redacted} was unavailable while applying the validated e-gen snapshot to aed_data for "
        f'{D1.isoformat()}: gave up after {RETRIES + 1} step attempts (connection to server at "127.0.0.1", '
        f"port {own_pg.port} failed: Connection refused); an interrupted transaction writes nothing, so the tables "
        "keep what was committed before and a re-run starts the step over."
    )
    assert chain == ["Failure"], "no driver traceback chained to the sentence"
    assert_no_password(result)

    own_pg.start()
    assert aed_content(engine) == before
    # The interrupted row could not be marked while the server was away: still running, lock-free.
    assert [r[:2] for r in sync_runs(engine)] == [("success", None), ("running", None)]
    rerun = harness.materialize(D1, run_config=fast_retries(AED_STEPS))
    assert rerun.success and aed_content(engine) == aed_reference
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT status, error_type, error FROM sync_runs ORDER BY id")).all()
    assert [tuple(r[:2]) for r in statuses] == [
        ("success", None),
        ("failed", WAREHOUSE_UNAVAILABLE),
        ("success", None),
    ]
    assert statuses[1].error.startswith("the warehouse connection was lost or refused: ")
    print(
        f"\nAED stopped past the retries: {sentence}\n  rows {rows(before)} → {rows(aed_content(engine))} "
        f"after the server came back and the re-run; interrupted row: {statuses[1].error_type}"
    )


def test_bad_warehouse_credentials_fail_the_aed_chain_at_once_without_a_retry(aed_sim, own_pg, tmp_path) -> None:
    harness = aed_harness(aed_sim, own_pg.url(), tmp_path)
    assert harness.materialize(D0).success
    before = aed_content(harness.engine)

    wrong = aed_harness(aed_sim, own_pg.url("not-the-password"), tmp_path)
    result = wrong.materialize(D1, run_config=fast_retries(AED_STEPS))

    assert not result.success
    assert attempts(result, "aed_validated") == 1 and attempts(result, "aed_data") == 0
    sentence, chain = step_failure(result, "aed_validated")
    assert sentence == (
        f"The warehouse {own_pg.url('***')} refused the login while validating the e-gen snapshot in "
        f'aed_validated for {D1.isoformat()} (connection to server at "127.0.0.1", port {own_pg.port} failed: '
        'password authentication failed for user "etl"): not retried, the credentials or the database name need '
        "fixing (AED_PIPELINE_DATABASE_URL)."
    )
    assert chain == ["Failure"]
    assert "not-the-password" not in repr(result.all_events)
    assert aed_content(harness.engine) == before
    print(f"\nAED bad credentials: failed in 1 attempt: {sentence}\n  rows {rows(before)} → {rows(before)}")


@pytest.mark.parametrize("fault", ["missing-table", "constraint-violation"])
def test_a_database_error_that_is_not_an_outage_fails_at_once(aed_sim, fresh_database_url, tmp_path, fault) -> None:
    harness = aed_harness(aed_sim, fresh_database_url, tmp_path)
    assert harness.materialize(D0).success
    engine = harness.engine
    before = aed_content(engine)
    with engine.begin() as conn:
        if fault == "missing-table":  # the quarantine written by aed_validated
            conn.execute(sa.text("ALTER TABLE rejected_records RENAME TO rejected_records_gone"))
        else:  # every row aed_data would write breaks it
            conn.execute(sa.text("ALTER TABLE aed_data ADD CONSTRAINT outage_test CHECK (false) NOT VALID"))

    result = harness.materialize(D1, run_config=fast_retries(AED_STEPS))

    # The driver's class in the sentence; the sync log keeps SQLAlchemy's, as for every error.
    step, error, logged = (
        ("aed_validated", "UndefinedTable", None)
        if fault == "missing-table"
        else ("aed_data", "CheckViolation", "IntegrityError")
    )
    assert not result.success and attempts(result, step) == 1
    sentence, _ = step_failure(result, step)
    assert sentence.startswith(f"The warehouse {harness.resources['warehouse'].described()} failed while ")
    assert f"({error}: " in sentence and sentence.endswith(
        "not retried, another attempt would fail the same way; nothing of the failed transaction was written."
    )
    if fault == "missing-table":
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE rejected_records_gone RENAME TO rejected_records"))
    else:
        assert [r[:2] for r in sync_runs(engine)][-1] == ("failed", logged)
    assert aed_content(engine) == before
    print(f"\nAED {fault}: failed in 1 attempt: {sentence}\n  rows {rows(before)} → {rows(aed_content(engine))}")


# --------------------------------------------------------------------------- flowers


@pytest.fixture(scope="module")
def flower_sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(Simulator(today=SETTLED, at_service_keys={AT_KEY})) as server:
        yield server


def flower_run(resources: dict, first: dt.date, last: dt.date) -> dg.ExecuteInProcessResult:
    """One run of the flower chain over ``first`` … ``last``, with fast step retries."""
    if first == last:
        return run_flowers(resources, day=first, run_config=fast_retries(FLOWER_STEPS))
    return run_flowers(resources, first=first, last=last, run_config=fast_retries(FLOWER_STEPS))


@pytest.fixture(scope="module")
def flower_reference(flower_sim, embedded_pg, tmp_path_factory) -> dict[str, tuple[str, int]]:
    """The flower tables after clean runs of F0 and of F1 … F2 on a database of the session's server."""
    name = create_database(embedded_pg)
    try:
        resources = flower_resources(flower_sim, embedded_pg.url(name), tmp_path_factory.mktemp("flower_reference"))
        assert flower_run(resources, F0, F0).success and flower_run(resources, F1, F2).success
        engine = resources["warehouse"].engine()
        return {**flower_content(engine), **content(engine, ("rejected_records",))}
    finally:
        drop_database(embedded_pg, name)


# The statement that starts a date's write in each flower table step, in that date's transaction.
FLOWER_WRITES = {
    "public_bidding_flowers": r"DELETE FROM public_bidding_flowers\s",
    "flower_tables": r"WITH staged AS",
}


@pytest.mark.parametrize("step", list(FLOWER_WRITES))
def test_a_warehouse_restart_during_a_flower_dates_write_is_survived_by_a_step_retry_and_equals_a_clean_run(
    flower_sim, flower_reference, own_pg, tmp_path, step
) -> None:
    resources = flower_resources(flower_sim, own_pg.url(), tmp_path)
    engine = resources["warehouse"].engine()
    assert flower_run(resources, F0, F0).success
    before = {**flower_content(engine), **content(engine, ("rejected_records",))}

    pattern, seen = re.compile(FLOWER_WRITES[step]), []

    @event.listens_for(engine, "after_cursor_execute")
    def restart_in_the_second_date(conn, cursor, statement, parameters, context, executemany) -> None:
        if pattern.match(statement.lstrip()):
            seen.append(statement)
            if len(seen) == 2:  # the second date of the run, inside its transaction
                own_pg.restart()

    try:
        result = flower_run(resources, F1, F2)
    finally:
        event.remove(engine, "after_cursor_execute", restart_in_the_second_date)

    assert result.success
    assert attempts(result, step) == 2 and sum(attempts(result, s) for s in FLOWER_STEPS) == len(FLOWER_STEPS) + 1
    after = {**flower_content(engine), **content(engine, ("rejected_records",))}
    assert after == flower_reference
    table = "public_bidding_flowers" if step == "public_bidding_flowers" else "bidding_flowers"
    runs = [r[:2] for r in sync_runs(engine, "at_flower")]
    # F1 committed before the restart, F2 interrupted; the retry wrote both again (F1 unchanged).
    assert runs.count(("failed", WAREHOUSE_UNAVAILABLE)) == 1 and ("running", None) not in runs
    with engine.connect() as conn:
        interrupted = conn.execute(
            sa.text("SELECT table_name, partition_key FROM sync_runs WHERE status = 'failed'")
        ).one()
    assert tuple(interrupted) == (table, F2.isoformat())
    assert_no_password(result)
    assert errors_by_type(engine, "flower_sync_errors_total") == {WAREHOUSE_UNAVAILABLE: 1}
    print(f"\nflower restart in {step} ({F2}): recovered in 2 attempts; rows {rows(before)} → {rows(after)}")
