"""An older date's write (a backfill): that day's history re-derived, ``aed_data`` left alone.

The history says what the registry looked like on each day (``valid_from`` ≤ day < ``valid_to``).
Applying the snapshot of a date older than the newest one re-derives the versions in force on that
date only, up to the next observed date (``aed_snapshots`` says which dates were observed): a
version the snapshot contradicts is cut at the date (keeping its "tail" from the next observed date
on), the snapshot's values open versions of their own, and consecutive versions that end up equal
are joined. ``aed_data`` keeps the newest values: a backfill never moves the registry back.

The re-derivation works on every version of a device, so the open versions (the ``aed_data``
rows) join the history for the duration of the transaction, and leave it again with their
``version_since`` as the re-derivation left it. Backfills are rare; that copy is their cost.

Everything runs inside the caller's transaction, after the snapshot was staged as ``aed_stage``.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from aed_pipeline.lib.egen_aed.write.types import (
    COLUMNS,
    FROM_HISTORY,
    STAGED,
    ChangeSamples,
    RowCounts,
    WriteOutcome,
    judge_missing_devices,
)

_OPEN_VERSIONS_INTO_HISTORY = sa.text(
    f"INSERT INTO aed_data_history ({COLUMNS}, valid_from, valid_to) "
    f"SELECT {COLUMNS}, version_since, NULL FROM aed_data WHERE deleted_at IS NULL"
)
_OPEN_VERSIONS_BACK = (
    sa.text(
        "UPDATE aed_data a SET version_since = h.valid_from FROM aed_data_history h "
        "WHERE h.valid_to IS NULL AND h.equipment_serial = a.equipment_serial "
        "AND a.version_since <> h.valid_from"
    ),
    sa.text("DELETE FROM aed_data_history WHERE valid_to IS NULL"),
)
# The history versions in force on the date: what the history says that day looked like.
_COVER = sa.text(
    "CREATE TEMPORARY TABLE aed_cover ON COMMIT DROP AS "
    "SELECT id, equipment_serial, row_hash, valid_from, valid_to FROM aed_data_history "
    "WHERE valid_from <= :d AND (valid_to IS NULL OR valid_to > :d)"
)
_MISSING_FROM_COVER = sa.text(
    "SELECT count(*) FILTER (WHERE NOT EXISTS "
    "(SELECT 1 FROM aed_stage s WHERE s.equipment_serial = c.equipment_serial)), count(*) FROM aed_cover c"
)
_COUNT_AGAINST_COVER = sa.text(
    "SELECT count(*) FILTER (WHERE c.id IS NULL), count(*) FILTER (WHERE c.row_hash <> s.row_hash), "
    "count(*) FILTER (WHERE c.row_hash = s.row_hash) "
    "FROM aed_stage s LEFT JOIN aed_cover c USING (equipment_serial)"
)
_GONE_FROM_COVER = sa.text(
    "SELECT count(*) FROM aed_cover c WHERE NOT EXISTS "
    "(SELECT 1 FROM aed_stage s WHERE s.equipment_serial = c.equipment_serial)"
)
_STALE = sa.text(
    "CREATE TEMPORARY TABLE aed_stale ON COMMIT DROP AS SELECT c.* FROM aed_cover c "
    "LEFT JOIN aed_stage s USING (equipment_serial) "
    "WHERE s.equipment_serial IS NULL OR s.row_hash <> c.row_hash"
)
# A stale version that still held on the next observed date keeps that part (the "tail").
_KEEP_TAILS = sa.text(
    f"INSERT INTO aed_data_history ({COLUMNS}, valid_from, valid_to) "
    f"SELECT {FROM_HISTORY}, CAST(:n AS date), h.valid_to FROM aed_data_history h "
    "JOIN aed_stale t ON t.id = h.id "
    "WHERE CAST(:n AS date) IS NOT NULL AND (h.valid_to IS NULL OR h.valid_to > CAST(:n AS date))"
)
_DROP_STALE_FROM_DATE = sa.text(
    "DELETE FROM aed_data_history h USING aed_stale t WHERE h.id = t.id AND t.valid_from = :d"
)
_CUT_STALE_AT_DATE = sa.text(
    "UPDATE aed_data_history h SET valid_to = :d FROM aed_stale t WHERE h.id = t.id AND t.valid_from < :d"
)
_HAS_LATER_VERSIONS = sa.text("SELECT EXISTS (SELECT 1 FROM aed_data_history WHERE valid_from > :d)")
_OPEN = (
    f"INSERT INTO aed_data_history ({COLUMNS}, valid_from, valid_to) SELECT {STAGED}, :d, {{valid_to}} "
    "FROM aed_stage s WHERE NOT EXISTS (SELECT 1 FROM aed_cover c "
    "WHERE c.equipment_serial = s.equipment_serial AND c.row_hash = s.row_hash)"
)
# A new version ends at the next observed date, or where the device's next version begins; only a
# backfill has later versions, and looking them up row by row is a large share of a history write.
_OPEN_UP_TO_NEXT = sa.text(_OPEN.format(valid_to="CAST(:n AS date)"))
_OPEN_UP_TO_LATER = sa.text(
    _OPEN.format(
        valid_to="LEAST(CAST(:n AS date), (SELECT min(h.valid_from) FROM aed_data_history h "
        "WHERE h.equipment_serial = s.equipment_serial AND h.valid_from > :d))"
    )
)
_TOUCHED = sa.text(
    "CREATE TEMPORARY TABLE aed_touched ON COMMIT DROP AS "
    "SELECT equipment_serial FROM aed_stale UNION "
    "SELECT equipment_serial FROM aed_data_history WHERE valid_from = :d"
)
_MERGE_ONE_ROUND = sa.text(
    "WITH pairs AS (SELECT a.id AS keep_id, b.id AS drop_id, b.valid_to AS new_to "
    "FROM aed_data_history a JOIN aed_data_history b ON b.equipment_serial = a.equipment_serial "
    "AND b.valid_from = a.valid_to AND b.row_hash = a.row_hash "
    "WHERE a.equipment_serial IN (SELECT equipment_serial FROM aed_touched)), "
    "firsts AS (SELECT * FROM pairs p WHERE NOT EXISTS (SELECT 1 FROM pairs q WHERE q.drop_id = p.keep_id)), "
    "dropped AS (DELETE FROM aed_data_history h USING firsts f WHERE h.id = f.drop_id "
    "RETURNING f.keep_id, f.new_to) "
    "UPDATE aed_data_history h SET valid_to = d.new_to FROM dropped d WHERE h.id = d.keep_id"
)


def rederive_history(
    conn: Connection, partition: date, next_observed: date | None, *, guard: float, enforce_guard: bool
) -> WriteOutcome:
    """Re-derive the history of ``partition`` from the staged snapshot, up to ``next_observed``.

    The counts compare the snapshot with what the history said of that date before. A tripped
    guard stops the write; a plan (not ``enforce_guard``) only reports its verdict."""
    conn.execute(_OPEN_VERSIONS_INTO_HISTORY)
    conn.execute(_COVER, {"d": partition})
    conn.execute(sa.text("ANALYZE aed_cover"))
    missing, recorded = conn.execute(_MISSING_FROM_COVER).one()
    verdict = judge_missing_devices(
        missing, recorded, partition, guard, f"devices the history records on {partition}", enforce=enforce_guard
    )
    inserted, updated, unchanged = conn.execute(_COUNT_AGAINST_COVER).one()
    deleted = conn.execute(_GONE_FROM_COVER).scalar_one()
    opened, closed = _rewrite_versions(conn, partition, next_observed)
    for statement in _OPEN_VERSIONS_BACK:
        conn.execute(statement)
    counts = RowCounts(
        inserted=inserted,
        updated=updated,
        deleted=deleted,
        unchanged=unchanged,
        history_opened=opened,
        history_closed=closed,
    )
    return WriteOutcome(counts, ChangeSamples(), verdict)


def _rewrite_versions(conn: Connection, partition: date, next_observed: date | None) -> tuple[int, int]:
    """Cut the versions the snapshot contradicts and open its own; returns (opened, closed)."""
    params = {"d": partition, "n": next_observed}
    conn.execute(_STALE)
    tails = conn.execute(_KEEP_TAILS, params).rowcount
    dropped = conn.execute(_DROP_STALE_FROM_DATE, params).rowcount
    cut = conn.execute(_CUT_STALE_AT_DATE, params).rowcount
    has_later = conn.execute(_HAS_LATER_VERSIONS, params).scalar_one()
    opened = conn.execute(_OPEN_UP_TO_LATER if has_later else _OPEN_UP_TO_NEXT, params).rowcount
    # Identical neighbours arise only where a version was cut (tails, dropped) or a new one runs up
    # to a later version (a backfill); a plain apply of the newest date has nothing to merge.
    if tails or dropped or (opened and has_later):
        _merge_adjacent_versions(conn, partition)
    return tails + opened, dropped + cut


def _merge_adjacent_versions(conn: Connection, partition: date) -> None:
    """Join consecutive versions of a device with the same values (a backfill can create them)."""
    conn.execute(_TOUCHED, {"d": partition})
    while conn.execute(_MERGE_ONE_ROUND).rowcount:
        pass
