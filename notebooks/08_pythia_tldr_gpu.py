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
# # 08 · The paper's own setting: Pythia on Reddit TL;DR, on a GPU
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rlhf-nb/rlhf-nb/blob/main/notebooks/08_pythia_tldr_gpu.ipynb)
#
# Chapters 04–07 watched MaxEnt RLHF fail on a 240k-parameter toy. The paper saw it on Pythia
# policies summarising Reddit posts (TL;DR), with a learned reward model, at learning rates of
# 1e-6 and 1e-7. This chapter runs that setting **through the same code**: the preset
# `pythia-1b-tldr` becomes a testbed (`rlhf_nb.testbed.real`) that the online loop of chapter 05
# trains on unchanged — the same `OnlineConfig`, the same RLOO update, the same history, the
# same figures.
#
# * The **policy** is the public Pythia-1b TL;DR SFT checkpoint of {cite:t}`huang2024nplus`, trained with LoRA so its reference is itself with the
#   adapters off;
# * the **proxy** reward model it optimises is their Pythia-1b reward model;
# * the **gold** reward model, used only to evaluate, is their larger Pythia-2.8b reward model
#   ({cite:t}`gao2023scaling`'s gold/proxy design, standing in for the paper's LLM judge). The win rate in
#   each legend is $P\big(r_\text{gold}(x, y) > r_\text{gold}(x, y_\text{ref})\big)$ over
#   held-out posts $x$, with $y \sim \pi(\cdot\mid x)$ and $y_\text{ref}$ the author's summary.
#
# The two objectives are chapter 05's: MaxEnt maximises
# $\mathbb{E}_\pi[r_\text{proxy}] + \alpha\,H(\pi)$ with no anchor, the baseline
# $\mathbb{E}_\pi[r_\text{proxy}] - \beta\,\mathrm{KL}(\pi\,\|\,\pi_\text{SFT})$.
#
# **Where this page came from.** On a machine without a CUDA GPU — the machine that built this
# site — the chapter runs every cell on *tiny random stand-ins* (`rlhf_nb.testbed.standin`):
# the real loading code, random weights of a few thousand parameters. Those figures check that
# the code path works; they say nothing about RLHF. Open the chapter in Colab with a GPU runtime
# to run the real preset. The next cell says which mode this copy ran in.

# %% tags=["parameters"]
SMOKE = False  # CI-sized run: forces the stand-ins even where a GPU is present
SEED = 0  # seeds the prompts, the samples and the evaluation draws
DEVICE = "auto"  # "auto" (the real preset needs CUDA), "cpu" or "cuda"
PRESET = "pythia-1b-tldr"  # a name in rlhf_nb.testbed.tldr.TLDR_PRESETS (needs a GPU)
ALPHAS = [0.0, 0.01]  # entropy temperatures α of the sweep (sequence-level bonus, no anchor)
LRS = [1e-5, 1e-6]  # the two learning rates (LoRA; see the text for the paper's full-FT rates)
BETA = 0.05  # the KL-regularised baseline's β, at LRS[0]
STEPS = 100  # optimiser steps per run on the GPU
PROMPTS_PER_STEP = 8  # posts per step, k samples each
K = 4  # samples per post (the RLOO group)

# %% [markdown]
# The next cell only does something in Colab: it installs this book's package.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab only; Colab keeps its own torch
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "rlhf-nb @ git+https://github.com/rlhf-nb/rlhf-nb"], check=True)

# %%
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from IPython.display import Markdown, display

import rlhf_nb
from rlhf_nb.methods.online import OnlineConfig
from rlhf_nb.runs import get_runs, kind_of
from rlhf_nb.runs.cache import run_path
from rlhf_nb.stats import summary_table
from rlhf_nb.testbed import real, standin, tldr
from rlhf_nb.viz import run_plots

rlhf_nb.check_choice("PRESET", PRESET, tldr.TLDR_PRESETS)
rlhf_nb.check_type("ALPHAS", ALPHAS, list)
rlhf_nb.check_type("LRS", LRS, list)
if len(LRS) != 2:
    raise ValueError(f"LRS must hold two learning rates, got {LRS!r}")
for name, value in [*(("ALPHAS", a) for a in ALPHAS), *(("LRS", lr) for lr in LRS)]:
    rlhf_nb.check_range(name, value, 0.0, None, low_inclusive=name == "ALPHAS")
rlhf_nb.check_range("BETA", BETA, 0.0, None, low_inclusive=False)
for name, value, low in [("STEPS", STEPS, 1), ("PROMPTS_PER_STEP", PROMPTS_PER_STEP, 1),
                         ("K", K, 2)]:  # fmt: skip
    rlhf_nb.check_int(name, value, low)
REAL = torch.cuda.is_available() and not SMOKE and DEVICE != "cpu"
ctx = rlhf_nb.setup(seed=SEED, device=DEVICE, smoke=SMOKE, network=REAL)
pd.set_option("display.width", 160)

# %% [markdown]
# ## 1 · What this machine has
#
# The GPU check: what torch sees, and whether the preset's weights and optimiser state fit.
# `rlhf_nb.testbed.tldr.memory_estimate` counts them from the Pythia architectures on torch's
# meta device (no download): frozen models at 2 bytes per parameter, LoRA adapters and their
# Adam state at 16.

# %%
est = tldr.memory_estimate(PRESET)
need = est["total"] + tldr.RUNTIME_GB  # + activations, KV cache and the CUDA context
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    have = props.total_memory / 1e9
    bf16 = torch.cuda.is_bf16_supported()
    print(f"GPU: {props.name}, {have:.1f} GB, bfloat16 {'yes' if bf16 else 'no (float16)'}")
    print(f"{PRESET} needs ~{need:.1f} GB: {'fits' if need < have else 'does NOT fit'}")
else:
    print("No CUDA GPU: torch.cuda.is_available() is False.")
print(pd.Series(est).map(lambda v: f"{v:,.0f}" if v > 1000 else f"{v:.2f} GB").to_string())
MODE = "real" if REAL else "stand-ins"
if REAL:
    display(Markdown(f"**Mode: real.** `{PRESET}` on {torch.cuda.get_device_name()}."))
else:
    why = "SMOKE=True" if SMOKE else "no CUDA GPU" if not torch.cuda.is_available() else "CPU"
    display(Markdown(
        f"**Mode: stand-ins ({why}).** Every cell below runs on tiny *random* models through "
        "the real loading code. The figures check the code path; they are **not results**."
    ))  # fmt: skip

# %% [markdown]
# ## 2 · The preset becomes a testbed
#
# `real.load` reads the preset's models and data (on the GPU: downloads them once into the
# Hugging Face cache) and returns an object with the testbed interface of chapter 04 — rewards,
# sampling, reference summaries, held-out prompts. What is new and handled there: Pythia's
# tokenizer gets a `[PAD]` token (as the N+ recipe adds), the reward models read their score at
# the EOS token (how they were trained), a summary that hits the 53-token budget without EOS is
# penalised by 1 (TRL's `missing_eos_penalty`), and the gold RM may use another tokenizer (the
# stand-ins' does: the text is then re-tokenised).

# %%
t0 = time.perf_counter()
if REAL:
    tb = real.load(PRESET, device="cuda")
    steps, prompts_per_step, k, alphas, lrs = STEPS, PROMPTS_PER_STEP, K, ALPHAS, LRS
else:  # the same cells at stand-in size
    tb = real.load(standin.preset(), device="cpu")
    # random weights barely move at LoRA rates: 100x the rates, so the curves separate
    lrs = [100 * lr for lr in LRS]
    steps, prompts_per_step, k, alphas = 6, 4, 2, [ALPHAS[0], ALPHAS[-1]]
print(f"loaded in {time.perf_counter() - t0:.1f} s: {tb.preset.name}, policy {tb.preset.policy}")
print(f"gold RM {tb.preset.gold_rm}; same tokenizer as the policy: "
      f"proxy {tb.same_proxy_tokens}, gold {tb.gold_tokenizer.get_vocab() == tb.tokenizer.get_vocab()}")  # fmt: skip
print(f"{len(tb.task.prompts)} training posts, {len(tb.eval_prompts)} evaluation posts, "
      f"max {tb.max_new_tokens} new tokens, LoRA rank {tb.preset.lora_r}")  # fmt: skip
print("\nAn evaluation post and its reference summary:\n")
print(tb.eval_prompts[0][-400:], "\n  reference:", tb.references(tb.eval_prompts[:1])[0])

# %% [markdown]
# ## 3 · The paper's figure, small: an entropy sweep at two learning rates, and the KL baseline
#
# Each run is an `OnlineConfig` as in chapter 05 — `regularizer="entropy"` with α for MaxEnt,
# `"kl"` with β for the baseline — trained or loaded by the one entry point (`rlhf_nb.runs.get_runs`, cached).
# The paper ran full fine-tuning at 1e-6 and 1e-7; a LoRA policy moves less per step at the
# same rate, so the defaults are 1e-5 and 1e-6 (change `LRS`, or pass `--lora-r 0` to the
# runner below for full fine-tuning on a larger card). After the first run the cell prints its
# measured seconds per step and the projected time of the whole sweep, so a reader with a
# free-Colab budget can cut `STEPS` early.


# %%
def config(lr, alpha=None, beta=None):
    reg = dict(regularizer="kl", beta=beta) if beta else dict(regularizer="entropy", alpha=alpha)
    if alpha == 0.0:
        reg = dict(regularizer="none")
    return OnlineConfig(**reg, lr=lr, steps=steps, prompts_per_step=prompts_per_step, k=k,
                        eval_interval=max(1, steps // 5), n_eval_prompts=len(tb.eval_prompts),
                        seed=SEED, device="cuda" if REAL else "cpu")  # fmt: skip


configs = {lr: [config(lr, alpha=a) for a in alphas] for lr in lrs}
kl_config = config(lrs[0], beta=BETA)
runs, t_sweep = {lr: [] for lr in lrs}, time.perf_counter()
n_runs = len(lrs) * len(alphas) + 1
for lr in lrs:
    for cfg in configs[lr]:
        t_run, cached = time.perf_counter(), run_path(kind_of(cfg), tb, cfg).exists()
        runs[lr].append(get_runs(cfg, testbed=tb, verbose=False))
        if len(runs[lrs[0]]) == 1 and lr == lrs[0]:
            per_step = (time.perf_counter() - t_run) / steps
            print("first run: loaded from the cache" if cached else
                  f"first run: {per_step:.2f} s/step -> the sweep's {n_runs} runs take about "
                  f"{per_step * steps * n_runs / 60:.1f} min here")  # fmt: skip
kl_run = get_runs(kl_config, testbed=tb, verbose=False)
print(f"sweep done in {time.perf_counter() - t_sweep:.0f} s ({MODE})")
table = summary_table([*runs[lrs[0]], *runs[lrs[1]], kl_run])
table[["status", "gold_start", "gold_peak", "gold_final", "kl_k1_final", "length_final",
       "eos_final", "win_final"]].round(3)  # fmt: skip

# %% [markdown]
# The same figures as chapter 05, drawn by the same code (`rlhf_nb.viz.run_plots`): gold, proxy
# and KL to the SFT policy per step at the higher rate with the KL baseline, then gold at both
# rates behind a slider (on the stand-ins: KL).

# %%
run_plots.panels_figure(
    [*runs[lrs[0]], kl_run], ("gold", "proxy", "kl_k1"),
    title=f"{tb.preset.name} ({MODE}): entropy sweep and KL baseline at lr = {lrs[0]:g}",
).show()  # fmt: skip
# on random stand-ins a few steps barely change the samples, so gold coincides across rates;
# their slider shows the KL to SFT (which does move) instead
slider_y = "gold" if REAL else "kl_k1"
run_plots.sweep_figure(
    runs, slider_y, param="lr", title=f"{run_plots.TITLES[slider_y]} at both learning rates "
    f"({MODE})",
).show()  # fmt: skip

# %%
final = table.reset_index()
lines = [f"- {r.run}: gold {r.gold_start:.3f} → peak {r.gold_peak:.3f} → final "
         f"{r.gold_final:.3f}, KL {r.kl_k1_final:.2f} nats, win rate {r.win_final:.2f}"
         for r in final.itertuples()]  # fmt: skip
note = ("one seed per setting: an observation to compare with chapter 05's seed bands, not a "
        "claim") if REAL else ("random stand-in weights: these numbers test the plumbing only")  # fmt: skip
display(Markdown(f"What these runs did ({MODE}; {note}):\n\n" + "\n".join(lines)))

# %% [markdown]
# ## 4 · The same run from the command line, and on several GPUs
#
# `python -m rlhf_nb.run` runs one setting of any method (`maxent`, `kl`, `rloo`, `dpo`,
# `simpo`) on a preset and writes its history, samples and checkpoints to a folder; `--resume`
# continues after an interrupt with the history an uninterrupted run would have had (tested on
# CPU). Under `accelerate launch` it runs data-parallel: each process samples its own slice of
# every step's posts (RLOO groups stay within a process), DDP averages the gradients, the
# history averages over all processes' samples. Its options are the config dataclasses' fields,
# with their defaults and docs (`--help`): the defaults are the toy runs', so a Pythia run
# passes its learning rate. The configs for one GPU, several GPUs (DDP) and FSDP are in
# `accelerate/`:
#
# ```bash
# python -m rlhf_nb.run --preset pythia-1b-tldr --method maxent --alpha 0.01 --lr 1e-5 \
#     --out runs/a01
# accelerate launch --config_file accelerate/ddp.yaml -m rlhf_nb.run \
#     --preset pythia-1b-tldr --method kl --beta 0.05 --lr 1e-5 --out runs/kl
# ```
#
# Here it runs two steps on the stand-ins (it always may: they are built locally).

# %%
out = Path(tempfile.mkdtemp(prefix="runner-demo-"))  # a new folder: the runner never overwrites
cmd = [sys.executable, "-m", "rlhf_nb.run", "--preset", "standin", "--method", "kl",
       "--beta", "0.05", "--steps", "2", "--prompts-per-step", "4", "--k", "2", "--no-progress",
       "--device", "cpu", "--out", str(out)]  # fmt: skip
proc = subprocess.run(cmd, capture_output=True, text=True)
print(proc.stderr.strip().splitlines()[-1])
runner_history = pd.read_csv(out / "history.csv")
runner_history[["step", "gold", "proxy", "kl_k1", "length", "eos_rate"]].round(4)

# %% [markdown]
# ## Checkpoints
#
# What must hold in either mode (the code path); the science of the real runs is reported
# above, from one seed per setting, and is not asserted.

# %%
all_runs = [*runs[lrs[0]], *runs[lrs[1]], kl_run]
assert all(r.status == "finished" for r in all_runs), [(r.label, r.message) for r in all_runs]
for r in all_runs:
    h = r.history
    assert len(h) == steps + 1 and h["step"].tolist() == list(range(steps + 1)), r.label
    assert abs(h["kl_k1"].iloc[0]) < 1e-4, (r.label, h["kl_k1"].iloc[0])  # starts at π_SFT
    assert h["length"].between(1, tb.max_new_tokens).all(), r.label
    assert 0.0 <= r.final("win_rate") <= 1.0, r.label
assert est["total"] + tldr.RUNTIME_GB < 15.0, (
    est
)  # the Colab preset fits a free T4 (15 GB) on paper
assert proc.returncode == 0 and runner_history["step"].max() == 2, proc.stderr[-2000:]
print(f"checkpoints hold ({MODE}): {len(all_runs)} runs finished, KL starts at 0, the runner "
      f"wrote {len(runner_history)} history rows")  # fmt: skip

# %% [markdown]
# ## Exercises
#
# Each exercise uses the package; its worked solution is the collapsed cell below it (click to
# show it on the site). The solutions run with the chapter, so they cannot rot.
#
# **1. Which card for which preset?** With `tldr.memory_estimate`, find for each named preset
# whether its weights and optimiser state (plus ~3 GB for activations and the CUDA context) fit
# a 15 GB T4, a 24 GB L4/A10 and a 40 GB A100. What would full fine-tuning (`lora_r=0`) of the
# 1b policy cost instead?

# %% tags=["hide-input"]
# Solution 1: LoRA keeps the policy at 2 bytes/parameter plus a few MB of adapters; full
# fine-tuning pays 16 bytes/parameter (weights, gradients, two Adam moments) plus a frozen copy.
cards = {"T4 15 GB": 15, "L4/A10 24 GB": 24, "A100 40 GB": 40}
fit = pd.DataFrame({p: {c: tldr.memory_estimate(p)["total"] + tldr.RUNTIME_GB < gb for c, gb in cards.items()}
                    for p in tldr.PRESET_SIZES}).T  # fmt: skip
print(fit.to_string())
full_gb = tldr.memory_estimate("pythia-1b-tldr", full_finetune=True)["total"]
print(f"pythia-1b-tldr with full fine-tuning: ~{full_gb:.1f} GB before activations")
assert fit.loc["pythia-1b-tldr", "T4 15 GB"] and not fit.loc["pythia-2.8b-tldr", "T4 15 GB"]
assert full_gb > 15  # why the Colab preset uses LoRA

# %% [markdown]
# **2. An offline run from the command line.** Run `python -m rlhf_nb.run` with `--method dpo`
# on the stand-ins for 4 steps and read the held-out accuracy and margin of its history. (On a
# GPU, the same command with `--preset pythia-1b-tldr` trains DPO on TL;DR's preference pairs.)

# %% tags=["hide-input"]
# Solution 2: the runner writes the book's history format; DPO adds the held-out pair metrics.
out_dpo = Path(tempfile.mkdtemp(prefix="runner-demo-dpo-"))
cmd_dpo = [sys.executable, "-m", "rlhf_nb.run", "--preset", "standin", "--method", "dpo",
           "--steps", "4", "--batch-size", "4", "--eval-interval", "2", "--no-progress",
           "--device", "cpu", "--out", str(out_dpo)]  # fmt: skip
done = subprocess.run(cmd_dpo, capture_output=True, text=True)
h_dpo = pd.read_csv(out_dpo / "history.csv")
print(h_dpo[["step", "heldout_accuracy", "heldout_margin", "kl_k1"]].round(4).to_string())
assert done.returncode == 0 and h_dpo["step"].tolist() == [0, 2, 4], done.stderr[-2000:]
