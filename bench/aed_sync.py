"""Wall time and peak memory of materialising one full AED partition through Dagster, and of an unchanged day.

    .venv/bin/python bench/aed_sync.py [--aed-count 81464] [--today 2026-01-01]

The simulator runs as a real HTTP server in its own process (`aed-pipeline simulator serve --today`),
pinned to 2026-01-01, the date on which it serves exactly 81,464 devices. The warehouse is a fresh
database on the embedded PostgreSQL; the archive and IO-manager files go to a temporary folder.
Each mode runs in a fresh child process (peak RSS is the child's alone):

* `baseline`: imports the pipeline and builds the resources, materialises nothing;
* `full`:     aed_raw_snapshot → aed_validated → aed_data for the date, from an empty database;
* `unchanged`: the same partition again (the archived snapshot is reused; zero rows written).

Per-step seconds come from Dagster's own step events.
"""

from __future__ import annotations

import argparse
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
from egen_fetch import _free_port, _wait_for  # noqa: E402 - the sibling benchmark's server helpers

MODES = ("baseline", "full", "unchanged")


def _child(mode: str, base_url: str, database_url: str, work: str, day: str) -> None:
    import dagster as dg

    from aed_pipeline.defs.egen_aed.assets import aed_data, aed_raw_snapshot, aed_validated
    from aed_pipeline.defs.shared.io import PartitionedPickleIOManager
    from aed_pipeline.defs.shared.resources import EgenApiResource, RawArchiveResource, WarehouseResource

    resources = {
        "warehouse": WarehouseResource(database_url=database_url),
        "egen_api": EgenApiResource(service_key="bench-key", base_url=base_url),
        "raw_archive": RawArchiveResource(url=f"{work}/archive"),
        "io_manager": PartitionedPickleIOManager(base_dir=f"{work}/io"),
    }
    resources["warehouse"].engine()  # migrations are not part of a sync
    started = time.perf_counter()
    steps: dict[str, float] = {}
    rows: dict[str, int] = {}
    if mode != "baseline":
        result = dg.materialize([aed_raw_snapshot, aed_validated, aed_data], partition_key=day, resources=resources)
        for event in result.all_events:
            if event.event_type_value == "STEP_SUCCESS":
                steps[event.step_key] = event.event_specific_data.duration_ms / 1000
        meta = {k: v.value for k, v in result.asset_materializations_for_node("aed_data")[0].metadata.items()}
        rows = {k: meta[k] for k in ("inserted", "updated", "deleted", "unchanged")}
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "wall_s": wall, "steps": steps, "rows": rows, "rss_peak_mib": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aed-count", type=int, default=81464)
    parser.add_argument("--today", default="2026-01-01")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.base_url, args.database_url, args.work, args.today)
        return

    import psycopg

    from aed_pipeline.lib.embedded_postgres import ensure_embedded_postgres, stop_embedded_postgres

    work = Path(tempfile.mkdtemp(prefix="aed_bench_"))
    os.environ["AED_PIPELINE_HOME"] = str(work / "home")
    server_pg = ensure_embedded_postgres(work / "home")
    database = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_pg.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    port = _free_port()
    cli = Path(sys.executable).parent / "aed-pipeline"
    server = subprocess.Popen(
        [str(cli), "simulator", "serve", "--port", str(port), "--aed-count", str(args.aed_count),
         "--today", args.today],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(port)
        base_url = f"http://127.0.0.1:{port}/B552657/AEDInfoInqireService"
        print(f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
        print(f"{'mode':<10}{'wall s':>8}{'raw s':>8}{'valid s':>9}{'data s':>8}{'inserted':>10}{'unchanged':>11}"
              f"{'rss peak MiB':>14}")
        for mode in MODES:
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--base-url", base_url,
                 "--database-url", server_pg.url(database), "--work", str(work), "--today", args.today],
                capture_output=True, text=True, check=True, env=os.environ,
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            s, rows = r["steps"], r["rows"]
            print(f"{r['mode']:<10}{r['wall_s']:>8.2f}{s.get('aed_raw_snapshot', 0):>8.2f}"
                  f"{s.get('aed_validated', 0):>9.2f}{s.get('aed_data', 0):>8.2f}{rows.get('inserted', 0):>10}"
                  f"{rows.get('unchanged', 0):>11}{r['rss_peak_mib']:>14.1f}")
    finally:
        server.terminate()
        server.wait(timeout=10)
        stop_embedded_postgres(work / "home")


if __name__ == "__main__":
    main()
