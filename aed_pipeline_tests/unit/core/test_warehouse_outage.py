"""Telling a warehouse outage from every other database error, and the sync log through an outage.

The errors are real ones, from real servers (the session's embedded server, or one of the test's
own that asks for a password), except for the SQLSTATEs no test can make a server send on cue
(crash shutdown, cannot connect now), built as psycopg builds them.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import errors as pg_errors

from aed_pipeline.lib.core.sync_log import record_failed_sync, sync_run
from aed_pipeline.lib.core.warehouse import (
    WAREHOUSE_UNAVAILABLE,
    create_warehouse_engine,
    database_error_text,
    is_login_refusal,
    is_warehouse_outage,
    warehouse_engine,
)
from aed_pipeline_tests.support.own_postgres import PASSWORD, OwnPostgres


def _error_of(engine: sa.Engine, statement: str, **parameters) -> sa.exc.DBAPIError:
    with pytest.raises(sa.exc.DBAPIError) as caught, engine.begin() as conn:
        conn.execute(sa.text(statement), parameters)
    return caught.value


@pytest.fixture
def own_pg(tmp_path: Path) -> Iterator[OwnPostgres]:
    server = OwnPostgres(tmp_path / "pg")
    yield server
    server.remove()


def test_a_refused_connection_or_a_missing_socket_is_an_outage(tmp_path) -> None:
    for url in (
        "postgresql+psycopg://etl:secret@127.0.0.1:1/warehouse?connect_timeout=2",
        f"postgresql+psycopg://postgres@/warehouse?host={tmp_path}",
    ):
        with pytest.raises(sa.exc.OperationalError) as caught:
            create_warehouse_engine(url).connect()
        assert is_warehouse_outage(caught.value) and not is_login_refusal(caught.value)
        assert is_warehouse_outage(caught.value.orig)


def test_an_admin_shutdown_of_the_session_is_an_outage(fresh_database_url) -> None:
    engine = create_warehouse_engine(fresh_database_url)
    with engine.connect() as victim, engine.connect() as admin:
        pid = victim.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(sa.exc.OperationalError) as caught:
            victim.execute(sa.text("SELECT 1"))
    error = caught.value
    assert isinstance(error.orig, pg_errors.AdminShutdown) and error.orig.sqlstate == "57P01"
    assert error.connection_invalidated and is_warehouse_outage(error)
    assert database_error_text(error) == "terminating connection due to administrator command"
    engine.dispose()


def test_a_restart_mid_statement_is_an_outage_and_the_engine_reconnects_afterwards(own_pg) -> None:
    engine = warehouse_engine(own_pg.url())
    with engine.connect() as conn:
        restart = threading.Timer(0.3, own_pg.restart)
        restart.start()
        with pytest.raises(sa.exc.OperationalError) as caught:
            conn.execute(sa.text("SELECT pg_sleep(10)"))
        restart.join()
    assert is_warehouse_outage(caught.value)
    with engine.connect() as conn:  # pool_pre_ping replaced the dead pooled connection
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1


@pytest.mark.parametrize(
    "sqlstate",
    ["08000", "08003", "08006", "08001", "57P01", "57P02", "57P03", "53300", "25006"],
)
def test_connection_exceptions_and_the_server_going_away_are_outages(sqlstate) -> None:
    assert is_warehouse_outage(pg_errors.lookup(sqlstate)("the server went away"))


def test_a_write_to_a_read_only_server_after_a_failover_is_an_outage(fresh_database_url) -> None:
    # What a demoted primary answers a write with; here a read-only transaction gives the same error.
    engine = create_warehouse_engine(fresh_database_url)
    error = _error_of(engine, "SET TRANSACTION READ ONLY; CREATE TEMPORARY TABLE t (k int)")
    assert error.orig is not None and error.orig.sqlstate == "25006"
    assert is_warehouse_outage(error)
    engine.dispose()


@pytest.mark.parametrize(
    ("statement", "sqlstate"),
    [
        ("SELECT * FROM no_such_table", "42P01"),  # undefined table
        ("SELECT 1 / 0", "22012"),  # division by zero
        ("SET LOCAL statement_timeout = 10; SELECT pg_sleep(1)", "57014"),  # query canceled: an OperationalError
        ("CREATE TEMPORARY TABLE t (k int PRIMARY KEY); INSERT INTO t VALUES (1), (1)", "23505"),
    ],
)
def test_errors_another_attempt_would_meet_again_are_not_outages(fresh_database_url, statement, sqlstate) -> None:
    engine = create_warehouse_engine(fresh_database_url)
    error = _error_of(engine, statement)
    assert error.orig is not None and error.orig.sqlstate == sqlstate
    assert not is_warehouse_outage(error) and not is_login_refusal(error)
    engine.dispose()


def test_a_login_the_server_refuses_is_not_an_outage(own_pg, embedded_pg) -> None:
    for url, says in (
        (own_pg.url("not-the-password"), 'password authentication failed for user "etl"'),
        (embedded_pg.url("no_such_database"), 'database "no_such_database" does not exist'),
    ):
        with pytest.raises(sa.exc.OperationalError) as caught:
            create_warehouse_engine(url).connect()
        assert not is_warehouse_outage(caught.value) and is_login_refusal(caught.value)
        assert says in database_error_text(caught.value)
    assert "not-the-password" not in database_error_text(caught.value, own_pg.url("not-the-password"))


def test_the_error_text_is_one_line_without_the_password() -> None:
    error = psycopg.OperationalError(f"connection to server failed: could not use {PASSWORD}\nmore detail")
    text = database_error_text(error, f"postgresql+psycopg://etl:{PASSWORD}@db/warehouse")
    assert text == "connection to server failed: could not use ***"


# --------------------------------------------------------------------------- the sync log


def _runs(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT status, error_type, error FROM sync_runs ORDER BY id"))]


def test_a_sync_the_outage_interrupted_is_marked_failed_as_one_by_the_next_sync(own_pg) -> None:
    engine = warehouse_engine(own_pg.url())
    with (
        pytest.raises(sa.exc.OperationalError),
        sync_run(engine, source="egen_aed", table_name="aed_data", partition_key="2026-03-02", run_id="r1"),
        engine.begin() as conn,
    ):
        own_pg.stop()  # the sync's transaction dies; its failure cannot be written now
        conn.execute(sa.text("SELECT 1"))
    own_pg.start()
    assert [r[:2] for r in _runs(engine)] == [("running", None)]

    record_failed_sync(  # the next sync on this warehouse (here one that fails on its own)
        engine,
        source="egen_aed",
        table_name="aed_data",
        partition_key="2026-03-03",
        run_id="r2",
        error=RuntimeError("boom"),
    )
    interrupted, later = _runs(engine)
    assert interrupted[:2] == ("failed", WAREHOUSE_UNAVAILABLE)  # not Abandoned: this process knew why
    assert interrupted[2].startswith("the warehouse connection was lost or refused: ")
    assert PASSWORD not in interrupted[2]
    assert later[:2] == ("failed", "RuntimeError")


def test_another_process_finds_a_sync_a_restart_interrupted_as_an_outage_not_as_abandoned(own_pg) -> None:
    engine = warehouse_engine(own_pg.url())
    with (
        pytest.raises(sa.exc.OperationalError),
        sync_run(engine, source="egen_aed", table_name="aed_data", partition_key="2026-03-02", run_id="r1"),
        engine.begin() as conn,
    ):
        own_pg.stop()
        conn.execute(sa.text("SELECT 1"))
    own_pg.start()
    # The next sync runs in a process of its own, which knows nothing of this one's failure.
    next_sync = (
        "import sys; from aed_pipeline.lib.core.sync_log import record_failed_sync; "
        "from aed_pipeline.lib.core.warehouse import warehouse_engine; "
        "record_failed_sync(warehouse_engine(sys.argv[1]), source='egen_aed', table_name='aed_data', "
        "partition_key='2026-03-03', run_id='r2', error=RuntimeError('later'))"
    )
    subprocess.run([sys.executable, "-c", next_sync, own_pg.url()], check=True, timeout=120)
    interrupted, later = _runs(engine)
    assert interrupted[:2] == ("failed", WAREHOUSE_UNAVAILABLE)
    assert interrupted[2].startswith("the warehouse restarted while this sync was running")
    assert later[:2] == ("failed", "RuntimeError")


def test_an_outage_while_recording_a_failure_keeps_the_original_error(own_pg) -> None:
    engine = warehouse_engine(own_pg.url())
    with (
        pytest.raises(ValueError, match="the sync's own error"),
        sync_run(engine, source="egen_aed", table_name="aed_data", partition_key="2026-03-02", run_id="r1"),
    ):
        own_pg.stop()
        raise ValueError("the sync's own error")
    own_pg.start()
    record_failed_sync(
        engine,
        source="egen_aed",
        table_name="aed_data",
        partition_key="2026-03-03",
        run_id="r2",
        error=RuntimeError("later"),
    )
    assert _runs(engine)[0] == ("failed", "ValueError", "the sync's own error")


def test_a_late_failure_never_overwrites_a_committed_success(fresh_database_url) -> None:
    engine = warehouse_engine(fresh_database_url)
    with sync_run(engine, source="egen_aed", table_name="aed_data", partition_key="2026-03-02", run_id="r") as run:
        with engine.begin() as conn:
            run.mark_success(conn)
        # The COMMIT's answer lost with the connection: the sync cannot know it committed.
        run.mark_failed(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert [r[:2] for r in _runs(engine)] == [("success", None)]
