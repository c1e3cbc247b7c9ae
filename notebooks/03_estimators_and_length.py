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
# # 03 · KL and entropy estimators, and why an entropy bonus buys length
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rlhf-nb/rlhf-nb/blob/main/notebooks/03_estimators_and_length.ipynb)
#
# Online RLHF never sees KL or entropy: it sees *samples*, and per-sample estimators of them.
# This chapter computes, exactly, how the three standard KL estimators behave as the policy moves
# away from its reference, what gradient each one produces depending on whether it is put in the
# reward or in the loss, and how the two entropy estimators compare. It ends with the length
# effect behind the paper's failure mode: an entropy bonus measured per *sequence* pays for every
# extra token. On the way it checks, on a space of token sequences, what the online loop's
# per-token and length-weighted terms really differentiate — which is not always what their
# names say.

# %% tags=["parameters"]
SMOKE = False  # CI-sized run: seconds instead of minutes
SEED = 0  # seeds Python, NumPy and torch
DEVICE = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
ALPHA = 0.2  # entropy temperature shown first, > 0
TOKEN_COST = 0.15  # reward lost per generated token in the length example, >= 0
N_SAMPLES = 256  # samples per Monte Carlo check, >= 2
VOCAB = 4  # tokens in the toy vocabulary, EOS included, in [3, 6]
MAX_LEN = 5  # longest response in tokens, in [2, 6]
N_PATHS = 128  # random (reference, direction) draws the estimator claims are checked over, >= 8
N_PAIRS = 32  # random (policy, reference) pairs the per-token KL placements are checked over, >= 4

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
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

import rlhf_nb
from rlhf_nb.theory import estimators, exact, lengthnorm, sequences, surrogates
from rlhf_nb.theory.sequences import SequenceSpace
from rlhf_nb.viz import plotting, widgets

ctx = rlhf_nb.setup(seed=SEED, device=DEVICE, smoke=SMOKE)
rlhf_nb.check_range("ALPHA", ALPHA, 0.0, None, low_inclusive=False)
rlhf_nb.check_range("TOKEN_COST", TOKEN_COST, 0.0, None)
rlhf_nb.check_type("N_SAMPLES", N_SAMPLES, int)
rlhf_nb.check_range("N_SAMPLES", N_SAMPLES, 2, None)
rlhf_nb.check_type("VOCAB", VOCAB, int)
rlhf_nb.check_range("VOCAB", VOCAB, 3, 6)
rlhf_nb.check_type("MAX_LEN", MAX_LEN, int)
rlhf_nb.check_range("MAX_LEN", MAX_LEN, 2, 6)
rlhf_nb.check_type("N_PATHS", N_PATHS, int)
rlhf_nb.check_range("N_PATHS", N_PATHS, 8, None)
rlhf_nb.check_int("N_PAIRS", N_PAIRS, 4)
rng = np.random.default_rng(SEED)
print(f"device={ctx.device}  seed={ctx.seed}  smoke={ctx.smoke}")

# %% [markdown]
# ## 1. Three KL estimators, bias and variance computed exactly
#
# For $y\sim\pi$ and $d = \log\pi_{\text{ref}}(y) - \log\pi(y)$ {cite:p}`schulman2020kl`:
#
# $$k_1 = -d,\qquad k_2 = \tfrac12 d^2,\qquad k_3 = (e^{d} - 1) - d.$$
#
# $\mathbb E_\pi[k_1] = \mathrm{KL}(\pi\|\pi_{\text{ref}})$ exactly; $k_3$ adds
# $e^d - 1$, whose mean is $\sum_y \pi_{\text{ref}}(y) - 1 = 0$, so it is unbiased too, and it is
# never negative; $k_2$ is biased, but close to KL when $\pi\approx\pi_{\text{ref}}$. On a
# categorical every mean and variance is a finite sum. We move $\pi_t = \mathrm{softmax}(\theta_0 +
# t\,\delta)$ away from $\pi_{\text{ref}} = \mathrm{softmax}(\theta_0)$:

# %%
n = 10
theta0, direction = rng.normal(0, 1, n), rng.normal(0, 1, n)
ref = exact.maxent_policy(theta0, 1.0)
ts = np.linspace(0.0, 3.0, 7 if SMOKE else 31)
rows = []
for t in ts:
    pi_t = exact.maxent_policy(theta0 + t * direction, 1.0)
    kl = estimators.exact_kl(pi_t, ref)
    for name, (mean, var) in estimators.estimator_moments(pi_t, ref).items():
        rows.append(dict(t=t, estimator=name, kl=kl, bias=mean - kl, std=np.sqrt(var)))
moments = pd.DataFrame(rows)
table = moments[moments.t.isin(ts[:: max(1, len(ts) // 6)])].pivot(index="t", columns="estimator")
print(table[["bias", "std"]].round(4).to_string())
near = moments[moments.t == ts[1]].set_index("estimator")
far = moments[moments.t == ts[-1]].set_index("estimator")
print(
    f"this path: KL = {near.kl.iloc[0]:.4f} nats at t = {ts[1]:g}, {far.kl.iloc[0]:.3f} at t = {ts[-1]:g}"
)

# %% [markdown]
# One random path is one draw: how far it gets by $t = 3$, and how $k_2$ and $k_3$ fare there,
# depend on the draw (and so on `SEED`). To say something general, compare the estimators at
# equal *distance* from the reference, on `N_PATHS` random paths: along a ray
# $\theta_0 + t\delta$ the KL grows monotonically in $t$ (its derivative is
# $t\,\mathrm{Var}_{\pi_t}(\delta) \ge 0$), so each path can be stopped exactly where
# $\mathrm{KL} = 0.01, 0.1, 0.5, 1, 2$ nats, if it gets that far (a ray's KL is bounded by
# $-\log\pi_\text{ref}(\arg\max\delta)$; `paths` counts the paths that do).

# %%
KL_NEAR, KL_FAR = 0.01, 2.0
on_paths = estimators.moments_on_random_paths(
    [KL_NEAR, 0.1, 0.5, 1.0, KL_FAR], n_paths=N_PATHS, size=n, rng=rng
)
paths_summary = estimators.paths_summary(on_paths)
print(f"over {N_PATHS} random paths (n = {n}); medians over the paths that reach each KL, and the"
      " share of them where sd(k3) > sd(k1):")  # fmt: skip
print(paths_summary.round(3).to_string())
near_paths, far_paths = paths_summary.loc[KL_NEAR], paths_summary.loc[KL_FAR]

# %%
for col, title in (("bias", "bias = E[k] − KL (nats)"), ("std", "std of one sample (nats)")):
    plotting.static_figure(
        [
            go.Scatter(x=g.kl, y=g[col], name=name, mode="lines+markers")
            for name, g in moments.groupby("estimator")
        ],
        title=f"KL estimators on one random path: {title}",
        xaxis_title="exact KL(π_t ‖ π_ref), nats",
        yaxis_title=title,
    ).show()

# %% [markdown]
# Near the reference $k_3$ is the clear winner — unbiased, non-negative, and with a fraction of
# $k_1$'s spread. Far from it the picture flips: $k_3$ contains the ratio
# $\pi_{\text{ref}}/\pi$, which is huge on responses the policy has abandoned, and its variance
# overtakes $k_1$'s on most paths, while $k_2$'s bias, a small fraction of the KL near the
# reference, becomes a sizeable fraction of the KL itself (the table over random paths above;
# the single path's figures are one draw of it). An online run whose KL keeps growing
# (chapter 05) is measured by an estimator that degrades as it grows.
#
# A Monte Carlo check at the far end of the path ($t$ = `ts[-1]`): the batch mean of `N_SAMPLES`
# samples lands within a few standard errors of the exact mean — and $k_2$'s exact mean is *not*
# the KL.

# %%
pi_far = exact.maxent_policy(theta0 + ts[-1] * direction, 1.0)
ys = rng.choice(n, size=N_SAMPLES, p=pi_far)
lp, lref = np.log(pi_far[ys]), np.log(ref[ys])
exact_far = estimators.estimator_moments(pi_far, ref)
z_scores = {}
for name, k in (("k1", estimators.k1), ("k2", estimators.k2), ("k3", estimators.k3)):
    mean, var = exact_far[name]
    z_scores[name] = (k(lp, lref).mean() - mean) / np.sqrt(var / N_SAMPLES)
    print(
        f"{name}: batch mean {k(lp, lref).mean():.4f}  exact mean {mean:.4f}  z = {z_scores[name]:+.2f}"
    )
print(f"t = {ts[-1]:g}: exact KL = {estimators.exact_kl(pi_far, ref):.4f} nats")

# %% [markdown]
# ## 2. In the reward or in the loss? The gradient each placement produces
#
# The estimator's value is only half the story; what matters for training is its gradient. With
# samples held fixed (no gradient through the sampling):
#
# * **in the reward** (PPO-style, $r - \beta k$): $k$ reaches $\theta$ through REINFORCE,
#   $\mathbb E_\pi[k\,\nabla\log\pi]$;
# * **in the loss** (GRPO-style, $+\beta k$ differentiated directly): $\mathbb E_\pi[\nabla k]$.
#
# On a categorical both are exact sums. The target is
# $\nabla_\theta\mathrm{KL}(\pi_\theta\|\pi_{\text{ref}}) = \pi\odot(\log\pi - \log\pi_{\text{ref}} -
# \mathrm{KL})$. Two placements are exact ($k_1$ in the reward, $k_2$ in the loss); $k_1$ in the loss
# has zero expected gradient ($\mathbb E_\pi[\nabla\log\pi] = 0$); and $k_3$ in the loss gives the
# gradient of the *forward* KL, $\mathrm{KL}(\pi_{\text{ref}}\|\pi)$. These are **one-step**
# results: a categorical has one state. Section 2b takes them to sequences, where only the first
# survives.

# %%
theta = torch.tensor(theta0 + direction, dtype=torch.float64)
ref_logp = torch.tensor(np.log(ref))
true_grad = estimators.true_kl_gradient(theta, ref_logp)
forward_grad = estimators.true_kl_gradient(theta, ref_logp, "forward")
grad_rows = []
for name in estimators.ESTIMATORS:
    for placement in estimators.PLACEMENTS:
        g = estimators.kl_gradient(theta, ref_logp, name, placement)
        grad_rows.append(
            dict(
                estimator=name,
                placement=placement,
                rel_error=((g - true_grad).norm() / true_grad.norm()).item(),
                cosine=torch.nn.functional.cosine_similarity(g, true_grad, dim=0).item(),
                rel_error_vs_forward_kl=((g - forward_grad).norm() / forward_grad.norm()).item(),
            )
        )
grads = pd.DataFrame(grad_rows).set_index(["estimator", "placement"])
print(grads.round(6).to_string())

# %% [markdown]
# ## 2b. On sequences: per token, with the visited states held fixed
#
# A response is drawn token by token. GRPO and this book's `kl_loss` put a per-token estimator
# $k_t$ of $\log\pi(y_t\mid s_t) - \log\pi_\text{ref}(y_t\mid s_t)$ in the loss, summed (or averaged)
# over the response and differentiated with the sampled states $s_t = y_{<t}$ held fixed. By the
# chain rule the sequence KL is $\sum_s \rho(s)\,\mathrm{KL}_s$, with $\rho(s)$ the probability of
# reaching the prefix $s$ and $\mathrm{KL}_s$ the KL of the next-token distributions there, so
#
# $$\nabla\mathrm{KL}(\pi\|\pi_\text{ref}) = \underbrace{\sum_s \rho(s)\,\nabla\mathrm{KL}_s}_{\text{state-frozen}}
#   \;+\; \sum_s \nabla\rho(s)\,\mathrm{KL}_s .$$
#
# A per-token loss term sees only the first part: $k_2$ in the loss gives exactly the
# state-frozen reverse-KL gradient, $k_3$ in the loss the state-frozen *forward* KL,
# $\sum_s\rho(s)\nabla\mathrm{KL}(\pi_\text{ref}(\cdot\mid s)\,\|\,\pi(\cdot\mid s))$, and $k_1$ zero. Only
# $k_1$ summed over the response and paid in the reward — what `rlhf_nb.methods.rloo` does for
# `kl` — is the sequence gradient {cite:p}`tang2025pitfalls`. Exact sums on a $V = 4$, $L = 4$
# space (`rlhf_nb.theory.surrogates`; "reward" sums $k_t$ over the response and pays it as a
# detached reward):

# %%
seq_space = SequenceSpace(4, 4)
ref_seq = seq_space.random_logits(rng)
pi_seq = ref_seq + seq_space.random_logits(rng)
placements = surrogates.kl_placements_table(seq_space, pi_seq, ref_seq)
print(f"{seq_space}; KL(π‖π_ref) = {seq_space.kl(pi_seq, ref_seq):.3f} nats per sequence")
print(placements.round(4).to_string())
k2_seq = placements.loc[("k2", "loss")]
print(f"k2 in the loss: cosine {k2_seq.cosine_sequence:.3f} with ∇KL(π‖π_ref), relative error "
      f"{k2_seq.rel_error_sequence:.3f}; k3 in the loss: cosine "
      f"{placements.loc[('k3', 'loss'), 'cosine_sequence']:.3f}")  # fmt: skip

# %% [markdown]
# How far the state-frozen gradient is from the sequence one depends on how far $\pi$ is from the
# reference: the missing term weighs each state's $\mathrm{KL}_s$, which vanishes at
# $\pi = \pi_\text{ref}$. Over `N_PAIRS` random pairs, $\pi$'s logits the reference's plus noise of
# scale 0.3 (near) or 2 (far):

# %%
pair_cos = {scale: surrogates.placement_cosines(seq_space, n_pairs=N_PAIRS, scale=scale, rng=rng)
            for scale in (0.3, 2.0)}  # fmt: skip
for scale, d in pair_cos.items():
    print(f"noise {scale:g} (median KL {d.kl.median():.2f} nats): cosine with ∇KL(π‖π_ref) of "
          f"k2-in-loss median {d.cos_k2_loss.median():.3f}, min {d.cos_k2_loss.min():.3f}; "
          f"k3-in-loss median {d.cos_k3_loss.median():.3f}, min {d.cos_k3_loss.min():.3f}; "
          f"negative on {(d.cos_k2_loss < 0).mean():.0%} / {(d.cos_k3_loss < 0).mean():.0%} of pairs")  # fmt: skip
near_cos, far_cos = pair_cos[0.3], pair_cos[2.0]

# %% [markdown]
# Near the reference a per-token loss term is a fair stand-in for the sequence KL's gradient;
# far from it — where an unanchored run ends up — it can point elsewhere (the printout gives the
# smallest cosine, and how many pairs point *away* from the reference). The book's KL-regularised runs pay $k_1$ in the reward, so this is
# a caveat for `kl_loss` (and GRPO's KL term), whose coefficient is a loss weight per nat and
# token, not InstructGPT's in-reward β.
#
# ## 2c. A bonus weighted per response: what the `entropy_norm` remedy ascends
#
# The same care applies to a bonus paid in the reward. The loop pays a detached shaped reward
# $R(y)$, and REINFORCE ascends $\mathbb E_\pi[R\,\nabla\log\pi]$. Since
# $\nabla\mathbb E_\pi[f] = \mathbb E_\pi[f\,\nabla\log\pi] + \mathbb E_\pi[\nabla f]$, that is the gradient of
# $\mathbb E_\pi[R]$ only when $\mathbb E_\pi[\nabla f] = 0$. For the MaxEnt bonus $-\alpha\log\pi$ it is
# ($\alpha$ is a constant and $\mathbb E_\pi[\nabla\log\pi] = 0$). For the token-averaged bonus of the
# `entropy_norm` remedy, $-(\alpha/|y|)\log\pi(y)$, it is not: $\mathbb E_\pi[(\alpha/|y|)\nabla\log\pi]
# \neq 0$ when lengths differ, and the loop ascends
#
# $$J'(\pi) = \mathbb E_\pi\Big[r(y) + \frac{\alpha}{|y|}\big(1 - \log\pi(y)\big)\Big],$$
#
# a length-normalised entropy bonus **plus a shortness bonus** $\alpha/|y|$ — SimPO's exact
# objective (chapter 02). So the remedy is SimPO's objective, optimised online; the book keeps
# the code as it is (its cached runs stay valid) and says so. Exact gradients on the same space,
# for the bonus alone and with a random reward:

# %%
norm_err = {}
for label, r_seq in (("bonus alone", np.zeros(seq_space.size)),
                     ("with r ~ N(0, 1)", rng.normal(0, 1, seq_space.size))):  # fmt: skip
    g = surrogates.entropy_norm_gradients(seq_space, pi_seq, r_seq, ALPHA)
    norm_err[label] = {name: surrogates.relative_error(g["loop"], g[name])
                       for name in ("documented", "j_prime")}  # fmt: skip
    print(f"{label:>16}: the loop's expected update vs ∇E[r − (α/|y|) log π]: relative error "
          f"{norm_err[label]['documented']:.3f}; vs ∇J′: {norm_err[label]['j_prime']:.1e}")  # fmt: skip

# %% [markdown]
# ## 3. Entropy estimators over sequences
#
# Chapter 04 onwards measures entropy on sampled responses. Two unbiased estimators of the
# sequence entropy $H(\pi) = -\mathbb E_\pi[\log\pi(y)]$:
#
# * the sampled surprisal $-\log\pi(y)$;
# * the sum of *exact* per-step entropies along the sampled path,
#   $\sum_t H\big(\pi(\cdot\mid y_{<t})\big)$ — unbiased by the chain rule, and usually the
#   lower-variance one, since each step's draw is averaged out. Usually, not always: each term
#   conditions on a different prefix, and the path itself stays random (a counterexample follows).
#
# On the enumerable space (chapter 02) both expectations and variances are exact sums:

# %%
space = SequenceSpace(VOCAB, MAX_LEN)
logits = space.random_logits(rng, scale=1.5)
p_seq = space.probs(logits)
H = space.entropy(logits)
surprisal = estimators.sequence_entropy_sample(space.log_probs(logits))
token_sum = estimators.token_entropy_sum(space.step_logits(logits), space.mask)
ent_stats = pd.DataFrame(
    {
        "mean": [p_seq @ surprisal, p_seq @ token_sum],
        "bias": [p_seq @ surprisal - H, p_seq @ token_sum - H],
        "std": [np.sqrt(p_seq @ (surprisal - H) ** 2), np.sqrt(p_seq @ (token_sum - H) ** 2)],
    },
    index=["−log π(y)", "Σ_t H(π(·|y<t))"],
)
print(f"{space}; exact H(π) = {H:.4f} nats per sequence")
print(ent_stats.round(6).to_string())
draws = space.sample(logits, N_SAMPLES, rng)
plotting.static_figure(
    [
        go.Histogram(x=surprisal[draws], name="−log π(y)", opacity=0.6),
        go.Histogram(x=token_sum[draws], name="Σ_t H(π(·|y<t))", opacity=0.6),
    ],
    title=f"{N_SAMPLES} sampled entropy estimates (exact H = {H:.3f} nats)",
    xaxis_title="estimate, nats per sequence",
    yaxis_title="count",
    barmode="overlay",
).show()

# %% [markdown]
# Not a theorem. At the uniform law over responses — the $\alpha\to\infty$ end of the MaxEnt
# family — every response has the same surprisal, $-\log\pi(y) = \log|\mathcal Y|$, so the
# surprisal has *zero* variance, while the per-step sum still depends on the path (a response that
# stops early has summed fewer steps):

# %%
uniform_seq = space.logits_from_probs(np.full(space.size, 1.0 / space.size))
p_uni, H_uni = space.probs(uniform_seq), space.entropy(uniform_seq)
sd_uniform = {
    "−log π(y)": np.sqrt(p_uni @ (estimators.sequence_entropy_sample(space.log_probs(uniform_seq)) - H_uni) ** 2),
    "Σ_t H(π(·|y<t))": np.sqrt(p_uni @ (estimators.token_entropy_sum(space.step_logits(uniform_seq), space.mask) - H_uni) ** 2),
}  # fmt: skip
print(f"uniform over the {space.size} responses (H = {H_uni:.4f} nats): std of −log π(y) "
      f"{sd_uniform['−log π(y)']:.1e}, of Σ_t H(π(·|y<t)) {sd_uniform['Σ_t H(π(·|y<t))']:.4f} nats")  # fmt: skip

# %% [markdown]
# ## 4. Why an entropy bonus buys length
#
# Let $U(y) = V^{-|y|}$ be the *token-uniform* policy (every token, EOS included, drawn uniformly;
# chapter 02's space is built so that this is a distribution). Then
# $\mathrm{KL}(\pi\|U) = -H(\pi) + \log V\;\mathbb E_\pi|y|$, i.e.
#
# $$\alpha H(\pi) = -\alpha\,\mathrm{KL}(\pi\|U) + \alpha\log V\cdot\mathbb E_\pi|y|.$$
#
# Read one way, a sequence-level entropy bonus is a KL penalty towards the token-uniform policy
# plus $\alpha\log V$ per expected token (reward units per token: $\alpha$ is in reward units per
# nat, $\log V$ in nats per token). Read the other way, a KL penalty of weight $\beta$ towards $U$ —
# what the `ref_mix` anchor with $\lambda = 0$ pays, token by token — is MaxEnt at $\alpha = \beta$
# **plus a length cost of $\beta\log V$ per token**. Neither is MaxEnt's own anchor: that is the
# uniform law over *responses* (chapter 01), which over variable lengths is a different
# distribution. What the bonus actually pays for one more token is that token's sampled surprisal,
# $\alpha\,(-\log\pi(y_t\mid y_{<t}))$, whose mean at that state is $\alpha H(\pi(\cdot\mid y_{<t}))$ —
# at most $\alpha\log V$, reached only where the next token is uniform. In MaxEnt RL with variable
# horizons this is the familiar survival bonus: a per-step reward that is positive on average makes
# not stopping pay. A reward model that does not penalise length strongly enough will be outbid;
# length bias is the best-documented failure of learned reward models and of DPO alike
# {cite:p}`singhal2023long,park2024disentangling`. We check the identity, then solve the MaxEnt problem exactly over all
# sequences for a reward that prefers a *short* correct answer: $r(y) = 1$ if the first token is
# the right one (token 1), minus `TOKEN_COST` per token. The best response is "1, EOS" (2 tokens).
# We compare two bonuses: sequence-level $\alpha H(\pi)$ and the token-averaged
# $-\mathbb E_\pi[\frac{\alpha}{|y|}\log\pi(y)]$ (chapter 02's length-normalised objective, solved
# exactly there). The two $\alpha$s are in different units (per nat, per nat/token), so the
# token-averaged bonus is also shown at **matched magnitude**, $\alpha' = \alpha\,\mathbb E_U|y|$: the
# two bonuses are then equal at the token-uniform policy $U$, where $-\log U(y)/|y| = \log V$ for
# every response.

# %%
identity_gap = abs(
    ALPHA * space.entropy(logits)
    - (
        -ALPHA * space.kl(logits, space.uniform_logits())
        + ALPHA * np.log(VOCAB) * space.expected_length(logits)
    )
)
print(f"|αH − (−α KL(π‖U) + α log V · E|y|)| = {identity_gap:.1e}")
per_token_bonus = ALPHA * space.entropy(logits) / space.expected_length(logits)
print(f"at this random policy the bonus pays α·H/E|y| = {per_token_bonus:.3f} per token on average"
      f" (the mean of α·H over visited states), against α·log V = {ALPHA * np.log(VOCAB):.3f}")  # fmt: skip

first = np.array([y[0] for y in space.sequences])
starts = first == 1  # responses whose first token is the right answer
length_reward = np.where(first == 1, 1.0, 0.0) - TOKEN_COST * space.lengths
answer = space.prefixes.index((1,))  # the state after the correct first token
alphas = np.geomspace(0.01, 5.0, 9 if SMOKE else 41)
matched = space.expected_length(space.uniform_logits())  # α' = α·E_U|y|: equal bonuses at U


def optima(alpha):
    """Exact optima of the three objectives over all sequences, as probability vectors (S,)."""
    seq_level = exact.maxent_policy(length_reward, alpha)
    tok_avg, _ = lengthnorm.length_normalised_optimum(length_reward, space.lengths, alpha)
    tok_matched, _ = lengthnorm.length_normalised_optimum(
        length_reward, space.lengths, alpha * matched
    )
    return seq_level, tok_avg, tok_matched


def eos_after_answer(p):
    """π(EOS | the correct first token), read off the optimum as an autoregressive policy."""
    return float(np.exp(space.token_log_probs(space.logits_from_probs(p))[answer, 0]))


BONUSES = ("sequence-level αH", "token-averaged", "token-averaged, matched")
curves = {k: [] for k in BONUSES}
eos = {k: [] for k in BONUSES}
p_first = {k: [] for k in BONUSES}  # P(first token = '1')
for a in alphas:
    for key, p in zip(curves, optima(a), strict=True):
        curves[key].append(p @ space.lengths)
        eos[key].append(eos_after_answer(p))
        p_first[key].append(p[starts].sum())
curves = {k: np.array(v) for k, v in curves.items()}
p_first = {k: np.array(v) for k, v in p_first.items()}
print(f"matched magnitude: α' = α·E_U|y| = {matched:.3f}·α")
for key in curves:
    print(f"{key:>23}: E|y| = {curves[key][0]:.2f} tokens at α = {alphas[0]:.3g}, "
          f"{curves[key][-1]:.2f} at α = {alphas[-1]:.3g}; P(EOS | '1') {eos[key][0]:.3f} → {eos[key][-1]:.3f}; "
          f"P(first = '1') {p_first[key][0]:.3f} → {p_first[key][-1]:.3f}")  # fmt: skip
threshold = sequences.runaway_temperature(TOKEN_COST, VOCAB)  # c / log(V − 1): see below

# %%
plotting.static_figure(
    [go.Scatter(x=alphas, y=v, name=k) for k, v in curves.items()]
    + [go.Scatter(x=alphas, y=v, name=f"P(EOS | '1'), {k}", yaxis="y2", line=dict(dash="dot"))
       for k, v in eos.items()]
    + [go.Scatter(x=alphas, y=v, name=f"P(first = '1'), {k}", yaxis="y2", line=dict(dash="dash"))
       for k, v in p_first.items()]
    + [go.Scatter(x=[threshold] * 2, y=[1, MAX_LEN], mode="lines", name="TOKEN_COST / log(V−1)",
                  line=dict(color="gray", dash="dot"))],
    title="Exact MaxEnt optimum: expected length, P(first token = '1'), P(EOS | '1')",
    xaxis_title="α", xaxis_type="log", yaxis_title="E|y| (tokens)",
    yaxis2=dict(title="probability", overlaying="y", side="right", range=[0, 1.05]),
).show()  # fmt: skip

# %% [markdown]
# The length distribution of each optimum as $\alpha$ moves — live, then as a static-site slider:

# %%
lens = np.arange(1, MAX_LEN + 1)


def length_bars(alpha):
    return [
        go.Bar(x=lens, y=[p[space.lengths == k].sum() for k in lens], name=name)
        for name, p in zip(curves, optima(alpha), strict=True)
    ]


def length_figure(alpha):
    return plotting.static_figure(
        length_bars(alpha),
        title=f"P(|y| = n) under the exact optimum, α = {alpha:.3g}",
        xaxis_title="|y| (tokens, EOS included)",
        yaxis_title="probability",
        yaxis_range=[0, 1.05],
        barmode="group",
    )


box = widgets.live_figure(length_figure, alpha=widgets.log_slider("α", ALPHA, 0.01, 5.0))

# %%
start = int(np.argmin(np.abs(np.log(alphas / ALPHA))))
fig = plotting.slider_figure(
    "α", alphas, length_bars, title="Length distribution of the exact optimum",
    xaxis_title="|y| (tokens)", yaxis_title="probability", yrange=(0, 1.05), active=start,
)  # fmt: skip
fig.update_layout(barmode="group")
fig.show()

# %% [markdown]
# At small $\alpha$ every optimum answers "1, EOS". Why the sequence-level optimum then runs long:
# among the responses that start with "1", there are $V-1$ times as many of length $n+1$ as of
# length $n$, each paying $c$ = `TOKEN_COST` more, so under $\pi^*\propto e^{r/\alpha}$ each
# length carries $(V-1)\,e^{-c/\alpha}$ times the mass of the one before. That factor passes 1 at
# $\alpha = c/\log(V-1)$: below it the length distribution decays from "1, EOS", above it it grows
# towards the length limit (which holds $V$ times more again, since truncated responses need no
# EOS — so the run-away starts a little before the threshold). The bonus acts on the first token
# too, so whether the optimum "still starts with the right answer" is a separate question.
# Computed: the length masses at the threshold (flat below the limit), $\mathbb E|y|$ at half, one
# and two times the threshold, and $P(\text{first token} = 1)$ along the grid:

# %%
at_threshold = exact.maxent_policy(length_reward, threshold)
below_limit = np.array(
    [at_threshold[starts & (space.lengths == k)].sum() for k in range(2, MAX_LEN)]
)
flatness = np.ptp(below_limit) / below_limit.mean() if below_limit.size else 0.0
print(f"TOKEN_COST / log(V−1) = {threshold:.4f}; there P(first = '1', |y| = n) for n = 2..{MAX_LEN - 1}:"
      f" {np.round(below_limit, 4)} (relative spread {flatness:.1e})")  # fmt: skip
around = {f: exact.maxent_policy(length_reward, f * threshold) for f in (0.5, 1.0, 2.0)}
len_around = {f: p @ space.lengths for f, p in around.items()}
p_first_2x = around[2.0][starts].sum()
print(
    f"sequence-level optimum: E|y| = {len_around[0.5]:.2f} tokens at α = threshold/2,"
    f" {len_around[1.0]:.2f} at the threshold, {len_around[2.0]:.2f} at 2 × threshold"
    f" (midway between 2 and MAX_LEN: {(2 + MAX_LEN) / 2:g});"
    f" P(first = '1') = {p_first_2x:.3f} at 2 × threshold"
)
for key, p1 in p_first.items():
    stays = np.logical_and.accumulate(p1 > 0.5)  # P(first = '1') > 0.5 at this α and every lower α
    reach = "on the whole grid" if stays.all() else f"up to α = {alphas[stays][-1]:.3g}"
    print(f"{key:>23}: P(first = '1') > 0.5 {reach}; {p1[-1]:.3f} at α = {alphas[-1]:.3g}")
print(f"as α → ∞ the sequence-level optimum tends to uniform: P(first = '1') → {starts.mean():.3f}")

# %% [markdown]
# So the two effects come apart. Just past the threshold the sequence-level optimum has run to the
# length limit while still starting with "1" almost surely: it answers and then keeps going. At
# larger $\alpha$ the bonus spreads the first token as well, and beyond the $\alpha$ printed above
# the optimum is more likely than not to start with a wrong token. The token-averaged bonus divides
# the surprisal by $|y|$ and buys far less length at the same numerical $\alpha$. At matched
# magnitude the comparison is closer, and not one-sided:

# %%
seq_len_c, mat_len_c = curves[BONUSES[0]], curves[BONUSES[2]]
mat_minus_seq = mat_len_c - seq_len_c
first_gap = p_first["token-averaged, matched"] - p_first["sequence-level αH"]
print(f"matched token-averaged minus sequence-level: E|y| from {mat_minus_seq.max():+.3f} tokens "
      f"(α = {alphas[np.argmax(mat_minus_seq)]:.3g}) to {mat_minus_seq.min():+.3f} (α = "
      f"{alphas[np.argmin(mat_minus_seq)]:.3g}); P(first = '1') from {first_gap.max():+.3f} to "
      f"{first_gap.min():+.3f} (α = {alphas[np.argmin(first_gap)]:.3g})")  # fmt: skip

# %% [markdown]
# At matched magnitude the token-averaged optimum still ends far shorter, but near the cold end
# it starts lengthening no later than the sequence-level one, and it is never kinder to the
# answer: its $P(\text{first} = 1)$ is at or below the sequence-level optimum's all along the grid
# (the printout gives the range). Its advantage is where the length goes as $\alpha$ grows, not a
# better first token.
#
# Nor does either cure remove the attractor in the limit. As $\alpha\to\infty$ the reward drops
# out and each objective tends to a fixed law (`sequences.large_alpha_no_eos_share`): the
# sequence-level bonus to the uniform law over responses, the bonus with a length cost
# $c = \alpha\log V$ per token (chapter 07's `length` remedy) to the token-uniform $U$, the
# token-averaged bonus to $\pi(y)\propto e^{-\lambda|y|}$. Their no-EOS shares, here and at the
# testbed's vocabulary and cap ($V = 84$, $L = 16$):

# %%
limit_shares = {
    (v, cap): {b: sequences.large_alpha_no_eos_share(v, cap, b) for b in sequences.LIMIT_BONUSES}
    for v, cap in ((VOCAB, MAX_LEN), (84, 16))
}  # fmt: skip
print(pd.DataFrame(limit_shares).T.rename_axis(["V", "L"]).round(4).to_string())
testbed_shares = limit_shares[(84, 16)]
print(f"at V = 84, L = 16 the length cost leaves {testbed_shares['length']:.2f} of the limit at the cap "
      f"and the token average {testbed_shares['token_averaged']:.2f}, against "
      f"{testbed_shares['sequence']:.2f} for the plain bonus")  # fmt: skip

# %% [markdown]
# ## Checkpoints
# What you should have seen: $k_1$ and $k_3$ unbiased and $k_2$ biased away from the reference;
# $k_3$'s spread far below $k_1$'s near the reference and above it far away (on most random
# paths); on one step, $k_1$-in-reward and $k_2$-in-loss give the exact KL gradient, $k_1$-in-loss
# zero and $k_3$-in-loss the forward-KL gradient; on sequences only $k_1$ summed in the reward
# stays exact, $k_2$- and $k_3$-in-loss giving the state-frozen gradients — close to the sequence
# gradient near the reference, unreliable far from it; the
# `entropy_norm` update ascending $J'$, not its namesake; both entropy estimators unbiased, the
# per-step sum with lower variance on the random policy but not at the uniform law; the
# token-uniform identity exact; the sequence-level entropy bonus making the optimum long while the
# token-averaged one keeps it shorter, at matched magnitude too at large $\alpha$ though never
# kinder to the first token: long already near `TOKEN_COST`$/\log(V-1)$, with the right first
# token kept only up to a moderate $\alpha$; and no bonus free of the cap in the $\alpha\to\infty$
# limit at $V \gg L$.

# %%
assert moments.query("estimator != 'k2'").bias.abs().max() < 1e-9
assert on_paths.query("estimator != 'k2'").bias.abs().max() < 1e-9
# Over N_PATHS = 128 random paths, measured at SEED 0..19 (n = 10): median |k2 bias|/KL is
# 0.022-0.031 at KL 0.01 and 0.33-0.43 at KL 2; median sd(k3)/sd(k1) at KL 0.01 is ~0.09 (the
# largest single path 0.20-0.47); the share of paths with sd(k3) > sd(k1) at KL 2 is 0.95-1.00.
# Each threshold below sits at least 2x outside that range.
assert near_paths["|k2 bias|/KL"] < 0.1, "k2: small bias near the reference"
assert far_paths["|k2 bias|/KL"] > 0.15, "k2: bias a sizeable fraction of KL far away"
assert near_paths["sd k3/sd k1"] < 0.25, "k3 far less noisy than k1 near the reference"
assert far_paths["share k3 noisier"] > 0.8, "k3 noisier than k1 far away, on most paths"
assert near_paths["paths"] == N_PATHS and far_paths["paths"] >= N_PATHS // 2
assert all(abs(z) < 5 for z in z_scores.values())
assert (
    grads.loc[("k1", "reward"), "rel_error"] < 1e-9
    and grads.loc[("k2", "loss"), "rel_error"] < 1e-9
)
assert grads.loc[("k1", "loss"), "rel_error"] > 1 - 1e-9  # zero gradient: error = |true| / |true|
assert grads.loc[("k3", "loss"), "rel_error_vs_forward_kl"] < 1e-9
# on sequences (exact identities, any draw)
assert placements.loc[("k1", "reward"), "rel_error_sequence"] < 1e-9
assert placements.loc[("k2", "loss"), "rel_error_state_frozen"] < 1e-9
assert placements.loc[("k3", "loss"), "rel_error_state_frozen_forward"] < 1e-9
assert abs(placements.loc[("k1", "loss"), "rel_error_sequence"] - 1) < 1e-9  # zero gradient
# measured on independent draws of this construction: k2-in-loss relative error to ∇KL
# 0.14-1.02 on one pair (12 draws); over 30 repetitions of N_PAIRS = 32 pairs the k2 cosines'
# median is 0.991-0.997 near and 0.82-0.95 far, their minimum 0.77-0.98 near (k3: 0.72-0.96)
# and -0.71 to 0.49 far (the chapter at SEED 0, 1, 2: 0.19-0.26; near min >= 0.94; far min
# -0.66 to 0.38)
assert k2_seq.rel_error_sequence > 0.05, "k2 in the loss is not the sequence KL gradient"
assert near_cos.cos_k2_loss.min() > 0.6 and near_cos.cos_k3_loss.min() > 0.5
assert far_cos.cos_k2_loss.median() < near_cos.cos_k2_loss.median() - 0.02
assert far_cos.cos_k2_loss.min() < near_cos.cos_k2_loss.min() - 0.1, "far away it strays"
# entropy_norm: exact against J′; against its namesake 0.14-1.76 on 30 draws (bonus alone)
assert all(e["j_prime"] < 1e-9 for e in norm_err.values())
assert norm_err["bonus alone"]["documented"] > 0.05
assert ent_stats.bias.abs().max() < 1e-9 and ent_stats["std"].iloc[1] < ent_stats["std"].iloc[0]
assert sd_uniform["−log π(y)"] < 1e-9 < 0.1 < sd_uniform["Σ_t H(π(·|y<t))"], "not a theorem"
assert per_token_bonus < ALPHA * np.log(VOCAB)
assert identity_gap < 1e-9
seq_len, tok_len = curves["sequence-level αH"], curves["token-averaged"]
assert abs(seq_len[0] - 2) < 1e-3 and abs(tok_len[0] - 2) < 1e-3, "cold optimum: '1, EOS'"
assert np.all(np.diff(seq_len) > -1e-9) and seq_len[-1] > MAX_LEN - 0.5
assert np.all(tok_len <= seq_len + 1e-9) and tok_len[-1] < seq_len[-1] - 0.5
# matched magnitude: shorter at the hot end, never kinder to the first token
assert mat_len_c[-1] < seq_len[-1] - 0.5
assert np.all(first_gap < 1e-9), "matched token-averaged bonus: P(first = '1') never higher"
assert mat_minus_seq.max() > 0, "near the cold end the matched bonus lengthens no later"
limits = limit_shares[(84, 16)]
assert limits["sequence"] > limits["token_averaged"] > limits["length"] > 0.8, limits
assert flatness < 1e-9, "at TOKEN_COST / log(V−1) the lengths below the limit carry equal mass"
assert len_around[0.5] < (2 + MAX_LEN) / 2 < len_around[1.0], "run-away length near the threshold"
assert len_around[2.0] > len_around[1.0]
assert p_first_2x > 0.9, "past the threshold: long, and still starting with the right answer"
seq_first = p_first["sequence-level αH"]
assert seq_first[0] > 0.99 and seq_first[-1] < 0.5, "at large α the first token is lost too"
assert len(fig.frames) == len(alphas)
print("checkpoints passed")

# %% [markdown]
# ## Exercises
#
# Each exercise uses the package; its worked solution is the collapsed cell below it (click to
# show it on the site). The solutions run with the chapter, so they cannot rot.
#
# **1. Unbiased, and how noisy.** With `estimators.estimator_moments`, check that k1 and k3 are
# unbiased estimators of $\mathrm{KL}(\pi\,\|\,\pi_\text{ref})$ at every distance in `ts`, that k2
# is not. Which of k1 and k3 is the less noisy near $\pi_\text{ref}$, which far from it, and
# at what distance do their standard deviations cross, on this path and in the median over
# random paths (`estimators.moments_on_random_paths`)?

# %% tags=["hide-input"]
# Solution 1: E[k1] = E[k3] = KL exactly (k3 adds a zero-mean control variate); E[k2] is only a
# second-order approximation of it.
rows_ex = []
for t in ts:
    p = exact.maxent_policy(theta0 + t * direction, 1.0)
    mom, kl = estimators.estimator_moments(p, ref), estimators.exact_kl(p, ref)
    assert abs(mom["k1"][0] - kl) < 1e-10 and abs(mom["k3"][0] - kl) < 1e-10
    ratio = np.sqrt(mom["k1"][1]) / max(np.sqrt(mom["k3"][1]), 1e-300)
    rows_ex.append((t, kl, mom["k2"][0] - kl, ratio))
ex = pd.DataFrame(rows_ex, columns=["t", "KL", "k2 bias", "sd(k1)/sd(k3)"])
print(ex.round(4).to_string(index=False))
# k3 = (ρ − 1) − log ρ cancels k1's first-order noise, so it wins near π_ref; far away its
# ρ − 1 term (ρ = π_ref/π) blows up on responses π rarely samples, and k1 wins.
moved = ex[ex["t"] > 0]
crossed = moved[moved["sd(k1)/sd(k3)"] < 1]
print(f"this path: sd(k1)/sd(k3) = {moved['sd(k1)/sd(k3)'].iloc[0]:.2f} at t = {moved['t'].iloc[0]:g}, "
      f"{moved['sd(k1)/sd(k3)'].iloc[-1]:.2f} at t = {moved['t'].iloc[-1]:g}; "
      + (f"they cross before t = {crossed['t'].min():g} (KL {crossed['KL'].iloc[0]:.2f} nats)"
         if len(crossed) else "they do not cross on this path"))  # fmt: skip
# One path is one draw; the median over random paths at equal KL says where they cross in general.
grid = np.geomspace(0.01, 2.0, 12)
sweep = estimators.moments_on_random_paths(
    grid, n_paths=64, size=n, rng=np.random.default_rng(SEED)
)
median_ratio = estimators.paths_summary(sweep)["sd k3/sd k1"]
cross_kl = median_ratio[median_ratio > 1].index.min()
print(f"median over 64 paths: sd(k3)/sd(k1) = {median_ratio.iloc[0]:.2f} at KL {grid[0]:g}, "
      f"{median_ratio.iloc[-1]:.2f} at KL {grid[-1]:g}; above 1 from KL ≈ {cross_kl:.2f} nats")  # fmt: skip
assert median_ratio.iloc[0] < 1 < median_ratio.iloc[-1]
assert (ex["k2 bias"].abs().iloc[1:] > 1e-6).any()  # k2 is biased away from π = π_ref

# %% [markdown]
# **2. Where the uniform sequence law puts its mass.** With `sequences.truncated_share`, compute
# the share of length-capped (no-EOS) sequences under the uniform policy for the toy vocabulary
# here and for the testbed's ($V = 84$, $L = 16$). Why does an entropy bonus, which pulls towards
# uniform, therefore pull towards the length cap?

# %% tags=["hide-input"]
# Solution 2: there are V−1 choices per non-EOS token, so sequences that never stop outnumber all
# shorter ones combined: the uniform law (the α → ∞ MaxEnt optimum) sits almost entirely at the cap.
share_toy = sequences.truncated_share(VOCAB, MAX_LEN)
share_testbed = sequences.truncated_share(84, 16)
print(f"no-EOS share under uniform: toy V={VOCAB}, L={MAX_LEN}: {share_toy:.3f}; "
      f"testbed V=84, L=16: {share_testbed:.4f}")  # fmt: skip
assert share_testbed > 0.98 and 0 < share_toy < 1
