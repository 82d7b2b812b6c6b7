"""The AED partitions: one per KST date, from where the archive begins up to today.

The registry can only be fetched for today, so its newest partition is today's KST date, and an
earlier date can only be re-derived from its archived snapshot. Unless ``AED_PIPELINE_AED_START_DATE``
says otherwise (the tests set it), the first partition is the first date archived complete
(:func:`aed_pipeline.lib.egen_aed.fetch.first_partition`), today's on a fresh install: every
partition a user sees can succeed.
"""

from aed_pipeline.defs.shared.partitions import kst_daily_partitions
from aed_pipeline.lib.core import settings
from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.lib.egen_aed.fetch import first_partition

AED_START_DATE_ENV = "AED_PIPELINE_AED_START_DATE"


def first_archived_date() -> str:
    """The first date of the configured archive whose e-gen snapshot is complete, else today (KST)."""
    return first_partition(RawArchive(settings.archive_url())).isoformat()


# The start is read when the code location loads: a reload (or a restart of `dg dev`) picks up a
# newly archived earlier date.
aed_daily_partitions = kst_daily_partitions(AED_START_DATE_ENV, first_archived_date)
