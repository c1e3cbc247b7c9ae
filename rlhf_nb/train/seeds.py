"""Several seeds of one setting: per-step mean and 95 % band, per-seed summaries, and whether two
settings differ beyond seed noise (chapters 04-06, and the CI science test).

A claim about a training run holds across seeds or it is not a claim: float32 training follows
another trajectory on another CPU (other vector units, other BLAS paths), on an ARM laptop or on
a GPU, so the book states its findings as statements that hold for every seed it ran, with the
seed spread written next to each threshold.

* :func:`run_seeds` trains ``config`` at each seed (``dataclasses.replace(config, seed=s)``) for
  every config given, ``workers`` at a time in spawned processes, each run cached like every
  other run (:func:`rlhf_nb.train.run`), and returns one :class:`SeedRuns` per config.
* :meth:`SeedRuns.band` is the per-step mean over seeds and its 95 % confidence band
  (Student t on the seed means: mean ± t_{0.975, n-1}·sd/√n), plus the min and max over seeds.
* :meth:`SeedRuns.summaries` is one row per seed of :func:`rlhf_nb.train.runs.summary_table`;
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from rlhf_nb.train.pool import run_all
from rlhf_nb.train.runs import Run

LEVEL = 0.95  # every band and interval of the book is a 95 % one


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
        """One row per seed (index ``seed``): :func:`rlhf_nb.train.runs.summary_table` plus
        ``gold_fall`` = peak − final gold (how far the run fell from its best) and, where the
        runs log it, ``entropy_start`` / ``entropy_final`` (per-token entropy, nats/token)."""
        from rlhf_nb.train.runs import summary_table

        table = summary_table(self.runs, smooth=smooth).reset_index(drop=True)
        table.index = pd.Index(self.seeds, name="seed")
        if {"gold_peak", "gold_final"} <= set(table):
            table["gold_fall"] = table["gold_peak"] - table["gold_final"]
        if all("entropy_token" in r.history for r in self.runs):
            table["entropy_start"] = [r.history["entropy_token"].iloc[0] for r in self.runs]
            table["entropy_final"] = [r.final("entropy_token") for r in self.runs]
        return table

    def deltas(self) -> pd.DataFrame:
        """One row per seed (index ``seed``): how the last logged row differs from the first
        (the SFT policy): ``Δ gold``, ``Δ win``, and the end values ``KL end``, ``entropy SFT``,
        ``entropy end``, ``length end``, ``gold end``."""
        rows = []
        for seed, r in zip(self.seeds, self.runs):
            h0, h1 = r.history.iloc[0], r.history.iloc[-1]
            rows.append({
                "seed": seed, "Δ gold": h1.gold - h0.gold, "Δ win": h1.win_rate - h0.win_rate,
                "KL end": h1.kl_k1, "entropy SFT": h0.entropy_token,
                "entropy end": h1.entropy_token, "length end": h1.length, "gold end": h1.gold,
            })  # fmt: skip
        return pd.DataFrame(rows).set_index("seed")

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


def run_seeds(configs, seeds: Sequence[int], **kwargs):
    """Each config at each seed (:func:`with_seeds`), trained in parallel and cached
    (:func:`rlhf_nb.train.pool.run_all`; ``kwargs`` go there). ``configs`` is one config (returns
    one :class:`SeedRuns`), a list (a list of them, in order) or a dict (a dict, same keys).

    >>> ma, kl = run_seeds([maxent_cfg, kl_cfg], seeds=[0, 1, 2])   # doctest: +SKIP
    >>> differ(ma.stat("kl_k1_final"), kl.stat("kl_k1_final"))      # doctest: +SKIP
    """
    seeds = tuple(int(s) for s in seeds)
    if isinstance(configs, Mapping):
        runs = run_all({k: with_seeds(c, seeds) for k, c in configs.items()}, **kwargs)
        return {k: SeedRuns(replace(c, seed=seeds[0]), runs[k], seeds) for k, c in configs.items()}
    if isinstance(configs, Sequence):
        runs = run_all([with_seeds(c, seeds) for c in configs], **kwargs)
        return [SeedRuns(replace(c, seed=seeds[0]), r, seeds) for c, r in zip(configs, runs)]
    (out,) = run_seeds([configs], seeds, **kwargs)
    return out


def markdown_table(rows: dict[str, dict[str, Stat]], columns: dict[str, str], digits: int = 2):
    """A markdown table of seed statistics: one row per ``rows`` key, one column per
    ``columns`` item (``{stat name: header}``), each cell ``mean (min to max)``, and the number
    of seeds. What the chapters show in their cells tagged ``results`` (``make book`` copies
    them into the README and the site, :mod:`rlhf_nb._site.results`)."""
    head = ["setting", *columns.values(), "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        cells = [f"{row[c].mean:.{digits}f} ({row[c].min:.{digits}f} to "
                 f"{row[c].max:.{digits}f})" for c in columns]  # fmt: skip
        n = {row[c].n for c in columns}
        lines.append("| " + " | ".join([name, *cells, "/".join(map(str, sorted(n)))]) + " |")
    return "\n".join(lines)
