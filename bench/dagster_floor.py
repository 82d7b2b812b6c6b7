"""Dagster's own floor: trivial assets of the same run shapes as the two sources, as a code location.

    .venv/bin/dagster asset materialize -f bench/dagster_floor.py --select 'group:floor_aed' --partition 2026-01-01
    .venv/bin/dagster asset materialize -f bench/dagster_floor.py --select 'group:floor_flowers' \\
        --partition-range 2025-01-01...2025-12-31

``bench/user_path.py`` runs both through the same CLI, instance and executor as the user's path, so
the difference between a user's run and this one is what the pipeline's own work costs:

* ``group:floor_aed``: three daily-partitioned assets in a chain like the AED group (``floor_raw`` →
  ``floor_validated``, with as many blocking checks as ``aed_validated`` → ``floor_data``, with as
  many as ``aed_data``), a small value passed through the project's IO manager, one partition per run;
* ``group:floor_flowers``: the flower run shape of ``bench/flower_backfill.py``'s "Dagster alone"
  baseline (four steps, six asset keys, one run over a range, a materialisation with a little
  metadata per date and key).

The module imports only Dagster and the project's IO manager, so the CLI's import and load of this
code location is Dagster's alone. The executor is the project's default (in process).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from aed_pipeline.defs.shared.io import PartitionedPickleIOManager

KST = "Asia/Seoul"
# The counts of blocking checks of aed_validated (BLOCKING_CHECKS) and aed_data (POST_WRITE_CHECKS);
# written out, since importing them would import the pipeline this floor is measured without.
AED_VALIDATED_CHECKS = 6
AED_DATA_CHECKS = 3

aed_shape_partitions = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone=KST, end_offset=1)
flower_shape_partitions = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone=KST, end_offset=1)


def aed_shape_assets() -> list[dg.AssetsDefinition]:
    """``floor_raw`` → ``floor_validated`` → ``floor_data``, one partition per run, with blocking checks."""
    shape = {
        "partitions_def": aed_shape_partitions,
        "group_name": "floor_aed",
        "backfill_policy": dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
    }
    validated_checks = [f"check_{n}" for n in range(AED_VALIDATED_CHECKS)]
    data_checks = [f"check_{n}" for n in range(AED_DATA_CHECKS)]

    @dg.asset(name="floor_raw", **shape)
    def raw(context):  # no annotations: the signatures stay plain for Dagster's introspection
        return dg.MaterializeResult(metadata={"pages": 17, "source": "floor"})

    @dg.asset(
        name="floor_validated",
        deps=[raw],
        check_specs=[dg.AssetCheckSpec(name, asset="floor_validated", blocking=True) for name in validated_checks],
        **shape,
    )
    def validated(context):
        for name in validated_checks:
            yield dg.AssetCheckResult(check_name=name, passed=True)
        yield dg.Output({"rows_file": "floor"}, metadata={"dagster/row_count": 1})

    @dg.asset(
        name="floor_data",
        check_specs=[dg.AssetCheckSpec(name, asset="floor_data", blocking=True) for name in data_checks],
        **shape,
    )
    def data(context, floor_validated):
        for name in data_checks:
            yield dg.AssetCheckResult(check_name=name, passed=True)
        yield dg.MaterializeResult(metadata={"inserted": 0, "updated": 0})

    return [raw, validated, data]


def flower_shape_assets(group_name: str | None = "floor_flowers") -> list[dg.AssetsDefinition]:
    """The flower run shape: four steps, six asset keys, one run over a range of dates, one
    materialisation per date and key with a little metadata, a value per date through the IO manager."""
    shape = {
        "partitions_def": flower_shape_partitions,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "group_name": group_name,
    }

    def tag_every_date(context, asset_key=None) -> None:
        extra = {"asset_key": asset_key} if asset_key else {}
        for key in context.partition_keys:
            context.add_asset_metadata({"dagster/row_count": 1, "source": "baseline"}, partition_key=key, **extra)

    @dg.asset(name="baseline_raw", **shape)
    def raw(context):
        tag_every_date(context)
        return dg.MaterializeResult()

    @dg.asset(name="baseline_public", deps=[raw], **shape)
    def public(context):
        tag_every_date(context)
        return dg.MaterializeResult()

    @dg.asset(name="baseline_validated", deps=[public], **shape)
    def validated(context):
        tag_every_date(context)
        return dg.MaterializeResult(value={key: key for key in context.partition_keys})

    @dg.multi_asset(
        name="baseline_tables",
        specs=[
            dg.AssetSpec(f"baseline_{name}", deps=[validated], group_name=group_name)
            for name in ("types", "flowers", "bidding")
        ],
        ins={"rows": dg.AssetIn("baseline_validated")},
        partitions_def=flower_shape_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def tables(context, rows):
        for name in ("types", "flowers", "bidding"):
            tag_every_date(context, dg.AssetKey(f"baseline_{name}"))
            yield dg.MaterializeResult(asset_key=f"baseline_{name}")

    return [raw, public, validated, tables]


def flower_shape_definitions(io_dir: Path | None = None) -> dg.Definitions:
    """The flower shape alone, with a job ``baseline`` over it (``bench/flower_backfill.py``)."""
    job = dg.define_asset_job("baseline", partitions_def=flower_shape_partitions, executor_def=dg.in_process_executor)
    return dg.Definitions(
        assets=flower_shape_assets(),
        jobs=[job],
        resources={"io_manager": PartitionedPickleIOManager(base_dir=str(io_dir) if io_dir else None)},
    )


# The code location of the CLI runs: both shapes, the project's default executor and IO manager.
defs = dg.Definitions(
    assets=[*aed_shape_assets(), *flower_shape_assets()],
    executor=dg.in_process_executor,
    resources={"io_manager": PartitionedPickleIOManager()},
)
