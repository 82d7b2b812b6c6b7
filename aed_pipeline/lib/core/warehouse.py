"""The PostgreSQL warehouse: which database, an engine on psycopg 3, its schema, and bulk loading (COPY).

``AED_PIPELINE_DATABASE_URL`` names an external database; without it the embedded server under
``AED_PIPELINE_HOME`` is used. Either way the schema is brought to the newest Alembic revision before
first use, under a PostgreSQL advisory lock so that concurrent Dagster steps migrate once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy.engine import Connection, Engine, make_url

from aed_pipeline.lib.core import locks
from aed_pipeline.lib.core.embedded_postgres import ensure_embedded_postgres

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def resolve_database_url(database_url: str | None, home: Path) -> str:
    """The SQLAlchemy URL to use: the configured one, or the embedded server's (started if needed)."""
    if database_url:
        return normalize_database_url(database_url)
    return ensure_embedded_postgres(home).url()


def normalize_database_url(url: str) -> str:
    """Point plain ``postgresql://`` URLs at the psycopg 3 driver, which the COPY path needs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def redact_database_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for logs and the CLI."""
    return make_url(url).render_as_string(hide_password=True)


def create_warehouse_engine(url: str) -> Engine:
    """A pooled engine; ``pool_pre_ping`` survives an embedded server restarted between runs."""
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def alembic_config() -> Config:
    """The Alembic configuration of the package's migrations, with no ini file needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; concurrent callers wait for the first and then no-op."""
    _migrate(engine, command.upgrade, revision)


def downgrade_schema(engine: Engine, revision: str = "base") -> None:
    """Revert migrations down to ``revision`` (``base`` drops every table of the platform)."""
    _migrate(engine, command.downgrade, revision)


def _migrate(engine: Engine, alembic_command, revision: str) -> None:
    # One transaction holding the advisory lock: a second migrator waits, then finds nothing to do.
    with engine.begin() as conn:
        locks.hold_for_transaction(conn, locks.SCHEMA_MIGRATION)
        config = alembic_config()
        config.attributes["connection"] = conn
        alembic_command(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with the package."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


@lru_cache(maxsize=8)
def warehouse_engine(url: str) -> Engine:
    """One engine per URL and process, with the schema brought up to date on first use."""
    engine = create_warehouse_engine(url)
    if current_revision(engine) != head_revision():
        logger.info("migrating %s to %s", redact_database_url(url), head_revision())
        upgrade_schema(engine)
    return engine


# -- bulk loading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvChunks:
    """Rows already rendered as PostgreSQL CSV (e.g. by Arrow's C++ writer), streamed chunk by chunk:
    the fast path for a large typed file, with no Python object per value."""

    chunks: Iterable[bytes]


def copy_into(conn: Connection, table: str, columns: Sequence[str], data: Iterable[Sequence[Any]] | CsvChunks) -> int:
    """COPY ``data`` into ``table`` (``schema.table`` allowed) through the connection's psycopg 3
    driver, inside the caller's transaction; returns the row count.

    ``data`` is rows of Python values (COPY's text format, adapted by psycopg) or :class:`CsvChunks`.
    Identifiers are quoted by psycopg; values travel in COPY's own format, never inside SQL text.
    CSV chunks are sent by a writer thread while the next one is produced.
    """
    csv = isinstance(data, CsvChunks)
    statement = sql.SQL("COPY {table} ({columns}) FROM STDIN" + (" (FORMAT csv)" if csv else "")).format(
        table=sql.Identifier(*table.split(".")),
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
    )
    driver = conn.connection.driver_connection
    assert driver is not None, "the connection is closed"
    with driver.cursor() as cursor:
        writer = QueuedLibpqWriter(cursor) if csv else None
        with cursor.copy(statement, writer=writer) as copy:
            if isinstance(data, CsvChunks):
                for chunk in data.chunks:
                    copy.write(chunk)
            else:
                for row in data:
                    copy.write_row(row)
        return cursor.rowcount
