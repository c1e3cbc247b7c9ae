"""Several seeds of one setting: per-step mean and 95 % band, per-seed summaries, and whether two
settings differ beyond seed noise (chapters 04-06, and the CI science test).

A claim about a training run holds across seeds or it is not a claim: float32 training follows
another trajectory on another CPU (other vector units, other BLAS paths), on an ARM laptop or on
a GPU, so the book states its findings as statements that hold for every seed it ran, with the
seed spread written next to each threshold.

* :func:`run_seeds` trains ``config`` at each seed (``dataclasses.replace(config, seed=s)``) for
  every config given, ``workers`` at a time in spawned processes, each run cached like every
  other run (:func:`rlhf_nb.runs.cached_training`), and returns one :class:`SeedRuns` per config.
* :meth:`SeedRuns.band` is the per-step mean over seeds and its 95 % confidence band
  (Student t on the seed means: mean ± t_{0.975, n-1}·sd/√n), plus the min and max over seeds.
* :meth:`SeedRuns.summaries` is one row per seed of :func:`rlhf_nb.run_plots.summary_table`;
  :meth:`SeedRuns.stat` one summary statistic as mean / sd / band / min / max / n.
* :func:`differ` is a bootstrap 95 % CI of the difference of two settings' means (seeds
  resampled within each setting); the settings differ beyond seed noise when it excludes 0.
* :func:`margin` says how far a threshold sits from the seed values, in seed SDs: the number a
  checkpoint writes next to its assertion; :func:`holds` is that checkpoint (every seed beyond
  the threshold, and the threshold at least :data:`MIN_MARGIN` seed SDs from the mean).
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from rlhf_nb.runs import Run, run_path

LEVEL = 0.95  # every band and interval of the book is a 95 % one


def kind_of(config: Any) -> str:
    """The cache area of a config's runs: ``online``, ``online_simpo``, ``offline`` or ``trl``."""
    from rlhf_nb.offline import OfflineConfig
    from rlhf_nb.online_config import OnlineConfig
    from rlhf_nb.online_pairs import OnlineSimPOConfig
    from rlhf_nb.trl_check import GRPOCheckConfig

    if isinstance(config, GRPOCheckConfig):
        return "trl"
    if isinstance(config, OnlineSimPOConfig):
        return "online_simpo"
    if isinstance(config, OfflineConfig):
        return "offline"
    if isinstance(config, OnlineConfig):
        return "online"
    raise TypeError(f"config must be an OnlineConfig, OfflineConfig, OnlineSimPOConfig or "
                    f"GRPOCheckConfig, got {type(config).__name__}")  # fmt: skip


def cached_train(testbed, config: Any, *, cache_dir=None, refresh: bool = False) -> Run:
    """Train ``config`` on ``testbed`` (or load it from the cache), whatever its method."""
    kind = kind_of(config)
    if kind == "online":
        from rlhf_nb.sweep import cached_train as train
    elif kind == "online_simpo":
        from rlhf_nb.online_pairs import cached as train
    elif kind == "trl":
        from rlhf_nb.trl_check import cached as train
    else:
        from rlhf_nb.offline import cached as train
    return train(testbed, config, cache_dir=cache_dir, refresh=refresh)


def with_seeds(config: Any, seeds: Sequence[int]) -> list[Any]:
    """``config`` at each seed: ``[dataclasses.replace(config, seed=s) for s in seeds]``."""
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct ints, got {seeds}")
    return [dataclasses.replace(config, seed=int(s)) for s in seeds]


@dataclass
class SeedRuns:
    """One setting (a config) trained at several seeds.

    Attributes:
        config: the setting (its ``seed`` field is the first seed's).
        runs: one :class:`Run` per seed, in the order of ``seeds``.
        seeds: the run seeds.
    """

    config: Any
    runs: list[Run]
    seeds: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def label(self) -> str:
        """The setting's legend label plus ``(n seeds)``."""
        fn = getattr(self.config, "label", None)
        base = fn() if callable(fn) else type(self.config).__name__
        return f"{base}, {self.n} seeds"

    def band(self, column: str, *, x: str = "step", level: float = LEVEL) -> pd.DataFrame:
        """Per-step mean of ``column`` over seeds and its ``level`` confidence band.

        Returns a frame indexed by ``x`` with ``mean``, ``lo``, ``hi`` (Student-t band of the
        mean; equal to the mean where only one seed logged the step), ``min``, ``max`` and ``n``
        (seeds that logged the step). Steps logged by fewer seeds (a diverged run) keep the seeds
        that have them.
        """
        wide = pd.concat(
            [r.history.set_index(x)[column].rename(i) for i, r in enumerate(self.runs)], axis=1
        ).dropna(how="all")
        n = wide.notna().sum(axis=1)
        mean, sd = wide.mean(axis=1), wide.std(axis=1, ddof=1).fillna(0.0)
        half = _t(level, n) * sd / np.sqrt(n)
        return pd.DataFrame(
            {"mean": mean, "lo": mean - half, "hi": mean + half,
             "min": wide.min(axis=1), "max": wide.max(axis=1), "n": n}
        )  # fmt: skip

    def summaries(self, *, smooth: int = 1) -> pd.DataFrame:
        """One row per seed (index ``seed``): :func:`rlhf_nb.run_plots.summary_table` plus
        ``gold_fall`` = peak − final gold (how far the run fell from its best)."""
        from rlhf_nb.run_plots import summary_table

        table = summary_table(self.runs, smooth=smooth).reset_index(drop=True)
        table.index = pd.Index(self.seeds, name="seed")
        if {"gold_peak", "gold_final"} <= set(table):
            table["gold_fall"] = table["gold_peak"] - table["gold_final"]
        return table

    def stat(self, column: str, *, smooth: int = 1, level: float = LEVEL) -> Stat:
        """One summary statistic (a column of :meth:`summaries`) over seeds."""
        return Stat.of(self.summaries(smooth=smooth)[column], level=level)

    def final(self, column: str, *, level: float = LEVEL) -> Stat:
        """The last logged value of a history column (:meth:`Run.final`) over seeds."""
        return Stat.of([r.final(column) for r in self.runs], level=level)


@dataclass(frozen=True)
class Stat:
    """A quantity measured at several seeds: mean, sample SD, ``level`` band of the mean
    (Student t), min, max and the number of seeds. ``str`` gives ``mean ± half-band (n=3)``."""

    mean: float
    sd: float
    lo: float
    hi: float
    min: float
    max: float
    n: int
    values: tuple[float, ...]

    @classmethod
    def of(cls, values, *, level: float = LEVEL) -> Stat:
        v = np.asarray(list(values), dtype=float)
        if v.size == 0 or not np.isfinite(v).all():
            raise ValueError(f"need finite values at one or more seeds, got {v.tolist()}")
        sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
        half = float(_t(level, v.size)) * sd / math.sqrt(v.size)
        m = float(v.mean())
        return cls(m, sd, m - half, m + half, float(v.min()), float(v.max()), int(v.size),
                   tuple(float(x) for x in v))  # fmt: skip

    def __str__(self) -> str:
        return self.fmt()

    def fmt(self, digits: int = 2) -> str:
        """``mean ± half-width of the 95 % band (n seeds, range min–max)``."""
        f = f"{{:.{digits}f}}"
        half = (self.hi - self.lo) / 2
        return (f"{f.format(self.mean)} ± {f.format(half)} (n={self.n}, "
                f"range {f.format(self.min)} to {f.format(self.max)})")  # fmt: skip


def _t(level: float, n) -> np.ndarray | float:
    """The two-sided Student-t quantile for ``n`` values (0 where n < 2: no band)."""
    n = np.asarray(n, dtype=float)
    q = stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1))
    return np.where(n > 1, q, 0.0)


@dataclass(frozen=True)
class Difference:
    """Mean of ``a`` minus mean of ``b`` with a bootstrap ``level`` CI; ``differs`` when the CI
    excludes zero (the two settings differ beyond seed noise)."""

    mean: float
    lo: float
    hi: float
    n_a: int
    n_b: int

    @property
    def differs(self) -> bool:
        return self.lo > 0 or self.hi < 0

    def __str__(self) -> str:
        verdict = "differ beyond seed noise" if self.differs else "within seed noise"
        return (f"{self.mean:+.2f} [{self.lo:+.2f}, {self.hi:+.2f}] "
                f"(95% bootstrap CI, {self.n_a} vs {self.n_b} seeds: {verdict})")  # fmt: skip


def differ(a, b, *, n_boot: int = 10_000, level: float = LEVEL, seed: int = 0) -> Difference:
    """Bootstrap CI of mean(a) − mean(b), seeds resampled with replacement within each setting.

    Args:
        a, b: one value per seed of each setting (a :class:`Stat`, a list or an array).
        n_boot: bootstrap resamples; ``seed`` seeds them (the verdict is reproducible).

    With 2-3 seeds per setting the percentile bootstrap is coarse (its CI spans the observed
    extremes); it is meant for differences much larger than the seed spread, which is what the
    book's claims are.
    """
    a = np.asarray(a.values if isinstance(a, Stat) else list(a), dtype=float)
    b = np.asarray(b.values if isinstance(b, Stat) else list(b), dtype=float)
    if a.size < 1 or b.size < 1 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"a and b need finite values at one or more seeds, got {a}, {b}")
    rng = np.random.default_rng(seed)
    boot = rng.choice(a, (n_boot, a.size)).mean(1) - rng.choice(b, (n_boot, b.size)).mean(1)
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return Difference(float(a.mean() - b.mean()), float(lo), float(hi), a.size, b.size)


def margin(values, threshold: float) -> float:
    """How far ``threshold`` sits from the seed values, in seed SDs: |mean − threshold| / sd
    (``inf`` when every seed gave the same value). A checkpoint writes it next to its
    assertion; the book asks for ≥ 3."""
    s = values if isinstance(values, Stat) else Stat.of(values)
    gap = abs(s.mean - threshold)
    return math.inf if s.sd == 0 else gap / s.sd


MIN_MARGIN = 2.0  # seed SDs between a checkpoint's threshold and the seed mean (at least)


def holds(
    name: str,
    values,
    side: str,
    threshold: float,
    *,
    min_margin: float = MIN_MARGIN,
    log: bool = False,
) -> str:
    """A checkpoint over seeds: every seed's value is on ``side`` (``">"`` or ``"<"``) of
    ``threshold``, and the threshold sits at least ``min_margin`` seed SDs from the seed mean
    (:func:`margin`), so that another seed or machine is unlikely to land on the other side
    (for a normal spread, 2 SDs leave ~2.5 % on the wrong side, 3 SDs ~0.1 %).

    ``log=True`` judges the margin on log(value) vs log(threshold): for ratios and for sizes of a
    drop, positive quantities whose spread is multiplicative (one seed falling 6 reward units
    where the others fall 2.5 widens a linear SD, though it only makes the claim safer).

    Prints and returns one line with the mean, the range and the margin; raises
    ``AssertionError`` naming the statement when either condition fails.
    """
    if side not in (">", "<"):
        raise ValueError(f"side must be '>' or '<', got {side!r}")
    stat = values if isinstance(values, Stat) else Stat.of(values)
    v = np.asarray(stat.values)
    ok = bool((v > threshold).all() if side == ">" else (v < threshold).all())
    if log:
        if threshold <= 0 or (v <= 0).any():
            raise ValueError(f"{name}: log=True needs positive values and threshold, got "
                             f"{v.tolist()} and {threshold}")  # fmt: skip
        m = margin(Stat.of(np.log(v)), math.log(threshold))
    else:
        m = margin(stat, threshold)
    line = (f"{name}: {side} {threshold:+.2f} for {'all' if ok else 'NOT all'} {stat.n} seeds "
            f"(mean {stat.mean:+.2f}, range {stat.min:+.2f} to {stat.max:+.2f}; "
            f"margin {m:.1f} seed SDs{' of the log' if log else ''})")  # fmt: skip
    print(line)
    if not ok:
        raise AssertionError(f"{line}: a seed is on the wrong side")
    if m < min_margin:
        raise AssertionError(f"{line}: threshold inside the seed spread (< {min_margin:g} SDs)")
    return line


def _worker(args) -> tuple[int, float]:
    i, config, spec, cache_dir, refresh = args
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rlhf_nb import testbed as tb_mod

    t0 = time.perf_counter()
    tb = tb_mod.build(spec["preset"], seed=spec["seed"], cache_dir=cache_dir, **spec["overrides"])
    cached_train(tb, config, cache_dir=cache_dir, refresh=refresh)
    return i, time.perf_counter() - t0


def train_all(
    configs: Sequence[Any],
    *,
    preset: str = "tiny",
    testbed_seed: int = 0,
    testbed_overrides: dict | None = None,
    workers: int = 2,
    cache_dir: str | Path | None = None,
    refresh: bool = False,
    verbose: bool = True,
) -> list[Run]:
    """Train every config (online, online SimPO or offline) not cached yet, ``workers`` at a time
    in spawned processes (one torch thread each), longest runs first so that no worker idles at
    the end waiting for one long run, then load all runs in the order given.

    Args:
        configs: the runs (any mix of methods).
        preset, testbed_seed, testbed_overrides: which testbed (``rlhf_nb.testbed.build``).
        workers: parallel processes (1 trains in this process, e.g. for debugging).
        refresh: retrain even when cached.
    """
    from rlhf_nb import testbed as tb_mod

    overrides = dict(testbed_overrides or {})
    tb = tb_mod.build(preset, seed=testbed_seed, cache_dir=cache_dir, **overrides)
    spec = {"preset": preset, "seed": testbed_seed, "overrides": overrides}
    todo, paths = [], set()
    for i, c in enumerate(configs):
        path = run_path(kind_of(c), tb, c, cache_dir)
        if path not in paths and (refresh or not path.exists()):  # each distinct run once
            todo.append((i, c, spec, cache_dir, refresh))
        paths.add(path)
    todo.sort(key=lambda job: -job[1].steps)  # longest first: the pool's tail stays short
    t0 = time.perf_counter()
    if todo and workers > 1:
        with mp.get_context("spawn").Pool(min(workers, len(todo))) as pool:
            done = pool.imap_unordered(_worker, todo)
            for i, sec in done:
                if verbose:
                    print(f"  trained {configs[i].label()} seed {configs[i].seed} in {sec:.0f} s",
                          flush=True)  # fmt: skip
    else:
        for job in todo:
            i, sec = _worker(job)
            if verbose:
                print(f"  trained {configs[i].label()} seed {configs[i].seed} in {sec:.0f} s",
                      flush=True)  # fmt: skip
    if verbose and todo:
        print(f"{len(todo)} runs trained in {time.perf_counter() - t0:.0f} s", flush=True)
    return [cached_train(tb, c, cache_dir=cache_dir) for c in configs]


def run_seeds(
    configs: Any | Sequence[Any],
    seeds: Sequence[int],
    **kwargs,
) -> list[SeedRuns]:
    """Each config at each seed (:func:`with_seeds`), trained in parallel and cached
    (:func:`train_all`; ``kwargs`` go there). Returns one :class:`SeedRuns` per config, in order.

    >>> ma, kl = run_seeds([maxent_cfg, kl_cfg], seeds=[0, 1, 2])   # doctest: +SKIP
    >>> differ(ma.stat("kl_k1_final"), kl.stat("kl_k1_final"))      # doctest: +SKIP
    """
    single = not isinstance(configs, Sequence)
    configs = [configs] if single else list(configs)
    seeds = tuple(int(s) for s in seeds)
    expanded = [c for cfg in configs for c in with_seeds(cfg, seeds)]
    runs = train_all(expanded, **kwargs)
    n = len(seeds)
    return [
        SeedRuns(expanded[j * n], runs[j * n : (j + 1) * n], seeds) for j in range(len(configs))
    ]
