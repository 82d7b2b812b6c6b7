"""The floor of the AED database phase: the least any loader of the same rows has to pay.

    .venv/bin/python bench/aed_floor.py --database-url URL --rows FILE

The floor is DESIGN.md §9's reference: a psycopg ``COPY`` of the snapshot's rows into a temporary
table, then one ``INSERT … ON CONFLICT DO UPDATE … WHERE … IS DISTINCT FROM`` into an empty copy
of ``aed_data`` (same columns, indexes and constraints), in one transaction. The rows are Python
tuples built before the clock starts, so the floor pays for nothing but the database and the COPY
protocol. Nothing is kept: the copy tables are dropped afterwards. ``bench/aed_sync.py`` runs it in
the same run as the sync and prints the ratio of the sync's database phase to it.

The floor writes each row once, as the sync does: the open version of a device is its ``aed_data``
row, and ``aed_data_history`` receives only the versions a later day closes (migration 0003).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from aed_pipeline.lib.egen_aed.records import DEVICE_COLUMNS

FLOOR_TABLE = "aed_floor"


def measure_floor(
    conninfo: str, rows: Sequence[Sequence[Any]], next_rows: Sequence[Sequence[Any]] | None = None
) -> dict[str, float]:
    """Seconds of the floor's COPY and upsert of ``rows`` (tuples in ``DEVICE_COLUMNS`` order), of
    the same COPY and upsert again when every row is already there (an unchanged day), and, given the
    next day's ``next_rows``, of their COPY and upsert over ``rows`` (a daily diff: the changed and new
    rows written; the floor retires no device)."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in DEVICE_COLUMNS)
    compared = [c for c in DEVICE_COLUMNS if c != "equipment_serial"]
    updates = sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in compared)
    old = sql.SQL(", ").join(
        sql.SQL("{t}.{c}").format(t=sql.Identifier(FLOOR_TABLE), c=sql.Identifier(c)) for c in compared
    )
    new = sql.SQL(", ").join(sql.SQL("EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in compared)
    table = sql.Identifier(FLOOR_TABLE)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=table))
        conn.execute(sql.SQL("CREATE TABLE {t} (LIKE aed_data INCLUDING ALL)").format(t=table))

        def stage_and_upsert(rows: Sequence[Sequence[Any]] = rows) -> tuple[float, float]:
            """COPY into a temporary table, then the upsert; returns the moments after each."""
            conn.execute(
                sql.SQL(
                    "CREATE TEMPORARY TABLE floor_stage ON COMMIT DROP AS SELECT {c} FROM aed_data WITH NO DATA"
                ).format(c=columns)
            )
            with (
                conn.cursor() as cursor,
                cursor.copy(sql.SQL("COPY floor_stage ({c}) FROM STDIN").format(c=columns)) as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            copied = time.perf_counter()
            conn.execute(
                sql.SQL(
                    "INSERT INTO {t} ({c}, first_seen, last_seen, version_since) "
                    "SELECT {c}, current_date, current_date, current_date "
                    "FROM floor_stage ON CONFLICT (equipment_serial) DO UPDATE SET {u} "
                    "WHERE ({old}) IS DISTINCT FROM ({new})"
                ).format(t=table, c=columns, u=updates, old=old, new=new)
            )
            return copied, time.perf_counter()

        try:
            started = time.perf_counter()
            with conn.transaction():
                copied, finished = stage_and_upsert()
            # The same rows again: the floor of an unchanged day (the upsert compares and writes nothing).
            again = time.perf_counter()
            with conn.transaction():
                _, unchanged = stage_and_upsert()
            daily = {}
            if next_rows is not None:
                day_started = time.perf_counter()
                with conn.transaction():
                    _, day_finished = stage_and_upsert(next_rows)
                daily = {"daily_floor_s": day_finished - day_started}
        finally:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {t}").format(t=table))
    return {
        "copy_s": copied - started,
        "upsert_s": finished - copied,
        "floor_s": finished - started,
        "unchanged_floor_s": unchanged - again,
        **daily,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="a migrated warehouse (aed_data must exist)")
    parser.add_argument("--rows", required=True, help="a validated rows file written by aed_validated")
    args = parser.parse_args()
    from aed_pipeline.lib.core.warehouse import normalize_database_url
    from aed_pipeline.lib.egen_aed.rows import read_device_rows

    rows = list(read_device_rows(args.rows))
    conninfo = normalize_database_url(args.database_url).replace("postgresql+psycopg://", "postgresql://")
    print(json.dumps({"rows": len(rows), **measure_floor(conninfo, rows)}))


if __name__ == "__main__":
    main()
