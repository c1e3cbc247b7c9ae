"""Several seeds of one setting: :class:`SeedRuns`, its per-step band and per-seed summaries.

A claim about a training run holds across seeds or it is not a claim: float32 training follows
another trajectory on another CPU (other vector units, other BLAS paths), on an ARM laptop or on
a GPU, so the book states its findings as statements that hold for every seed it ran, with the
seed spread written next to each threshold (:func:`rlhf_nb.stats.holds`).

* :func:`rlhf_nb.runs.get_runs` with ``seeds=[...]`` returns one :class:`SeedRuns` per config:
  the config at each seed (:func:`with_seeds`), every run cached like any other;
* :meth:`SeedRuns.band` is the per-step mean over seeds and its 95 % confidence band
  (Student t on the seed means: mean ± t_{0.975, n-1}·sd/√n), plus the min and max over seeds;
* :meth:`SeedRuns.summaries` is one row per seed of :func:`rlhf_nb.stats.summary_table` (the
  book's one summary rule); :meth:`SeedRuns.stat` one of its columns as a
  :class:`rlhf_nb.stats.Stat`, :meth:`SeedRuns.final` a column's final value over seeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rlhf_nb.runs.record import Run
from rlhf_nb.stats import LEVEL, WINDOW, Stat, _t, summary_table


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

    def summaries(self, *, window: int = WINDOW) -> pd.DataFrame:
        """One row per seed (index ``seed``) of :func:`rlhf_nb.stats.summary_table`: start, peak,
        final and fall of gold, final proxy, KL, length, EOS and win rates, entropy start and
        final, all by the book's one summary rule."""
        return summary_table(self.runs, window=window, index=pd.Index(self.seeds, name="seed"))

    def deltas(self, *, window: int = WINDOW) -> pd.DataFrame:
        """One row per seed (index ``seed``): how the run ended against the SFT policy it
        started from, by the summary rule: ``Δ gold`` (final − start), ``Δ win``, and
        ``KL end``, ``entropy SFT``, ``entropy end``, ``length end``, ``gold end``, ``proxy end``
        ``peak step`` (where the smoothed gold peaked) and ``peak gain`` (that peak − start)."""
        s = self.summaries(window=window)
        win_start = [r.history["win_rate"].dropna().iloc[0] for r in self.runs]
        return pd.DataFrame({
            "Δ gold": s["gold_final"] - s["gold_start"], "Δ win": s["win_final"] - win_start,
            "KL end": s["kl_k1_final"], "entropy SFT": s["entropy_start"],
            "entropy end": s["entropy_final"], "length end": s["length_final"],
            "gold end": s["gold_final"], "proxy end": s["proxy_final"], "peak step": s["peak_step"],
            "peak gain": s["gold_peak"] - s["gold_start"],
        })  # fmt: skip

    def stat(self, column: str, *, window: int = WINDOW, level: float = LEVEL) -> Stat:
        """One summary statistic (a column of :meth:`summaries`) over seeds."""
        return Stat.of(self.summaries(window=window)[column], level=level)

    def final(self, column: str, *, window: int = WINDOW, level: float = LEVEL) -> Stat:
        """The final value of a history column (:func:`rlhf_nb.stats.final`) over seeds."""
        return Stat.of([r.final(column, window=window) for r in self.runs], level=level)
