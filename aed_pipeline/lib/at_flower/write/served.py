"""``public_bidding_flowers``: the aT f001 rows exactly as served, one slice per sale date.

A sale date's slice is replaced as a whole (delete the date, COPY the archived rows) inside the
caller's transaction, so a re-run never duplicates rows (the old Go scheduler appended on every
run) and a reader sees either the old slice or the new one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from aed_pipeline.lib.at_flower import SOURCE_NAME
from aed_pipeline.lib.at_flower.fetch import PUBLIC_ROW_COLUMNS, archived_public_rows
from aed_pipeline.lib.at_flower.tables import PUBLIC_TABLE
from aed_pipeline.lib.core import locks
from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.lib.core.sync_log import sync_run
from aed_pipeline.lib.core.warehouse import copy_into

__all__ = ["PUBLIC_TABLE", "PublicSliceCounts", "ServedDay", "replace_public_slice", "write_served_days"]


@dataclass(frozen=True)
class PublicSliceCounts:
    """Rows of the date's slice before (``deleted``) and after (``inserted``) the replacement."""

    deleted: int
    inserted: int


@dataclass(frozen=True)
class ServedDay:
    """One sale date's slice as written: its rows per group asked for, the rows it replaced, and
    where the archived pages came from (``live``/``simulator``)."""

    sale_date: date
    rows_by_group: dict[int, int]
    deleted: int
    inserted: int
    origins: frozenset[str]


def replace_public_slice(conn: Connection, sale_date: date, rows: Sequence[Sequence[Any]]) -> PublicSliceCounts:
    """Replace ``sale_date``'s rows with ``rows`` (tuples in :data:`PUBLIC_ROW_COLUMNS` order),
    in the caller's transaction."""
    # Two runs of one date at once: the second's DELETE cannot see the first's uncommitted rows, so
    # its COPY would collide with them on the slice's unique key and fail with a duplicate-key
    # error once the first commits. It waits for the first instead, then replaces its slice.
    locks.hold_for_transaction(conn, locks.FLOWER_SERVED_SLICE, sale_date.toordinal())
    deleted = conn.execute(
        sa.text(f"DELETE FROM {PUBLIC_TABLE} WHERE sale_date = :sale_date"), {"sale_date": sale_date}
    ).rowcount
    inserted = copy_into(conn, PUBLIC_TABLE, PUBLIC_ROW_COLUMNS, rows)
    return PublicSliceCounts(deleted=deleted, inserted=inserted)


def write_served_days(
    engine: Engine, archive: RawArchive, sale_dates: Sequence[date], *, run_id: str | None
) -> Iterator[ServedDay]:
    """Replace the slice of each of ``sale_dates`` (in the given order) with its archived rows,
    yielding each date once it is committed.

    Each date is one transaction with its ``sync_runs`` row, marked successful inside it: a
    failure part-way (a date not completely archived, the database) marks that date's sync failed,
    keeps the dates already written and propagates.
    """
    with engine.connect() as conn:
        for sale_date in sale_dates:
            with sync_run(
                engine,
                source=SOURCE_NAME,
                table_name=PUBLIC_TABLE,
                partition_key=sale_date.isoformat(),
                run_id=run_id,
            ) as run:
                rows, origins = archived_public_rows(archive, sale_date)
                with conn.begin():
                    counts = replace_public_slice(conn, sale_date, rows)
                    run.counts.fetched = len(rows)
                    run.counts.inserted = counts.inserted
                    run.counts.deleted = counts.deleted
                    run.mark_success(conn)
            # Yielded after the commit, outside the sync's block: the caller's reporting is no part of it.
            yield ServedDay(
                sale_date=sale_date,
                rows_by_group=dict(Counter(row[1] for row in rows)),
                deleted=counts.deleted,
                inserted=counts.inserted,
                origins=frozenset(origins),
            )
