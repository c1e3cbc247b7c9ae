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
# # 04 · The testbed: a tiny summarisation task with a gold reward and an exploitable proxy
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rlhf-nb/rlhf-nb/blob/main/notebooks/04_testbed.ipynb)
#
# The paper's experiments {cite:p}`cagatan2025failure` fine-tune Pythia models
# {cite:p}`biderman2023pythia` on Reddit TL;DR {cite:p}`stiennon2020summarize`, score them with a learned
# reward model and judge them with a large LLM. None of that runs on a laptop. This chapter builds
# a stand-in that keeps the *structure* that makes over-optimisation possible:
#
# 1. a **gold reward** we can compute exactly (the stand-in for human judgement);
# 2. an **SFT policy**, a GPT-NeoX (Pythia's architecture) of a few hundred thousand
#    parameters, trained on noisy human-like summaries;
# 3. a **proxy reward model** learned from a *finite* set of *noisy* preferences between SFT
#    samples — reasonable where the SFT policy goes, blind where it never goes.
#
# Chapters 05 and 06 run online and offline preference optimisation against this testbed, and
# measure gold quality exactly instead of asking a judge. Everything is built from code, offline,
# in a couple of CPU minutes, and cached.

# %% tags=["parameters"]
SMOKE = False  # CI-sized run: seconds instead of minutes (uses the "smoke" preset)
SEED = 0  # seeds Python, NumPy and torch, and the testbed build
DEVICE = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
PRESET = "tiny"  # testbed preset: "tiny" (the book's) or "smoke"
N_TESTBED_SEEDS = 3  # testbeds in the seed table, seeds from SEED up; at least 2
WORKERS = (
    "auto"  # parallel build processes, "auto" for one per core (the first builds go side by side)
)

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

import ipywidgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display

import rlhf_nb
from rlhf_nb import stats
from rlhf_nb.chapters import ch04
from rlhf_nb.runs.pool import resolve_workers
from rlhf_nb.testbed.task import COMPONENTS, GoldWeights
from rlhf_nb.viz import plotting, widgets

ctx = rlhf_nb.setup(seed=SEED, device=DEVICE, smoke=SMOKE)
p = ch04.Params.from_globals(globals())  # checks every parameter before any work starts
preset, workers = p.tb_preset, 1 if SMOKE else resolve_workers(WORKERS)
print(
    f"device={ctx.device}  seed={ctx.seed}  smoke={ctx.smoke}  preset={preset}  "
    f"workers={workers} (of {resolve_workers('auto')} cores)"
)

# %% [markdown]
# ## Building the testbed
#
# `testbed.build(preset, seed)` generates the documents, trains the SFT policy, samples and labels
# the preference pairs and trains the proxy reward model. The result is cached on disk (keyed by
# preset, seed and code version), so the second call only loads it. The preset is a documented
# dataclass:

# %%
t0 = time.perf_counter()
# a cold build runs in one process on one core, so the next seed of section 6's seed table builds
# beside it, on the other core (`ch04.build_seeds`; cached builds only load)
side_by_side = [SEED + i for i in range(min(workers, N_TESTBED_SEEDS))]
tb = ch04.build_seeds(preset, side_by_side, workers=workers, cache_dir=ctx.cache_dir)[0]
load_s = time.perf_counter() - t0
n_params = tb.sft_policy.num_parameters()
print(f"built in {tb.build_seconds:.1f} s (this call: {load_s:.1f} s for testbed seeds "
      f"{side_by_side}), cached at {tb.path}")  # fmt: skip
print(f"policy: GPT-NeoX, {n_params:,} parameters, vocabulary of {len(tb.tokenizer)} words")
pd.Series(vars(tb.preset), name="value").to_frame()

# %% [markdown]
# ## The task
#
# A *document* is ~18 words: 3-5 distinct topic words (some repeated) in filler, then `TL;DR:`.
# A good *summary* lists the topic words once each, in order of first appearance, and stops.
# The **oracle** writes exactly that; the noisy **reference** summariser — our "human" — drops
# topics, swaps, repeats, hallucinates and adds filler at random. References train the SFT
# policy and are the baseline of the win rate.

# %%
show = tb.eval_prompts[:4]
pd.DataFrame(
    {"document": show, "oracle summary": tb.oracles(show), "reference summary": tb.references(show)}
)

# %% [markdown]
# ## The gold reward
#
# For a document with topics $T$ ($n = |T|$) and a summary $w_1\dots w_L$ mentioning $c$ of them,
# the gold reward is a sum of named terms (`rlhf_nb.testbed.task.gold_components`), with the weights of
# `rlhf_nb.testbed.task.GoldWeights` (the table is generated from them):

# %%
w = GoldWeights()
Markdown(
    "| term | value |\n|---|---|\n"
    f"| coverage | ${w.coverage:g}\\,(1-{w.coverage_decay:g}^{{c}})/(1-{w.coverage_decay:g}^{{n}})$"
    " — diminishing returns per topic |\n"
    f"| order | ${w.order:g}\\,\\#\\{{\\text{{adjacent topics in document order}}\\}}/(n-1)$ |\n"
    f"| filler | $-{w.filler:g}$ per non-topic word |\n"
    f"| repetition | $-{w.repetition:g}$ per repeated word |\n"
    f"| hallucination | $-{w.hallucination:g}$ per topic word not in the document |\n"
    f"| truncation | $-{w.truncation:g}$ if the summary used the whole budget (no EOS) |\n"
    f"| length | $\\pm {w.length:g}\\,L$ for `length_bias` = long / short (0 when neutral) |\n"
    f"\nThe oracle covers every topic in order, so it scores coverage + order = "
    f"{w.coverage + w.order:g} whatever the document (checked below on every held-out document)."
)

# %% [markdown]
# Here is one document's summaries, edited by hand to switch on one term at a time:

# %%
doc = tb.eval_prompts[0]
topics = tb.oracles([doc])[0].split()
others = [t for t in ("apple", "piano", "tiger", "rocket", "violin") if t not in topics]
variants = {
    "oracle": " ".join(topics),
    "reference": tb.references([doc])[0],
    "drop a topic": " ".join(topics[:-1]),
    "reversed": " ".join(topics[::-1]),
    "with filler": " ".join(topics[:2] + ["the", "and"] + topics[2:]),
    "repeated word": " ".join(topics + [topics[0]] * 3),
    "hallucinated": " ".join(topics + others[:1]),
    "cut off": " ".join((topics * 8)[: tb.max_new_tokens]),
}
variant_scores = tb.scores([doc] * len(variants), list(variants.values()))
variant_scores.index = list(variants)
print(doc)
variant_scores.round(2)

# %%
fig = plotting.static_figure(
    [
        go.Bar(name=c, x=list(variants), y=variant_scores[c])
        for c in COMPONENTS
        if variant_scores[c].abs().sum() > 0
    ],
    title="Gold reward components of hand-edited summaries (stacked; bars below 0 are penalties)",
    yaxis_title="reward",
    barmode="relative",
)
fig.add_trace(go.Scatter(x=list(variants), y=variant_scores["gold"], mode="markers", name="gold"))
fig.show()

# %% [markdown]
# ## The SFT policy
#
# A tiny causal LM trained by cross-entropy on (document, reference) pairs. Its samples mostly
# name topics from the document, sometimes in the wrong order, missing one, or with a stray word:

# %%
n_eval = len(tb.eval_prompts)
eval_x4 = [p for p in tb.eval_prompts for _ in range(4)]
sft = tb.sample(tb.sft_policy, tb.eval_prompts, n=4, seed=SEED + 10)
sft_scores = tb.scores(eval_x4, sft)
sft_scores.insert(0, "oracle", tb.oracles(eval_x4))
sft_scores[["oracle", "response", "gold", "proxy"]].head(8).round(2)

# %%
eval_oracles = tb.oracles(tb.eval_prompts)
gold_sft = sft_scores["gold"].mean()
gold_ref = tb.gold_reward(tb.eval_prompts, tb.eval_references).mean().item()
gold_oracle = tb.gold_reward(tb.eval_prompts, eval_oracles).mean().item()
win_sft = tb.win_rate(eval_x4, sft)
win_oracle = tb.win_rate(tb.eval_prompts, eval_oracles)
print(f"mean gold on {n_eval} held-out documents: SFT {gold_sft:.2f}, references {gold_ref:.2f}, ")
print(
    f"oracle {gold_oracle:.2f}; win rate vs references: SFT {win_sft:.2f}, oracle {win_oracle:.2f}"
)

fig = plotting.static_figure(
    [
        go.Histogram(x=sft_scores["gold"], name="SFT samples", opacity=0.6, histnorm="probability"),
        go.Histogram(
            x=tb.gold_reward(eval_x4, tb.references(eval_x4)),
            name="references",
            opacity=0.6,
            histnorm="probability",
        ),
    ],
    title="Gold reward of SFT samples and reference summaries (oracle = 3.5)",
    xaxis_title="gold reward",
    yaxis_title="fraction",
    barmode="overlay",
)
fig.show()

# %% [markdown]
# The SFT policy sits well below the oracle and loses to the references most of the time — the
# analogue of a Pythia SFT model's win rate against TL;DR's human summaries. There is room to
# improve, which is what RLHF is for.
#
# ## The preference data
#
# Two SFT samples per prompt; the winner is *drawn* from the gold Bradley-Terry model
# $P(a \succ b) = \sigma(\beta\,(g(a) - g(b)))$, so labels are noisy, like human annotators:

# %%
held = tb.preference_heldout
g_chosen = tb.gold_reward(held["prompt"], held["chosen"])
g_rejected = tb.gold_reward(held["prompt"], held["rejected"])
decided = g_chosen != g_rejected
agree = (g_chosen > g_rejected)[decided].float().mean().item()
n_train, n_held = len(tb.preference_data), len(held)
print(f"{n_train} training pairs, {n_held} held-out pairs, β = {tb.preset.label_beta}")
print(f"labels agree with the gold ordering on {agree:.1%} of held-out pairs (gold not tied)")
tb.preference_data.select(range(5)).to_pandas()

# %% [markdown]
# ## The proxy reward model
#
# A `GPTNeoXForSequenceClassification` initialised from the SFT policy (new scalar head, read at
# the EOS token) and trained on the training pairs with the Bradley-Terry loss
# $-\log\sigma(r(x, y_w) - r(x, y_l))$. On held-out pairs:

# %%
r_chosen = tb.proxy_reward(held["prompt"], held["chosen"])
r_rejected = tb.proxy_reward(held["prompt"], held["rejected"])
rm_acc = (r_chosen > r_rejected).float().mean().item()
rm_gold_acc = ((r_chosen > r_rejected) == (g_chosen > g_rejected))[decided].float().mean().item()
pearson = np.corrcoef(sft_scores["gold"], sft_scores["proxy"])[0, 1]
spearman = sft_scores[["gold", "proxy"]].corr(method="spearman").iloc[0, 1]
print(f"held-out accuracy vs the noisy labels: {rm_acc:.3f} (the gold itself scores {agree:.3f})")
print(f"held-out accuracy vs the gold ordering: {rm_gold_acc:.3f}")
print(f"on fresh SFT samples: Pearson(proxy, gold) = {pearson:.2f}, Spearman = {spearman:.2f}")

# %% [markdown]
# **Calibration.** The RM's predicted probability that one response wins,
# $\sigma(r(a) - r(b))$, against how often it actually won (the labels) and against the gold
# Bradley-Terry probability that generated the labels. Both orientations of each pair are used,
# so the plot is symmetric about ½.

# %%
pred = torch.sigmoid(torch.cat([r_chosen - r_rejected, r_rejected - r_chosen])).numpy()
label = np.r_[np.ones(n_held), np.zeros(n_held)]
true_p = torch.sigmoid(
    tb.preset.label_beta * torch.cat([g_chosen - g_rejected, g_rejected - g_chosen])
)
n_bins = 5 if SMOKE else 10
bins = np.minimum((pred * n_bins).astype(int), n_bins - 1)
calib = (
    pd.DataFrame({"bin": bins, "predicted": pred, "label": label, "gold BT": true_p.numpy()})
    .groupby("bin")
    .agg(
        predicted=("predicted", "mean"),
        won=("label", "mean"),
        gold=("gold BT", "mean"),
        pairs=("label", "size"),
    )  # fmt: skip
)
fig = plotting.static_figure(
    [
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line=dict(dash="dot")),
        go.Scatter(x=calib["predicted"], y=calib["won"], mode="lines+markers", name="label freq."),
        go.Scatter(
            x=calib["predicted"], y=calib["gold"], mode="lines+markers", name="gold BT prob."
        ),
    ],
    title="Proxy RM calibration on held-out pairs",
    xaxis_title="predicted P(win) = σ(r(a) − r(b))",
    yaxis_title="observed",
)
fig.show()
top = calib.iloc[-1]
print(
    f"overconfident at the extremes: when the proxy says {top['predicted']:.2f}, the response "
    f"won {top['won']:.2f} of the time (gold Bradley-Terry probability {top['gold']:.2f})"
)
calib.round(3)

# %% [markdown]
# The proxy is right more often than not, but far from the gold: it saw a few thousand noisy
# comparisons of *SFT samples*, and learned what distinguishes them.
#
# ## Where the proxy is wrong
#
# First, among SFT samples: the ones it overrates most (high proxy rank, low gold rank):

# %%
ranks = sft_scores[["gold", "proxy"]].rank(pct=True)
sft_scores["overrated"] = ranks["proxy"] - ranks["gold"]
sft_scores.sort_values("overrated", ascending=False)[
    ["oracle", "response", "gold", "proxy", "repetition", "hallucination"]
].head(6).round(2)

# %% [markdown]
# Second, where the SFT data never goes. SFT samples rarely repeat a word many times, so the
# preferences never told the proxy that repetition is bad. Repeat each document's first topic
# $k$ times and compare with the oracle summary:

# %%
spot_data = ch04.blind_spot(tb)  # repetitions scored by proxy and gold
ks, rep = spot_data["ks"], spot_data["texts"]
rep_gold_all, rep_proxy_all = spot_data["gold"], spot_data["proxy"]  # [K, N]
rep_gold = [row.mean().item() for row in rep_gold_all]
oracle_proxy = spot_data["oracle_proxy"]
sft_proxy = sft_scores["proxy"].mean()
fig = plotting.static_figure(
    [
        go.Scatter(x=ks, y=rep_proxy_all.mean(1), mode="lines+markers", name="proxy"),
        go.Scatter(x=ks, y=rep_gold, mode="lines+markers", name="gold"),
        go.Scatter(
            x=ks,
            y=[oracle_proxy.mean().item()] * len(ks),
            name="proxy of oracle",
            line=dict(dash="dash"),
        ),
        go.Scatter(
            x=ks, y=[sft_proxy] * len(ks), name="proxy of SFT samples", line=dict(dash="dot")
        ),
    ],  # fmt: skip
    title="The blind spot: one topic word repeated k times (mean over held-out documents)",
    xaxis_title="k (repetitions)",
    yaxis_title="reward",
)
fig.show()

# %%
gap = rep_proxy_all - oracle_proxy  # [K, N]: how much more the proxy likes the repetition
beats = spot_data["beats"]
# the blind spot shown: the largest preference for a repetition whose gold is below zero
k_best, i_best = divmod(int(gap.masked_fill(rep_gold_all >= 0, -torch.inf).argmax()), n_eval)
spot_prompt, spot_response = tb.eval_prompts[i_best], rep[ks[k_best]][i_best]
spot = tb.scores([spot_prompt] * 2, [eval_oracles[i_best], spot_response])
spot.index = ["oracle", "blind spot"]
print(spot_prompt)
print(
    f"on {beats:.0%} of held-out documents some k-fold repetition outscores the oracle summary "
    f"under the proxy; mean proxy of SFT samples {sft_proxy:.2f}, of {ks[-1]} repetitions "
    f"{rep_proxy_all[-1].mean():.2f}, of the oracle {oracle_proxy.mean():.2f}"
)
spot[["response", "gold", "proxy", "coverage", "repetition", "truncation"]].round(2)

# %% [markdown]
# A policy optimised against this proxy *without* an anchor to the SFT model can drift there:
# towards responses the proxy overrates and the gold punishes. Chapter 05 watches what it does.
#
# ## Is this testbed typical? The same measures on other builds
#
# Everything above is one build: one draw of documents, labels and SFT and RM weights. Another
# seed draws others, and another machine would train other weights from the same seed (float32
# differs across CPUs). So the claims this chapter makes about *the testbed* are checked on
# `N_TESTBED_SEEDS` builds (seeds `SEED`, `SEED+1`, …; each cached, built `WORKERS` at a time):
# the SFT policy against the references and the oracle, the labels, the RM's accuracy, the
# proxy–gold correlation and the repetition blind spot.

# %%
tb_seeds = [SEED + i for i in range(2 if SMOKE else N_TESTBED_SEEDS)]  # SMOKE: 2 builds
t0 = time.perf_counter()
seed_tab = ch04.seed_table(preset, tb_seeds, workers=workers, cache_dir=ctx.cache_dir)
print(f"{len(tb_seeds)} testbeds ready in {time.perf_counter() - t0:.0f} s")
band = {c: stats.Stat.of(seed_tab[c]) for c in seed_tab.columns}
summary = pd.DataFrame(
    {c: {"mean": b.mean, "95% band ±": (b.hi - b.lo) / 2, "min": b.min, "max": b.max}
     for c, b in band.items()}
).T  # fmt: skip
display(seed_tab.round(3))
summary.round(3)

# %%
print(
    f"over {len(tb_seeds)} testbed builds (mean ± 95% band): Pearson(proxy, gold) on SFT samples "
    f"{band['proxy_gold_pearson']}; RM held-out accuracy {band['rm_heldout_accuracy']}; "
    f"SFT win rate vs references {band['sft_win_rate']}; share of documents where a repetition "
    f"beats the oracle under the proxy {band['beats']}; gold of {tb.max_new_tokens} repetitions "
    f"minus the SFT samples' gold {band['rep_gold_minus_sft']}"
)
#
# ## Try it yourself
#
# In a live kernel, edit the summary below and see the gold reward and the proxy side by side
# (words outside the vocabulary become `<unk>` for the proxy and count as filler for the gold).

# %%
box_prompt = tb.eval_prompts[1]
text = ipywidgets.Text(value=tb.references([box_prompt])[0], description="summary:",
                       layout=ipywidgets.Layout(width="90%"))  # fmt: skip
print(box_prompt)
box = widgets.live_figure(lambda summary: tb.scores([box_prompt], [summary]).round(2), summary=text)

# %% [markdown]
# On the static site there is no kernel behind the box, so here are a few edits, computed:

# %%
t1 = tb.oracles([box_prompt])[0].split()
edits = [
    " ".join(t1),
    tb.references([box_prompt])[0],
    " ".join(t1[:2]),
    " ".join(t1 + ["very", "well"]),
    " ".join(t1[:1] * 6),
    " ".join(t1 * 2),
]
tb.scores([box_prompt] * len(edits), edits).round(2)

# %% [markdown]
# ## Checkpoints
# What you should have seen: the SFT policy is well below the oracle and loses to the references
# most of the time; the proxy beats chance on held-out pairs and correlates with gold on SFT
# samples; and some response the proxy scores above the oracle has a gold reward far below it.
# The claims about the testbed are asserted on *every* build of the seed table, each threshold
# with the margin it keeps from the seed values (in seed SDs, printed; `rlhf_nb.stats.holds`).

# %%
assert abs(gold_oracle - (w.coverage + w.order)) < 1e-6 and win_oracle > 0.9
assert gold_sft < gold_ref < gold_oracle
assert 0.5 < agree < 1.0, "labels are noisy but informative"
assert abs(rm_acc - tb.stats["rm_heldout_accuracy"]) < 1e-6, "same RM, same pairs as the build"
assert abs(rm_gold_acc - tb.stats["rm_heldout_gold_accuracy"]) < 1e-6
assert abs(agree - tb.stats["label_gold_agreement"]) < 1e-6, "same labels as the build"
assert spot["proxy"]["blind spot"] > spot["proxy"]["oracle"]
assert gold_sft < gold_oracle - 1.0, "SFT well below the oracle"
assert seed_tab.loc[SEED, "beats"] == beats  # the seed table measures this very build
if SMOKE:
    assert win_sft < 0.5
    assert rm_acc > 0.5 and pearson > 0
else:
    # thresholds for every build, and their distance from the seed values in seed SDs
    checks = {  # column: (threshold, the side every seed must be on)
        "sft_win_rate": (0.5, "<"),  # SFT loses to the references
        "gold_sft": (band["gold_oracle"].mean - 1.0, "<"),  # SFT well below the oracle
        "rm_heldout_accuracy": (0.53, ">"),  # proxy better than chance on held-out pairs
        # ... and against gold: better than chance, the statement's own null. First set at 0.53
        # (testbeds 0-2, 2026-11); on the 2026-12-03 machine (AMD EPYC) the same builds gave
        # 0.58 to 0.66, 2.0 seed SDs from 0.53, so the threshold is now the null itself
        "rm_heldout_gold_accuracy": (0.5, ">"),
        "proxy_gold_pearson": (0.05, ">"),  # proxy and gold correlate, loosely ...
        "beats": (0.05, ">"),  # ... and repetition outscores the oracle on some documents
        "rep_gold_minus_sft": (-3.0, "<"),  # where the gold is far below the SFT policy's
    }
    for col, (thr, side) in checks.items():
        stats.holds(f"{col} over testbed builds", seed_tab[col], side, thr)
    assert pearson < 0.8, "loosely: far from a faithful proxy"
print("checkpoints passed")

# %% [markdown]
# ## Exercises
#
# Each exercise uses the package; its worked solution is the collapsed cell below it (click to
# show it on the site). The solutions run with the chapter, so they cannot rot.
#
# **1. Where does the SFT policy lose gold?** Break the gap between the oracle summaries and the
# SFT policy's samples into the gold reward's named terms with `tb.gold_components`, and check
# that the terms add up to the total.

# %% tags=["hide-input"]
# Solution 1: the gold reward is a sum of named terms, so its gap is the sum of theirs.
gap_terms = (tb.gold_components(tb.eval_prompts, eval_oracles).mean()
             - tb.gold_components(eval_x4, sft).mean())  # fmt: skip
print(gap_terms.round(3).sort_values(ascending=False).to_string())
assert abs(gap_terms.drop("total").sum() - gap_terms["total"]) < 1e-6
assert abs(gap_terms["total"] - (gold_oracle - gold_sft)) < 1e-4

# %% [markdown]
# **2. How noisy is a win rate?** Bootstrap the SFT policy's win rate against the references over
# its samples (resample them with replacement, 2000 times) and give a 95 % interval. Is 1/2 inside?
# What would halving the number of evaluation prompts do to the interval's width?

# %% tags=["hide-input"]
# Solution 2: each sample wins (1), ties (1/2) or loses (0); the interval is the bootstrap's 2.5 and
# 97.5 percentiles. Its width shrinks like 1/sqrt(n): half the prompts, about 1.4x wider.
g_s = tb.gold_reward(eval_x4, sft).numpy()
g_r = tb.gold_reward(eval_x4, tb.references(eval_x4)).numpy()
wins = (g_s > g_r) + 0.5 * (g_s == g_r)
boot = np.random.default_rng(SEED).choice(wins, size=(2000, wins.size)).mean(axis=1)
lo_w, hi_w = np.percentile(boot, [2.5, 97.5])
print(f"SFT win rate {wins.mean():.3f}, 95 % bootstrap interval [{lo_w:.3f}, {hi_w:.3f}] over "
      f"{wins.size} samples; 1/2 is {'inside' if lo_w <= 0.5 <= hi_w else 'outside'}")  # fmt: skip
assert abs(wins.mean() - win_sft) < 1e-9 and lo_w <= win_sft <= hi_w
