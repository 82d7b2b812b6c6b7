"""Wall time and peak memory of materialising one full AED partition through Dagster, an unchanged day, and the floor.

    .venv/bin/python bench/aed_sync.py [--aed-count 81464] [--today 2026-01-01]
    .venv/bin/python bench/aed_sync.py --aed-count 814640      # also runs 81,464 and prints the 10x ratios

The simulator runs as a real HTTP server in its own process (`aed-pipeline simulator serve --today`),
pinned to 2026-01-01, the date on which it serves exactly `--aed-count` devices. The warehouse is a
fresh database on the embedded PostgreSQL; the archive, the validated rows and the IO-manager files
go to a temporary folder. Each mode runs in a fresh child process (peak RSS is the child's alone):

* `baseline`:  imports the pipeline and builds the resources, materialises nothing;
* `full`:      aed_raw_snapshot → aed_validated → aed_data for the date, from an empty database;
* `unchanged`: the same partition again (the archived snapshot is reused; zero rows written);
* `daily`:     the next date's partition (a second simulator server, pinned to the day after): the
               simulator's day-to-day changes (~0.2 % of the devices edited, a few added and removed);
* `floor`:     the same validated rows loaded the least costly way (`bench/aed_floor.py`): a psycopg
               COPY into a temporary table plus one INSERT … ON CONFLICT DO UPDATE … WHERE … IS
               DISTINCT FROM into an empty copy of aed_data; then the same again (an unchanged day),
               then the next date's rows (a daily diff). The rows are read before the clock starts.

Per-step seconds come from Dagster's own step events; `db s` is the time inside `apply_snapshot`'s
transaction (staging COPY, guard, diff, closed versions, sync log; reported by aed_data as
`database_seconds`); `server cpu s` is the simulator process's CPU time while the mode ran (the
share of `raw s` that is the outside world generating and serving its pages).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from egen_fetch import _free_port, _wait_for

MODES = ("baseline", "full", "unchanged", "daily", "floor")
REFERENCE_COUNT = 81464


def _child(
    mode: str, base_url: str, database_url: str, work: str, day: str, rows_file: str | None, next_rows_file: str | None
) -> None:
    if mode == "floor":
        from aed_floor import measure_floor

        from aed_pipeline.lib.egen_aed.rows import read_device_rows

        rows = list(read_device_rows(rows_file))
        next_rows = list(read_device_rows(next_rows_file)) if next_rows_file else None
        figures = measure_floor(database_url.replace("postgresql+psycopg://", "postgresql://"), rows, next_rows)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"mode": mode, "rows": len(rows), **figures, "rss_peak_mib": peak}))
        return

    import dagster as dg

    from aed_pipeline.defs.egen_aed.assets import aed_data, aed_raw_snapshot, aed_validated
    from aed_pipeline.defs.egen_aed.resources import EgenApiResource
    from aed_pipeline.defs.shared.io import PartitionedPickleIOManager
    from aed_pipeline.defs.shared.resources import RawArchiveResource, WarehouseResource

    resources = {
        "warehouse": WarehouseResource(database_url=database_url),
        "egen_api": EgenApiResource(service_key="bench-key", base_url=base_url),
        "raw_archive": RawArchiveResource(url=f"{work}/archive"),
        "io_manager": PartitionedPickleIOManager(base_dir=f"{work}/io"),
    }
    resources["warehouse"].engine()  # migrations are not part of a sync
    started = time.perf_counter()
    steps: dict[str, float] = {}
    data: dict[str, object] = {}
    if mode != "baseline":
        result = dg.materialize([aed_raw_snapshot, aed_validated, aed_data], partition_key=day, resources=resources)
        for event in result.all_events:
            if event.event_type_value == "STEP_SUCCESS":
                steps[event.step_key] = event.event_specific_data.duration_ms / 1000
        meta = {k: v.value for k, v in result.asset_materializations_for_node("aed_data")[0].metadata.items()}
        validated = {k: v.value for k, v in result.asset_materializations_for_node("aed_validated")[0].metadata.items()}
        data = {
            k: meta[k]
            for k in (
                "inserted",
                "updated",
                "deleted",
                "revived",
                "unchanged",
                "database_seconds",
                "staging_copy_seconds",
            )
        }
        data["valid"] = validated["dagster/row_count"]
        data["rows_file"] = validated["rows_file"]
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "wall_s": wall, "steps": steps, **data, "rss_peak_mib": peak}))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def run_set(count: int, day: str) -> dict[str, dict]:
    """All modes for one registry size, on a fresh database, archive and simulator; prints its rows."""
    import psycopg

    from aed_pipeline.lib.core.embedded_postgres import ensure_embedded_postgres, stop_embedded_postgres

    work = Path(tempfile.mkdtemp(prefix="aed_bench_"))
    # The AED partitions begin at the archive's first date: the benchmark's dates are fixed instead.
    env = {**os.environ, "AED_PIPELINE_HOME": str(work / "home"), "AED_PIPELINE_AED_START_DATE": day}
    server_pg = ensure_embedded_postgres(work / "home")
    database = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_pg.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    cli = Path(sys.executable).parent / "aed-pipeline"
    next_day = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    servers, ports = [], []
    for served in (day, next_day):  # the simulator of the date, and of the day after it (mode daily)
        ports.append(_free_port())
        servers.append(
            subprocess.Popen(
                [
                    str(cli),
                    "simulator",
                    "serve",
                    "--port",
                    str(ports[-1]),
                    "--aed-count",
                    str(count),
                    "--today",
                    served,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    results: dict[str, dict] = {}
    try:
        for port in ports:
            _wait_for(port)
        for mode in MODES:
            daily = mode == "daily"
            server = servers[daily]
            base_url = f"http://127.0.0.1:{ports[daily]}/B552657/AEDInfoInqireService"
            command = [
                sys.executable,
                __file__,
                "--child",
                mode,
                "--base-url",
                base_url,
                "--database-url",
                server_pg.url(database),
                "--work",
                str(work),
                "--today",
                next_day if daily else day,
            ]
            if mode == "floor":
                command += [
                    "--rows-file",
                    results["full"]["rows_file"],
                    "--next-rows-file",
                    results["daily"]["rows_file"],
                ]
            server_cpu = _cpu_seconds(server.pid)
            load = _load()
            out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
            r = json.loads(out.strip().splitlines()[-1])
            r["server_cpu_s"] = _cpu_seconds(server.pid) - server_cpu
            r["load"] = load
            results[mode] = r
            _print_row(count, r)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
        stop_embedded_postgres(work / "home")
    floor, full = results["floor"], results["full"]
    print(
        f"{count:>8}  floor: COPY {floor['copy_s']:.2f} s + upsert {floor['upsert_s']:.2f} s = {floor['floor_s']:.2f} s "
        f"({floor['rows'] / floor['floor_s']:,.0f} rows/s); sync database phase {full['database_seconds']:.2f} s "
        f"(staging COPY {full['staging_copy_seconds']:.2f} s) = {full['database_seconds'] / floor['floor_s']:.2f}x the floor"
    )
    unchanged = results["unchanged"]
    print(
        f"{count:>8}  unchanged day: floor (COPY + upsert writing nothing) {floor['unchanged_floor_s']:.2f} s; "
        f"sync database phase {unchanged['database_seconds']:.2f} s = "
        f"{unchanged['database_seconds'] / floor['unchanged_floor_s']:.2f}x"
    )
    daily = results["daily"]
    written = sum(daily[k] for k in ("inserted", "updated", "deleted", "revived"))
    print(
        f"{count:>8}  daily diff ({written} devices written): floor (COPY + upsert of the next day's rows) "
        f"{floor['daily_floor_s']:.2f} s; sync database phase {daily['database_seconds']:.2f} s = "
        f"{daily['database_seconds'] / floor['daily_floor_s']:.2f}x"
    )
    return results


HEADER = (
    f"{'devices':>8}  {'mode':<10}{'wall s':>8}{'raw s':>7}{'server cpu s':>13}{'valid s':>8}{'data s':>7}"
    f"{'db s':>6}{'rows/s':>9}{'written':>9}{'unchanged':>10}{'rss peak MiB':>13}  load (1/5/15 min)"
)


def _print_row(count: int, r: dict) -> None:
    if r["mode"] == "floor":
        print(
            f"{count:>8}  {'floor':<10}{r['floor_s']:>8.2f}{'':>7}{'':>13}{'':>8}{'':>7}{r['floor_s']:>6.2f}"
            f"{r['rows'] / r['floor_s']:>9,.0f}{r['rows']:>9}{'':>10}{r['rss_peak_mib']:>13.1f}  {r['load']}"
        )
        return
    s = r["steps"]
    written = sum(r.get(k, 0) for k in ("inserted", "updated", "deleted", "revived"))
    db = r.get("database_seconds", 0.0)
    rate = f"{r['valid'] / db:>9,.0f}" if db else f"{'':>9}"
    print(
        f"{count:>8}  {r['mode']:<10}{r['wall_s']:>8.2f}{s.get('aed_raw_snapshot', 0):>7.2f}{r['server_cpu_s']:>13.2f}"
        f"{s.get('aed_validated', 0):>8.2f}{s.get('aed_data', 0):>7.2f}{db:>6.2f}{rate}{written:>9}"
        f"{r.get('unchanged', 0):>10}{r['rss_peak_mib']:>13.1f}  {r['load']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--aed-count",
        type=int,
        default=REFERENCE_COUNT,
        help=f"devices served; another count than {REFERENCE_COUNT} also runs {REFERENCE_COUNT} and "
        "prints the ratios against it",
    )
    parser.add_argument("--today", default="2026-01-01")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", help=argparse.SUPPRESS)
    parser.add_argument("--next-rows-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.base_url, args.database_url, args.work, args.today, args.rows_file, args.next_rows_file)
        return

    print(f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
    print(HEADER)
    counts = [REFERENCE_COUNT] if args.aed_count == REFERENCE_COUNT else [REFERENCE_COUNT, args.aed_count]
    sets = {count: run_set(count, args.today) for count in counts}
    if len(counts) == 2:
        small, large = sets[REFERENCE_COUNT], sets[args.aed_count]
        scale = args.aed_count / REFERENCE_COUNT
        print(f"\n{args.aed_count} vs {REFERENCE_COUNT} devices ({scale:g}x the data):")
        for mode in ("full", "unchanged", "daily"):
            print(
                f"  {mode:<10} time {large[mode]['wall_s'] / small[mode]['wall_s']:.2f}x   "
                f"peak memory {large[mode]['rss_peak_mib'] / small[mode]['rss_peak_mib']:.2f}x   "
                f"database phase {large[mode]['database_seconds'] / small[mode]['database_seconds']:.2f}x"
            )
        print(f"  {'floor':<10} time {large['floor']['floor_s'] / small['floor']['floor_s']:.2f}x")


if __name__ == "__main__":
    main()
