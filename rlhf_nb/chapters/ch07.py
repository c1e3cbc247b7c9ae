"""Chapter 07 (over-optimisation): its parameters, its runs, the empirical frontier of trained
runs, Gao fits per method, and the remedies of the online loop.

:class:`Params` is the notebook's parameters cell; :func:`configs` takes chapter 05's headline
settings and α sweep (:func:`rlhf_nb.chapters.ch05.configs`) and chapter 06's DPO, SimPO and
online SimPO runs (:func:`rlhf_nb.chapters.ch06.configs`) — the same runs those chapters show —
and adds the remedies, each built from the headline MaxEnt run; :func:`get` trains or loads them
in one process pool.

**Frontier of a run.** Every history row holds the gold and proxy reward of the policy's samples
and its KL to the SFT policy (k1, nats per response). A run is a path on the (d, gold) plane,
d = √KL(π‖π_SFT) in √nats (Gao et al. 2022). Both coordinates are read through the book's one
smoothing window (:func:`rlhf_nb.stats.smoothed`, :data:`rlhf_nb.stats.WINDOW` steps): online
rows are one batch each and get averaged; offline runs log an evaluation every 25 steps and are
used as logged. :func:`frontier_points` stacks runs into one
frame; :func:`gao_table` fits Gao's forms per method (:func:`rlhf_nb.theory.frontier.fit_gao`).

**Remedies** (:func:`remedy_configs`): each keeps the MaxEnt run's rate, length, batch and seed
and changes only the regulariser, with coefficients derived from the testbed, not tuned to
runs:

================  ==============================================================================
``entropy_norm``  the length-normalised bonus −(α'/|y|)·log π(y), paid as a detached reward,
                  α' = α·E_SFT|y| so that it equals the MaxEnt run's bonus at the SFT policy's
                  mean length. Its weight α'/|y| varies with the response, so the run ascends
                  J′ = E[r + (α'/|y|)(1 − log π)] — SimPO's exact objective (chapter 02, the
                  entropy per token plus a shortness bonus α'/|y|) — not E[r − (α'/|y|) log π]
                  (chapter 03, §2c; ``rlhf_nb.theory.surrogates``)
``entropy_kl``    the MaxEnt bonus plus β·KL(π‖π_SFT) (α and β together), β the strong KL run's
``ref_mix``       KL (β as above) to the per-token mixture λ·π_SFT + (1−λ)·uniform, no bonus:
                  λ = 1 is KL-RLHF; λ = 0 is the KL to the per-token uniform U_tok(y) = V^−|y|,
                  i.e. MaxEnt at α = β plus a length cost β·log V per token (the ``length``
                  remedy at c = β·log V) — not MaxEnt's own anchor, the uniform law over
                  responses (chapters 01, 03)
``adaptive``      a per-token entropy term whose coefficient is adapted every step to hold the
                  SFT policy's per-token entropy (TRL's ``use_adaptive_entropy``)
``ensemble``      the MaxEnt run on an ensemble of proxy RMs, mean − 1·std (Coste et al. 2024)
``length``        the MaxEnt run plus a per-token cost c = α·log V: the most the sequence-level
                  bonus can pay for one more token (what it pays is α·(−log π(y_t|·)), on
                  average α·H_tok, less). With it the objective is E r − α·KL(π‖U_tok) + const,
                  whose α → ∞ end U_tok still sits near the cap when V ≫ L (no-EOS share
                  ((V−1)/V)^L, 0.83 at V = 84, L = 16; ``sequences.large_alpha_no_eos_share``)
================  ==============================================================================
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rlhf_nb import stats
from rlhf_nb.chapters import ch05, ch06
from rlhf_nb.chapters.params import ChapterParams
from rlhf_nb.core import check_int, check_range
from rlhf_nb.methods.online_config import OnlineConfig
from rlhf_nb.theory.frontier import GAO_FORMS, fit_gao

REMEDIES = ("entropy_norm", "entropy_kl", "ref_mix", "adaptive", "ensemble", "length")
# the reward source × regulariser design (§5): the reward optimised, and the regulariser at the
# book's headline values (none = plain RLOO α = 0, entropy = the MaxEnt α, kl = the strong β,
# entropy+kl = both, the entropy_kl remedy)
REWARDS = ("proxy", "gold")
SOURCE_REGULARIZERS = ("none", "entropy", "kl", "entropy+kl")


HEADS = ("rloo", "maxent", "kl_weak", "kl_strong")  # chapter 05's headline runs at LR_HI


@dataclass(frozen=True)
class Params(ChapterParams):
    """Chapter 07's parameters cell (notebook names in capitals; :class:`ChapterParams` has
    SMOKE, SEED, DEVICE, WORKERS, N_SEEDS — here the seeds of the headline settings, the offline
    runs and every remedy).

    Attributes:
        length_bonus: LENGTH_BONUS — exact plane: the proxy's reward per token that the gold
            does not share (>= 0).
        token_cost: TOKEN_COST — exact plane: the gold's cost per token (>= 0).
        ref_mix: REF_MIX — λ of the mixed-reference remedy, in [0, 1).
        ensemble: ENSEMBLE — proxy RMs of the ensemble remedy (2–16).
        bon_n_max: BON_N_MAX — best-of-n sizes n = 1, 2, 4, ... up to this power of 2 (2–256).
        bon_prompts: BON_PROMPTS — eval prompts of the best-of-n frontier (1–256).
        live_steps: LIVE_STEPS — steps of the live run the widget's button starts (1–500).
    """

    length_bonus: float = 0.4
    token_cost: float = 0.15
    ref_mix: float = 0.5
    ensemble: int = 3
    bon_n_max: int = 64
    bon_prompts: int = 256
    live_steps: int = 40

    def __post_init__(self):
        super().__post_init__()
        for name, low, high in (("ensemble", 2, 16), ("bon_n_max", 2, 256),
                                ("bon_prompts", 1, 256), ("live_steps", 1, 500)):  # fmt: skip
            check_int(name.upper(), getattr(self, name), low, high)
        if self.bon_n_max & (self.bon_n_max - 1):
            raise ValueError(f"BON_N_MAX must be a power of 2, got {self.bon_n_max}")
        check_range("REF_MIX", self.ref_mix, 0.0, 1.0, high_inclusive=False)
        check_range("LENGTH_BONUS", self.length_bonus, 0.0, None)
        check_range("TOKEN_COST", self.token_cost, 0.0, None)


def configs(p: Params, testbed) -> dict:
    """Every run chapter 07 reads: ``heads`` (chapter 05's headline settings), ``sweep``
    (chapter 05's α sweep at the higher rate), ``offline`` (chapter 06's DPO, SimPO and online
    SimPO), all at ``p.run_seeds`` except the sweep, and ``remedies`` (:func:`remedy_configs`
    from the headline MaxEnt run and the SFT policy's length and entropy on the testbed), at
    ``p.run_seeds`` too, and ``sources`` (:func:`source_configs`). ``sft`` holds those SFT
    measurements."""
    from rlhf_nb.methods import evaluate

    p05, p06 = p.shared(ch05.Params), p.shared(ch06.Params)
    c05, c06 = ch05.configs(p05), ch06.configs(p06)
    heads = c05["headline"]
    tb = testbed
    sft, _ = evaluate.policy_metrics(tb, tb.sft_policy, tb.eval_prompts[: p.bon_prompts],
                                     seed=p.seed)  # fmt: skip
    remedies = remedy_configs(
        heads["maxent"], beta=heads["kl_strong"].beta, vocab_size=tb.sft_policy.config.vocab_size,
        sft_length=sft["length"], sft_entropy=sft["entropy_token"], ref_mix=p.ref_mix,
        ensemble=p.ensemble,
    )  # fmt: skip
    offline = {"DPO": c06["dpo"], "SimPO": c06["simpo"], "online SimPO": c06["osimpo"]}
    sources = source_configs(heads, remedies)
    return {"heads": heads, "sweep": c05["grid"]["alpha_hi"], "offline": offline,
            "remedies": remedies, "sources": sources, "sft": sft}  # fmt: skip


def source_configs(heads: Mapping, remedies: Mapping) -> dict[tuple[str, str], OnlineConfig]:
    """The reward source × regulariser design: ``{(reward, regulariser): config}`` over
    :data:`REWARDS` × :data:`SOURCE_REGULARIZERS`. The proxy row is runs the book already has —
    chapter 05's α = 0, MaxEnt and strong-KL headline runs and this chapter's ``entropy_kl``
    remedy — and the gold row is the same four configs with ``reward="gold"``: the policy
    optimises the gold reward itself, nothing else changed."""
    proxy = {"none": heads["rloo"], "entropy": heads["maxent"], "kl": heads["kl_strong"],
             "entropy+kl": remedies["entropy_kl"]}  # fmt: skip
    return {(r, k): c if r == "proxy" else dataclasses.replace(c, reward="gold")
            for r in REWARDS for k, c in proxy.items()}  # fmt: skip


def get(p: Params, testbed, *, configs_=None, cache_dir=None, verbose: bool = True) -> dict:
    """Chapter 07's runs in one process pool: ``heads``, ``offline``, ``remedies`` and
    ``sources`` as ``{key: SeedRuns}``, ``sweep`` as a list of runs (one seed), plus
    ``configs``."""
    from rlhf_nb.runs import SeedRuns, get_runs, with_seeds

    c = configs_ if configs_ is not None else configs(p, testbed)  # SFT metrics: sampled once
    seeds = p.run_seeds
    groups = ("heads", "offline", "remedies", "sources")
    seeded = {g: {k: with_seeds(v, seeds) for k, v in c[g].items()} for g in groups}
    got = get_runs({**seeded, "sweep": c["sweep"]}, **p.pool(cache_dir), verbose=verbose)
    out = {g: {k: SeedRuns(c[g][k], got[g][k], tuple(seeds)) for k in c[g]} for g in groups}
    return {**out, "sweep": got["sweep"], "configs": c}


def _sig(x: float, digits: int = 2) -> float:
    """``x`` rounded to ``digits`` significant digits (a derived coefficient stays readable, and
    a cache key does not depend on the last bits of a measured mean)."""
    return float(f"{x:.{digits}g}")


def remedy_configs(
    maxent: OnlineConfig,
    *,
    beta: float,
    vocab_size: int,
    sft_length: float,
    sft_entropy: float,
    ref_mix: float = 0.5,
    ensemble: int = 3,
) -> dict[str, OnlineConfig]:
    """The remedies of the module docstring as configs, keyed by :data:`REMEDIES`.

    Args:
        maxent: the headline MaxEnt run (``regularizer="entropy"``, α > 0); every remedy keeps
            its other fields.
        beta: the KL coefficient of ``entropy_kl`` and ``ref_mix`` (> 0, reward units per nat).
        vocab_size: V of the policy (>= 2), for c = α·log V (the largest per-token payment of
            the sequence bonus).
        sft_length: E_SFT|y| in tokens (EOS included), > 0.
        sft_entropy: the SFT policy's per-token entropy (nats/token), the adaptive target, >= 0.
        ref_mix: λ in [0, 1) of the ``ref_mix`` remedy.
        ensemble: proxy RMs of the ``ensemble`` remedy (2-16).
    """
    if maxent.regularizer != "entropy" or maxent.alpha <= 0:
        raise ValueError(f"maxent must be a sequence-level entropy run with α > 0, got {maxent}")
    check_range("beta", beta, 0.0, None, low_inclusive=False)
    check_int("vocab_size", vocab_size, 2)
    check_range("sft_length", sft_length, 0.0, None, low_inclusive=False)
    check_range("sft_entropy", sft_entropy, 0.0, None)
    check_range("ref_mix", ref_mix, 0.0, 1.0, high_inclusive=False)
    check_int("ensemble", ensemble, 2, 16)
    a = maxent.alpha

    def make(**kw) -> OnlineConfig:
        return dataclasses.replace(maxent, **kw)

    return {
        "entropy_norm": make(regularizer="entropy_norm", alpha=_sig(a * sft_length)),
        "entropy_kl": make(regularizer="entropy+kl", beta=beta),
        "ref_mix": make(regularizer="kl", alpha=0.0, beta=beta, ref_mix=ref_mix),
        "adaptive": make(regularizer="entropy_token", target_entropy=_sig(sft_entropy, 3)),
        "ensemble": make(ensemble=ensemble),
        "length": make(regularizer="entropy+length", length_coef=_sig(a * math.log(vocab_size))),
    }


def trajectory(run, *, window: int = stats.WINDOW) -> pd.DataFrame:
    """A run's path on the frontier plane: ``step``, ``kl`` (k1, nats), ``d`` = √max(kl, 0)
    (√nats), ``gold``, ``proxy``, ``length``, each through the book's smoothing window
    (:func:`rlhf_nb.stats.smoothed`, ``window`` optimiser steps)."""
    cols = {"gold": "gold", "proxy": "proxy", "kl_k1": "kl", "length": "length"}
    h = pd.concat({new: stats.smoothed(run.history, old, window=window)
                   for old, new in cols.items()}, axis=1).reset_index()  # fmt: skip
    h["d"] = np.sqrt(h["kl"].clip(lower=0.0))
    return h[["step", "kl", "d", "gold", "proxy", "length"]]


def frontier_points(groups: Mapping[str, Sequence], *, window: int = stats.WINDOW) -> pd.DataFrame:
    """Every run of every method as rows ``method``, ``seed``, ``step``, ``kl``, ``d``,
    ``gold``, ``gain``, ``proxy``, ``length``. ``gain`` is gold minus the method's gold at step 0
    (mean over its seeds: the SFT policy's gold on that method's own samples), so that the Gao
    forms, which have R(0) = 0, can be fitted. ``groups`` maps a method name to its runs."""
    frames = []
    for method, runs in groups.items():
        if not runs:
            raise ValueError(f"method {method!r} has no runs")
        base = float(np.mean([r.history["gold"].iloc[0] for r in runs]))
        for r in runs:
            t = trajectory(r, window=window)
            t.insert(0, "seed", r.config.seed)
            t.insert(0, "method", method)
            t["gain"] = t["gold"] - base
            frames.append(t)
    if not frames:  # no methods: an empty frame with the columns
        cols = ["method", "seed", "step", "kl", "d", "gold", "proxy", "length", "gain"]
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)


def bon_points(bon: pd.DataFrame, *, d: str = "d_sample") -> pd.DataFrame:
    """Best-of-n rows (:func:`rlhf_nb.methods.best_of_n.bon_frontier`) in the frame of
    :func:`frontier_points`: method ``"best-of-n"``, ``step`` = n, d from column ``d``."""
    out = pd.DataFrame({"method": "best-of-n", "seed": 0, "step": bon["n"],
                        "kl": bon[d] ** 2, "d": bon[d], "gold": bon["gold"],
                        "proxy": bon["proxy"], "length": np.nan})  # fmt: skip
    out["gain"] = out["gold"] - float(bon.loc[bon["n"] == 1, "gold"].iloc[0])
    return out


def gao_table(points: pd.DataFrame, forms: Mapping[str, str]) -> pd.DataFrame:
    """Fit Gao et al.'s form ``forms[method]`` (``"bon"`` or ``"rl"``) to each method's
    (d, gain) points, pooled over seeds. One row per method: ``form``, ``a`` ± ``a_se``,
    ``b`` ± ``b_se``, ``d_star`` (√nats; ``inf`` when the fit does not turn over),
    ``gain_star``, the largest measured ``d_max``, ``n_points``, ``rmse`` of the fit, and
    ``note``: why a fit failed (too few points, no convergence; its numbers are then NaN), or
    why its peak is not one: ``d_star`` is ``inf`` unless b > 2·SE(b), and a d* beyond twice
    the largest measured d is flagged as an extrapolation."""
    rows = []
    for method, form in forms.items():
        if form not in GAO_FORMS:
            raise ValueError(f"form of {method!r} must be one of {GAO_FORMS}, got {form!r}")
        p = points[points["method"] == method]
        if p.empty:
            raise ValueError(f"no points for method {method!r}; have {sorted(set(points.method))}")
        row = {"method": method, "form": form, "d_max": float(p["d"].max()), "n_points": len(p)}
        try:
            fit = fit_gao(p["d"].to_numpy(), p["gain"].to_numpy(), form)
        except (RuntimeError, ValueError) as exc:  # too few points, or no convergence
            nan = math.nan
            rows.append({**row, "a": nan, "a_se": nan, "b": nan, "b_se": nan, "d_star": nan,
                         "gain_star": nan, "rmse": nan, "note": str(exc)[:80]})  # fmt: skip
            continue
        rmse = float(np.sqrt(np.mean((fit.predict(p["d"].to_numpy()) - p["gain"]) ** 2)))
        d_star, gain_star, note = fit.d_star, fit.gold_star, ""
        if not fit.b > 2 * fit.b_se:  # a peak only when b is clearly positive
            d_star = gain_star = math.inf
            note = f"b = {fit.b:.3f} ± {fit.b_se:.3f} is not 2 SE above 0: no turn-over"
        elif d_star > 2 * row["d_max"]:
            note = f"d* is beyond twice the largest measured d ({row['d_max']:.2f})"
        rows.append({**row, "a": fit.a, "a_se": fit.a_se, "b": fit.b, "b_se": fit.b_se,
                     "d_star": d_star, "gain_star": gain_star, "rmse": rmse,
                     "note": note})  # fmt: skip
    return pd.DataFrame(rows).set_index("method")


REMEDY_COLUMNS = {  # remedy_table column -> summary_table column (the book's one rule)
    "gold_final": "gold_final", "gold_peak": "gold_peak", "kl_final": "kl_k1_final",
    "length_final": "length_final", "eos_final": "eos_final", "entropy_final": "entropy_final",
}  # fmt: skip


def remedy_table(settings: Mapping[str, object]) -> pd.DataFrame:
    """One row per setting (a :class:`rlhf_nb.runs.SeedRuns`): for each of
    :data:`REMEDY_COLUMNS` the mean over seeds and the half-width of its 95 % band (``±``
    columns; 0 with one seed), plus ``n`` seeds. Peaks and finals are the book's one summary
    rule (:func:`rlhf_nb.stats.summary_table`), so they equal chapter 05's and 09's."""
    rows = []
    for name, g in settings.items():
        s = g.summaries()
        row = {"setting": name, "label": g.config.label(), "n": g.n}
        for c, src in REMEDY_COLUMNS.items():
            st = stats.Stat.of(s[src])
            row[c], row[f"{c} ±"] = st.mean, (st.hi - st.lo) / 2
        rows.append(row)
    return pd.DataFrame(rows).set_index("setting")


def ranking(settings: Mapping[str, object], column: str = "gold") -> pd.DataFrame:
    """Settings (``{name: SeedRuns}``) sorted by the mean over seeds of ``column``'s final
    value (the summary rule), best first; each row also holds the difference to the next one
    down with its 95 % bootstrap CI (:func:`rlhf_nb.stats.differ`) and ``separates``: whether
    that CI excludes 0. A ranking is stated only where consecutive settings separate."""
    finals = {k: g.final(column) for k, g in settings.items()}
    order = sorted(finals, key=lambda k: -finals[k].mean)
    rows = []
    for a, b in zip(order, [*order[1:], None]):
        row = {"setting": a, "mean": finals[a].mean, "lo": finals[a].lo, "hi": finals[a].hi,
               "n": finals[a].n, "next": b}  # fmt: skip
        if b is not None:
            d = stats.differ(finals[a], finals[b])
            row.update(diff=d.mean, diff_lo=d.lo, diff_hi=d.hi, separates=d.differs)
        rows.append(row)
    return pd.DataFrame(rows).set_index("setting")


def ranking_sentence(ranks: pd.DataFrame) -> str:
    """:func:`ranking` as a sentence: ``>`` where consecutive settings separate beyond seed
    noise, ``≈`` where they do not."""
    names = list(ranks.index)
    out = names[0]
    for a, b in zip(names, names[1:]):
        out += (" > " if bool(ranks.loc[a, "separates"]) else " ≈ ") + b
    return f"final gold, best first ('>' separated by a 95% bootstrap CI, '≈' not): {out}"


@dataclass(frozen=True)
class MatchedRemedies:
    """The remedies read at equal KL to SFT (:func:`matched_remedies`).

    Fields:
        table: one row per setting; a column ``gold gain at KL b`` per budget ``b`` (the mean
            over the seeds that reached it, gold units) and ``gold gain, final`` (final gold
            minus step-0 gold, mean over seeds, the summary rule).
        budgets: the shared KL budgets, nats, smallest first (:func:`rlhf_nb.stats.shared_budgets`).
        best: the remedy with the largest mean gain at the top budget.
        best_gain: its gain there over its seeds.
        anchor: the setting it is compared with.
        minus_anchor: ``best``'s gain minus ``anchor``'s at the top budget, bootstrap CI.
    """

    table: pd.DataFrame
    budgets: list
    best: str
    best_gain: stats.Stat
    anchor: str
    minus_anchor: stats.Difference

    def sentence(self, prefix: str = "remedy: ") -> str:
        return (f"at KL {self.budgets[-1]:g} nats the best remedy is "
                f"{self.best.removeprefix(prefix)} (gold gain {self.best_gain.fmt()}); "
                f"minus {self.anchor}: {self.minus_anchor}")  # fmt: skip


def matched_remedies(
    settings: Mapping[str, object], anchor: str, *, prefix: str = "remedy: "
) -> MatchedRemedies:
    """Every setting of ``settings`` (``{name: SeedRuns}``; remedies are the names starting
    with ``prefix``) at the KL budgets all their runs reach (:func:`rlhf_nb.stats.matched_kl`),
    the best remedy at the top budget, and its difference there to the setting ``anchor``."""
    remedies = [k for k in settings if k.startswith(prefix)]
    if anchor not in settings or not remedies:
        raise ValueError(f"anchor={anchor!r} must be one of {list(settings)} and some setting "
                         f"must start with prefix={prefix!r}")  # fmt: skip
    budgets = stats.shared_budgets(settings)
    matched = stats.matched_kl(settings, budgets)
    table = matched["gain"].map(lambda g: g.mean).unstack("kl budget")
    table.columns = [f"gold gain at KL {b:g}" for b in budgets]
    finals = {k: settings[k].summaries() for k in table.index}  # the book's one summary rule
    table["gold gain, final"] = [
        (s["gold_final"] - s["gold_start"]).mean() for s in finals.values()
    ]
    top = budgets[-1]
    best = max(remedies, key=lambda k: matched.loc[(k, top), "gain"].mean)
    return MatchedRemedies(
        table, budgets, best, matched.loc[(best, top), "gain"], anchor,
        stats.matched_difference(matched, best, anchor)[top],
    )  # fmt: skip


OUTCOMES = ("length collapse", "anchored", "proxy hacked", "stable")


SOURCE_COLUMNS = ("gold_start", "gold_peak", "gold_final", "gold_fall", "proxy_final",
                  "kl_k1_final", "length_final", "eos_final")  # fmt: skip


def source_table(sources: Mapping) -> pd.DataFrame:
    """The reward source × regulariser design by the book's summary rule: one row per
    (reward, regulariser), a :class:`~rlhf_nb.stats.Stat` over seeds in each of
    :data:`SOURCE_COLUMNS` and ``gold_gain`` (final − SFT start). ``sources`` is :func:`get`'s
    ``"sources"``."""
    rows = {}
    for key, g in sources.items():
        s = g.summaries()
        row = {c: stats.Stat.of(s[c]) for c in SOURCE_COLUMNS}
        row["gold_gain"] = stats.Stat.of(s["gold_final"] - s["gold_start"])
        rows[key] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["reward", "regularizer"])


def source_contrasts(sources: Mapping, column: str = "gold") -> dict[str, stats.Difference]:
    """The design's questions as bootstrap differences of final ``column`` (seeds paired by
    nothing, resampled within each cell, :func:`rlhf_nb.stats.differ`): for each regulariser,
    the gold-trained run minus the proxy-trained one; and on the gold reward, each regulariser
    minus none (does it help or hurt when the reward is the truth?)."""
    out = {}
    for k in SOURCE_REGULARIZERS:
        out[f"{k}: gold-trained − proxy-trained"] = stats.differ(
            sources[("gold", k)].final(column), sources[("proxy", k)].final(column)
        )
    for k in SOURCE_REGULARIZERS[1:]:
        out[f"on gold: {k} − none"] = stats.differ(
            sources[("gold", k)].final(column), sources[("gold", "none")].final(column)
        )
    return out


def outcome(row, *, cap: int, max_kl: float = 3.0, max_fall: float = 1.0) -> str:
    """Name what a :func:`remedy_table` row ended as, by stated rules, first match wins:
    ``"length collapse"`` — final length ≥ 0.9·``cap`` and EOS rate < 0.1 (the MaxEnt attractor);
    ``"anchored"`` — final KL < ``max_kl`` nats; ``"proxy hacked"`` — gold ended more than
    ``max_fall`` below its peak; else ``"stable"``."""
    if row["length_final"] >= 0.9 * cap and row["eos_final"] < 0.1:
        return "length collapse"
    if row["kl_final"] < max_kl:
        return "anchored"
    if row["gold_peak"] - row["gold_final"] > max_fall:
        return "proxy hacked"
    return "stable"
