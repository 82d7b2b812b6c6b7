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

A warehouse outage (``is_warehouse_outage``: the connection lost or refused, the server shut down)
fails a sync with ``error_type`` ``WarehouseUnavailable``, whatever the driver called the error. The
failure cannot be written while the server is away: the process keeps it and its next sync on the
same warehouse writes it first (the step's retry, once the server is back). A later process finds the
row in the sweep, which calls a row ``WarehouseUnavailable`` rather than ``Abandoned`` when the server
started after the row did (a restart ended its connection). A row goes from ``running`` to
``success`` or ``failed`` once, never back.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aed_pipeline.lib.core import locks
from aed_pipeline.lib.core.warehouse import (
    WAREHOUSE_UNAVAILABLE,
    copy_into,
    database_error_text,
    is_warehouse_outage,
)

logger = logging.getLogger(__name__)

SYNC_RUN_LOCK_CLASS = locks.SYNC_RUN.id
ABANDONED_ERROR_TYPE = "Abandoned"
# The lock's second key: the row's id, folded into the lock function's integer range.
_RUN_LOCK_ID = f"CAST({{}} % {locks.KEY_RANGE} AS integer)"
# A running row whose lock can be taken has no live owner: its process ended without an outcome. If
# the server started after the row did, a restart ended the owner's connection (at the latest): that
# is a warehouse outage, whichever process finds it.
_MARK_ABANDONED = sa.text(
    "UPDATE sync_runs SET status = 'failed', finished_at = clock_timestamp(), "
    "error_type = CASE WHEN started_at < pg_postmaster_start_time() THEN :outage_type ELSE :error_type END, "
    "error = CASE WHEN started_at < pg_postmaster_start_time() THEN :outage_error ELSE :error END "
    "WHERE status = 'running' "
    f"AND pg_try_advisory_xact_lock({SYNC_RUN_LOCK_CLASS}, {_RUN_LOCK_ID.format('id')})"
)
_ABANDONED_ERROR = (
    "the process running this sync ended without recording an outcome (killed, or its database "
    "connection was lost); its transaction was rolled back, so it wrote nothing. Found by a later sync."
)
_RESTARTED_ERROR = (
    "the warehouse restarted while this sync was running (or after its process had ended), which ended its "
    "connection; its transaction was rolled back, so it wrote nothing. Found by a later sync."
)
_SWEEP = {
    "error_type": ABANDONED_ERROR_TYPE,
    "error": _ABANDONED_ERROR,
    "outage_type": WAREHOUSE_UNAVAILABLE,
    "outage_error": _RESTARTED_ERROR,
}
# A row goes from running to an outcome once: a failure recorded late (after an outage, when the
# COMMIT's answer may have been lost with the connection) never overwrites a committed success.
_MARK_FAILED = sa.text(
    "UPDATE sync_runs SET status = 'failed', finished_at = coalesce(:finished_at, clock_timestamp()), "
    "fetched = :fetched, rejected = :rejected, error_type = :error_type, error = :error "
    "WHERE id = :id AND status = 'running'"
)
# The same, for a failure kept through an outage: only while no live owner holds the row's lock.
_MARK_FAILED_LATE = sa.text(
    f"{_MARK_FAILED.text} AND pg_try_advisory_xact_lock({SYNC_RUN_LOCK_CLASS}, {_RUN_LOCK_ID.format(':id')})"
)


def error_type_of(error: BaseException) -> str:
    """``sync_runs.error_type`` of ``error``: ``WarehouseUnavailable`` for any warehouse outage, else its class."""
    return WAREHOUSE_UNAVAILABLE if is_warehouse_outage(error) else type(error).__name__


# Failures this process could not write because the warehouse was away: warehouse URL → row id → values.
_UNRECORDED: dict[str, dict[int, dict[str, Any]]] = {}
_UNRECORDED_LOCK = threading.Lock()


def _warehouse_key(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


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
        with _UNRECORDED_LOCK:
            unrecorded = dict(_UNRECORDED.get(_warehouse_key(self.engine), {}))
        with conn.begin():
            # The 'running' row need not wait for its WAL flush (a few ms per commit, twice per flower
            # date): the sync's own commit, synchronous, flushes the WAL before it and so this row too.
            # Only a crash of the server itself in between can lose it, and with it nothing but the
            # record of an attempt that wrote nothing.
            conn.execute(sa.text("SET LOCAL synchronous_commit = off"))
            # First the failures kept through an outage, with their own type; then the sweep.
            for values in unrecorded.values():
                conn.execute(_MARK_FAILED_LATE, values)
            conn.execute(_MARK_ABANDONED, _SWEEP)
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
        if unrecorded:
            with _UNRECORDED_LOCK:
                kept = _UNRECORDED.get(_warehouse_key(self.engine), {})
                for row_id in unrecorded:
                    kept.pop(row_id, None)
            logger.info("recorded %d sync(s) failed by an earlier warehouse outage", len(unrecorded))

    def close(self) -> None:
        """Release the run's lock (its row is finished or failed by now) and its connection.

        After an outage the connection is gone, and its session lock went with it."""
        try:
            self._holder.execute(
                sa.text(f"SELECT pg_advisory_unlock({SYNC_RUN_LOCK_CLASS}, {_RUN_LOCK_ID.format(':id')})"),
                {"id": self.id},
            )
        except Exception as exc:
            if not is_warehouse_outage(exc):
                raise
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
        """Record the failure in a transaction of its own; during a warehouse outage, keep it for the
        next sync on this warehouse to write (this one cannot)."""
        outage = is_warehouse_outage(error)
        values = {
            "fetched": self.counts.fetched,
            "rejected": self.counts.rejected,
            "error_type": error_type_of(error),
            "error": _failure_text(error, self.engine)[:4000],
            "id": self.id,
            "finished_at": datetime.now(UTC) if outage else None,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(_MARK_FAILED, values)
        except Exception as exc:
            if not is_warehouse_outage(exc):
                raise
            with _UNRECORDED_LOCK:
                _UNRECORDED.setdefault(_warehouse_key(self.engine), {})[self.id] = values
            logger.warning(
                "sync_runs row %d could not be marked failed (the warehouse is unavailable): the next sync "
                "on this warehouse records it",
                self.id,
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


def _failure_text(error: BaseException, engine: Engine) -> str:
    if is_warehouse_outage(error):
        url = engine.url.render_as_string(hide_password=False)
        return f"the warehouse connection was lost or refused: {database_error_text(error, url)}"
    return str(error)


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
