"""The warehouse: the migrations (every table, the health-centre reference, one migration under
concurrent first use), the engine that migrates on first use, and the database URL in use."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa

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
from aed_pipeline_tests.support.helpers import PLATFORM_TABLES


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


def test_the_revisions_read_without_alembic_are_alembics_own(fresh_database_url: str) -> None:
    # head_revision reads the migration files' names and current_revision the version table, so that
    # a run need not import Alembic; both must say what Alembic itself says.
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from aed_pipeline.lib.core.warehouse import alembic_config

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine = create_warehouse_engine(fresh_database_url)
    for migrate, revision, expected in (
        (upgrade_schema, "0003", "0003"),
        (upgrade_schema, "head", head_revision()),
        (downgrade_schema, "base", None),
    ):
        migrate(engine, revision)
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == expected
        assert current_revision(engine) == expected
    engine.dispose()


def test_loading_the_code_location_imports_neither_alembic_nor_holidays() -> None:
    # Both are a start-up cost of every run and CLI command that only migrations and flower runs need.
    code = (
        "import sys, aed_pipeline.definitions as d; d.defs(); print(sorted({'alembic', 'holidays'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plain_postgresql_urls_use_psycopg3_and_passwords_are_redacted() -> None:
    url = normalize_database_url("postgresql://etl:s3cret@db.internal:5432/warehouse")
    assert url == "postgresql+psycopg://etl:s3cret@db.internal:5432/warehouse"
    assert redact_database_url(url) == "postgresql+psycopg://etl:***@db.internal:5432/warehouse"
