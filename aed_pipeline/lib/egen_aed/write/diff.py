"""The newest date's write: the snapshot diffed against ``aed_data`` and applied.

One FULL JOIN of the staged snapshot with ``aed_data`` classifies every device once (the table
``aed_diff``: new, revived, changed, same, gone); the guard, the samples, the version closing and
the writes all read it, and each skips itself when its kind is absent. Then ``aed_data`` inserts new
devices, updates changed ones, revives returning ones and soft-deletes (``deleted_at``) gone ones;
unchanged rows are not touched, so an unchanged day writes nothing. The versions the snapshot ends
are closed into ``aed_data_history`` first, while the old values are still there.

A **reconciliation** trusts no stored ``row_hash``: it also compares every field of every active
row with the snapshot, so rows edited by hand in the database (whose hash still matches) are found,
reported as drift and repaired; each repair is recorded in ``aed_repairs`` (no version is created).

Everything runs inside the caller's transaction, after the snapshot was staged as ``aed_stage``.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from aed_pipeline.lib.egen_aed.records import DEVICE_COLUMNS, PERSONAL_COLUMNS
from aed_pipeline.lib.egen_aed.write.types import (
    COLUMNS,
    FROM_CURRENT,
    STAGED,
    AedDiff,
    ChangeSamples,
    FieldChange,
    RowCounts,
    WriteOutcome,
    judge_missing_devices,
)

_COMPARED = [c for c in DEVICE_COLUMNS if c not in ("equipment_serial", "row_hash")]
_SET_FROM_STAGE = ", ".join(f"{c} = s.{c}" for c in DEVICE_COLUMNS if c != "equipment_serial")
# A stored row whose fields differ from the snapshot although its hash matches: edited by hand.
_DRIFTED = (
    "a.deleted_at IS NULL AND a.row_hash = s.row_hash AND "
    f"({', '.join(f'a.{c}' for c in _COMPARED)}) IS DISTINCT FROM ({', '.join(f's.{c}' for c in _COMPARED)})"
)

_CLASSIFY = sa.text(
    "CREATE TEMPORARY TABLE aed_diff ON COMMIT DROP AS "
    "SELECT equipment_serial, a.id, CASE WHEN s.row_hash IS NULL THEN 'gone' WHEN a.id IS NULL THEN 'new' "
    "WHEN a.deleted_at IS NOT NULL THEN 'revived' WHEN a.row_hash <> s.row_hash THEN 'changed' "
    "ELSE 'same' END AS kind FROM aed_stage s FULL JOIN aed_data a USING (equipment_serial) "
    "WHERE s.row_hash IS NOT NULL OR a.deleted_at IS NULL"
)
_COUNT_KINDS = sa.text("SELECT kind, count(*) FROM aed_diff GROUP BY kind")
_FIRST_CHANGED = sa.text("SELECT id FROM aed_diff WHERE kind = 'changed' ORDER BY equipment_serial LIMIT :n")
_SIDE_BY_SIDE = (
    f"SELECT a.equipment_serial, {', '.join(f'a.{c}::text' for c in _COMPARED)}, "
    f"{', '.join(f's.{c}::text' for c in _COMPARED)} FROM aed_data a JOIN aed_stage s USING (equipment_serial) "
)
_SAMPLE_CHANGED = sa.text(_SIDE_BY_SIDE + "WHERE a.id = ANY(:ids) ORDER BY a.equipment_serial LIMIT :n")
_SAMPLE_DRIFTED = sa.text(_SIDE_BY_SIDE + f"WHERE {_DRIFTED} ORDER BY a.equipment_serial LIMIT :n")
# A version that began on this very date (a re-run of the newest date) held on no day: not kept.
_CLOSE_VERSIONS = sa.text(
    f"INSERT INTO aed_data_history ({COLUMNS}, valid_from, valid_to) "
    f"SELECT {FROM_CURRENT}, a.version_since, :d FROM aed_data a JOIN aed_diff d ON d.id = a.id "
    "WHERE d.kind IN ('changed', 'gone') AND a.version_since < :d"
)
# A repair restores the snapshot's values of the current version (no version is created): recorded
# in aed_repairs with the stored and the restored values (the change feed shows it as ``repaired``).
_RECORD_REPAIRS = sa.text(
    "INSERT INTO aed_repairs (snapshot_date, run_id, equipment_serial, changed_columns, before, after) "
    "SELECT :d, :run_id, a.equipment_serial, f.changed_columns, f.before, f.after "
    "FROM aed_stage s JOIN aed_data a USING (equipment_serial) "
    f"CROSS JOIN LATERAL aed_changed_fields(to_jsonb(a), to_jsonb(s)) f WHERE {_DRIFTED}"
)
_NEW_EXAMPLES = sa.text("SELECT equipment_serial FROM aed_diff WHERE kind = 'new' ORDER BY 1 LIMIT :n")
_FIRST_LOAD_EXAMPLES = sa.text("SELECT equipment_serial FROM aed_stage ORDER BY 1 LIMIT :n")
_SOFT_DELETE_GONE = sa.text(
    "UPDATE aed_data a SET deleted_at = now(), operation_status = 'removed', "
    "last_seen = COALESCE(CAST(:previous AS date), a.last_seen), updated_at = now() "
    "FROM aed_diff d WHERE a.id = d.id AND d.kind = 'gone' RETURNING a.equipment_serial"
)
# New values open a new version; a repaired drift restores the values of the current one.
_UPDATE = (
    f"UPDATE aed_data a SET {_SET_FROM_STAGE}, deleted_at = NULL, last_seen = :d, updated_at = now(), "
    "version_since = CASE WHEN d.kind = 'same' THEN a.version_since ELSE :d END "
    "FROM aed_diff d JOIN aed_stage s USING (equipment_serial) "
    "WHERE a.id = d.id AND (d.kind IN ('changed', 'revived')"
)
_UPDATE_CHANGED = sa.text(_UPDATE + ")")
# A reconciliation also rewrites the rows whose fields drifted although their hash matches.
_UPDATE_CHANGED_AND_DRIFTED = sa.text(_UPDATE + f" OR (d.kind = 'same' AND {_DRIFTED}))")
_INSERT = f"INSERT INTO aed_data ({COLUMNS}, first_seen, last_seen, version_since) SELECT {STAGED}, :d, :d, :d FROM aed_stage s"
# When every staged row is new (a first load), no need to look each one up in aed_diff.
_INSERT_ALL = sa.text(_INSERT)
_INSERT_NEW = sa.text(
    _INSERT + " WHERE s.equipment_serial IN (SELECT equipment_serial FROM aed_diff WHERE kind = 'new')"
)
# On a re-run of the newest date: a device whose values are back to the version a first run of this
# date closed continues that version (it never ended).
_REJOIN_VERSIONS = sa.text(
    "WITH rejoined AS (DELETE FROM aed_data_history h USING aed_diff d, aed_data a "
    "WHERE d.kind IN ('changed', 'revived') AND a.id = d.id AND a.version_since = :d "
    "AND h.equipment_serial = a.equipment_serial AND h.valid_to = :d AND h.row_hash = a.row_hash "
    "RETURNING h.equipment_serial, h.valid_from) "
    "UPDATE aed_data a SET version_since = r.valid_from FROM rejoined r "
    "WHERE a.equipment_serial = r.equipment_serial"
)


def apply_newest(
    conn: Connection,
    partition: date,
    newest: date | None,
    *,
    staged: int,
    first_load: bool,
    guard: float,
    enforce_guard: bool,
    sample: int,
    reconcile: bool,
    run_id: str | None,
) -> WriteOutcome:
    """Bring ``aed_data`` to the staged snapshot of ``partition``, the newest date (``newest`` is the
    newest date applied before); returns what was written and samples of it. A tripped guard stops
    the write; a plan (not ``enforce_guard``) only reports its verdict."""
    diff = AedDiff.first_load(staged) if first_load else classify(conn)
    verdict = judge_missing_devices(
        diff.gone, diff.active_before, partition, guard, "active devices", enforce=enforce_guard
    )
    changes = _sample_changes(conn, diff, sample)
    drift = _field_changes(conn, _SAMPLE_DRIFTED, {"n": sample}) if reconcile and sample > 0 else []
    closed = close_versions(conn, partition, diff)
    drifted = conn.execute(_RECORD_REPAIRS, {"d": partition, "run_id": run_id}).rowcount if reconcile else 0
    inserted_examples = _inserted_examples(conn, diff, first_load, sample)
    deleted = _soft_delete_gone(conn, partition, newest, diff)
    if diff.changed or diff.revived or drifted:
        conn.execute(_UPDATE_CHANGED_AND_DRIFTED if drifted else _UPDATE_CHANGED, {"d": partition})
    if diff.new:
        conn.execute(_INSERT_ALL if diff.only_new else _INSERT_NEW, {"d": partition})
    rejoined = (
        conn.execute(_REJOIN_VERSIONS, {"d": partition}).rowcount
        if partition == newest and (diff.changed or diff.revived)
        else 0
    )
    counts = RowCounts(
        inserted=diff.new,
        updated=diff.changed,
        deleted=len(deleted),
        revived=diff.revived,
        unchanged=diff.same - drifted,
        drifted=drifted,
        history_opened=diff.new + diff.changed + diff.revived - rejoined,
        history_closed=closed,
    )
    deleted.sort()
    samples = ChangeSamples(
        changes=changes, drift=drift, inserted_examples=inserted_examples, deleted_examples=deleted[:sample]
    )
    return WriteOutcome(counts, samples, verdict, tuple(deleted))


def classify(conn: Connection) -> AedDiff:
    """Classify every device once (``aed_diff``): new, revived, changed, same, or gone (active in
    ``aed_data``, absent from the snapshot); returns the counts."""
    conn.execute(_CLASSIFY)
    counts: dict[str, int] = dict(conn.execute(_COUNT_KINDS).tuples().all())
    return AedDiff(**{kind: counts.get(kind, 0) for kind in ("new", "revived", "changed", "same", "gone")})


def close_versions(conn: Connection, partition: date, diff: AedDiff) -> int:
    """Close into the history the current versions the snapshot ends: of changed and gone devices.

    Runs before ``aed_data`` is written, as it reads the old values."""
    if not diff.changed and not diff.gone:
        return 0
    return conn.execute(_CLOSE_VERSIONS, {"d": partition}).rowcount


def _sample_changes(conn: Connection, diff: AedDiff, limit: int) -> list[FieldChange]:
    """Field by field, what changed for the first ``limit`` changed devices by serial."""
    if not diff.changed or limit <= 0:
        return []
    ids = list(conn.execute(_FIRST_CHANGED, {"n": limit}).scalars())
    return _field_changes(conn, _SAMPLE_CHANGED, {"ids": ids, "n": limit})


def _field_changes(conn: Connection, statement: sa.TextClause, params: dict[str, object]) -> list[FieldChange]:
    """The differing fields of the devices ``statement`` selects side by side (stored, then staged);
    a masked personal field only says that it changed."""
    changes = []
    width = len(_COMPARED)
    for row in conn.execute(statement, params).tuples():
        for i, column in enumerate(_COMPARED):
            before, after = row[1 + i], row[1 + width + i]
            if before != after:
                if column in PERSONAL_COLUMNS:
                    before = after = "(masked field changed)"
                changes.append(FieldChange(row[0], column, before, after))
    return changes


def _inserted_examples(conn: Connection, diff: AedDiff, first_load: bool, limit: int) -> list[str]:
    if not diff.new:
        return []
    return list(conn.execute(_FIRST_LOAD_EXAMPLES if first_load else _NEW_EXAMPLES, {"n": limit}).scalars())


def _soft_delete_gone(conn: Connection, partition: date, newest: date | None, diff: AedDiff) -> list[str]:
    """Soft-delete the gone devices; their ``last_seen`` is the newest date applied before. Returns their serials."""
    if not diff.gone:
        return []
    previous = newest if newest and newest < partition else None
    return list(conn.execute(_SOFT_DELETE_GONE, {"previous": previous}).scalars())
