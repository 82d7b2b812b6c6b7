"""How long the embedded PostgreSQL takes to become usable.

    .venv/bin/python bench/embedded_start.py [--repeat 3]

Three cases, each on a fresh temporary AED_PIPELINE_HOME: a cold start (initdb + start, the first
run on a new machine), a warm start (data directory exists, server stopped), and attaching to a
server that already runs (what every later process pays). Medians over --repeat rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from aed_pipeline.lib.core.embedded_postgres import ensure_embedded_postgres, stop_embedded_postgres


def _timed(home: Path) -> float:
    started = time.perf_counter()
    ensure_embedded_postgres(home)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    cold, warm, attach = [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="aedbench") as tmp:
            home = Path(tmp)
            cold.append(_timed(home))
            attach.append(_timed(home))
            stop_embedded_postgres(home)
            warm.append(_timed(home))
            stop_embedded_postgres(home)

    print(f"{'case':<34}{'median s':>10}{'min s':>10}{'max s':>10}")
    for name, values in (
        ("cold start (initdb + start)", cold),
        ("warm start (existing pgdata)", warm),
        ("attach to the running server", attach),
    ):
        print(f"{name:<34}{statistics.median(values):>10.3f}{min(values):>10.3f}{max(values):>10.3f}")


if __name__ == "__main__":
    main()
