"""Chapter 09 (the answer): its parameters and runs, and its experiment — which of two changes
makes reference-free preference optimisation fail online: where the pairs come from, or who
labels them?

:class:`Params` is the notebook's parameters cell; :func:`configs` builds the 2×2 cells from
chapter 06's DPO and SimPO runs (:func:`rlhf_nb.chapters.ch06.configs`), the variants of
section 2b from chapter 06's SimPO settings, and takes chapter 05's headline settings
(:func:`rlhf_nb.chapters.ch05.configs`) for the claims; :func:`get` trains or loads them in one
process pool.

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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rlhf_nb import stats
from rlhf_nb.chapters import ch05, ch06
from rlhf_nb.chapters.params import ChapterParams, check_floats
from rlhf_nb.core import check_int
from rlhf_nb.methods.offline import OfflineConfig
from rlhf_nb.methods.online_simpo import OnlineSimPOConfig

SOURCES = ("offline", "online")
LABELLERS = ("gold", "proxy")


@dataclass(frozen=True)
class Params(ChapterParams):
    """Chapter 09's parameters cell (notebook names in capitals; :class:`ChapterParams` has
    SMOKE, SEED, DEVICE, WORKERS, N_SEEDS — here the seeds of every cell).

    Attributes:
        kl_budgets: KL_BUDGETS — KLs to SFT (nats, > 0) at which the cells' gold is compared.
        live_steps: LIVE_STEPS — steps of the live run the widget's button starts (1–500).
    """

    kl_budgets: tuple[float, ...] = (0.25, 0.5, 1.0)
    live_steps: int = 30

    def __post_init__(self):
        super().__post_init__()
        check_floats("KL_BUDGETS", self.kl_budgets, 0.0, positive=True)
        check_int("LIVE_STEPS", self.live_steps, 1, 500)


def variants(p06: ch06.Params, c06: dict) -> dict[str, OfflineConfig]:
    """Section 2b's offline SimPO variants from chapter 06's settings: γ = 0, chapter 06's γ
    (the default), γ = 4, and summed log-probs (chapter 06's ``sum`` run)."""
    simpo = c06["simpo"]
    return {"γ = 0": dataclasses.replace(simpo, gamma=0.0),
            f"γ = {p06.gamma:g} (default)": simpo,
            "γ = 4": dataclasses.replace(simpo, gamma=4.0),
            "summed log-probs": c06["sum"]}  # fmt: skip


def online_twin(cfg: OfflineConfig, labeller: str = "proxy") -> OnlineSimPOConfig:
    """The online-SimPO config with every field of the offline one (``labeller="proxy"``: the
    proxy RM, ``"gold"``: a gold Bradley–Terry draw per fresh pair)."""
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    return OnlineSimPOConfig(**{**fields, "labeller": labeller})


def configs(p: Params, testbed) -> dict:
    """Every run chapter 09 reads: ``cells`` (:func:`cells` of chapter 06's SimPO and DPO),
    ``explain`` ({(variant, "offline"/"online"): config}, section 2b), ``heads`` (chapter
    05's headline settings), ``caps`` ({(setting, cap): config}, chapter 05's length-cap sweep)
    and ``sources`` (chapter 07's reward source × regulariser design), all at ``p.run_seeds``."""
    from rlhf_nb.chapters import ch07

    p05, p06 = p.shared(ch05.Params), p.shared(ch06.Params)
    c05, c06 = ch05.configs(p05), ch06.configs(p06, testbed)
    explain = {}
    for name, cfg in variants(p06, c06).items():
        explain[(name, "offline")] = cfg
        explain[(name, "online")] = online_twin(cfg)
    c07 = ch07.configs(p.shared(ch07.Params), testbed)
    caps = {(k, cap): cfg for cap, g in c05["caps"].items() for k, cfg in g.items()}
    return {"cells": cells({"SimPO": c06["simpo"], "DPO": c06["dpo"]}), "explain": explain,
            "heads": c05["headline"], "caps": caps, "sources": c07["sources"]}  # fmt: skip


def get(p: Params, testbed, *, configs_=None, cache_dir=None, verbose: bool = True) -> dict:
    """Chapter 09's runs in one process pool: ``cells`` and ``explain`` as ``{key: [Run per
    seed]}``, ``heads`` and ``sources`` as ``{key: SeedRuns}``, ``caps`` as ``{cap: {setting:
    SeedRuns}}`` (as :func:`rlhf_nb.chapters.ch05.get` returns it), plus ``configs``."""
    from rlhf_nb.runs import SeedRuns, get_runs, with_seeds

    c = configs_ if configs_ is not None else configs(p, testbed)
    seeds = p.run_seeds
    jobs = {g: {k: with_seeds(v, seeds) for k, v in c[g].items()}
            for g in ("cells", "explain", "heads", "caps", "sources")}  # fmt: skip
    got = get_runs(jobs, **p.pool(cache_dir), verbose=verbose)
    for g in ("heads", "caps", "sources"):
        got[g] = {k: SeedRuns(c[g][k], v, tuple(seeds)) for k, v in got[g].items()}
    caps: dict = {}
    for (k, cap), runs in got["caps"].items():
        caps.setdefault(cap, {})[k] = runs
    return {**got, "caps": caps, "configs": c}


def cells(offline: Mapping[str, OfflineConfig]) -> dict[tuple[str, str, str], object]:
    """The 2×2 cells for each method of ``offline`` (method name -> chapter 06's offline config,
    whose data are gold-labelled): ``{(method, source, labeller): config}``. The online cells
    take every shared field (β, γ, rate, steps, batch, evaluation, seed) from the offline one."""
    out = {}
    for name, cfg in offline.items():
        if not isinstance(cfg, OfflineConfig):
            raise TypeError(f"offline[{name!r}] must be an OfflineConfig, got {type(cfg).__name__}")
        if cfg.labeller != "gold":
            raise ValueError(f"offline[{name!r}] must use the data's own (gold) labels")
        out[(name, "offline", "gold")] = cfg
        out[(name, "offline", "proxy")] = dataclasses.replace(cfg, labeller="proxy")
        out[(name, "online", "gold")] = online_twin(cfg, "gold")
        out[(name, "online", "proxy")] = online_twin(cfg)
    return out


def gold_at_kl(run, budgets: Sequence[float], *, window: int = stats.WINDOW) -> np.ndarray:
    """The run's gold where its KL to SFT (k1, nats) first reaches each budget, linearly
    interpolated between the two logged rows around the crossing; NaN where the run never
    got that far (:func:`rlhf_nb.stats.at_kl`, which chapters 05 and 07 read too)."""
    return stats.at_kl(run, budgets, "gold", window=window)


def cell_table(runs: Mapping[tuple, object]) -> pd.DataFrame:
    """One row per (method, source, labeller, seed): ``gold_start``, ``gold_final``,
    ``gold_gain`` (final − start), ``gold_peak``, ``kl_final``, ``length_final``,
    ``eos_final``, all by the book's one summary rule (:func:`rlhf_nb.stats.summary_table`).
    ``runs`` maps a cell to its list of runs (one per seed)."""
    rows = []
    for (method, source, labeller), rs in runs.items():
        s = stats.summary_table(rs)
        for r, (_, row) in zip(rs, s.iterrows()):
            rows.append({"method": method, "source": source, "labeller": labeller,
                         "seed": r.config.seed, "gold_start": row.gold_start,
                         "gold_final": row.gold_final,
                         "gold_gain": row.gold_final - row.gold_start,
                         "gold_peak": row.gold_peak, "kl_final": row.kl_k1_final,
                         "length_final": row.length_final,
                         "eos_final": row.eos_final})  # fmt: skip
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
