"""Faults end to end (issue 7 §1): every API fault, through the simulator server and Dagster.

Each case starts from a warehouse that already holds a previous good day (AED: day D0 synced;
flowers: sale date F0 synced), arms one fault in the simulator and materialises the next partition
(D1 / F1) with it. The run either recovers (the client's retries, or Dagster's step retries, absorb
the fault) and its tables equal those of an un-faulted run on another database, or it fails with
an error that names its type, the operation and the page, never the key; then every data table is
exactly as before, the pages archived before the failure are still there, and a repeat run after
the fault is cleared converges to the un-faulted result.

The test ids read as the matrix; each test prints its row (``pytest -s``): case | expected |
what happened | rows before → after.

The client is tuned through the resource config so a case takes about a second: a 2 s read
timeout, 3 attempts with a 10 ms backoff, no wait before a step retry.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa

from aed_pipeline.defs.egen_aed.resources import EgenApiResource
from aed_pipeline.lib.at_flower.fetch import FLOWER_ARCHIVE_SOURCE, page_set_name
from aed_pipeline.lib.core.archive import RawArchive
from aed_pipeline.lib.core.warehouse import warehouse_engine
from aed_pipeline.lib.egen_aed.fetch import ARCHIVE_SOURCE, PAGE_SET
from aed_pipeline.simulator import Simulator, SimulatorServer
from aed_pipeline_tests.support.aed_support import AED_ASSETS, AedHarness
from aed_pipeline_tests.support.flower_support import KEY as AT_KEY
from aed_pipeline_tests.support.flower_support import SETTLED, flower_resources
from aed_pipeline_tests.support.flower_support import run as run_flowers
from aed_pipeline_tests.support.helpers import AED_TABLES, DATA_TABLES, FLOWER_TABLES, table_state

D0, D1 = date(2026, 3, 1), date(2026, 3, 2)  # AED: the good day already synced, the faulted one
F0, F1 = date(2026, 3, 10), date(2026, 3, 11)  # flowers: a Tuesday synced; a Wednesday (절화 has 2 pages)
AED_DEVICES, AED_PAGE_ROWS = 1000, 250  # four getAedFullDown pages
EGEN_KEY = "MARKERKEY-egen-0123456789abcdef"
FAST_CLIENT = {"read_timeout_seconds": 2.0, "max_attempts": 3, "retry_base_delay_seconds": 0.01}
STEP_ATTEMPTS = 4  # the first try of the fetch step and its three transient retries

RECORDED_GATEWAY = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "data_go_kr_gateway"
GATEWAY_HTML_400 = (RECORDED_GATEWAY / "apis-data-go-kr_400-request-blocked_default-UA_2026-05-16.html").read_bytes()
GATEWAY_TEXT_502 = (
    RECORDED_GATEWAY / "apis-data-go-kr_502-error-forwarding_ServiceKey-param_2026-05-16.txt"
).read_bytes()

# Columns whose values differ between two correct runs (surrogate ids, clocks, run ids, the path
# of the archive): left out when a recovered run is compared with an un-faulted one.
VOLATILE = [
    "id",
    "created_at",
    "updated_at",
    "recorded_at",
    "applied_at",
    "rejected_at",
    "fetched_at",
    "archive_ref",
    "run_id",
]


@dataclass(frozen=True)
class Case:
    """One row of the matrix: a fault, and what the run must do with it.

    ``error`` None means the run recovers (after ``step_retries`` step retries); otherwise the SourceError class it fails with, the page
    it names (``page``) and further words of its message (``says``). ``kept`` is what the archive
    still holds of the faulted partition after the failure: AED page numbers, or flower groups.
    """

    name: str
    faults: dict[str, Any]
    error: str | None = None
    page: int | None = None
    says: tuple[str, ...] = ()
    kept: tuple[int, ...] = ()
    step_retries: int = 0  # Dagster retries of the fetch step a recovered case needs
    client: dict[str, Any] = field(default_factory=dict)
    raw_config: dict[str, Any] = field(default_factory=dict)

    @property
    def expected(self) -> str:
        return "recovers" if self.error is None else f"fails: {self.error}"


def burst(status: int, **scope) -> dict[str, Any]:
    return {"http_error_status": status, "http_error_count": 2, **scope}


EGEN_CASES = [
    Case("latency-spike", {"latency": 0.5, "pages": {2}}),
    Case("429-burst", burst(429, pages={2})),
    *(Case(f"{status}-burst", burst(status, pages={2})) for status in (500, 502, 503, 504)),
    Case("gateway-text-502-burst", {**burst(502, pages={2}), "http_error_body": GATEWAY_TEXT_502}),
    # Four failures outlast the client's three attempts: the step's own retry absorbs the rest.
    Case("503-burst-beyond-client-retries", {**burst(503, pages={2}), "http_error_count": 4}, step_retries=1),
    Case("per-second-limit-code-23-burst", {"egen_per_second_count": 2, "pages": {2}}),
    Case(
        "resultCode-99-unknown-error-burst",
        {"egen_provider_error_count": 2, "egen_provider_error_msg": "UNKNOWN ERROR", "pages": {2}},
    ),
    Case("timeout-once", {"timeout_count": 1, "timeout_seconds": 5.0, "pages": {2}}),
    Case("connection-reset-once", {"reset_count": 1, "pages": {2}}),
    Case(
        "truncated-page",
        {"truncate_count": 1, "pages": {2}},
        "SourceResponseInvalid",
        2,
        ("malformed or truncated XML",),
        kept=(1,),
    ),
    Case(
        "malformed-xml",
        {"malformed_count": 1, "pages": {2}},
        "SourceResponseInvalid",
        2,
        ("malformed or truncated XML",),
        kept=(1,),
    ),
    Case(
        "malformed-json",
        {"malformed_count": 1, "pages": {2}},
        "SourceResponseInvalid",
        2,
        ("malformed or truncated JSON",),
        kept=(1,),
        client={"response_type": "json"},
    ),
    Case(
        "resultCode-99-key-not-registered",
        {"egen_provider_error_count": -1, "pages": {2}},
        "SourceAuthError",
        2,
        ("code 99", "SERVICE KEY IS NOT REGISTERED"),
        kept=(1,),
    ),
    Case(
        "daily-quota-mid-snapshot",
        {"egen_daily_quota": 2},
        "SourceQuotaExceeded",
        3,
        ("code 22", "LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR", "resets at midnight KST"),
        kept=(1, 2),
    ),
    Case(
        "bad-key-code-30",
        {"bad_key": True},
        "SourceAuthError",
        1,
        ("code 30", "SERVICE_KEY_IS_NOT_REGISTERED_ERROR", "EGEN_SERVICE_KEY"),
    ),
    Case(
        "gateway-html-400",
        {"http_error_status": 400, "http_error_count": -1, "http_error_body": GATEWAY_HTML_400},
        "SourceRequestInvalid",
        1,
        ("code 400", "Request Blocked"),
    ),
    # Every answer to page 2 comes too late: one attempt per step keeps the case short.
    Case(
        "timeout-persistent",
        {"timeout_count": -1, "timeout_seconds": 5.0, "pages": {2}},
        "SourceUnavailable",
        2,
        ("timed out: ReadTimeout", f"after {STEP_ATTEMPTS} step attempts"),
        kept=(1,),
        client={"read_timeout_seconds": 0.5, "max_attempts": 1},
    ),
    Case(
        "gateway-text-502-persistent",
        {"http_error_status": 502, "http_error_count": -1, "pages": {2}, "http_error_body": GATEWAY_TEXT_502},
        "SourceUnavailable",
        2,
        (
            "code 502",
            "Error forwarding request to backend server",
            "gave up after 3 attempts",
            f"after {STEP_ATTEMPTS} step attempts",
        ),
        kept=(1,),
    ),
]

AT_CASES = [
    Case("latency-spike", {"latency": 0.5, "pages": {2}}),
    Case("429-burst", burst(429, pages={2})),
    *(Case(f"{status}-burst", burst(status, pages={2})) for status in (500, 502, 503, 504)),
    Case("503-burst-beyond-client-retries", {**burst(503, pages={2}), "http_error_count": 4}, step_retries=1),
    Case("timeout-once", {"timeout_count": 1, "timeout_seconds": 5.0, "pages": {2}}),
    Case("connection-reset-once", {"reset_count": 1, "pages": {2}}),
    # Page 2 exists only for 절화 (group 1); the other three groups are one page each.
    Case(
        "truncated-page",
        {"truncate_count": 1, "pages": {2}},
        "SourceResponseInvalid",
        2,
        ("flowerGubn=1", "malformed or truncated JSON"),
        kept=(2, 3, 4),
    ),
    Case(
        "malformed-json",
        {"malformed_count": 1, "pages": {2}},
        "SourceResponseInvalid",
        2,
        ("flowerGubn=1", "malformed or truncated JSON"),
        kept=(2, 3, 4),
    ),
    Case(
        "malformed-xml",
        {"malformed_count": 1, "pages": {2}},
        "SourceResponseInvalid",
        2,
        ("flowerGubn=1", "malformed or truncated XML"),
        kept=(2, 3, 4),
        client={"data_type": "xml"},
    ),
    Case(
        "resultCd-5-envelope-mid-date",
        {"at_result_code": 5, "pages": {2}},
        "SourceRequestInvalid",
        2,
        ("flowerGubn=1", "code 5", "invalid request parameter"),
        kept=(2, 3, 4),
    ),
    Case(
        "resultCd-1-key-error",
        {"at_result_code": 1},
        "SourceAuthError",
        1,
        ("code 1", "service key error", "AT_FLOWER_SERVICE_KEY"),
    ),
    # One request at a time so the quota runs out at a known place: 절화's two pages, then 관엽.
    Case(
        "daily-quota-mid-date",
        {"at_daily_quota": 2},
        "SourceQuotaExceeded",
        1,
        ("flowerGubn=2", "code 4", "resets at midnight KST"),
        kept=(1,),
        raw_config={"fetch_concurrency": 1},
    ),
    Case(
        "bad-key-html-body",
        {},
        "SourceResponseInvalid",
        1,
        ("non-JSON body", "unknown service key"),
        client={"service_key": "MARKERKEY-unknown-aT-key-0123"},
    ),
    Case(
        "http-503-persistent",
        {"http_error_status": 503, "http_error_count": -1, "pages": {2}},
        "SourceUnavailable",
        2,
        ("flowerGubn=1", "code 503", "gave up after 3 attempts", f"after {STEP_ATTEMPTS} step attempts"),
        kept=(2, 3, 4),
    ),
]


# --------------------------------------------------------------------------- what the tables hold


def content_state(engine: sa.Engine, tables: tuple[str, ...]) -> dict[str, tuple[str, int]]:
    """Like ``table_state``, but blind to the VOLATILE columns: equal for two correct runs of a day."""
    with engine.connect() as conn:
        return {
            table: tuple(
                conn.execute(
                    sa.text(
                        f"SELECT coalesce(md5(string_agg(r, '|' ORDER BY r)), ''), count(*) "
                        f"FROM (SELECT (to_jsonb(t) - CAST(:volatile AS text[]))::text AS r FROM {table} t) s"
                    ),
                    {"volatile": VOLATILE},
                ).one()
            )
            for table in tables
        }


def counts(state: dict[str, tuple[str, int]], tables: tuple[str, ...]) -> str:
    return ", ".join(f"{table} {state[table][1]}" for table in tables)


def matrix_row(api: str, case: Case, happened: str, before: dict, after: dict, tables: tuple[str, ...]) -> str:
    """One line of the fault matrix: case | expected | what happened | rows before → after."""
    changed = "unchanged" if before == after else "changed"
    row = (
        f"MATRIX {api} {case.name} | {case.expected} | {happened} | "
        f"{counts(before, tables)} → {counts(after, tables)} ({changed})"
    )
    print(row)
    return row


def failure_chain(result: dg.ExecuteInProcessResult) -> list[tuple[str, str]]:
    """(class name, message) of every error of the run's step failures, outermost first."""
    chain = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            chain.append((error.cls_name or "", error.message))
            error = error.cause
    return chain


def step_retries(result: dg.ExecuteInProcessResult) -> int:
    return sum(event.event_type_value == "STEP_UP_FOR_RETRY" for event in result.all_events)


def failed_syncs(engine: sa.Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                sa.text("SELECT partition_key, error_type, error FROM sync_runs WHERE status = 'failed' ORDER BY id")
            )
        ]


def assert_clear_failure(result, engine, case: Case, *, partition: date, operation: str, keys: tuple[str, ...]) -> str:
    """The run failed with ``case.error``, naming operation and page, and the sync log says so."""
    assert not result.success
    chain = failure_chain(result)
    text = "\n".join(message for _, message in chain)
    assert case.error in {name for name, _ in chain}, chain
    assert case.error in chain[0][1], "the step's own message names the error type"
    for expected in (operation, f"page {case.page} failed", *case.says):
        assert expected in text, (expected, text)
    [(partition_key, error_type, error)] = failed_syncs(engine)
    assert (partition_key, error_type) == (partition.isoformat(), case.error)
    events = repr(result.all_events)
    for key in keys:
        assert key not in text and key not in error and key not in events
    return chain[0][1].splitlines()[0]


# --------------------------------------------------------------------------- databases from a template


@dataclass
class World:
    """A simulator server and a template database holding the previous good day."""

    sim: Simulator
    server: SimulatorServer
    embedded: Any
    template: str
    template_tmp: Path
    oracles: dict[Any, dict] = field(default_factory=dict)

    def clone(self, tmp: Path) -> str:
        """A new database (and archive) equal to the template: the good day synced."""
        name = f"fault_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.embedded.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        shutil.copytree(self.template_tmp / "archive", tmp / "archive")
        return self.embedded.url(name)

    def drop(self, url: str) -> None:
        warehouse_engine(url).dispose()
        name = url.rsplit("/", 1)[1].split("?")[0]
        with psycopg.connect(self.embedded.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _make_template(embedded, build) -> str:
    name = f"fault_template_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(embedded.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = embedded.url(name)
    build(url)
    # A template must have no open connection when it is copied: close the pool, and end the idle
    # sessions other engines of the run left behind (nothing uses this database again).
    warehouse_engine(url).dispose()
    with psycopg.connect(embedded.conninfo("postgres"), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    return name


def _drop_world(world: World) -> None:
    world.server.stop()
    with psycopg.connect(world.embedded.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{world.template}" WITH (FORCE)')


@pytest.fixture(scope="module")
def aed_world(embedded_pg, tmp_path_factory) -> Iterator[World]:
    sim = Simulator(today=D0, aed_count=AED_DEVICES)
    server = SimulatorServer(sim).start()
    tmp = tmp_path_factory.mktemp("aed_template")

    def build(url: str) -> None:
        result = aed_run(AedHarness(sim, server, url, tmp, AED_PAGE_ROWS), D0, {})
        assert result.success

    world = World(sim, server, embedded_pg, _make_template(embedded_pg, build), tmp)
    yield world
    _drop_world(world)


@pytest.fixture(scope="module")
def at_world(embedded_pg, tmp_path_factory) -> Iterator[World]:
    sim = Simulator(today=SETTLED, at_service_keys={AT_KEY})
    server = SimulatorServer(sim).start()
    tmp = tmp_path_factory.mktemp("at_template")

    def build(url: str) -> None:
        assert run_flowers(flower_resources(server, url, tmp), day=F0).success

    world = World(sim, server, embedded_pg, _make_template(embedded_pg, build), tmp)
    yield world
    _drop_world(world)


def aed_run(harness: AedHarness, day: date, client: dict[str, Any]) -> dg.ExecuteInProcessResult:
    """Materialise ``day`` through Dagster with the e-gen client tuned by ``client``."""
    harness.sim.today = day
    resources = harness.resources
    resources["egen_api"] = EgenApiResource(
        service_key=EGEN_KEY,
        base_url=harness.server.egen_base_url,
        num_of_rows=AED_PAGE_ROWS,
        **{**FAST_CLIENT, **client},
    )
    return dg.materialize(
        AED_ASSETS,
        partition_key=day.isoformat(),
        resources=resources,
        raise_on_error=False,
        run_config={"ops": {"aed_raw_snapshot": {"config": {"transient_retry_wait_seconds": 0}}}},
    )


def at_run(world: World, url: str, tmp: Path, client: dict[str, Any], raw_config: dict[str, Any]):
    """Materialise sale date F1 through Dagster with the aT client tuned by ``client``."""
    resources = flower_resources(world.server, url, tmp, **{**FAST_CLIENT, **client})
    config = {"ops": {"flower_auction_raw": {"config": {"transient_retry_wait_seconds": 0, **raw_config}}}}
    return run_flowers(resources, day=F1, run_config=config)


def oracle(world: World, key: Any, tmp: Path, materialise) -> dict:
    """The tables after an un-faulted run of the next partition on a clone of the template."""
    if key not in world.oracles:
        world.sim.reset_faults()
        url = world.clone(tmp)
        try:
            assert materialise(url).success
            world.oracles[key] = content_state(warehouse_engine(url), DATA_TABLES)
        finally:
            world.drop(url)
    return world.oracles[key]


def arm(sim: Simulator, faults: dict[str, Any], api: str) -> None:
    sim.reset_faults()
    sim.reset_counters()
    sim.faults.api = api
    for name, value in faults.items():
        setattr(sim.faults, name, value)


# --------------------------------------------------------------------------- the matrix


def requested(sim: Simulator, page_param: str) -> list[int]:
    """The page number of every request the simulator received since its counters were reset."""
    return [int(entry.params.get(page_param, 1)) for entry in sim.request_log]


def assert_fault_fired(sim: Simulator, case: Case, page_param: str) -> None:
    """A recovered case proves something only if its fault really hit the run."""
    for name, value in case.faults.items():
        if name.endswith("_count") and value > 0:
            assert getattr(sim.faults, name) == 0, f"{name} was not used up"
    scope = case.faults.get("pages")
    if scope is not None:
        assert scope & set(requested(sim, page_param)), "the run never asked for the faulted page"


@pytest.mark.parametrize("case", EGEN_CASES, ids=[case.name for case in EGEN_CASES])
def test_egen_fault(aed_world: World, tmp_path: Path, case: Case) -> None:
    sim = aed_world.sim
    expected = oracle(
        aed_world,
        ("egen", case.client.get("response_type", "xml")),
        tmp_path / "oracle",
        lambda url: aed_run(
            AedHarness(sim, aed_world.server, url, tmp_path / "oracle", AED_PAGE_ROWS), D1, case.client
        ),
    )
    url = aed_world.clone(tmp_path)
    try:
        harness = AedHarness(sim, aed_world.server, url, tmp_path, AED_PAGE_ROWS)
        engine = harness.engine
        before = table_state(engine)
        arm(sim, case.faults, "egen")
        result = aed_run(harness, D1, case.client)
        after = table_state(engine)
        requests = len(sim.request_log)

        if case.error is None:
            assert result.success, failure_chain(result)
            assert_fault_fired(sim, case, "pageNo")
            assert step_retries(result) == case.step_retries
            assert content_state(engine, DATA_TABLES) == expected, "the tables differ from an un-faulted run"
            matrix_row(
                "egen",
                case,
                f"success after {requests} requests for 4 pages, {case.step_retries} step "
                "retries; tables equal to an un-faulted run",
                before,
                after,
                AED_TABLES,
            )
            return

        message = assert_clear_failure(
            result, engine, case, partition=D1, operation="e-gen AED getAedFullDown", keys=(EGEN_KEY,)
        )
        assert after == before, "a failed run changed a data table"
        manifest = harness.archive.read_manifest(ARCHIVE_SOURCE, D1.isoformat(), PAGE_SET)
        assert sorted(manifest.pages if manifest else []) == list(case.kept), "the pages archived before are kept"

        sim.reset_faults()
        sim.reset_counters()
        repeat = aed_run(harness, D1, case.client)
        assert repeat.success, failure_chain(repeat)
        assert content_state(engine, DATA_TABLES) == expected, "the repeat differs from an un-faulted run"
        resumed = sorted(set(requested(sim, "pageNo")))  # a slow page may be asked for twice
        assert resumed == [page for page in range(1, 5) if page not in case.kept], "the repeat fetches only the rest"
        matrix_row(
            "egen",
            case,
            f"{message} ({requests} requests; pages kept {list(case.kept)}; the repeat "
            f"fetched {resumed} and equals an un-faulted run)",
            before,
            after,
            AED_TABLES,
        )
    finally:
        aed_world.drop(url)


@pytest.mark.parametrize("case", AT_CASES, ids=[case.name for case in AT_CASES])
def test_at_flower_fault(at_world: World, tmp_path: Path, case: Case) -> None:
    sim = at_world.sim
    fault_client = case.client
    # A wrong key is the fault itself; the un-faulted run and the repeat use the right one.
    client = {name: value for name, value in fault_client.items() if name != "service_key"}
    expected = oracle(
        at_world,
        ("at", client.get("data_type", "json")),
        tmp_path / "oracle",
        lambda url: at_run(at_world, url, tmp_path / "oracle", client, {}),
    )
    url = at_world.clone(tmp_path)
    try:
        engine = warehouse_engine(url)
        before = table_state(engine)
        arm(sim, case.faults, "at")
        result = at_run(at_world, url, tmp_path, fault_client, case.raw_config)
        after = table_state(engine)
        requests = len(sim.request_log)

        if case.error is None:
            assert result.success, failure_chain(result)
            assert_fault_fired(sim, case, "currentPage")
            assert step_retries(result) == case.step_retries
            assert content_state(engine, DATA_TABLES) == expected, "the tables differ from an un-faulted run"
            matrix_row(
                "at",
                case,
                f"success after {requests} requests for 5 pages, {case.step_retries} step "
                "retries; tables equal to an un-faulted run",
                before,
                after,
                FLOWER_TABLES,
            )
            return

        message = assert_clear_failure(
            result,
            engine,
            case,
            partition=F1,
            operation="aT flower f001 flowerGubn=",
            keys=(AT_KEY, fault_client.get("service_key", AT_KEY)),
        )
        assert f"baseDate={F1.isoformat()}" in message
        assert after == before, "a failed run changed a data table"
        archive = RawArchive(tmp_path / "archive")
        complete = [
            gubn
            for gubn in (1, 2, 3, 4)
            if (m := archive.read_manifest(FLOWER_ARCHIVE_SOURCE, F1.isoformat(), page_set_name(gubn))) and m.complete
        ]
        assert complete == list(case.kept), "the groups archived before the failure are kept"

        sim.reset_faults()
        sim.reset_counters()
        repeat = at_run(at_world, url, tmp_path, client, {})
        assert repeat.success, failure_chain(repeat)
        assert content_state(engine, DATA_TABLES) == expected, "the repeat differs from an un-faulted run"
        matrix_row(
            "at",
            case,
            f"{message} ({requests} requests; groups kept {list(case.kept)}; the repeat equals an un-faulted run)",
            before,
            after,
            FLOWER_TABLES,
        )
    finally:
        at_world.drop(url)
