"""The PostgreSQL warehouse: which database, an engine on psycopg 3, its schema, and bulk loading (COPY).

``AED_PIPELINE_DATABASE_URL`` names an external database; without it the embedded server under
``AED_PIPELINE_HOME`` is used. Either way the schema is brought to the newest Alembic revision before
first use, under a PostgreSQL advisory lock so that concurrent Dagster steps migrate once.

A warehouse that went away (its connection lost or refused, the server shut down or restarting) is a
*transient* failure, told apart from every other database error by :func:`is_warehouse_outage`: the
step retry policy re-runs the step, whose transaction starts afresh.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy.engine import Connection, Engine, make_url

from aed_pipeline.lib.core import locks
from aed_pipeline.lib.core.embedded_postgres import ensure_embedded_postgres

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# Alembic (with Mako and Pygments) is imported only to migrate: every Dagster run and CLI command
# checks the revision, and the import alone was ~0.15 s of each one's start. The revision check reads
# ``alembic_version`` and the migration files' names ``NNNN_*.py`` (revision ``NNNN``; a test holds
# the names to Alembic's own head).
MIGRATION_FILES = MIGRATIONS_DIR / "versions"


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
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; concurrent callers wait for the first and then no-op."""
    from alembic import command

    _migrate(engine, command.upgrade, revision)


def downgrade_schema(engine: Engine, revision: str = "base") -> None:
    """Revert migrations down to ``revision`` (``base`` drops every table of the platform)."""
    from alembic import command

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
        if conn.execute(sa.text("SELECT to_regclass('alembic_version')")).scalar() is None:
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def head_revision() -> str:
    """The newest revision shipped with the package (the highest ``NNNN`` of ``versions/NNNN_*.py``)."""
    revisions = [path.name.split("_", 1)[0] for path in MIGRATION_FILES.glob("[0-9]*_*.py")]
    assert revisions, "the package ships no migrations"
    return max(revisions)


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def warehouse_engine(url: str) -> Engine:
    """One engine per URL and process, with the schema brought up to date on first use."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
    if engine is not None:
        return engine
    engine = create_warehouse_engine(url)
    if current_revision(engine) != head_revision():
        logger.info("migrating %s to %s", redact_database_url(url), head_revision())
        upgrade_schema(engine)
    with _ENGINES_LOCK:
        return _ENGINES.setdefault(url, engine)


def forget_warehouse_engine(url: str) -> None:
    """Close the engine of ``url`` and drop it from the process (a database that is gone for good)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.pop(url, None)
    if engine is not None:
        engine.dispose()


def discard_pooled_connections() -> None:
    """Close the idle pooled connections of every engine of the process (after an outage: they died
    with the server's sessions); the engines stay usable and connect afresh."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
    for engine in engines:
        engine.dispose(close=False)


# -- telling an outage from every other database error -------------------------------------------

#: ``sync_runs.error_type`` (so ``<prefix>_errors_total{type}``) and the failure's ``error_type`` of a
#: sync the warehouse's outage ended, whatever the driver called it.
WAREHOUSE_UNAVAILABLE = "WarehouseUnavailable"

# SQLSTATE class 08 (connection exception) and the server going away or not yet back: 57P01
# admin_shutdown (pg_ctl stop/restart -m fast, a managed failover), 57P02 crash_shutdown, 57P03
# cannot_connect_now (starting up, shutting down, in recovery).
_OUTAGE_SQLSTATE_CLASS = "08"
# 57P0x: the server shut down or is starting; 53300: every connection slot taken (a failover's
# reconnect storm); 25006: a write reached a read-only server (the old primary, demoted by a failover
# whose address change has not reached us yet). Each passes with nobody doing anything.
_OUTAGE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "25006"})
# libpq reports a failed connection attempt without its SQLSTATE: a refusal by a running server is a
# FATAL message, and these are the FATAL messages of a server going away or not yet back (57P0x).
_OUTAGE_FATAL_MESSAGES = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "terminating connection due to administrator command",
    "terminating connection due to unexpected postmaster exit",
    "sorry, too many clients already",
    "remaining connection slots are reserved",
)


def driver_error(error: BaseException) -> BaseException:
    """The psycopg error inside a SQLAlchemy one (the error itself otherwise)."""
    if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
        return error.orig
    return error


def is_database_error(error: BaseException) -> bool:
    """Whether ``error`` came from the warehouse (through SQLAlchemy or psycopg directly)."""
    return isinstance(error, (sa.exc.DBAPIError, psycopg.Error))


def is_warehouse_outage(error: BaseException) -> bool:
    """Whether ``error`` means the warehouse went away for now (retrying later can succeed), as opposed
    to a database error that another attempt would meet again.

    Transient: SQLSTATE class 08, 57P01–57P03, 53300 (too many connections) and 25006 (a read-only
    server: a demoted primary after a failover); a connection SQLAlchemy found closed or broken; and
    a failed connection attempt (no SQLSTATE: refused, reset, timed out, no socket), unless the server
    answered it with a FATAL refusal other than shutting down or starting up. Not transient: every
    other SQLSTATE (23 integrity, 42 a missing table or bad SQL, 57014 a statement timeout …) and the
    FATAL refusals of the login itself (28 bad password or role, 3D000 no such database, pg_hba).
    """
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    error = driver_error(error)
    if not isinstance(error, psycopg.Error):
        return False
    if error.sqlstate:
        return error.sqlstate.startswith(_OUTAGE_SQLSTATE_CLASS) or error.sqlstate in _OUTAGE_SQLSTATES
    if not isinstance(error, psycopg.OperationalError):
        return False
    text = str(error)
    return "FATAL:" not in text or any(message in text for message in _OUTAGE_FATAL_MESSAGES)


def is_login_refusal(error: BaseException) -> bool:
    """Whether the server refused the connection attempt itself for good (bad password or role, no such
    database, no pg_hba.conf entry): a FATAL answer without SQLSTATE that is not an outage."""
    original = driver_error(error)
    return (
        isinstance(original, psycopg.OperationalError)
        and not original.sqlstate
        and "FATAL:" in str(original)
        and not is_warehouse_outage(error)
    )


def database_error_text(error: BaseException, url: str | None = None) -> str:
    """The driver's own words for ``error`` on one line (no SQL, no parameters, no traceback), with
    the password of ``url``, if any, replaced by ``***``."""
    original = driver_error(error)
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    text = lines[0] if lines else type(original).__name__
    text = text.replace("FATAL:  ", "").removeprefix("connection failed: ")
    password = make_url(url).password if url else None
    return text.replace(str(password), "***") if password else text


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
