"""Time and peak memory of the e-gen client fetching the full AED snapshot over localhost.

    .venv/bin/python bench/egen_fetch.py [--aed-count 81464] [--num-of-rows 5000] [--type xml]

The simulator runs as a real HTTP server in its own process (`aed-pipeline simulator serve`), so
the figures are the client's alone: HTTP, parsing, and (in the `collect` mode) holding every record.
Each mode runs in a fresh child process; `baseline` imports everything and builds the client but
fetches nothing, so the memory columns can be read against it. The first fetch against a freshly
started server includes the simulator generating its data set; it is reported separately (`cold`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

MODES = ("baseline", "cold", "stream", "collect")


def _child(mode: str, base_url: str, num_of_rows: int, response_type: str) -> None:
    from aed_pipeline.lib.egen_aed.client import EgenClient

    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    pages = records = raw_bytes = 0
    kept: list[dict[str, str]] = []
    with EgenClient("bench-key", base_url, num_of_rows=num_of_rows, response_type=response_type) as client:
        if mode != "baseline":
            for page in client.iter_full_down():
                pages += 1
                records += len(page.records)
                raw_bytes += len(page.raw)
                if mode == "collect":
                    kept.extend(page.records)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "mode": mode,
                "wall_s": wall,
                "pages": pages,
                "records": records,
                "mib": raw_bytes / 2**20,
                "rss_start_mib": rss_start / 1024,
                "rss_peak_mib": peak / 1024,
            }
        )
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the simulator server did not listen on port {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aed-count", type=int, default=81464)
    parser.add_argument("--num-of-rows", type=int, default=5000)
    parser.add_argument("--type", choices=("xml", "json"), default="xml")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.base_url, args.num_of_rows, args.type)
        return

    port = _free_port()
    cli = Path(sys.executable).parent / "aed-pipeline"
    server = subprocess.Popen(
        [str(cli), "simulator", "serve", "--port", str(port), "--aed-count", str(args.aed_count)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(port)
        base_url = f"http://127.0.0.1:{port}/B552657/AEDInfoInqireService"
        print(f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}")
        print(f"{'mode':<10}{'wall s':>9}{'pages':>7}{'records':>9}{'MiB':>8}{'rss start MiB':>15}{'rss peak MiB':>14}")
        for mode in MODES:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    mode,
                    "--base-url",
                    base_url,
                    "--num-of-rows",
                    str(args.num_of_rows),
                    "--type",
                    args.type,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(
                f"{r['mode']:<10}{r['wall_s']:>9.2f}{r['pages']:>7}{r['records']:>9}{r['mib']:>8.1f}"
                f"{r['rss_start_mib']:>15.1f}{r['rss_peak_mib']:>14.1f}"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
