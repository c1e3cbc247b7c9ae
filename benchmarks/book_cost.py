"""Where a cold `make book` spends its time: the seconds of each cached run and testbed build.

Reads a run cache (default ``$RLHF_NB_CACHE`` or ``.cache``) after a build and prints, per method
and per setting, the seconds each run spent training (online: the sum of its per-step wall
times; offline and online SimPO: the time in its message; TRL: seconds per step × steps), the
testbed builds, and the share of 2 cores that a given wall time represents. It measures what the
issue-10 budget is made of; it asserts nothing.

What is recorded is each run's own wall time, so "run-s" (and "run-min") equal core-seconds only
when every run had a core to itself, as in one chapter's pool of 2 workers on 2 cores. In a
``make book`` that ran several chapters' pools at once (more processes than cores) they overstate
the CPU; the build's CPU is what ``/usr/bin/time`` reports for the executor.

    .venv/bin/python benchmarks/book_cost.py [CACHE_DIR] [--wall SECONDS]
    .venv/bin/python benchmarks/book_cost.py --executed build/executed

``--executed`` reads the per-chapter run logs that ``make book`` writes
(``build/executed/logs/STEM.runs.tsv``: every run a chapter loaded or trained) and prints, per
chapter, the run-minutes of the runs it adds to a cold build (those it trained; in a warm build,
those no earlier chapter uses) and of those it reuses from other chapters, with its largest
settings.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
from pathlib import Path

import pandas as pd

from rlhf_nb.runs.cache import read_cache_log


def run_seconds(run_dir: Path, kind: str) -> float:
    meta = json.loads((run_dir / "run.json").read_text())
    history = pd.read_csv(run_dir / "history.csv")
    found = re.search(r"in (\d+) s", meta.get("message", ""))
    if kind == "trl":
        return float(history["seconds"].iloc[-1]) * meta["config"]["steps"]
    if found:
        return float(found.group(1))
    return float(history["seconds"].dropna().sum())


def label(meta: dict) -> str:
    """The config's legend label and length, e.g. ``α=0 (seq), lr=1e-04, 600 steps``."""
    import importlib

    from rlhf_nb.notation import CONFIGS

    cls = getattr(importlib.import_module(CONFIGS[meta["config_type"]]), meta["config_type"])
    return f"{cls(**meta['config']).label()}, {meta['config']['steps']} steps"


def per_chapter(executed: Path) -> None:
    """Per chapter: the runs it trained and loaded (its ``logs/STEM.runs.tsv``), in run-min."""
    logs = sorted((executed / "logs").glob("*.runs.tsv"))
    if not logs:
        raise SystemExit(f"no run logs under {executed / 'logs'}: run `make book` first")
    timings = executed / "timings.json"
    wall = json.loads(timings.read_text())["seconds"] if timings.exists() else {}
    # each run is charged to the chapter that trained it; in a warm build (nothing trained) to
    # the first chapter in book order that used it: what that chapter adds to a cold build
    uses = {log: read_cache_log(log) for log in logs}  # skips a half-written last line
    trainer = {}
    for how in ("trained", "loaded"):
        for log, us in uses.items():
            for path, used in us:
                if used == how:
                    trainer.setdefault(path, log.name.removesuffix(".runs.tsv"))
    for log, us in uses.items():
        stem = log.name.removesuffix(".runs.tsv")
        trained, loaded = collections.defaultdict(list), 0.0
        for path in dict.fromkeys(path for path, _ in us):
            run_dir = Path(path)
            if not (run_dir / "run.json").exists():
                continue
            sec = run_seconds(run_dir, run_dir.parent.name)
            if trainer[path] == stem:
                meta = json.loads((run_dir / "run.json").read_text())
                trained[f"{run_dir.parent.name}: {label(meta)}"].append(sec)
            else:
                loaded += sec
        total = sum(map(sum, trained.values()))
        took = f", {wall[stem]:.0f} s wall" if stem in wall else ""
        print(f"{stem}: adds {total / 60:.1f} run-min, reuses {loaded / 60:.1f}{took}")
        for name, secs in sorted(trained.items(), key=lambda kv: -sum(kv[1]))[:8]:
            print(f"  {sum(secs):6.0f} s  x{len(secs)}  {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", nargs="?", default=os.environ.get("RLHF_NB_CACHE", ".cache"))
    ap.add_argument("--wall", type=float, help="the build's wall seconds, for the core share")
    ap.add_argument("--executed", type=Path, help="per chapter, from make book's run logs")
    args = ap.parse_args()
    if args.executed:
        return per_chapter(args.executed)
    root = Path(args.cache)
    per_kind, per_setting = collections.Counter(), collections.defaultdict(list)
    for kind_dir in sorted((root / "runs").glob("*")):
        for run_dir in kind_dir.glob("*"):
            if not (run_dir / "run.json").exists():
                continue
            meta = json.loads((run_dir / "run.json").read_text())
            sec = run_seconds(run_dir, kind_dir.name)
            per_kind[kind_dir.name] += sec
            per_setting[(kind_dir.name, label(meta))].append(sec)
    builds = {p.parent.name: json.loads(p.read_text())["build_seconds"]
              for p in (root / "testbed").glob("*/meta.json")}  # fmt: skip
    total = sum(per_kind.values()) + sum(builds.values())
    print(f"cache {root}: {sum(map(len, per_setting.values()))} runs, {len(builds)} testbeds")
    for kind, sec in per_kind.most_common():
        print(f"  {kind:13s} {sec:8.0f} run-s")
    print(f"  {'testbeds':13s} {sum(builds.values()):8.0f} run-s")
    print(f"  {'total':13s} {total:8.0f} run-s = {total / 60:.1f} run-min")
    if args.wall:
        print(f"  busy share of 2 cores over {args.wall:.0f} s: {total / (2 * args.wall):.0%}")
    print("largest settings (run-s, one entry per seed):")
    rows = sorted(per_setting.items(), key=lambda kv: -sum(kv[1]))[:12]
    for (kind, name), secs in rows:
        print(f"  {sum(secs):6.0f}  {kind:12s} {name:48s} {[round(s) for s in secs]}")


if __name__ == "__main__":
    main()
