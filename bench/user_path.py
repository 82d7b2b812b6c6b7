"""The user's path (`dagster asset materialize`) against the floors and dlt, in ratios from one run.

    .venv/bin/python bench/user_path.py [--aed-count 81464] [--today 2026-01-01] [--flower-year | --only-flower-year]
        [--ui] [--json FILE] [--keep]

Everything runs in one run on one machine, on one simulator server per served date (each its own
process, `aed-pipeline simulator serve`) and one embedded PostgreSQL (a fresh database), so that
every figure can be read as a ratio to a floor measured beside it (issue 16's targets):

* **the user's path**: the CLI as a user types it, a subprocess, ``.venv/bin/dagster asset materialize
  -m aed_pipeline.definitions --select <the AED assets> --partition DATE`` with ``DAGSTER_HOME`` a
  temporary copy of the committed dev instance ``.dagster_home/dagster.yaml`` and the environment of
  the README's variables (``AED_PIPELINE_HOME``, ``AED_PIPELINE_DATABASE_URL``, ``EGEN_BASE_URL`` and
  ``EGEN_SERVICE_KEY`` of the simulator server): ``full`` (day 1, empty database), ``next day`` (day 2,
  a second server pinned to the day after: the simulator's ordinary daily changes), ``unchanged``
  (day 2 again: the archived snapshot reused, nothing written). Per-step seconds come from the run's
  event log in that instance (STEP_START → STEP_SUCCESS); the run's own span from RUN_START →
  RUN_SUCCESS; the rest of the wall time is the CLI process before the run starts (Python, Dagster's
  CLI, importing and loading the code location, creating the run) and after it ends. Peak RSS is the
  CLI process's (GNU ``time``'s ``%M``).
* **the floors**: ``download``: every ``getAedFullDown`` page fetched with httpx, bodies read, nothing
  parsed; ``parse``: the archived pages of day 1 read (gzip) and parsed with ``lxml.etree.fromstring``,
  each item's fields walked into per-column lists; ``database`` (``bench/aed_floor.py``): COPY + one
  ``INSERT … ON CONFLICT … IS DISTINCT FROM`` of day 1's validated rows (full), the same again
  (unchanged), day 2's rows over them (that day's diff); ``dagster``: the same CLI, instance and
  executor materialising three trivial daily-partitioned assets in a chain (``bench/dagster_floor.py``,
  one partition).
* **the peer**: dlt's ``merge`` (postgres destination, primary key ``equipment_serial``) of day 1's
  validated rows into the same PostgreSQL, full then unchanged; the ``pipeline.run`` alone is timed
  (rows already in memory, no fetch, no validation, no history).
* ``--aed-count N`` (e.g. 814640) runs 81,464 first, then N, and prints the time and peak memory
  ratios; ``--flower-year`` adds the one-year flower backfill through the user's path (``--select
  group:flowers --partition-range FIRST...LAST``: one run, the single-run backfill policy) against the
  floor of the same run shape over the same 365 partitions (``group:floor_flowers``), and
  ``--only-flower-year`` runs those two alone (no AED runs, no other floor); ``--ui`` adds the
  UI's *Materialize* of the AED assets for day 1 against ``dg dev`` (README command (a)), full then
  unchanged, on a fresh database and archive, from the GraphQL launch to RUN_SUCCESS.

The simulator servers are warmed (one page each) before anything is timed: generating the registry
is the outside world's cost. The dev instance's SQLite storage is created before the clock starts.
The temporary folder of a set (archive, rows files, database, instance, each CLI run's log) is
removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
from egen_fetch import _free_port, _wait_for

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REFERENCE_COUNT = 81464
AED_SELECTION = "aed_raw_snapshot,aed_validated,aed_data"  # the AED group's materialisable assets
NUM_OF_ROWS = 5000
MIB = 2**20


def _load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# --------------------------------------------------------------------------- subprocesses


def run_measured(command: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``command``; its wall seconds, peak RSS (MiB) and start/end epochs.

    The peak RSS is GNU time's ``%M`` of the command's process: a process forked from this one would
    inherit this one's resident set as its high-water mark (Linux counts the RSS of the image replaced
    at exec), and this process holds the floors' data; ``/usr/bin/time`` forks it from its own small one.
    """
    rss_file = log.with_suffix(".rss")
    with log.open("wb") as out:
        begun = time.time()
        started = time.perf_counter()
        completed = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *command],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        wall = time.perf_counter() - started
        ended = time.time()
    if completed.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{' '.join(command)} exited {completed.returncode}:\n{tail}")
    peak_kib = int(rss_file.read_text().split()[-1])
    return {"wall_s": wall, "rss_peak_mib": peak_kib / 1024, "begun": begun, "ended": ended}


def import_seconds(env: dict[str, str]) -> dict[str, float]:
    """Wall seconds of a bare Python, of importing Dagster, and of importing and loading the code location."""
    snippets = {
        "python": "pass",
        "import dagster": "import dagster",
        "import aed_pipeline.definitions": "import aed_pipeline.definitions",
        "… and load its definitions": "import aed_pipeline.definitions as d; d.defs()",
    }
    seconds = {}
    for name, code in snippets.items():
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True)
        seconds[name] = time.perf_counter() - started
    return seconds


def cli_materialize(
    env: dict[str, str], work: Path, name: str, selection: str, partition: str, *, module: str | None = None
) -> dict[str, Any]:
    """``dagster asset materialize`` as a user runs it, then its run read back from the instance."""
    target = ["-m", "aed_pipeline.definitions"] if module is None else ["-f", module]
    option = ["--partition-range", partition] if "..." in partition else ["--partition", partition]
    command = [str(BIN / "dagster"), "asset", "materialize", *target, "--select", selection, *option]
    load = _load()
    measured = run_measured(command, env, work / f"{name.replace(' ', '_')}.log")
    return {"name": name, "load": load, **measured, **read_run(Path(env["DAGSTER_HOME"]))}


def read_run(dagster_home: Path, run_id: str | None = None) -> dict[str, Any]:
    """The run (the newest by default) of the instance: its span, each step's seconds and the AED assets' metadata."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        run = instance.get_run_by_id(run_id) if run_id else instance.get_runs(limit=1)[0]
        assert run is not None
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
        starts: dict[str, float] = {}
        steps: dict[str, float] = {}
        stamps: dict[str, float] = {}
        metadata: dict[str, dict[str, Any]] = {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            kind = event.event_type
            if kind in (dg.DagsterEventType.RUN_START, dg.DagsterEventType.RUN_SUCCESS):
                stamps[kind.name] = entry.timestamp
            elif kind == dg.DagsterEventType.STEP_START:
                starts[event.step_key] = entry.timestamp
            elif kind == dg.DagsterEventType.STEP_SUCCESS:
                steps[event.step_key] = entry.timestamp - starts[event.step_key]
            elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
                materialization = event.event_specific_data.materialization
                key = materialization.asset_key.to_user_string()
                if key in ("aed_validated", "aed_data"):
                    metadata[key] = {k: v.value for k, v in materialization.metadata.items()}
    return {
        "run_id": run.run_id,
        "run_start": stamps["RUN_START"],
        "run_end": stamps["RUN_SUCCESS"],
        "run_s": stamps["RUN_SUCCESS"] - stamps["RUN_START"],
        "steps": steps,
        "metadata": metadata,
    }


# --------------------------------------------------------------------------- floors


def download_floor(base_url: str, count: int) -> dict[str, float]:
    """Every page of the snapshot over HTTP, the body read and nothing parsed."""
    import httpx

    from aed_pipeline.lib.core.http import DEFAULT_USER_AGENT, accept_header
    from aed_pipeline.lib.egen_aed.client import EgenClient, page_count

    with EgenClient("bench-key", base_url, num_of_rows=NUM_OF_ROWS) as client:
        urls = [client.full_down_url(n) for n in range(1, page_count(count, NUM_OF_ROWS) + 1)]
    received = 0
    headers = {"User-Agent": DEFAULT_USER_AGENT, "Accept": accept_header("xml")}  # the client's own headers
    with httpx.Client(timeout=120, headers=headers) as http:
        started = time.perf_counter()
        for url in urls:
            response = http.get(url)
            response.raise_for_status()
            received += len(response.content)
        seconds = time.perf_counter() - started
    return {"download_s": seconds, "pages": len(urls), "mib": received / MIB}


def parse_floor(archive_folder: Path) -> dict[str, float]:
    """The archived pages read and gunzipped, then parsed with lxml, every item's fields into per-column lists."""
    from lxml import etree

    files = sorted(archive_folder.glob("*.gz"))
    started = time.perf_counter()
    pages = [gzip.decompress(path.read_bytes()) for path in files]
    read = time.perf_counter()
    columns: dict[str, list[str | None]] = {}
    records = 0
    for raw in pages:
        root = etree.fromstring(raw)
        for item in root.iter("item"):
            records += 1
            for field in item:
                columns.setdefault(field.tag, []).append(field.text)
    parsed = time.perf_counter()
    return {"read_s": read - started, "lxml_s": parsed - read, "parse_s": parsed - started, "records": records}


def database_floor(database_url: str, rows_file: str, next_rows_file: str) -> dict[str, float]:
    from aed_floor import measure_floor

    from aed_pipeline.lib.egen_aed.rows import read_device_rows

    rows = list(read_device_rows(rows_file))
    next_rows = list(read_device_rows(next_rows_file))
    return measure_floor(database_url.replace("postgresql+psycopg://", "postgresql://"), rows, next_rows)


def dlt_merge(socket_dir: str, port: int, database: str, rows_file: str, work: Path) -> dict[str, float]:
    """dlt's merge of the validated rows into the same PostgreSQL (its own dataset), full then unchanged.

    Runs in a child process (``--dlt-child``) so that its imports and memory are its own."""
    command = [
        sys.executable,
        __file__,
        "--dlt-child",
        json.dumps({"host": socket_dir, "port": port, "database": database, "rows": rows_file, "work": str(work)}),
    ]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the dlt child failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _dlt_child(spec: dict[str, Any]) -> None:
    os.environ["DLT_DATA_DIR"] = str(Path(spec["work"]) / "dlt_data")
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    import dlt

    from aed_pipeline.lib.egen_aed.records import DEVICE_COLUMNS
    from aed_pipeline.lib.egen_aed.rows import read_device_rows

    rows = [dict(zip(DEVICE_COLUMNS, row, strict=True)) for row in read_device_rows(spec["rows"])]
    # The embedded server listens on a Unix socket only: libpq's host query parameter names its folder
    # (dlt requires a password; the server trusts its local socket).
    credentials = (
        f"postgresql://postgres:unused@localhost:{spec['port']}/{spec['database']}?host={quote(spec['host'], safe='')}"
    )
    pipeline = dlt.pipeline(
        pipeline_name="aed_bench",
        destination=dlt.destinations.postgres(credentials=credentials),
        dataset_name="dlt_bench",
        pipelines_dir=str(Path(spec["work"]) / "dlt_pipelines"),
    )
    figures = {}
    for name in ("dlt_full_s", "dlt_unchanged_s"):
        started = time.perf_counter()
        pipeline.run(rows, table_name="aed_data", write_disposition="merge", primary_key="equipment_serial")
        figures[name] = time.perf_counter() - started
    print(json.dumps({**figures, "rows": len(rows)}))


# --------------------------------------------------------------------------- one registry size


def ui_launches(env: dict[str, str], work: Path, database_url: str, day: str) -> dict[str, Any]:
    """The UI's *Materialize* of the AED assets for ``day`` (``launchPipelineExecution``, as the asset
    graph sends it) against ``dg dev`` started as README command (a) says, on a fresh database and
    archive: a full load, then the same partition again. Each from the launch to RUN_SUCCESS, which
    includes the queue, the daemon dequeuing it and the run worker process loading the code."""
    sys.path.insert(0, str(REPO))
    from aed_pipeline.defs.shared.resources import WarehouseResource
    from aed_pipeline.lib.core import settings
    from aed_pipeline_tests.support.ui_support import Ui, start_dagster_dev

    WarehouseResource(database_url=database_url).engine()
    ui_env = {
        **{k: v for k, v in env.items() if k != "DAGSTER_HOME"},
        settings.HOME_ENV: str(work / "ui_home"),
        settings.DATABASE_URL_ENV: database_url,
    }
    os.environ.setdefault("AED_PIPELINE_TEST_UI_PORTS", "3800-3899")
    (work / "ui").mkdir()
    started = time.perf_counter()
    dev = start_dagster_dev(work / "ui", ui_env)
    figures: dict[str, Any] = {"dg_dev_start_s": time.perf_counter() - started}
    try:
        ui = Ui(dev.url)
        for name in ("ui full", "ui unchanged"):
            load = _load()
            begun = time.time()
            run_id = ui.launch_partition(AED_SELECTION.split(","), day)
            run = ui.wait_run(run_id, timeout=1800)
            assert run["status"] == "SUCCESS", run
            timings = read_run(work / "ui" / "dagster_home", run_id)
            # From the click to the run's end in the event log (the wait above polls once a second).
            wall = timings["run_end"] - begun
            figures[name] = {"name": name, "load": load, "begun": begun, "wall_s": wall, **timings}
    finally:
        dev.stop()
    return figures


def run_set(
    count: int,
    day: str,
    flower_year: bool,
    flower_range: tuple[str, str],
    ui: bool = False,
    keep: bool = False,
    *,
    only_flower_year: bool = False,
) -> dict[str, Any]:
    """Every figure for one registry size, on a fresh database, archive, instance and simulator servers.

    ``only_flower_year``: the flower year and its floor alone (one simulator server, the one pinned
    to day 2 that the flower year uses anyway), after a warm-up run of the Dagster floor."""
    import psycopg

    from aed_pipeline.defs.shared.resources import WarehouseResource
    from aed_pipeline.lib.core import settings
    from aed_pipeline.lib.core.embedded_postgres import ensure_embedded_postgres, stop_embedded_postgres
    from aed_pipeline.lib.egen_aed.client import EgenClient
    from aed_pipeline.lib.egen_aed.fetch import ARCHIVE_SOURCE, PAGE_SET

    work = Path(tempfile.mkdtemp(prefix="user_path_bench_"))
    home = work / "home"
    server_pg = ensure_embedded_postgres(home)
    database = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_pg.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    database_url = server_pg.url(database)
    WarehouseResource(database_url=database_url).engine()  # migrations are not part of a sync
    dagster_home = work / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / ".dagster_home" / "dagster.yaml", dagster_home / "dagster.yaml")

    next_day = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    servers, ports = [], []
    for served in (next_day,) if only_flower_year else (day, next_day):
        ports.append(_free_port())
        servers.append(
            subprocess.Popen(
                [
                    *(str(BIN / "aed-pipeline"), "simulator", "serve", "--port", str(ports[-1])),
                    *("--aed-count", str(count), "--today", served),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    egen = [f"http://127.0.0.1:{port}/B552657/AEDInfoInqireService" for port in ports]
    at_flower = f"http://127.0.0.1:{ports[-1]}/api/returnData.api"
    base_env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        settings.HOME_ENV: str(home),
        settings.DATABASE_URL_ENV: database_url,
        settings.EGEN_SERVICE_KEY_ENV: "bench-egen-key",
        settings.AT_FLOWER_SERVICE_KEY_ENV: "bench-at-key",
        settings.AT_FLOWER_BASE_URL_ENV: at_flower,
        "AED_PIPELINE_AED_START_DATE": day,
        "PYTHONWARNINGS": "ignore",
    }
    env_day = {**base_env, settings.EGEN_BASE_URL_ENV: egen[0]}
    env_next = {**base_env, settings.EGEN_BASE_URL_ENV: egen[-1]}
    r: dict[str, Any] = {"count": count, "day": day, "day2": next_day, "work": str(work)}
    floor_module = str(REPO / "bench" / "dagster_floor.py")
    try:
        for port, url in zip(ports, egen, strict=True):
            _wait_for(port)
            if not only_flower_year:
                with EgenClient("bench-key", url, num_of_rows=NUM_OF_ROWS) as client:
                    client.fetch_full_down_page(1)  # the simulator generates its registry before any clock
        import dagster as dg

        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            instance.get_runs(limit=1)  # the instance's SQLite storage, created before the clock

        if only_flower_year:
            # The warm-up the full set's AED runs otherwise give the CLI's files and the instance.
            cli_materialize(
                env_next, work, "dagster floor warm-up", "group:floor_aed", "2025-06-01", module=floor_module
            )
            _flower_year(r, env_next, work, count, flower_range, floor_module)
            return r
        _say(count, "imports")
        r["imports"] = import_seconds(env_day)
        # A first floor run warms the CLI's files (and pays the instance's first-use costs); the second is the floor.
        cli_materialize(env_day, work, "dagster floor warm-up", "group:floor_aed", "2025-06-01", module=floor_module)
        _say(count, "dagster floor")
        r["dagster_floor"] = cli_materialize(
            env_day, work, "dagster floor", "group:floor_aed", day, module=floor_module
        )
        _say(count, "download floor")
        r["download_floor"] = download_floor(egen[0], count)
        _say(count, "user path: full")
        r["full"] = cli_materialize(env_day, work, "full", AED_SELECTION, day)
        archive = home / "archive" / ARCHIVE_SOURCE / day / PAGE_SET
        _say(count, "parse floor")
        r["parse_floor"] = parse_floor(archive)
        _say(count, "user path: next day")
        r["next_day"] = cli_materialize(env_next, work, "next day", AED_SELECTION, next_day)
        _say(count, "user path: unchanged")
        r["unchanged"] = cli_materialize(env_next, work, "unchanged", AED_SELECTION, next_day)
        rows_file = r["full"]["metadata"]["aed_validated"]["rows_file"]
        next_rows_file = r["next_day"]["metadata"]["aed_validated"]["rows_file"]
        _say(count, "database floor")
        r["database_floor"] = database_floor(database_url, rows_file, next_rows_file)
        if count == REFERENCE_COUNT:  # the peer at the reference size only (at 10x it alone takes minutes)
            _say(count, "dlt")
            socket = next(Path(server_pg.socket_dir).glob(".s.PGSQL.*"))  # the port is in the socket's name
            port = int(socket.name.rsplit(".", 1)[1])
            r["dlt"] = dlt_merge(str(server_pg.socket_dir), port, database, rows_file, work)
        if ui:
            _say(count, "the UI's launches (dg dev)")
            ui_database = f"bench_ui_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(server_pg.conninfo("postgres"), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{ui_database}"')
            try:
                r["ui"] = ui_launches(env_day, work, server_pg.url(ui_database), day)
            except Exception as exc:  # optional: the other figures stand without it
                print(f"the UI's launches failed: {exc!r}"[:2000], file=sys.stderr)
        if flower_year:
            _flower_year(r, env_next, work, count, flower_range, floor_module)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
        stop_embedded_postgres(home)
        if not keep:  # the archive, the rows files, the database: ~1 GB at 10x
            shutil.rmtree(work, ignore_errors=True)
        r["load_after"] = _load()
    return r


def _flower_year(
    r: dict[str, Any], env: dict[str, str], work: Path, count: int, flower_range: tuple[str, str], floor_module: str
) -> None:
    """The one-year flower run through the user's path, after the floor of the same run shape."""
    span = f"{flower_range[0]}...{flower_range[1]}"
    _say(count, "flower year: floor")
    r["flower_floor"] = cli_materialize(env, work, "flower floor", "group:floor_flowers", span, module=floor_module)
    _say(count, "flower year: user path")
    r["flower_year"] = cli_materialize(env, work, "flower year", "group:flowers", span)


def _say(count: int, what: str) -> None:
    print(f"  [{count}] {what} … (load {_load()})", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- report


def figures_and_targets(r: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The printed lines of one set and its targets (name, figure, ratio, target, pass)."""
    lines: list[str] = []
    targets: list[dict[str, Any]] = []
    dl, pf, db, dfl = r["download_floor"], r["parse_floor"], r["database_floor"], r["dagster_floor"]
    dlt = r.get("dlt")
    full, nxt, unch = r["full"], r["next_day"], r["unchanged"]

    def target(name: str, ratio: float, limit: float, *, at_least: bool = False) -> None:
        ok = ratio >= limit if at_least else ratio <= limit
        targets.append({"target": name, "ratio": ratio, "limit": limit, "at_least": at_least, "pass": ok})

    lines.append(f"devices {r['count']:,}, day 1 {r['day']}, day 2 {r['day2']}")
    lines.append("floors (s):")
    lines.append(
        f"  download of every page (httpx, no parsing)     {dl['download_s']:8.2f}   "
        f"({dl['pages']} pages, {dl['mib']:.1f} MiB)"
    )
    lines.append(
        f"  parse of the archived pages (gunzip + lxml)    {pf['parse_s']:8.2f}   "
        f"(gunzip {pf['read_s']:.2f} + lxml into columns {pf['lxml_s']:.2f}; {pf['records']:,} records)"
    )
    lines.append(
        f"  database, full (COPY + upsert)                 {db['floor_s']:8.2f}   "
        f"(COPY {db['copy_s']:.2f} + upsert {db['upsert_s']:.2f})"
    )
    lines.append(f"  database, unchanged                            {db['unchanged_floor_s']:8.2f}")
    lines.append(f"  database, that day's diff                      {db['daily_floor_s']:8.2f}")
    lines.append(
        f"  dagster: CLI of 3 trivial assets, 1 partition  {dfl['wall_s']:8.2f}   "
        f"(before the run {dfl['run_start'] - dfl['begun']:.2f}, run {dfl['run_s']:.2f}, "
        f"after {dfl['ended'] - dfl['run_end']:.2f}; peak RSS {dfl['rss_peak_mib']:.0f} MiB)"
    )
    imports = r["imports"]
    lines.append("  imports (python -c): " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in imports.items()))
    lines.append("user's path, `dagster asset materialize` (s):")
    lines.append(
        f"  {'':<12}{'wall':>7}{'before run':>11}{'run':>7}{'raw':>7}{'valid':>7}{'data':>7}"
        f"{'between':>8}{'after':>7}{'written':>9}{'rss MiB':>9}  load (1/5/15)"
    )
    for run in (full, nxt, unch):
        steps = run["steps"]
        data = run["metadata"].get("aed_data", {})
        written = sum(int(data.get(k, 0)) for k in ("inserted", "updated", "deleted", "revived"))
        lines.append(
            f"  {run['name']:<12}{run['wall_s']:7.2f}{run['run_start'] - run['begun']:11.2f}{run['run_s']:7.2f}"
            f"{steps.get('aed_raw_snapshot', 0):7.2f}{steps.get('aed_validated', 0):7.2f}{steps.get('aed_data', 0):7.2f}"
            f"{run['run_s'] - sum(steps.values()):8.2f}{run['ended'] - run['run_end']:7.2f}{written:9}"
            f"{run['rss_peak_mib']:9.0f}  {run['load']}"
        )
    lines.append(
        "  (before run: launch to RUN_START, i.e. Python + Dagster's CLI + importing and loading the code location "
        "+ creating the run; between: the run's span not inside a step; after: RUN_SUCCESS to exit)"
    )
    lines.append(
        f"  for reading: next day / (download + dagster floor + that day's database floor) = "
        f"{nxt['wall_s'] / (dl['download_s'] + dfl['wall_s'] + db['daily_floor_s']):.2f}; "
        f"full / (download + parse + database floor + dagster floor) = "
        f"{full['wall_s'] / (dl['download_s'] + pf['parse_s'] + db['floor_s'] + dfl['wall_s']):.2f}"
    )
    if "ui" in r:
        ui = r["ui"]
        lines.append(f"the UI's Materialize (dg dev started in {ui['dg_dev_start_s']:.1f} s; launch → RUN_SUCCESS):")
        for run in (ui["ui full"], ui["ui unchanged"]):
            steps = run["steps"]
            lines.append(
                f"  {run['name']:<12}{run['wall_s']:7.2f}{run['run_start'] - run['begun']:11.2f}{run['run_s']:7.2f}"
                f"{steps.get('aed_raw_snapshot', 0):7.2f}{steps.get('aed_validated', 0):7.2f}"
                f"{steps.get('aed_data', 0):7.2f}{run['run_s'] - sum(steps.values()):8.2f}"
                f"{'':7}{'':9}{'':9}  {run['load']}"
            )
    if dlt:
        lines.append(
            f"peer: dlt merge of the same {dlt['rows']:,} rows, load alone: full {dlt['dlt_full_s']:.2f} s, "
            f"unchanged {dlt['dlt_unchanged_s']:.2f} s"
        )

    target("full load ≤ 2.0 × (download + database floor)", full["wall_s"] / (dl["download_s"] + db["floor_s"]), 2.0)
    target(
        "next day ≤ 2.0 × (dagster floor + that day's database floor)",
        nxt["wall_s"] / (dfl["wall_s"] + db["daily_floor_s"]),
        2.0,
    )
    target(
        "unchanged ≤ 2.0 × (dagster floor + unchanged database floor)",
        unch["wall_s"] / (dfl["wall_s"] + db["unchanged_floor_s"]),
        2.0,
    )
    target("aed_validated (full) ≤ 1.5 × parse floor", full["steps"]["aed_validated"] / pf["parse_s"], 1.5)
    if dlt:
        target("dlt merge (full) / user's full load ≥ 3", dlt["dlt_full_s"] / full["wall_s"], 3.0, at_least=True)
    peak = max(run["rss_peak_mib"] for run in (full, nxt, unch)) * MIB / 1e6
    target("peak RSS (MB) ≤ 500", peak, 500.0)
    if "flower_year" in r:
        flower_lines, flower_targets = flower_figures_and_targets(r)
        lines += flower_lines
        targets += flower_targets
    return lines, targets


def flower_figures_and_targets(r: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The flower year's printed lines and target (``figures_and_targets`` includes them)."""
    fy, ff = r["flower_year"], r["flower_floor"]
    ratio = fy["wall_s"] / ff["wall_s"]
    lines = [
        f"flower year (365 dates, one run): user's path {fy['wall_s']:.2f} s "
        f"(run {fy['run_s']:.2f}; rss {fy['rss_peak_mib']:.0f} MiB), floor of the same shape {ff['wall_s']:.2f} s "
        f"(run {ff['run_s']:.2f})",
        "  steps: " + ", ".join(f"{k} {v:.2f}" for k, v in fy["steps"].items()),
    ]
    target = {"target": "flower year ≤ 2 × dagster floor (365 partitions)", "ratio": ratio, "limit": 2.0}
    return lines, [{**target, "at_least": False, "pass": ratio <= 2.0}]


def _print_targets(targets: list[dict[str, Any]]) -> None:
    print("targets:")
    for t in targets:
        sign = "≥" if t["at_least"] else "≤"
        print(f"  {'PASS' if t['pass'] else 'MISS'}  {t['ratio']:8.2f}  (target {sign} {t['limit']:g})  {t['target']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aed-count", type=int, default=REFERENCE_COUNT)
    parser.add_argument("--today", default="2026-01-01", help="day 1 (the simulator's date); day 2 is the next")
    parser.add_argument("--flower-year", action="store_true", help="add the one-year flower backfill (slow)")
    parser.add_argument(
        "--only-flower-year", action="store_true", help="the one-year flower backfill and its floor alone, no AED runs"
    )
    parser.add_argument("--ui", action="store_true", help="add the UI's launch of the AED assets (dg dev, GraphQL)")
    parser.add_argument("--flower-first", default="2025-01-01")
    parser.add_argument("--flower-last", default="2025-12-31")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (archive, logs, instance)")
    parser.add_argument("--dlt-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dlt_child:
        _dlt_child(json.loads(args.dlt_child))
        return

    print(f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
    print(f"load average before (1/5/15 min): {_load()}; cores: {os.cpu_count()}")
    counts = [REFERENCE_COUNT] if args.aed_count == REFERENCE_COUNT else [REFERENCE_COUNT, args.aed_count]
    flower_range = (args.flower_first, args.flower_last)
    sets = {}
    all_targets = []
    if args.only_flower_year:
        counts = [REFERENCE_COUNT]
    for n, count in enumerate(counts):
        r = run_set(
            count,
            args.today,
            args.flower_year and n == 0,
            flower_range,
            args.ui and n == 0,
            args.keep,
            only_flower_year=args.only_flower_year,
        )
        sets[count] = r
        lines, targets = flower_figures_and_targets(r) if args.only_flower_year else figures_and_targets(r)
        print("\n".join(lines))
        _print_targets(targets)
        print(f"load average after (1/5/15 min): {r['load_after']}")
        all_targets += [{**t, "count": count} for t in targets]
    if len(counts) == 2:
        small, large = sets[REFERENCE_COUNT], sets[args.aed_count]
        print(f"\n{args.aed_count:,} vs {REFERENCE_COUNT:,} devices ({args.aed_count / REFERENCE_COUNT:g}x the data):")
        for mode in ("full", "next_day", "unchanged"):
            steps = ", ".join(
                f"{k} {large[mode]['steps'][k] / small[mode]['steps'][k]:.2f}x" for k in small[mode]["steps"]
            )
            print(
                f"  {mode:<10} time {large[mode]['wall_s'] / small[mode]['wall_s']:.2f}x   "
                f"peak memory {large[mode]['rss_peak_mib'] / small[mode]['rss_peak_mib']:.2f}x   ({steps})"
            )
        for floor, key in (("download", "download_s"), ("parse", "parse_s")):
            print(f"  {floor} floor {large[floor + '_floor'][key] / small[floor + '_floor'][key]:.2f}x")
        print(f"  database floor {large['database_floor']['floor_s'] / small['database_floor']['floor_s']:.2f}x")
        scale_targets = [
            {
                "target": f"10x devices: full-load time ≤ 11 × the {REFERENCE_COUNT:,} figure",
                "ratio": large["full"]["wall_s"] / small["full"]["wall_s"],
                "limit": 11.0,
                "at_least": False,
            },
            {
                "target": f"10x devices: peak memory ≤ 1.5 × the {REFERENCE_COUNT:,} figure",
                "ratio": max(large[m]["rss_peak_mib"] for m in ("full", "next_day", "unchanged"))
                / max(small[m]["rss_peak_mib"] for m in ("full", "next_day", "unchanged")),
                "limit": 1.5,
                "at_least": False,
            },
        ]
        for t in scale_targets:
            t["pass"] = t["ratio"] <= t["limit"]
        _print_targets(scale_targets)
        all_targets += scale_targets
    if args.json:
        args.json.write_text(json.dumps({"sets": sets, "targets": all_targets}, indent=2, default=str))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
