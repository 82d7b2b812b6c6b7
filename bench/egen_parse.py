"""Parse speed of one full e-gen page (5,000 records of XML), against a plain lxml baseline.

    .venv/bin/python bench/egen_parse.py [--records 5000] [--repeat 5]

The page repeats record 1 of the real recorded response. The baseline is lxml parsing the same
bytes into a tree and walking every element, with no envelope handling: the floor of any XML parse.
"""

from __future__ import annotations

import argparse
import time

from lxml import etree

from aed_pipeline.lib.egen_aed.client import parse_egen_response
from aed_pipeline_tests.support.helpers import synthetic_aed_page


def best_of(repeat: int, work) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    raw = synthetic_aed_page(args.records)

    baseline = best_of(args.repeat, lambda: sum(1 for _ in etree.fromstring(raw).iter()))
    ours = best_of(args.repeat, lambda: parse_egen_response(raw, response_type="xml", page=1))
    print(f"page: {args.records} records, {len(raw) / 2**20:.1f} MiB; best of {args.repeat}")
    print(f"{'parser':<36}{'s':>8}{'records/s':>12}")
    print(f"{'lxml tree + walk (baseline)':<36}{baseline:>8.3f}{args.records / baseline:>12,.0f}")
    print(f"{'parse_egen_response':<36}{ours:>8.3f}{args.records / ours:>12,.0f}")
    print(f"ratio to baseline: {ours / baseline:.2f}x")


if __name__ == "__main__":
    main()
