"""One format for every training run, online (``rlhf_nb.train.online``) or offline
(``rlhf_nb.train.offline``), and the summary table of a list of runs.

A :class:`Run` is a config, a history (a ``pandas.DataFrame``, one row per logged step), a status
and the trained policy. The same plotting code (``rlhf_nb.viz.run_plots``) draws any of them,
and the same on-disk cache stores finished runs so that the book re-renders without re-training.

History columns shared by all runs (NaN where a run does not measure a quantity at a step):

=============  ==================================================================  =============
column         meaning                                                             unit
=============  ==================================================================  =============
step           optimiser steps taken when the row was logged                       count
gold           mean gold reward of the policy's samples                            reward units
proxy          mean proxy-RM reward of the policy's samples                        RM logits
kl_k1          mean over samples of sum_t log(pi/pi_sft)  (k1, sequence level)     nats/sequence
kl_k3          mean over samples of sum_t k3 per token (Schulman)                  nats/sequence
entropy_token  mean per-token entropy of the policy along its samples              nats/token
entropy_seq    mean of -log pi(y|x) over samples (sequence entropy estimate)       nats/sequence
length         mean response length (tokens, EOS included when produced)           tokens
eos_rate       fraction of samples that ended with EOS within the budget           fraction
win_rate       P(gold(sample) > gold(reference)) on the fixed eval prompts         fraction
seconds        wall time of the step                                               s
=============  ==================================================================  =============

Runs may add their own columns (``loss``, ``grad_norm``, ``margin``, ``accuracy``...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rlhf_nb.core import cache_lock, default_cache_dir

STATUSES = ("running", "finished", "diverged", "interrupted")
COLUMNS = (
    "step", "gold", "proxy", "kl_k1", "kl_k3", "entropy_token", "entropy_seq",
    "length", "eos_rate", "win_rate", "seconds",
)  # fmt: skip


@dataclass
class Run:
    """A training run.

    Attributes:
        config: the run's config dataclass (``OnlineConfig`` / ``OfflineConfig``).
        history: one row per logged step; at least :data:`COLUMNS` (NaN where not measured).
        status: ``"finished"``, ``"diverged"`` (non-finite loss/reward; ``message`` says where),
            ``"interrupted"`` (KeyboardInterrupt; resumable) or ``"running"``.
        policy: the trained model (``None`` when loaded from the cache without weights).
        message: a human-readable note on how the run ended.
        samples: step -> a few decoded samples, to show what the policy learned.
    """

    config: Any
    history: pd.DataFrame
    status: str = "running"
    policy: Any = None
    message: str = ""
    samples: dict[int, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def label(self) -> str:
        """A short legend label (the config's ``label()`` when it has one)."""
        fn = getattr(self.config, "label", None)
        return fn() if callable(fn) else type(self.config).__name__

    def final(self, column: str) -> float:
        """The last non-NaN value of a history column."""
        s = self.history[column].dropna()
        return float(s.iloc[-1]) if len(s) else float("nan")

    def value_at(self, column: str, step: int) -> float:
        """The last non-NaN value of ``column`` logged at or before ``step``."""
        s = self.history.set_index("step")[column].dropna()
        return float(s[s.index <= step].iloc[-1])

    def slope(self, column: str, frac: float = 0.25) -> float:
        """Least-squares slope of ``column`` over the last ``frac`` of the run's steps, per 100
        steps (e.g. nats/100 steps for ``kl_k1``): is it still rising when the run ends?"""
        import numpy as np

        h = self.history[["step", column]].dropna()
        h = h[h["step"] >= (1 - frac) * h["step"].max()]
        return 100 * float(np.polyfit(h["step"], h[column], 1)[0])


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


def summary_table(
    runs: Sequence, *, gold: str = "gold", kl: str = "kl_k1", smooth: int = 1
) -> pd.DataFrame:
    """One row per run: start / peak (and its step) / final gold, final proxy, KL, length, EOS
    rate, win rate and status. ``gold`` and ``kl`` name the columns to summarise; ``smooth > 1``
    takes gold's start, peak and final from a centred rolling mean over that many logged rows
    (a per-step batch mean is noisy, and the max of noise is biased upward); same for proxy
    and KL."""
    rows = []
    for run in runs:
        h = run.history
        g = h[["step", gold]].dropna()
        if smooth > 1:
            g = g.assign(**{gold: g[gold].rolling(smooth, center=True, min_periods=1).mean()})
        p = h[["proxy"]].dropna() if "proxy" in h else pd.DataFrame(columns=["proxy"])
        k = h[[kl]].dropna() if kl in h else pd.DataFrame(columns=[kl])
        if smooth > 1:
            p = p.rolling(smooth, center=True, min_periods=1).mean()
            if len(k) >= smooth:  # a run that measured KL only once or twice keeps its values
                k = k.rolling(smooth, center=True, min_periods=1).mean()
        peak = g[gold].idxmax() if len(g) else None
        rows.append(
            {
                "run": run.label,
                "status": run.status,
                "steps": int(h["step"].max()) if len(h) else 0,
                f"{gold}_start": float(g[gold].iloc[0]) if len(g) else math.nan,
                f"{gold}_peak": float(g.loc[peak, gold]) if peak is not None else math.nan,
                "peak_step": int(g.loc[peak, "step"]) if peak is not None else -1,
                f"{gold}_final": float(g[gold].iloc[-1]) if len(g) else math.nan,
                "proxy_start": _first(p, "proxy"),
                "proxy_final": _first(p.iloc[::-1], "proxy"),
                f"{kl}_final": _first(k.iloc[::-1], kl),
                "length_final": run.final("length") if "length" in h else math.nan,
                "eos_final": run.final("eos_rate") if "eos_rate" in h else math.nan,
                "win_final": run.final("win_rate") if "win_rate" in h else math.nan,
            }
        )
    return pd.DataFrame(rows).set_index("run")


def _first(h: pd.DataFrame, col: str) -> float:
    s = h[col].dropna() if col in h else pd.Series(dtype=float)
    return float(s.iloc[0]) if len(s) else math.nan


def samples_table(
    run, steps: Sequence[int] | None = None, n: int = 3, *, near: int | None = None
) -> pd.DataFrame:
    """A few decoded samples the run stored (``run.samples``) at ``steps`` (default: all), or,
    with ``near=s``, at the first stored step, the stored step closest to ``s`` and the last.
    ``text`` is the sample as stored; ``response`` the part after the task's ``TL;DR:``
    separator (``"(empty)"`` for an immediate EOS)."""
    from rlhf_nb.testbed.task import SEPARATOR

    stored = sorted(run.samples)
    if near is not None and stored:
        steps = sorted({stored[0], min(stored, key=lambda s: abs(s - near)), stored[-1]})
    steps = stored if steps is None else list(steps)
    rows = [
        {"step": s, "sample": i, "text": t,
         "response": t.split(SEPARATOR)[-1].strip() or "(empty)"}
        for s in steps
        for i, t in enumerate(run.samples.get(s, [])[:n])
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["step", "sample", "text", "response"])
