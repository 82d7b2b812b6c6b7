"""Values written for people: a missing value reads ∅, in the AED and the flower check examples alike."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd

from aed_pipeline.defs.at_flower.reporting import examples
from aed_pipeline.lib.core.display import MISSING, NONE, listed, shown
from aed_pipeline.lib.egen_aed.checks import (
    KEY_COLUMNS,
    SnapshotTally,
    check_inside_korea,
    check_region_pairs,
    check_unique_serials,
)


def test_every_kind_of_missing_value_is_shown_as_the_empty_set_sign():
    for missing in (None, float("nan"), np.float64("nan"), pd.NA, pd.NaT, "", "  "):
        assert shown(missing) == MISSING == "∅"
    assert [shown(v) for v in (0, "특1", 12.5, np.int64(3))] == ["0", "특1", "12.5", "3"]


def test_devices_without_coordinates_are_examples_with_empty_set_coordinates():
    frame = pd.DataFrame({column: ["x", "x"] for column in KEY_COLUMNS})
    frame["equipment_serial"] = ["A-1", "A-2"]
    frame["latitude"] = [np.nan, 10.0]
    frame["longitude"] = [np.nan, 200.0]
    frame["sido"], frame["gugun"] = ["서울특별시", "서울특별시"], ["종로구", "종로구"]
    tally = SnapshotTally(known_pairs=set())
    tally.add(frame)
    assert tally.outside_examples == ["A-1 (∅, ∅)", "A-2 (10.0, 200.0)"]


def test_flower_check_examples_show_missing_cells_as_the_empty_set_sign():
    frame = pd.DataFrame({"품목": ["장미", None], "등급": ["", "상"], "avg": [np.nan, 1200.0]})
    table = examples(frame).value
    assert table.splitlines()[2:] == ["| 장미 | ∅ | ∅ |", "| ∅ | 상 | 1200.0 |"]
    assert "nan" not in table and "None" not in table


def test_flower_checks_without_examples_say_none_as_plain_text():
    """Markdown would sit behind a "Show Markdown" link in the UI for a single word."""
    none = examples(pd.DataFrame({"품목": []}))
    assert isinstance(none, dg.TextMetadataValue) and none.value == NONE


def test_aed_checks_without_examples_say_none_instead_of_a_blank_cell():
    frame = pd.DataFrame({column: ["x"] for column in KEY_COLUMNS})
    frame["equipment_serial"] = ["A-1"]
    frame["latitude"], frame["longitude"] = [37.57], [126.98]
    frame["sido"], frame["gugun"] = ["서울특별시"], ["종로구"]
    tally = SnapshotTally(known_pairs={("서울특별시", "종로구")})
    tally.add(frame)
    figures = tally.figures()
    outcomes = [
        check_unique_serials(figures),
        check_inside_korea(figures, 0.95),
        check_region_pairs(figures, 0.01),
    ]
    assert all(o.passed for o in outcomes)
    assert [o.metadata["examples"] for o in outcomes] == [NONE, NONE, NONE]
    assert listed(["A-1 ×2", "B-7 ×3"], ", ") == "A-1 ×2, B-7 ×3"
