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
# # 06 · Offline SimPO vs DPO, and why the same reference-free idea works offline but not online
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rlhf-nb/rlhf-nb/blob/main/notebooks/06_offline_simpo_vs_dpo.ipynb)
#
# Chapter 02 showed that SimPO is MaxEnt RL in disguise: a reference-free Bradley–Terry loss on
# $\frac{\beta}{|y|}\log\pi(y)$, i.e. an entropy-regularised objective with a length-normalised
# temperature and a target margin $\gamma$, and no KL anchor to the SFT policy. Chapter 05 showed
# what MaxEnt RL does *online*: the proxy reward climbs, the gold reward collapses, the KL to the
# SFT policy runs away. Yet SimPO is a strong *offline* method. This chapter runs both halves on
# the chapter-04 testbed with TRL's real trainers and takes the puzzle apart experimentally:
#
# 1. DPO {cite:p}`rafailov2023dpo` and SimPO {cite:p}`meng2024simpo` from the same SFT policy
#    on the same preference pairs;
# 2. what happens when the gold reward prefers short, neutral or long summaries;
# 3. why offline works and online fails: (a) support, (b) the SimPO loss online, (c) the target
#    margin, (d) length normalisation;
# 4. widgets for a short live run, and slider figures of the cached sweeps.
#
# Every number below is computed when the notebook runs; findings that contradict the paper (or
# our expectations) are reported as found. The settings the chapter's conclusions rest on run at
# `N_SEEDS` seeds (`rlhf_nb.runs.SeedRuns`) and are reported as mean ± 95 % band; the sweeps are one seed
# per value and are read against that seed spread. Runs are cached (`rlhf_nb.runs.cache`), so a second
# execution only re-draws. Timings come from a shared 2-core machine and are noisy.

# %% tags=["parameters"]
SMOKE = False  # CI-sized run: the smoke testbed and a few steps
SEED = 0  # seeds Python, NumPy, torch, the testbed and the runs
DEVICE = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
PRESET = "tiny"  # testbed preset of the default run
STEPS = 300  # optimiser steps of every offline run (the epochs are printed below)
LR = 3e-4  # learning rate of the DPO and SimPO runs
BETA_DPO = 0.1  # DPO KL strength
BETA_SIMPO = 2.0  # SimPO reward scale of the average log-prob
GAMMA = 1.0  # SimPO target margin (the SimPO paper uses gamma over beta near 0.5)
LIVE_STEPS = 60  # steps of the live run started by the widget button
N_SEEDS = 3  # run seeds per key setting, from SEED up; at least 2, SMOKE uses 2
WORKERS = "auto"  # parallel training processes, "auto" for one per core of this machine
GAMMAS = [0.0, 0.5, 1.0, 2.0, 4.0]  # SimPO target margins γ ≥ 0 of the γ sweep (at BETA_SIMPO)
BETAS_SIMPO = [1.0, 2.0, 5.0, 10.0]  # SimPO β > 0 of the β sweep (γ/β fixed at GAMMA/BETA_SIMPO)

# %% [markdown]
# The next cell only does something in Colab: it installs this book's package (keeping Colab's
# own torch). Everywhere else the package is already installed by `make book` / `make test`.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab only; Colab keeps its own torch
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "rlhf-nb @ git+https://github.com/rlhf-nb/rlhf-nb"], check=True)

# %%
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from IPython.display import Markdown, display

import rlhf_nb
from rlhf_nb import stats, testbed
from rlhf_nb.chapters import ch06
from rlhf_nb.stats import summary_table
from rlhf_nb.testbed.task import GoldWeights
from rlhf_nb.viz import live, plotting, run_plots

ctx = rlhf_nb.setup(seed=SEED, device=DEVICE, smoke=SMOKE)
p = ch06.Params.from_globals(globals())  # checks every parameter before any work starts
preset, steps, common = p.tb_preset, p.common()["steps"], p.common()
run_seeds = p.run_seeds
print(f"device={ctx.device}  seed={ctx.seed}  smoke={ctx.smoke}  preset={preset}  steps={steps}")

# %% [markdown]
# ## 1. DPO and SimPO on the same preference data
#
# Both start from the testbed's SFT policy and see the same pairs: two SFT samples per prompt,
# the winner drawn from the (noisy) gold Bradley–Terry model. The trainers are TRL's:
#
# | | loss (notebook 02) | TRL |
# |---|---|---|
# | DPO | $-\log\sigma\big(\beta[\log\frac{\pi(y_w)}{\pi_{\rm sft}(y_w)} - \log\frac{\pi(y_l)}{\pi_{\rm sft}(y_l)}]\big)$ | `DPOTrainer`, reference = SFT |
# | SimPO | $-\log\sigma\big(\frac{\beta}{\lvert y_w\rvert}\log\pi(y_w) - \frac{\beta}{\lvert y_l\rvert}\log\pi(y_l) - \gamma\big)$ | `CPOTrainer(loss_type="simpo", cpo_alpha=0)` |
#
# (`tests/test_offline.py` checks that each trainer's loss on a real batch equals
# `rlhf_nb.theory.losses` on log-probs we compute ourselves.) An evaluation callback samples one summary
# per held-out prompt at temperature 1 every few steps and logs the gold reward, the win rate
# against the reference summaries, the KL to the SFT policy and the length — the same history
# columns as the online runs of chapter 05, so the same plots serve both.

# %%
tb = testbed.build(preset, seed=SEED, cache_dir=ctx.cache_dir)
# every run of this chapter on this testbed, in one pool (the sections below read them); the
# online MaxEnt run of part 3a is chapter 05's own (ch06.configs takes it from ch05.configs)
cfg = ch06.configs(p, tb)
t0 = time.perf_counter()
got = ch06.get(p, tb, configs_=cfg, cache_dir=ctx.cache_dir)
dpo_seeds, simpo_seeds = got["dpo"], got["simpo"]
gammas, betas = list(got["gammas"]), list(got["betas"])
alpha_sum = cfg["sum"].beta  # 3d: summed log-probs on SimPO's scale, α = β / L̄
dpo_run, simpo_run = dpo_seeds.runs[0], simpo_seeds.runs[0]  # seed SEED: shown step by step
part1_s = time.perf_counter() - t0
epochs = steps * cfg["dpo"].batch_size / len(tb.preference_data)
print(f"{len(tb.preference_data)} training pairs ({steps} steps = {epochs:.1f} epochs), "
      f"{len(tb.eval_prompts)} eval prompts, {len(run_seeds)} seeds per method")  # fmt: skip
print(f"{dpo_run.label}: {dpo_run.message}\n{simpo_run.label}: {simpo_run.message}")
print(f"(this call: {part1_s:.1f} s; near 0 when the runs came from the cache)")

# %%
pair = [dpo_run, simpo_run]
run_plots.panels_figure(
    pair, ("gold", "win_rate", "kl_k1", "length"), title="DPO vs SimPO, held-out prompts"
).show()
summary_table(pair).round(3)

# %%
# how each run ended against the SFT policy it started from (step 0), by the summary rule
pd.DataFrame({r.label: ch06.end_values(r) for r in pair}).T.round(3)

# %% [markdown]
# **Over seeds.** The same two settings at every seed: mean and 95 % band of the gold reward, the
# KL and the per-token entropy, then each seed's change from the SFT policy.

# %%
run_plots.band_figure(
    [dpo_seeds, simpo_seeds], ("gold", "kl_k1", "entropy_token"), seeds=True,
    title=f"DPO vs SimPO over {len(run_seeds)} seeds (mean, 95% band, seeds thin)",
).show()  # fmt: skip


d_dpo, d_simpo = dpo_seeds.deltas(), simpo_seeds.deltas()
st = {m: {c: stats.Stat.of(d[c]) for c in d} for m, d in (("dpo", d_dpo), ("simpo", d_simpo))}
gain_gap = stats.differ(d_dpo["Δ gold"], d_simpo["Δ gold"])
simpo_gain_moves = st["simpo"]["Δ gold"].lo > 0 or st["simpo"]["Δ gold"].hi < 0
print(f"over {len(run_seeds)} seeds (mean ± 95% band, range):")
for m in ("dpo", "simpo"):
    print(f"  {m.upper():5s} Δ gold {st[m]['Δ gold'].fmt()}, Δ win rate {st[m]['Δ win'].fmt()}, "
          f"KL {st[m]['KL end'].fmt()}, entropy {st[m]['entropy SFT'].fmt()} → "
          f"{st[m]['entropy end'].fmt()} nats/token")  # fmt: skip
print(f"DPO − SimPO in Δ gold: {gain_gap}")

# %% tags=["results"]
# DPO vs SimPO for the README and the site's Results page (generated by make book)
display(Markdown("Chapter 06, offline DPO vs SimPO on the testbed's pairs, mean (range) over "
                 "seeds:\n\n" + stats.markdown_table(
                     {"DPO": st["dpo"], "SimPO": st["simpo"]},
                     {"Δ gold": "Δ gold", "Δ win": "Δ win rate", "KL end": "final KL (nats)",
                      "entropy end": "final entropy (nats/token)"})))  # fmt: skip
print(
    "SimPO's own change in gold is "
    + ("beyond" if simpo_gain_moves else "within")
    + " its seed band around zero: "
    + (f"it {'raises' if st['simpo']['Δ gold'].mean > 0 else 'lowers'} the gold reward."
       if simpo_gain_moves else "at these settings it neither helps nor hurts measurably.")
)  # fmt: skip
pd.concat({"DPO": d_dpo, "SimPO": d_simpo}).round(3)

# %% [markdown]
# **What the runs found** (printed above; the checkpoints assert it for every seed): DPO raises the
# gold reward and the win rate more than SimPO does, at a larger KL, and its per-token entropy
# falls well below the SFT policy's while SimPO's stays close to it. SimPO's loss has no entropy
# term, so that is not an entropy bonus at work; one reading, not tested here, is that DPO's
# summed log-ratio rewards sharpening every token of the winners, and a sharper policy sampled at
# temperature 1 makes fewer of the filler and repetition mistakes the gold reward punishes. What
# SimPO does *not* achieve here is a gold gain beyond the seed band, as the line above says. This
# contradicts the SimPO paper's ranking (SimPO ≥ DPO on its benchmarks) at our toy scale and with
# these hyper-parameters; part 3c shows how much β and γ move it.
#
# **What the trainers report.** TRL logs, for each batch, the implicit rewards of the chosen and
# rejected responses — DPO's $\beta\log\frac{\pi}{\pi_{\rm sft}}$, SimPO's
# $\frac{\beta}{|y|}\log\pi$ — their margin and the fraction of pairs ranked correctly. The solid
# lines are TRL's (training batches, averaged over each logging interval); the dotted lines are the
# same metrics on held-out pairs. The grey line marks SimPO's target margin $\gamma$.

# %%
fig = run_plots.panels_figure(pair, ("margin", "accuracy"), win_rate=False)
for j, col in enumerate(("heldout_margin", "heldout_accuracy")):
    for t in run_plots.history_traces(pair, col, dash="dot", showlegend=False, win_rate=False):
        fig.add_trace(t, row=1, col=j + 1)
fig.add_hline(y=GAMMA, line_color="grey", line_dash="dash", row=1, col=1)
fig.update_layout(
    title="Implicit-reward margin and accuracy: training batches (solid), held out (dotted)"
)
fig.show()
h, f = simpo_run.history, simpo_run.final
print(f"SimPO margin on training batches: {h.margin.dropna().iloc[0]:.2f} -> {f('margin'):.2f} "
      f"(γ = {GAMMA:g}); on held-out pairs {h.heldout_margin.iloc[0]:.2f} -> "
      f"{f('heldout_margin'):.2f}; mean per-pair gradient weight σ(γ − margin) on held-out "
      f"pairs {h.heldout_weight.iloc[0]:.2f} -> {f('heldout_weight'):.2f}")  # fmt: skip

# %% [markdown]
# Two things to read off. SimPO's margin does not start at zero: the SFT policy's *average*
# log-probability already ranks held-out pairs better than chance (printed below) — plausibly
# because the gold reward punishes filler and repetition, which the SFT policy finds less
# likely. And the training-batch margin climbs past γ while the held-out margin moves much
# less: the loss pushes apart the pairs it is trained on, and that does not carry over to new
# pairs — a generalisation gap, not saturation (the held-out pairs' gradient weight
# $\sigma(\gamma - \text{margin})$ stays where it started, printed above).

# %%
h0 = simpo_run.history.iloc[0]  # step 0: the SFT policy
print(
    f"SFT policy, held-out pairs: SimPO margin {h0.heldout_margin:.2f}, "
    f"accuracy {h0.heldout_accuracy:.1%} (chance: 50%)"
)

# %% [markdown]
# ## 2. Length bias: when the gold prefers shorter or longer summaries
#
# TL;DR's human labels favour longer summaries; the testbed's `length_bias` knob adds
# $\pm$`GoldWeights.length` gold per word (`"short"`: $-$, `"long"`: $+$; the value is printed
# below). The SFT policy and the sampled pairs are
# the same; the labels (and so the data) change. Notebook 02's derivation says what to expect.
# DPO's logit uses *summed* log-ratios, $\beta\sum_t\log\frac{\pi}{\pi_{\rm sft}}(y_{w,t}) -
# \beta\sum_t\log\frac{\pi}{\pi_{\rm sft}}(y_{l,t})$: lowering every token's probability by the
# same factor lowers a long response's score more than a short one's, so when the winners are
# shorter DPO can gain margin simply by moving mass towards short responses (earlier EOS) — length
# is a usable signal. SimPO's *average* log-prob is blind to that: lowering every token by the
# same amount lowers both averages equally. Runs on a testbed per bias:

# %%
t0 = time.perf_counter()
bias_runs = ch06.get_bias_runs(p, (dpo_run, simpo_run), cache_dir=ctx.cache_dir)
print(f"part 2: {time.perf_counter() - t0:.1f} s (testbed builds and runs, or cache loads); "
      f"length preference ±{GoldWeights().length:g} gold per word, one seed per bias")  # fmt: skip
bias_table = ch06.bias_table(bias_runs)
bias_table.round(3)

# %%
bias = ch06.bias_gaps(bias_table, d_dpo, d_simpo)
gap, gap_sd, len_sd, lengths = bias["gap"], bias["gap_sd"], bias["len_sd"], bias["lengths"]
plotting.static_figure(
    [go.Bar(name="DPO" if m == "dpo" else "SimPO", x=list(gap),
            y=[bias_table.loc[(b, m), "Δ gold"] for b in gap]) for m in ("dpo", "simpo")],
    title="Gold improvement over the SFT policy, by the gold reward's length preference",
    xaxis_title="gold prefers", yaxis_title="Δ gold (end − SFT)",
).show()  # fmt: skip
print("\n".join(bias["lines"]))

# %% [markdown]
# **What the runs found** (one seed per bias, read against the neutral setting's seed spread
# printed above; each bias is also its own testbed build, whose variation that spread does not
# include): DPO gains more gold than SimPO under every bias, and the printout says how the gap
# moves with the bias and whether that matches the length-exploit reading of the derivation.
# Part 1's entropy difference is present in every column. Length follows the labels: both
# methods end shorter under the short bias and longer under the long one (asserted with the
# seed SD of the final length as the noise scale).

# %% [markdown]
# ## 3. Why offline works and online fails
#
# ### 3a. Support: offline, the loss only reweights responses in the data
#
# DPO and SimPO only ever evaluate $\log\pi$ on the fixed responses of the data set; the policy
# can move mass between them and towards similar text, but there is no sampling step that feeds
# its own new responses back in. The online MaxEnt run of chapter 05 (RLOO on the proxy RM with
# an entropy bonus, no KL anchor) samples its training responses from itself. Same SFT start;
# we take chapter 05's own cached runs (same config and seeds, so the book trains them once) and
# compare the KL at the last step both reached, seed by seed:

# %%
maxent_seeds = got["online"]  # chapter 05's headline MaxEnt run, every seed (part 1's pool)
maxent_run = maxent_seeds.runs[0]
run_plots.band_figure(
    [dpo_seeds, simpo_seeds, maxent_seeds], ("kl_k1", "gold", "proxy"),
    title="Offline DPO / SimPO vs online MaxEnt RL (mean and 95% band over seeds)",
).show()  # fmt: skip


common_step, kl_common = ch06.kl_at_common_step(
    {"DPO": dpo_seeds, "SimPO": simpo_seeds, "online MaxEnt": maxent_seeds}
)
for k, v in kl_common.items():
    print(f"KL to SFT at step {common_step}: {v.fmt()} nats/seq  {k}")
offline_max = np.maximum.reduce([  # floored at 1e-3 nats: a SMOKE run can end before the
    [r.value_at("kl_k1", common_step) for r in dpo_seeds.runs],  # first offline evaluation
    [r.value_at("kl_k1", common_step) for r in simpo_seeds.runs], np.full(len(run_seeds), 1e-3),
])  # fmt: skip
kl_ratio_online = stats.Stat.of(np.array(kl_common["online MaxEnt"].values) / offline_max)
print(f"online MaxEnt KL over the larger offline KL, seed by seed: ×{kl_ratio_online.fmt(1)}")

# %% [markdown]
# The offline runs' KL stays at a few nats per sequence; the online MaxEnt run's runs to many
# times that (the ratio above), and its gold reward collapses (chapter 05). (The online history
# measures gold and KL on its own training samples, so its step-0 values differ slightly from the
# offline runs', which use the held-out prompts.)

# %% [markdown]
# ### 3b. The same loss, online
#
# Now keep SimPO's loss and remove only the data constraint: every step, sample two responses per
# prompt from the *current* policy, let the proxy RM pick the winner, and take a SimPO step on
# those pairs (`rlhf_nb.methods.online_simpo`). If the reference-free loss itself were the problem, offline
# SimPO would fail too; if sampling from itself against an exploitable proxy is the problem,
# online SimPO should drift like online MaxEnt RL. Two things change at once here — where the
# pairs come from and who labels them (the gold Bradley–Terry model offline, the proxy RM online)
# — so this experiment cannot say which of the two matters.

# %%
osimpo_seeds = got["osimpo"]  # trained in part 1's pool
osimpo_run = osimpo_seeds.runs[0]
run_plots.band_figure(
    [simpo_seeds, osimpo_seeds, maxent_seeds], ("gold", "proxy", "kl_k1", "length"),
    title="SimPO offline vs online, and online MaxEnt (mean and 95% band over seeds)",
).show()  # fmt: skip
d_osimpo = osimpo_seeds.deltas()
st["osimpo"] = {c: stats.Stat.of(d_osimpo[c]) for c in d_osimpo}
kl_ratio_osimpo = stats.Stat.of(d_osimpo["KL end"].values / d_simpo["KL end"].values)
print(
    f"offline SimPO: Δ gold {st['simpo']['Δ gold'].fmt()}, proxy → "
    f"{st['simpo']['proxy end'].fmt()}, KL {st['simpo']['KL end'].fmt()}\n"
    f"online SimPO:  Δ gold {st['osimpo']['Δ gold'].fmt()}, proxy → "
    f"{st['osimpo']['proxy end'].fmt()}, KL {st['osimpo']['KL end'].fmt()} "
    f"(×{kl_ratio_osimpo.fmt(1)} the offline KL, seed by seed)\n"
    f"online SimPO's gold peaks at step {st['osimpo']['peak step'].fmt(0)}; online MaxEnt's "
    f"KL at step {common_step} is {kl_common['online MaxEnt'].fmt(1)}"
)

# %% [markdown]
# **What the runs found** (asserted for every seed below): the same loss with the same β, γ and
# learning rate over-optimises once its pairs come from the policy itself and the proxy labels
# them (direct alignment algorithms over-optimise too, {cite:t}`rafailov2024scaling`): the gold
# reward peaks early and ends below the SFT policy's, and
# the KL ends above the offline run's in every seed (by the factor printed above). So the reference-free loss alone is not what
# keeps offline SimPO stable; fixed data labelled by the gold preferences does, and this
# experiment does not separate the data from the labeller. Online SimPO still drifts far less
# than online MaxEnt RL: each pair's push is bounded by the sigmoid (next section), whereas a
# policy-gradient step on an unbounded proxy reward is not. Whether it also ends with more proxy
# reward than offline SimPO is printed as an observation with the checkpoints: it did in every
# seed of three testbed builds, once by only +0.01.

# %% [markdown]
# ### 3c. The target margin γ (and β)
#
# SimPO's per-pair gradient is weighted by $\sigma(\gamma - m)$, $m$ the pair's margin
# $\frac{\beta}{|y_w|}\log\pi(y_w) - \frac{\beta}{|y_l|}\log\pi(y_l)$. With $\gamma = 0$ a pair
# stops pulling as soon as it is ranked right with some confidence; a larger $\gamma$ keeps
# pulling until the margin clears the target. The curve is the whole story of "bounded push":

# %%
m = np.linspace(-2, 6, 161)
plotting.static_figure(
    [go.Scatter(x=m, y=1 / (1 + np.exp(m - g)), name=f"γ = {g:g}") for g in (0.0, 1.0, 2.0, 4.0)],
    title="Per-pair gradient weight σ(γ − margin) of the SimPO loss",
    xaxis_title="margin β(avg log π(y_w) − avg log π(y_l))",
    yaxis_title="weight",
).show()

# %% [markdown]
# The sweeps are one seed per value; the two ends of the γ sweep also run at every seed, so the
# difference between them is read against the seed band.

# %%
t0 = time.perf_counter()
g_lo_seeds, g_hi_seeds = got["gamma_lo"], got["gamma_hi"]
gamma_runs = {g: [r] for g, r in got["gammas"].items()}  # trained in part 1's pool
beta_runs = {b: [r] for b, r in got["betas"].items()}
sweep_table = ch06.sweep_table([*got["gammas"].values(), *got["betas"].values()])
sweep_table.round(3)

# %%
gold_sd = float(d_simpo["gold end"].std())  # seed SD of one run's final gold (default setting)
gamma_gold_gap, lines = ch06.gamma_report(
    sweep_table, BETA_SIMPO, g_lo_seeds, g_hi_seeds, got["betas"], gold_sd
)
print("\n".join(lines))

# %% [markdown]
# **What the runs found.** The printout above says, in numbers, whether a larger γ raises the
# final gold beyond seed noise (the seeded comparison of the two ends) and how monotone the
# one-seed sweep is; the checkpoints assert only the seeded comparison. The KL stays bounded — a
# few nats — for every setting: γ changes how hard each pair pushes, not whether the policy can
# leave the data. The β sweep is one seed per value; its gap is given in units of one run's seed
# SD, so read it as suggestive where that number is small.
#
# On the static site the sliders below step through the cached sweeps (every frame is inside the
# page).

# %%
for runs_, col, param, at, title in [
    (gamma_runs, "kl_k1", "γ", GAMMA, f"SimPO (β = {BETA_SIMPO:g}): KL to SFT for each target margin γ"),
    (gamma_runs, "margin", "γ", GAMMA, "SimPO: implicit-reward margin on training batches for each γ"),
    (beta_runs, "gold", "β", BETA_SIMPO, f"SimPO: gold reward for each β (γ/β = {GAMMA / BETA_SIMPO:g})"),
]:  # fmt: skip
    run_plots.sweep_figure(
        runs_, col, param=param, active=list(runs_).index(at), title=title
    ).show()

# %% [markdown]
# ### 3d. Length normalisation: summed instead of averaged log-probs
#
# Replace SimPO's average log-prob by the summed one and drop the margin, and the loss becomes
# chapter 02's constant-temperature MaxEnt Bradley–Terry loss
# $-\log\sigma(\alpha\log\pi(y_w) - \alpha\log\pi(y_l))$ (`losses.maxent_bt_loss`; TRL's
# `CPOTrainer(loss_type="sigmoid", cpo_alpha=0)`). To keep the logit on SimPO's scale we take
# $\alpha = \beta/\bar L$, $\bar L$ the mean length (tokens, EOS included) of the training
# responses, and compare with SimPO at $\gamma = 0$, both at every seed.

# %%
sum_seeds = got["sum"]
avg0_seeds = g_lo_seeds  # SimPO at γ = 0, every seed
sum_run, avg0_run = sum_seeds.runs[0], avg0_seeds.runs[0]
run_plots.band_figure(
    [avg0_seeds, sum_seeds, dpo_seeds], ("gold", "kl_k1", "length", "entropy_token"),
    title=f"Averaged (SimPO, γ=0) vs summed log-probs (α = β/L̄ = {alpha_sum:.2f}), over seeds",
).show()  # fmt: skip
d_sum, d_avg = sum_seeds.deltas(), avg0_seeds.deltas()
st["sum"] = {c: stats.Stat.of(d_sum[c]) for c in d_sum}
st["avg0"] = {c: stats.Stat.of(d_avg[c]) for c in d_avg}
for name, k in ((f"summed (α = {alpha_sum:.3f})", "sum"), ("averaged (γ = 0)", "avg0")):
    print(f"{name:18s} Δ gold {st[k]['Δ gold'].fmt()}, KL {st[k]['KL end'].fmt()}, length "
          f"{st[k]['length end'].fmt()}, entropy {st[k]['entropy end'].fmt()}")  # fmt: skip
print(f"summed: its best evaluation after step 0 is at step {st['sum']['peak step'].fmt(0)}, "
      f"{st['sum']['peak gain'].fmt()} gold above the SFT policy's")  # fmt: skip

# %% [markdown]
# **What the runs found** (every seed; asserted below): without length normalisation SimPO loses
# its stability even offline: the summed loss ends with lower gold than the averaged one, much
# longer responses, higher entropy and several times the KL. A plausible mechanism (not isolated
# here): the summed logit grows with length, so long pairs dominate the gradient, and pushing
# their losers down frees probability mass that goes to responses outside the data; the average
# removes that scale. Either way, length normalisation, not only the fixed data, is part of why
# SimPO is stable here.

# %% [markdown]
# ## 4. Try it: a short live run
#
# In a live kernel, pick β, γ and the learning rate and press the button: a SimPO (or DPO) run of
# `LIVE_STEPS` steps trains from the SFT policy and redraws as it goes. Nothing runs until you
# press it (the static site shows the cached sweeps above instead).

# %%
box, live_fig = live.offline_widget(
    tb, steps=LIVE_STEPS, beta=BETA_SIMPO, gamma=GAMMA, lr=LR, seed=SEED, device=ctx.device
)
display(box)

# %% [markdown]
# ## Checkpoints
# What you should have seen. Claims about the seeded settings are asserted for **every seed**,
# each threshold printed with its margin in seed SDs (at least `stats.MIN_MARGIN`); the one-seed bias runs are
# asserted only where the effect is several seed SDs of the neutral setting. In SMOKE mode the
# runs are a few steps on the smoke testbed, so only the mechanics are checked.

# %%
seeded_runs = [*dpo_seeds.runs, *simpo_seeds.runs, *osimpo_seeds.runs, *sum_seeds.runs,
               *g_lo_seeds.runs, *g_hi_seeds.runs]  # fmt: skip
for run in [*seeded_runs, *[r for v in gamma_runs.values() for r in v]]:
    assert run.status == "finished", (run.label, run.message)
    assert run.history.kl_k1.iloc[0] == 0  # step 0 is the SFT policy
# the SFT policy's average log-prob already ranks held-out pairs better than chance (section 1)
assert h0.heldout_accuracy > 0.55, h0.heldout_accuracy
assert h0.heldout_margin > 0, h0.heldout_margin
assert np.isfinite(bias_table.values).all()
assert len({r.config.seed for r in dpo_seeds.runs}) == len(run_seeds)


# 3a: offline KL stays below the online MaxEnt run's at the same step count, every seed
assert (kl_ratio_online.min > 1) or SMOKE, kl_ratio_online
if not SMOKE:
    # SimPO's training margin grows by more than its held-out margin: a generalisation gap
    gen_gap = [(r.final("margin") - r.history.margin.dropna().iloc[0])
               - (r.final("heldout_margin") - r.history.heldout_margin.iloc[0])
               for r in simpo_seeds.runs]  # fmt: skip
    me_kl = np.array([r.value_at("kl_k1", common_step) for r in maxent_seeds.runs])
    gamma_gain = np.subtract(g_hi_seeds.final("gold").values, g_lo_seeds.final("gold").values)
    d = {"dpo": d_dpo, "simpo": d_simpo, "osimpo": d_osimpo, "sum": d_sum, "avg": d_avg}
    checks = [  # (statement, one value per seed, side, threshold, judge the margin on a log scale)
        # 1: DPO gains more gold than SimPO, at a larger KL; DPO sharpens, SimPO keeps the entropy
        ("DPO Δgold − SimPO Δgold", d["dpo"]["Δ gold"] - d["simpo"]["Δ gold"], ">", 0.1, False),
        ("DPO Δgold", d["dpo"]["Δ gold"], ">", 0.1, False),
        ("DPO KL − SimPO KL", d["dpo"]["KL end"] - d["simpo"]["KL end"], ">", 0.0, False),
        ("DPO entropy end / SFT", d["dpo"]["entropy end"] / d["dpo"]["entropy SFT"], "<", 0.8, False),
        ("SimPO entropy end / SFT", d["simpo"]["entropy end"] / d["simpo"]["entropy SFT"], ">", 0.8, False),
        ("SimPO margin gain, training − held-out", gen_gap, ">", 0, False),
        # 3a/3b: online MaxEnt runs far; online SimPO over-optimises, but less
        ("online MaxEnt KL / offline KL", kl_ratio_online, ">", 10, True),
        ("online SimPO KL / offline SimPO KL", kl_ratio_osimpo, ">", 1, True),
        # on log|Δgold| (issue 26): a linear seed SD punished a spread skewed the safe way
        # (SEED 0 on the 2026-12-02 machine: −2.35 to −0.84, 1.5 linear SDs; 2.9 of the log)
        ("online SimPO Δgold", d["osimpo"]["Δ gold"], "<", -0.3, True),
        ("online MaxEnt KL − online SimPO KL", me_kl - d["osimpo"]["KL end"].values, ">", 0, False),
        # 3c: a larger target margin raises the final gold, seed by seed (the sweep's two ends)
        (f"final gold, γ={max(gammas):g} minus γ={min(gammas):g}", gamma_gain, ">", 0.2, False),
        # 3d: summed log-probs lose the stability: lower gold, longer, larger KL, every seed
        # "lower" (< 0): the first threshold, −0.3, failed the margin rule at SEED 1 on the
        # 2026-12-02 machine (−0.76 to −0.37, 1.2 seed SDs); < 0 held there with 2.6, and holds
        # with more wherever −0.3 held
        ("gold: summed − averaged", d["sum"]["gold end"] - d["avg"]["gold end"], "<", 0.0, False),
        ("length: summed − averaged", d["sum"]["length end"] - d["avg"]["length end"], ">", 1.0, False),
        ("KL: summed / averaged", d["sum"]["KL end"] / d["avg"]["KL end"], ">", 2, True),
    ]  # fmt: skip
    for name, values, side, threshold, log in checks:
        stats.holds(name, values, side, threshold, log=log)
    # an observation, not a checkpoint: online SimPO ends with more proxy than offline SimPO in
    # every seed at SEED 0 and 1, but on hold-out testbed 2 one seed by only +0.01 (+0.01 to
    # +0.55, 1.2 seed SDs from 0): it pushes the proxy up, by how much depends on the build
    proxy_gap = stats.Stat.of(d["osimpo"]["proxy end"] - d["simpo"]["proxy end"])
    print(f"observation, online minus offline SimPO final proxy: {proxy_gap.fmt()}; every seed "
          f"above 0: {bool(min(proxy_gap.values) > 0)}")  # fmt: skip
    # 2: (one seed per bias) lengths follow the labels, by MIN_MARGIN seed SDs of the length
    k = stats.MIN_MARGIN
    for m_ in ("dpo", "simpo"):
        assert lengths.loc["short", m_] < lengths.loc["neutral", m_] - k * len_sd, lengths
        assert lengths.loc["neutral", m_] < lengths.loc["long", m_] - k * len_sd, lengths
    assert all(g > 3 * gap_sd for g in gap.values()), (gap, gap_sd)
    # 3c: every γ and β keeps the KL bounded
    assert sweep_table["KL end"].max() < 5, sweep_table["KL end"]
print("checkpoints passed")

# %% [markdown]
# ## Exercises
#
# Each exercise uses the package; its worked solution is the collapsed cell below it (click to
# show it on the site). The solutions run with the chapter, so they cannot rot.
#
# **1. Gold bought per nat of drift.** From `dpo_seeds.deltas()` and `simpo_seeds.deltas()`,
# compute each seed's gold gained per nat of KL to SFT at the end of the run. Which method is
# the more efficient mover, and is the difference beyond seed noise (`stats.differ`)?

# %% tags=["hide-input"]
# Solution 1: Δgold / KL per seed; stats.differ gives a bootstrap CI of the difference in means.
eff_dpo = d_dpo["Δ gold"] / d_dpo["KL end"]
eff_simpo = d_simpo["Δ gold"] / d_simpo["KL end"]
print(pd.DataFrame({"DPO": eff_dpo, "SimPO": eff_simpo}).round(3).to_string())
print("DPO − SimPO, gold per nat:", stats.differ(eff_dpo, eff_simpo))
assert np.isfinite(eff_dpo).all() and np.isfinite(eff_simpo).all()
if not SMOKE:  # every DPO seed buys more gold per nat than every SimPO seed
    # (observed: DPO min − SimPO max = +0.07, +0.08 and +0.17 at SEED 0, 1 and 2)
    assert eff_dpo.min() > eff_simpo.max(), (eff_dpo, eff_simpo)

# %% [markdown]
# **2. What if the proxy had labelled the data?** Relabel the testbed's preference pairs with the
# proxy reward model (`rlhf_nb.methods.offline.relabel`, chapter 09's "proxy labeller") and report
# the share of pairs whose label flips. How does it compare with the proxy's disagreement with the
# data's labels that the testbed measured on held-out pairs (`tb.stats`)?

# %% tags=["hide-input"]
# Solution 2: the proxy was fitted to these very labels, so it disagrees with them less on its
# training pairs than on held-out ones.
from rlhf_nb.methods.offline import proxy_flips  # noqa: E402

flip = float(np.mean(proxy_flips(tb, tb.preference_data)))
held_disagree = 1 - tb.stats["rm_heldout_accuracy"]
print(f"proxy relabels {flip:.1%} of the training pairs; it disagrees with {held_disagree:.1%} of "
      "the held-out pairs' labels")  # fmt: skip
assert 0 < flip < held_disagree < 0.5
