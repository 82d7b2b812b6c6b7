"""The AED change feed as the simulator sees it: its registries of applied dates, diffed day to day.

The simulator knows every device on every date (``AedRegistry.records``); validation maps a record
to the ``aed_data`` columns. The expected feed between two consecutive applied dates is the
difference of those mapped records, field for field, independent of the pipeline's versions.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from aed_pipeline.lib.egen_aed.records import DEVICE_COLUMNS, TIME_COLUMNS, validate_records
from aed_pipeline.lib.egen_aed.rows import DeviceRowsWriter
from aed_pipeline.lib.egen_aed.validate import ValidatedAedSnapshot
from aed_pipeline.simulator import Simulator

REFERENCE_CSV = Path(__file__).resolve().parents[2] / "aed_pipeline" / "migrations" / "reference" / "health_centers.csv"
#: The columns the feed compares and shows (the device's fields but its key and hash).
COMPARED = tuple(c for c in DEVICE_COLUMNS if c not in ("equipment_serial", "row_hash"))

Record = dict[str, Any]
#: (snapshot date, serial) → (change type, {column: (before, after)})
Feed = dict[tuple[dt.date, str], tuple[str, dict[str, tuple[Any, Any]]]]


def as_stored(column: str, value: Any) -> Any:
    """A validated value as the feed's jsonb shows it: NULL as None, times with seconds."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if column in TIME_COLUMNS:
        return f"{value}:00"
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def reference_health_centers() -> dict[tuple[str, str], str]:
    """(시도, 시군구) → 보건소 as the shipped reference has it (what ``health_centers`` holds)."""
    with REFERENCE_CSV.open(encoding="utf-8", newline="") as handle:
        return {(r["sido"], r["gugun"]): r["health_center"] for r in csv.DictReader(handle)}


class SimulatedRegistry:
    """The simulator's registry of any date, mapped to ``aed_data`` columns (validated once per date)."""

    def __init__(self, sim: Simulator, health_centers: Mapping[tuple[str, str], str] | None = None):
        self.sim = sim
        self.health_centers = dict(health_centers or reference_health_centers())
        self._days: dict[tuple[dt.date, tuple[str, ...]], tuple[Any, dict[str, Record]]] = {}

    def validated(self, day: dt.date, drop: Iterable[str] = ()):
        """The validation of ``day``'s records, without the serials in ``drop`` (a partly served day)."""
        dropped = set(drop)
        records = self.sim.registry.records(self.sim.registry.active_ids(day), day.toordinal())
        return validate_records([r for r in records if r["serialSeq"] not in dropped], self.health_centers)

    def devices(self, day: dt.date, drop: Iterable[str] = ()) -> dict[str, Record]:
        key = (day, tuple(sorted(drop)))
        if key not in self._days:
            frame = self.validated(day, drop).frame
            rows = {r["equipment_serial"]: {c: as_stored(c, r[c]) for c in COMPARED} for r in frame.to_dict("records")}
            self._days[key] = (frame, rows)
        return self._days[key][1]

    def snapshot(self, day: dt.date, tmp: Path, *, drop: Iterable[str] = ()) -> ValidatedAedSnapshot:
        """``day``'s registry as the validated snapshot ``aed_data`` applies."""
        drop = tuple(drop)
        self.devices(day, drop)
        frame = self._days[(day, tuple(sorted(drop)))][0]
        path = tmp / f"{day}-{len(drop)}.parquet"
        if path.exists():
            path.unlink()
        with DeviceRowsWriter(path) as writer:
            writer.write(frame)
        return ValidatedAedSnapshot(
            partition_date=day,
            rows_path=str(path),
            valid=len(frame),
            fetched=len(frame),
            total_count=len(frame),
            rejected=0,
            profile={},
            archive_ref=str(path),
            archive_digest=day.isoformat(),
            origin="simulator",
        )


def expected_feed(registries: Mapping[dt.date, Mapping[str, Record]]) -> Feed:
    """The feed of the applied dates ``registries`` (date → serial → record), diffed day to day."""
    feed: Feed = {}
    seen: set[str] = set()
    previous: Mapping[str, Record] | None = None
    for day in sorted(registries):
        current = registries[day]
        if previous is None:
            for serial, record in current.items():
                feed[(day, serial)] = ("baseline", _diff(None, record))
        else:
            for serial in current.keys() | previous.keys():
                before, after = previous.get(serial), current.get(serial)
                if before is not None and after is not None:
                    if before != after:
                        feed[(day, serial)] = ("changed", _diff(before, after))
                elif after is not None:
                    feed[(day, serial)] = ("revived" if serial in seen else "new", _diff(None, after))
                else:
                    feed[(day, serial)] = ("removed", _diff(before, None))
        seen |= current.keys()
        previous = current
    return feed


def _diff(before: Record | None, after: Record | None) -> dict[str, tuple[Any, Any]]:
    old, new = before or {}, after or {}
    return {c: (old.get(c), new.get(c)) for c in COMPARED if old.get(c) != new.get(c)}


def stored_feed(engine: Engine, *, types: tuple[str, ...] | None = None) -> Feed:
    """The feed as ``aed_changes`` has it, in the same shape (repairs left out unless asked for)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT snapshot_date, equipment_serial, change_type, changed_columns, before, after FROM aed_changes"
            )
        ).all()
    feed: Feed = {}
    for day, serial, change_type, columns, before, after in rows:
        wanted = change_type != "repaired" if types is None else change_type in types
        if not wanted:
            continue
        assert (day, serial) not in feed, f"two changes of {serial} on {day}"
        assert list(columns) == [c for c in COMPARED if c in columns], "changed columns out of table order"
        old, new = before or {}, after or {}
        assert set(old) <= set(columns) and set(new) <= set(columns)
        feed[(day, serial)] = (change_type, {c: (old.get(c), new.get(c)) for c in columns})
    return feed
