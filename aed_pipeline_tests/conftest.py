"""Shared fixtures: a real embedded PostgreSQL for the whole test session, fresh databases on it.

The server runs under a temporary ``AED_PIPELINE_HOME`` so the tests never touch a developer's
own ``.aed_pipeline/``, and it is stopped when the session ends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from aed_pipeline.lib.core import settings
from aed_pipeline.lib.core.embedded_postgres import EmbeddedPostgres, ensure_embedded_postgres, stop_embedded_postgres

# The tests materialise AED dates of the simulator's world (March 2026), long before any archive
# of theirs begins, so the AED partitions start on a fixed date instead of at the archive (the
# default). Set before any test module imports the definitions, which read it when imported; the
# processes the tests start (`dg dev`, `dagster job execute`) inherit it.
os.environ["AED_PIPELINE_AED_START_DATE"] = "2026-01-01"


@pytest.fixture(scope="session")
def pipeline_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private AED_PIPELINE_HOME for the session (embedded database, raw archive)."""
    home = tmp_path_factory.mktemp("aed_home")
    previous = os.environ.get(settings.HOME_ENV)
    os.environ[settings.HOME_ENV] = str(home)
    os.environ.pop(settings.DATABASE_URL_ENV, None)
    yield home
    stop_embedded_postgres(home)
    if previous is None:
        os.environ.pop(settings.HOME_ENV, None)
    else:
        os.environ[settings.HOME_ENV] = previous


@pytest.fixture(scope="session")
def embedded_pg(pipeline_home: Path) -> EmbeddedPostgres:
    """The session's embedded PostgreSQL server, started on first use."""
    return ensure_embedded_postgres(pipeline_home)


@contextmanager
def _new_database(server: EmbeddedPostgres) -> Iterator[str]:
    """An empty database of its own on ``server``, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield server.url(name)
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_database_url(embedded_pg: EmbeddedPostgres) -> Iterator[str]:
    """An empty database of its own on the embedded server, dropped after the test."""
    with _new_database(embedded_pg) as url:
        yield url


@pytest.fixture
def reference_database_url(embedded_pg: EmbeddedPostgres) -> Iterator[str]:
    """A second empty database, for the same data applied another way to be compared with."""
    with _new_database(embedded_pg) as url:
        yield url
