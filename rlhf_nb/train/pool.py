"""Many runs in parallel processes, each cached: :func:`run_all`, the book's one process pool.

Workers are spawned processes, each pinned to one torch thread: on a 2-core machine two
single-thread workers beat one two-thread process (``rlhf_nb.core``). Runs go longest first, so
that no worker idles at the end waiting for one long run, and each distinct run trains once even
when it appears several times (the first seed of a seeded setting is often a sweep's own run).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from rlhf_nb.core import check_int
from rlhf_nb.train.contract import method_of, run
from rlhf_nb.train.runs import Run, run_path


def _worker(args) -> tuple[int, float]:
    i, config, spec, cache_dir, refresh = args
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["TQDM_DISABLE"] = "1"  # the pool prints one line per finished run instead
    from rlhf_nb import testbed as tb_mod

    t0 = time.perf_counter()
    tb = tb_mod.build(spec["preset"], seed=spec["seed"], cache_dir=cache_dir, **spec["overrides"])
    _train_here(args, tb)
    return i, time.perf_counter() - t0  # testbed load included


def _flatten(configs) -> list:
    if isinstance(configs, Mapping):
        return [c for v in configs.values() for c in _flatten(v)]
    if isinstance(configs, Sequence) and not isinstance(configs, str):
        return [c for v in configs for c in _flatten(v)]
    return [configs]


def _unflatten(configs, runs: list[Run]):
    if isinstance(configs, Mapping):
        return {k: _unflatten(v, runs) for k, v in configs.items()}
    if isinstance(configs, Sequence) and not isinstance(configs, str):
        return [_unflatten(v, runs) for v in configs]
    return runs.pop(0)


def run_all(
    configs,
    *,
    preset: str = "tiny",
    testbed_seed: int = 0,
    testbed_overrides: dict | None = None,
    workers: int = 2,
    cache_dir: str | Path | None = None,
    refresh: bool = False,
    verbose: bool = True,
):
    """Train every config not cached yet, ``workers`` at a time in spawned processes, then load
    all runs (:func:`rlhf_nb.train.run`, without policies) in the shape given.

    Args:
        configs: one config, a list, or a dict of configs / lists / dicts (any mix of methods);
            the result has the same shape with a :class:`Run` in place of each config, so that
            ``run_all({"dpo": [...], "simpo": [...]})["dpo"][0]`` needs no regrouping.
        preset, testbed_seed, testbed_overrides: which testbed (``rlhf_nb.testbed.build``).
        workers: parallel processes (1 trains in this process, e.g. for debugging).
        refresh: retrain even when cached.
        verbose: print one line per trained run and the total.
    """
    from rlhf_nb import testbed as tb_mod

    check_int("workers", workers, 1)
    flat = _flatten(configs)
    for c in flat:
        method_of(c)  # a clear TypeError before any work starts
    overrides = dict(testbed_overrides or {})
    tb = tb_mod.build(preset, seed=testbed_seed, cache_dir=cache_dir, **overrides)
    spec = {"preset": preset, "seed": testbed_seed, "overrides": overrides}
    todo, paths = [], set()
    for i, c in enumerate(flat):
        path = run_path(method_of(c)[1], tb, c, cache_dir)
        if path not in paths and (refresh or not path.exists()):  # each distinct run once
            todo.append((i, c, spec, cache_dir, refresh))
        paths.add(path)
    todo.sort(key=lambda job: -job[1].steps)  # longest first: the pool's tail stays short
    t0 = time.perf_counter()
    if todo and workers > 1:
        with mp.get_context("spawn").Pool(min(workers, len(todo))) as pool:
            for i, sec in pool.imap_unordered(_worker, todo):
                if verbose:
                    print(f"  trained {flat[i].label()} seed {flat[i].seed} in {sec:.0f} s",
                          flush=True)  # fmt: skip
    else:
        for job in todo:
            i, sec = _train_here(job, tb)
            if verbose:
                print(f"  trained {flat[i].label()} seed {flat[i].seed} in {sec:.0f} s",
                      flush=True)  # fmt: skip
    if verbose and todo:
        print(f"{len(todo)} runs trained in {time.perf_counter() - t0:.0f} s", flush=True)
    runs = [run(tb, c, cache_dir=cache_dir) for c in flat]
    return _unflatten(configs, runs)


def _train_here(job, tb) -> tuple[int, float]:
    i, config, _, cache_dir, refresh = job
    t0 = time.perf_counter()
    run(tb, config, cache_dir=cache_dir, refresh=refresh)
    return i, time.perf_counter() - t0
