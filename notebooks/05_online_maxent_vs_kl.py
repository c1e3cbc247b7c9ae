# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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
# with RLOO. Two ways to regularise:
#
# * **MaxEnt** (the objective SimPO is derived from): maximise $\mathbb{E}_\pi[r] + \alpha H(\pi)$,
#   no anchor to the SFT policy;
# * **KL-regularised** (InstructGPT): maximise $\mathbb{E}_\pi[r] - \beta\,
#   \mathrm{KL}(\pi\,\|\,\pi_\text{SFT})$.
#
# What you should see: with the entropy bonus (or nothing at all) the proxy reward keeps climbing
# while the gold reward — the true quality — peaks and collapses, and the KL to the SFT policy
# grows without bound, at both learning rates; with the KL anchor the KL plateaus and gold holds.

# %% tags=["parameters"]
SMOKE = False  # CI-sized run: seconds instead of minutes
SEED = 0  # seeds Python, NumPy and torch, and the runs
DEVICE = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
WORKERS = 2  # parallel processes for the sweep (the book machine has 2 cores)

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

import pandas as pd
import torch
from IPython.display import Code, display
from scipy.stats import spearmanr

import rlhf_nb
from rlhf_nb import online, run_plots, sweep, testbed, trl_check
from rlhf_nb.runs import cached_training

ctx = rlhf_nb.setup(seed=SEED, device=DEVICE, smoke=SMOKE)
rlhf_nb.check_type("WORKERS", WORKERS, int)
rlhf_nb.check_range("WORKERS", WORKERS, 1, 16)
PRESET = "smoke" if SMOKE else "tiny"
tb = testbed.build(PRESET, seed=SEED)
pd.set_option("display.width", 160)
print(f"device={ctx.device} seed={ctx.seed} smoke={ctx.smoke} testbed={tb.path.name}")

# %% [markdown]
# ## The update, in one function
#
# `rlhf_nb.online.train` is one loop; the core of each step is below, numbered like the module
# docstring. Step 4 is where the two objectives differ: the MaxEnt run adds
# $-\alpha\log\pi(y\mid x)$ to the reward — a one-sample estimate of the entropy bonus (chapter
# 01) — while the KL run subtracts $\beta\sum_t \log\frac{\pi}{\pi_\text{ref}}$, the k1 estimator
# of chapter 03. Step 5 is the RLOO baseline: each sample is compared with the mean of the other
# $k-1$ samples of its prompt.

# %%
src = inspect.getsource(online.train)
core = src[src.index("            # 1. fresh") : src.index("            row = {")]
display(Code(inspect.cleandoc("\n" + core), language="python"))

# %% [markdown]
# ### Each prompt once per group
#
# The $k$ samples of a prompt share it, so steps 1–3 run each prompt through a model once and
# repeat its keys and values $k$ times (`rlhf_nb.models.prompt_cache`) before the responses are
# generated, scored or differentiated. That is an exact rewrite of one forward pass over the
# full sequences, not an approximation; the checkpoint below compares the two on a fresh batch.
# It is also where our step saves time against TRL's `GRPOTrainer`, which runs every prompt $k$
# times (`benchmarks/online_step.py` measures the ratio).

# %%
demo_policy, demo_k = tb.load_sft_policy(), 4
with torch.random.fork_rng():
    torch.manual_seed(SEED)
    demo = online.rollout(
        demo_policy, tb.tokenizer, tb.eval_prompts[:32], demo_k, tb.max_new_tokens
    )
    with torch.no_grad():
        shared_logp, _ = online.token_logprobs(demo_policy, demo)
        full_logp, _ = online.token_logprobs_full(demo_policy, demo)
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
# ## The sweep
#
# An entropy-coefficient sweep (α = 0 means plain RLOO on the proxy, no regulariser at all) at
# two learning rates, a β sweep of the KL-regularised baseline, and a token-level entropy bonus
# (what TRL's GRPO `entropy_coef` does). The conservative learning rate gets a longer run (the
# `steps` column): over-optimisation there is slower, not absent. Every run is cached on disk
# keyed by its config, so
# re-rendering the book does not retrain; the runs go `WORKERS` at a time in separate processes.

# %%
groups = sweep.book_configs(smoke=SMOKE, seed=SEED)
configs = [c for g in groups.values() for c in g]
t0 = time.perf_counter()
all_runs = sweep.run_sweep(
    configs, preset=PRESET, testbed_seed=SEED, workers=1 if SMOKE else WORKERS
)
sweep_seconds = time.perf_counter() - t0
runs = {}
for name, group in groups.items():
    runs[name] = all_runs[: len(group)]
    all_runs = all_runs[len(group) :]
LR_HI, LR_LO = sweep.LRS
hi, lo = runs[f"alpha@{LR_HI:g}"], runs[f"alpha@{LR_LO:g}"]
SMOOTH = 3 if SMOKE else 10
table = run_plots.summary_table([*hi, *lo, *runs["kl"], *runs["token"]], smooth=SMOOTH)
train_seconds = sum(r.history["seconds"].sum() for g in runs.values() for r in g)
print(
    f"{len(configs)} runs ready in {sweep_seconds:.0f} s (cached runs load instantly); "
    f"training them took {train_seconds / 60:.1f} CPU-minutes, {WORKERS} at a time"
)
table.round(2)

# %% [markdown]
# ## 1 · Proxy up, gold down
#
# Gold and proxy reward per step for the α sweep; the legend gives each run's final win rate
# against the reference summaries (the analogue of the paper's judged win rate). Move the slider
# to switch between the two learning rates.

# %%
yr = (
    min(r.history["gold"].min() for r in hi + lo) - 0.3,
    max(r.history["gold"].max() for r in hi + lo) + 0.3,
)
lr_sweep = {LR_HI: hi, LR_LO: lo}
fig_gold = run_plots.sweep_figure(
    lr_sweep, "gold", param="lr", title="Gold reward, entropy-coefficient sweep", yrange=yr
)
fig_gold.show()
fig_proxy = run_plots.sweep_figure(
    lr_sweep, "proxy", param="lr", title="Proxy reward (what RLOO maximises)"
)
fig_proxy.show()

# %%
a0_hi, a0_lo = hi[0], lo[0]  # α = 0: RLOO on the proxy, no regulariser
s_hi, s_lo = table.loc[a0_hi.label], table.loc[a0_lo.label]
for lr, s in ((LR_HI, s_hi), (LR_LO, s_lo)):
    print(
        f"lr={lr:g}, α=0: gold {s.gold_start:.2f} → peak {s.gold_peak:.2f} at step "
        f"{s.peak_step} → {s.gold_final:.2f};  proxy {s.proxy_start:.2f} → {s.proxy_final:.2f};  "
        f"KL {s.kl_k1_final:.1f} nats; win rate {100 * s.win_final:.0f}%"
    )

# %% [markdown]
# At both rates the α = 0 run (plain RLOO on the proxy) climbs, peaks and collapses; the lower
# rate only delays it. Large α is catastrophic from the start: the bonus pays for randomness,
# and the proxy itself ends *lower* — the policy is optimising entropy, not reward.
#
# ## 2 · KL: unbounded vs plateau
#
# KL to the SFT policy (k1, nats per sequence) for the α sweep at the higher learning rate and
# for the KL-regularised runs. Final values below are means over the last few logged steps.

# %%
kl_runs = [*hi, *runs["kl"]]
fig_kl = run_plots.history_figure(kl_runs, "kl_k1", title="KL(π ‖ π_SFT) per step")
fig_kl.show()
kl_a0 = s_hi.kl_k1_final
for r in runs["kl"]:
    k = table.loc[r.label].kl_k1_final
    print(f"final KL: α=0 {kl_a0:.1f} nats vs β={r.config.beta:g} {k:.2f} nats (×{kl_a0 / k:.1f})")
kl_beta = table.loc[runs["kl"][-1].label].kl_k1_final  # the strongest anchor

# %% [markdown]
# ## 3 · The mechanism: what the policy learned to exploit
#
# The proxy reward model was trained on pairs of SFT samples; it never saw a long repetitive
# summary, so it never learned that repetition, filler and running out of budget are bad. Samples
# of the α = 0 run at the start, near its gold peak and at the end:

# %%
steps_shown = sorted(a0_hi.samples)
near_peak = min(steps_shown, key=lambda s: abs(s - s_hi.peak_step))
picks = sorted({steps_shown[0], near_peak, steps_shown[-1]})
for s in picks:
    print(f"--- step {s}")
    for text in a0_hi.samples[s][:2]:
        print("   ", text.split("TL;DR:")[1].strip() or "(empty)")

# %%
run_plots.panels_figure(
    [*hi, *runs["token"], *runs["kl"]],
    ("length", "eos_rate", "entropy_token"),
    title="Length, EOS rate and per-token entropy",
).show()

# %% [markdown]
# **Sequence- vs token-level entropy bonus.** The sequence-level bonus rewards $-\log\pi(y|x)$,
# which grows with every extra token: it pays for *length*. The token-level bonus (GRPO's
# `entropy_coef`) rewards the mean per-token entropy, which does not grow with length.

# %%
tok = runs["token"][0]
seq_same = next((r for r in hi if r.config.alpha == tok.config.alpha), hi[-1])
for r in (seq_same, tok):
    s = table.loc[r.label]
    print(
        f"{r.label:28s} gold peak {s.gold_peak:.2f} → final {s.gold_final:.2f}, "
        f"length {s.length_final:.1f}, EOS {s.eos_final:.2f}, KL {s.kl_k1_final:.1f}"
    )

# %% [markdown]
# ## 4 · Entropy correlates with over-optimisation
#
# Across the steps of the unanchored runs (both learning rates), how does the entropy term move
# with the KL to the SFT policy and with the fall of gold from its running peak? The *entropy
# term* is the bonus the objective pays, $\alpha\cdot(-\log\pi(y\mid x))$ per sample; the raw
# sequence entropy $-\log\pi(y\mid x)$ is shown too. Caveat: a large α also destroys quality
# directly, by rewarding randomness itself, so this is a correlation, not a mechanism on its own.

# %%
pooled = pd.concat([r.history.assign(run=r.label, alpha=r.config.alpha) for r in hi + lo])
pooled["gold_drop"] = pooled.groupby("run")["gold"].transform(lambda g: g.cummax() - g)
pooled["entropy_term"] = pooled["alpha"] * pooled["entropy_seq"]
rho = {
    (x, y): spearmanr(pooled[x], pooled[y]).statistic
    for x in ("entropy_term", "entropy_seq")
    for y in ("kl_k1", "gold_drop")
}
finals = [(r.config.alpha, r.final("kl_k1"), table.loc[r.label]) for r in hi + lo]
rho_alpha_kl = spearmanr([a for a, _, _ in finals], [k for _, k, _ in finals]).statistic
rho_alpha_drop = spearmanr(
    [a for a, _, _ in finals], [s.gold_peak - s.gold_final for _, _, s in finals]
).statistic
print(f"Spearman ρ over {len(pooled)} steps of {pooled['run'].nunique()} unanchored runs:")
for (x, y), v in rho.items():
    print(f"  {x:13s} vs {y:9s}: ρ = {v:+.2f}")
print(f"across the {len(finals)} runs: α vs final KL ρ = {rho_alpha_kl:+.2f}, "
      f"α vs gold fall from peak ρ = {rho_alpha_drop:+.2f}")  # fmt: skip

# %% [markdown]
# ## 5 · Cross-check with TRL
#
# The same testbed and SFT start, the proxy RM as reward function, but TRL's `GRPOTrainer`
# instead of our loop: `beta=0, entropy_coef=α` (no anchor, token-level entropy bonus) vs
# `beta>0` (k3 KL in the loss). GRPO normalises advantages by the group's standard deviation and
# clips the ratio; none of that should change the qualitative result.

# %%
grpo_steps, grpo_prompts = (4, 4) if SMOKE else (sweep.STEPS[LR_HI], 32)
grpo_cfgs = [
    trl_check.GRPOCheckConfig(beta=0.0, entropy_coef=0.05, lr=LR_HI, steps=grpo_steps,
                              prompts_per_step=grpo_prompts, seed=SEED),
    trl_check.GRPOCheckConfig(beta=0.05, entropy_coef=0.0, lr=LR_HI, steps=grpo_steps,
                              prompts_per_step=grpo_prompts, seed=SEED),
]  # fmt: skip
t0 = time.perf_counter()
grpo = [cached_training("trl", tb, c, lambda c=c: trl_check.grpo_run(tb, c)) for c in grpo_cfgs]
grpo_seconds = time.perf_counter() - t0
run_plots.panels_figure(grpo, ("proxy", "gold"), title="TRL GRPOTrainer on the same testbed").show()
grpo_table = run_plots.summary_table(grpo, smooth=SMOOTH)
print(f"TRL runs ready in {grpo_seconds:.0f} s")
grpo_table.round(2)

# %% [markdown]
# ## 6 · Try it
#
# In a live kernel: pick α and a learning rate and press the button — a short run (no KL,
# sequence-level entropy bonus) is trained and drawn in black over the cached sweep. On the static
# site there is no kernel; the slider figures above carry the cached sweep.

# %%
box, live_fig = sweep.live_widget(tb, hi, steps=40)
display(box)

# %% [markdown]
# ## Checkpoints
# What you should have seen. In SMOKE mode the runs are a few steps long, so only the mechanics
# are checked: every run logged every step, the policy started at the SFT policy (KL 0) and the
# unanchored runs at the higher rate moved away from it (KL > 0 at the end), and the slider
# figure has one frame per learning rate holding that rate's runs.

# %%
for r in [*hi, *lo, *runs["kl"], *runs["token"]]:
    h = r.history
    assert r.status in ("finished", "diverged"), (r.label, r.message)
    assert list(h["step"])[:3] == [0, 1, 2] and abs(h["kl_k1"].iloc[0]) < 1e-4
for r in hi:  # no anchor, higher rate: the policy left the SFT policy
    assert r.final("kl_k1") > 0, (r.label, r.final("kl_k1"))
for frame, (lr, group) in zip(fig_gold.frames, lr_sweep.items(), strict=True):
    assert float(frame.name) == lr, (frame.name, lr)  # the slider's label is the frame's name
    assert [t.name for t in frame.data] == [run_plots.run_label(r) for r in group], frame.name
assert all(r.status == "finished" for r in grpo) and len(grpo[0].history) == grpo_steps
if not SMOKE:
    # α = 0 over-optimises: gold ends far below its peak, the proxy ends above its start
    for s in (s_hi, s_lo):
        assert s.gold_final < s.gold_peak - 1.0, s
        assert s.proxy_final > s.proxy_start, s
    # the largest α is catastrophic: gold collapses and even the proxy ends below its start
    for r in (hi[-1], lo[-1]):
        s = table.loc[r.label]
        assert s.proxy_final < s.proxy_start and s.gold_final < s.gold_start - 3.0, s
    # α = 0 ends with several times the KL of the anchored runs, which end near their best gold
    assert kl_a0 > 3 * kl_beta, (kl_a0, kl_beta)
    for r in runs["kl"]:
        s_kl = table.loc[r.label]
        assert s_kl.gold_final > s_kl.gold_peak - 0.3, s_kl
        assert s_kl.gold_final > s_hi.gold_final + 1.0, s_kl
    assert rho[("entropy_term", "kl_k1")] > 0.3 and rho_alpha_kl > 0.5, (rho, rho_alpha_kl)
    # TRL agrees: without the anchor KL runs away, with beta > 0 it does not
    g0, g1 = grpo_table.iloc[0], grpo_table.iloc[1]
    assert g0.kl_k1_final > 2 * g1.kl_k1_final, grpo_table
    assert g0.gold_final < g0.gold_peak - 1.0 and g1.gold_final > g1.gold_peak - 0.3, grpo_table
print("checkpoints passed")
