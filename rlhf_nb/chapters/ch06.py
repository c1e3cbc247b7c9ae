"""Chapter 06 (offline SimPO vs DPO): its parameters, its runs, and the tables it reads them by.

:class:`Params` is the notebook's parameters cell; :func:`configs` builds every run of the
chapter from it — DPO and SimPO on the testbed's fixed pairs, online SimPO (the same loss on
self-sampled, proxy-labelled pairs), the γ and β sweeps, summed instead of averaged log-probs,
and the online MaxEnt run, which is **chapter 05's** headline MaxEnt run
(:func:`rlhf_nb.chapters.ch05.configs`), not a copy of it. :func:`get` trains or loads them in
one process pool. Chapters 07 and 09 take their offline runs from :func:`configs` too.

The tables (:func:`bias_table`, :func:`sweep_table`) read every "end" value by the book's one
summary rule (:mod:`rlhf_nb.stats`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rlhf_nb.chapters import ch05
from rlhf_nb.chapters.params import ChapterParams, check_floats
from rlhf_nb.core import check_choice, check_int, check_range
from rlhf_nb.methods.offline import OfflineConfig
from rlhf_nb.methods.online_simpo import OnlineSimPOConfig

SEEDED = ("dpo", "simpo", "online", "osimpo", "gamma_lo", "gamma_hi", "sum")


@dataclass(frozen=True)
class Params(ChapterParams):
    """Chapter 06's parameters cell (notebook names in capitals; :class:`ChapterParams` has
    SMOKE, SEED, DEVICE, WORKERS, N_SEEDS).

    Attributes:
        preset: PRESET — testbed preset of the default run (``rlhf_nb.testbed.PRESETS``).
        steps: STEPS — optimiser steps of every offline run (SMOKE: 30).
        lr: LR — learning rate of the DPO and SimPO runs (> 0).
        beta_dpo: BETA_DPO — DPO's KL strength β (> 0).
        beta_simpo: BETA_SIMPO — SimPO's reward scale of the average log-prob (> 0).
        gamma: GAMMA — SimPO's target margin γ (>= 0; the SimPO paper uses γ/β near 0.5).
        live_steps: LIVE_STEPS — steps of the live run the widget's button starts.
        gammas: GAMMAS — target margins γ >= 0 of the γ sweep (at BETA_SIMPO).
        betas_simpo: BETAS_SIMPO — SimPO β > 0 of the β sweep (γ/β fixed at GAMMA/BETA_SIMPO).
    """

    preset: str = "tiny"
    steps: int = 300
    lr: float = 3e-4
    beta_dpo: float = 0.1
    beta_simpo: float = 2.0
    gamma: float = 1.0
    live_steps: int = 60
    gammas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    betas_simpo: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)

    def __post_init__(self):
        super().__post_init__()
        from rlhf_nb.testbed import PRESETS

        check_choice("PRESET", self.preset, PRESETS)
        check_int("STEPS", self.steps, 1)
        check_int("LIVE_STEPS", self.live_steps, 1)
        for name in ("lr", "beta_dpo", "beta_simpo"):
            check_range(name.upper(), getattr(self, name), 0.0, None, low_inclusive=False)
        check_range("GAMMA", self.gamma, 0.0, None)
        check_floats("GAMMAS", self.gammas, 0.0)
        check_floats("BETAS_SIMPO", self.betas_simpo, 0.0, positive=True)

    @property
    def tb_preset(self) -> str:
        return "smoke" if self.smoke else self.preset

    def common(self) -> dict:
        """The fields every offline and online-SimPO run of the chapter shares."""
        s = self.smoke
        return dict(steps=30 if s else self.steps, lr=self.lr, eval_interval=10 if s else 25,
                    n_eval_prompts=64 if s else 256, n_heldout_pairs=128 if s else 512,
                    seed=self.seed, device=self.resolved_device)  # fmt: skip


def mean_length(testbed) -> float:
    """Mean length of the testbed's training responses in tokens (words + EOS), L̄ of 3d."""
    data = testbed.preference_data
    return float(np.mean([len(r.split()) + 1 for r in [*data["chosen"], *data["rejected"]]]))


def configs(p: Params, testbed=None) -> dict:
    """Every run of chapter 06. Seeded (run at ``p.run_seeds``): ``dpo``, ``simpo``,
    ``online`` (chapter 05's headline MaxEnt run), ``osimpo`` (online SimPO), ``gamma_lo`` /
    ``gamma_hi`` (the γ sweep's ends) and ``sum`` (summed log-probs, α = β/L̄, γ = 0; needs
    ``testbed`` for L̄, omitted without it). One seed: ``gammas`` {γ: config} and ``betas``
    {β: config} (γ/β fixed)."""
    c = p.common()
    gammas = sorted({min(p.gammas), p.gamma} if p.smoke else {*p.gammas, p.gamma})
    betas = [p.beta_simpo] if p.smoke else sorted({*p.betas_simpo, p.beta_simpo})
    simpo = dict(method="simpo", beta=p.beta_simpo)
    gamma_cfgs = {g: OfflineConfig(**simpo, gamma=g, **c) for g in gammas}
    out = {
        "dpo": OfflineConfig(method="dpo", beta=p.beta_dpo, **c),
        "simpo": OfflineConfig(**simpo, gamma=p.gamma, **c),
        "online": ch05.configs(p.shared(ch05.Params))["headline"]["maxent"],
        "osimpo": OnlineSimPOConfig(**simpo, gamma=p.gamma, **c),
        "gamma_lo": gamma_cfgs[min(gammas)],
        "gamma_hi": gamma_cfgs[max(gammas)],
        "gammas": gamma_cfgs,
        "betas": {
            b: OfflineConfig(method="simpo", beta=b, gamma=p.gamma * b / p.beta_simpo, **c)
            for b in betas
        },  # fmt: skip
    }
    if testbed is not None:
        alpha = p.beta_simpo / mean_length(testbed)
        out["sum"] = OfflineConfig(method="simpo", beta=alpha, gamma=0.0, length_normalize=False,
                                   **c)  # fmt: skip
    return out


def get(p: Params, testbed, *, configs_=None, cache_dir=None, verbose: bool = True) -> dict:
    """Chapter 06's runs in one process pool: a :class:`~rlhf_nb.runs.SeedRuns` for each
    seeded key of :func:`configs`, ``{γ: Run}`` / ``{β: Run}`` for the sweeps. ``configs_``:
    the chapter's :func:`configs` when the caller already built them (built once, not twice)."""
    from rlhf_nb.runs import SeedRuns, get_runs, with_seeds

    cfg = configs_ if configs_ is not None else configs(p, testbed)
    seeds = p.run_seeds
    jobs = {k: with_seeds(cfg[k], seeds) for k in SEEDED}
    jobs.update(gammas=list(cfg["gammas"].values()), betas=list(cfg["betas"].values()))
    got = get_runs(jobs, preset=p.tb_preset, testbed_seed=p.seed, workers=p.workers,
                   cache_dir=cache_dir, verbose=verbose)  # fmt: skip
    out = {k: SeedRuns(cfg[k], got[k], tuple(seeds)) for k in SEEDED}
    out["gammas"] = dict(zip(cfg["gammas"], got["gammas"]))
    out["betas"] = dict(zip(cfg["betas"], got["betas"]))
    return out


def end_values(run) -> dict:
    """How one run ended against its start (the SFT policy, step 0), by the summary rule:
    ``gold SFT``, ``gold end``, ``Δ gold``, ``win end``, ``KL end``, ``length SFT``,
    ``length end``."""
    h = run.history
    return {"gold SFT": h.gold.iloc[0], "gold end": run.final("gold"),
            "Δ gold": run.final("gold") - h.gold.iloc[0], "win end": run.final("win_rate"),
            "KL end": run.final("kl_k1"), "length SFT": h.length.iloc[0],
            "length end": run.final("length")}  # fmt: skip


def bias_table(bias_runs: dict[str, tuple]) -> pd.DataFrame:
    """Part 2's table: one row per (gold length preference, method) of :func:`end_values`."""
    rows = [{"gold prefers": bias, "method": r.config.method, **end_values(r)}
            for bias, runs in bias_runs.items() for r in runs]  # fmt: skip
    return pd.DataFrame(rows).set_index(["gold prefers", "method"])


def sweep_table(runs) -> pd.DataFrame:
    """Part 3c's table, indexed by (β, γ): final gold, win rate, KL, length, training margin
    and held-out gradient weight of each run (one seed each), by the summary rule."""
    cols = {"gold end": "gold", "win end": "win_rate", "KL end": "kl_k1", "length end": "length",
            "train margin end": "margin", "held-out weight end": "heldout_weight"}  # fmt: skip
    rows = [{"β": r.config.beta, "γ": r.config.gamma, **{k: r.final(c) for k, c in cols.items()}}
            for r in runs]  # fmt: skip
    return pd.DataFrame(rows).drop_duplicates(["β", "γ"]).set_index(["β", "γ"])


BIASES = ("short", "neutral", "long")
SMOKE_BIAS_BUILD = dict(n_sft_docs=800, n_pref_prompts=600, sft_steps=250, rm_steps=40,
                        n_eval_prompts=64)  # fmt: skip


def get_bias_runs(p: Params, neutral: tuple, *, cache_dir=None) -> dict[str, tuple]:
    """Part 2's runs: DPO and SimPO (seed SEED) on a testbed whose gold prefers shorter
    (``"short"``) or longer (``"long"``) summaries, built side by side (minutes each; SMOKE:
    smaller builds whose SFT differs from part 1's), plus ``neutral`` (part 1's two runs)."""
    from rlhf_nb.chapters import ch04
    from rlhf_nb.runs import get_runs

    extra = SMOKE_BIAS_BUILD if p.smoke else {}
    variants = {b: dict(length_bias=b, **extra) for b in ("short", "long")}
    ch04.build_all(p.tb_preset, list(variants.values()), seed=p.seed, workers=p.workers,
                   cache_dir=cache_dir)  # fmt: skip
    c = configs(p)
    out = {"neutral": tuple(neutral)}
    for b, overrides in variants.items():
        out[b] = tuple(get_runs([c["dpo"], c["simpo"]], preset=p.tb_preset, testbed_seed=p.seed,
                                testbed_overrides=overrides, workers=p.workers,
                                cache_dir=cache_dir, verbose=False))  # fmt: skip
    return {b: out[b] for b in BIASES}


def bias_gaps(table: pd.DataFrame, d_dpo: pd.DataFrame, d_simpo: pd.DataFrame) -> dict:
    """Part 2's reading of :func:`bias_table` against the neutral setting's seed spread:
    ``gap`` {bias: DPO − SimPO Δgold} (one seed each), ``gap_sd`` the seed SD of that gap at
    the neutral setting, ``len_sd`` the larger seed SD of a final length, ``lengths`` the final
    lengths (bias × method), ``largest`` / ``smallest`` the biases with the largest / smallest
    gap, and ``lines``: the sentences the chapter prints."""
    gap = {b: table.loc[(b, "dpo"), "Δ gold"] - table.loc[(b, "simpo"), "Δ gold"] for b in BIASES}
    gap_sd = float(np.std(d_dpo["Δ gold"].values - d_simpo["Δ gold"].values, ddof=1))
    len_sd = max(float(d_dpo["length end"].std()), float(d_simpo["length end"].std()))
    spread = max(gap.values()) - min(gap.values())
    largest, smallest = max(gap, key=gap.get), min(gap, key=gap.get)
    lengths = table["length end"].unstack("method").loc[list(BIASES)]
    lines = [f"gold prefers {b:7s}: DPO − SimPO Δgold = {g:+.2f} ({abs(g) / gap_sd:.1f} seed "
             f"SDs of the neutral gap, SD {gap_sd:.2f})" for b, g in gap.items()]  # fmt: skip
    lines.append(f"the gaps span {spread:.2f} = {spread / gap_sd:.1f} seed SDs: "
                 + ("more than run-seed noise explains" if spread > 3 * gap_sd
                    else "within seed noise"))  # fmt: skip
    lines.append(f"the gap is largest when the gold prefers {largest} summaries and smallest "
                 f"when it prefers {smallest}; the length-exploit reading of chapter 02 (DPO's "
                 "summed log-ratio can buy margin with length) predicts the largest gap under "
                 "'short': " + ("consistent" if largest == "short"
                                else "not what these runs show"))  # fmt: skip
    lines.append(f"final length (tokens; seed SD at neutral {len_sd:.2f}):\n"
                 + lengths.round(2).to_string())  # fmt: skip
    return dict(gap=gap, gap_sd=gap_sd, len_sd=len_sd, lengths=lengths, largest=largest,
                smallest=smallest, lines=lines)  # fmt: skip


def kl_at_common_step(groups: dict) -> tuple[int, dict]:
    """Part 3a: the last step every group (``{name: SeedRuns}``) reached, and each group's KL
    to SFT there (the last logged value at or before it; a :class:`rlhf_nb.stats.Stat`)."""
    from rlhf_nb.stats import Stat

    step = min(int(r.history.step.max()) for g in groups.values() for r in g.runs)
    return step, {k: Stat.of([r.value_at("kl_k1", step) for r in g.runs])
                  for k, g in groups.items()}  # fmt: skip


def gamma_report(sweep: pd.DataFrame, beta: float, lo, hi, beta_runs: dict, gold_sd: float):
    """Part 3c's reading: the one-seed γ sweep at ``beta`` (:func:`sweep_table`), the seeded
    ends ``lo``/``hi`` (SeedRuns at the smallest and largest γ), the one-seed β sweep. Returns
    ``(gamma_gold_gap, lines)``: the bootstrap difference of final gold, largest − smallest γ,
    and the sentences the chapter prints."""
    from rlhf_nb.stats import differ

    g = sweep.loc[beta]
    gap = differ(hi.final("gold"), lo.final("gold"))
    rho = pd.Series(g["gold end"].values).corr(pd.Series(g.index), method="spearman")
    b_gold = {b: r.final("gold") for b, r in beta_runs.items()}
    b_gap = b_gold[min(b_gold)] - b_gold[max(b_gold)]
    row = lambda name, col, f: f"{name:8s}" + "  ".join(f.format(v) for v in col)  # noqa: E731
    lines = [row("γ:", g.index, "{:5.1f}"), row("gold:", g["gold end"], "{:5.2f}"),
             row("weight:", g["held-out weight end"], "{:5.2f}"),
             row("length:", g["length end"], "{:5.2f}"),
             f"one seed per γ: Spearman(γ, final gold) = {rho:+.2f}; one run's seed SD "
             f"{gold_sd:.2f}",
             f"over {lo.n} seeds, final gold at γ = {hi.config.gamma:g} minus at γ = "
             f"{lo.config.gamma:g}: {gap}",
             f"β sweep (one seed per β): final gold at β = {min(b_gold):g} minus at β = "
             f"{max(b_gold):g} = {b_gap:+.2f} ({abs(b_gap) / gold_sd:.1f} seed SDs of one "
             "run)"]  # fmt: skip
    return gap, lines
