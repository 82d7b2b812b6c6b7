"""The bookkeeping every table sync shares: the ``sync_runs`` log, the quarantine, and COPY.

``sync_runs`` has one row per table sync. It is inserted as ``running`` in its own transaction, so
a sync in progress (or one killed mid-way) is visible, and it is marked ``success`` inside the
sync's own transaction, so a committed sync and its log row cannot disagree. A failure is recorded
after the rollback, again in its own transaction. The metrics (issue 5) are computed from it.

A process killed mid-sync (SIGKILL, OOM, a lost host) cannot record its failure, and its row would
stay ``running`` for ever. So the owner of a ``running`` row holds a session advisory lock on it
for as long as it runs; PostgreSQL releases it when the owner's connection ends, however it ends.
Every new sync first marks the ``running`` rows whose lock is free as failed (``error_type``
``Abandoned``): their transaction never committed, so they wrote nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aed_pipeline.lib.core import locks
from aed_pipeline.lib.core.warehouse import copy_into

SYNC_RUN_LOCK_CLASS = locks.SYNC_RUN.id
ABANDONED_ERROR_TYPE = "Abandoned"
# The lock's second key: the row's id, folded into the lock function's integer range.
_RUN_LOCK_ID = f"CAST({{}} % {locks.KEY_RANGE} AS integer)"
# A running row whose lock can be taken has no live owner: its process ended without an outcome.
_MARK_ABANDONED = sa.text(
    "UPDATE sync_runs SET status = 'failed', finished_at = clock_timestamp(), error_type = :error_type, "
    "error = :error WHERE status = 'running' "
    f"AND pg_try_advisory_xact_lock({SYNC_RUN_LOCK_CLASS}, {_RUN_LOCK_ID.format('id')})"
)
_ABANDONED_ERROR = (
    "the process running this sync ended without recording an outcome (killed, or its database "
    "connection was lost); its transaction was rolled back, so it wrote nothing. Found by a later sync."
)


@dataclass
class SyncCounts:
    """What one table sync did, in the words of ``sync_runs``."""

    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    revived: int = 0
    unchanged: int = 0
    rejected: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class SyncRun:
    """A ``sync_runs`` row being written: started on creation, finished by :func:`sync_run`."""

    def __init__(self, engine: Engine, source: str, table_name: str, partition_key: str, run_id: str | None):
        self.engine = engine
        self.counts = SyncCounts()
        self.started_at = datetime.now(UTC)
        # The connection holding this run's lock until close(); inserting the row and taking the
        # lock in one transaction means no one ever sees the row running without its lock held.
        self._holder = engine.connect()
        try:
            self._start(source, table_name, partition_key, run_id)
        except BaseException:
            self._holder.close()
            raise

    def _start(self, source: str, table_name: str, partition_key: str, run_id: str | None) -> None:
        conn = self._holder
        with conn.begin():
            conn.execute(_MARK_ABANDONED, {"error_type": ABANDONED_ERROR_TYPE, "error": _ABANDONED_ERROR})
            self.id = conn.execute(
                sa.text(
                    "INSERT INTO sync_runs (source, table_name, partition_key, run_id, started_at, status) "
                    "VALUES (:source, :table_name, :partition_key, :run_id, :started_at, 'running') RETURNING id"
                ),
                {
                    "source": source,
                    "table_name": table_name,
                    "partition_key": partition_key,
                    "run_id": run_id,
                    "started_at": self.started_at,
                },
            ).scalar_one()
            # Session level: the lock outlives this transaction, until close() or the connection's end.
            conn.execute(
                sa.text(f"SELECT pg_advisory_lock({SYNC_RUN_LOCK_CLASS}, {_RUN_LOCK_ID.format(':id')})"),
                {"id": self.id},
            )

    def close(self) -> None:
        """Release the run's lock (its row is finished or failed by now) and its connection."""
        try:
            self._holder.execute(
                sa.text(f"SELECT pg_advisory_unlock({SYNC_RUN_LOCK_CLASS}, {_RUN_LOCK_ID.format(':id')})"),
                {"id": self.id},
            )
        finally:
            self._holder.close()

    def mark_success(self, conn: Connection) -> None:
        """Record success inside the sync's own transaction (committed with the data or not at all)."""
        conn.execute(
            sa.text(
                "UPDATE sync_runs SET status = 'success', finished_at = clock_timestamp(), "
                "fetched = :fetched, inserted = :inserted, updated = :updated, deleted = :deleted, "
                "revived = :revived, unchanged = :unchanged, rejected = :rejected WHERE id = :id"
            ),
            {**self.counts.as_dict(), "id": self.id},
        )

    def mark_failed(self, error: BaseException) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE sync_runs SET status = 'failed', finished_at = clock_timestamp(), "
                    "fetched = :fetched, rejected = :rejected, error_type = :error_type, error = :error "
                    "WHERE id = :id"
                ),
                {
                    "fetched": self.counts.fetched,
                    "rejected": self.counts.rejected,
                    "error_type": type(error).__name__,
                    "error": str(error)[:4000],
                    "id": self.id,
                },
            )

    @property
    def duration_seconds(self) -> float:
        return (datetime.now(UTC) - self.started_at).total_seconds()


@contextmanager
def sync_run(
    engine: Engine, *, source: str, table_name: str, partition_key: str, run_id: str | None
) -> Iterator[SyncRun]:
    """Log one table sync; the body must call ``run.mark_success(conn)`` in its transaction.

    Any exception out of the body marks the row failed (with the error's type and message) and
    propagates.
    """
    run = SyncRun(engine, source, table_name, partition_key, run_id)
    try:
        yield run
    except BaseException as exc:
        run.mark_failed(exc)
        raise
    finally:
        run.close()


def record_failed_sync(
    engine: Engine, *, source: str, table_name: str, partition_key: str, run_id: str | None, error: BaseException
) -> None:
    """Log a sync that failed before its table write (the API refused the key, the quota ran out),
    so that it counts in the metrics and the run history like a failure during the write."""
    run = SyncRun(engine, source, table_name, partition_key, run_id)
    try:
        run.mark_failed(error)
    finally:
        run.close()


def replace_rejected_records(
    conn: Connection,
    *,
    source: str,
    partition_key: str,
    run_id: str | None,
    rejected: Iterable[tuple[dict[str, Any], list[dict[str, Any]]]],
) -> int:
    """Replace the partition's quarantined records with ``(raw record, failed checks)`` pairs.

    Replacing (not appending) keeps re-runs of a partition from piling up the same rejections.
    """
    conn.execute(
        sa.text("DELETE FROM rejected_records WHERE source = :source AND partition_key = :partition_key"),
        {"source": source, "partition_key": partition_key},
    )
    rows = (
        (
            source,
            partition_key,
            run_id,
            json.dumps(record, ensure_ascii=False, default=str),
            json.dumps(checks, ensure_ascii=False, default=str),
        )
        for record, checks in rejected
    )
    return copy_into(conn, "rejected_records", ("source", "partition_key", "run_id", "record", "failed_checks"), rows)


def synced_partitions(conn: Connection, *, source: str, table_name: str, first: date, last: date) -> set[date]:
    """The partition dates ``first`` … ``last`` for which a sync of ``table_name`` succeeded.

    What a table holds for any other date is unknown, not empty: callers use this to tell the two apart.
    """
    keys = conn.execute(
        sa.text(
            "SELECT DISTINCT partition_key FROM sync_runs WHERE source = :source AND table_name = :table "
            "AND status = 'success' AND partition_key BETWEEN :first AND :last"
        ),
        {"source": source, "table": table_name, "first": first.isoformat(), "last": last.isoformat()},
    ).scalars()
    return {date.fromisoformat(key) for key in keys}
