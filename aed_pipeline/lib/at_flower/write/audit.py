"""The checks on a sale date's normalised flower tables, judged inside its transaction before COMMIT.

After a date's slice is written (``normalised.py``) and before COMMIT, the write reads back what
``bidding_flowers`` and ``bidding_flowers_history`` would hold for that date and judges it:

- ``slice_matches_validated``: the date's ``bidding_flowers`` slice is exactly the validated rows,
  key for key and value for value (the staged rows, resolved to their 품목 and 품종);
- ``keys_unique_in_slice``: one row per (group, 품종, 등급) on the date;
- ``prices_ordered_in_slice``: min ≤ avg ≤ max in every row of the date;
- ``replaced_versions_kept``: every row the write replaced (a corrected price, a withdrawn row) is a
  version in ``bidding_flowers_history``, written by this transaction.

A failure raises :class:`~aed_pipeline.lib.core.audit.PostWriteChecksFailed`, so the date's
transaction rolls back and its write never becomes visible. Every figure comes from one aggregate
over the date's slice (through its key's index): the slice is compared with the staged rows by
count and by the sum of a 64-bit fingerprint of each row, which the write computed over the staged
rows, so no join re-resolves the staged names. The examples (a join with the staging table) are read
only when a check fails.

Everything runs inside the caller's transaction, with the date's rows still staged.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from aed_pipeline.lib.at_flower.tables import BIDDING_HISTORY_TABLE, BIDDING_TABLE
from aed_pipeline.lib.core.audit import PostWriteCheck

SLICE_MATCHES_VALIDATED = "slice_matches_validated"
KEYS_UNIQUE_IN_SLICE = "keys_unique_in_slice"
PRICES_ORDERED_IN_SLICE = "prices_ordered_in_slice"
REPLACED_VERSIONS_KEPT = "replaced_versions_kept"
#: What each check asserts, in the words of the catalog.
POST_WRITE_CHECKS = {
    SLICE_MATCHES_VALIDATED: "The sale date's bidding_flowers rows are exactly its validated rows, value for value.",
    KEYS_UNIQUE_IN_SLICE: "One bidding_flowers row per group, 품종 and 등급 on the sale date.",
    PRICES_ORDERED_IN_SLICE: "min_price ≤ avg_price ≤ max_price in every bidding_flowers row of the sale date.",
    REPLACED_VERSIONS_KEPT: "Every row the sync replaced (corrected or withdrawn) is kept in bidding_flowers_history.",
}
EXAMPLES = 10

_VALUES = ("min_price", "avg_price", "max_price", "total_amount", "quantity")
_SAME_VALUES = " AND ".join(f"b.{c} = s.{c}" for c in _VALUES)
# The staged rows with their flower resolved (every name resolves: the write inserted the new ones).
_STAGED = (
    "SELECT s.*, f.id AS flower_id FROM {staging} s JOIN flower_types t ON t.name = s.pum_name "
    "JOIN flowers f ON f.flower_type_id = t.id AND f.name = s.good_name"
)
#: A row's fingerprint: a 64-bit hash of its key (group, flower id, grade) and values. The write sums it
#: over the rows it staged (``normalised.py``), the check over the slice it left: a multiset of rows
#: and its sum agree when the rows do (a sum of 64-bit hashes that agrees by chance: ~2⁻⁶⁴).
ROW_FINGERPRINT = (
    "hashtextextended(concat_ws('|', {0}flower_gubn, {0}flower_id, {0}grade, {0}min_price, {0}avg_price, "
    "{0}max_price, {0}total_amount, {0}quantity), 0)"
)
# Every check's figures in one statement, one pass over the date's slice (its key's index): its
# rows, duplicate keys, unordered prices and fingerprint; and the versions this transaction kept.
_FIGURES = sa.text(
    "SELECT count(*), count(*) - count(DISTINCT (b.flower_gubn, b.flower_id, b.grade)), "
    "count(*) FILTER (WHERE NOT (b.min_price <= b.avg_price AND b.avg_price <= b.max_price)), "
    f"coalesce(sum({ROW_FINGERPRINT.format('b.')}), 0), "
    f"(SELECT count(*) FROM {BIDDING_HISTORY_TABLE} h WHERE h.sale_date = :d AND h.replaced_at = now() "
    "AND h.replaced_run_id IS NOT DISTINCT FROM CAST(:run_id AS text)) "
    f"FROM {BIDDING_TABLE} b WHERE b.sale_date = :d"
)

_NAMED = "t.name || ' ' || f.name || ' ' || b.grade"
_NAMES = f"FROM {BIDDING_TABLE} b JOIN flowers f ON f.id = b.flower_id JOIN flower_types t ON t.id = f.flower_type_id"
_VALUES_TEXT = " || '/' || ".join(f"b.{c}" for c in _VALUES)
_STAGED_VALUES_TEXT = " || '/' || ".join(f"s.{c}" for c in _VALUES)
# Examples, read only when a check fails ("min/avg/max/total/quantity" after the names).
_VALIDATED_NOT_IN_SLICE = (
    "SELECT 'validated, not in the table as validated: ' || s.pum_name || ' ' || s.good_name || ' ' || s.grade "
    f"|| ' (' || {_STAGED_VALUES_TEXT} || ')' FROM ({_STAGED}) s WHERE NOT EXISTS (SELECT 1 FROM {BIDDING_TABLE} b "
    "WHERE b.sale_date = :d AND b.flower_gubn = s.flower_gubn AND b.flower_id = s.flower_id AND b.grade = s.grade "
    f"AND {_SAME_VALUES}) ORDER BY 1 LIMIT :n"
)
_SLICE_NOT_VALIDATED = (
    f"SELECT 'in the table, not validated: ' || {_NAMED} || ' (' || {_VALUES_TEXT} || ')' {_NAMES} "
    f"WHERE b.sale_date = :d AND NOT EXISTS (SELECT 1 FROM ({_STAGED}) s WHERE b.flower_gubn = s.flower_gubn "
    f"AND b.flower_id = s.flower_id AND b.grade = s.grade AND {_SAME_VALUES}) ORDER BY 1 LIMIT :n"
)
_DUPLICATE_KEYS = sa.text(
    f"SELECT {_NAMED} || ' (' || count(*) || ' rows)' {_NAMES} WHERE b.sale_date = :d "
    "GROUP BY t.name, f.name, b.grade, b.flower_gubn HAVING count(*) > 1 ORDER BY 1 LIMIT :n"
)
_UNORDERED_PRICES = sa.text(
    f"SELECT {_NAMED} || ' (min ' || b.min_price || ', avg ' || b.avg_price || ', max ' || b.max_price || ')' "
    f"{_NAMES} WHERE b.sale_date = :d AND NOT (b.min_price <= b.avg_price AND b.avg_price <= b.max_price) "
    "ORDER BY 1 LIMIT :n"
)


def post_write_checks(
    conn: Connection,
    sale_date: date,
    *,
    staging: str,
    validated_rows: int,
    validated_fingerprint: int,
    replaced: int,
    run_id: str | None,
) -> tuple[PostWriteCheck, ...]:
    """Judge the date's tables as the write left them, in its transaction; every check's verdict.

    ``staging`` is the staging table holding the date's validated rows (``validated_rows`` of
    them, the sum of their :data:`ROW_FINGERPRINT` ``validated_fingerprint``), ``replaced`` the
    rows the write updated or deleted, ``run_id`` the run writing.
    """
    params = {"d": sale_date, "n": EXAMPLES}
    rows, duplicates, unordered, fingerprint, kept = conn.execute(_FIGURES, {"d": sale_date, "run_id": run_id}).one()

    # Equal counts, equal fingerprints and unique keys: the slice is the validated rows.
    matches = rows == validated_rows and int(fingerprint) == int(validated_fingerprint) and duplicates == 0
    slice_examples: list[str] = []
    if not matches:
        for statement in (_VALIDATED_NOT_IN_SLICE, _SLICE_NOT_VALIDATED):
            slice_examples += conn.execute(sa.text(statement.format(staging=staging)), params).scalars()
    return (
        PostWriteCheck(
            SLICE_MATCHES_VALIDATED,
            matches,
            {
                "validated_rows": validated_rows,
                "rows_in_slice": rows,
                "values": "equal to the validated rows" if matches else "differ from the validated rows",
            },
            tuple(slice_examples[:EXAMPLES]),
        ),
        PostWriteCheck(
            KEYS_UNIQUE_IN_SLICE,
            duplicates == 0,
            {"duplicate_keys": duplicates},
            tuple(conn.execute(_DUPLICATE_KEYS, params).scalars()) if duplicates else (),
        ),
        PostWriteCheck(
            PRICES_ORDERED_IN_SLICE,
            unordered == 0,
            {"rows_with_unordered_prices": unordered},
            tuple(conn.execute(_UNORDERED_PRICES, params).scalars()) if unordered else (),
        ),
        PostWriteCheck(
            REPLACED_VERSIONS_KEPT,
            kept == replaced,
            {"rows_replaced": replaced, "versions_kept": kept},
        ),
    )
