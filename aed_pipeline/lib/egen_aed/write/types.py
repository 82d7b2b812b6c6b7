"""What the AED write's modules share: the diff's verdict, the result, its refusals, the column lists."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from aed_pipeline.lib.core import audit
from aed_pipeline.lib.core.audit import PostWriteCheck
from aed_pipeline.lib.egen_aed.changes import FeedChange
from aed_pipeline.lib.egen_aed.records import DEVICE_COLUMNS

DEFAULT_MISSING_DEVICES_GUARD = 0.05


class SnapshotRejected(Exception):
    """The validated snapshot failed a blocking integrity check and must not be applied."""


class MissingDevicesGuardTripped(Exception):
    """Too many active devices are absent from the snapshot: the sync stopped and wrote nothing."""

    #: The alert the operations code raises for this refusal (``defs/shared/alerting.py``).
    alert_rule = "missing_devices_guard"


#: The job that shows what a sync of a date would write, and the config that makes ``aed_data`` do it.
PLAN_JOB = "aed_sync_plan"


@dataclass(frozen=True)
class GuardVerdict:
    """The missing-devices guard's judgement of a snapshot: ``missing`` of the ``reference`` devices
    (``against`` says which: the active ones, or those the history records on the date) are absent."""

    missing: int
    reference: int
    limit: float
    against: str

    @property
    def share(self) -> float:
        return self.missing / self.reference if self.reference else 0.0

    @property
    def tripped(self) -> bool:
        return self.share > self.limit

    @property
    def guard_that_lets_it_through(self) -> float:
        """The smallest whole percent above the share: a ``missing_devices_guard`` the snapshot passes."""
        return (math.floor(self.share * 100) + 1) / 100

    def describe(self) -> str:
        return (
            f"{self.missing} of {self.reference} {self.against} ({self.share:.1%}) absent, limit {self.limit:.0%}: "
            + ("the sync would refuse the snapshot" if self.tripped else "passes")
        )


def judge_missing_devices(
    missing: int, reference: int, partition: date, limit: float, against: str, *, enforce: bool = True
) -> GuardVerdict:
    """The guard's verdict; a tripped guard stops the write (``enforce``) unless it is only a plan: a
    half-served registry must not retire devices."""
    verdict = GuardVerdict(missing, reference, limit, against)
    if verdict.tripped and enforce:
        raise MissingDevicesGuardTripped(
            f"missing-devices guard: {missing} of {reference} {against} ({verdict.share:.1%}) are absent "
            f"from the e-gen snapshot of {partition}, above the limit of {limit:.0%}; nothing was written. "
            f"To see what the sync would write, the devices it would soft-delete among it, launch the job "
            f"{PLAN_JOB} for partition {partition} (or materialise aed_data alone with config plan: true). "
            f"If the registry really shrank, let it through: re-run aed_data for {partition} with config "
            f"missing_devices_guard: {verdict.guard_that_lets_it_through:g}."
        )
    return verdict


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
class WriteOutcome:
    """What one of the two writes (the newest date's diff, an older date's re-derivation) did: its
    counts, samples, the guard's verdict and the serials it soft-deleted (all of them)."""

    counts: RowCounts
    samples: ChangeSamples
    guard: GuardVerdict
    soft_deleted: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChangeSamples:
    """Samples of what changed, for the materialisation's report."""

    changes: list[FieldChange] = field(default_factory=list)
    drift: list[FieldChange] = field(default_factory=list)
    inserted_examples: list[str] = field(default_factory=list)
    deleted_examples: list[str] = field(default_factory=list)


class PostWriteChecksFailed(audit.PostWriteChecksFailed):
    """A check on ``aed_data`` failed inside the apply's transaction: it was rolled back, nothing was written."""

    def __init__(self, partition: date, checks: tuple[PostWriteCheck, ...]):
        super().__init__("aed_data", partition, checks, unwritten="nothing was written")

    def __reduce__(self):  # pickled with its arguments (Dagster may carry the error between processes)
        return (type(self), (self.partition, self.checks))


@dataclass(frozen=True)
class RetiredDevice:
    """A device a sync would soft-delete, with where it stood (for the plan's report)."""

    equipment_serial: str
    sido: str | None
    gugun: str | None
    jurisdiction_health_center: str | None
    installation_institution: str | None
    installation_address: str | None


@dataclass(frozen=True, kw_only=True)
class AedSyncResult(RowCounts, ChangeSamples):
    """What a sync changed: its counts and samples, and where it went. ``mode`` is ``current``
    (``aed_data`` updated: the newest date) or ``history_only`` (an older date: only its history
    re-derived). A ``planned`` result is what the sync would have written: its transaction was rolled back.

    ``feed_counts`` are the change feed's rows of the dates the write touches, by type (a backfill
    re-derives its date and the next applied one); ``checks`` the post-write checks judged before
    COMMIT. A plan also has the feed's rows (``feed``) and every device it would soft-delete.
    """

    mode: Literal["current", "history_only"]
    newest_applied: date
    planned: bool = False
    guard: GuardVerdict | None = None
    checks: tuple[PostWriteCheck, ...] = ()
    feed_counts: dict[date, dict[str, int]] = field(default_factory=dict)
    feed: tuple[FeedChange, ...] = ()
    soft_deleted: tuple[RetiredDevice, ...] = ()
    duration_seconds: float = 0.0
    # Seconds inside the sync's transaction (the database phase), and of its staging COPY alone.
    database_seconds: float = 0.0
    stage_seconds: float = 0.0

    @property
    def rows_written(self) -> int:
        return self.inserted + self.updated + self.deleted + self.revived + self.drifted

    @property
    def checks_passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def active_rows(self) -> int:
        """The active rows of ``aed_data`` after the write, as the post-write checks counted them."""
        return next((int(c.figures["active_rows"]) for c in self.checks if "active_rows" in c.figures), 0)


# -- the column lists of the write's SQL (identifiers only: values always travel as parameters) --

COLUMNS = ", ".join(DEVICE_COLUMNS)
STAGED = ", ".join(f"s.{c}" for c in DEVICE_COLUMNS)
FROM_HISTORY = ", ".join(f"h.{c}" for c in DEVICE_COLUMNS)
FROM_CURRENT = ", ".join(f"a.{c}" for c in DEVICE_COLUMNS)
