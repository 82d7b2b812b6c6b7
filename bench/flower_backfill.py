"""Wall time and peak memory of a one-year single-run flower backfill through Dagster.

    .venv/bin/python bench/flower_backfill.py [--first 2025-01-01] [--last 2025-12-31]
        [--server-in-process] [--no-dagster-baseline] [--profile FILE]

What runs: the whole ``flower_sync`` job (flower_auction_raw → public_bidding_flowers →
flower_auction_validated → flower_types / flowers / bidding_flowers) as ONE run over the date range
(the range tags of a single-run backfill), in-process executor, against the simulator served over
real HTTP on localhost, into a fresh database on the embedded PostgreSQL (under a temporary
AED_PIPELINE_HOME unless --home is given), with an ephemeral Dagster instance.

The simulator runs in its own process by default (the real API is another machine: its cost is not
the pipeline's); --server-in-process runs it on a thread of the benchmark process instead. Its
clock is fixed two days after --last, so every date is served settled and the run is reproducible.

Printed: the command, wall time of the run, each step's duration (from Dagster's step events),
rows per table, whether the row counts per date match what the simulator serves, whether any
blocking check failed (a failure of the volume check here is a false positive over a normal
simulated year), and the peak RSS of the benchmark process (and of the server process).
Database start-up and schema migration happen before the timer starts.

Baseline in the same run: the same job shape (four steps, six asset keys, the same range) with
trivial assets, i.e. what Dagster's own bookkeeping costs: one planned and one materialisation
event per date and asset key, stored in the instance's event log.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import uuid
import warnings
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _serve(seed: int, today: date, port_queue) -> None:  # runs in the server process
    from aed_pipeline.simulator import Simulator, SimulatorServer

    with SimulatorServer(Simulator(seed=seed, today=today)) as server:
        port_queue.put(server.at_base_url)
        # Serve until the parent terminates this process.
        while True:
            time.sleep(3600)


def _peak_rss_mib(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) / 1024:.0f} MiB"
    except OSError:
        pass
    return "unknown"


def _fresh_database(home: Path) -> str:
    import psycopg

    from aed_pipeline.lib.core.embedded_postgres import ensure_embedded_postgres

    server = ensure_embedded_postgres(home)
    name = f"bench_flower_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)


def _dagster_baseline(first: date, last: date, io_dir: Path) -> float:
    """Wall time of the same run shape with trivial assets (``bench/dagster_floor.py``): four steps,
    six asset keys, one materialisation per date and key with a little metadata, a value per date
    through the IO manager. What Dagster itself costs for this range, whatever the assets do."""
    import dagster as dg
    from dagster_floor import flower_shape_definitions

    from aed_pipeline.defs.at_flower.jobs import partition_range_tags

    started = time.perf_counter()
    result = (
        flower_shape_definitions(io_dir)
        .resolve_job_def("baseline")
        .execute_in_process(tags=partition_range_tags(first, last), instance=dg.DagsterInstance.ephemeral())
    )
    assert result.success
    return time.perf_counter() - started


def _expected_rows(seed: int, today: date, dates: list[date]) -> dict[date, int]:
    from aed_pipeline.simulator import Simulator

    sim = Simulator(seed=seed, today=today)
    return {d: sum(len(sim.flower_rows(d.isoformat(), str(g))) for g in (1, 2, 3, 4)) for d in dates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", type=date.fromisoformat, default=date(2025, 1, 1))
    parser.add_argument("--last", type=date.fromisoformat, default=date(2025, 12, 31))
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--home", type=Path, help="AED_PIPELINE_HOME of the embedded server (default: a temporary one)")
    parser.add_argument("--server-in-process", action="store_true")
    parser.add_argument("--profile", type=Path, help="write cProfile statistics of the run to this file")
    parser.add_argument(
        "--no-dagster-baseline", action="store_true", help="skip the run of trivial assets of the same shape"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    home = args.home or Path(tempfile.mkdtemp(prefix="flowerbench"))
    work = Path(tempfile.mkdtemp(prefix="flowerbench-run"))
    os.environ["AED_PIPELINE_HOME"] = str(home)
    today = args.last + timedelta(days=2)
    dates = [args.first + timedelta(days=n) for n in range((args.last - args.first).days + 1)]

    server_process = None
    in_process_server = None
    if args.server_in_process:
        from aed_pipeline.simulator import Simulator, SimulatorServer

        in_process_server = SimulatorServer(Simulator(seed=args.seed, today=today)).__enter__()
        base_url = in_process_server.at_base_url
    else:
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        server_process = context.Process(target=_serve, args=(args.seed, today, queue), daemon=True)
        server_process.start()
        base_url = queue.get(timeout=60)

    try:
        import dagster as dg
        import sqlalchemy as sa

        from aed_pipeline.defs.at_flower.assets import (
            flower_auction_raw,
            flower_auction_validated,
            public_bidding_flowers,
        )
        from aed_pipeline.defs.at_flower.jobs import flower_sync_job, partition_range_tags
        from aed_pipeline.defs.at_flower.resources import AtFlowerApiResource
        from aed_pipeline.defs.at_flower.tables import flower_tables
        from aed_pipeline.defs.shared.io import PartitionedPickleIOManager
        from aed_pipeline.defs.shared.resources import RawArchiveResource, WarehouseResource

        database_url = _fresh_database(home)
        warehouse = WarehouseResource(database_url=database_url)
        engine = warehouse.engine()  # migrates the schema before the timer starts
        definitions = dg.Definitions(
            assets=[flower_auction_raw, public_bidding_flowers, flower_auction_validated, flower_tables],
            jobs=[flower_sync_job],
            resources={
                "warehouse": warehouse,
                "at_flower_api": AtFlowerApiResource(service_key="bench-key", base_url=base_url),
                "raw_archive": RawArchiveResource(url=str(work / "archive")),
                "io_manager": PartitionedPickleIOManager(base_dir=str(work / "io")),
            },
        )
        job = definitions.resolve_job_def(flower_sync_job.name)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        started = time.perf_counter()
        result = job.execute_in_process(
            tags=partition_range_tags(dates[0], dates[-1]),
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        wall = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(args.profile))
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        print(f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
        print(
            f"range: {dates[0]} … {dates[-1]} ({len(dates)} dates × 4 groups), simulator today {today}, "
            f"server {'in process' if args.server_in_process else 'in its own process'}"
        )
        print(f"run success: {result.success}")
        print(f"wall time of the run: {wall:.1f} s")
        print("step durations:")
        for event in result.all_events:
            if event.event_type_value == "STEP_SUCCESS" or event.event_type_value == "STEP_FAILURE":
                data = event.event_specific_data
                duration = getattr(data, "duration_ms", None)
                shown = f"{duration / 1000:.1f} s" if duration is not None else "failed"
                print(f"  {event.step_key:<28}{shown:>10}")
        failed_checks = [e for e in result.get_asset_check_evaluations() if not e.passed]
        print(f"blocking checks failed: {[e.check_name for e in failed_checks] or 'none'}")
        for evaluation in failed_checks:
            print(f"  {evaluation.check_name}: {evaluation.metadata.get('failed_dates')}")

        with engine.connect() as conn:
            counts = {
                table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in (
                    "public_bidding_flowers",
                    "bidding_flowers",
                    "flower_types",
                    "flowers",
                    "rejected_records",
                )
            }
            served_per_date = dict(
                conn.execute(sa.text("SELECT sale_date, count(*) FROM public_bidding_flowers GROUP BY sale_date")).all()
            )
            synced = conn.execute(
                sa.text("SELECT count(*) FROM sync_runs WHERE table_name = 'bidding_flowers' AND status = 'success'")
            ).scalar_one()
        print("rows: " + ", ".join(f"{table} {n:,}" for table, n in counts.items()))
        print(f"dates synced into bidding_flowers: {synced} of {len(dates)}")
        expected = _expected_rows(args.seed, today, dates)
        mismatched = [d for d in dates if served_per_date.get(d, 0) != expected[d]]
        print(
            f"row counts per date equal to the simulator's: {not mismatched} "
            f"({len(dates) - len(mismatched)}/{len(dates)} dates, {sum(expected.values()):,} rows expected)"
        )
        print(
            f"peak RSS of the benchmark process: {rss_peak / 1024:.0f} MiB "
            f"(before the run: {rss_before / 1024:.0f} MiB)"
        )
        if not args.no_dagster_baseline:
            baseline = _dagster_baseline(dates[0], dates[-1], work / "baseline-io")
            print(f"baseline, Dagster alone (same run shape, trivial assets): {baseline:.1f} s")
    finally:
        if in_process_server is not None:
            in_process_server.__exit__(None, None, None)
        if args.home is None:
            from aed_pipeline.lib.core.embedded_postgres import stop_embedded_postgres

            stop_embedded_postgres(home)
        if server_process is not None:
            print(f"peak RSS of the simulator server process: {_peak_rss_mib(server_process.pid)}")
            server_process.terminate()
            server_process.join(timeout=10)


if __name__ == "__main__":
    main()
