"""The checks on ``aed_data``, judged inside the apply's transaction before COMMIT (write-audit-publish).

After the write and before COMMIT, the apply reads back what the tables would hold and judges it:

- ``active_rows_match_snapshot``: the versions valid on the date are the validated rows, and for the
  newest date the active rows of ``aed_data`` are too;
- ``health_centers_exist``: every ``jurisdiction_health_center`` is in ``health_centers``;
- ``serials_unique_in_table``: ``equipment_serial`` is unique in ``aed_data``.

A failure rolls the apply back (``apply.py`` raises :class:`PostWriteChecksFailed`), so a write that
fails them never becomes visible; a plan reports them and rolls back anyway. Each check's figures
are one cheap aggregate; the examples of failing devices are read only when a check fails. Where a
constraint in force guarantees the property (the unique key on ``equipment_serial``, the foreign key
to ``health_centers``: validated, not deferrable, so PostgreSQL has checked every row this
transaction wrote), the check says so instead of scanning the table; without it, it counts.

Everything runs inside the caller's transaction, with the snapshot still staged as ``aed_stage``.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from aed_pipeline.lib.egen_aed.write.types import PostWriteCheck

ACTIVE_ROWS_MATCH_SNAPSHOT = "active_rows_match_snapshot"
HEALTH_CENTERS_EXIST = "health_centers_exist"
SERIALS_UNIQUE_IN_TABLE = "serials_unique_in_table"
#: What each check asserts, in the words of the catalog.
POST_WRITE_CHECKS = {
    ACTIVE_ROWS_MATCH_SNAPSHOT: "aed_data's active rows (and the versions valid on the date) = the validated rows.",
    HEALTH_CENTERS_EXIST: "Every jurisdiction_health_center exists in health_centers.",
    SERIALS_UNIQUE_IN_TABLE: "equipment_serial is unique in aed_data.",
}
EXAMPLES = 10

_ON_DATE = "v.valid_from <= :d AND (v.valid_to IS NULL OR v.valid_to > :d)"
_ACTIVE_ROWS = sa.text("SELECT count(*) FROM aed_data WHERE deleted_at IS NULL")
# As consumers read them. (Counting both in one pass over aed_data would read version_since, its
# last column, from every wide row: slower than the two index scans.)
_VERSIONS_ON_DATE = sa.text(f"SELECT count(*) FROM aed_data_versions v WHERE {_ON_DATE}")
_UNKNOWN_HEALTH_CENTERS = (
    "FROM aed_data a WHERE a.jurisdiction_health_center IS NOT NULL AND NOT EXISTS "
    "(SELECT 1 FROM health_centers h WHERE h.name = a.jurisdiction_health_center)"
)
_COUNT_UNKNOWN_HEALTH_CENTERS = sa.text(f"SELECT count(*) {_UNKNOWN_HEALTH_CENTERS}")
_DUPLICATE_SERIALS = sa.text("SELECT count(*) - count(DISTINCT equipment_serial) FROM aed_data")
# A constraint in force on aed_data over exactly ``column`` (a foreign key: referencing ``target``).
_CONSTRAINT_IN_FORCE = sa.text(
    "SELECT c.conname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attname = :column "
    "WHERE c.conrelid = CAST('aed_data' AS regclass) AND c.contype = ANY(:types) AND c.convalidated "
    "AND NOT c.condeferrable AND c.conkey = ARRAY[a.attnum] "
    "AND (CAST(:target AS text) IS NULL OR c.confrelid = CAST(:target AS regclass)) LIMIT 1"
)

# Examples of failing devices, read only when a check fails.
_STAGED_WITHOUT_VERSION_ON_DATE = sa.text(
    "SELECT 'validated, no such version on the date: ' || s.equipment_serial FROM aed_stage s WHERE NOT EXISTS "
    f"(SELECT 1 FROM aed_data_versions v WHERE v.equipment_serial = s.equipment_serial AND {_ON_DATE} "
    "AND v.row_hash = s.row_hash) ORDER BY 1 LIMIT :n"
)
_VERSION_ON_DATE_NOT_STAGED = sa.text(
    f"SELECT 'version on the date, not validated: ' || v.equipment_serial FROM aed_data_versions v WHERE {_ON_DATE} "
    "AND NOT EXISTS (SELECT 1 FROM aed_stage s WHERE s.equipment_serial = v.equipment_serial) ORDER BY 1 LIMIT :n"
)
_STAGED_NOT_ACTIVE = sa.text(
    "SELECT 'validated, not active: ' || s.equipment_serial FROM aed_stage s WHERE NOT EXISTS "
    "(SELECT 1 FROM aed_data a WHERE a.equipment_serial = s.equipment_serial AND a.deleted_at IS NULL) "
    "ORDER BY 1 LIMIT :n"
)
_ACTIVE_NOT_STAGED = sa.text(
    "SELECT 'active, not validated: ' || a.equipment_serial FROM aed_data a WHERE a.deleted_at IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM aed_stage s WHERE s.equipment_serial = a.equipment_serial) ORDER BY 1 LIMIT :n"
)
_UNKNOWN_HEALTH_CENTER_EXAMPLES = sa.text(
    f"SELECT a.equipment_serial || ': ' || a.jurisdiction_health_center {_UNKNOWN_HEALTH_CENTERS} ORDER BY 1 LIMIT :n"
)
_DUPLICATE_SERIAL_EXAMPLES = sa.text(
    "SELECT equipment_serial || ' (' || count(*) || ' rows)' FROM aed_data GROUP BY equipment_serial "
    "HAVING count(*) > 1 ORDER BY 1 LIMIT :n"
)


def post_write_checks(
    conn: Connection, partition: date, validated_rows: int, mode: Literal["current", "history_only"]
) -> tuple[PostWriteCheck, ...]:
    """Judge the tables as the write left them, in its transaction; returns every check's verdict."""
    return (
        _active_rows_match_snapshot(conn, partition, validated_rows, mode),
        _health_centers_exist(conn),
        _serials_unique_in_table(conn),
    )


def _active_rows_match_snapshot(
    conn: Connection, partition: date, validated: int, mode: Literal["current", "history_only"]
) -> PostWriteCheck:
    on_date = conn.execute(_VERSIONS_ON_DATE, {"d": partition}).scalar_one()
    active = conn.execute(_ACTIVE_ROWS).scalar_one()
    figures: dict[str, int | str] = {
        "validated_rows": validated,
        "active_rows": active,
        "versions_on_date": on_date,
        "mode": mode,
    }
    # An older date leaves aed_data as the newest date has it: only its versions are judged.
    passed = on_date == validated and (mode != "current" or active == validated)
    examples: list[str] = []
    if not passed:
        examples = _examples(conn, (_STAGED_WITHOUT_VERSION_ON_DATE, _VERSION_ON_DATE_NOT_STAGED), partition)
        if mode == "current":
            examples += _examples(conn, (_STAGED_NOT_ACTIVE, _ACTIVE_NOT_STAGED), partition)
    return PostWriteCheck(ACTIVE_ROWS_MATCH_SNAPSHOT, passed, figures, tuple(examples[:EXAMPLES]))


def _health_centers_exist(conn: Connection) -> PostWriteCheck:
    key = _constraint_in_force(conn, "jurisdiction_health_center", ["f"], "health_centers")
    if key is not None:
        return PostWriteCheck(HEALTH_CENTERS_EXIST, True, {"rows_with_unknown_health_center": 0, "guaranteed_by": key})
    unknown = conn.execute(_COUNT_UNKNOWN_HEALTH_CENTERS).scalar_one()
    examples = conn.execute(_UNKNOWN_HEALTH_CENTER_EXAMPLES, {"n": EXAMPLES}).scalars().all() if unknown else []
    return PostWriteCheck(
        HEALTH_CENTERS_EXIST, unknown == 0, {"rows_with_unknown_health_center": unknown}, tuple(examples)
    )


def _serials_unique_in_table(conn: Connection) -> PostWriteCheck:
    key = _constraint_in_force(conn, "equipment_serial", ["u", "p"])
    if key is not None:
        return PostWriteCheck(SERIALS_UNIQUE_IN_TABLE, True, {"duplicate_serials": 0, "guaranteed_by": key})
    duplicates = conn.execute(_DUPLICATE_SERIALS).scalar_one()
    examples = conn.execute(_DUPLICATE_SERIAL_EXAMPLES, {"n": EXAMPLES}).scalars().all() if duplicates else []
    return PostWriteCheck(SERIALS_UNIQUE_IN_TABLE, duplicates == 0, {"duplicate_serials": duplicates}, tuple(examples))


def _constraint_in_force(conn: Connection, column: str, types: list[str], target: str | None = None) -> str | None:
    """The name of a validated, immediate constraint of ``types`` on ``aed_data(column)``, if any."""
    return conn.execute(_CONSTRAINT_IN_FORCE, {"column": column, "types": types, "target": target}).scalar()


def _examples(conn: Connection, statements: tuple[sa.TextClause, ...], partition: date) -> list[str]:
    return [
        example
        for statement in statements
        for example in conn.execute(statement, {"d": partition, "n": EXAMPLES}).scalars()
    ]
