"""What the flower assets share to report their runs: the flower groups by name, the note of a
day without an auction, frame examples. The source-neutral helpers (run dates, run summaries,
markdown tables) are in :mod:`aed_pipeline.defs.shared.metadata`. No definitions live here."""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import pandas as pd

from aed_pipeline.defs.shared.metadata import markdown_table
from aed_pipeline.lib.at_flower.calendar import non_auction_reason, weekday_name
from aed_pipeline.lib.at_flower.client import FLOWER_GUBN_NAMES
from aed_pipeline.lib.at_flower.fetch import ArchivedFlowerDay
from aed_pipeline.lib.core.display import NONE, shown

#: Rows shown as examples in a check's or a table's metadata.
EXAMPLES = 5


def group_names() -> list[str]:
    return [FLOWER_GUBN_NAMES[gubn] for gubn in sorted(FLOWER_GUBN_NAMES)]


def by_group_name(counts: Mapping[int, int]) -> dict[str, int]:
    return {FLOWER_GUBN_NAMES[gubn]: int(counts.get(gubn, 0)) for gubn in sorted(FLOWER_GUBN_NAMES)}


def no_auction_note(day: ArchivedFlowerDay) -> str:
    """Why an archived day has no rows (a Sunday, a holiday, or nothing served on a weekday); empty when it has rows."""
    reason = non_auction_reason(day.sale_date)
    if day.rows == 0:
        return f"no auction ({reason})" if reason else f"no rows served on a {weekday_name(day.sale_date)}"
    return ""


def examples(frame: pd.DataFrame) -> dg.MetadataValue:
    """The first :data:`EXAMPLES` rows of ``frame`` as a markdown table (a missing value as ``∅``), or ``none``."""
    head = frame.head(EXAMPLES)
    rows = [[shown(value) for value in row] for row in head.itertuples(index=False, name=None)]
    if not rows:
        return dg.MetadataValue.text(NONE)  # plain text: the UI hides markdown behind a click
    return dg.MetadataValue.md(markdown_table([str(c) for c in head.columns], rows))
