"""Shared parts of the crash and concurrency tests: validated AED snapshots, databases, states.

Two validated snapshots of a simulated registry (``DAY`` and a week later) are built once per test
session (shared by the xdist workers), through the simulator server, the raw archive and the real
validation. A database holding ``DAY`` already applied is copied from a template (``CREATE
DATABASE … TEMPLATE``) for each test, which costs a fraction of applying the snapshot again.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import sqlalchemy as sa
from filelock import FileLock
from sqlalchemy.engine import Engine

from aed_pipeline.defs.egen_aed.resources import EgenApiResource
from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.lib.core.embedded_postgres import EmbeddedPostgres
from aed_pipeline.lib.core.warehouse import warehouse_engine
from aed_pipeline.lib.egen_aed.fetch import fetch_snapshot
from aed_pipeline.lib.egen_aed.tables import health_center_lookup
from aed_pipeline.lib.egen_aed.validate import ValidatedAedSnapshot, validate_archived_snapshot
from aed_pipeline.lib.egen_aed.write.apply import apply_snapshot
from aed_pipeline.simulator import Simulator, SimulatorServer
from aed_pipeline_tests.support.helpers import AED_TABLES

DAY = dt.date(2026, 3, 2)
NEXT = DAY + dt.timedelta(days=7)  # a week of registry changes: inserts, updates, removals

# Columns that differ between two databases holding the same data: surrogate keys and the clock.
_VOLATILE = ["id", "created_at", "updated_at", "recorded_at", "applied_at", "deleted_at"]


def create_database(embedded_pg: EmbeddedPostgres, template: str | None = None) -> str:
    """A new database on the embedded server (a copy of ``template`` when given); returns its name."""
    name = f"rel_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(embedded_pg.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def drop_database(embedded_pg: EmbeddedPostgres, name: str) -> None:
    with psycopg.connect(embedded_pg.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class AedWorld:
    """The validated snapshot of ``NEXT`` (also pickled, for a child process), a template database
    with ``DAY`` applied, and the reference state: ``NEXT`` applied cleanly on top of it."""

    embedded_pg: EmbeddedPostgres
    next: ValidatedAedSnapshot
    next_pickle: Path
    template: str
    reference: dict[str, tuple[str, int]]

    @contextmanager
    def database(self) -> Iterator[str]:
        """A database holding ``DAY`` applied (a copy of the template); its URL. Dropped afterwards."""
        name = create_database(self.embedded_pg, self.template)
        try:
            yield self.embedded_pg.url(name)
        finally:
            drop_database(self.embedded_pg, name)


def shared_dir(tmp_path_factory) -> Path:
    """A folder every xdist worker of this session sees (the session's own one without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _snapshots(folder: Path, devices: int, centers) -> list[ValidatedAedSnapshot]:
    """The validated snapshots of DAY and NEXT, built once per session and shared by the workers:
    fetching and validating them is most of the cost of these tests."""
    folder.mkdir(parents=True, exist_ok=True)
    built = folder / "snapshots.pickle"
    with FileLock(str(folder / "build.lock")):
        if not built.exists():
            sim = Simulator(today=DAY, aed_count=devices)
            archive = RawArchive(folder / "archive")
            with SimulatorServer(sim) as server:
                api = EgenApiResource(service_key="test-key", base_url=server.egen_base_url, num_of_rows=5000)
                for day in (DAY, NEXT):
                    sim.today = day
                    with api.client() as client:
                        fetch_snapshot(client, archive, day, origin="simulator")
            snapshots = [
                validate_archived_snapshot(
                    archive, day, health_centers=centers, previous=None, rows_path=folder / f"{day}.parquet"
                ).snapshot
                for day in (DAY, NEXT)
            ]
            (folder / "next.pickle").write_bytes(pickle.dumps(snapshots[1]))  # for a child process
            built.write_bytes(pickle.dumps(snapshots))
    return pickle.loads(built.read_bytes())


@contextmanager
def aed_world(embedded_pg: EmbeddedPostgres, shared: Path, devices: int) -> Iterator[AedWorld]:
    """Build the snapshots (once per session, in ``shared``) and this worker's databases of
    :class:`AedWorld` for a registry of ``devices``."""
    names = []
    try:
        names.append(create_database(embedded_pg))
        engine = warehouse_engine(embedded_pg.url(names[0]))
        folder = shared / f"aed_world_{devices}"
        snapshots = _snapshots(folder, devices, health_center_lookup(engine))
        apply_snapshot(engine, snapshots[0])
        engine.dispose()
        # The template keeps DAY applied; a copy of it becomes the reference by applying NEXT.
        names.append(create_database(embedded_pg, names[0]))
        reference_engine = warehouse_engine(embedded_pg.url(names[1]))
        apply_snapshot(reference_engine, snapshots[1])
        reference = content_state(reference_engine)
        reference_engine.dispose()
        yield AedWorld(embedded_pg, snapshots[1], folder / "next.pickle", names[0], reference)
    finally:
        for name in names:
            drop_database(embedded_pg, name)


def content_state(engine: Engine, tables: tuple[str, ...] = AED_TABLES) -> dict[str, tuple[str, int]]:
    """Like ``helpers.table_state`` but comparable across databases and runs: every row as JSON
    without its surrogate key and timestamps (a soft delete kept as a flag), digested."""
    with engine.connect() as conn:
        return {
            table: tuple(
                conn.execute(
                    sa.text(
                        "SELECT coalesce(md5(string_agg(r::text, '|' ORDER BY r::text)), ''), count(*) FROM "
                        "(SELECT (to_jsonb(t) - CAST(:volatile AS text[])) || jsonb_build_object('removed', "
                        f"coalesce(to_jsonb(t) -> 'deleted_at', 'null') <> 'null') AS r FROM {table} t) s"
                    ),
                    {"volatile": _VOLATILE},
                ).one()
            )
            for table in tables
        }


def sync_runs(engine: Engine, source: str = "egen_aed") -> list[tuple]:
    """(status, error_type, inserted, updated, deleted, revived, unchanged) of every run, in order."""
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                sa.text(
                    "SELECT status, error_type, inserted, updated, deleted, revived, unchanged FROM sync_runs "
                    "WHERE source = :source ORDER BY id"
                ),
                {"source": source},
            )
        ]


def advisory_locks(engine: Engine) -> int:
    """Advisory locks held or awaited in the engine's database (none once every sync has ended)."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        ).scalar_one()


def wait_until(condition, timeout: float = 10.0, interval: float = 0.002) -> float:
    """Poll ``condition`` until true; returns the seconds it took (AssertionError on timeout)."""
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
    return time.perf_counter() - started


# The flower tables' rows by their natural keys: ids come from sequences, which a rolled-back
# transaction still advances, so a re-run's ids differ from a clean run's.
_FLOWER_ROWS = {
    # Where and when a row was archived is provenance, not content: two archives differ in it.
    "public_bidding_flowers": "SELECT to_jsonb(p) - 'id' - 'fetched_at' - 'archive_ref' FROM public_bidding_flowers p",
    "flower_types": "SELECT name, flower_gubn FROM flower_types",
    "flowers": "SELECT t.name, f.name FROM flowers f JOIN flower_types t ON t.id = f.flower_type_id",
    "bidding_flowers": (
        "SELECT b.sale_date, b.flower_gubn, t.name, f.name, b.grade, b.min_price, b.avg_price, b.max_price, "
        "b.total_amount, b.quantity FROM bidding_flowers b JOIN flowers f ON f.id = b.flower_id "
        "JOIN flower_types t ON t.id = f.flower_type_id"
    ),
}


def flower_content(engine: Engine, tables: tuple[str, ...] = tuple(_FLOWER_ROWS)) -> dict[str, tuple[str, int]]:
    """The flower tables' content, comparable across databases: table → (md5 of the rows, count)."""
    with engine.connect() as conn:
        return {
            table: tuple(
                conn.execute(
                    sa.text(
                        "SELECT coalesce(md5(string_agg(r::text, '|' ORDER BY r::text)), ''), count(*) "
                        f"FROM ({_FLOWER_ROWS[table]}) r"
                    )
                ).one()
            )
            for table in tables
        }
