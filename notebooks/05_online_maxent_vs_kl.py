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
# # 05 · Online RLHF: MaxEnt vs KL
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rlhf-nb/rlhf-nb/blob/main/notebooks/05_online_maxent_vs_kl.ipynb)
#
# The paper's central experiment, at toy scale on a CPU. Start from the SFT policy of chapter 04,
# sample summaries online, score them with the *learned* proxy reward model, and update the policy
# with RLOO {cite:p}`ahmadian2024rloo`. Two ways to regularise:
#
# * **MaxEnt** (the objective SimPO is derived from): maximise $\mathbb{E}_\pi[r] + \alpha H(\pi)$,
#   no anchor to the SFT policy;
# * **KL-regularised** (InstructGPT, {cite:p}`ouyang2022instructgpt`): maximise $\mathbb{E}_\pi[r] - \beta\,
#   \mathrm{KL}(\pi\,\|\,\pi_\text{SFT})$.
#
# The paper reports that the MaxEnt runs over-optimise — the gold (true) quality peaks and
# collapses while the KL to the SFT policy runs away, even at low learning rates — and that the
# KL-regularised runs stay stable. Each claim below is measured at several seeds (the headline
# settings) and stated with its seed band; the sentences that describe results are printed by
# the code from the numbers, and the checkpoints at the end assert what held for every seed.

# %% tags=["parameters"]
SMOKE = False  # CI-sized run: seconds instead of minutes
SEED = 0  # seeds Python, NumPy and torch, the testbed, and the first run seed
DEVICE = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
WORKERS = "auto"  # parallel training processes, "auto" for one per core of this machine
N_SEEDS = 3  # run seeds per headline setting, from SEED up; at least 2, SMOKE uses 2
# The grid (SMOKE keeps the first and last value of each list, with 8-step runs):
ALPHAS = [0.0, 0.02, 0.05, 0.2]  # entropy temperatures α at LR_HI; must contain 0 (plain RLOO)
ALPHAS_LO = [0.0, 0.05]  # α at LR_LO (longer runs); must contain 0
BETAS = [0.05, 0.2]  # KL coefficients β > 0 of the anchored baseline, at LR_HI
MAXENT_ALPHA = 0.05  # the headline MaxEnt α, one of ALPHAS (> 0)
LR_HI, LR_LO = 3e-4, 1e-4  # the "aggressive" and the "conservative" learning rate
STEPS_HI, STEPS_LO = 200, 600  # run lengths at LR_HI and LR_LO (the slower rate needs longer)
CAPS = [8, 16, 32]  # token budgets of the length-cap sweep (each 2 to 40; SMOKE keeps the ends)
SCALES = ["micro", "mini", "tiny"]  # presets of the scale ladder, e.g. add "small" (SMOKE: 2)

# %% [markdown]
# The next cell only does something in Colab: it installs this book's package.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab only; Colab keeps its own torch
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "rlhf-nb @ git+https://github.com/rlhf-nb/rlhf-nb"], check=True)

# %%
import inspect
import time

import numpy as np
import pandas as pd
import torch
from IPython.display import Code, Markdown, display
from scipy.stats import spearmanr

import rlhf_nb
from rlhf_nb import sampling, stats, testbed
from rlhf_nb.chapters import ch05
from rlhf_nb.methods import rloo
from rlhf_nb.runs.pool import resolve_workers
from rlhf_nb.runs.record import samples_table
from rlhf_nb.stats import summary_table
from rlhf_nb.viz import live, run_plots

ctx = rlhf_nb.setup(seed=SEED, device=DEVICE, smoke=SMOKE)
p = ch05.Params.from_globals(globals())  # checks every parameter before any work starts
c05 = ch05.configs(p)
groups, headline = c05["grid"], c05["headline"]
PRESET = p.preset
tb = testbed.build(PRESET, seed=SEED)
pd.set_option("display.width", 160)
print(f"device={ctx.device} seed={ctx.seed} smoke={ctx.smoke} testbed={tb.path.name}")

# %% [markdown]
# ## The update, in named functions
#
# `rlhf_nb.methods.online.train` is a short driver; each step of the update is a function,
# numbered like the module docstring: 1. `sampling.rollout` draws $k$ responses per prompt,
# 2. `score` reads the proxy (optimised) and gold (logged) rewards, 3. `log_probs` computes
# $\log\pi$ and $\log\pi_\text{ref}$ per token, and 4–6. `rlhf_nb.methods.rloo`, shown here, turns
# them into the loss. Step 4 is where the two objectives differ: the MaxEnt run adds
# $-\alpha\log\pi(y\mid x)$ to the reward — a one-sample estimate of the entropy bonus (chapter
# 01) — while the KL run subtracts $\beta\sum_t \log\frac{\pi}{\pi_\text{ref}}$, the k1 estimator
# of chapter 03. Step 5 is the RLOO baseline: each sample is compared with the mean of the other
# $k-1$ samples of its prompt.

# %%
for fn in (rloo.shaped_reward, rloo.rloo_advantages, rloo.rloo_loss):
    display(Code(inspect.getsource(fn), language="python"))

# %% [markdown]
# ### Each prompt once per group
#
# The $k$ samples of a prompt share it, so steps 1–3 run each prompt through a model once and
# repeat its keys and values $k$ times (`rlhf_nb.sampling.prompt_cache`) before the responses are
# generated, scored or differentiated. That is an exact rewrite of one forward pass over the
# full sequences, not an approximation; the checkpoint below compares the two on a fresh batch.
# It is also where our step saves time against TRL's `GRPOTrainer`, which runs every prompt $k$
# times (`benchmarks/online_step.py` measures the ratio).

# %%
demo_policy, demo_k = tb.load_sft_policy(), 4
with torch.random.fork_rng():
    torch.manual_seed(SEED)
    demo = sampling.rollout(
        demo_policy, tb.tokenizer, tb.eval_prompts[:32], demo_k, tb.max_new_tokens
    )
    with torch.no_grad():
        shared_logp, _ = sampling.token_logprobs(demo_policy, demo)
        full_logp, _ = sampling.token_logprobs_full(demo_policy, demo)
n_prompts, prompt_width = demo["prompt_ids"].shape
n_seqs, width = demo["ids"].shape
tokens_full = n_seqs * width
tokens_shared = n_prompts * prompt_width + n_seqs * (width - prompt_width)
logp_gap = ((shared_logp - full_logp) * demo["response_mask"]).abs().max().item()
print(
    f"{n_prompts} prompts x {demo_k} samples, {width} tokens per sequence "
    f"({prompt_width} of prompt): {tokens_full} token positions per forward pass the plain way, {tokens_shared} with each "
    f"prompt once ({tokens_shared / tokens_full:.0%}); largest log-prob gap {logp_gap:.1e} nats"
)
assert logp_gap < 1e-4, logp_gap  # checkpoint: the shared-prompt path is exact

# %% [markdown]
# ## The sweep, and the headline settings over seeds
#
# An entropy-coefficient sweep (α = 0 means plain RLOO on the proxy, no regulariser at all) at
# two learning rates, a β sweep of the KL-regularised baseline, and a token-level entropy loss
# term (what TRL's GRPO `entropy_coef` does). The conservative learning rate gets a longer run
# (the `steps` column). The sweep is one seed per setting; the five **headline settings** — α = 0
# and the MaxEnt α > 0 at the higher rate, the weakest and the strongest β, and α = 0 at the lower
# rate — run at `N_SEEDS` seeds each (`rlhf_nb.chapters.ch05.get`; the first seed is the sweep's own
# run). Every run is cached on disk keyed by its config, so re-rendering the book does not
# retrain; the runs go `WORKERS` at a time in separate processes.
# Every list, rate and length of this grid is a parameter of the notebook (`ALPHAS`, `ALPHAS_LO`,
# `BETAS`, `MAXENT_ALPHA`, `LR_HI`, `LR_LO`, `STEPS_HI`, `STEPS_LO`): edit the parameters cell,
# or pass e.g. `-p 'ALPHAS=[0.0, 0.1]' -p MAXENT_ALPHA=0.1` to papermill or `rlhf_nb._site.build`.

# %%
run_seeds = p.run_seeds
t0 = time.perf_counter()
got = ch05.get(p, cache_dir=ctx.cache_dir)  # the chapter's runs in one pool; cached ones load
runs, grpo_runs, seeded = got["grid"], got["grpo"], got["seeded"]
sweep_seconds = time.perf_counter() - t0
hi, lo = runs["alpha_hi"], runs["alpha_lo"]
table = summary_table([*hi, *lo, *runs["kl"], *runs["token"]])
train_seconds = sum(r.history["seconds"].sum() for g in runs.values() for r in g) + sum(
    r.history["seconds"].sum() for g in seeded.values() for r in g.runs[1:]
)
print(
    f"{sum(map(len, groups.values()))} grid runs and {len(headline)} headline settings x {len(run_seeds)} seeds "
    f"ready in {sweep_seconds:.0f} s (cached runs load instantly); training them took "
    f"{train_seconds / 60:.1f} run-minutes, up to {resolve_workers(p.workers)} at a time"
)
table.round(2)

# %% [markdown]
# ### The headline settings, mean and 95 % band over seeds
#
# Lines are the mean over seeds, shaded bands the 95 % confidence band of that mean (Student t
# over the seeds; with three seeds it is wide), thin lines the individual seeds.

# %%
hi_groups = [seeded[k] for k in ("rloo", "maxent", "kl_weak", "kl_strong")]
fig_seeds = run_plots.band_figure(
    hi_groups, ("gold", "proxy", "kl_k1", "length"), seeds=True,
    title=f"Headline settings at lr = {LR_HI:g}: mean and 95% band over {len(run_seeds)} seeds",
)  # fmt: skip
fig_seeds.show()


per_seed = {k: g.summaries() for k, g in seeded.items()}
STATS = ("gold_start", "gold_peak", "peak_step", "gold_final", "gold_fall", "proxy_start",
         "proxy_final", "kl_k1_final", "length_final", "eos_final", "entropy_start",
         "entropy_final")  # fmt: skip
band = {k: {c: stats.Stat.of(s[c]) for c in STATS} for k, s in per_seed.items()}
seed_table = pd.DataFrame(
    {seeded[k].label: {c: b.fmt() for c, b in bk.items()} for k, bk in band.items()}
)
seed_table

# %% tags=["results"]
# the headline settings for the README and the site's Results page (generated by make book)
display(Markdown(f"Chapter 05, headline settings at lr = {LR_HI:g}, mean (range) over seeds:\n\n"
                 + stats.markdown_table(
                     {seeded[k].label: bk for k, bk in band.items()},
                     {"gold_start": "gold SFT", "gold_peak": "gold peak",
                      "gold_final": "gold final", "kl_k1_final": "final KL (nats)",
                      "length_final": "final length"})))  # fmt: skip

# %%
maxent_alpha = headline["maxent"].alpha
b_r, b_m, b_w, b_s = (band[k] for k in ("rloo", "maxent", "kl_weak", "kl_strong"))
n_s = len(run_seeds)
beta_w, beta_s = headline["kl_weak"].beta, headline["kl_strong"].beta
print(f"over {n_s} seeds (mean ± 95% band, range), lr = {LR_HI:g}:")
print(
    f"  α = 0:        gold {b_r['gold_peak'].fmt()} at its peak → {b_r['gold_final'].fmt()} "
    f"at the end; KL {b_r['kl_k1_final'].fmt(1)} nats"
)
print(
    f"  α = {maxent_alpha:g}:     gold → {b_m['gold_final'].fmt()}; KL "
    f"{b_m['kl_k1_final'].fmt(1)} nats; length {b_m['length_final'].fmt(1)} tokens "
    f"(cap {tb.max_new_tokens}); EOS rate {b_m['eos_final'].fmt()}"
)
for b, beta in ((b_w, beta_w), (b_s, beta_s)):
    print(
        f"  β = {beta:g} (KL): gold {b['gold_peak'].fmt()} at its peak → "
        f"{b['gold_final'].fmt()}; fall {b['gold_fall'].fmt()}; KL {b['kl_k1_final'].fmt(2)}"
    )
contrasts = {
    f"final KL, α = {maxent_alpha:g} minus β = {beta_s:g}":
        stats.differ(b_m["kl_k1_final"], b_s["kl_k1_final"]),
    f"final KL, α = 0 minus β = {beta_s:g}": stats.differ(b_r["kl_k1_final"], b_s["kl_k1_final"]),
    f"final gold, β = {beta_s:g} minus α = 0": stats.differ(b_s["gold_final"], b_r["gold_final"]),
    f"fall from peak, β = {beta_w:g} minus β = {beta_s:g}":
        stats.differ(b_w["gold_fall"], b_s["gold_fall"]),
}  # fmt: skip
for name, d in contrasts.items():
    print(f"{name}: {d}")
# the MaxEnt runs' end, seed by seed: the run to the cap is a transition whose onset step moves
# with the seed (ch05.runaway), so a short run can end before it
maxent_runaway = ch05.runaway(seeded["maxent"], tb.max_new_tokens)
print(maxent_runaway.sentence())

# %% [markdown]
# ## 1 · Proxy up, gold down?
#
# Gold and proxy reward per step for the α sweep at the higher rate (one seed per α); the legend
# gives each run's final win rate against the reference summaries (the analogue of the paper's
# judged win rate). Below it, the α values run at both rates: move the slider to switch rates.

# %%
run_plots.panels_figure(
    hi, ("gold", "proxy", "kl_k1"), title=f"Entropy-coefficient sweep at lr = {LR_HI:g}"
).show()
yr = (
    min(r.history["gold"].min() for r in hi + lo) - 0.3,
    max(r.history["gold"].max() for r in hi + lo) + 0.3,
)
both = {r.config.alpha for r in hi} & {r.config.alpha for r in lo}  # α run at both rates
lr_sweep = {lr: [r for r in g if r.config.alpha in both] for lr, g in ((LR_HI, hi), (LR_LO, lo))}
fig_gold = run_plots.sweep_figure(
    lr_sweep, "gold", param="lr", title="Gold reward at both learning rates", yrange=yr
)
fig_gold.show()
fig_proxy = run_plots.sweep_figure(
    lr_sweep, "proxy", param="lr", title="Proxy reward (what RLOO maximises)"
)
fig_proxy.show()

# %%
sweep_rows = []
for lr, group in ((LR_HI, hi), (LR_LO, lo)):
    for r in group:
        s = table.loc[r.label]
        sweep_rows.append({
            "lr": lr, "α": r.config.alpha, "gold fall": s.gold_peak - s.gold_final,
            "peak step": s.peak_step, "KL final": s.kl_k1_final,
            "proxy Δ": s.proxy_final - s.proxy_start,
            "entropy Δ": r.final("entropy_token") - r.history["entropy_token"].iloc[0],
            "length": s.length_final, "EOS": s.eos_final,
        })  # fmt: skip
alpha_sweep = pd.DataFrame(sweep_rows).set_index(["lr", "α"])
for lr in (LR_HI, LR_LO):
    d = alpha_sweep.loc[lr]
    up = [f"{a:g}" for a in d.index if d.loc[a, "proxy Δ"] > 0]
    down = [f"{a:g}" for a in d.index if d.loc[a, "proxy Δ"] <= 0]
    mono = {c: bool(np.all(np.diff(d[c]) > 0)) for c in ("gold fall", "KL final", "peak step")}
    print(
        f"lr={lr:g}: the proxy ends above its start for α ∈ {{{', '.join(up)}}}, at or below "
        f"it for α ∈ {{{', '.join(down) or '—'}}}; increasing in α: "
        + ", ".join(f"{c} {'yes' if v else 'no'}" for c, v in mono.items())
    )
alpha_sweep.round(2)

# %%
peaks_fast, peaks_slow = b_r["peak_step"], band["rloo_slow"]["peak_step"]
print(
    f"α = 0 peaks at step {peaks_fast.fmt(0)} at lr = {LR_HI:g} and at step "
    f"{peaks_slow.fmt(0)} at lr = {LR_LO:g} ({n_s} seeds each); the fall from the peak is "
    f"{b_r['gold_fall'].fmt()} and {band['rloo_slow']['gold_fall'].fmt()} by the end."
)

# %% [markdown]
# What the numbers above say, in words (the checkpoints assert the seeded parts for every seed):
# plain RLOO on the proxy (α = 0) climbs, peaks and falls at both rates, and the lower rate peaks
# later — it delays the collapse rather than preventing it. With an entropy bonus the proxy does
# not necessarily keep climbing: the printout lists the α at which it ends at or below its start,
# because the bonus pays for randomness itself, not for what the proxy likes. Across α (one seed
# per α) the printout says which of the fall from the peak, the final KL and the step of the peak
# increase with α at each rate; read those as one seed's ordering, not a seed-robust law.
#
# ## 2 · KL: how far the policy moves
#
# KL to the SFT policy (k1, nats per sequence) for the headline settings, mean and band over
# seeds. What "without bound" can mean here: a MaxEnt run whose responses ran to the length cap
# (`max_new_tokens`; the sentence at the end of the seed comparison above counts those seeds and
# says when each left the SFT length) has no more tokens to add to the KL of a response; the
# slope over the last quarter of each run says whether a KL was still rising when the run ended,
# for the MaxEnt runs and for the KL-anchored ones.

# %%
fig_kl = run_plots.band_figure(
    [*hi_groups, seeded["rloo_slow"]], "kl_k1", title="KL(π ‖ π_SFT) per step, over seeds"
)
fig_kl.show()


slopes = {k: stats.Stat.of([r.slope("kl_k1") for r in seeded[k].runs]) for k in seeded}
for k in ("maxent", "kl_weak", "kl_strong"):
    rising = sum(v > 0 for v in slopes[k].values)
    print(
        f"{seeded[k].label}: final KL {band[k]['kl_k1_final'].fmt(2)} nats; slope over the "
        f"last quarter {slopes[k].fmt(2)} nats/100 steps, rising in {rising} of {n_s} seeds"
    )
ratio = stats.Stat.of(np.array(b_m["kl_k1_final"].values) / np.array(b_s["kl_k1_final"].values))
print(f"final KL of α = {maxent_alpha:g} over β = {beta_s:g}, seed by seed: ×{ratio.fmt(1)}")

# %% [markdown]
# Does a weak KL anchor only slow the drift? Where the slope above is positive in every seed, the
# KL was still rising when the run ended ({cite:t}`gao2023scaling` found a KL penalty acts much like
# early stopping). In our runs it did not hold for every seed on every testbed build (`SEED` = 0, 1, 2:
# on one build one seed's KL had levelled off), so it is printed here, not asserted. The same goes
# for whether the weaker anchor's gold falls further from its peak than the stronger one's (the
# "fall from peak" line of the seed comparison above): its size moves with the testbed build.

# %% [markdown]
# ### 2a · At equal distance from the SFT policy
#
# A final-gold comparison mixes two things: how good a setting's policy is for the distance it
# moved, and how far it moved. The matched reading (`rlhf_nb.chapters.ch05.matched_reading`, on `rlhf_nb.stats.matched_kl`) takes each run's
# gold gain where its KL to SFT first reaches a budget — a quarter, half and all of the largest
# KL that every run of these settings reaches (`stats.shared_budgets`) — so that a setting that
# moves farther is not mistaken for one that does worse per nat.

# %%
matched_table, matched_sentence = ch05.matched_reading(seeded, a="maxent", b="kl_strong")
display(Markdown(matched_table))
display(Markdown(matched_sentence))

# %% [markdown]
# ### 2b · Is the KL plateau the length cap?
#
# The MaxEnt runs end at the generation budget with no EOS, so their KL may level off only
# because a response cannot get longer. The cap sweep reruns the headline MaxEnt α and the
# strongest β at budgets `CAPS` (the testbed's own 16-token budget is the headline runs
# themselves), every run seed, nothing else changed — the gold reward still asks for a summary
# under 16 words. Per setting, the exponent b fits final value ∝ cap^b seed by seed over the caps:
# b ≈ 1 grows in proportion to the budget, b ≈ 0 ignores it.

# %%
caps_runs = got["caps"]
cap_stats = ch05.cap_table(caps_runs)
cap_exp = {col: ch05.cap_exponents(caps_runs, col) for col in ("kl_k1_final", "length_final")}
cap_md, cap_names = ch05.sweep_view(cap_stats, headline, x_label=lambda c: f"cap {c}")
display(Markdown(cap_md))
fig_cap = run_plots.summary_figure(
    cap_stats, ("kl_k1_final", "length_final", "gold_final"), x="cap", names=cap_names,
    title=f"The length cap: mean and 95% band over {len(run_seeds)} seeds (dots: seeds)",
)  # fmt: skip
fig_cap.show()
for k in ch05.CAP_SETTINGS:
    name = cap_names[k]
    print(f"{name}: final KL ∝ cap^b with b = {cap_exp['kl_k1_final'][k].fmt(2)}, final length "
          f"∝ cap^b with b = {cap_exp['length_final'][k].fmt(2)} (seeds: {len(run_seeds)})")  # fmt: skip
me_share = stats.Stat.of(np.concatenate([cap_stats.loc[("maxent", c), "length_share"].values
                                         for c in caps_runs]))  # fmt: skip
print(f"MaxEnt final length / cap over every cap and seed: {me_share.fmt(2)}")
scales = {(k, col): ("scales with the cap" if b.lo > 0 else "falls with the cap" if b.hi < 0
                     else "does not move with the cap beyond seed noise")
          for col, per in cap_exp.items() for k, b in per.items()}  # fmt: skip
at_cap = {c: bool(cap_stats.loc[("maxent", c), "length_share"].min >= 0.9
                 and cap_stats.loc[("maxent", c), "eos_final"].max < 0.1) for c in caps_runs}  # fmt: skip
print(
    "MaxEnt run at its cap with no EOS (every seed): "
    + ", ".join(f"cap {c}: {'yes' if v else 'no'}" for c, v in at_cap.items())
)
display(Markdown(" ".join(
    f"{cap_names[k]}: final KL {scales[(k, 'kl_k1_final')]} (b = "
    f"{cap_exp['kl_k1_final'][k].mean:.2f}), final length {scales[(k, 'length_final')]} (b = "
    f"{cap_exp['length_final'][k].mean:.2f})." for k in ch05.CAP_SETTINGS
)))  # fmt: skip

# %% [markdown]
# Read the exponents with the table: where the MaxEnt run's length is the cap at every budget
# and its KL exponent is near 1, its KL is set by how many tokens the budget allows (a cap effect:
# "stops growing" means "ran out of room"), while the KL-anchored run's exponents near 0 mean its
# KL and length are set by the anchor, not by the budget. The checkpoints assert the parts that
# held on the testbed builds they were tried on, with the calibration and hold-out builds named.
#
# ### 2c · Does it change with model size?
#
# The paper reports its pattern "across multiple Pythia scales"; everything above is one policy
# size, the `tiny` preset. The scale ladder rebuilds the testbed at other widths — by default the
# presets `micro` and `mini` of `rlhf_nb.testbed.PRESETS`: the tiny recipe (same documents,
# prompts, preference data, SFT and RM steps and rates, depth) at a quarter and half the width,
# the proxy reward model scaled alike — and reruns the central contrast on each: α = 0, the
# headline MaxEnt α and the strongest β, every run seed, at the same learning rate and steps. The
# ladder runs downwards from `tiny` because that is what a 2-core CPU affords: `small`, at twice
# the width, is one entry of `SCALES` away, but each of its online steps costs several times a
# tiny step, so its nine runs cost more than the rest of this chapter (on a GPU, add it, and
# wider custom presets: `rlhf_nb.testbed.resolve_preset("tiny", hidden_size=...)`). First, the
# testbeds: a preset is only a fair rung if its SFT policy and proxy are comparable (the build
# figures chapter 04 validates for `tiny`).

# %%
t0 = time.perf_counter()
ladder = ch05.get_ladder(p, cache_dir=ctx.cache_dir)  # builds each rung's testbed once, cached
ladder_tbs = ch05.ladder_testbeds(p, cache_dir=ctx.cache_dir)
print(f"scale ladder ready in {time.perf_counter() - t0:.0f} s")
sizes = ladder_tbs["policy_params"].to_dict()
print(f"policy parameters from {min(sizes.values()) / 1e6:.3f}M to {max(sizes.values()) / 1e6:.3f}M: "
      f"a {max(sizes.values()) / min(sizes.values()):.0f}x range")  # fmt: skip
ladder_tbs.round(3)

# %% [markdown]
# Final gold, final KL, length and EOS against the policy's parameter count, mean and 95 % band
# over seeds (dots: seeds), and the central contrast's statements at each size, at the
# thresholds of this chapter's checkpoints (set on the tiny preset, so each wider rung is a
# hold-out test of them):

# %%
ladder_stats = ch05.ladder_table(ladder, sizes)
ladder_con = ch05.ladder_contrasts(ladder)
ladder_md, ladder_legend = ch05.sweep_view(
    ladder_stats, headline, x_label=lambda n: f"{n / 1e6:.2f}M"
)
display(Markdown(ladder_md))
fig_ladder = run_plots.summary_figure(
    ladder_stats, ("gold_final", "kl_k1_final", "length_final"), x="parameters",
    names=ladder_legend,
    title=f"The scale ladder: mean and 95% band over {len(run_seeds)} seeds (dots: seeds)",
)  # fmt: skip
fig_ladder.show()
for name, con in ladder_con.items():
    verdict = "holds for every seed" if not con["failed"] else "fails: " + "; ".join(con["failed"])
    print(f"{name} ({sizes[name] / 1e6:.2f}M): final KL ratio MaxEnt / β = {beta_s:g} "
          f"×{con['kl_ratio'].fmt(1)}; the central contrast {verdict}")  # fmt: skip
rungs = list(ladder)
small_end, large_end = rungs[0], rungs[-1]
ladder_diffs = {
    (k, col): stats.differ(ladder_stats.loc[(k, sizes[large_end]), col],
                           ladder_stats.loc[(k, sizes[small_end]), col])
    for k in ch05.LADDER_SETTINGS for col in ("gold_final", "kl_k1_final")
}  # fmt: skip
display(Markdown(" ".join(
    f"{ladder_legend[k]}: {ch05.SWEEP_NAMES[col]} at {large_end} minus at {small_end} "
    f"{d.mean:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}] — "
    + ("beyond seed noise." if d.differs else "within seed noise.")
    for (k, col), d in ladder_diffs.items()
)))  # fmt: skip

# %% [markdown]
# Read the ladder as a test of what the chapter's claims depend on: if the central contrast's
# statements hold at every rung, the failure of the unanchored MaxEnt run and the stability of
# the KL-anchored one are not an artefact of one policy size (within the range printed above, at
# a fixed learning rate and step budget). The differences printed above say which numbers do move
# with size. What the ladder does not test: models wider than `tiny` (by default), deeper models,
# other rates for other sizes (larger models usually want smaller rates), or sizes anywhere near
# Pythia's 1B+.
#
# ## 3 · The mechanism: what the policy learned to exploit
#
# The proxy reward model was trained on pairs of SFT samples; it never saw a long repetitive
# summary, so it never learned that repetition, filler and running out of budget are bad. Two
# different exploits show up, depending on α. Samples of the α = 0 run and of the MaxEnt
# run (α = `MAXENT_ALPHA`), at the start, near the α = 0 run's gold peak and at the end:


# %%
a0_hi, me_hi = seeded["rloo"].runs[0], seeded["maxent"].runs[0]
s_hi = table.loc[a0_hi.label]
pd.concat(
    {f"{run.label} (seed {run.config.seed})": samples_table(
        run, n=2, near=int(s_hi.peak_step)).set_index(["step", "sample"])[["response"]]
     for run in (a0_hi, me_hi)}
)  # fmt: skip

# %%
run_plots.band_figure(
    [seeded["rloo"], seeded["maxent"], seeded["kl_strong"]],
    ("length", "eos_rate", "entropy_token"), title="Length, EOS rate and per-token entropy",
).show()  # fmt: skip
print(
    f"α = 0: per-token entropy {b_r['entropy_start'].fmt()} → {b_r['entropy_final'].fmt()} "
    f"nats/token, length {b_r['length_final'].fmt(1)}, EOS rate {b_r['eos_final'].fmt()}\n"
    f"α = {maxent_alpha:g}: per-token entropy {b_m['entropy_start'].fmt()} → "
    f"{b_m['entropy_final'].fmt()} nats/token, length {b_m['length_final'].fmt(1)} "
    f"(cap {tb.max_new_tokens}), EOS rate {b_m['eos_final'].fmt()}"
)
a0_eos = np.asarray(b_r["eos_final"].values)
print(
    f"α = 0 seeds that still end with EOS in most samples: {int((a0_eos > 0.5).sum())} of "
    f"{a0_eos.size}"
    + ("" if (a0_eos > 0.5).all() else " — without a bonus the sharpened policy can also reach "
       "the cap (the proxy's blind spot is long repetition); what no α = 0 seed does is keep "
       "its entropy")
)  # fmt: skip

# %% [markdown]
# Two regimes, not one. Without the bonus (α = 0, and small α in the sweep table) the policy
# hacks the proxy by *sharpening*: per-token entropy falls at every seed and it settles on what
# the proxy overrates (chapter 04's blind spot) — which may be a short response or a long
# repetitive one: the line below the figure says what these seeds did. With a large enough
# sequence-level bonus the policy runs
# to the length cap and stops emitting EOS once its responses start to lengthen — a transition
# whose onset step moves with the seed, so a run can end before it (the sentence at the end of
# section 0's seed comparison counts the seeds): every extra token adds about $\alpha\log V$ reward
# units of bonus (chapter 03), so the maximal-length, no-EOS response is the attractor, and the
# gold's truncation and filler penalties take it far below zero.
#
# **Three entropy terms, three gradients.** They are easy to confuse:
#
# * the **sequence-level bonus** (`regularizer="entropy"`, these runs): reward
#   $r - \alpha\log\pi(y\mid x)$, optimised by the score function; its gradient estimates
#   $\nabla_\theta\,\alpha H(\pi(\cdot\mid x))$ of the *sequence* entropy, which grows with length;
# * the **length-normalised sequence bonus** of chapter 03 (SimPO's form): reward
#   $r - \frac{\alpha}{|y|}\log\pi(y\mid x)$, also through the score function, whose gradient
#   favours high average surprisal per token and not length as such;
# * the **per-token entropy loss term** (`regularizer="entropy_token"`, TRL's GRPO
#   `entropy_coef`): the loss gets $-\alpha\cdot\mathrm{mean}_t\,H(\pi(\cdot\mid s_t))$ over the
#   visited states $s_t$, and its gradient flows only through the logits at those states — there
#   is no score-function term for how the update changes which states are visited.

# %%
tok = runs["token"][0]
seq_same = next((r for r in hi if r.config.alpha == tok.config.alpha), hi[-1])
for r in (seq_same, tok):
    s = table.loc[r.label]
    print(
        f"{r.label:28s} gold peak {s.gold_peak:.2f} → final {s.gold_final:.2f}, "
        f"length {s.length_final:.1f}, EOS {s.eos_final:.2f}, KL {s.kl_k1_final:.1f} (one seed)"
    )

# %% [markdown]
# ## 4 · Does entropy correlate with over-optimisation?
#
# Across the steps of the unanchored runs, how does the entropy term move with the KL to the SFT
# policy and with the fall of gold from its running peak? The *entropy term* is the bonus the
# objective pays, $\alpha\cdot(-\log\pi(y\mid x))$ per sample; the raw sequence entropy
# $-\log\pi(y\mid x)$ is shown too. The correlation is computed seed by seed — over the steps of
# that seed's α = 0 and MaxEnt runs at the higher rate and its α = 0 run at the lower
# rate — so the band shows how much it moves with the seed. Caveat: a large α also destroys
# quality directly, by rewarding randomness itself, so this is a correlation, not a mechanism.
# And compare the two rows per target: if the entropy *term* correlates with the KL while the
# raw sequence entropy does not, the correlation is carried by α (which runs pay a bonus at
# all), not by entropy as such — the α = 0 runs hack the proxy while their entropy *falls*
# (section 3).


# %%
per_seed_rho = [
    ch05.entropy_correlations([seeded[k].runs[i] for k in ("rloo", "maxent", "rloo_slow")])
    for i in range(n_s)
]
rho = {key: stats.Stat.of([r[key] for r in per_seed_rho]) for key in per_seed_rho[0]}
print(f"Spearman ρ over the steps of the unanchored runs, per seed ({n_s} seeds):")
for (x, y), v in rho.items():
    sign = sum(val > 0 for val in v.values)
    print(f"  {x:13s} vs {y:9s}: ρ = {v.fmt()}; positive in {sign} of {v.n} seeds")
for x in ("entropy_term", "entropy_seq"):
    v = rho[(x, "kl_k1")]
    verdict = ("positive in every seed" if v.min > 0 else "negative in every seed" if v.max < 0
               else "of either sign across seeds")  # fmt: skip
    print(f"→ {x} vs KL: {verdict}")
finals = [(r.config.alpha, r.final("kl_k1")) for r in hi + lo]
rho_alpha_kl = spearmanr([a for a, _ in finals], [k for _, k in finals]).statistic
print(f"across the {len(finals)} runs of the α sweep (one seed each): "
      f"α vs final KL ρ = {rho_alpha_kl:+.2f}")  # fmt: skip

# %% [markdown]
# ## 5 · Cross-check with TRL
#
# The same testbed and SFT start, the proxy RM as reward function, but TRL's `GRPOTrainer`
# instead of our loop: `beta=0, entropy_coef=α` (no anchor, per-token entropy loss term) vs
# `beta>0` (k3 KL in the loss). GRPO normalises advantages by the group's standard deviation and
# clips the ratio. One seed per setting: this checks that an independent implementation shows the
# same direction, not the seed band.

# %%
run_plots.panels_figure(
    grpo_runs, ("proxy", "gold"), title="TRL GRPOTrainer on the same testbed"
).show()
grpo_table = summary_table(grpo_runs)
g0, g1 = grpo_table.iloc[0], grpo_table.iloc[1]
print(f"TRL GRPO (trained in the chapter's pool). No anchor: gold {g0.gold_peak:.2f} at its peak → "
      f"{g0.gold_final:.2f}, KL {g0.kl_k1_final:.1f}; β = {c05['grpo'][1].beta:g}: gold "
      f"{g1.gold_peak:.2f} → {g1.gold_final:.2f}, KL {g1.kl_k1_final:.1f} (one seed each)")  # fmt: skip
grpo_table.round(2)

# %% [markdown]
# ## 6 · Try it
#
# In a live kernel: pick α and a learning rate and press the button — a short run (no KL,
# sequence-level entropy bonus) is trained and drawn in black over the cached sweep. On the static
# site there is no kernel; the slider figures above carry the cached sweep.

# %%
box, live_fig = live.online_widget(tb, hi, steps=40)
display(box)

# %% [markdown]
# ## Checkpoints
# What you should have seen. Each statement is asserted for **every seed** of the headline
# settings, and each threshold is printed with its margin: how many seed standard deviations it
# sits from the seed mean (at least `stats.MIN_MARGIN`, so that another machine's digits do not
# flip it; `rlhf_nb.stats.holds`). In SMOKE mode the runs are a few steps long, so only the
# mechanics are checked.

# %%
for r in [*hi, *lo, *runs["kl"], *runs["token"], *(r for g in seeded.values() for r in g.runs)]:
    h = r.history
    assert r.status in ("finished", "diverged"), (r.label, r.message)
    assert list(h["step"])[:3] == [0, 1, 2] and abs(h["kl_k1"].iloc[0]) < 1e-4
for r in hi:  # no anchor, higher rate: the policy left the SFT policy
    assert r.final("kl_k1") > 0, (r.label, r.final("kl_k1"))
for frame, (lr, group) in zip(fig_gold.frames, lr_sweep.items(), strict=True):
    assert float(frame.name) == lr, (frame.name, lr)  # the slider's label is the frame's name
    assert [t.name for t in frame.data] == [run_plots.run_label(r) for r in group], frame.name
assert all(g.n == len(run_seeds) for g in seeded.values())
assert (
    all(r.status == "finished" for r in grpo_runs)
    and len(grpo_runs[0].history) == c05["grpo"][0].steps
)


if not SMOKE:
    b_sl = band["rloo_slow"]
    # α = 0 over-optimises at both rates: gold ends below its peak. Restated at 0.15 (half of
    # the first threshold, 0.3, set on testbeds 0 and 1): on hold-out testbed 2 every seed fell
    # by more than 0.3 at the higher rate (0.33 to 0.46) but only 1.7 log-SDs from it; on the log
    # scale a lower threshold holds with more margin wherever 0.3 held
    stats.holds("α=0 fall from peak (hi lr)", b_r["gold_fall"], ">", 0.15, log=True)
    stats.holds("α=0 fall from peak (lo lr)", b_sl["gold_fall"], ">", 0.15, log=True)
    proxy_gain = stats.Stat.of(np.subtract(b_r["proxy_final"].values, b_r["proxy_start"].values))
    # an observation, not a checkpoint: every seed's proxy ends above its start at SEED 0 and 1,
    # but at SEED 1 on the 2026-12-02 machine the spread (0.68 to 1.94) left the threshold 0
    # only 1.8 seed SDs away, under the book's 2 (issue 26: a threshold that fails on a testbed
    # it was not tuned on becomes a printed observation)
    print(f"observation, α=0 proxy gain over seeds: {proxy_gain.fmt()}; every seed above 0: "
          f"{bool(min(proxy_gain.values) > 0)}")  # fmt: skip
    # ... and the lower rate delays the peak: every slow seed peaks after every fast seed
    assert peaks_slow.min > peaks_fast.max, (peaks_slow, peaks_fast)
    # α = 0 sharpens (per-token entropy falls at every seed; whether it keeps emitting EOS
    # depends on the seed and the machine, so that is printed in section 3, not asserted)
    ent_drop_r = stats.Stat.of(
        np.subtract(b_r["entropy_final"].values, b_r["entropy_start"].values)
    )
    stats.holds("α=0 per-token entropy change", ent_drop_r, "<", 0.0)
    # the MaxEnt run (α > 0) collapses: runs to the cap, no EOS, gold far below its SFT start.
    # Set on testbeds 0-2 as three statements for every seed (final gold < SFT − 3, length >
    # cap − 1.5, EOS < 0.2), they failed at hold-out testbed 3 (2026-12-04 machine): seeds 3 and
    # 5 ran to the cap (from steps 152 and 95), seed 4 had not left the SFT length by step 200
    # (length 5.0, EOS 1.00, gold +1.21 from +1.86). Continued to 600 steps (a diagnostic run,
    # not in the book) it never did (length 5.0, EOS 1.00 at step 600) but its gold still fell,
    # to −0.68 from a peak of +2.03, at 21 nats of KL: it over-optimised the way α = 0 does.
    # Printed as an observation, seed by seed (ch05.runaway); restated after testbed 3 as "most
    # seeds collapse" (3 of 3 at testbeds 0-2, 2 of 3 at 3; testbed 4 is its hold-out)
    print(f"observation: {maxent_runaway.sentence()}")
    assert maxent_runaway.most_collapsed, maxent_runaway.table
    # its KL ends several times the strongly anchored run's, seed by seed. Set on testbeds 0-2
    # at ×5 (log margin); at hold-out testbed 3 the seed that had not run away ended at ×4.9
    # (×4.9 to ×33), so ×5 is printed and "farther than the anchored run" (ratio > 1, log: 2.7
    # log-SDs at testbed 3) is asserted, to be validated on testbed 4
    print(f"observation, final KL ratio α={maxent_alpha:g} / β={beta_s:g} above ×5 at every "
          f"seed: {bool(ratio.min > 5)} (×{ratio.fmt(1)})")  # fmt: skip
    stats.holds(f"final KL ratio α={maxent_alpha:g} / β={beta_s:g}", ratio, ">", 1.0, log=True)
    assert contrasts[f"final KL, α = {maxent_alpha:g} minus β = {beta_s:g}"].differs
    # the KL-anchored runs end near their best and far above the unanchored α = 0 run
    stats.holds(f"β={beta_s:g} fall from peak", b_s["gold_fall"], "<", 0.5)
    stats.holds(f"β={beta_w:g} fall from peak", b_w["gold_fall"], "<", 1.0)
    gold_gap = stats.Stat.of(np.subtract(b_s["gold_final"].values, b_r["gold_final"].values))
    # judged on the log scale at 0.1 gold: the first threshold, 0.3 (log), set on testbeds 0 and
    # 1, held for every seed of hold-out testbed 2 (+0.34 to +0.51) but only 1.2 log-SDs from it;
    # "> 0" (linear) then held there but failed the margin at SEED 0 on the 2026-12-03 machine
    # (+2.44 to +9.84, 1.8 SDs: two of its three α = 0 runs ran long, the third stopped short).
    # 0.1 is under a third of the smallest gap seen on any testbed or machine (0.34), and the
    # gap's spread is multiplicative, so the log scale measures it
    stats.holds(f"final gold β={beta_s:g} minus α=0", gold_gap, ">", 0.1, log=True)
    # an observation, not a checkpoint: "the entropy term and KL move together in every seed"
    # (ρ > 0 by 2 seed SDs) held at testbeds 0-2; at hold-out testbed 3 every seed's ρ was
    # positive but spread (+0.04 to +0.39, 1.2 seed SDs from 0)
    rho_ek = rho[("entropy_term", "kl_k1")]
    print(f"observation, ρ(entropy term, KL) over seeds: {rho_ek.fmt()}; every seed above 0: "
          f"{bool(rho_ek.min > 0)}")  # fmt: skip
    # 2c, the scale ladder: the central contrast's statements, at their thresholds (set on the
    # tiny preset, testbeds 0-2), held at every seed of every rung of testbeds 0-2 (KL ratio
    # ×39.5-49.7 micro, ×39.5-64.4 mini at SEED 0; ×29.0 and ×59.8 at SEED 1, ×78.9 and ×98.1
    # at SEED 2, threshold ×5). At hold-out testbed 3 micro and mini held, the tiny rung (the
    # headline runs) failed at the seed that had not run away; the verdicts are printed in §2c,
    # and what held at every rung and seed of testbeds 0-3 is asserted: MaxEnt ends farther from
    # SFT than the anchored run, with less gold (restated after testbed 3; testbed 4: hold-out)
    for name, con in ladder_con.items():
        assert con["kl_ratio"].min > 1 and con["gold_gap"].min > 0, (name, con)

    # the central contrast, statement by statement and seed by seed (the check CI runs at
    # reduced size). Every statement held at every seed of testbeds 0-2; at hold-out testbed 3
    # the seed whose MaxEnt run had not run away by step 200 failed three of the four (gold fell
    # 0.84 from its peak, KL ×4.9 the anchored run's, final gold 1.0 below it, not 3), so it is
    # printed, and what held at every seed of testbeds 0-3 is asserted: the anchored run ends
    # with more gold than the MaxEnt run (restated after testbed 3 at > 0.1 on the log scale,
    # +1.0 to +7.7 there; testbed 4 is its hold-out)
    failed = ch05.central_contrast(seeded["maxent"], seeded["kl_strong"])
    print("observation, the central contrast seed by seed: "
          + ("every statement held at every seed" if not failed else "; ".join(failed)))  # fmt: skip
    anchor_gain = stats.Stat.of(np.subtract(b_s["gold_final"].values, b_m["gold_final"].values))
    stats.holds(f"final gold β={beta_s:g} minus α={maxent_alpha:g}", anchor_gain, ">", 0.1,
                log=True)  # fmt: skip
    # TRL agrees in direction (one seed each, so only directions whose size in our own loop is
    # far beyond its seed spread are asserted: KL 10-22 vs 3.3-3.5 nats, fall 1.4-2.8 vs 0.2-0.4)
    assert g0.kl_k1_final > g1.kl_k1_final, grpo_table
    assert g0.gold_peak - g0.gold_final > g1.gold_peak - g1.gold_final, grpo_table
    # 2b, the cap sweep (thresholds from testbed 0, validated on testbed 1; testbeds 2-4 not
    # run): the strongly anchored run's KL ignores the budget, and from the testbed's own budget
    # up the MaxEnt run fills whatever budget it is given. Not asserted: "MaxEnt's KL exponent
    # b > 0.5" held on testbed 0 (b 1.38-1.59) but on testbed 1 only 0.8 seed SDs from 0.5
    # (0.51-0.92), because at cap 8 the MaxEnt run stopped at 5 tokens on testbed 0 and ran to
    # its cap on testbed 1 — printed in the section above, an observation
    stats.holds("strong-KL final KL exponent b", cap_exp["kl_k1_final"]["kl_strong"], "<", 0.3)
    # "at every seed, MaxEnt's final length > 0.9 of each cap from the testbed's own up" held on
    # testbeds 0-2 and failed at hold-out testbed 3, cap 16 (one seed at 0.31: the headline run
    # that had not run away); printed per cap above ("at its cap with no EOS"), and restated as
    # "at most seeds" (every seed at cap 32 there; testbed 4 is its hold-out)
    for c in (c for c in caps_runs if c >= tb.max_new_tokens):
        share = cap_stats.loc[("maxent", c), "length_share"]
        assert 2 * sum(v > 0.9 for v in share.values) > share.n, (c, share)
print("checkpoints passed")

# %% [markdown]
# ## Exercises
#
# Each exercise uses the package; its worked solution is the collapsed cell below it (click to
# show it on the site). The solutions run with the chapter, so they cannot rot.
#
# **1. What the entropy bonus paid.** In a MaxEnt run the shaped reward is
# $R = r - \alpha\log\pi(y\mid x)$. From the logged history alone (`reward_shaped`, `proxy`,
# `entropy_seq`), check that the bonus the runs of the α sweep were paid is $\alpha$ times the
# sequence entropy estimate at every step, and how large it became by the end.

# %% tags=["hide-input"]
# Solution 1: mean(R) − mean(r) = α·mean(−log π(y|x)) = α·entropy_seq, step by step: the bonus
# grows with the sequence entropy, i.e. with length (chapter 03).
for r in hi:
    if r.config.regularizers != ("entropy",):
        continue
    h = r.history
    bonus = h["reward_shaped"] - h["proxy"]
    err = (bonus - r.config.alpha * h["entropy_seq"]).abs().max()
    print(f"{r.label}: bonus {bonus.iloc[0]:.2f} → {bonus.iloc[-1]:.2f} reward units "
          f"(proxy {h['proxy'].iloc[-1]:.2f}); largest mismatch {err:.1e}")  # fmt: skip
    assert err < 1e-3 * max(1.0, bonus.abs().max()), (r.label, err)

# %% [markdown]
# **2. How far had the policy moved when gold peaked?** For each seed of the headline MaxEnt
# setting, find the step of the gold peak and the KL to SFT there, and compare with the KL at
# the end. What does that say about stopping a MaxEnt run early?

# %% tags=["hide-input"]
# Solution 2: gold peaks while the KL is still small; everything after is drift the proxy pays for.
rows_peak = []
for r in seeded["maxent"].runs:
    h = r.history.dropna(subset=["gold"])
    i = h.index[h.step == stats.summarize(h, "gold").peak_step][0]
    rows_peak.append({"seed": r.config.seed, "peak step": int(h.loc[i, "step"]),
                      "KL at peak": h.loc[i, "kl_k1"], "final KL": r.final("kl_k1")})  # fmt: skip
peak_tab = pd.DataFrame(rows_peak).set_index("seed")
print(peak_tab.round(2).to_string())
assert peak_tab["peak step"].between(0, seeded["maxent"].runs[0].history["step"].max()).all()
if not SMOKE:  # every seed: the KL at the end is several times the KL at the peak
    assert (peak_tab["final KL"] > 3 * peak_tab["KL at peak"]).all(), peak_tab
