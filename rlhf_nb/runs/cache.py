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
# 3: TRL cross-check runs measure their end-of-run metrics with evaluate.policy_metrics.
# 4: every config field enters the key (no more "only when set" fields) and a preference
#    config's labeller is its name ("gold"/"proxy"), never None. The training loops produce the
#    same runs as under 3, so :func:`rekey` moves a version-3 cache over instead of retraining.
RUNS_CODE_VERSION = 4
# A field added to a config class, with a default that reproduces what the loops trained before
# (e.g. OnlineConfig.reward = "proxy"), changes that class's keys without a version bump;
# :func:`rekey` moves such entries to their new keys (the stored config lacks the field).


def config_key(config: Any, *extra: Any) -> str:
    """A stable hash of a config dataclass (its type name and every field), the ``extra`` values
    (the testbed folder's name) and :data:`RUNS_CODE_VERSION`: the run's cache key. Field
    metadata (the ``--help`` text) is not part of it."""
    payload = json.dumps(
        [type(config).__name__, dataclasses.asdict(config), *map(str, extra), RUNS_CODE_VERSION],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# version 3's keys left these fields out when they had their default (and None meant the
# preference configs' default labeller); :func:`rekey` needs them to recognise a version-3 entry
_V3_IF_SET = {
    "OnlineConfig": {"ref_mix": 1.0, "length_coef": 0.0, "target_entropy": None,
                     "entropy_rate": 0.05, "ensemble": 1, "ensemble_mode": "mean_minus_std",
                     "ensemble_penalty": 1.0},
    "OfflineConfig": {"labeller": None}, "OnlineSimPOConfig": {"labeller": None},
}  # fmt: skip
_V3_LABELLER = {"OfflineConfig": "gold", "OnlineSimPOConfig": "proxy"}


def _v3_key(config_type: str, fields: dict, testbed: str) -> str:
    kept = {
        k: v
        for k, v in fields.items()
        if not (k in _V3_IF_SET.get(config_type, {}) and v == _V3_IF_SET[config_type][k])
    }
    payload = json.dumps([config_type, kept, testbed, 3], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _stored_key(config_type: str, fields: dict, testbed: str) -> str:
    """:func:`config_key` of a config whose fields are ``fields`` as stored (before fields were
    added to its class)."""
    payload = json.dumps([config_type, fields, testbed, RUNS_CODE_VERSION], sort_keys=True,
                         default=str)  # fmt: skip
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def rekey(cache_dir: Path | None = None, *, verbose: bool = True) -> dict[str, int]:
    """Move a run cache to the current keys, in place: for every finished run under
    ``<cache>/runs/<area>/<key>`` whose key is the version-3 key of its stored config on one of
    the cache's testbeds, or the key its stored config had before fields were added to its class
    (their defaults reproduce what it trained, e.g. ``OnlineConfig.reward="proxy"``), write its
    config with those fields filled in (and the labeller named) and move it to
    :func:`config_key` of that config. Valid because neither change altered what a config trains
    (the closing note of version 4 retrained moved runs and found them equal).
    Entries already at
    version 4, or whose testbed is not a built one in the cache (chapter 08's stand-in runs, a few
    seconds to retrain), are left alone. Returns counts
    ``{"moved", "current", "unknown"}``. Command line: ``python -m rlhf_nb.runs --rekey``.
    """
    from rlhf_nb.runs.contract import METHODS

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    testbeds = sorted(p.name for p in (root / "testbed").glob("*"))  # the built testbeds
    counts = {"moved": 0, "current": 0, "unknown": 0}
    for meta_file in sorted((root / "runs").glob("*/*/run.json")):
        entry = meta_file.parent
        meta = json.loads(meta_file.read_text())
        ctype, fields = meta["config_type"], dict(meta["config"])
        if ctype not in METHODS:
            counts["unknown"] += 1
            continue
        if ctype in _V3_LABELLER and fields.get("labeller") is None:
            new_fields = {**fields, "labeller": _V3_LABELLER[ctype]}
        else:
            new_fields = fields
        module, _ = method_of_name(ctype)
        config = getattr(module, ctype)(**new_fields)
        if any(config_key(config, tb) == entry.name for tb in testbeds):
            counts["current"] += 1
            continue
        match = [tb for tb in testbeds if _v3_key(ctype, fields, tb) == entry.name]
        if not match and set(dataclasses.asdict(config)) - set(fields):  # fields added since
            match = [tb for tb in testbeds if _stored_key(ctype, fields, tb) == entry.name]
        if not match:
            counts["unknown"] += 1
            continue
        target = entry.parent / config_key(config, match[0])
        meta["config"] = dataclasses.asdict(config)
        meta_file.write_text(json.dumps(meta, indent=1, default=str))
        if target.exists():
            shutil.rmtree(target)
        entry.rename(target)
        counts["moved"] += 1
    if verbose:
        print(f"rekeyed {root / 'runs'}: {counts}")
    return counts


def method_of_name(config_type: str):
    """``(module, cache area)`` of the method whose config class is named ``config_type``."""
    import importlib

    from rlhf_nb.runs.contract import METHODS

    module_name, area = METHODS[config_type]
    return importlib.import_module(module_name), area


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
_LAST_USE: dict[str, str] = {}  # this process's last lookup of each entry: "loaded" / "trained"


def last_use(path: Path) -> str | None:
    """How this process last got the run cached at ``path``: ``"trained"`` (it trained it),
    ``"loaded"`` (it was in the cache, or another process trained it while this one waited for
    its lock), or ``None`` (not asked for here). The pool uses it to say "trained" only for runs
    a worker really trained."""
    return _LAST_USE.get(str(path))


def _log_use(path: Path, how: str) -> None:
    """Append ``path<TAB>how`` (``loaded`` or ``trained``) to ``$RLHF_NB_CACHE_LOG`` when set.

    ``make book`` sets it per chapter (``build/executed/logs/STEM.runs.tsv``), so that
    ``benchmarks/book_cost.py --executed`` can say which runs each chapter trains and loads.
    """
    _LAST_USE[str(path)] = how
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
