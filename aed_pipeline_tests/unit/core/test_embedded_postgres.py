"""The embedded PostgreSQL server: started once and reused by a second process, shared by two
processes starting at once, and started again by the same process after a stop."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import sqlalchemy as sa

from aed_pipeline.lib.core.embedded_postgres import ensure_embedded_postgres, stop_embedded_postgres
from aed_pipeline.lib.core.warehouse import create_warehouse_engine

ENSURE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from aed_pipeline.lib.core.embedded_postgres import ensure_embedded_postgres
    server = ensure_embedded_postgres(Path(sys.argv[1]))
    print(json.dumps({"pid": server.pid, "started_here": server.started_here}))
    """
)


def _ensure_in_subprocess(home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", ENSURE_SCRIPT, str(home)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_embedded_server_is_started_once_and_reused_by_a_second_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ensure_embedded_postgres(home)
    try:
        assert first.started_here
        second = _result(_ensure_in_subprocess(home))
        assert second == {"pid": first.pid, "started_here": False}
    finally:
        assert stop_embedded_postgres(home)
    assert not stop_embedded_postgres(home)


def test_two_processes_starting_at_once_share_one_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    processes = [_ensure_in_subprocess(home) for _ in range(2)]
    try:
        results = [_result(process) for process in processes]
        assert results[0]["pid"] == results[1]["pid"]
        assert sorted(result["started_here"] for result in results) == [False, True]
    finally:
        stop_embedded_postgres(home)


def test_a_stopped_server_is_started_again_by_the_same_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ensure_embedded_postgres(home)
    try:
        assert stop_embedded_postgres(home)
        again = ensure_embedded_postgres(home)
        assert again.started_here and again.pid != first.pid
        engine = create_warehouse_engine(again.url())
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
        engine.dispose()
    finally:
        stop_embedded_postgres(home)
