"""The Dagster code location: every definition under ``aed_pipeline/defs/``."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """Load the defs folder (one sub-folder per source, plus ``shared/``)."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)


def environment_resources() -> Mapping[str, Any]:
    """Every resource of the code location as the environment configures it now, shared and
    per source alike (each folder registers its own), for tests and scripts outside a run."""
    return defs().resources or {}
