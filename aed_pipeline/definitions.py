"""The Dagster code location: every definition under ``aed_pipeline/defs/``."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """Load the defs folder (one sub-folder per source, plus ``shared/``)."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
