"""Seconds to build a testbed from scratch vs to load it from the cache (the ratio is the point).

Moved here from a timed test (a loaded fresh machine took 34 s for a build the test bounded at
30 s): tests assert that a reload did not rebuild; this script measures how much that saves.

    .venv/bin/python benchmarks/testbed_build.py [--preset smoke] [--seed 0] [--reloads 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from rlhf_nb import testbed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reloads", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        built = testbed.build(args.preset, seed=args.seed, cache_dir=cache)
        build = time.perf_counter() - t0
        loads = []
        for _ in range(args.reloads):
            t0 = time.perf_counter()
            again = testbed.build(args.preset, seed=args.seed, cache_dir=cache)
            loads.append(time.perf_counter() - t0)
            assert again.build_seconds == built.build_seconds, "the reload rebuilt the testbed"
    load = statistics.median(loads)
    print(f"preset={args.preset} seed={args.seed}")
    print(f"build  {build:7.2f} s (recorded by the build: {built.build_seconds:.2f} s)")
    print(f"reload {load:7.2f} s (median of {args.reloads})")
    print(f"build / reload = {build / load:.0f}x")


if __name__ == "__main__":
    main()
