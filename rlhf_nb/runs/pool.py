"""The book's one process pool, and :func:`get_runs`, the one way to get runs.

Workers are spawned processes, each pinned to one torch thread: for models this small one
process per core beats one process with several threads (``rlhf_nb.core``). ``workers="auto"``
(the default everywhere) is the number of cores this process may use
(``os.sched_getaffinity``; ``taskset`` restricts it). Runs go longest first, so that no worker
idles at the end waiting for one long run, and each distinct run trains once even when it
appears several times (a seeded setting's first seed is often a sweep's own run).
Testbed builds (chapter 04) use the same pool through :func:`parallel_map`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from rlhf_nb.core import check_int
from rlhf_nb.runs.cache import last_use, run_path
from rlhf_nb.runs.contract import method_of, run
from rlhf_nb.runs.seeds import SeedRuns, with_seeds


def resolve_workers(workers: int | str = "auto") -> int:
    """``"auto"`` → the cores this process may run on; an int ≥ 1 as given (``ValueError``
    naming ``workers`` otherwise)."""
    if workers == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # macOS, Windows
            return max(1, os.cpu_count() or 1)
    check_int("workers", workers, 1)
    return workers


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["TQDM_DISABLE"] = "1"  # the pool prints one line per finished job instead


def parallel_map(fn: Callable, jobs: Sequence, *, workers: int | str = "auto") -> list:
    """``[fn(job) for job in jobs]``, ``workers`` at a time in spawned single-thread processes
    (in this process when ``workers`` or the number of jobs is 1). ``fn`` must be a module-level
    function (spawn pickles it by name)."""
    workers = resolve_workers(workers)
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_init_worker) as p:
            return p.map(fn, jobs)
    return [fn(j) for j in jobs]


def _run_once(tb, config, cache_dir, refresh) -> str:
    """Train (or load) one run; ``"trained"`` or ``"loaded"`` (another chapter's process trained
    it while this one waited for the entry's lock)."""
    run(tb, config, cache_dir=cache_dir, refresh=refresh)
    return last_use(run_path(method_of(config)[1], tb, config, cache_dir)) or "trained"


def _worker(args) -> tuple[int, float, str]:
    i, config, spec, cache_dir, refresh = args
    from rlhf_nb import testbed as tb_mod

    t0 = time.perf_counter()
    tb = tb_mod.build(spec["preset"], seed=spec["seed"], cache_dir=cache_dir, **spec["overrides"])
    how = _run_once(tb, config, cache_dir, refresh)
    return i, time.perf_counter() - t0, how  # testbed load included


def _is_leaf(x) -> bool:
    return not isinstance(x, Mapping) and not (isinstance(x, Sequence) and not isinstance(x, str))


def _flatten(configs) -> list:
    if isinstance(configs, Mapping):
        return [c for v in configs.values() for c in _flatten(v)]
    if not _is_leaf(configs):
        return [c for v in configs for c in _flatten(v)]
    return [configs]


def _unflatten(configs, leaves: list):
    if isinstance(configs, Mapping):
        return {k: _unflatten(v, leaves) for k, v in configs.items()}
    if not _is_leaf(configs):
        return [_unflatten(v, leaves) for v in configs]
    return leaves.pop(0)


def get_runs(
    configs,
    *,
    seeds: Sequence[int] | None = None,
    testbed=None,
    preset: str = "tiny",
    testbed_seed: int = 0,
    testbed_overrides: dict | None = None,
    workers: int | str = "auto",
    cache_dir: str | Path | None = None,
    refresh: bool = False,
    verbose: bool = True,
):
    """The runs of ``configs`` on one testbed: loaded from the cache, or trained (``workers``
    at a time in spawned processes) and cached, then returned in the shape given.

    Args:
        configs: one config, a list, or a dict of configs / lists / dicts (any mix of methods);
            the result has the same shape with a :class:`Run` in place of each config, so that
            ``get_runs({"dpo": [...], "simpo": [...]})["dpo"][0]`` needs no regrouping.
        seeds: when given, each config is run at each of these seeds
            (:func:`~rlhf_nb.runs.seeds.with_seeds`) and becomes one
            :class:`~rlhf_nb.runs.seeds.SeedRuns` in the result.
        testbed: a testbed object to train on in this process (e.g. chapter 08's real models,
            which a worker process cannot rebuild by name); otherwise ``preset``,
            ``testbed_seed`` and ``testbed_overrides`` say which testbed
            (``rlhf_nb.testbed.build``), and workers rebuild (load) it from the cache.
        workers: parallel processes, ``"auto"`` = this machine's cores (1 trains here).
        refresh: retrain even when cached.
        verbose: print one line per trained run and the total.

    Cached runs keep their history, status, message and samples, not the policy weights.
    """
    from rlhf_nb import testbed as tb_mod

    asked, workers = workers, resolve_workers(workers)
    seeds = None if seeds is None else tuple(int(s) for s in seeds)
    leaves = _flatten(configs)
    for c in leaves:
        method_of(c)  # a clear TypeError before any work starts
    flat = [x for c in leaves for x in (with_seeds(c, seeds) if seeds else [c])]
    overrides = dict(testbed_overrides or {})
    if testbed is not None:
        tb, workers = testbed, 1
    else:
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
    if verbose and todo:
        print(f"training {len(todo)} runs, {min(workers, len(todo))} at a time "
              f"(workers={asked!r}; this process may use {resolve_workers('auto')} cores)",
              flush=True)  # fmt: skip

    waited = 0  # runs another process (a chapter beside this one) trained under the lock

    def done(i: int, sec: float, k: int, how: str) -> None:
        nonlocal waited
        waited += how == "loaded"
        if verbose:
            elapsed = time.perf_counter() - t0
            what = "trained" if how == "trained" else "loaded (another process trained it) after"
            print(f"  [{k}/{len(todo)}] {what} {flat[i].label()} seed {flat[i].seed} in "
                  f"{sec:.0f} s ({elapsed:.0f} s elapsed)", flush=True)  # fmt: skip

    if todo and workers > 1 and len(todo) > 1:
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(workers, len(todo)), initializer=_init_worker) as pool:
            for k, (i, sec, how) in enumerate(pool.imap_unordered(_worker, todo), 1):
                done(i, sec, k, how)
    else:
        for k, (i, c, _, _, _) in enumerate(todo, 1):
            t1 = time.perf_counter()
            how = _run_once(tb, c, cache_dir, refresh)
            done(i, time.perf_counter() - t1, k, how)
    if verbose and todo:
        extra = f"; {waited} more loaded after another process trained them" if waited else ""
        print(f"{len(todo) - waited} runs trained in {time.perf_counter() - t0:.0f} s, "
              f"{min(workers, len(todo))} at a time{extra}", flush=True)  # fmt: skip
    runs = [run(tb, c, cache_dir=cache_dir) for c in flat]
    if seeds:
        n = len(seeds)
        grouped = [SeedRuns(replace(c, seed=seeds[0]), runs[j * n : (j + 1) * n], seeds)
                   for j, c in enumerate(leaves)]  # fmt: skip
        return _unflatten(configs, grouped)
    return _unflatten(configs, runs)
