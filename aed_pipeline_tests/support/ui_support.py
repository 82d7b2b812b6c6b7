"""The Dagster UI as a test drives it: `dg dev` started as README command (a) says, and the GraphQL
the UI's pages send.

The mutations and the way their variables are built are those of the webserver's own JavaScript
(dagster-webserver 1.13, ``ui-core``): ``LaunchAssetExecutionButton.tsx`` and
``LaunchAssetChoosePartitionsDialog.tsx`` (the *Materialize* button and its partition dialog, on the
asset graph and on a job's page), ``useJobReExecution.tsx`` (*Re-execute from failure*),
``ConfigFetch.tsx`` (the partition's tags and config a single run is launched with) and
``uiExecutionTags.tsx`` (the tag every UI launch carries).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from aed_pipeline.defs.shared.resources import WarehouseResource
from aed_pipeline.lib.core import settings
from aed_pipeline.lib.core.embedded_postgres import EmbeddedPostgres

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_INSTANCE = REPO_ROOT / ".dagster_home" / "dagster.yaml"
LOCATION = "aed_pipeline"
REPOSITORY = "__repository__"
#: The hidden job that runs whatever is materialised from the asset graph or the catalog.
ASSET_JOB = "__ASSET_JOB"
#: The tag the UI adds to every run and backfill it launches.
UI_TAGS = [{"key": "dagster/from_ui", "value": "true"}]
#: Set (e.g. ``3200-3299``) to keep the UIs the tests start within a range of ports.
PORTS_ENV = "AED_PIPELINE_TEST_UI_PORTS"

RUN_DONE = {"SUCCESS", "FAILURE", "CANCELED"}
BACKFILL_BUSY = {"REQUESTED", "CANCELING", "FAILING"}


def readme_ui_command() -> list[str]:
    """The README's first command that starts the Dagster UI, as arguments (variables dropped)."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    [line] = [line for line in first_block.splitlines() if " dev " in line and not line.startswith("#")]
    command = shlex.split(line.split("&&")[-1])
    return [arg for arg in command if not re.fullmatch(r"[A-Z_]+=.*", arg)]


def free_port() -> int:
    """A free localhost port: the first free one of ``AED_PIPELINE_TEST_UI_PORTS`` when set, else any."""
    span = os.environ.get(PORTS_ENV, "").strip()
    candidates = list(range(int(span.split("-")[0]), int(span.split("-")[1]) + 1)) if span else [0]
    # Each pytest-xdist worker starts in its own share of the range: two workers starting a UI at the
    # same moment would otherwise both find the first port free, and the second `dg dev` would fail.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    start = len(candidates) * int(worker or 0) // max(workers, 1)
    for port in candidates[start:] + candidates[:start]:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError(f"no free port in {span}")


# --------------------------------------------------------------------------- the UI's GraphQL

LAUNCH_PIPELINE_EXECUTION = """
mutation LaunchPipelineExecution($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { id pipelineName } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
  }
}
"""

LAUNCH_PARTITION_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on UnauthorizedError { message }
    ... on PipelineNotFoundError { message }
    ... on RunConflict { message }
    ... on ConflictingExecutionParamsError { message }
    ... on InvalidSubsetError { message }
    ... on PythonError { message stack }
  }
}
"""

LAUNCH_PIPELINE_REEXECUTION = """
mutation LaunchPipelineReexecution($executionParams: ExecutionParams, $reexecutionParams: ReexecutionParams) {
  launchPipelineReexecution(executionParams: $executionParams, reexecutionParams: $reexecutionParams) {
    __typename
    ... on LaunchRunSuccess { run { id pipelineName rootRunId parentRunId } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
  }
}
"""

# What the Materialize button loads of the selected assets (LaunchAssetLoaderQuery, trimmed).
ASSET_NODES = """
query LaunchAssetLoaderQuery($assetKeys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $assetKeys) {
    assetKey { path }
    jobNames
    opNames
    isExecutable
    partitionDefinition { description }
    assetChecksOrError { __typename ... on AssetChecks { checks { name jobNames } } }
  }
}
"""

# The partition's tags and run config a single-partition launch carries (ConfigFetch.tsx).
CONFIG_PARTITION_FOR_ASSET_JOB = """
query ConfigPartitionForAssetJobQuery($repositoryName: String!, $repositoryLocationName: String!,
    $jobName: String!, $partitionName: String!, $assetKeys: [AssetKeyInput!]!) {
  pipelineOrError(params: {pipelineName: $jobName, repositoryName: $repositoryName,
      repositoryLocationName: $repositoryLocationName}) {
    ... on Pipeline {
      partition(partitionName: $partitionName, selectedAssetKeys: $assetKeys) {
        name
        runConfigOrError { ... on PartitionRunConfig { yaml } ... on PythonError { message } }
        tagsOrError { ... on PartitionTags { results { key value } } ... on PythonError { message } }
      }
    }
  }
}
"""

PARTITION_STATUSES = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      assetPartitionStatuses {
        __typename
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
      }
    }
  }
}
"""

RUN = """
query RunQuery($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { id status jobName rootRunId parentRunId tags { key value } assetSelection { path } }
  }
}
"""

BACKFILL = """
query BackfillQuery($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      id status numPartitions isAssetBackfill
      runs(limit: 100) { id status jobName tags { key value } }
      error { message }
    }
  }
}
"""

RUN_EVENTS = """
query RunEvents($runId: ID!, $afterCursor: String) {
  logsForRun(runId: $runId, afterCursor: $afterCursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message eventType stepKey level }
        ... on ExecutionStepFailureEvent {
          error { message className cause { message } causes { message } }
          failureMetadata { description }
        }
      }
    }
  }
}
"""

WORKSPACE = """
query WorkspaceQuery {
  workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename } } }
  }
}
"""

DAEMONS = """
query DaemonHealth {
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } }
}
"""


def asset_key_input(key: str) -> dict[str, list[str]]:
    return {"path": [key]}


@dataclass
class Ui:
    """What the UI at ``url`` is sent when someone clicks through it."""

    url: str
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=120))

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.client.post(f"{self.url}/graphql", json={"query": query, "variables": variables})
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    # -- what the pages load ----------------------------------------------------------

    def asset_nodes(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        nodes = self.gql(ASSET_NODES, assetKeys=[asset_key_input(k) for k in keys])["assetNodes"]
        assert sorted(n["assetKey"]["path"][-1] for n in nodes) == sorted(keys), nodes
        return nodes

    def missing_partitions(self, keys: Sequence[str], window: Iterable[str]) -> list[str]:
        """The partitions of ``window`` missing or failed in any of ``keys``: what the dialog's
        *Backfill only failed and missing partitions* keeps."""
        materialized: list[set[str]] = []
        for key in keys:
            node = self.gql(PARTITION_STATUSES, assetKey=asset_key_input(key))["assetNodeOrError"]
            done = set()
            for span in node["assetPartitionStatuses"]["ranges"]:
                if span["status"] == "MATERIALIZED":
                    done |= {d for d in window if span["startKey"] <= d <= span["endKey"]}
            materialized.append(done)
        return sorted(d for d in window if not all(d in done for done in materialized))

    # -- what the buttons send --------------------------------------------------------

    @staticmethod
    def common_job(nodes: Sequence[dict[str, Any]], preferred: str | None = None) -> str:
        """The job the UI launches the selection with (``getCommonJob``): the job page's own, else
        the first job every selected asset is in, which from the asset graph is ``__ASSET_JOB``."""
        common = [name for name in nodes[0]["jobNames"] if all(name in n["jobNames"] for n in nodes)]
        return preferred if preferred in common else common[0]

    def _selector(self, nodes: Sequence[dict[str, Any]], job: str) -> dict[str, Any]:
        checks = [
            {"name": check["name"], "assetKey": {"path": node["assetKey"]["path"]}}
            for node in nodes
            if node["assetChecksOrError"]["__typename"] == "AssetChecks"
            for check in node["assetChecksOrError"]["checks"]
            if not check["jobNames"] or job in check["jobNames"]
        ]
        return {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "pipelineName": job,
            "assetSelection": [{"path": n["assetKey"]["path"]} for n in nodes],
            "assetCheckSelection": checks,
        }

    def launch_partition(self, keys: Sequence[str], partition: str, *, job_page: str | None = None) -> str:
        """*Materialize* → one partition → *Launch 1 run*, from the asset graph or from ``job_page``'s
        *Materialize all*: ``launchPipelineExecution`` with the partition's tags and config."""
        nodes = self.asset_nodes(keys)
        job = self.common_job(nodes, job_page)
        partition_info = self.gql(
            CONFIG_PARTITION_FOR_ASSET_JOB,
            repositoryName=REPOSITORY,
            repositoryLocationName=LOCATION,
            jobName=job,
            partitionName=partition,
            assetKeys=[{"path": n["assetKey"]["path"]} for n in nodes],
        )["pipelineOrError"]["partition"]
        tags = [{"key": t["key"], "value": t["value"]} for t in partition_info["tagsOrError"]["results"]]
        result = self.gql(
            LAUNCH_PIPELINE_EXECUTION,
            executionParams={
                "mode": "default",
                "executionMetadata": {"tags": [*tags, *UI_TAGS]},
                "runConfigData": partition_info["runConfigOrError"]["yaml"] or "",
                "selector": self._selector(nodes, job),
            },
        )["launchPipelineExecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["id"]

    def launch_backfill(self, keys: Sequence[str], partitions: Sequence[str], *, job_page: str | None = None) -> str:
        """*Materialize* → several partitions → *Launch backfill*: ``launchPartitionBackfill`` with
        the partition names, as a job backfill from ``job_page`` or an asset backfill from the graph."""
        nodes = self.asset_nodes(keys)
        job = self.common_job(nodes, job_page)
        params: dict[str, Any] = {
            "tags": UI_TAGS,
            "assetSelection": [{"path": n["assetKey"]["path"]} for n in nodes],
            "partitionNames": list(partitions),
            "fromFailure": False,
        }
        if not job.startswith(ASSET_JOB):
            params["selector"] = {
                "partitionSetName": f"{job}_partition_set",
                "repositorySelector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY},
            }
        result = self.gql(LAUNCH_PARTITION_BACKFILL, backfillParams=params)["launchPartitionBackfill"]
        assert result["__typename"] == "LaunchBackfillSuccess", result
        return result["backfillId"]

    def reexecute_from_failure(self, run_id: str) -> dict[str, Any]:
        """A failed run's *Re-execute* → *From failure*."""
        result = self.gql(
            LAUNCH_PIPELINE_REEXECUTION,
            reexecutionParams={"parentRunId": run_id, "strategy": "FROM_FAILURE", "extraTags": UI_TAGS},
        )["launchPipelineReexecution"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]

    # -- waiting and reading back -----------------------------------------------------

    def run(self, run_id: str) -> dict[str, Any]:
        run = self.gql(RUN, runId=run_id)["runOrError"]
        assert run["__typename"] == "Run", run
        return run

    def wait_run(self, run_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (run := self.run(run_id))["status"] not in RUN_DONE:
            assert time.monotonic() < deadline, f"run {run_id} still {run['status']} after {timeout} s"
            time.sleep(1)
        return run

    def wait_backfill(self, backfill_id: str, timeout: float = 420) -> dict[str, Any]:
        """The backfill once the daemon has finished it (its runs ended and its status settled)."""
        deadline = time.monotonic() + timeout
        while True:
            backfill = self.gql(BACKFILL, backfillId=backfill_id)["partitionBackfillOrError"]
            assert backfill["__typename"] == "PartitionBackfill", backfill
            if backfill["status"] not in BACKFILL_BUSY and all(r["status"] in RUN_DONE for r in backfill["runs"]):
                return backfill
            assert time.monotonic() < deadline, f"backfill {backfill_id} still {backfill['status']} after {timeout} s"
            time.sleep(2)

    def events(self, run_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.gql(RUN_EVENTS, runId=run_id, afterCursor=cursor)["logsForRun"]
            events += page["events"]
            cursor = page["cursor"]
            if not page["hasMore"]:
                return events

    def daemons(self) -> dict[str, dict[str, Any]]:
        statuses = self.gql(DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return {status["daemonType"]: status for status in statuses}


def tags_of(run: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in run["tags"]}


# --------------------------------------------------------------------------- `dg dev` itself


@contextlib.contextmanager
def ui_database(server: EmbeddedPostgres) -> Iterator[str]:
    """A database of its own for a UI on the session's server, migrated before any run starts,
    dropped afterwards."""
    name = f"ui_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.url(name)
    WarehouseResource(database_url=url).engine()
    try:
        yield url
    finally:
        with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ui_environment(home: Path, warehouse_url: str, egen_base_url: str, at_base_url: str) -> dict[str, str]:
    """The variables `dg dev` runs with in a test: its own ``AED_PIPELINE_HOME`` and database, and
    the simulator server (``SimulatorServer``) as both APIs, with service keys of no meaning."""
    return {
        settings.HOME_ENV: str(home),
        settings.DATABASE_URL_ENV: warehouse_url,
        settings.EGEN_BASE_URL_ENV: egen_base_url,
        settings.EGEN_SERVICE_KEY_ENV: "ui-test-egen-key",
        settings.AT_FLOWER_BASE_URL_ENV: at_base_url,
        settings.AT_FLOWER_SERVICE_KEY_ENV: "ui-test-at-key",
    }


@dataclass
class DagsterDev:
    """README command (a) running in a session of its own: UI, daemon and code server."""

    process: subprocess.Popen
    log: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def startup_log(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """End the whole session (UI, daemon, code server, run workers), by its group id."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_dagster_dev(tmp: Path, env: dict[str, str], *, timeout: float = 240) -> DagsterDev:
    """Start the README's UI command with this venv's tools, its ``DAGSTER_HOME`` a copy of
    ``.dagster_home/dagster.yaml`` under ``tmp``, on a free port; return once the code location loaded."""
    command = readme_ui_command()
    command[0] = str(Path(sys.executable).parent / Path(command[0]).name)
    port = free_port()
    command[command.index("-p") + 1] = str(port)
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(DEV_INSTANCE, home / "dagster.yaml")
    log = tmp / "dg_dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, **env, "DAGSTER_HOME": str(home)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    dev = DagsterDev(process, log, port)
    ui = Ui(dev.url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert process.poll() is None, f"dg dev exited:\n{dev.startup_log()}"
            assert time.monotonic() < deadline, f"the UI did not come up:\n{dev.startup_log()}"
            try:
                workspace = ui.gql(WORKSPACE)["workspaceOrError"]
            except httpx.HTTPError:
                time.sleep(1)
                continue
            entries = workspace.get("locationEntries", [])
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                assert {e["locationOrLoadError"]["__typename"] for e in entries} == {"RepositoryLocation"}, entries
                return dev
            time.sleep(1)
    except BaseException:
        dev.stop()
        raise
