"""The IO manager passing values between the steps of a run, one pickle per asset partition.

Dagster's built-in filesystem IO manager stores one partition per output and refuses the output of
a run over a range of partitions (a single-run backfill). This one takes, for a run over several
partitions, a dict keyed by partition key, and gives the downstream step the same dict back; for a
run over one partition it stores and returns the value itself.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import dagster as dg

from aed_pipeline.lib.core import settings
from aed_pipeline.lib.core.files import AtomicFile


class PartitionedPickleIOManager(dg.ConfigurableIOManager):
    """Pickles under ``base_dir`` (default ``$AED_PIPELINE_HOME/io``), one file per partition."""

    base_dir: str | None = None

    def _root(self) -> Path:
        return Path(self.base_dir).expanduser() if self.base_dir else settings.pipeline_home() / "io"

    def _path(self, asset_key: dg.AssetKey, partition_key: str | None) -> Path:
        folder = self._root().joinpath(*asset_key.path)
        return folder / f"{partition_key or '__unpartitioned__'}.pickle"

    @staticmethod
    def _partition_keys(context: dg.OutputContext | dg.InputContext) -> list[str | None]:
        return list(context.asset_partition_keys) if context.has_asset_partitions else [None]

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        keys = self._partition_keys(context)
        if len(keys) == 1:
            single = isinstance(obj, dict) and set(obj) == {keys[0]} and keys[0] is not None
            values = obj if single else {keys[0]: obj}
        else:
            if not isinstance(obj, dict) or set(obj) != set(keys):
                raise TypeError(
                    f"{context.asset_key.to_user_string()} ran over {len(keys)} partitions and must return "
                    "a dict with one value per partition key"
                )
            values = obj
        for key, value in values.items():
            with AtomicFile(self._path(context.asset_key, key)) as file, file.temporary.open("wb") as handle:
                pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)

    def load_input(self, context: dg.InputContext) -> Any:
        asset_key = context.upstream_output.asset_key if context.upstream_output else context.asset_key
        keys = self._partition_keys(context)
        values = {}
        for key in keys:
            path = self._path(asset_key, key)
            if not path.exists():
                raise FileNotFoundError(
                    f"{asset_key.to_user_string()} has no stored value for partition {key}: materialise it first"
                )
            with path.open("rb") as handle:
                values[key] = pickle.load(handle)
        return values[keys[0]] if len(keys) == 1 else values


def per_partition(partition_keys: list[str], loaded: Any) -> dict[str, Any]:
    """What the IO manager loaded, as ``{partition key: value}`` whether the run has one key or many."""
    if len(partition_keys) == 1:
        return {partition_keys[0]: loaded}
    return dict(loaded)
