"""The registry of sources: every API the platform syncs, as the operations code iterates over them."""

from __future__ import annotations

from aed_pipeline.lib.at_flower.source import AT_FLOWER
from aed_pipeline.lib.egen_aed.source import EGEN_AED
from aed_pipeline.lib.ops.source import Source

SOURCES: tuple[Source, ...] = (EGEN_AED, AT_FLOWER)
