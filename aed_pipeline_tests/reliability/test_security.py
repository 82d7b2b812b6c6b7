"""Security (issue 7 §6): the service keys never leak, masked managers stay masked, every query is
parameterised, and the README's UI command binds to localhost.

The key tests run the production definitions (``defs()``, resources built from the environment
with ``dg.EnvVar``) against the simulator over localhost, with a persistent Dagster instance on
disk, and then look for the key everywhere an operator or an attacker could read it.
"""

from __future__ import annotations

import gzip
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from aed_pipeline.definitions import defs
from aed_pipeline.defs.at_flower.assets import flower_auction_raw, flower_auction_validated, public_bidding_flowers
from aed_pipeline.defs.at_flower.resources import AtFlowerApiResource
from aed_pipeline.defs.at_flower.tables import flower_tables
from aed_pipeline.defs.egen_aed.resources import EgenApiResource
from aed_pipeline.defs.shared.resources import WarehouseResource, build_resources
from aed_pipeline.lib.core import settings
from aed_pipeline.lib.egen_aed.records import TEXT_FIELD_COLUMNS
from aed_pipeline.simulator import Simulator, SimulatorServer
from aed_pipeline_tests.support.aed_support import AED_ASSETS, AedHarness, failure_messages
from aed_pipeline_tests.support.helpers import AED_TABLES, FLOWER_TABLES, table_state
from aed_pipeline_tests.support.ui_support import DEV_INSTANCE, free_port, readme_ui_command

REPO_ROOT = Path(__file__).resolve().parents[2]

# A data.go.kr-style key (base64 with + / =) and an aT key (32 characters). The run of letters
# "MaRkEr…" and the random-looking pieces between the separators occur nowhere else.
EGEN_KEY = (
    "MaRkErKeYeGeN0a1b2c3d4e5f6+g7h8i9j0k1l2m3n4o5p/q6r7s8t9u0v1w2x3y4z5+A6B7C8D9E0F1G2H3I4==/J5K6L7M8N9O0P1Q2R3="
)
EGEN_KEY_ENCODED = quote(EGEN_KEY, safe="")  # the portal's "Encoding" key: %2B %2F %3D
AT_KEY = "MaRkErAt9f8e7d6c5b4a39281706f5e4"
AED_DAY = date(2026, 3, 10)  # a Tuesday
FLOWER_DAY = date(2026, 3, 9)  # the Monday before: settled by AED_DAY
AED_ASSET_CONFIG = {"ops": {"aed_raw_snapshot": {"config": {"transient_retry_wait_seconds": 0}}}}
FLOWER_ASSET_CONFIG = {"ops": {"flower_auction_raw": {"config": {"transient_retry_wait_seconds": 0}}}}
FLOWER_ASSETS = [flower_auction_raw, public_bidding_flowers, flower_auction_validated, flower_tables]

INJECTIONS = (
    "'; DROP TABLE aed_data; --",
    "Robert'); DELETE FROM flowers;--",
    "$$",
    "\\",
    "%s",
    ":name",
    "{0}",
    '" OR 1=1 --',
)


def key_needles(*keys: str, width: int = 10) -> re.Pattern[str]:
    """Every ``width``-character piece of each key between its ``+ / =`` separators.

    Percent-encoding changes only the separators, so a piece is found in every form of the key
    (decoded, encoded once or twice, ``quote_plus``), and in a key cut short or split across lines.
    """
    pieces = {
        part[i : i + width] for key in keys for part in re.split(r"[+/=]", key) for i in range(len(part) - width + 1)
    }
    return re.compile("|".join(sorted(map(re.escape, pieces))), re.IGNORECASE)


KEY_PATTERN = key_needles(EGEN_KEY, AT_KEY)


class StagedSimulator(Simulator):
    """The simulator, recording every request URL as sent and serving chosen values in chosen records.

    The pages are still rendered by the simulator itself, so the wire format is the real one.
    ``aed_edits``: device id → API fields to serve instead; ``flower_edits``: position in a date's
    절화 (group 1) rows → (pumName, goodName, lvNm) to serve instead.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sent_urls: list[str] = []
        self.aed_edits: dict[int, dict[str, str]] = {}
        self.flower_edits: dict[int, tuple[str, str, str]] = {}

    def handle(self, method, url, headers):
        with self._lock:
            self.sent_urls.append(url)
        return super().handle(method, url, headers)

    @property
    def registry(self):
        return _EditedRegistry(super().registry, self.aed_edits)

    def flower_rows(self, base_date, gubn, **kwargs):
        rows = super().flower_rows(base_date, gubn, **kwargs)
        if gubn != "1":
            return rows
        return [
            (*row[:2], *self.flower_edits[n], *row[5:]) if n in self.flower_edits else row for n, row in enumerate(rows)
        ]


class _EditedRegistry:
    def __init__(self, registry, edits: dict[int, dict[str, str]]) -> None:
        self._registry = registry
        self._edits = edits

    def __getattr__(self, name):
        return getattr(self._registry, name)

    def records(self, ids: np.ndarray, day_ord: int, **kwargs) -> list[dict[str, str]]:
        records = self._registry.records(ids, day_ord, **kwargs)
        for device, record in zip(ids.tolist(), records):
            record.update(self._edits.get(device, {}))
        return records


@pytest.fixture
def staged(tmp_path: Path) -> Iterator[tuple[StagedSimulator, SimulatorServer]]:
    sim = StagedSimulator(today=AED_DAY, aed_count=400, egen_service_keys={EGEN_KEY}, at_service_keys={AT_KEY})
    with SimulatorServer(sim) as server:
        yield sim, server


# --------------------------------------------------------------------------- 1. the service keys


def files_with_the_key(*roots: Path) -> list[str]:
    """Every file under ``roots`` whose name or content (unpacked if gzip or Parquet) holds a key piece."""
    found = []
    for root in roots:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            if KEY_PATTERN.search(str(path.relative_to(root))):
                found.append(f"name: {path}")
            if not path.is_file():
                continue
            raw = path.read_bytes()
            texts = [raw.decode("utf-8", errors="replace")]
            if raw[:2] == b"\x1f\x8b":
                texts.append(gzip.decompress(raw).decode("utf-8", errors="replace"))
            if raw[:4] == b"PAR1":
                texts.append(str(pq.read_table(path).to_pylist()))
            if any(KEY_PATTERN.search(text) for text in texts):
                found.append(f"content: {path}")
    return found


def warehouse_rows_with_the_key(engine: sa.Engine) -> list[str]:
    """Every row of every table of the warehouse (as text) that holds a key piece."""
    found = []
    with engine.connect() as conn:
        tables = conn.execute(
            sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        ).scalars()
        for table in list(tables):
            statement = sa.select(sa.text("t::text")).select_from(sa.table(table).alias("t"))
            found += [f"{table}: {row}" for row in conn.execute(statement).scalars() if KEY_PATTERN.search(row)]
    return found


def dagster_records_with_the_key(instance: dg.DagsterInstance) -> list[str]:
    """Every run (tags, config) and every event (metadata, check results, errors) holding a key piece."""
    found = []
    for run in instance.get_runs():
        if KEY_PATTERN.search(dg.serialize_value(run)):
            found.append(f"run {run.run_id}")
        for entry in instance.all_logs(run.run_id):
            if KEY_PATTERN.search(dg.serialize_value(entry)):
                found.append(f"event {entry.dagster_event_type} of run {run.run_id}")
    return found


def _configure(
    monkeypatch: pytest.MonkeyPatch, server: SimulatorServer, database_url: str, home: Path, egen_key: str
) -> None:
    """The environment of a deployment: keys, the endpoints (the simulator), the database, the home."""
    monkeypatch.setenv(settings.EGEN_SERVICE_KEY_ENV, egen_key)
    monkeypatch.setenv(settings.AT_FLOWER_SERVICE_KEY_ENV, AT_KEY)
    monkeypatch.setenv(settings.EGEN_BASE_URL_ENV, server.egen_base_url)
    monkeypatch.setenv(settings.AT_FLOWER_BASE_URL_ENV, server.at_base_url)
    monkeypatch.setenv(settings.DATABASE_URL_ENV, database_url)
    monkeypatch.setenv(settings.HOME_ENV, str(home))
    for name in (settings.ARCHIVE_URL_ENV, settings.SLACK_WEBHOOK_URL_ENV):
        monkeypatch.delenv(name, raising=False)


def _failed_with(result: dg.ExecuteInProcessResult, expected: str) -> None:
    assert not result.success
    assert expected in failure_messages(result), failure_messages(result)


def database_files(engine: sa.Engine, data_dir: Path) -> list[Path]:
    """The test database's own files on the server's disk (dead rows included), after a checkpoint."""
    with engine.connect() as conn:
        conn.execute(sa.text("CHECKPOINT"))
        oid = conn.execute(sa.text("SELECT oid FROM pg_database WHERE datname = current_database()")).scalar_one()
    return [data_dir / "base" / str(oid), data_dir / "log"]


@pytest.mark.parametrize(
    "egen_key,every_failure",
    [(EGEN_KEY, True), (EGEN_KEY_ENCODED, False)],
    ids=["decoding-key-all-failures", "encoding-key-aed-failures"],
)
def test_the_service_keys_appear_nowhere_after_good_and_failed_runs(
    staged, egen_key, every_failure, embedded_pg, fresh_database_url, tmp_path, monkeypatch, caplog, capfd
) -> None:
    """Marker keys through the production wiring, good and failed runs of both jobs; then every
    event, run, file, table row and log line is searched for any piece of either key."""
    sim, server = staged
    home = tmp_path / "aed_home"
    _configure(monkeypatch, server, fresh_database_url, home, egen_key)
    caplog.set_level("DEBUG")
    definitions = defs()
    resources = definitions.resources or {}
    assert resources["egen_api"].service_key == dg.EnvVar(settings.EGEN_SERVICE_KEY_ENV)
    assert resources["at_flower_api"].service_key == dg.EnvVar(settings.AT_FLOWER_SERVICE_KEY_ENV)
    aed_job = definitions.resolve_job_def("aed_sync")
    flower_job = definitions.resolve_job_def("flower_sync")
    # The same wiring with only the client's retries shortened, for the 5xx bursts that outlast them.
    impatient = {
        **build_resources(),
        "egen_api": EgenApiResource(
            service_key=dg.EnvVar(settings.EGEN_SERVICE_KEY_ENV), base_url=server.egen_base_url, max_attempts=2
        ),
        "at_flower_api": AtFlowerApiResource(
            service_key=dg.EnvVar(settings.AT_FLOWER_SERVICE_KEY_ENV), base_url=server.at_base_url, max_attempts=2
        ),
    }
    # A gateway echoing the request URL and the bare key in its error page: the body reaches messages.
    echo = f"upstream failed: {server.egen_base_url}/getAedFullDown?serviceKey={EGEN_KEY_ENCODED} key={EGEN_KEY}"

    def aed_run(day: date, **faults) -> dg.ExecuteInProcessResult:
        """The day's AED run (today's partition: the API is called), with these faults armed."""
        sim.reset_faults()
        sim.today = day
        for name, value in faults.items():
            setattr(sim.faults, name, value)
        return aed_job.execute_in_process(
            partition_key=day.isoformat(), instance=instance, run_config=AED_ASSET_CONFIG, raise_on_error=False
        )

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        good = aed_run(AED_DAY)
        assert good.success, failure_messages(good)
        if every_failure:  # the aT key has one form only: its runs need not repeat with the other e-gen form
            flowers = flower_job.execute_in_process(
                partition_key=FLOWER_DAY.isoformat(),
                instance=instance,
                run_config=FLOWER_ASSET_CONFIG,
                raise_on_error=False,
            )
            assert flowers.success, failure_messages(flowers)
        # The keys were really sent: the simulator serves data to these keys only, and every request
        # carried the e-gen key percent-encoded exactly once.
        assert sim.calls_today("egen") > 0
        egen_urls = [url for url in sim.sent_urls if "AEDInfoInqireService" in url]
        at_urls = [url for url in sim.sent_urls if "returnData.api" in url]
        assert egen_urls and all(f"serviceKey={EGEN_KEY_ENCODED}&" in url + "&" for url in egen_urls)
        assert all(f"serviceKey={AT_KEY}&" in url + "&" for url in at_urls)
        assert bool(at_urls) == every_failure and (sim.calls_today("at") > 0) == every_failure

        # Failed runs, each on a date with nothing archived yet (an archived day is not fetched again):
        # each ends in its error and leaves the data tables as they were.
        engine = WarehouseResource(database_url=fresh_database_url).engine()
        before = table_state(engine)
        _failed_with(aed_run(date(2026, 3, 11), bad_key=True), "service key rejected")
        sim.reset_faults()
        sim.today = date(2026, 3, 13)
        sim.faults.http_error_status, sim.faults.http_error_count, sim.faults.http_error_body = 502, -1, echo.encode()
        aed_5xx = dg.materialize(
            AED_ASSETS,
            partition_key="2026-03-13",
            resources=impatient,
            instance=instance,
            run_config=AED_ASSET_CONFIG,
            raise_on_error=False,
        )
        _failed_with(aed_5xx, "HTTP 502")
        if every_failure:
            _failed_with(aed_run(date(2026, 3, 12), egen_daily_quota=0), "quota")
            sim.faults.http_error_status, sim.faults.http_error_count, sim.faults.http_error_body = (
                500,
                -1,
                echo.encode(),
            )
            no_step_retry = {"ops": {"flower_auction_raw": {"config": {"transient_retries": 0}}}}
            flower_5xx = dg.materialize(
                FLOWER_ASSETS,
                partition_key="2026-03-12",
                resources=impatient,
                instance=instance,
                run_config=no_step_retry,
                raise_on_error=False,
            )
            _failed_with(flower_5xx, "HTTP 500")
            sim.reset_faults()
            sim.faults.at_expired_keys = {AT_KEY}
            expired = flower_job.execute_in_process(
                partition_key="2026-03-10", instance=instance, run_config=FLOWER_ASSET_CONFIG, raise_on_error=False
            )
            _failed_with(expired, "validity period")

        assert table_state(engine) == before
        leaks = dagster_records_with_the_key(instance)
    captured = capfd.readouterr()
    leaks += files_with_the_key(dagster_home, home, *database_files(engine, embedded_pg.data_dir))
    leaks += warehouse_rows_with_the_key(engine)
    leaks += [f"log {r.name}: {r.getMessage()[:300]}" for r in caplog.records if KEY_PATTERN.search(r.getMessage())]
    leaks += [name for name, text in (("stdout", captured.out), ("stderr", captured.err)) if KEY_PATTERN.search(text)]
    assert leaks == []
    # The search finds what it looks for: the key in a URL as sent, and Dagster wrote to disk.
    assert all(KEY_PATTERN.search(urls[0]) for urls in (egen_urls, at_urls) if urls)
    assert list(dagster_home.glob("storage/*/compute_logs/*.err")) and list(dagster_home.glob("history/runs/*.db"))
    assert list((home / "archive").rglob("*.gz")) and list((home / "io").rglob("*.pickle"))


# --------------------------------------------------------------------------- 2. masked managers


def _harness(sim: StagedSimulator, server: SimulatorServer, database_url: str, tmp: Path) -> AedHarness:
    """The AED assets with the test harness's resources (its own e-gen key, which the simulator accepts)."""
    sim.egen_service_keys = None
    return AedHarness(sim=sim, server=server, database_url=database_url, tmp=tmp)


def _rows(engine: sa.Engine, statement: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(statement), params).all()]


def test_masked_manager_fields_are_stored_as_served_and_never_logged_or_given_as_reasons(
    staged, fresh_database_url, tmp_path, caplog, capfd
) -> None:
    sim, server = staged
    first, second, third = sim.aed_ids()[:3].tolist()
    sim.aed_edits = {
        first: {"manager": "홍*동", "managerTel": "010-****-1234"},  # a good record
        second: {"manager": "박*수", "managerTel": "02-***-5678", "wgs84Lat": "37.5x"},  # bad elsewhere
        third: {"manager": "최*진" + "*" * 1000, "managerTel": "031-****-9012"},  # bad in the manager field
    }
    masked = ("홍*동", "010-****-1234", "박*수", "02-***-5678", "최*진", "031-****-9012")
    caplog.set_level("DEBUG")
    harness = _harness(sim, server, fresh_database_url, tmp_path)
    result = harness.materialize(AED_DAY, run_config=AED_ASSET_CONFIG)
    assert result.success, failure_messages(result)

    served = {
        r["serialSeq"]: (r.get("manager"), r.get("managerTel"))
        for r in sim.registry.records(sim.aed_ids(), AED_DAY.toordinal())
    }
    stored = {
        s: (m, t) for s, m, t in _rows(harness.engine, "SELECT equipment_serial, manager, manager_tel FROM aed_data")
    }
    serial = {
        device: r["serialSeq"]
        for device, r in zip(
            (first, second, third), sim.registry.records(np.array([first, second, third]), AED_DAY.toordinal())
        )
    }
    assert stored[serial[first]] == ("홍*동", "010-****-1234")
    # Every stored manager is exactly the served (masked) text; none was unmasked or rewritten.
    assert len(stored) == len(served) - 2 and all(stored[s] == served[s] for s in stored)
    assert all("*" in m for m, _ in stored.values() if m)

    rejected = {
        record["serialSeq"]: (record, checks)
        for record, checks in _rows(harness.engine, "SELECT record, failed_checks FROM rejected_records")
    }
    assert set(rejected) == {serial[second], serial[third]}
    assert rejected[serial[second]][0]["manager"] == "박*수"  # the quarantined record is kept as served
    assert [c["column"] for c in rejected[serial[second]][1]] == ["latitude"]
    assert {(c["column"], c["value"]) for c in rejected[serial[third]][1]} == {("manager", None)}
    reasons = str([checks for _, checks in rejected.values()])
    events = "".join(dg.serialize_value(event) for event in result.all_events)
    captured = capfd.readouterr()
    logs = "\n".join(record.getMessage() for record in caplog.records)
    for text in (reasons, events, captured.out, captured.err, logs):
        assert not [value for value in masked if value in text]
    assert "latitude" in reasons and logs  # what is searched is not empty


# --------------------------------------------------------------------------- 3. parameterised queries


def test_injection_strings_in_every_text_field_land_as_text_and_every_table_survives(
    staged, fresh_database_url, tmp_path
) -> None:
    sim, server = staged
    fields = (*TEXT_FIELD_COLUMNS, "sido", "gugun")
    devices = sim.aed_ids()[: len(INJECTIONS)].tolist()
    sim.aed_edits = {device: dict.fromkeys(fields, text) for device, text in zip(devices, INJECTIONS)}
    sim.flower_edits = {n: (text, text, text) for n, text in enumerate(INJECTIONS)}
    harness = _harness(sim, server, fresh_database_url, tmp_path)
    engine = harness.engine
    tables_before = set(sa.inspect(engine).get_table_names())
    # The injected 시도 are no region: let them through the share-of-unknown-regions check.
    lenient = {"ops": {**AED_ASSET_CONFIG["ops"], "aed_validated": {"config": {"max_unknown_region_share": 0.5}}}}
    aed = harness.materialize(AED_DAY, run_config=lenient)
    assert aed.success, failure_messages(aed)
    flowers = dg.materialize(
        FLOWER_ASSETS,
        partition_key=FLOWER_DAY.isoformat(),
        resources={
            **harness.resources,
            "at_flower_api": AtFlowerApiResource(service_key=AT_KEY, base_url=server.at_base_url),
        },
        run_config=FLOWER_ASSET_CONFIG,
        raise_on_error=False,
    )
    assert flowers.success, failure_messages(flowers)

    columns = [TEXT_FIELD_COLUMNS.get(f, f) for f in fields]
    for table in ("aed_data", "aed_data_versions"):
        stored = _rows(
            engine, f"SELECT {', '.join(columns)} FROM {table} WHERE equipment_serial = ANY(:s)", s=list(INJECTIONS)
        )
        assert sorted(stored) == sorted(tuple([text] * len(columns)) for text in INJECTIONS)
    raw = _rows(
        engine,
        "SELECT pum_name, good_name, lv_nm FROM public_bidding_flowers WHERE pum_name = ANY(:s)",
        s=list(INJECTIONS),
    )
    assert sorted(raw) == sorted((text, text, text) for text in INJECTIONS)
    normalised = _rows(
        engine,
        "SELECT t.name, f.name, b.grade FROM bidding_flowers b JOIN flowers f ON f.id = b.flower_id "
        "JOIN flower_types t ON t.id = f.flower_type_id WHERE t.name = ANY(:s)",
        s=list(INJECTIONS),
    )
    assert sorted(normalised) == sorted((text, text, text) for text in INJECTIONS)

    assert set(sa.inspect(engine).get_table_names()) == tables_before
    served_devices = len(sim.aed_ids())
    served_flowers = sum(len(sim.flower_rows(FLOWER_DAY.isoformat(), str(g))) for g in (1, 2, 3, 4))
    counts = {table: count for table, (_, count) in table_state(engine, (*AED_TABLES, *FLOWER_TABLES)).items()}
    assert counts["aed_data"] == served_devices and counts["aed_data_history"] == 0  # a first load: no version ended
    assert counts["public_bidding_flowers"] == counts["bidding_flowers"] == served_flowers
    assert _rows(engine, "SELECT count(*) FROM rejected_records") == [(0,)]


# --------------------------------------------------------------------------- 4. the UI binds to localhost


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port`` (IPv4 and IPv6), from /proc/net."""
    found = set()
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word in host (little-endian) order.
                ordered = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))
                found.add(socket.inet_ntop(socket.AF_INET if size == 4 else socket.AF_INET6, ordered))
    return found


def test_the_readme_ui_command_names_localhost_as_its_host() -> None:
    command = readme_ui_command()
    assert Path(command[0]).name in {"dg", "dagster"} and command[1] == "dev", command
    assert command[command.index("-h") + 1] == "127.0.0.1"


def test_the_readme_ui_command_listens_on_localhost_only(fresh_database_url, tmp_path) -> None:
    """The README's command started as written (another port): the UI's socket is bound to 127.0.0.1."""
    command = readme_ui_command()
    port = free_port()
    command[0] = str(Path(sys.executable).parent / Path(command[0]).name)  # `dg` or `dagster` of this venv
    command[command.index("-p") + 1] = str(port)
    # The instance the README's DAGSTER_HOME holds, in a folder of its own.
    (tmp_path / "dagster_home").mkdir()
    shutil.copy(DEV_INSTANCE, tmp_path / "dagster_home" / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        settings.HOME_ENV: str(tmp_path / "aed_home"),
        settings.DATABASE_URL_ENV: fresh_database_url,  # no embedded server of its own
    }
    # Its own session: the UI, the daemon and the code server are ended together, by group id.
    ui = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 90
        while not listening_addresses(port) and ui.poll() is None and time.monotonic() < deadline:
            time.sleep(0.25)
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        os.killpg(ui.pid, 9)
        ui.wait(timeout=10)
