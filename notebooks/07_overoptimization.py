# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version,-jupytext.text_representation.format_version
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Over-optimisation as a frontier, and remedies beyond entropy
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rlhf-nb/rlhf-nb/blob/main/notebooks/07_overoptimization.ipynb)
#
# Chapters 05 and 06 showed the paper's failure as curves over training steps. The field states
# over-optimisation differently: as **gold reward against how far the policy moved**,
# $d = \sqrt{\mathrm{KL}(\pi\,\|\,\pi_\text{SFT})}$ {cite:p}`gao2023scaling`. Gold rises, peaks
# and falls as $d$ grows; Gao et al. fit best-of-$n$ with $R(d) = d(a - b\,d)$ and RL with
# $R(d) = d(a - b\log d)$. On one such plane every method of this book — best-of-$n$, KL-RL,
# MaxEnt RL, DPO, SimPO — is a path, which is the sharpest way to state the paper's claim.
#
# The chapter has four parts: (1) the exact frontiers of each family of optimal policies on a
# space small enough to enumerate; (2) the measured frontier of the testbed's runs, with Gao
# fits; (3) entropy's two failure modes; (4) the paper's closing suggestion — reference-free
# online alignment needs "regularisation beyond entropy" — tested with six remedies. Sentences
# that describe results are printed from the numbers; the checkpoints assert what held.

# %% tags=["parameters"]
SMOKE = False  # CI-sized run: the smoke testbed and a few steps
SEED = 0  # seeds Python, NumPy, torch, the testbed and the first run seed
DEVICE = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
WORKERS = "auto"  # parallel training processes, "auto" for one per core of this machine
N_SEEDS = 3  # run seeds of the headline settings, the offline runs and every remedy; at least 2
LENGTH_BONUS = 0.4  # exact plane: the proxy's reward per token that the gold does not share
TOKEN_COST = 0.15  # exact plane: the gold's cost per token (a short correct answer is best)
REF_MIX = 0.5  # λ of the mixed-reference remedy, in [0, 1)
ENSEMBLE = 3  # proxy RMs of the ensemble remedy (2-16)
BON_N_MAX = 64  # best-of-n sizes 1, 2, 4, 8, ... up to this power of 2
BON_PROMPTS = 256  # eval prompts of the best-of-n frontier
LIVE_STEPS = 40  # steps of the live run started by the widget button

# %% [markdown]
# The next cell only does something in Colab: it installs this book's package.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab only; Colab keeps its own torch
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "rlhf-nb @ git+https://github.com/rlhf-nb/rlhf-nb"], check=True)

# %%
import math
import time

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import rlhf_nb
from rlhf_nb import stats, testbed
from rlhf_nb.chapters import ch05, ch07, claims
from rlhf_nb.methods import best_of_n
from rlhf_nb.theory import exact, frontier, heavy_tails, sequences
from rlhf_nb.viz import frontier_plots, live, run_plots

ctx = rlhf_nb.setup(seed=SEED, device=DEVICE, smoke=SMOKE)
p = ch07.Params.from_globals(globals())  # checks every parameter before any work starts
PRESET, run_seeds = p.preset, p.run_seeds
pd.set_option("display.width", 160)
print(f"device={ctx.device} seed={ctx.seed} smoke={ctx.smoke} preset={PRESET} seeds={run_seeds}")

# %% [markdown]
# ## 1. The exact plane
#
# Chapter 03's space of token sequences (vocabulary of 4 with EOS, at most 5 tokens: 364
# responses) with a **gold** reward that wants a short correct answer — 1 if the first token is
# right, minus `TOKEN_COST` per token — and a **proxy** that agrees about the answer but pays
# `LENGTH_BONUS` per token: the misspecification a learned reward model with a length bias has
# (much of RLHF's measured reward gain is longer answers {cite:p}`singhal2023long`).
# The SFT policy usually answers right and stops early. Four families of policies optimise the
# proxy, each with a knob (`rlhf_nb.theory.frontier.family_policies`):
#
# * the **KL family** $\pi_\beta \propto \pi_\text{SFT}\,e^{r/\beta}$, the optimum of KL-regularised
#   RLHF, from $\beta=\infty$ ($\pi_\text{SFT}$, $d=0$) to $\beta \to 0$;
# * the **MaxEnt family** $\pi_\alpha \propto e^{r/\alpha}$, from $\alpha=\infty$ — the *uniform*
#   policy, not $\pi_\text{SFT}$ — to $\alpha\to 0$;
# * **entropy + KL** with equal weights, $\pi_t \propto \pi_\text{SFT}^{1/2} e^{r/2t}$
#   (`combined_policy`, derived in its docstring);
# * **best-of-$n$** from $\pi_\text{SFT}$ under the proxy, its exact distribution for $n = 1\ldots64$.
#
# Move the slider to lower the temperature: each marker walks along its family.

# %%
problem = frontier.misspecified_problem(length_bonus=LENGTH_BONUS, token_cost=TOKEN_COST)
plane = frontier.family_frontiers(problem)
fig_plane = frontier_plots.exact_plane_figure(plane)
fig_plane.show()

# %%
fam = {f: g.reset_index(drop=True) for f, g in plane.groupby("family")}
sft_gold = float(problem.ref @ problem.gold)
kl_peak, bon_peak = (
    fam["kl"].loc[fam["kl"].gold.idxmax()],
    fam["best_of_n"].loc[fam["best_of_n"].gold.idxmax()],
)
me_start, me_closest = fam["maxent"].iloc[0], fam["maxent"].loc[fam["maxent"].d.idxmin()]
me_peak, comb_start = fam["maxent"].loc[fam["maxent"].gold.idxmax()], fam["combined"].iloc[0]
end_gold = fam["kl"].gold.iloc[-1]
bon_last = fam["best_of_n"].iloc[-1]
argmax = problem.space.sequences[int(np.argmax(problem.proxy))]
argmax_says = (f"a {len(argmax)}-token response that starts "
               f"{'with' if argmax[0] == 1 else 'without'} the right token")  # fmt: skip
print(
    f"π_SFT: gold {sft_gold:.3f}, length {problem.ref @ problem.space.lengths:.2f} tokens.\n"
    f"KL family: gold rises to {kl_peak.gold:.3f} at β = {kl_peak.coef:.3g} (d = {kl_peak.d:.2f}), "
    f"then moves to {end_gold:.3f} as β → 0: the proxy's argmax, {argmax_says}.\n"
    f"best-of-n: peak {bon_peak.gold:.3f} at n = {bon_peak.coef:.0f} (d = {bon_peak.d:.2f}); at n = "
    f"{bon_last.coef:.0f} its exact KL is {bon_last.kl:.2f} nats against the bound "
    f"log n − (n−1)/n = {frontier.bon_kl_bound(int(bon_last.coef)):.2f}.\n"
    f"MaxEnt family: at α = ∞ it is the uniform policy, d = {me_start.d:.2f} from π_SFT with gold "
    f"{me_start.gold:.3f} ({'below' if me_start.gold < sft_gold else 'above'} π_SFT's, length "
    f"{me_start.length:.2f}); its closest point to π_SFT "
    f"is d = {me_closest.d:.2f} (α = {me_closest.coef:.3g}), so no α gives π_SFT back; its best "
    f"gold is {me_peak.gold:.3f}, {'below' if me_peak.gold < kl_peak.gold else 'not below'} the "
    f"KL family's peak.\n"
    f"Entropy + KL (α = β = t) starts at √π_SFT normalised, d = {comb_start.d:.2f}."
)

# %% [markdown]
# Best-of-$n$'s bound $\log n - (n-1)/n$ is exact only for a continuous score, one that never
# ties. On a finite space every response is an atom: for $n \ge 2$ the exact KL stays strictly
# below the bound, and as $n$ grows it saturates where best-of-$n$ always returns the proxy's
# argmax.

# %%
top_level = float(-np.log(problem.ref[problem.proxy == problem.proxy.max()].sum()))
print(f"best-of-n at n = {bon_last.coef:.0f}: exact KL {bon_last.kl:.3f} nats, bound log n − (n−1)/n = "
      f"{frontier.bon_kl_bound(int(bon_last.coef)):.3f}; on a finite space the exact KL can never "
      f"pass −log π_SFT(top proxy level) = {top_level:.3f} (best-of-n then returns the argmax), "
      f"while the bound keeps growing like log n")  # fmt: skip

# %% [markdown]
# Why the entropy + KL family sits where it does: for every policy,
# $\mathbb E_\pi r + \alpha H(\pi) - \beta\,\mathrm{KL}(\pi\|\pi_\text{SFT}) = \mathbb E_\pi r -
# (\alpha+\beta)\,\mathrm{KL}(\pi\|\pi_\text{SFT}^{\tau}/Z_\tau) + \text{const}$ with
# $\tau = \beta/(\alpha+\beta)$ (`frontier.tempered_reference`, derived in its docstring). Entropy
# plus KL *is* KL-regularised RL, with coefficient $\alpha+\beta$, towards a **tempered** SFT
# policy. At $\alpha = \beta$, $\tau = 1/2$: the anchor $\sqrt{\pi_\text{SFT}}$ flattens the SFT
# policy towards uniform, and on a space where most responses are long, flatter means longer.

# %%
ref_half, _ = frontier.tempered_reference(problem.ref, 1.0, 1.0)  # τ = β/(α+β) = 1/2
lengths = problem.space.lengths
comb_gap = max(
    float(np.max(np.abs(frontier.combined_policy(problem.proxy, problem.ref, t, t)
                        - exact.kl_policy(problem.proxy, ref_half, 2 * t))))
    for t in (0.1, 1.0, 10.0)
)  # fmt: skip
print(f"entropy + KL at α = β = t is KL-RL with coefficient 2t towards √π_SFT/Z (largest gap "
      f"{comb_gap:.1e}); E|y| is {problem.ref @ lengths:.2f} tokens under π_SFT, "
      f"{ref_half @ lengths:.2f} under √π_SFT/Z, {lengths.mean():.2f} under the uniform policy")  # fmt: skip

# %% [markdown]
# The picture behind the paper's argument: the KL family and best-of-$n$ *start at* the SFT
# policy and trade distance for gold until the proxy's misspecification takes over. The MaxEnt
# family has no such start — its regularised end is the uniform policy, which on this space
# (and on any space where most responses are long) is long and wrong — so lowering α is the only
# way towards good answers, and it leads to the same proxy optimum the other families end at.
# With a learned proxy, "reference-free" means exactly this: nothing in the objective says
# *where the good text is*, only how spread out it should be.

# %% [markdown]
# ### 1b. An exact Goodhart criterion
#
# On this plane, "rises, peaks, falls" is a theorem. Each family except best-of-$n$ is an
# exponential family in the proxy, $\pi_s \propto \text{base}\cdot e^{s\,r_\text{proxy}}$: $s = 1/\beta$
# with base $\pi_\text{SFT}$ (KL), $s = 1/\alpha$ with base 1 (MaxEnt), $s = 1/(2t)$ with base
# $\sqrt{\pi_\text{SFT}}$ (entropy + KL). Since $\frac{d}{ds}\log\pi_s(y) = r_\text{proxy}(y) -
# \mathbb E_{\pi_s}[r_\text{proxy}]$,
#
# $$\frac{d}{ds}\,\mathbb E_{\pi_s}[r_\text{gold}] = \mathrm{Cov}_{\pi_s}(r_\text{gold},\, r_\text{proxy}).$$
#
# More optimisation pressure helps the gold reward exactly while gold and proxy covary positively
# *under the current policy*, and gold peaks exactly where that covariance changes sign.
# `frontier.goodhart_peak` finds that root without looking at the gold curve; the plane's grid
# argmax is the check. With an honest proxy the covariance is $\mathrm{Var}_{\pi_s}(r_\text{gold})
# \ge 0$: no peak in any family (exercise 1).

# %%
peaks = {f: frontier.goodhart_peak(problem, f) for f in frontier.GOODHART_FAMILIES}
step = math.log(fam["kl"].coef.iloc[1] / fam["kl"].coef.iloc[2])  # the plane's grid spacing
for f, pk in peaks.items():
    best = fam[f].loc[fam[f].gold.idxmax()]
    where = (f"Cov(gold, proxy) changes sign at {pk.coef:.4g}" if pk.interior
             else f"Cov(gold, proxy) keeps its sign: gold is monotone, best at the end {pk.coef:.4g}")  # fmt: skip
    print(f"{f:>8}: {where} (gold {pk.gold:.4f}); the plane's {len(fam[f]) - 1}-point grid peaks "
          f"at {best.coef:.4g} (gold {best.gold:.4f})")  # fmt: skip

# %% [markdown]
# ### 1c. The limits of the KL anchor: a heavy-tailed proxy error
#
# The KL family has a guarantee the MaxEnt family lacks: it stays within
# $(\max r - \mathbb E_\text{SFT} r)/\beta$ nats of $\pi_\text{SFT}$ (chapter 09). But a KL budget
# bounds how far the policy moves, not how much of the proxy's gain is real.
# {cite:t}`kwa2024catastrophic` show that when the proxy's error is *heavy-tailed*, some policies
# have a large proxy gain, a small KL and no gold gain ("catastrophic Goodhart"), while with a
# light-tailed, independent error the KL optimum gains gold. On this plane the proxy is now the
# gold reward plus an error drawn for each response, from a normal law or a Student-t law with 3 or
# 1 degrees of freedom. Every tail uses the same uniform draws (so the errors have the same ranks
# and the same median size, 0.3), and each draw is read off the KL family at a fixed KL budget
# (`rlhf_nb.theory.heavy_tails`; exact sums, only the errors are random):

# %%
honest_problem = frontier.misspecified_problem(length_bonus=0.0, token_cost=TOKEN_COST)
tails = heavy_tails.catastrophic_goodhart(
    honest_problem, dfs=[math.inf, 3.0, 1.0], kls=[0.25, 1.0], scale=0.3,
    n_draws=16 if SMOKE else 64, rng=np.random.default_rng(SEED),
)  # fmt: skip
tail_table = heavy_tails.tail_summary(tails)
display(tail_table.round(3))
light, cauchy = tail_table.loc[(math.inf, 1.0)], tail_table.loc[(1.0, 1.0)]
print(f"at a KL budget of 1 nat: normal errors gain {light['gold gain (median)']:.2f} gold "
      f"(median over {light.draws:.0f} draws; {light['share losing gold']:.0%} of draws lose gold) "
      f"for a proxy gain of {light['proxy gain (median)']:.2f}; Cauchy errors of the same median size "
      f"gain {cauchy['gold gain (median)']:+.2f} ({cauchy['share losing gold']:.0%} lose gold) for a "
      f"proxy gain of {cauchy['proxy gain (median)']:.1f}")  # fmt: skip

# %% [markdown]
# At the same distance from $\pi_\text{SFT}$, the heavier the error's tail, the more of the
# proxy's gain is error: the optimiser spends its KL budget on the few responses the proxy
# overrates most. The KL anchor limits the drift; it does not certify the gain.

# %% [markdown]
# ## 2. The measured frontier on the testbed
#
# Now the same plane with trained policies. Chapter 05's headline online runs (plain RLOO α = 0,
# MaxEnt α > 0, KL β weak and strong) and chapter 06's DPO and SimPO runs
# ({cite:t}`rafailov2024scaling` found direct alignment over-optimising on this plane too) come
# from the cache at `N_SEEDS` seeds each (the same configs: when those chapters ran, nothing trains here); each
# history row gives a point (d, gold) — read through the book's one smoothing window
# (`rlhf_nb.stats.WINDOW` steps), since one batch is noisy. Best-of-$n$ from the SFT policy under the proxy RM
# (`rlhf_nb.methods.best_of_n.bon_frontier`) is computed from one set of `BON_N_MAX` samples per
# prompt, with its KL measured exactly over those samples.

# %%
tb = testbed.build(PRESET, seed=SEED, cache_dir=ctx.cache_dir)
c07 = ch07.configs(p, tb)  # chapter 05's and 06's runs from their own modules, + the remedies
heads, remedies, sft = c07["heads"], c07["remedies"], c07["sft"]
print(f"SFT policy on {BON_PROMPTS} eval prompts: length {sft['length']:.2f} tokens, "
      f"per-token entropy {sft['entropy_token']:.3f} nats, gold {sft['gold']:.3f}")  # fmt: skip
display(pd.DataFrame({k: {"config": c.label(), "regularizer": c.regularizer}
                      for k, c in remedies.items()}).T)  # fmt: skip

# %% [markdown]
# The remedies of part 4 (above, derived from the testbed rather than tuned to a run; the table
# in `rlhf_nb.chapters.ch07`'s docstring says why each coefficient; the reward-model ensemble
# follows {cite:t}`coste2024ensembles`, the adaptive entropy coefficient SAC's temperature tuning
# {cite:p}`haarnoja2018sacapps`) train in the same process
# pool as everything else this chapter needs, longest first: the headline settings, the
# offline runs and every remedy at every seed.

# %%
t0 = time.perf_counter()
got = ch07.get(p, tb, configs_=c07, cache_dir=ctx.cache_dir)
seeded, offline_seeded, remedy_seeded = got["heads"], got["offline"], got["remedies"]
sweep_runs_hi = got["sweep"]  # chapter 05's α sweep at the higher rate, one seed
remedy_runs = {k: g.runs[0] for k, g in remedy_seeded.items()}  # seed SEED of each remedy
t_bon = time.perf_counter()
bon = best_of_n.bon_frontier(tb, n_max=8 if SMOKE else BON_N_MAX,
                             n_prompts=16 if SMOKE else BON_PROMPTS, seed=SEED)  # fmt: skip
print(
    f"runs ready in {t_bon - t0:.0f} s; best-of-n frontier in {time.perf_counter() - t_bon:.0f} s"
)
bon.round(3)

# %% [markdown]
# Each method's path on the plane (chapter 05's one-seed α sweep included, without a fit), gold gain over its own start on the left and the proxy it
# optimised on the right; the dashed curves are Gao et al.'s forms fitted to each method's points
# pooled over seeds (`rlhf_nb.chapters.ch07.gao_table`: best-of-$n$ with $d(a-bd)$, the RL runs
# with $d(a - b\log d)$, for which the peak sits at $d^* = e^{a/b-1}$).

# %%
NAMES = {"rloo": "RLOO α=0", "maxent": f"MaxEnt α={heads['maxent'].alpha:g}",
         "kl_weak": f"KL β={heads['kl_weak'].beta:g}", "kl_strong": f"KL β={heads['kl_strong'].beta:g}",
         "rloo_slow": f"RLOO α=0, lr={heads['rloo_slow'].lr:g}"}  # fmt: skip
one_seed_sweep = {f"α={r.config.alpha:g} (one seed)": [r] for r in sweep_runs_hi
                  if r.config.alpha not in (0.0, heads["maxent"].alpha)}  # fmt: skip
points = pd.concat([
    ch07.frontier_points({NAMES[k]: g.runs for k, g in seeded.items()}),
    ch07.frontier_points(one_seed_sweep),
    ch07.frontier_points({k: g.runs for k, g in offline_seeded.items()}),
    ch07.bon_points(bon),
], ignore_index=True)  # fmt: skip
forms = {"best-of-n": "bon", **{NAMES[k]: "rl" for k in seeded},
         **{k: "rl" for k in offline_seeded}}  # fmt: skip
fits = ch07.gao_table(points, forms)
frontier_plots.empirical_frontier_figure(points, fits).show()
fits.drop(columns="note").round(3)

# %%
peak_rows = points.loc[points.groupby(["method", "seed"]).gain.idxmax()]
peak_d = peak_rows.groupby("method").d.agg(["mean", "min", "max"])
for m, f in fits.iterrows():
    where = (f"fitted peak at d* = {f.d_star:.2f} (gain {f.gain_star:+.2f})" if np.isfinite(f.d_star)
             else "the fit does not turn over within the data")  # fmt: skip
    print(f"{m:12s} a = {f.a:.3f} ± {f.a_se:.3f}, b = {f.b:.3f} ± {f.b_se:.3f}; {where}; "
          f"measured peaks at d = {peak_d.loc[m, 'mean']:.2f} (seeds {peak_d.loc[m, 'min']:.2f}–"
          f"{peak_d.loc[m, 'max']:.2f}), largest d {f.d_max:.2f}, fit RMSE {f.rmse:.3f}"
          + (f" [{f.note}]" if f.note else ""))  # fmt: skip

# %% [markdown]
# How to read the fits. Best-of-$n$ follows its form closely; the unanchored RL runs fit worse
# than the anchored ones (larger RMSE) because they fall faster than $d(a-b\log d)$ allows, which
# tends to pull their fitted $d^*$ before the measured peaks — the printout above gives both. The
# checkpoints assert the RMSE comparison; where $d^*$ falls against the seeds' peaks is printed
# with them, not asserted (it moved past one seed's peak at a hold-out testbed), so the reading
# does not rest on the fit alone. A fit whose $b$ is
# not clearly positive (two standard errors) has no peak within reach: the run never turned over.
# The standard errors treat every point as independent; successive smoothed steps of one run are
# not, so they understate the uncertainty — compare methods by the seed bands of part 4, not by
# these SEs.

# %%
bon_best = bon.loc[bon.gold.idxmax()]
print(
    f"best-of-n: gold {bon.gold.iloc[0]:.3f} at n = 1 rises to {bon_best.gold:.3f} at n = "
    f"{bon_best.n:.0f} (d = {bon_best.d_sample:.2f}), then falls to {bon.gold.iloc[-1]:.3f} at n = "
    f"{bon.n.iloc[-1]:.0f} (standard errors over prompts {bon.gold_se.iloc[-1]:.3f}); its KL over "
    f"the samples is {bon.kl_sample.iloc[-1]:.2f} nats against the bound {bon.kl_bound.iloc[-1]:.2f}."
)
for m in (NAMES["maxent"], NAMES["kl_strong"]):
    p_end = points[points.method == m].groupby("seed").tail(1)
    print(f"{m}: the runs end at d = {p_end.d.mean():.2f} (seeds {p_end.d.min():.2f}–{p_end.d.max():.2f}), "
          f"gold gain {p_end.gain.mean():+.2f}")  # fmt: skip

# %% [markdown]
# ## 3. Entropy's two failure modes
#
# Entropy enters the paper's story twice, in opposite directions. Without a regulariser (α = 0)
# RLOO hacks the proxy and the policy's per-token entropy *falls*: it narrows onto what the proxy
# likes (the entropy collapse {cite:t}`cui2025entropy` describe in RL for reasoning models). With a sequence-level entropy bonus the entropy *rises*, and the bonus pays
# for every extra token (the next cell says how much), so the runs grow to the length cap and
# stop emitting EOS. An adaptive coefficient that holds the SFT policy's per-token entropy (the
# `adaptive` remedy, as TRL's `use_adaptive_entropy`) is drawn with them.

# %%
a_me, V = heads["maxent"].alpha, tb.sft_policy.config.vocab_size
display(Markdown(
    f"One more token earns the sequence-level bonus its sampled surprisal, "
    f"α·(−log π(y_t | y_<t)), whose mean is α times the next-token entropy: at the SFT policy "
    f"α·H_tok = {a_me:g} × {sft['entropy_token']:.2f} = {a_me * sft['entropy_token']:.3f} reward "
    f"units per token, below the ceiling α·log V = {a_me * np.log(V):.3f} that only a uniform next "
    f"token pays (chapter 03)."
))  # fmt: skip

# %%
sweep_runs = {f"α={r.config.alpha:g} (seed {SEED})": r for r in sweep_runs_hi}
entropy_runs = {
    **sweep_runs,
    f"adaptive H*={remedies['adaptive'].target_entropy:g}": remedy_runs["adaptive"],
}
run_plots.panels_figure(
    list(entropy_runs.values()),
    ("entropy_token", "length", "eos_rate"),
    labels=list(entropy_runs),
    title="Per-token entropy, length and EOS rate (one seed each)",
).show()
run_plots.band_figure(
    [seeded["rloo"], seeded["maxent"]],
    ("entropy_token", "length"),
    title=f"α = 0 and the headline MaxEnt α over {len(run_seeds)} seeds (mean and 95% band)",
).show()

# %%
ent = {k: seeded[k].summaries() for k in ("rloo", "maxent")}
rloo_drop = stats.Stat.of(ent["rloo"]["entropy_start"] - ent["rloo"]["entropy_final"])
me_len, me_eos = seeded["maxent"].final("length"), seeded["maxent"].final("eos_rate")
me_runaway = ch05.runaway(seeded["maxent"], tb.max_new_tokens)  # chapter 05's seed-by-seed end
adapt = remedy_runs["adaptive"]
adapt_h = adapt.final("entropy_token")
print(
    f"α = 0: per-token entropy falls by {rloo_drop} nats/token from the SFT policy's.\n"
    f"MaxEnt α = {heads['maxent'].alpha:g}: final length {me_len} tokens (cap "
    f"{tb.max_new_tokens}), EOS rate {me_eos}. {me_runaway.sentence()}\n"
    f"adaptive: target {remedies['adaptive'].target_entropy:g}, last {stats.WINDOW} steps' mean "
    f"{adapt_h:.3f} nats/token; its coefficient ended at {adapt.history['alpha_tok'].iloc[-1]:.3f}."
)

# %% [markdown]
# ## 4. Remedies beyond entropy
#
# Six regularisers of the online loop, each added to (or replacing) the MaxEnt run's entropy
# bonus with everything else equal, every one at `N_SEEDS` seeds, so that each comparison —
# does a remedy beat the MaxEnt run, where does it sit against the KL-anchored runs, which
# remedy beats which — has seed bands. "final" is the book's one summary rule: the mean over
# the last `rlhf_nb.stats.WINDOW` steps (one batch is noisy). Not among them: regularisers that
# shield only some low-probability tokens with a KL to a filtered copy of the policy
# {cite:p}`huang2025lpreg` (chapter 01); this chapter does not run them.

# %%
HEADS = ch07.HEADS  # the headline settings at the higher rate
settings = {**{NAMES[k]: seeded[k] for k in HEADS},
            **{f"remedy: {k}": g for k, g in remedy_seeded.items()}}  # fmt: skip
table = ch07.remedy_table(settings)
best_key = table.loc[[f"remedy: {k}" for k in remedies], "gold_final"].idxmax()
best = best_key.removeprefix("remedy: ")
best_seeded = remedy_seeded[best]
table = table.rename(index={best_key: f"{best_key} (best)"})
table["outcome"] = [ch07.outcome(r, cap=tb.max_new_tokens) for _, r in table.iterrows()]
table.round(3)

# %% [markdown]
# The ranking, stated only where the seeds separate it: the remedies sorted by mean final gold,
# each next to the one below it with a 95 % bootstrap interval of the difference
# (`rlhf_nb.chapters.ch07.ranking`).

# %%
ranks = ch07.ranking({k: g for k, g in remedy_seeded.items()}, "gold")
print(ch07.ranking_sentence(ranks))
ranks.round(3)

# %% [markdown]
# The same settings at equal distance: each remedy's (and each headline setting's) gold gain
# where its KL to SFT first reaches a quarter, half and all of the largest KL that every one of
# these runs reaches (`rlhf_nb.chapters.ch07.matched_remedies`, on `rlhf_nb.stats.matched_kl`). A remedy that ends
# with little gold only because it moved far shows here as a good policy per nat; one that is
# worse at every budget is worse, not merely farther.

# %%
remedy_matched = ch07.matched_remedies(settings, NAMES["kl_strong"])
print(remedy_matched.sentence())
remedy_matched.table.round(2)

# %% tags=["results"]
# fitted frontiers and remedy outcomes for the README and the site's Results page (make book)
fit_cols = ["form", "a", "b", "d_star", "gain_star", "d_max", "n_points"]
display(Markdown(
    "Chapter 07, Gao et al.'s forms fitted to each method's (d, gold gain) points:\n\n"
    + fits[fit_cols].round(3).to_markdown()
    + "\n\nChapter 07, outcome of each setting (final values, mean over its seeds):\n\n"
    + table[["n", "gold_final", "kl_final", "length_final", "outcome"]].round(3).to_markdown()
))  # fmt: skip

# %%
for kind in ch07.OUTCOMES:
    names = [k for k, r in table.iterrows() if r.outcome == kind]
    if names:
        print(f"{kind}: {', '.join(names)}")

# %%
diffs = {}
for other in ("maxent", "kl_strong", "kl_weak", "rloo"):
    for col in ("gold", "kl_k1"):
        diffs[(other, col)] = stats.differ(best_seeded.final(col), seeded[other].final(col))
for (other, col), d in diffs.items():
    print(f"best remedy ({best}) minus {NAMES[other]}, final {col}: {d}")

# %%
shares = {b: sequences.large_alpha_no_eos_share(V, tb.max_new_tokens, b)
          for b in sequences.LIMIT_BONUSES}  # fmt: skip
display(Markdown(
    "The remedies differ in what they act on. The length cost c = α·log V pays back the most the "
    "sequence bonus can pay for a token (on average it pays less, α·H_tok); the length-normalised "
    "bonus divides the surprisal by |y| and, paid as a detached reward, also pays a shortness bonus "
    "α'/|y|: that run optimises SimPO's objective J′ online (chapter 03, §2c). Neither removes the "
    f"cap as an attractor when α is large at V ≫ L: as α → ∞ the length-cost objective tends to the "
    f"token-uniform policy, with {shares['length']:.2f} of its mass at the cap (no EOS) on this "
    f"testbed, and the token-averaged one to {shares['token_averaged']:.2f}, against "
    f"{shares['sequence']:.2f} for the plain bonus (`sequences.large_alpha_no_eos_share`). And "
    "nothing in either anchors the policy to π_SFT, so nothing stops it from hacking the proxy the "
    "way plain RLOO does."
))  # fmt: skip

# %% [markdown]
# Holding an entropy level or averaging proxy RMs acts on neither the anchor nor the length pull.
# The mixed reference and entropy + KL keep a KL term towards $\pi_\text{SFT}$, paid in the
# reward as the response's summed $k_1$: the placement whose gradient is the sequence KL's
# (chapter 03, {cite:p}`tang2025pitfalls`). Every remedy ran at every seed; the checkpoints
# below assert only what held at every seed.

# %% [markdown]
# Where each remedy ends on the frontier: the slider picks a remedy and draws its paths (every
# seed) over the headline settings' paths at the first seed.

# %%
remedy_points = ch07.frontier_points({k: g.runs for k, g in remedy_seeded.items()})
head_points = points[points.method.isin([NAMES[k] for k in HEADS]) & (points.seed == SEED)]
frontier_plots.path_slider_figure(head_points, remedy_points).show()

# %% [markdown]
# ### Steer it yourself
#
# In JupyterLab or Colab the controls below train a short live run with both knobs: α, the
# sequence-level entropy bonus, and λ, the anchor λ·π_SFT + (1−λ)·uniform of a KL penalty of
# weight β (the strong KL run's). λ = 1 with α = 0 is KL-RLHF; λ = 0 anchors every token to 1/V,
# which is an entropy bonus of weight β plus a length cost of β·log V per token (chapter 03). An
# entropy bonus alone anchors to the uniform law over whole responses (chapter 01), and that law
# sits at the length cap. On this static page the slider figure above carries the cached runs.

# %%
box, _ = live.anchor_widget(
    tb, [remedy_runs["ref_mix"], remedy_runs["entropy_kl"]], steps=LIVE_STEPS,
    alpha=heads["maxent"].alpha, ref_mix=REF_MIX, beta=heads["kl_strong"].beta,
    lr=heads["maxent"].lr,
)  # fmt: skip
display(box)

# %% [markdown]
# ## 5. The objective or the proxy? Optimising the gold reward itself
#
# Every run so far optimised the learned proxy, so a MaxEnt failure could be Goodhart's law (the
# proxy is wrong where the policy goes) or the objective itself (an entropy bonus with no anchor
# pulls towards the uniform law over responses, chapter 01, whichever reward it is added to). The
# testbed has the gold reward the proxy imitates, so the policy can be trained on the truth — the
# *verifiable-reward* setting in which KL-free RL is today's default (TRL's GRPO `beta=0`). Cross
# the reward optimised (proxy / gold) with the regulariser (none, the MaxEnt α, the strong KL β,
# both) at the book's headline values, `N_SEEDS` seeds each; the proxy row is the runs above.

# %%
sources = got["sources"]
src_table = ch07.source_table(sources)
SRC_NAMES = {"gold_start": "gold SFT", "gold_final": "gold final", "gold_gain": "gold gain",
             "gold_fall": "fall from peak", "kl_k1_final": "final KL", "length_final": "length",
             "eos_final": "EOS rate"}  # fmt: skip
reg_names = {"none": "α=0", "entropy": f"α={heads['maxent'].alpha:g}",
             "kl": f"β={heads['kl_strong'].beta:g}",
             "entropy+kl": f"α={heads['maxent'].alpha:g} + β={heads['kl_strong'].beta:g}"}  # fmt: skip
display(Markdown(stats.markdown_table(
    {f"{r} reward, {reg_names[k]}": row for (r, k), row in src_table.iterrows()}, SRC_NAMES
)))  # fmt: skip
gold_cells = [sources[("gold", k)] for k in ch07.SOURCE_REGULARIZERS]
run_plots.band_figure(
    gold_cells, ("gold", "kl_k1", "length", "eos_rate"),
    title=f"Optimising the gold reward: mean and 95% band over {len(run_seeds)} seeds",
).show()  # fmt: skip
source_points = ch07.frontier_points({f"gold reward, {reg_names[k]}": sources[("gold", k)].runs
                                      for k in ch07.SOURCE_REGULARIZERS})  # fmt: skip
frontier_plots.path_slider_figure(
    head_points, source_points, param="gold-trained",
    title="Each gold-trained run's path (black) over the proxy-trained headline settings",
).show()  # fmt: skip
src_diffs = ch07.source_contrasts(sources)
for name, d in src_diffs.items():
    print(f"final gold, {name}: {d}")

# %% [markdown]
# What the design says, from the numbers above (the checkpoints assert the parts that held on the
# testbed builds named there):

# %%
g_me, p_me = src_table.loc[("gold", "entropy")], src_table.loc[("proxy", "entropy")]
g_none, g_kl = src_table.loc[("gold", "none")], src_table.loc[("gold", "kl")]
cap = tb.max_new_tokens
# the verdict by the claims table's stated rule (chapter 09 reads the same function)
truth = claims.maxent_fails_on_truth(sources[("gold", "entropy")], sources[("gold", "none")],
                                     sources[("proxy", "entropy")], cap=cap).status  # fmt: skip
kl_vs_none = src_diffs["on gold: kl − none"]
me_gap = stats.Stat.of(np.subtract(sources[("gold", "entropy")].final("gold").values,
                                   sources[("proxy", "entropy")].final("gold").values))  # fmt: skip
display(Markdown(
    f"* **MaxEnt on the truth.** Trained on the gold reward itself, the MaxEnt run "
    f"(α = {heads['maxent'].alpha:g}) ends at gold gain {g_me['gold_gain'].fmt()} with length "
    f"{g_me['length_final'].fmt(1)} of the {cap}-token cap and EOS rate {g_me['eos_final'].fmt()}"
    f" (on the proxy: gain {p_me['gold_gain'].fmt()}, length {p_me['length_final'].fmt(1)}; "
    f"final gold, gold-trained minus proxy-trained, seed by seed: {me_gap.fmt()}). "
    + ("So MaxEnt fails **without** a misspecified reward: the entropy bonus alone drives it to the "
       "cap, below where it started — the objective, not Goodhart. "
       if truth == "confirmed" else
       "So at this α MaxEnt does **not** fail when the reward is the truth: it gains gold at every "
       "seed and keeps emitting EOS. The gold reward charges for a summary cut off at the budget, "
       "which outweighs what the entropy bonus pays per extra token; the proxy never learned that "
       "charge (its training pairs were SFT samples, chapter 04), so on the proxy the same bonus "
       f"runs to the cap ({me_runaway.n_collapsed} of {me_runaway.n} seeds within the run, §3). "
       "The collapse is the entropy bonus *exploiting the proxy's blind spot* — "
       "Goodhart, enabled by the missing anchor — not the MaxEnt objective on its own. "
       if truth == "contested" else
       "Its seeds disagree (some gain, some lose, or it reaches the cap without losing), so the "
       "design does not settle, at this α and on this testbed, whether the objective alone fails. ")
    + f"\n* **No regulariser on the truth** (plain RLOO on gold) ends at gain "
    f"{g_none['gold_gain'].fmt()}, falling {g_none['gold_fall'].fmt()} from its peak: "
    + ("with nothing to exploit it keeps what it gains. " if g_none["gold_fall"].max < 0.5 else
       "even the truth can be over-optimised by the sampler's drift. ")
    + f"\n* **KL on the truth.** β = {heads['kl_strong'].beta:g} minus no regulariser, final gold: "
    f"{kl_vs_none} — the anchor "
    + ("**costs** gold when the reward is verifiable, as current practice holds."
       if kl_vs_none.hi < 0 else
       "**helps** even with the true reward." if kl_vs_none.lo > 0 else
       "makes no difference beyond seed noise when the reward is the truth.")
))  # fmt: skip

# %% [markdown]
# The checkpoints of this section (below, at the end of the chapter's checkpoints) were set from
# testbed 0 and validated on testbed 1 before they went in; testbeds 2-4 have not been run.
#
# ## Checkpoints

# %%
# exact (float64, no seeds involved): the families' ends and identities
assert fam["kl"].d.iloc[0] == 0 and fam["best_of_n"].d.iloc[0] == 0  # both start at π_SFT
uniform = np.full(problem.space.size, 1 / problem.space.size)
assert abs(me_start.kl - exact.kl_divergence(uniform, problem.ref)) < 1e-12
assert me_closest.d > 0.5, me_closest  # no α gives π_SFT back
assert 0 < comb_start.d < me_start.d  # entropy + KL starts between π_SFT and the uniform end
for t in (0.1, 1.0, 10.0):
    pi = frontier.combined_policy(problem.proxy, problem.ref, t, t)
    assert frontier.stationarity_gap(pi, problem.proxy, problem.ref, t, t) < 1e-9
# entropy + KL is KL-RL towards the tempered √π_SFT (gap ~4e-17), which is the longer anchor
assert comb_gap < 1e-12 and problem.ref @ lengths < ref_half @ lengths < lengths.mean()
bon_exact = fam["best_of_n"]
assert all(r.kl <= frontier.bon_kl_bound(int(r.coef)) + 1e-12 for r in bon_exact.itertuples())
# on a finite space the bound is never attained for n >= 2, and the exact KL saturates at
# −log π_SFT(top proxy level) (n = 64: 2.177 against 2.181, the bound 3.17)
assert (bon_exact.kl <= top_level + 1e-12).all()
assert (bon_exact.kl.iloc[1:]
        < [frontier.bon_kl_bound(int(n)) for n in bon_exact.coef.iloc[1:]]).all()  # fmt: skip
assert kl_peak.gold > max(sft_gold, end_gold) + 0.05  # the KL family rises, then falls
assert bon_peak.gold > max(sft_gold, bon_last.gold) + 0.05
# the Goodhart criterion: gold peaks at a root of Cov(gold, proxy), found without the gold
# curve; the grid argmax lies within one grid step of it (observed 0.11 in log coef, step 0.24)
for f, pk in peaks.items():
    best = fam[f].loc[fam[f].gold.idxmax()]
    assert pk.interior, pk  # the misspecified proxy: rises, peaks, falls
    assert pk.gold >= best.gold - 1e-12, (pk, best.gold)  # the root is at least the grid's best
    assert abs(math.log(pk.coef / best.coef)) <= step + 1e-9, (pk, best.coef)  # and next to it
# heavy tails at a KL budget of 1 nat, measured at SEED 0-9 (64 draws; 16 in SMOKE): normal
# median gain 0.32-0.42, its 5 % quantile 0.17-0.32, no draw losing gold; Cauchy median
# -0.10 to -0.003, 50-75 % of draws losing gold, proxy gain 8-20 times the normal's
assert light["gold gain 5%"] > 0.05 and light["share losing gold"] < 0.05, light
assert cauchy["gold gain (median)"] < min(0.1, 0.3 * light["gold gain (median)"]), cauchy
assert cauchy["share losing gold"] > 0.3, cauchy
assert cauchy["proxy gain (median)"] > 4 * light["proxy gain (median)"], (light, cauchy)
# the heavier the tail, the smaller the gold share of the proxy's gain, at both budgets
# (observed normal 0.44-0.59, t(3) 0.16-0.41, Cauchy -0.01 to 0.01; gaps >= 0.14)
gold_share = tail_table["gold share of proxy gain (median)"]
for kl in (0.25, 1.0):
    assert (gold_share[(math.inf, kl)] > gold_share[(3.0, kl)] + 0.05
            > gold_share[(1.0, kl)] + 0.1), gold_share  # fmt: skip

# %%
# the testbed's closed forms (no run involved): the sequence bonus pays α·H_tok per token on
# average, below its ceiling α·log V (§3 prints both); at V ≫ L the α → ∞ ends of the length
# cost and the token average still sit at the cap (0.83, 0.88 against 0.99 at V = 84, L = 16)
assert a_me * sft["entropy_token"] < a_me * np.log(V)
assert shares["sequence"] > shares["token_averaged"] > shares["length"] > 0.5, shares

# measured, at every seed of the multi-seed settings; margins from the observed spread
cap = tb.max_new_tokens
if not SMOKE:
    me_kl, strong_kl = seeded["maxent"].final("kl_k1"), seeded["kl_strong"].final("kl_k1")
    # observed ~40x at testbeds 0-2, where ">10x the anchor's largest" was set; at hold-out
    # testbed 3 (2026-12-04 machine) the MaxEnt seed that had not run away by step 200 ended at
    # 4.8x, so that is printed and "farther than the anchor at every seed" asserted (testbed 4 is
    # its hold-out)
    print(f"observation: MaxEnt's least final KL is ×{me_kl.min / strong_kl.max:.1f} the strong "
          f"anchor's largest (above ×10: {bool(me_kl.min > 10 * strong_kl.max)})")  # fmt: skip
    assert me_kl.min > strong_kl.max, (me_kl, strong_kl)
    # the length attractor: "every seed at >= 0.9 cap with EOS < 0.1" held at testbeds 0-2 and
    # failed at testbed 3 (one seed had not left the SFT length), so it is printed seed by seed
    # (chapter 05's runaway reading) and "most seeds collapse" is asserted, as in chapter 05
    print(f"observation: {me_runaway.sentence()}")
    assert me_runaway.most_collapsed, me_runaway.table
    assert rloo_drop.min > 0.2, rloo_drop  # α = 0: per-token entropy falls (observed 0.65-1.03)
    gold_gap = diffs[("maxent", "gold")]
    # the best remedy beats MaxEnt: by ~8 with a CI half-width ~0.3 at testbeds 0-2, where
    # "CI lower end > 3" was set; at hold-out testbed 3 +5.11 [+0.89, +7.71] (the MaxEnt seed
    # that had not run away ended near the SFT gold), so "> 3" is printed and "beyond seed noise"
    # (lower end > 0) asserted, to be validated on testbed 4
    print(f"observation, best remedy minus MaxEnt, final gold: {gold_gap}; CI lower end above 3: "
          f"{bool(gold_gap.lo > 3.0)}")  # fmt: skip
    assert gold_gap.lo > 0, gold_gap
    assert not diffs[("kl_strong", "gold")].lo > 0  # and does not beat the strong KL anchor
    assert table.loc[[k for k in table.index if "(best)" in k][0], "outcome"] == "anchored"
    # best-of-n rises, then falls, by more than 2 standard errors over prompts
    assert bon_best.gold - bon.gold.iloc[0] > 3 * bon_best.gold_se, bon
    assert bon.gold.iloc[-1] < bon_best.gold - 2 * bon.gold_se.iloc[-1], bon
    assert (bon.kl_sample <= bon.kl_bound + 1e-9).all()
    # the Gao best-of-n form fits its points closely; a fit only ever claims a peak it can back
    assert fits.loc["best-of-n", "rmse"] < 0.05, fits
    # the unanchored runs fit Gao's RL form worse than the anchored ones (observed RMSE
    # 0.13-0.31 vs 0.055-0.084)
    unanchored = [NAMES["rloo"], NAMES["maxent"]]
    anchored = [NAMES["kl_weak"], NAMES["kl_strong"]]
    assert fits.loc[unanchored, "rmse"].min() > fits.loc[anchored, "rmse"].max(), fits
    # an observation, not a checkpoint: "α = 0's fitted peak d* sits before every seed's measured
    # peak" held at SEED 0-2 (where it was set) but failed at a hold-out testbed seed (issue 26's
    # report: d* 0.887 against one seed's peak at d = 0.818): where the fit turns over moves with
    # the seeds that make it
    d_star, d_first = fits.loc[NAMES["rloo"], "d_star"], peak_d.loc[NAMES["rloo"], "min"]
    print(f"observation: α = 0's fitted d* {d_star:.3f}, its seeds' earliest measured peak at "
          f"d = {d_first:.3f} (d* before every seed's peak: {bool(d_star < d_first)})")  # fmt: skip
    assert all(np.isinf(f.d_star) or f.b > 2 * f.b_se for f in fits.itertuples())


if not SMOKE:
    # §5, reward source × regulariser (thresholds from testbed 0, held on testbed 1; margins
    # printed): on the gold reward the MaxEnt run gains gold and keeps emitting EOS, far from
    # the proxy-trained collapse; with the true reward the KL anchor costs gold
    stats.holds("MaxEnt on gold: gold gain", g_me["gold_gain"], ">", 0.0)
    me_share = np.asarray(g_me["length_final"].values) / cap
    stats.holds("MaxEnt on gold: final length / cap", me_share, "<", 0.5)
    # "> 1 (log)" held on testbeds 0-1 and failed the margin at hold-out testbed 3 (every seed
    # above 1, +1.33 to +8.19, but 1.4 log-SDs: the proxy-trained seed that had not run away
    # lost little gold); printed, and restated after testbed 3 at 0.1 on the log scale, like the
    # chapter's other gold gaps (testbed 4 is its hold-out)
    print(f"observation, MaxEnt final gold, gold-trained − proxy-trained: {me_gap.fmt()}; every "
          f"seed above 1: {bool(me_gap.min > 1.0)}")  # fmt: skip
    stats.holds("MaxEnt final gold, gold-trained − proxy-trained", me_gap, ">", 0.1, log=True)
    stats.holds("plain RLOO on gold: fall from peak", g_none["gold_fall"], "<", 0.5)
    assert kl_vs_none.hi < 0, kl_vs_none  # the strong anchor costs gold on the truth

# %% [markdown]
# ## Exercises
#
# Each exercise uses the package; its worked solution is the collapsed cell below it (click to
# show it on the site). The solutions run with the chapter, so they cannot rot.
#
# **1. Make the proxy honest.** Rebuild the exact problem with `length_bonus=0` (the proxy is
# then the gold reward) and compute its frontiers. Does the KL family still over-optimise — does
# gold fall as β falls? And the MaxEnt family as α falls? What, then, is left of MaxEnt's failure?

# %% tags=["hide-input"]
# Solution 1: with proxy = gold the Goodhart slope (§1b) is Cov(gold, gold) = Var(gold) >= 0 in
# every family, so gold only rises with the optimisation pressure: KL-RL as β falls, MaxEnt as α
# falls. Neither over-optimises. What is left of MaxEnt's failure is its large-α end: the
# uniform policy, far from π_SFT and worse in gold than π_SFT. Its failure needs no misspecified
# proxy, but it is not over-optimisation.
honest = frontier.misspecified_problem(length_bonus=0.0, token_cost=TOKEN_COST)
honest_plane = frontier.family_frontiers(honest)
h_kl = honest_plane[honest_plane.family == "kl"]  # rows from β = ∞ down: optimisation pressure up
h_me = honest_plane[honest_plane.family == "maxent"]  # from α = ∞ down
print(f"KL family: gold {h_kl.gold.iloc[0]:.3f} at β = ∞ (π_SFT) → {h_kl.gold.iloc[-1]:.3f} at "
      f"β = {h_kl.coef.iloc[-1]:g} (d = {h_kl.d.iloc[-1]:.2f}); largest step down as β falls "
      f"{max(0.0, (-h_kl.gold.diff()).max()):.1e}")  # fmt: skip
print(f"MaxEnt family: gold {h_me.gold.iloc[0]:.3f} at α = ∞ (the uniform policy, d = "
      f"{h_me.d.iloc[0]:.2f}) → {h_me.gold.iloc[-1]:.3f} at α = {h_me.coef.iloc[-1]:g}; largest step "
      f"down as α falls {max(0.0, (-h_me.gold.diff()).max()):.1e}; closest to π_SFT d = {h_me.d.min():.2f}")  # fmt: skip
assert (h_kl.gold.diff().dropna() > -1e-9).all(), "honest proxy: KL-RL never loses gold"
assert (h_me.gold.diff().dropna() > -1e-9).all(), "honest proxy: MaxEnt never loses gold either"
assert not any(frontier.goodhart_peak(honest, f).interior for f in frontier.GOODHART_FAMILIES)
assert h_me.gold.iloc[0] < float(honest.ref @ honest.gold) - 0.1  # its large-α end is poor
assert h_me.d.min() > 0.1  # and no temperature brings MaxEnt back to π_SFT

# %% [markdown]
# **2. The KL bound, one more time.** For the KL family on the chapter's problem, check chapter
# 09's bound $\mathrm{KL}(\pi^*_\beta\,\|\,\pi_\text{SFT}) \le (\max r - \mathbb{E}_\text{SFT} r)/\beta$ at
# every β, and find the β where it is tightest.

# %% tags=["hide-input"]
# Solution 2: the bound comes from J(π*) ≥ J(π_SFT): β·KL ≤ E_π* r − E_SFT r ≤ max r − E_SFT r.
k = fam["kl"][np.isfinite(fam["kl"].coef)]
bound = (problem.proxy.max() - problem.ref @ problem.proxy) / k.coef
assert (k.kl <= bound + 1e-9).all()
tight = (k.kl / bound).idxmax()
print(f"KL / bound is largest, {k.kl[tight] / bound[tight]:.2f}, at β = {k.coef[tight]:.3g}")
