"""Chapter 09's experiment: which of two changes makes reference-free preference optimisation
fail online — where the pairs come from, or who labels them?

Chapter 06 compared offline SimPO (fixed pairs, labelled by the noisy *gold* Bradley–Terry
model) with online SimPO (pairs sampled from the current policy, labelled by the *proxy* RM):
two factors changed at once. :func:`cells` crosses them,

====================  =========================================  =================================
                      labels from the gold Bradley–Terry model   labels from the proxy RM
====================  =========================================  =================================
fixed offline pairs   chapter 06's offline run                   the same pairs relabelled
                                                                 (``OfflineConfig(labeller=
                                                                 "proxy")``)
self-sampled pairs    ``OnlineSimPOConfig(labeller="gold")``     chapter 06's online run
====================  =========================================  =================================

for SimPO and for DPO (same β, γ, rate, steps and batch as chapter 06). Runs are compared on
the frontier plane (gold against KL to SFT) rather than at a fixed step, since one cell may
move ten times farther than another in the same number of steps: :func:`gold_at_kl` reads each
run's gold where its KL first reaches a budget. :func:`effects` estimates each factor's effect
at the other's two levels with a bootstrap over seeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from rlhf_nb.core import check_int
from rlhf_nb.methods.offline import OfflineConfig
from rlhf_nb.methods.online_simpo import OnlineSimPOConfig

SOURCES = ("offline", "online")
LABELLERS = ("gold", "proxy")


def cells(offline: Mapping[str, OfflineConfig]) -> dict[tuple[str, str, str], object]:
    """The 2×2 cells for each method of ``offline`` (method name -> chapter 06's offline config,
    whose data are gold-labelled): ``{(method, source, labeller): config}``. The online cells
    take every shared field (β, γ, rate, steps, batch, evaluation, seed) from the offline one."""
    out = {}
    for name, cfg in offline.items():
        if not isinstance(cfg, OfflineConfig):
            raise TypeError(f"offline[{name!r}] must be an OfflineConfig, got {type(cfg).__name__}")
        if cfg.labeller is not None:
            raise ValueError(f"offline[{name!r}] must use the data's own (gold) labels")
        fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        out[(name, "offline", "gold")] = cfg
        out[(name, "offline", "proxy")] = dataclasses.replace(cfg, labeller="proxy")
        out[(name, "online", "gold")] = OnlineSimPOConfig(**{**fields, "labeller": "gold"})
        out[(name, "online", "proxy")] = OnlineSimPOConfig(**{**fields, "labeller": None})
    return out


def gold_at_kl(run, budgets: Sequence[float], *, smooth: int = 1) -> np.ndarray:
    """The run's gold where its KL to SFT (k1, nats) first reaches each budget, linearly
    interpolated between the two logged rows around the crossing; NaN where the run never
    got that far. Both columns are trailing means over ``smooth`` rows first."""
    check_int("smooth", smooth, 1)
    h = run.history[["kl_k1", "gold"]].dropna().rolling(smooth, min_periods=1).mean()
    kl, gold = h["kl_k1"].to_numpy(), h["gold"].to_numpy()
    out = []
    for b in budgets:
        above = np.nonzero(kl >= b)[0]
        if above.size == 0:
            out.append(np.nan)
            continue
        i = int(above[0])
        if i == 0:
            out.append(float(gold[0]))
            continue
        w = (b - kl[i - 1]) / (kl[i] - kl[i - 1])
        out.append(float(gold[i - 1] + w * (gold[i] - gold[i - 1])))
    return np.array(out)


def cell_table(runs: Mapping[tuple, object], *, smooth: int = 1) -> pd.DataFrame:
    """One row per (method, source, labeller, seed): ``gold_start``, ``gold_final``,
    ``gold_gain`` (final − start), ``gold_peak`` (best ``smooth``-row mean), ``kl_final``,
    ``length_final``, ``eos_final``. ``runs`` maps a cell to its list of runs (one per seed)."""
    rows = []
    for (method, source, labeller), rs in runs.items():
        for r in rs:
            h = r.history
            g = h["gold"].rolling(smooth, min_periods=1).mean()
            rows.append({"method": method, "source": source, "labeller": labeller,
                         "seed": r.config.seed, "gold_start": h["gold"].iloc[0],
                         "gold_final": g.iloc[-1], "gold_gain": g.iloc[-1] - h["gold"].iloc[0],
                         "gold_peak": g.max(), "kl_final": h["kl_k1"].iloc[-1],
                         "length_final": h["length"].iloc[-1],
                         "eos_final": h["eos_rate"].iloc[-1]})  # fmt: skip
    return pd.DataFrame(rows)


def effects(table: pd.DataFrame, column: str, **differ_kw) -> pd.DataFrame:
    """Each factor's effect on ``column`` at each level of the other, per method, with a
    bootstrap CI over seeds (:func:`rlhf_nb.stats.differ`): ``source`` effect = online −
    offline (at each labeller), ``labeller`` effect = proxy − gold (at each source). One row per
    (method, factor, at); columns ``mean``, ``lo``, ``hi``, ``differs``."""
    from rlhf_nb.stats import differ

    rows = []
    for method, t in table.groupby("method", sort=False):
        by_cell = t.groupby(["source", "labeller"])
        v = {cell: g[column].to_numpy() for cell, g in by_cell}
        pairs = [("source (online − offline)", f"{lab} labels", ("online", lab), ("offline", lab))
                 for lab in LABELLERS]  # fmt: skip
        pairs += [("labeller (proxy − gold)", f"{src} pairs", (src, "proxy"), (src, "gold"))
                  for src in SOURCES]  # fmt: skip
        for factor, at, a, b in pairs:
            if a not in v or b not in v:
                raise ValueError(f"method {method!r} lacks cell {a if a not in v else b}")
            d = differ(v[a], v[b], **differ_kw)
            rows.append({"method": method, "factor": factor, "at": at, "mean": d.mean,
                         "lo": d.lo, "hi": d.hi, "differs": d.differs})  # fmt: skip
    return pd.DataFrame(rows)


def carriers(eff: pd.DataFrame, *, harmful: int) -> dict[str, list[str]]:
    """Which factor carries the harm, per method, from an :func:`effects` table: a factor
    carries it when its effect differs from zero in the harmful direction (``harmful`` = +1:
    an increase hurts, e.g. KL to SFT; −1: a decrease hurts, e.g. gold gain) at *both* levels of
    the other factor. Returns ``{method: [factor names]}`` (empty: no factor does, alone)."""
    if harmful not in (1, -1):
        raise ValueError(f"harmful must be +1 or -1, got {harmful!r}")
    out = {}
    for method, t in eff.groupby("method", sort=False):
        names = []
        for factor, f in t.groupby("factor", sort=False):
            bad = (f["lo"] > 0) if harmful == 1 else (f["hi"] < 0)
            if bad.all():
                names.append(factor)
        out[method] = names
    return out
