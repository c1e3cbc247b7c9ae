"""The on-disk cache of finished runs: key, save/load, lock, and the build's run log.

A run is stored under ``<cache>/runs/<area>/<key>`` (:func:`run_path`), ``key`` a hash of its
config, the testbed's folder name and :data:`RUNS_CODE_VERSION` (:func:`config_key`). Training
holds the entry's lock (:func:`rlhf_nb.core.cache_lock`), so two chapters asking for the same run
train it once. Used by :mod:`rlhf_nb.runs.contract` (every method) and the online loop's
resumable checkpoints (``area="checkpoints"``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from rlhf_nb.core import cache_lock, default_cache_dir
from rlhf_nb.runs.record import Run

# Part of every run's cache key: bump it when a change to a training loop alters what it
# produces for the same config (even by float rounding), so that stale cached runs are not shown.
# 2: the online loop runs each prompt once per group (shared KV cache) and scores token ids.
# 3: TRL cross-check runs measure their end-of-run metrics with offline_eval.policy_metrics.
RUNS_CODE_VERSION = 3


KEY_IF_SET = {"key": "if_set"}  # field metadata: the field enters the key only when not default


def config_key(config: Any, *extra: Any) -> str:
    """A stable hash of a config dataclass plus e.g. the testbed key (and ``RUNS_CODE_VERSION``):
    the run's cache key. Fields declared with ``metadata=KEY_IF_SET`` (options added after runs
    were cached) enter the key only when set to a non-default value, so adding an option does
    not invalidate the runs that never used it."""
    fields = dataclasses.asdict(config)
    for f in dataclasses.fields(config):
        if f.metadata.get("key") == "if_set" and fields[f.name] == f.default:
            del fields[f.name]
    payload = json.dumps(
        [type(config).__name__, fields, *map(str, extra), RUNS_CODE_VERSION],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def save_run(run: Run, path: Path, *, weights: bool = False) -> Path:
    """Write ``run`` to ``path`` atomically (temp folder, then rename): history as CSV, config,
    status, message and samples as JSON, the policy via ``save_pretrained`` when ``weights``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    run.history.to_csv(tmp / "history.csv", index=False)
    meta = {
        "config_type": type(run.config).__name__,
        "config": dataclasses.asdict(run.config),
        "status": run.status,
        "message": run.message,
        "samples": {str(k): v for k, v in run.samples.items()},
    }
    (tmp / "run.json").write_text(json.dumps(meta, indent=1, default=str))
    if weights and run.policy is not None:
        run.policy.save_pretrained(tmp / "policy")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def load_run(path: Path, config_cls: type | None = None) -> Run:
    """Read a run written by :func:`save_run` (the policy is loaded only if weights were saved)."""
    path = Path(path)
    meta = json.loads((path / "run.json").read_text())
    config = config_cls(**meta["config"]) if config_cls is not None else meta["config"]
    policy = None
    if (path / "policy").exists():
        from transformers import AutoModelForCausalLM

        policy = AutoModelForCausalLM.from_pretrained(path / "policy")
    return Run(
        config=config,
        history=pd.read_csv(path / "history.csv"),
        status=meta["status"],
        policy=policy,
        message=meta["message"],
        samples={int(k): v for k, v in meta["samples"].items()},
    )


def run_path(
    kind: str, testbed, config: Any, cache_dir: Path | None = None, *, area: str = "runs"
) -> Path:
    """Where the run of ``config`` on ``testbed`` lives: ``<cache>/<area>/<kind>/<key>``, with
    ``key = config_key(config, testbed folder name)``. ``area="runs"`` is the finished-run cache
    (:func:`cached_training`), ``area="checkpoints"`` a training loop's resumable checkpoints."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / area / kind / config_key(config, testbed.path.name)


def cached_training(
    kind: str,
    testbed,
    config: Any,
    train: Callable[[], Run],
    *,
    cache_dir: Path | None = None,
    refresh: bool = False,
) -> Run:
    """:func:`cached_run` keyed by ``config`` and the testbed it trains on: the one cache that
    online, online-SimPO and offline runs share (:func:`run_path`).
    ``train`` is called without arguments only on a cache miss."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return _cached_at(root, run_path(kind, testbed, config, root), train, type(config), refresh)


def cached_run(
    kind: str,
    key: str,
    train: Callable[[], Run],
    *,
    config_cls: type | None = None,
    cache_dir: Path | None = None,
    refresh: bool = False,
) -> Run:
    """Return the cached run ``cache_dir/runs/<kind>/<key>`` or train, cache and return it.

    Only finished or diverged runs are cached (an interrupted run is resumed, not reused). An
    unreadable cache entry is retrained with a warning, never a crash. Training holds the
    entry's lock (:func:`rlhf_nb.core.cache_lock`): a second process asking for the same run
    meanwhile waits and then loads it, instead of training it twice.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return _cached_at(root, root / "runs" / kind / key, train, config_cls, refresh)


CACHE_LOG_ENV = "RLHF_NB_CACHE_LOG"  # a file: every run-cache lookup appends "path<TAB>how"


def _log_use(path: Path, how: str) -> None:
    """Append ``path<TAB>how`` (``loaded`` or ``trained``) to ``$RLHF_NB_CACHE_LOG`` when set.

    ``make book`` sets it per chapter (``build/executed/logs/STEM.runs.tsv``), so that
    ``benchmarks/book_cost.py --executed`` can say which runs each chapter trains and loads.
    """
    log = os.environ.get(CACHE_LOG_ENV)
    if log:
        try:
            with open(log, "a") as f:
                f.write(f"{path}\t{how}\n")
        except OSError as exc:  # a record of the build must never stop a run
            warnings.warn(f"{CACHE_LOG_ENV}={log} not writable ({exc}); not logged", stacklevel=3)


def read_cache_log(log) -> list[tuple[str, str]]:
    """The ``(path, how)`` lines :func:`_log_use` appended to ``log`` (``how`` is ``"loaded"`` or
    ``"trained"``), in order; a missing file reads as none, and a half-written last line (a
    build still running) is skipped."""
    log = Path(log)
    if not log.exists():
        return []
    rows = [line.split("\t") for line in log.read_text().splitlines()]
    return [(r[0], r[1]) for r in rows if len(r) == 2 and r[1] in ("loaded", "trained")]


def _cached_at(
    root: Path, path: Path, train: Callable[[], Run], config_cls: type | None, refresh: bool
) -> Run:
    def load() -> Run | None:
        try:
            return load_run(path, config_cls)
        except Exception as exc:  # noqa: BLE001 - any unreadable entry means "retrain"
            warnings.warn(f"run cache {path} unreadable ({exc}); retraining", stacklevel=4)
            return None

    if path.exists() and not refresh and (found := load()) is not None:
        _log_use(path, "loaded")
        return found
    with cache_lock(root, path):
        # another process may have trained it while this one waited for the lock
        if path.exists() and not refresh and (found := load()) is not None:
            _log_use(path, "loaded")
            return found
        run = train()
        _log_use(path, "trained")
        if run.status in ("finished", "diverged"):
            save_run(run, path)
    return run
