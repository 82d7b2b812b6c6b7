"""Is the newest partition in by its deadline? The rule behind the freshness sensor.

Open-source Dagster shows a ``FreshnessPolicy`` in the UI but sends no alert of its own, so the
platform's sensor asks, for each watched table, which KST date must be materialised by now and
alerts when it is not. Each source of the registry says which asset, by when, and on which days
(``lib/ops/source.py``): AED data every day by 07:00 KST; the flower prices by a configurable time,
on auction days only (a Sunday or a public holiday has no sale to wait for). A table is judged only
from its first successful sync on: a fresh install owes nothing yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from aed_pipeline.lib.core import settings
from aed_pipeline.lib.core.kst import KST
from aed_pipeline.lib.ops.source import Source

# How far back to look for the newest expected date (a run of holidays such as 설날 or 추석 is shorter).
_LOOKBACK_DAYS = 14


@dataclass(frozen=True)
class FreshnessRule:
    """A table that must hold the partition of each expected KST date by ``deadline`` (KST) that day."""

    asset: str
    deadline: time
    not_expected_because: Callable[[date], str | None]

    def due_partition(self, now: datetime) -> date | None:
        """The newest KST date whose deadline has passed by ``now`` and on which data is expected."""
        moment = now.astimezone(KST)
        day = moment.date() if moment.time() >= self.deadline else moment.date() - timedelta(days=1)
        for _ in range(_LOOKBACK_DAYS):
            if self.not_expected_because(day) is None:
                return day
            day -= timedelta(days=1)
        return None

    def judged_partition(self, now: datetime, first_synced: datetime | None) -> date | None:
        """The due partition (:meth:`due_partition`) when the table is judged on it: only from its
        first successful sync (``first_synced``) on. A table never synced (a fresh install) owes
        nothing, nor does a date whose deadline had passed before the table was first synced."""
        if first_synced is None:
            return None
        due = self.due_partition(now)
        if due is None or self.deadline_of(due) < first_synced:
            return None
        return due

    def deadline_of(self, day: date) -> datetime:
        return datetime.combine(day, self.deadline, tzinfo=KST)


def parse_deadline(text: str) -> time:
    """A KST wall-clock deadline written ``HH:MM``; a clear error names the expected form."""
    try:
        return time.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"a freshness deadline is a KST time written HH:MM (e.g. 08:00), not {text!r}") from None


def freshness_rule(source: Source, deadline: time | None = None) -> FreshnessRule:
    """The rule for ``source``'s fresh asset: ``deadline``, else its variable (``HH:MM``) when set,
    else its default deadline."""
    if deadline is None:
        configured = settings.env_or_none(source.deadline_env) if source.deadline_env else None
        deadline = parse_deadline(configured) if configured else source.deadline
    return FreshnessRule(source.fresh_asset, deadline, source.not_expected_because)
