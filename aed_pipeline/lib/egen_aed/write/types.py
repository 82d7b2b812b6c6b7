"""What the AED write's modules share: the diff's verdict, the result, its refusals, the column lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from aed_pipeline.lib.egen_aed.records import DEVICE_COLUMNS

DEFAULT_MISSING_DEVICES_GUARD = 0.05


class SnapshotRejected(Exception):
    """The validated snapshot failed a blocking integrity check and must not be applied."""


class MissingDevicesGuardTripped(Exception):
    """Too many active devices are absent from the snapshot: the sync stopped and wrote nothing."""

    #: The alert the operations code raises for this refusal (``defs/shared/alerting.py``).
    alert_rule = "missing_devices_guard"


def refuse_if_too_many_missing(missing: int, reference: int, partition: date, limit: float, against: str) -> None:
    """Stop the write when more than ``limit`` of the ``reference`` devices are ``missing``: a
    half-served registry must not retire devices."""
    if reference and missing / reference > limit:
        raise MissingDevicesGuardTripped(
            f"missing-devices guard: {missing} of {reference} {against} ({missing / reference:.1%}) are absent "
            f"from the e-gen snapshot of {partition}, above the limit of {limit:.0%}; nothing was written. "
            "If the registry really shrank, re-run aed_data with a higher missing_devices_guard."
        )


@dataclass(frozen=True)
class AedDiff:
    """Every staged or active device classified once against ``aed_data``: how many of each kind.

    ``gone`` devices are active in ``aed_data`` and absent from the snapshot; ``revived`` ones were
    soft-deleted and are back. The classification itself is the transaction's table ``aed_diff``.
    """

    new: int = 0
    revived: int = 0
    changed: int = 0
    same: int = 0
    gone: int = 0

    @classmethod
    def first_load(cls, staged: int) -> AedDiff:
        """The diff of a first load, known without computing it: every staged device is new."""
        return cls(new=staged)

    @property
    def active_before(self) -> int:
        """The devices active in ``aed_data`` before the write."""
        return self.changed + self.same + self.gone

    @property
    def only_new(self) -> bool:
        """Every staged device is new (nothing to look up in ``aed_diff`` when inserting)."""
        return self.revived + self.changed + self.same == 0


@dataclass(frozen=True)
class FieldChange:
    """One field of one device, before and after (masked personal fields are never shown)."""

    equipment_serial: str
    column: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class RowCounts:
    """What a write did to the devices, and to their closed versions in ``aed_data_history``."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    revived: int = 0
    unchanged: int = 0
    drifted: int = 0
    history_opened: int = 0
    history_closed: int = 0


@dataclass(frozen=True)
class ChangeSamples:
    """Samples of what changed, for the materialisation's report."""

    changes: list[FieldChange] = field(default_factory=list)
    drift: list[FieldChange] = field(default_factory=list)
    inserted_examples: list[str] = field(default_factory=list)
    deleted_examples: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class AedSyncResult(RowCounts, ChangeSamples):
    """What a sync changed: its counts and samples, and where it went. ``mode`` is ``current``
    (``aed_data`` updated: the newest date) or ``history_only`` (an older date: only its history
    re-derived)."""

    mode: Literal["current", "history_only"]
    newest_applied: date
    duration_seconds: float = 0.0
    # Seconds inside the sync's transaction (the database phase), and of its staging COPY alone.
    database_seconds: float = 0.0
    stage_seconds: float = 0.0

    @property
    def rows_written(self) -> int:
        return self.inserted + self.updated + self.deleted + self.revived + self.drifted


# -- the column lists of the write's SQL (identifiers only: values always travel as parameters) --

COLUMNS = ", ".join(DEVICE_COLUMNS)
STAGED = ", ".join(f"s.{c}" for c in DEVICE_COLUMNS)
FROM_HISTORY = ", ".join(f"h.{c}" for c in DEVICE_COLUMNS)
FROM_CURRENT = ", ".join(f"a.{c}" for c in DEVICE_COLUMNS)
