"""Measure generating + serving the full e-gen snapshot through the real server with httpx.

.venv/bin/python bench/simulator_serve.py [--count 81464] [--rows 5000] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import time

import httpx

from aed_pipeline.simulator.core import Simulator
from aed_pipeline.simulator.server import SimulatorServer


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=81464)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--date", default="2026-11-23")
    a = ap.parse_args(argv)
    sim = Simulator(today=dt.date.fromisoformat(a.date), aed_count=a.count)
    t0 = time.perf_counter()
    reg = sim.registry
    ids = reg.active_ids(sim.today)
    t_reg = time.perf_counter() - t0
    with (
        SimulatorServer(sim) as srv,
        httpx.Client(headers={"User-Agent": "Mozilla/5.0 (bench)"}, timeout=120) as client,
    ):
        t1 = time.perf_counter()
        params = {"serviceKey": "bench", "pageNo": 1, "numOfRows": a.rows}
        if a.json:
            params["_type"] = "json"
        url = srv.egen_base_url + "/getAedFullDown"
        nbytes = 0
        pages = math.ceil(len(ids) / a.rows)
        per_page = []
        for p in range(1, pages + 1):
            params["pageNo"] = p
            tp = time.perf_counter()
            r = client.get(url, params=params)
            r.raise_for_status()
            nbytes += len(r.content)
            per_page.append(time.perf_counter() - tp)
        t_serve = time.perf_counter() - t1
    print(f"devices active on {sim.today}: {len(ids)} (registry of {reg.size} built in {t_reg:.3f} s)")
    print(
        f"served {pages} pages x {a.rows} rows ({'JSON' if a.json else 'XML'}), {nbytes / 1e6:.1f} MB "
        f"in {t_serve:.2f} s; per page min/avg/max {min(per_page):.3f}/{sum(per_page) / pages:.3f}/"
        f"{max(per_page):.3f} s"
    )


if __name__ == "__main__":
    main()
