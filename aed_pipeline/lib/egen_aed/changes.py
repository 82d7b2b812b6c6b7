"""The AED change feed ``aed_changes`` as the platform reads it: by date, counted, streamed.

``aed_changes`` (migration 0004) is a view over the versions (``aed_data_versions``) and the
repairs (``aed_repairs``): one row per device change between consecutive applied snapshots, with the
snapshot date, the applied date before it (``previous_date``), the run that applied the date, the
serial, the change type, the changed columns in table order and their values before and after
(jsonb; the masked manager fields as stored, i.e. as served). Being derived from the versions, it
agrees with them by construction, also after a backfill re-derives a day between two applied dates.

The first applied snapshot has no date before it: its devices are ``baseline`` rows, the registry
as first observed. A consumer starting from nothing reads the feed from the first date and holds the
registry; one that knows the registry of an applied date ``D`` (``aed_data_versions`` as of ``D``)
reads the feed from the date after ``D``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

#: The change types, in the order reports list them. ``baseline``: a device of the first applied
#: snapshot; ``repaired``: a row edited by hand, restored by a reconciliation (no version created).
CHANGE_TYPES = ("baseline", "new", "changed", "removed", "revived", "repaired")
#: The columns of ``aed_changes``, in order (what the command line writes).
FEED_COLUMNS = (
    "snapshot_date",
    "previous_date",
    "run_id",
    "equipment_serial",
    "change_type",
    "changed_columns",
    "before",
    "after",
)

_ORDER = " ORDER BY snapshot_date, equipment_serial, change_type"
_COUNTS_ON = sa.text(
    "SELECT snapshot_date, change_type, count(*) FROM aed_changes WHERE snapshot_date = ANY(:dates) GROUP BY 1, 2"
)
_ROWS_ON = sa.text(
    "SELECT snapshot_date, equipment_serial, change_type, changed_columns, before, after FROM aed_changes "
    "WHERE snapshot_date = ANY(:dates)" + _ORDER + " LIMIT :n"
)
_BETWEEN = sa.text(
    f"SELECT {', '.join(FEED_COLUMNS)} FROM aed_changes WHERE snapshot_date >= :since AND snapshot_date <= :until"
    + _ORDER
)
_NEWEST_SNAPSHOT_COUNTS = sa.text(
    "SELECT change_type, count(*) FROM aed_changes "
    "WHERE snapshot_date = (SELECT max(partition_date) FROM aed_snapshots) GROUP BY 1"
)


@dataclass(frozen=True)
class FeedChange:
    """One row of the change feed: how one device changed on ``snapshot_date`` (since the applied
    date before it). ``before`` / ``after`` hold the changed columns' values (``None``: absent)."""

    snapshot_date: date
    equipment_serial: str
    change_type: str
    changed_columns: tuple[str, ...]
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def feed_counts(conn: Connection, dates: Sequence[date]) -> dict[date, dict[str, int]]:
    """The feed's rows on each of ``dates``, by change type (dates without changes: empty)."""
    counts: dict[date, dict[str, int]] = {day: {} for day in dates}
    for day, change_type, n in conn.execute(_COUNTS_ON, {"dates": list(dates)}).tuples():
        counts[day][change_type] = n
    return {day: _in_type_order(by_type) for day, by_type in counts.items()}


def feed_rows(conn: Connection, dates: Sequence[date], *, limit: int | None = None) -> tuple[FeedChange, ...]:
    """The rows of the feed on ``dates`` (the first ``limit``), by date and serial."""
    rows = conn.execute(_ROWS_ON, {"dates": list(dates), "n": limit}).tuples()
    return tuple(
        FeedChange(day, serial, change_type, tuple(columns or ()), before, after)
        for day, serial, change_type, columns, before, after in rows
    )


def stream_changes(conn: Connection, since: date, until: date | None = None) -> Iterator[dict[str, Any]]:
    """The feed from ``since`` to ``until`` (both included; default: the newest date), row by row as
    PostgreSQL sends them (a server-side cursor), each a dict of :data:`FEED_COLUMNS`."""
    streaming = conn.execution_options(stream_results=True, yield_per=2000)
    for row in streaming.execute(_BETWEEN, {"since": since, "until": until or date.max}).mappings():
        yield dict(row)


def newest_snapshot_changes(conn: Connection) -> dict[str, int]:
    """The feed's rows of the newest applied snapshot, by change type (every type, 0 when absent)."""
    counts: dict[str, int] = dict(conn.execute(_NEWEST_SNAPSHOT_COUNTS).tuples().all())
    return {change_type: counts.get(change_type, 0) for change_type in CHANGE_TYPES}


def _in_type_order(by_type: dict[str, int]) -> dict[str, int]:
    return {t: by_type[t] for t in sorted(by_type, key=lambda t: CHANGE_TYPES.index(t) if t in CHANGE_TYPES else 99)}
