"""The warehouse: the embedded server, the migrations, and the database URL in use."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from aed_pipeline.cli import main as cli_main
from aed_pipeline.lib.core.embedded_postgres import ensure_embedded_postgres, stop_embedded_postgres
from aed_pipeline.lib.core.warehouse import (
    create_warehouse_engine,
    current_revision,
    downgrade_schema,
    head_revision,
    normalize_database_url,
    redact_database_url,
    upgrade_schema,
    warehouse_engine,
)

PLATFORM_TABLES = {
    "aed_data",
    "aed_data_history",
    "health_centers",
    "public_bidding_flowers",
    "flower_types",
    "flowers",
    "bidding_flowers",
    "rejected_records",
    "sync_runs",
}

ENSURE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from aed_pipeline.lib.core.embedded_postgres import ensure_embedded_postgres
    server = ensure_embedded_postgres(Path(sys.argv[1]))
    print(json.dumps({"pid": server.pid, "started_here": server.started_here}))
    """
)


def _ensure_in_subprocess(home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", ENSURE_SCRIPT, str(home)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_migrations_create_every_table_and_revert_cleanly(fresh_database_url: str) -> None:
    engine = create_warehouse_engine(fresh_database_url)
    assert current_revision(engine) is None

    upgrade_schema(engine)
    assert current_revision(engine) == head_revision()
    assert _tables(engine) >= PLATFORM_TABLES

    downgrade_schema(engine, "base")
    assert current_revision(engine) is None
    assert not (PLATFORM_TABLES & _tables(engine))

    upgrade_schema(engine)
    assert _tables(engine) >= PLATFORM_TABLES
    engine.dispose()


def test_first_migration_ships_every_sido_and_sigungu_with_its_health_center(fresh_database_url: str) -> None:
    engine = create_warehouse_engine(fresh_database_url)
    upgrade_schema(engine)
    with engine.connect() as conn:
        per_sido = dict(conn.execute(sa.text("SELECT sido, count(*) FROM health_centers GROUP BY sido")).all())
        jongno = conn.execute(
            sa.text("SELECT name FROM health_centers WHERE sido = '서울특별시' AND gugun = '종로구'")
        ).scalar_one()
    engine.dispose()
    assert len(per_sido) == 17
    assert per_sido["서울특별시"] == 25
    assert per_sido["경기도"] == 31
    assert per_sido["세종특별자치시"] == 1
    assert "강원특별자치도" in per_sido and "강원도" not in per_sido
    assert jongno == "서울특별시 종로구보건소"


def test_aed_data_rejects_an_unknown_health_center(fresh_database_url: str) -> None:
    engine = create_warehouse_engine(fresh_database_url)
    upgrade_schema(engine)
    insert = sa.text(
        "INSERT INTO aed_data (equipment_serial, jurisdiction_health_center, row_hash, first_seen, last_seen, "
        "version_since) VALUES (:serial, :center, '\\x00', DATE '2026-11-23', DATE '2026-11-23', DATE '2026-11-23')"
    )
    with engine.begin() as conn:
        conn.execute(insert, {"serial": "031-150316-007123", "center": "서울특별시 종로구보건소"})
    with pytest.raises(sa.exc.IntegrityError, match="jurisdiction_health_center"), engine.begin() as conn:
        conn.execute(insert, {"serial": "030-160127-008363", "center": "없는보건소"})
    engine.dispose()


def test_concurrent_first_use_migrates_once(fresh_database_url: str) -> None:
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            engine = create_warehouse_engine(fresh_database_url)
            upgrade_schema(engine)
            engine.dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = create_warehouse_engine(fresh_database_url)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM health_centers")).scalar_one() == 232
    engine.dispose()


def test_warehouse_engine_migrates_on_first_use(fresh_database_url: str) -> None:
    engine = warehouse_engine(fresh_database_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_embedded_server_is_started_once_and_reused_by_a_second_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ensure_embedded_postgres(home)
    try:
        assert first.started_here
        second = _result(_ensure_in_subprocess(home))
        assert second == {"pid": first.pid, "started_here": False}
    finally:
        assert stop_embedded_postgres(home)
    assert not stop_embedded_postgres(home)


def test_two_processes_starting_at_once_share_one_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    processes = [_ensure_in_subprocess(home) for _ in range(2)]
    try:
        results = [_result(process) for process in processes]
        assert results[0]["pid"] == results[1]["pid"]
        assert sorted(result["started_here"] for result in results) == [False, True]
    finally:
        stop_embedded_postgres(home)


def test_plain_postgresql_urls_use_psycopg3_and_passwords_are_redacted() -> None:
    url = normalize_database_url("postgresql://etl:s3cret@db.internal:5432/warehouse")
    assert url == "postgresql+psycopg://etl:s3cret@db.internal:5432/warehouse"
    assert redact_database_url(url) == "postgresql+psycopg://etl:***@db.internal:5432/warehouse"


def test_cli_db_url_prints_the_url_in_use_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AED_PIPELINE_DATABASE_URL", "postgresql://etl:s3cret@db.internal/warehouse")
    assert cli_main(["db", "url"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == "postgresql+psycopg://etl:***@db.internal/warehouse"
    assert "s3cret" not in out


def test_cli_db_upgrade_migrates_the_embedded_database(embedded_pg, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["db", "upgrade"]) == 0
    assert f"is at revision {head_revision()}" in capsys.readouterr().out
    engine = create_warehouse_engine(embedded_pg.url())
    assert _tables(engine) >= PLATFORM_TABLES
    engine.dispose()


def test_a_stopped_server_is_started_again_by_the_same_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ensure_embedded_postgres(home)
    try:
        assert stop_embedded_postgres(home)
        again = ensure_embedded_postgres(home)
        assert again.started_here and again.pid != first.pid
        engine = create_warehouse_engine(again.url())
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        engine.dispose()
    finally:
        stop_embedded_postgres(home)
