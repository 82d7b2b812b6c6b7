"""A separate process that syncs for real and kills itself with SIGKILL at a chosen point.

The crash tests run it as::

    python -m aed_pipeline_tests.support.crash_child aed URL SNAPSHOT_PICKLE POINT MARKER
    python -m aed_pipeline_tests.support.crash_child flower URL TMP_DIR AT_BASE_URL SALE_DATE POINT MARKER

``aed`` applies a pickled validated snapshot with ``apply_snapshot``; ``flower`` materialises the
flower tables of one sale date through Dagster from the archive under ``TMP_DIR``. The process dies
right after the statement that defines the point has run inside the sync's transaction (watched
through SQLAlchemy's cursor events, so the code under test is unchanged), or right before that
transaction's COMMIT. It first writes the point to ``MARKER``, so the test knows where it died.

The ``copy`` point is the parent's: it sends SIGKILL while this process's backend is in the
staging COPY. Here the child only notes ``staged`` if it got past staging (a kill that came late).
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import sys
from pathlib import Path

from sqlalchemy import event

from aed_pipeline.lib.core.warehouse import normalize_database_url, warehouse_engine

# point → (statement, when): die right after that statement has run in the sync's transaction
# ("after"), or when that transaction is about to COMMIT ("commit").
AED_POINTS = {
    "diff": (re.compile(r"(UPDATE|INSERT INTO) aed_data\s"), "after"),  # the diff's first write to aed_data
    "history": (re.compile(r"INSERT INTO aed_data_history\s"), "after"),  # the first history write
    "before_commit": (re.compile(r"UPDATE sync_runs SET status = 'success'"), "commit"),  # all written
}
FLOWER_POINTS = {
    "public_delete": (re.compile(r"DELETE FROM public_bidding_flowers\s"), "after"),  # old slice gone, new not copied
    "bidding_commit": (re.compile(r"WITH staged AS"), "commit"),  # bidding_flowers brought to the new rows
}

# The application_name of the child's connections (the test puts it in the URL) to find its backends.
APPLICATION_NAME = "crash_child"


def _die(marker: Path, point: str) -> None:
    marker.write_text(point)
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(engine, point: str, points: dict[str, tuple[re.Pattern, str]], marker: Path) -> None:
    """Make the process die at ``point`` (a key of ``points``; other points are no-ops here)."""
    if point not in points:
        return
    statement_pattern, when = points[point]
    seen = []

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):
        if statement_pattern.match(statement.lstrip()):
            if when == "after":
                _die(marker, point)
            seen.append(True)

    @event.listens_for(engine, "commit")
    def _before_commit(conn):
        if seen:
            _die(marker, point)


def run_aed(url: str, snapshot_path: str, point: str, marker: Path) -> None:
    from aed_pipeline.lib.egen_aed.write.apply import apply_snapshot

    engine = warehouse_engine(normalize_database_url(url))
    snapshot = pickle.loads(Path(snapshot_path).read_bytes())

    def after_stage(conn) -> None:
        if point == "copy":
            marker.write_text("staged")

    _arm(engine, point, AED_POINTS, marker)
    apply_snapshot(engine, snapshot, after_stage=after_stage)
    marker.write_text("finished")


def run_flower(url: str, tmp: str, at_base_url: str, sale_date: str, point: str, marker: Path) -> None:
    import dagster as dg

    from aed_pipeline.defs.at_flower.assets import flower_auction_validated, public_bidding_flowers
    from aed_pipeline.defs.at_flower.resources import AtFlowerApiResource
    from aed_pipeline.defs.at_flower.tables import flower_tables
    from aed_pipeline.defs.shared.io import PartitionedPickleIOManager
    from aed_pipeline.defs.shared.resources import RawArchiveResource, WarehouseResource
    from aed_pipeline_tests.support.flower_support import ASSETS, KEY

    _arm(warehouse_engine(normalize_database_url(url)), point, FLOWER_POINTS, marker)
    result = dg.materialize(
        ASSETS,
        selection=[public_bidding_flowers, flower_auction_validated, flower_tables],
        partition_key=sale_date,
        resources={
            "warehouse": WarehouseResource(database_url=url),
            "at_flower_api": AtFlowerApiResource(service_key=KEY, base_url=at_base_url),
            "raw_archive": RawArchiveResource(url=str(Path(tmp) / "archive")),
            "io_manager": PartitionedPickleIOManager(base_dir=str(Path(tmp) / "io")),
        },
        raise_on_error=False,
    )
    marker.write_text("finished" if result.success else "failed")


def main(argv: list[str]) -> None:
    kind, *args = argv
    *args, marker = args
    if kind == "aed":
        run_aed(*args, marker=Path(marker))
    else:
        run_flower(*args, marker=Path(marker))


if __name__ == "__main__":
    main(sys.argv[1:])
