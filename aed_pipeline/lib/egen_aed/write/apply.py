"""Applying one day's validated AED snapshot to ``aed_data`` and ``aed_data_history``.

The registry is versioned like an SQL:2011 system-versioned table: the current version of a device is
its ``aed_data`` row (its values hold since ``version_since``), and ``aed_data_history`` keeps the
versions that ended (SCD2 over partition dates: ``valid_from`` ≤ day < ``valid_to``). The view
``aed_data_versions`` shows both: the registry of any day is one query on it. Each device is thus
written once on a first load, and a change writes the new values and the one version it closes.

Everything happens in one transaction, so readers see the registry before or after a sync, never in
between, and a failure anywhere leaves every table as it was:

1. COPY the snapshot into a temporary staging table.
2. The missing-devices guard: if more than a share (default 5 %) of the active devices are absent
   from the snapshot, stop and write nothing (a half-served registry must not retire devices).
3. The newest date (the daily run): a set-based diff on ``row_hash``. The versions of changed and
   missing devices are closed into the history, then ``aed_data`` inserts new devices, updates
   changed ones, revives returning ones, soft-deletes (``deleted_at``) missing ones, and leaves
   unchanged rows untouched, so an unchanged day writes nothing.
4. An older date (a backfill): the history is re-derived for that date only, up to the next observed
   date (``aed_snapshots`` says which dates were observed); ``aed_data`` keeps the newest values.
5. ``aed_snapshots`` and the ``sync_runs`` row, committed with the data.

A **reconciliation** (``reconcile=True``, the Sunday run) trusts no stored ``row_hash``: it compares
every field of every active row with the snapshot, so rows edited by hand in the database (whose
hash still matches) are found, reported as drift and repaired, and it runs ``ANALYZE`` afterwards.

A transaction-level advisory lock serialises AED syncs, so two runs of the same partition apply
one after the other and the second finds nothing to do.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aed_pipeline.lib.core import locks
from aed_pipeline.lib.core.sync_log import SYNC_SOURCE_EGEN, sync_run
from aed_pipeline.lib.core.warehouse import CsvChunks, copy_into
from aed_pipeline.lib.egen_aed.checks import PreviousSnapshot
from aed_pipeline.lib.egen_aed.records import DEVICE_COLUMNS, PERSONAL_COLUMNS
from aed_pipeline.lib.egen_aed.rows import csv_chunks

DEFAULT_MISSING_DEVICES_GUARD = 0.05

_COLUMNS = ", ".join(DEVICE_COLUMNS)
_STAGED = ", ".join(f"s.{c}" for c in DEVICE_COLUMNS)
_FROM_HISTORY = ", ".join(f"h.{c}" for c in DEVICE_COLUMNS)
_FROM_CURRENT = ", ".join(f"a.{c}" for c in DEVICE_COLUMNS)
_SET_FROM_STAGE = ", ".join(f"{c} = s.{c}" for c in DEVICE_COLUMNS if c != "equipment_serial")
_COMPARED = [c for c in DEVICE_COLUMNS if c not in ("equipment_serial", "row_hash")]
# A stored row whose fields differ from the snapshot although its hash matches: edited by hand.
_DRIFTED = (
    "a.deleted_at IS NULL AND a.row_hash = s.row_hash AND "
    f"({', '.join(f'a.{c}' for c in _COMPARED)}) IS DISTINCT FROM ({', '.join(f's.{c}' for c in _COMPARED)})"
)


class SnapshotRejected(Exception):
    """The validated snapshot failed a blocking integrity check and must not be applied."""


class MissingDevicesGuardTripped(Exception):
    """Too many active devices are absent from the snapshot: the sync stopped and wrote nothing."""


@dataclass
class ValidatedAedSnapshot:
    """One day's snapshot after validation: what ``aed_validated`` hands to ``aed_data``.

    The ``valid`` rows themselves are in the file at ``rows_path`` (``aed_rows``), never in memory.
    """

    partition_date: date
    rows_path: str
    valid: int
    fetched: int
    total_count: int | None
    rejected: int
    profile: dict[str, Any]
    archive_ref: str
    archive_digest: str
    origin: str
    blocking_failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FieldChange:
    equipment_serial: str
    column: str
    old: str | None
    new: str | None


@dataclass
class AedSyncResult:
    """What a sync changed. ``mode`` is ``current`` (aed_data updated) or ``history_only``."""

    mode: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    revived: int = 0
    unchanged: int = 0
    drifted: int = 0
    history_opened: int = 0
    history_closed: int = 0
    newest_applied: date | None = None
    changes: list[FieldChange] = field(default_factory=list)
    drift: list[FieldChange] = field(default_factory=list)
    inserted_examples: list[str] = field(default_factory=list)
    deleted_examples: list[str] = field(default_factory=list)
    duration_seconds: float = 0.0
    # Seconds inside the sync's transaction (the database phase), and of its staging COPY alone.
    database_seconds: float = 0.0
    stage_seconds: float = 0.0

    @property
    def rows_written(self) -> int:
        return self.inserted + self.updated + self.deleted + self.revived + self.drifted


def apply_snapshot(
    engine: Engine,
    snapshot: ValidatedAedSnapshot,
    *,
    run_id: str | None = None,
    missing_devices_guard: float = DEFAULT_MISSING_DEVICES_GUARD,
    change_sample: int = 20,
    reconcile: bool = False,
    after_stage: Callable[[Connection], None] | None = None,
) -> AedSyncResult:
    """Apply ``snapshot`` in one transaction (see the module docstring); returns the counts.

    ``reconcile`` compares every stored field with the snapshot instead of trusting ``row_hash``,
    repairs the drift it finds (``drifted``, with a field-by-field sample in ``drift``) and runs
    ``ANALYZE`` on the AED tables after the commit.

    ``after_stage`` runs inside the transaction right after the staging COPY: the test suite uses
    it to prove that a failure there leaves every table as it was.
    """
    partition = snapshot.partition_date
    with sync_run(
        engine, source=SYNC_SOURCE_EGEN, table_name="aed_data", partition_key=partition.isoformat(), run_id=run_id
    ) as run:
        if snapshot.blocking_failures:  # logged as a failed sync, so the refusal shows in the metrics
            raise SnapshotRejected(
                f"the validated e-gen snapshot of {partition} failed blocking checks "
                f"({', '.join(snapshot.blocking_failures)}); it is not applied. Re-materialise "
                "aed_raw_snapshot and aed_validated once the source is fixed."
            )
        run.counts.fetched = snapshot.fetched
        run.counts.rejected = snapshot.rejected
        started = time.perf_counter()
        with engine.begin() as conn:
            locks.hold_for_transaction(conn, locks.AED_SYNC)
            # A first load has nothing to compare with: every staged row is new, and neither the diff
            # nor the stage's index and statistics (there only for the diff's joins) are needed.
            first_load = not conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM aed_data)")).scalar_one()
            _stage(conn, snapshot.rows_path, for_diff=not first_load)
            stage_seconds = time.perf_counter() - started
            if after_stage is not None:
                after_stage(conn)
            newest = conn.execute(sa.text("SELECT max(partition_date) FROM aed_snapshots")).scalar()
            next_observed = conn.execute(
                sa.text("SELECT min(partition_date) FROM aed_snapshots WHERE partition_date > :d"), {"d": partition}
            ).scalar()
            current = newest is None or partition >= newest
            result = AedSyncResult(mode="current" if current else "history_only")
            if current:
                diff = _all_new(snapshot.valid) if first_load else _diff_against_current(conn)
                _guard_against_current(diff, partition, missing_devices_guard)
                result.changes = _sample_changes(conn, change_sample, where=_changed_ids(conn, diff, change_sample))
                if reconcile:
                    result.drift = _sample_changes(conn, change_sample, where=_DRIFTED)
                result.history_closed = _close_versions(conn, partition, diff)
                _apply_current(conn, partition, newest, result, diff, change_sample, reconcile, first_load)
                rejoined = (
                    _rejoin_versions(conn, partition)
                    if partition == newest and (diff["changed"] or diff["revived"])
                    else 0
                )
                result.history_opened = result.inserted + result.updated + result.revived - rejoined
            else:
                _history_with_open_versions(
                    conn, partition, next_observed, result, missing_devices_guard, change_sample
                )
            _record_snapshot(conn, snapshot, run_id)
            result.newest_applied = max(partition, newest) if newest else partition
            run.counts.inserted = result.inserted
            run.counts.updated = result.updated
            run.counts.deleted = result.deleted
            run.counts.revived = result.revived
            run.counts.unchanged = result.unchanged
            run.counts.updated += result.drifted
            run.mark_success(conn)
        result.database_seconds = time.perf_counter() - started
        result.stage_seconds = stage_seconds
        result.duration_seconds = run.duration_seconds
    if reconcile:
        # Fresh planner statistics after the week's changes (autovacuum may lag behind a bulk diff).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE aed_data"))
            conn.execute(sa.text("ANALYZE aed_data_history"))
    return result


def _stage(conn: Connection, rows_path: str, *, for_diff: bool) -> None:
    conn.execute(
        sa.text(f"CREATE TEMPORARY TABLE aed_stage ON COMMIT DROP AS SELECT {_COLUMNS} FROM aed_data WITH NO DATA")
    )
    copy_into(conn, "aed_stage", DEVICE_COLUMNS, CsvChunks(csv_chunks(rows_path)))
    if not for_diff:
        return
    conn.execute(sa.text("CREATE UNIQUE INDEX ON aed_stage (equipment_serial)"))
    # The joins need statistics of the key and the hash only; those of all 40 columns cost more than the joins.
    conn.execute(sa.text("ANALYZE aed_stage (equipment_serial, row_hash)"))


def _cover(conn: Connection, partition: date) -> None:
    """The history versions in force on ``partition``: what the history says that day looked like."""
    conn.execute(
        sa.text(
            "CREATE TEMPORARY TABLE aed_cover ON COMMIT DROP AS "
            "SELECT id, equipment_serial, row_hash, valid_from, valid_to FROM aed_data_history "
            "WHERE valid_from <= :d AND (valid_to IS NULL OR valid_to > :d)"
        ),
        {"d": partition},
    )
    conn.execute(sa.text("ANALYZE aed_cover"))


def _close_versions(conn: Connection, partition: date, diff: dict[str, int]) -> int:
    """Close into the history the current versions the snapshot ends: of changed and gone devices.

    Runs before ``aed_data`` is written, as it reads the old values. A version that began on this
    very date (a re-run of the newest date) held on no day, so it is not kept."""
    if not diff["changed"] and not diff["gone"]:
        return 0
    return conn.execute(
        sa.text(
            f"INSERT INTO aed_data_history ({_COLUMNS}, valid_from, valid_to) "
            f"SELECT {_FROM_CURRENT}, a.version_since, :d FROM aed_data a JOIN aed_diff d ON d.id = a.id "
            "WHERE d.kind IN ('changed', 'gone') AND a.version_since < :d"
        ),
        {"d": partition},
    ).rowcount


def _rejoin_versions(conn: Connection, partition: date) -> int:
    """On a re-run of the newest date: a device whose values are back to the version a first run of
    this date closed continues that version (it never ended). Returns how many were rejoined."""
    return conn.execute(
        sa.text(
            "WITH rejoined AS (DELETE FROM aed_data_history h USING aed_diff d, aed_data a "
            "WHERE d.kind IN ('changed', 'revived') AND a.id = d.id AND a.version_since = :d "
            "AND h.equipment_serial = a.equipment_serial AND h.valid_to = :d AND h.row_hash = a.row_hash "
            "RETURNING h.equipment_serial, h.valid_from) "
            "UPDATE aed_data a SET version_since = r.valid_from FROM rejoined r "
            "WHERE a.equipment_serial = r.equipment_serial"
        ),
        {"d": partition},
    ).rowcount


def _history_with_open_versions(
    conn: Connection,
    partition: date,
    next_observed: date | None,
    result: AedSyncResult,
    guard: float,
    sample: int,
) -> None:
    """A backfill: re-derive the history of an older date, ``aed_data`` keeping the newest values.

    The re-derivation works on every version of a device, so the open versions (the ``aed_data``
    rows) join the history for the duration of the transaction, and leave it again with their
    ``version_since`` as the re-derivation left it (a version can be cut at the backfilled date or
    joined with an earlier one of the same values). Backfills are rare; the copy is their cost."""
    conn.execute(
        sa.text(
            f"INSERT INTO aed_data_history ({_COLUMNS}, valid_from, valid_to) "
            f"SELECT {_COLUMNS}, version_since, NULL FROM aed_data WHERE deleted_at IS NULL"
        )
    )
    _cover(conn, partition)
    _guard_against_history(conn, partition, guard)
    _count_against_history(conn, result, sample)
    _apply_history(conn, partition, next_observed, result)
    conn.execute(
        sa.text(
            "UPDATE aed_data a SET version_since = h.valid_from FROM aed_data_history h "
            "WHERE h.valid_to IS NULL AND h.equipment_serial = a.equipment_serial "
            "AND a.version_since <> h.valid_from"
        )
    )
    conn.execute(sa.text("DELETE FROM aed_data_history WHERE valid_to IS NULL"))


def _trip_guard(missing: int, reference: int, partition: date, guard: float, against: str) -> None:
    if reference and missing / reference > guard:
        raise MissingDevicesGuardTripped(
            f"missing-devices guard: {missing} of {reference} {against} ({missing / reference:.1%}) are absent "
            f"from the e-gen snapshot of {partition}, above the limit of {guard:.0%}; nothing was written. "
            "If the registry really shrank, re-run aed_data with a higher missing_devices_guard."
        )


_KINDS = ("new", "revived", "changed", "same", "gone")


def _all_new(staged: int) -> dict[str, int]:
    """The diff of a first load, without computing it: every staged device is new."""
    return {kind: staged if kind == "new" else 0 for kind in _KINDS}


def _diff_against_current(conn: Connection) -> dict[str, int]:
    """Classify every device once (``aed_diff``): new, revived, changed, same, or gone (active in
    ``aed_data``, absent from the snapshot); returns the counts.

    One join of the snapshot with ``aed_data`` serves every later statement (guard, samples, version
    closing, writes), and each skips itself when its kind is absent.
    """
    conn.execute(
        sa.text(
            "CREATE TEMPORARY TABLE aed_diff ON COMMIT DROP AS "
            "SELECT equipment_serial, a.id, CASE WHEN s.row_hash IS NULL THEN 'gone' WHEN a.id IS NULL THEN 'new' "
            "WHEN a.deleted_at IS NOT NULL THEN 'revived' WHEN a.row_hash <> s.row_hash THEN 'changed' "
            "ELSE 'same' END AS kind FROM aed_stage s FULL JOIN aed_data a USING (equipment_serial) "
            "WHERE s.row_hash IS NOT NULL OR a.deleted_at IS NULL"
        )
    )
    counts = dict(conn.execute(sa.text("SELECT kind, count(*) FROM aed_diff GROUP BY kind")).all())
    return {kind: counts.get(kind, 0) for kind in _KINDS}


def _guard_against_current(diff: dict[str, int], partition: date, guard: float) -> None:
    """Trip the guard when too many active devices are absent from the snapshot."""
    active = diff["changed"] + diff["same"] + diff["gone"]
    _trip_guard(diff["gone"], active, partition, guard, "active devices")


def _changed_ids(conn: Connection, diff: dict[str, int], limit: int) -> str:
    """A ``where`` for :func:`_sample_changes`: the first ``limit`` changed devices by serial."""
    if not diff["changed"] or limit <= 0:
        return "false"
    ids = (
        conn.execute(
            sa.text("SELECT id FROM aed_diff WHERE kind = 'changed' ORDER BY equipment_serial LIMIT :n"), {"n": limit}
        )
        .scalars()
        .all()
    )
    return f"a.id IN ({', '.join(str(int(i)) for i in ids)})"


def _guard_against_history(conn: Connection, partition: date, guard: float) -> None:
    missing, recorded = conn.execute(
        sa.text(
            "SELECT count(*) FILTER (WHERE NOT EXISTS "
            "(SELECT 1 FROM aed_stage s WHERE s.equipment_serial = c.equipment_serial)), count(*) FROM aed_cover c"
        )
    ).one()
    _trip_guard(missing, recorded, partition, guard, f"devices the history records on {partition}")


def _sample_changes(conn: Connection, limit: int, where: str) -> list[FieldChange]:
    """Field by field, what changed for a sample of the devices matching ``where`` (personal fields
    are not shown)."""
    if limit <= 0 or where == "false":
        return []
    old = ", ".join(f"a.{c}::text" for c in _COMPARED)
    new = ", ".join(f"s.{c}::text" for c in _COMPARED)
    rows = conn.execute(
        sa.text(
            f"SELECT a.equipment_serial, {old}, {new} FROM aed_data a JOIN aed_stage s USING (equipment_serial) "
            f"WHERE {where} ORDER BY a.equipment_serial LIMIT :n"
        ),
        {"n": limit},
    ).all()
    changes = []
    width = len(_COMPARED)
    for row in rows:
        for i, column in enumerate(_COMPARED):
            before, after = row[1 + i], row[1 + width + i]
            if before != after:
                if column in PERSONAL_COLUMNS:
                    before = after = "(masked field changed)"
                changes.append(FieldChange(row[0], column, before, after))
    return changes


def _apply_current(
    conn: Connection,
    partition: date,
    previous_newest: date | None,
    result: AedSyncResult,
    diff: dict[str, int],
    sample: int,
    reconcile: bool,
    first_load: bool,
) -> None:
    result.inserted, result.revived, result.updated, result.unchanged = (
        diff["new"],
        diff["revived"],
        diff["changed"],
        diff["same"],
    )
    if reconcile:
        result.drifted = conn.execute(
            sa.text(f"SELECT count(*) FROM aed_stage s JOIN aed_data a USING (equipment_serial) WHERE {_DRIFTED}")
        ).scalar_one()
        result.unchanged -= result.drifted
    if result.inserted:
        new = "aed_stage" if first_load else "aed_diff WHERE kind = 'new'"
        result.inserted_examples = (
            conn.execute(sa.text(f"SELECT equipment_serial FROM {new} ORDER BY 1 LIMIT :n"), {"n": sample})
            .scalars()
            .all()
        )
    if diff["gone"]:
        deleted = (
            conn.execute(
                sa.text(
                    "UPDATE aed_data a SET deleted_at = now(), operation_status = 'removed', "
                    "last_seen = COALESCE(CAST(:previous AS date), a.last_seen), updated_at = now() "
                    "FROM aed_diff d WHERE a.id = d.id AND d.kind = 'gone' RETURNING a.equipment_serial"
                ),
                {"previous": previous_newest if previous_newest and previous_newest < partition else None},
            )
            .scalars()
            .all()
        )
        result.deleted = len(deleted)
        result.deleted_examples = sorted(deleted)[:sample]
    if result.updated or result.revived or result.drifted:
        # A reconciliation also rewrites the rows whose fields drifted although their hash matches.
        drifted = f" OR (d.kind = 'same' AND {_DRIFTED})" if result.drifted else ""
        conn.execute(
            sa.text(
                f"UPDATE aed_data a SET {_SET_FROM_STAGE}, deleted_at = NULL, last_seen = :d, updated_at = now(), "
                # New values open a new version; a repaired drift restores the values of the current one.
                "version_since = CASE WHEN d.kind = 'same' THEN a.version_since ELSE :d END "
                "FROM aed_diff d JOIN aed_stage s USING (equipment_serial) "
                f"WHERE a.id = d.id AND (d.kind IN ('changed', 'revived'){drifted})"
            ),
            {"d": partition},
        )
    if result.inserted:
        # When every staged row is new (a first load), no need to look each one up in aed_diff.
        only_new = (
            ""
            if diff["revived"] + diff["changed"] + diff["same"] == 0
            else (" WHERE s.equipment_serial IN (SELECT equipment_serial FROM aed_diff WHERE kind = 'new')")
        )
        conn.execute(
            sa.text(
                f"INSERT INTO aed_data ({_COLUMNS}, first_seen, last_seen, version_since) SELECT {_STAGED}, :d, :d, :d "
                f"FROM aed_stage s{only_new}"
            ),
            {"d": partition},
        )


def _count_against_history(conn: Connection, result: AedSyncResult, sample: int) -> None:
    """For a backfill: what this date's snapshot says compared with what the history said of it."""
    inserted, updated, unchanged = conn.execute(
        sa.text(
            "SELECT count(*) FILTER (WHERE c.id IS NULL), count(*) FILTER (WHERE c.row_hash <> s.row_hash), "
            "count(*) FILTER (WHERE c.row_hash = s.row_hash) "
            "FROM aed_stage s LEFT JOIN aed_cover c USING (equipment_serial)"
        )
    ).one()
    deleted = conn.execute(
        sa.text(
            "SELECT count(*) FROM aed_cover c WHERE NOT EXISTS "
            "(SELECT 1 FROM aed_stage s WHERE s.equipment_serial = c.equipment_serial)"
        )
    ).scalar_one()
    result.inserted, result.updated, result.unchanged, result.deleted = inserted, updated, unchanged, deleted


def _apply_history(conn: Connection, partition: date, next_observed: date | None, result: AedSyncResult) -> None:
    params = {"d": partition, "n": next_observed}
    conn.execute(
        sa.text(
            "CREATE TEMPORARY TABLE aed_stale ON COMMIT DROP AS SELECT c.* FROM aed_cover c "
            "LEFT JOIN aed_stage s USING (equipment_serial) "
            "WHERE s.equipment_serial IS NULL OR s.row_hash <> c.row_hash"
        )
    )
    # A stale version that still held on the next observed date keeps that part (the "tail").
    tails = conn.execute(
        sa.text(
            f"INSERT INTO aed_data_history ({_COLUMNS}, valid_from, valid_to) "
            f"SELECT {_FROM_HISTORY}, CAST(:n AS date), h.valid_to FROM aed_data_history h "
            "JOIN aed_stale t ON t.id = h.id "
            "WHERE CAST(:n AS date) IS NOT NULL AND (h.valid_to IS NULL OR h.valid_to > CAST(:n AS date))"
        ),
        params,
    ).rowcount
    dropped = conn.execute(
        sa.text("DELETE FROM aed_data_history h USING aed_stale t WHERE h.id = t.id AND t.valid_from = :d"), params
    ).rowcount
    closed = conn.execute(
        sa.text("UPDATE aed_data_history h SET valid_to = :d FROM aed_stale t WHERE h.id = t.id AND t.valid_from < :d"),
        params,
    ).rowcount
    # A new version ends where the device's next version begins; only a backfill has later versions,
    # and looking them up row by row is a large share of a full load's history write.
    has_later = conn.execute(
        sa.text("SELECT EXISTS (SELECT 1 FROM aed_data_history WHERE valid_from > :d)"), params
    ).scalar_one()
    valid_to = (
        "LEAST(CAST(:n AS date), (SELECT min(h.valid_from) FROM aed_data_history h "
        "WHERE h.equipment_serial = s.equipment_serial AND h.valid_from > :d))"
        if has_later
        else "CAST(:n AS date)"
    )
    opened = conn.execute(
        sa.text(
            f"INSERT INTO aed_data_history ({_COLUMNS}, valid_from, valid_to) "
            f"SELECT {_STAGED}, :d, {valid_to} "
            "FROM aed_stage s WHERE NOT EXISTS (SELECT 1 FROM aed_cover c "
            "WHERE c.equipment_serial = s.equipment_serial AND c.row_hash = s.row_hash)"
        ),
        params,
    ).rowcount
    result.history_opened = tails + opened
    result.history_closed = dropped + closed
    # Identical neighbours arise only where a version was cut (tails, dropped) or a new one runs up
    # to a later version (a backfill); a plain apply of the newest date has nothing to merge.
    if tails or dropped or (opened and has_later):
        _merge_adjacent_versions(conn, partition)


def _merge_adjacent_versions(conn: Connection, partition: date) -> None:
    """Join consecutive versions of a device with the same values (a backfill can create them)."""
    conn.execute(
        sa.text(
            "CREATE TEMPORARY TABLE aed_touched ON COMMIT DROP AS "
            "SELECT equipment_serial FROM aed_stale UNION "
            "SELECT equipment_serial FROM aed_data_history WHERE valid_from = :d"
        ),
        {"d": partition},
    )
    while True:
        merged = conn.execute(
            sa.text(
                "WITH pairs AS (SELECT a.id AS keep_id, b.id AS drop_id, b.valid_to AS new_to "
                "FROM aed_data_history a JOIN aed_data_history b ON b.equipment_serial = a.equipment_serial "
                "AND b.valid_from = a.valid_to AND b.row_hash = a.row_hash "
                "WHERE a.equipment_serial IN (SELECT equipment_serial FROM aed_touched)), "
                "firsts AS (SELECT * FROM pairs p WHERE NOT EXISTS (SELECT 1 FROM pairs q WHERE q.drop_id = p.keep_id)), "
                "dropped AS (DELETE FROM aed_data_history h USING firsts f WHERE h.id = f.drop_id "
                "RETURNING f.keep_id, f.new_to) "
                "UPDATE aed_data_history h SET valid_to = d.new_to FROM dropped d WHERE h.id = d.keep_id"
            )
        ).rowcount
        if not merged:
            return


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


# -- reads used by the assets and checks ------------------------------------------------------


def health_center_lookup(engine: Engine) -> dict[tuple[str, str], str]:
    """(시도, 시군구) → 보건소 name, from the shipped reference table."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT sido, gugun, name FROM health_centers")).all()
    return {(sido, gugun): name for sido, gugun, name in rows}


def previous_snapshot(engine: Engine, partition: date) -> PreviousSnapshot | None:
    """The newest snapshot applied before ``partition``: the reference of the drift checks."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT partition_date, valid, profile FROM aed_snapshots WHERE partition_date < :d "
                "ORDER BY partition_date DESC LIMIT 1"
            ),
            {"d": partition},
        ).first()
    if row is None:
        return None
    return PreviousSnapshot(partition_date=row[0].isoformat(), valid=row[1], profile=row[2])


@dataclass(frozen=True)
class PostWriteFigures:
    """What the tables hold after a sync, for the checks on ``aed_data``."""

    active_rows: int
    versions_on_date: int
    unknown_health_centers: int
    duplicate_serials: int
    newest_applied: date | None


def post_write_figures(engine: Engine, partition: date) -> PostWriteFigures:
    with engine.connect() as conn:
        active = conn.execute(sa.text("SELECT count(*) FROM aed_data WHERE deleted_at IS NULL")).scalar_one()
        on_date = conn.execute(
            sa.text(
                "SELECT count(*) FROM aed_data_versions WHERE valid_from <= :d AND (valid_to IS NULL OR valid_to > :d)"
            ),
            {"d": partition},
        ).scalar_one()
        unknown = conn.execute(
            sa.text(
                "SELECT count(*) FROM aed_data a WHERE a.jurisdiction_health_center IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM health_centers h WHERE h.name = a.jurisdiction_health_center)"
            )
        ).scalar_one()
        duplicates = conn.execute(
            sa.text("SELECT count(*) - count(DISTINCT equipment_serial) FROM aed_data")
        ).scalar_one()
        newest = conn.execute(sa.text("SELECT max(partition_date) FROM aed_snapshots")).scalar()
    return PostWriteFigures(active, on_date, unknown, duplicates, newest)
