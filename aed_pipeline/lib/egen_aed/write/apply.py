"""Applying one day's validated AED snapshot to ``aed_data`` and ``aed_data_history``: the transaction.

The registry is versioned like an SQL:2011 system-versioned table: the current version of a device is
its ``aed_data`` row (its values hold since ``version_since``), and ``aed_data_history`` keeps the
versions that ended (SCD2 over partition dates: ``valid_from`` ≤ day < ``valid_to``). The view
``aed_data_versions`` shows both: the registry of any day is one query on it. Each device is thus
written once on a first load, and a change writes the new values and the one version it closes. The
change feed ``aed_changes`` is a view over the versions (``lib/egen_aed/changes.py``).

Everything happens in one transaction, so readers see the registry before or after a sync, never in
between, and a failure anywhere leaves every table as it was:

1. COPY the snapshot into a temporary staging table (``aed_stage``).
2. The newest date (the daily run): the diff against ``aed_data``, guarded and applied
   (``write/diff.py``). An older date (a backfill): that date's history re-derived, ``aed_data``
   keeping the newest values (``write/backfill.py``). Both stop and write nothing when more than a
   share (default 5 %) of the devices are absent from the snapshot: the missing-devices guard.
3. ``aed_snapshots``, then the post-write checks (``write/audit.py``): a failed one rolls it all back.
4. The ``sync_runs`` row, committed with the data.

A **plan** (``plan=True``) runs the same steps and rolls the transaction back: it reports what the
sync would write (the counts, the changes, the feed's rows, the devices it would soft-delete, the
guard's verdict without stopping, the checks) and writes nothing, not even a ``sync_runs`` row.
Plan and sync are one code path, so they cannot drift apart.

A reconciliation (``reconcile=True``, the Sunday run) also repairs rows edited by hand (recorded in
``aed_repairs``) and runs ``ANALYZE`` afterwards. An advisory lock serialises AED syncs and plans, so
two runs of the same partition apply one after the other and the second finds nothing to do.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from datetime import date
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aed_pipeline.lib.core import locks
from aed_pipeline.lib.core.sync_log import sync_run
from aed_pipeline.lib.core.warehouse import CsvChunks, copy_into
from aed_pipeline.lib.egen_aed import SOURCE_NAME
from aed_pipeline.lib.egen_aed.changes import feed_counts, feed_rows
from aed_pipeline.lib.egen_aed.records import DEVICE_COLUMNS
from aed_pipeline.lib.egen_aed.rows import csv_chunks
from aed_pipeline.lib.egen_aed.validate import ValidatedAedSnapshot
from aed_pipeline.lib.egen_aed.write.audit import post_write_checks
from aed_pipeline.lib.egen_aed.write.backfill import rederive_history
from aed_pipeline.lib.egen_aed.write.diff import apply_newest
from aed_pipeline.lib.egen_aed.write.types import (
    COLUMNS,
    DEFAULT_MISSING_DEVICES_GUARD,
    AedSyncResult,
    PostWriteCheck,
    PostWriteChecksFailed,
    RetiredDevice,
    RowCounts,
    SnapshotRejected,
)

Hook = Callable[[Connection], None]
#: A plan reports at most this many rows of the change feed (a first load's baseline is every device).
PLAN_FEED_ROWS = 1000

_CREATE_STAGE = sa.text(
    f"CREATE TEMPORARY TABLE aed_stage ON COMMIT DROP AS SELECT {COLUMNS} FROM aed_data WITH NO DATA"
)
_HAS_DEVICES = sa.text("SELECT EXISTS (SELECT 1 FROM aed_data)")
_NEWEST_APPLIED = sa.text("SELECT max(partition_date) FROM aed_snapshots")
_NEXT_APPLIED = sa.text("SELECT min(partition_date) FROM aed_snapshots WHERE partition_date > :d")
_APPLIED_BEFORE = sa.text("SELECT EXISTS (SELECT 1 FROM aed_snapshots WHERE partition_date < :d)")


_RETIRED_DEVICES = sa.text(
    "SELECT equipment_serial, sido, gugun, jurisdiction_health_center, installation_institution, "
    "installation_address FROM aed_data WHERE equipment_serial = ANY(:serials) ORDER BY equipment_serial"
)


def apply_snapshot(
    engine: Engine,
    snapshot: ValidatedAedSnapshot,
    *,
    run_id: str | None = None,
    missing_devices_guard: float = DEFAULT_MISSING_DEVICES_GUARD,
    change_sample: int = 20,
    reconcile: bool = False,
    plan: bool = False,
    after_stage: Hook | None = None,
    after_diff: Hook | None = None,
) -> AedSyncResult:
    """Apply ``snapshot`` in one transaction (see the module docstring); returns what changed.

    ``reconcile`` compares every stored field with the snapshot instead of trusting ``row_hash``,
    repairs the drift it finds (``drifted``, with a field-by-field sample in ``drift``) and runs
    ``ANALYZE`` on the AED tables after the commit. ``plan`` does everything but rolls back, and
    returns what it would have written (``planned``); the guard then reports instead of stopping.

    ``after_stage`` runs inside the transaction right after the staging COPY, ``after_diff`` right
    after the write (before the checks): the test suite uses them to prove that a failure there, or
    a write the checks refuse, leaves every table as it was.
    """
    partition = snapshot.partition_date
    options = _Options(run_id, missing_devices_guard, change_sample, reconcile, plan, after_stage, after_diff)
    if plan:
        _refuse_if_blocked(snapshot)
        started = time.perf_counter()
        with engine.connect() as conn:
            transaction = conn.begin()
            try:
                result = _apply(conn, snapshot, options)
            finally:
                transaction.rollback()  # a plan writes nothing
        seconds = time.perf_counter() - started
        return dataclasses.replace(result, duration_seconds=seconds, database_seconds=seconds)
    with sync_run(
        engine, source=SOURCE_NAME, table_name="aed_data", partition_key=partition.isoformat(), run_id=run_id
    ) as run:
        _refuse_if_blocked(snapshot)  # logged as a failed sync, so the refusal shows in the metrics
        run.counts.fetched = snapshot.fetched
        run.counts.rejected = snapshot.rejected
        started = time.perf_counter()
        with engine.begin() as conn:
            result = _apply(conn, snapshot, options)
            if not result.checks_passed:  # rolls the transaction back; sync_runs records why
                raise PostWriteChecksFailed(partition, result.checks)
            run.counts.inserted = result.inserted
            # A repaired drift rewrote the row: counted with the updates in the sync log.
            run.counts.updated = result.updated + result.drifted
            run.counts.deleted = result.deleted
            run.counts.revived = result.revived
            run.counts.unchanged = result.unchanged
            run.mark_success(conn)
        database_seconds = time.perf_counter() - started
        duration_seconds = run.duration_seconds
    if reconcile:
        # Fresh planner statistics after the week's changes (autovacuum may lag behind a bulk diff).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE aed_data"))
            conn.execute(sa.text("ANALYZE aed_data_history"))
    return dataclasses.replace(result, duration_seconds=duration_seconds, database_seconds=database_seconds)


def _refuse_if_blocked(snapshot: ValidatedAedSnapshot) -> None:
    if snapshot.blocking_failures:
        raise SnapshotRejected(
            f"the validated e-gen snapshot of {snapshot.partition_date} failed blocking checks "
            f"({', '.join(snapshot.blocking_failures)}); it is not applied. Re-materialise "
            "aed_raw_snapshot and aed_validated once the source is fixed."
        )


@dataclasses.dataclass(frozen=True)
class _Options:
    run_id: str | None
    guard: float
    sample: int
    reconcile: bool
    plan: bool
    after_stage: Hook | None
    after_diff: Hook | None


def _apply(conn: Connection, snapshot: ValidatedAedSnapshot, options: _Options) -> AedSyncResult:
    """The apply inside the caller's transaction, up to and including the post-write checks."""
    partition = snapshot.partition_date
    started = time.perf_counter()
    locks.hold_for_transaction(conn, locks.AED_SYNC)
    # A first load has nothing to compare with: every staged row is new, and neither the diff
    # nor the stage's index and statistics (there only for the diff's joins) are needed.
    first_load = not conn.execute(_HAS_DEVICES).scalar_one()
    _stage(conn, snapshot.rows_path, for_diff=not first_load)
    stage_seconds = time.perf_counter() - started
    if options.after_stage is not None:
        options.after_stage(conn)
    newest = conn.execute(_NEWEST_APPLIED).scalar()
    mode: Literal["current", "history_only"]
    touched = [partition]  # the dates whose feed rows the write changes
    if newest is None or partition >= newest:
        mode = "current"
        outcome = apply_newest(
            conn,
            partition,
            newest,
            staged=snapshot.valid,
            first_load=first_load,
            guard=options.guard,
            enforce_guard=not options.plan,
            sample=options.sample,
            reconcile=options.reconcile,
            run_id=options.run_id,
        )
    else:
        mode = "history_only"
        next_observed = conn.execute(_NEXT_APPLIED, {"d": partition}).scalar()
        outcome = rederive_history(conn, partition, next_observed, guard=options.guard, enforce_guard=not options.plan)
        touched += [next_observed] if next_observed else []
    if options.after_diff is not None:
        options.after_diff(conn)
    _record_snapshot(conn, snapshot, options.run_id)
    checks = post_write_checks(conn, partition, snapshot.valid, mode)
    baseline = _baseline_counts(conn, partition, checks, outcome.counts)
    later = [day for day in touched if baseline is None or day != partition]
    counts = {**(baseline or {}), **(feed_counts(conn, later) if later else {})}
    return AedSyncResult(
        **vars(outcome.counts),
        **vars(outcome.samples),
        mode=mode,
        newest_applied=max(partition, newest) if newest else partition,
        planned=options.plan,
        guard=outcome.guard,
        checks=checks,
        feed_counts=counts,
        feed=feed_rows(conn, touched, limit=PLAN_FEED_ROWS) if options.plan else (),
        soft_deleted=_retired(conn, outcome.soft_deleted) if options.plan else (),
        stage_seconds=stage_seconds,
    )


def _baseline_counts(
    conn: Connection, partition: date, checks: tuple[PostWriteCheck, ...], counts: RowCounts
) -> dict[date, dict[str, int]] | None:
    """The feed's counts of ``partition`` when it is the first applied date, known without reading
    the feed (which would classify every device): each version valid on the first date begins on
    it, a ``baseline`` row, and its repairs are the drift repaired. ``None`` for any other date."""
    if conn.execute(_APPLIED_BEFORE, {"d": partition}).scalar_one():
        return None
    on_date = next(int(c.figures["versions_on_date"]) for c in checks if "versions_on_date" in c.figures)
    return {partition: {"baseline": on_date, **({"repaired": counts.drifted} if counts.drifted else {})}}


def _retired(conn: Connection, serials: tuple[str, ...]) -> tuple[RetiredDevice, ...]:
    if not serials:
        return ()
    return tuple(RetiredDevice(*row) for row in conn.execute(_RETIRED_DEVICES, {"serials": list(serials)}).tuples())


def _stage(conn: Connection, rows_path: str, *, for_diff: bool) -> None:
    conn.execute(_CREATE_STAGE)
    copy_into(conn, "aed_stage", DEVICE_COLUMNS, CsvChunks(csv_chunks(rows_path)))
    if not for_diff:
        return
    conn.execute(sa.text("CREATE UNIQUE INDEX ON aed_stage (equipment_serial)"))
    # The joins need statistics of the key and the hash only; those of all 40 columns cost more than the joins.
    conn.execute(sa.text("ANALYZE aed_stage (equipment_serial, row_hash)"))


def _record_snapshot(conn: Connection, snapshot: ValidatedAedSnapshot, run_id: str | None) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO aed_snapshots (partition_date, total_count, fetched, valid, rejected, profile, "
            "archive_ref, archive_digest, origin, run_id, applied_at) VALUES (:d, :total, :fetched, :valid, "
            ":rejected, CAST(:profile AS jsonb), :ref, :digest, :origin, :run_id, now()) "
            "ON CONFLICT (partition_date) DO UPDATE SET total_count = EXCLUDED.total_count, "
            "fetched = EXCLUDED.fetched, valid = EXCLUDED.valid, rejected = EXCLUDED.rejected, "
            "profile = EXCLUDED.profile, archive_ref = EXCLUDED.archive_ref, "
            "archive_digest = EXCLUDED.archive_digest, origin = EXCLUDED.origin, run_id = EXCLUDED.run_id, "
            "applied_at = EXCLUDED.applied_at"
        ),
        {
            "d": snapshot.partition_date,
            "total": snapshot.total_count if snapshot.total_count is not None else snapshot.fetched,
            "fetched": snapshot.fetched,
            "valid": snapshot.valid,
            "rejected": snapshot.rejected,
            "profile": json.dumps(snapshot.profile, ensure_ascii=False),
            "ref": snapshot.archive_ref,
            "digest": snapshot.archive_digest,
            "origin": snapshot.origin,
            "run_id": run_id,
        },
    )
