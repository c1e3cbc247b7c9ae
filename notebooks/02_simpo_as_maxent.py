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
# # 02 · SimPO as MaxEnt RL — and where the derivation breaks
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rlhf-nb/rlhf-nb/blob/main/notebooks/02_simpo_as_maxent.ipynb)
#
# The paper's central observation is that SimPO, a reference-free offline preference loss, is what
# you get by plugging the MaxEnt optimum of chapter 01 into a Bradley–Terry preference model —
# the same move that turns KL-regularised RL into DPO. Its reviewers objected to one step: SimPO
# divides the log-probability by the response length, and then the partition function no longer
# cancels. Here every step is computed on a space small enough to enumerate, so the objection
# becomes a number. The number turns out to depend on a reward offset that preferences cannot
# see, and at one offset it is zero: SimPO without its margin is *exactly* the preference
# likelihood of a MaxEnt objective with temperature $\beta/|y|$ and a shortness bonus
# $\beta/|y|$ (section 6). What preferences then leave undetermined is a length prior.

# %% tags=["parameters"]
SMOKE = False  # CI-sized run: seconds instead of minutes
SEED = 0  # seeds Python, NumPy and torch
DEVICE = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
BETA = 2.0  # SimPO's beta, reward units per (nat/token): it scales an average log-prob, > 0
GAMMA = 0.5  # SimPO target margin gamma (reward units), >= 0
VOCAB = 3  # tokens in the toy vocabulary, EOS included, in [2, 6]
MAX_LEN = 4  # longest response in tokens, in [2, 6]
SUPPORT = 0.5  # share of each length's responses in section 7's partial data set, in (0, 0.9]

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
import plotly.graph_objects as go
import torch
from scipy.optimize import brentq
from scipy.special import expit

import rlhf_nb
from rlhf_nb.theory import exact, lengthnorm, losses
from rlhf_nb.theory.sequences import SequenceSpace
from rlhf_nb.viz import plotting, widgets

ctx = rlhf_nb.setup(seed=SEED, device=DEVICE, smoke=SMOKE)
rlhf_nb.check_range("BETA", BETA, 0.0, None, low_inclusive=False)
rlhf_nb.check_range("GAMMA", GAMMA, 0.0, None)
for name, value in (("VOCAB", VOCAB), ("MAX_LEN", MAX_LEN)):
    rlhf_nb.check_type(name, value, int)
    rlhf_nb.check_range(name, value, 2, 6)
rlhf_nb.check_range("SUPPORT", SUPPORT, 0.0, 0.9, low_inclusive=False)
rng = np.random.default_rng(SEED)
space = SequenceSpace(VOCAB, MAX_LEN)
rewards = rng.normal(0.0, 1.0, size=space.size)  # a reward model's scores r(x, y), one prompt x
print(f"device={ctx.device}  seed={ctx.seed}  smoke={ctx.smoke}")
print(f"{space}; lengths {space.lengths.min()}..{space.lengths.max()} tokens")

# %% [markdown]
# ## 1. Reward reparameterisation
#
# Chapter 01: the MaxEnt optimum is $\pi^*(y\mid x) = e^{r(x,y)/\alpha}/Z(x)$. Take logs and solve
# for the reward:
#
# $$r(x,y) = \alpha\log\pi^*(y\mid x) + \alpha\log Z(x).$$
#
# The reward is the policy's log-probability, scaled, plus a term that depends on the prompt only.

# %%
ALPHA = BETA / MAX_LEN  # a constant temperature for sections 1-3, reward units per nat
pi_star = exact.maxent_policy(rewards, ALPHA)
log_z = space.log_partition(rewards, ALPHA)
reparam_gap = np.max(np.abs(exact.implied_reward(pi_star, ALPHA, log_z) - rewards))
print(f"α = {ALPHA:g}: log Z = {log_z:.4f} nats; max |α log π* + α log Z − r| = {reparam_gap:.1e}")

# %% [markdown]
# ## 2. Substitution into Bradley–Terry and Plackett–Luce: $Z$ cancels
#
# Bradley–Terry says $P(y_w \succ y_l) = \sigma(r(y_w) - r(y_l))$. Substitute the reparameterised
# reward: the $\alpha\log Z(x)$ terms are equal and cancel,
#
# $$P(y_w\succ y_l) = \sigma\big(\alpha\log\pi^*(y_w) - \alpha\log\pi^*(y_l)\big),$$
#
# so a preference dataset can be fitted by the policy alone: no reward model, no reference. The same
# holds for a Plackett–Luce ranking $y_{(1)}\succ\dots\succ y_{(K)}$, whose probability
# $\prod_k e^{r(y_{(k)})}/\sum_{j\ge k}e^{r(y_{(j)})}$ is unchanged when every reward shifts by the
# same $\alpha\log Z$. Checked on every pair of the space and on random rankings:

# %%
w, l = lengthnorm.oriented_pairs(rewards)  # every pair once, y_w the preferred response
policy_score = ALPHA * np.log(pi_star)
bt_gap = np.max(
    np.abs(exact.bt_prob(rewards[w], rewards[l]) - exact.bt_prob(policy_score[w], policy_score[l]))
)
pl_gap = max(
    abs(exact.pl_log_prob(rewards, rk) - exact.pl_log_prob(policy_score, rk))
    for rk in (rng.permutation(space.size)[:5] for _ in range(200))
)
print(f"{w.size} pairs: max |P_BT(r) − P_BT(α log π*)| = {bt_gap:.1e}")
print(f"200 top-5 rankings: max |log P_PL(r) − log P_PL(α log π*)| = {pl_gap:.1e}")

# %% [markdown]
# ## 3. DPO, and the reference-free MaxEnt loss as DPO with a uniform reference
#
# KL-regularised RL has optimum $\pi^*(y) = \pi_{\text{ref}}(y)e^{r(y)/\beta}/Z$, so
# $r = \beta\log\frac{\pi^*}{\pi_{\text{ref}}} + \beta\log Z$, and Bradley–Terry gives DPO's loss
#
# $$\mathcal L_{\text{DPO}} = -\log\sigma\Big(\beta\log\tfrac{\pi(y_w)}{\pi_{\text{ref}}(y_w)}
#    - \beta\log\tfrac{\pi(y_l)}{\pi_{\text{ref}}(y_l)}\Big).$$
#
# The MaxEnt loss of section 2, $-\log\sigma(\alpha\log\pi(y_w) - \alpha\log\pi(y_l))$, is DPO with
# $\pi_{\text{ref}}$ uniform over $\mathcal Y$ (the two reference terms are equal and cancel) — the
# tensor version of chapter 01's "MaxEnt is KL towards uniform". Checked with `rlhf_nb.theory.losses`
# (whose tests check it against TRL's `DPOTrainer`) on the sequence log-probs of a random policy:

# %%
policy_logps = torch.tensor(space.log_probs(space.random_logits(rng)))
uniform_ref = torch.full_like(policy_logps, -np.log(space.size))
maxent_l = losses.maxent_bt_loss(policy_logps[w], policy_logps[l], ALPHA)
dpo_uniform = losses.dpo_loss(
    policy_logps[w], policy_logps[l], uniform_ref[w], uniform_ref[l], ALPHA
)
loss_gap = (maxent_l - dpo_uniform).abs().max().item()
print(f"max |MaxEnt-BT loss − DPO(uniform ref)| over {w.size} pairs = {loss_gap:.1e}")

# %% [markdown]
# ## 4. SimPO: a length-normalised temperature and a target margin
#
# SimPO {cite:p}`meng2024simpo` scores a response by its *average* token log-probability and asks the
# winner to beat the loser by a margin $\gamma$:
#
# $$\mathcal L_{\text{SimPO}} = -\log\sigma\Big(\tfrac{\beta}{|y_w|}\log\pi(y_w)
#    - \tfrac{\beta}{|y_l|}\log\pi(y_l) - \gamma\Big).$$
#
# Read against section 2, this is the MaxEnt loss with a per-response temperature
# $\alpha_y = \beta/|y|$ (reward units per nat: $\beta$ is in reward units per nat/token, as it
# scales a per-token average). Without the averaging and without the margin it is exactly the
# constant-temperature loss of section 3: SimPO's loss evaluated on *summed* log-probs with
# $\gamma = 0$ and $\beta = \alpha$ is the MaxEnt Bradley–Terry loss, pair by pair:

# %%
simpo_summed = losses.simpo_loss(policy_logps[w], policy_logps[l], ALPHA, gamma=0.0)
simpo_summed_gap = (simpo_summed - maxent_l).abs().max().item()
print(
    f"max |SimPO(summed log-probs, γ = 0) − MaxEnt-BT loss| over {w.size} pairs = {simpo_summed_gap:.1e}"
)

# %% [markdown]
# So everything SimPO adds to section 3 is the division by $|y|$ and the margin $\gamma$. The
# paper's derivation substitutes the temperature $\beta/|y|$ into the
# reparameterisation, $r(y) = \frac{\beta}{|y|}\log\pi(y) + \frac{\beta}{|y|}\log Z$. This is exact
# for a definite policy — $\pi_g(y) = e^{|y|\,r(y)/\beta}/Z_g$, the Gibbs policy with temperature
# $\beta/|y|$ — but now the Bradley–Terry difference keeps the partition function:
#
# $$r(y_w) - r(y_l) = \underbrace{\tfrac{\beta}{|y_w|}\log\pi_g(y_w)
#   - \tfrac{\beta}{|y_l|}\log\pi_g(y_l)}_{\text{SimPO logit }(\gamma=0)}
#   + \underbrace{\beta\Big(\tfrac{1}{|y_w|}-\tfrac{1}{|y_l|}\Big)\log Z_g(x)}_{\text{residual}}.$$
#
# ## 5. The reviewers' objection, computed
#
# The residual vanishes only when $|y_w| = |y_l|$ (or $\log Z_g = 0$). On our space, at the rewards
# as drawn:


# %%
def residual_stats(beta):
    """SimPO logit, residual and true reward gap over all preference pairs, at temperature beta."""
    pi_g, log_zg = lengthnorm.substituted_gibbs(rewards, space.lengths, beta)
    logit = lengthnorm.simpo_logit(pi_g, space.lengths, beta, w, l)
    residual = lengthnorm.simpo_residual(rewards, space.lengths, beta, w, l)
    return pi_g, log_zg, logit, residual


pi_g, log_zg, logit, residual = residual_stats(BETA)
gap = rewards[w] - rewards[l]
differ = space.lengths[w] != space.lengths[l]
decomposition_gap = np.max(np.abs(gap - (logit + residual)))
wrong_sign = np.mean(logit <= 0)  # SimPO (gamma = 0) prefers the loser
print(
    f"β = {BETA:g}: log Z_g = {log_zg:.3f} nats;"
    f" max |gap − (logit + residual)| = {decomposition_gap:.1e}"
)
print(
    f"pairs with |y_w| ≠ |y_l|: {differ.sum()} of {w.size}; with equal lengths the residual is "
    f"{np.abs(residual[~differ]).max():.1f}"
)
print(f"pairs whose SimPO logit has the wrong sign at these rewards (γ = 0): {wrong_sign:.1%}")

# %% [markdown]
# How large is the residual? Not a property of SimPO: Bradley–Terry identifies rewards only up to
# an additive constant $c$, and $\log Z_g(c) = \log\sum_y e^{|y|(r(y)+c)/\beta}$ moves with $c$
# (it rises strictly). At one offset $c^*$ it is zero, and the residual with it, for every pair;
# on either side every unequal-length residual grows with $|\log Z_g(c)|$. The median of
# $|\text{residual}|/|\text{SimPO logit}|$ over the unequal-length pairs, as the offset moves
# ($c = 0$ is the rewards as drawn):

# %%
c_zero = brentq(
    lambda c: lengthnorm.substituted_gibbs(rewards + c, space.lengths, BETA)[1], -20.0, 20.0
)


def residual_share(c):
    """median |residual| / |SimPO logit| over the unequal-length pairs, at rewards r + c."""
    res = lengthnorm.simpo_residual(rewards + c, space.lengths, BETA, w, l)[differ]
    return float(np.median(np.abs(res) / np.abs(gap[differ] - res)))  # logit = gap − residual


offsets = c_zero + np.linspace(-3.0, 3.0, 9 if SMOKE else 41)
share_by_offset = np.array([residual_share(c) for c in offsets])
table_shifts = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
share_table = {d: residual_share(c_zero + d) for d in table_shifts}
share_raw = residual_share(0.0)
near = [share_table[d] for d in (-2.0, -1.0, 1.0, 2.0)]
c_one = brentq(
    lambda c: lengthnorm.substituted_gibbs(rewards + c, space.lengths, BETA)[1] - 1.0, -20, 20
)
print(f"c* = {c_zero:.4f} (log Z_g = 0); the rewards as drawn sit at c − c* = {-c_zero:+.2f}")
print("c − c*     " + "".join(f"{d:>8.0f}" for d in table_shifts) + f"{-c_zero:>10.2f} (c = 0)")
print(
    "median     " + "".join(f"{share_table[d]:>8.3f}" for d in table_shifts) + f"{share_raw:>10.3f}"
)
print(f"1–2 reward units from c* the median share is {min(near):.2f}–{max(near):.2f}; "
      f"at c* it is {share_table[0.0]:.1e}")  # fmt: skip
fig_offset = plotting.static_figure(
    [go.Scatter(x=offsets - c_zero, y=share_by_offset, mode="lines+markers", name="median")],
    title="The residual's size is set by an offset Bradley–Terry cannot see",
    xaxis_title="reward offset c − c* (r → r + c)",
    yaxis_title="median |residual| / |SimPO logit|",
)
for x, text in ((0.0, "c* (log Z_g = 0)"), (c_one - c_zero, "log Z_g = 1"), (-c_zero, "c = 0")):
    fig_offset.add_vline(x=x, line_dash="dot", annotation_text=text)
fig_offset.show()

# %% [markdown]
# So "the residual is this large" describes the offset, not SimPO. And the offset does not leave
# the policy alone:
#
# $$\pi_g^{(c)}(y) = \frac{e^{|y|(r(y)+c)/\beta}}{Z_g^{(c)}} \;\propto\; \pi_g(y)\,e^{|y|\,c/\beta},$$
#
# a **length prior** of $c/\beta$ nats per token. Every $c$ gives the same Bradley–Terry
# probabilities and a different $\pi_g$; the residual disappears for the one length prior
# $c^*/\beta$. Which $c$ SimPO's likelihood picks is the question of section 7; what $c^*$ *is*,
# the question of section 6. Computed:

# %%
res_at_zero = lengthnorm.simpo_residual(rewards + c_zero, space.lengths, BETA, w, l)
print(f"max |residual| at c* = {np.abs(res_at_zero).max():.1e}")
pi_g_shifted, _ = lengthnorm.substituted_gibbs(rewards + c_zero, space.lengths, BETA)
prior_spread = np.ptp(np.log(pi_g_shifted) - np.log(pi_g) - space.lengths * c_zero / BETA)
bt_shift_gap = np.max(
    np.abs(
        exact.bt_prob(rewards[w] + c_zero, rewards[l] + c_zero)
        - exact.bt_prob(rewards[w], rewards[l])
    )
)
len_g, len_g_shifted = pi_g @ space.lengths, pi_g_shifted @ space.lengths
print(
    f"log π_g(c*) − log π_g(0) − |y| c*/β is constant in y (spread {prior_spread:.1e}):"
    f" a length prior of c*/β = {c_zero / BETA:+.4f} nats per token"
)
print(f"Bradley–Terry probabilities unchanged by c* (max change {bt_shift_gap:.1e}); "
      f"E|y| under π_g: {len_g:.3f} tokens at c = 0, {len_g_shifted:.3f} at c = c*")  # fmt: skip

# %% [markdown]
# **SimPO's preference probability vs the true one.** Each point is a pair $(y_w, y_l)$: on the
# x-axis the Bradley–Terry probability from the true rewards, on the y-axis what SimPO's logit says
# for the policy $\pi_g$ of the rewards as drawn ($c = 0$), with margin $\gamma$. Points on the
# diagonal would mean the substitution is exact; equal-length pairs (blue) are exact at
# $\gamma = 0$, and at $c = c^*$ every pair would be (section 6).

# %%
bt_true = exact.bt_prob(rewards[w], rewards[l])
length_gap = (space.lengths[w] - space.lengths[l]).astype(float)


def pair_traces(beta, gamma):
    _, _, logit_b, _ = residual_stats(beta)
    simpo_p = expit(logit_b - gamma)
    return [
        go.Scatter(x=bt_true[~differ], y=simpo_p[~differ], mode="markers", name="|y_w| = |y_l|",
                   marker=dict(size=5, color="royalblue")),
        go.Scatter(x=bt_true[differ], y=simpo_p[differ], mode="markers", name="|y_w| ≠ |y_l|",
                   marker=dict(size=5, color=length_gap[differ], colorscale="RdBu", cmid=0,
                               colorbar=dict(title="|y_w|−|y_l|"))),
        go.Scatter(x=[0.5, 1], y=[0.5, 1], mode="lines", name="exact", line=dict(color="gray")),
    ]  # fmt: skip


def pair_figure(beta, gamma):
    return plotting.static_figure(
        pair_traces(beta, gamma),
        title=f"SimPO preference vs true Bradley–Terry (β = {beta:.3g}, γ = {gamma:.3g})",
        xaxis_title="σ(r(y_w) − r(y_l))",
        yaxis_title="σ(SimPO logit − γ) under π_g",
        yaxis_range=[0, 1.02],
    )


# %% [markdown]
# In a live kernel, move $\beta$ and $\gamma$:

# %%
import ipywidgets

box = widgets.live_figure(
    pair_figure,
    beta=widgets.log_slider("β", BETA, 0.25, 8.0),
    gamma=ipywidgets.FloatSlider(value=GAMMA, min=0.0, max=3.0, step=0.1, description="γ",
                                 continuous_update=False),
)  # fmt: skip

# %% [markdown]
# On the static site: one slider for $\beta$ (at $\gamma$ = `GAMMA`), one for $\gamma$ (at
# $\beta$ = `BETA`).

# %%
betas = np.geomspace(0.25, 8.0, 5 if SMOKE else 16)
gammas = np.linspace(0.0, 3.0, 4 if SMOKE else 16)
layout = dict(
    xaxis_title="σ(r(y_w) − r(y_l))", yaxis_title="σ(SimPO logit − γ) under π_g", yrange=(0, 1.02)
)
beta_start = int(np.argmin(np.abs(np.log(betas / BETA))))
fig_beta = plotting.slider_figure(
    "β", betas, lambda b: pair_traces(b, GAMMA), title=f"SimPO vs Bradley–Terry, γ = {GAMMA:g}",
    active=beta_start, **layout,
)  # fmt: skip
fig_beta.show()
fig_gamma = plotting.slider_figure(
    "γ",
    gammas,
    lambda g: pair_traces(BETA, g),
    title=f"SimPO vs Bradley–Terry, β = {BETA:g}",
    **layout,
)
fig_gamma.show()

# %% [markdown]
# ## 6. SimPO's exact objective
#
# The offset $c^*$ is not an accident of the algebra: $\pi_g^{(c^*)}$ is the optimum of an
# objective. Give each response the temperature $\alpha_y = \beta/|y|$ *and* a bonus $\beta/|y|$
# for being short:
#
# $$J'(\pi) = \sum_y \pi(y)\Big[r(y) + \tfrac{\beta}{|y|}\big(1 - \log\pi(y)\big)\Big]
#   \quad\text{s.t.}\quad \sum_y\pi(y) = 1.$$
#
# It is concave in $\pi$ (each $-\pi\log\pi$ is concave and $\beta/|y| > 0$; the bonus is linear).
# The derivative of $\pi\,\frac{\beta}{|y|}(1 - \log\pi)$ is $-\frac{\beta}{|y|}\log\pi$, so the
# Lagrangian is stationary where, for every $y$,
#
# $$r(y) - \tfrac{\beta}{|y|}\log\pi'(y) = \lambda
#   \quad\Longrightarrow\quad \log\pi'(y) = \tfrac{|y|\,(r(y)-\lambda)}{\beta},$$
#
# the family of section 5 at $c = -\lambda$ with $Z_g = 1$: $\pi' = \pi_g^{(c^*)}$. The multiplier
# $\lambda$ is one constant for every response, so it cancels in every pair, *whatever the
# lengths*:
#
# $$r(y_w) - r(y_l) = \tfrac{\beta}{|y_w|}\log\pi'(y_w) - \tfrac{\beta}{|y_l|}\log\pi'(y_l),$$
#
# SimPO's logit at $\gamma = 0$. **SimPO without its margin is exactly the Bradley–Terry
# maximum-likelihood objective of $J'$**: MaxEnt RL with the per-response temperature $\beta/|y|$
# *plus* a shortness bonus $\beta/|y|$. The paper's step drops a "+1": with the temperature
# alone, $\mathbb E_\pi[r - \alpha_y\log\pi]$, stationarity gives
# $r = \alpha_y\log\pi + \alpha_y + \lambda$ (the derivative of $-\pi\log\pi$ is $-\log\pi - 1$).
# A constant $\alpha$ lets $\lambda$ absorb the $+\alpha$; with $\alpha_y = \beta/|y|$ it differs
# between lengths and survives in Bradley–Terry as the length offset of section 8. The bonus
# $\mathbb E_\pi[\beta/|y|]$ pays it back.
#
# Checked on the unequal-length pairs: SimPO's loss (`losses.simpo_loss`, tested against TRL's
# CPO trainer) at $\pi'$ (`lengthnorm.simpo_optimum`) against the Bradley–Terry loss of the
# rewards; $\pi'$ against $\pi_g^{(c^*)}$ (two independent roots); $J'$ at $\pi'$ against random
# policies. `lengthnorm.simpo_maxent_check` adds the two readings that do *not* reproduce SimPO:
# the temperature without the bonus, and one temperature α for all responses (MaxEnt-BT's loss at
# $\pi'$, at the best α of a 1-D search):

# %%
pi_j, lam_j = lengthnorm.simpo_optimum(rewards, space.lengths, BETA)
avg_j = torch.tensor(np.log(pi_j) / space.lengths)  # SimPO's average log-probs, nats per token
simpo_at_j = losses.simpo_loss(avg_j[w], avg_j[l], BETA).numpy()
bt_loss = -np.log(exact.bt_prob(rewards[w], rewards[l]))  # the Bradley–Terry loss of r, nats
jprime_gap = np.max(np.abs(simpo_at_j - bt_loss)[differ])
jprime_vs_gibbs = np.max(np.abs(np.log(pi_j) - np.log(pi_g_shifted)))
stationarity_j = np.ptp(rewards - BETA / space.lengths * np.log(pi_j))
jp_opt = lengthnorm.simpo_objective(pi_j, rewards, space.lengths, BETA)
jp_rand = max(
    lengthnorm.simpo_objective(q, rewards, space.lengths, BETA)
    for q in rng.dirichlet(np.full(space.size, 0.5), size=200 if SMOKE else 2000)
)
check = lengthnorm.simpo_maxent_check(rewards, space.lengths, BETA, GAMMA)
print(
    f"λ = {lam_j:.6f}, −c* = {-c_zero:.6f}; max |log π′ − log π_g(c*)| = {jprime_vs_gibbs:.1e};"
    f" spread of r − (β/|y|) log π′ = {stationarity_j:.1e}"
)
print(f"J′ at π′ {jp_opt:.4f} vs best random policy {jp_rand:.4f}")
print(
    f"max |SimPO loss (γ = 0) at π′ − Bradley–Terry loss of r| over {differ.sum()} "
    f"unequal-length pairs = {jprime_gap:.1e} nats"
)
print(
    f"without the shortness bonus (at argmax E_π[r − (β/|y|) log π]): up to "
    f"{check.no_bonus_gap:.3f} nats"
)
print(f"one temperature for all responses: the best, α = {check.best_alpha:.4f}, still misses "
      f"SimPO's loss at π′ by up to {check.constant_alpha_gap:.3f} nats")  # fmt: skip

# %% [markdown]
# ## 7. What preferences identify: a length prior
#
# Section 5 left the offset free as far as Bradley–Terry is concerned. What pins it is the
# normalisation: $\pi$ is a probability over the whole space, and of the family $\pi_g^{(c)}$
# only $c^*$ makes SimPO's logit exact on every pair *and* sums to one. So with preferences on
# every pair, SimPO's likelihood selects $c^*$, and with it $J'$'s optimum. Fitting SimPO
# (γ = 0) by maximum likelihood to the Bradley–Terry preferences of all pairs, from a random
# start (`lengthnorm.fit_simpo`: L-BFGS over the logits of a softmax on the whole space):

# %%
p_all = exact.bt_prob(rewards[w], rewards[l])  # P(y_w wins), the labels' expectation
fit_full = lengthnorm.fit_simpo(space.lengths, BETA, w, l, p_all, rng.normal(size=space.size))
full_fit_gap = np.max(np.abs(fit_full - np.log(pi_j)))
print(f"all {w.size} pairs: max |log π_fit − log π_g(c*)| = {full_fit_gap:.1e} nats")

# %% [markdown]
# Real preference data cover a sliver of the response space. On a support $S$ the likelihood
# sees $\pi$ only there: every policy with $\frac{\beta}{|y|}\log\pi(y) = r(y) + c$ on $S$ has
# the same loss, for any $c$ up to the $c_{\max}$ at which $S$ takes all the mass; the rest of
# the mass lies off the support, where no pair looks. Within the support these fits differ by
# the length prior $c/\beta$ nats per token: they disagree on how long and short responses *that
# the data contain* compare. A constant temperature leaves the same freedom,
# $\alpha\log\pi(y) = r(y) + c$, but there $c$ shifts every $\log\pi(y)$ by the same $c/\alpha$:
# its fits differ in the mass they put on $S$, never in $\pi(y \mid S)$. Length is the direction
# preference optimisation is known to drift in: much of RLHF's reward gain is longer answers
# {cite:p}`singhal2023long`, and DPO lengthens its answers beyond the data's, which R-DPO counters
# with an explicit length term in its logit {cite:p}`park2024disentangling`.
#
# Computed on a data set that holds a random `SUPPORT` share of each length's responses and every
# pair among them (`lengthnorm.stratified_support`), with two fits of each kind
# (`lengthnorm.support_fit`): all mass on $S$ ($c_{\max}$), and the full-space optimum on $S$
# ($\pi_g^{(c^*)}$ for SimPO, $\pi^*_\alpha$ at α = `ALPHA` for MaxEnt-BT); and a SimPO fit by
# L-BFGS from a random start, which lands at some $c \le c_{\max}$ (printed):

# %%
support = lengthnorm.stratified_support(space.lengths, SUPPORT, rng)
in_s = np.isin(w, support) & np.isin(l, support)
ws, ls, ps = w[in_s], l[in_s], p_all[in_s]
simpo_t, maxent_t = BETA / space.lengths, np.full(space.size, ALPHA)  # temperatures α_y
simpo_fits = [lengthnorm.support_fit(rewards, simpo_t, support, c) for c in (None, c_zero)]
maxent_fits = [
    lengthnorm.support_fit(rewards, maxent_t, support, c) for c in (None, -ALPHA * log_z)
]
lbfgs_fit = lengthnorm.fit_simpo(space.lengths, BETA, ws, ls, ps, rng.normal(size=space.size))
simpo_losses = [
    lengthnorm.pair_cross_entropy(simpo_t * lp, ws, ls, ps)
    for lp in (simpo_fits[0][0], simpo_fits[1][0], lbfgs_fit)
]
maxent_losses = [lengthnorm.pair_cross_entropy(maxent_t * lp, ws, ls, ps) for lp, _ in maxent_fits]
c_lbfgs = simpo_t[support] * lbfgs_fit[support] - rewards[support]  # one c on S at a minimiser
c_max = simpo_fits[0][1]
simpo_cond_gap = lengthnorm.conditional_gap(simpo_fits[0][0], simpo_fits[1][0], support)
maxent_cond_gap = lengthnorm.conditional_gap(maxent_fits[0][0], maxent_fits[1][0], support)
print(
    f"data: {support.size} of {space.size} responses (lengths "
    f"{', '.join(map(str, np.unique(space.lengths[support])))}), {ws.size} pairs; "
    f"π_g(c*) puts {pi_j[support].sum():.3f} of its mass on them"
)
print(
    f"SimPO fits at c_max = {c_max:.4f} and c* = {c_zero:.4f}: loss {simpo_losses[0]:.12f} and "
    f"{simpo_losses[1]:.12f} nats; L-BFGS fit {simpo_losses[2]:.12f}, at c = "
    f"{c_lbfgs.mean():.4f} (spread over S {np.ptp(c_lbfgs):.0e})"
)
print(
    f"  within the support they differ by up to {simpo_cond_gap:.3f} nats (max |Δ log π(y|S)|):"
    f" a length prior (c_max − c*)/β = {(c_max - c_zero) / BETA:.3f} nats per token"
)
print(f"MaxEnt-BT fits (α = {ALPHA:g}): losses differ by "
      f"{abs(maxent_losses[0] - maxent_losses[1]):.1e}; within the support by "
      f"{maxent_cond_gap:.1e} nats")  # fmt: skip

# %% [markdown]
# ## 8. The same family at $\log Z_g = 1$: the length-normalised entropy objective
#
# Drop section 6's bonus and put only the length-normalised temperature into the objective (the
# variant an earlier version of this chapter derived as "the cancellation holds"):
#
# $$\max_\pi\; \sum_y \pi(y)\Big[r(y) - \tfrac{\beta}{|y|}\log\pi(y)\Big]
#   \quad\text{s.t.}\quad \sum_y\pi(y) = 1.$$
#
# The objective is concave in $\pi$ (each term $-\pi\log\pi$ is concave and $\beta/|y|>0$).
# Setting the derivative of the Lagrangian to zero gives, for every $y$,
#
# $$r(y) - \tfrac{\beta}{|y|}\big(\log\pi(y) + 1\big) = \lambda
#   \quad\Longrightarrow\quad \log\pi(y) = \tfrac{|y|\,(r(y)-\lambda)}{\beta} - 1,$$
#
# with one multiplier $\lambda$, fixed by $\sum_y\pi(y)=1$ (a 1-D root: the sum falls monotonically
# in $\lambda$). Because $\lambda$ is the *same* for every response, it cancels in the difference:
#
# $$r(y_w) - r(y_l) = \tfrac{\beta}{|y_w|}\log\pi(y_w) - \tfrac{\beta}{|y_l|}\log\pi(y_l)
#   + \beta\Big(\tfrac{1}{|y_w|} - \tfrac{1}{|y_l|}\Big).$$
#
# The optimum is the family of section 5 once more: $\pi_g^{(c)}$ at $c = -\lambda$, where
# $\log Z_g = 1$ rather than 0. Its length offset $\beta(1/|y_w| - 1/|y_l|)$ is section 5's
# residual at $\log Z_g = 1$ (marked in the figure there), and adding the bonus
# $\mathbb E_\pi[\beta/|y|]$ moves the optimum to $\log Z_g = 0$, where the offset vanishes: one
# family, read at two offsets, and only section 6's reading is SimPO.
#
# Read as SimPO's logit, the constant margin $-\gamma$ is replaced by the *length offset*
# (reward units): **negative when the winner is longer**, positive when it is shorter, zero for
# equal lengths. SimPO's margin enters as $-\gamma \le 0$, so a target margin $\gamma \ge 0$
# mimics the offset only on pairs whose winner is at least as long as the loser, and exactly
# only where $\gamma = \beta(1/|y_l| - 1/|y_w|)$, one value per pair of lengths; where the
# winner is shorter, no $\gamma \ge 0$ has the offset's sign.

# %%
pi_ln, lam = lengthnorm.length_normalised_optimum(rewards, space.lengths, BETA)
stationarity = np.ptp(rewards - BETA / space.lengths * (np.log(pi_ln) + 1.0))
identity_gap = np.max(
    np.abs(lengthnorm.length_offset_logit(pi_ln, space.lengths, BETA, w, l) - gap)
)
j_opt = lengthnorm.length_normalised_objective(pi_ln, rewards, space.lengths, BETA)
j_rand = max(
    lengthnorm.length_normalised_objective(q, rewards, space.lengths, BETA)
    for q in rng.dirichlet(np.full(space.size, 0.5), size=200 if SMOKE else 2000)
)
pi_g_one, log_zg_one = lengthnorm.substituted_gibbs(rewards - lam, space.lengths, BETA)
family_gap = np.max(np.abs(np.log(pi_ln) - np.log(pi_g_one)))
offset = BETA * (1.0 / space.lengths[w] - 1.0 / space.lengths[l])
print(
    f"λ = {lam:.6f}; Σπ − 1 = {pi_ln.sum() - 1:.1e};"
    f" spread of r − (β/|y|)(log π + 1) = {stationarity:.1e}"
)
print(f"objective at the optimum {j_opt:.4f} vs best random policy {j_rand:.4f}")
print(f"max |length-offset logit − reward gap| over {w.size} pairs = {identity_gap:.1e}")
print(f"at c = −λ: log Z_g = {log_zg_one:.12f}, max |log π − log π_g(−λ)| = {family_gap:.1e}")
print(
    f"the offset's range over pairs: {offset.min():+.3f} .. {offset.max():+.3f} reward units "
    f"(SimPO uses one constant −γ = {-GAMMA:+.3f})"
)

# %% [markdown]
# The sign of the offset, pair by pair, and the margin $\gamma$ each pair would need:

# %%
len_w, len_l = space.lengths[w], space.lengths[l]
by_winner = {"longer": len_w > len_l, "shorter": len_w < len_l, "equal": len_w == len_l}
for name, m in by_winner.items():
    print(
        f"winner {name:>7}: {m.sum():3d} pairs, offset {offset[m].min():+.3f} .. {offset[m].max():+.3f}"
    )
gamma_needed = np.unique(np.round(-offset[by_winner["longer"]], 12))
print(
    f"winner longer: γ = −offset ≥ 0 mimics it with {gamma_needed.size} different values"
    f" ({', '.join(f'{g:.3f}' for g in gamma_needed)}); winner shorter: no γ ≥ 0 does"
)

# %%
lens = np.arange(1, MAX_LEN + 1)
plotting.static_figure(
    [go.Heatmap(x=lens, y=lens, z=BETA * (1.0 / lens[None, :] - 1.0 / lens[:, None]),
                colorscale="RdBu", zmid=0, colorbar=dict(title="offset"))],
    title=f"The length offset β(1/|y_w| − 1/|y_l|) that replaces −γ (β = {BETA:g})",
    xaxis_title="|y_w| (tokens)", yaxis_title="|y_l| (tokens)",
).show()  # fmt: skip

# %% [markdown]
# **And γ is no offset of a probability model.** The length offset changes sign when the pair
# is swapped, so the two orders get $\sigma(x)$ and $\sigma(-x)$, which sum to one: a
# Bradley–Terry model (so is R-DPO's length term {cite:p}`park2024disentangling`). SimPO's margin
# is subtracted in *both* orders, and for every $\gamma > 0$
#
# $$\sigma(\Delta - \gamma) + \sigma(-\Delta - \gamma) < 1,$$
#
# the shortfall largest, $\tanh(\gamma/2)$, at $\Delta = 0$: with a margin, SimPO is a loss that
# asks for a gap, not a likelihood of any preference model, and $\gamma$ is not derived by the
# MaxEnt reading. A target margin can come from a stated objective: IPO's squared loss regresses
# the log-likelihood-ratio gap onto one {cite:p}`azar2023general`. On the chapter's pairs at
# $\pi'$, with $\gamma$ = `GAMMA`:

# %%
s_j = lengthnorm.simpo_logit(pi_j, space.lengths, BETA, w, l)
both_orders = expit(s_j - GAMMA) + expit(-s_j - GAMMA)  # P(y_w ≻ y_l) + P(y_l ≻ y_w)
x_ln = lengthnorm.length_offset_logit(pi_ln, space.lengths, BETA, w, l)  # section 8's model
offset_orders = expit(x_ln) + expit(-x_ln)
print(f"γ = {GAMMA:g}: σ(Δ − γ) + σ(−Δ − γ) over {w.size} pairs: {both_orders.min():.4f} .. "
      f"{both_orders.max():.4f} (tanh(γ/2) = {np.tanh(GAMMA / 2):.4f}); "
      f"the length-offset model: max |sum − 1| = {np.abs(offset_orders - 1).max():.1e}")  # fmt: skip

# %% [markdown]
# ## Checkpoints
# What you should have seen: the reparameterised reward reproduces $r$; $Z$ cancels in
# Bradley–Terry and Plackett–Luce; the MaxEnt loss equals DPO with a uniform reference; SimPO on
# summed log-probs with $\gamma = 0$ is the MaxEnt loss. With SimPO's temperature $\beta/|y|$
# substituted, the reward gap is the SimPO logit plus a residual that is zero for equal lengths
# and non-zero otherwise, whose size is set by a reward offset $c$ that Bradley–Terry cannot see
# (zero at $c^*$, a sizeable share of the logit one to two reward units away) and that acts on
# $\pi_g$ as a length prior. SimPO (γ = 0) is exactly the Bradley–Terry likelihood of
# $J' = \mathbb E_\pi[r + \frac{\beta}{|y|}(1 - \log\pi)]$, whose optimum is $\pi_g^{(c^*)}$, while
# neither the temperature without the bonus nor one constant α reproduces it on unequal lengths.
# Preferences on every pair recover $\pi_g^{(c^*)}$; preferences on part of the space leave SimPO
# a free length prior, fits of equal loss differing within the support where constant-α fits
# agree. The length-normalised objective is the same family at $\log Z_g = 1$, its length offset
# in place of $-\gamma$ negative exactly when the winner is longer; and with $\gamma > 0$ the two
# orders of a pair no longer sum to one.

# %%
assert reparam_gap < 1e-9 and bt_gap < 1e-12 and pl_gap < 1e-9 and loss_gap < 1e-12
assert simpo_summed_gap < 1e-12, "SimPO, summed log-probs, γ = 0: the MaxEnt-BT loss"
# 5: the residual, its size set by the offset c (observed 0.2-0.7 at 1-2 units from c*)
assert decomposition_gap < 1e-9
assert np.all(residual[~differ] == 0.0) and np.all(np.abs(residual[differ]) > 1e-3)
assert np.abs(res_at_zero).max() < 1e-9 and share_table[0.0] < 1e-9
assert min(near) > 0.1, "1-2 reward units from c* the residual is a sizeable share of the logit"
assert prior_spread < 1e-9 and bt_shift_gap < 1e-12, "c is a length prior c/β on π_g, unseen by BT"
assert abs(len_g_shifted - len_g) > 0.1, "the offset that removes the residual changes π_g"
# 6: SimPO (γ = 0) is the Bradley–Terry likelihood of J' (observed gaps: 0.85-1.0, 0.37-0.67)
assert abs(lam_j + c_zero) < 1e-9 and jprime_vs_gibbs < 1e-9 and stationarity_j < 1e-9
assert jp_rand <= jp_opt
assert jprime_gap < 1e-12 and check.jprime_gap < 1e-12, "SimPO = J'-BT on unequal lengths"
assert check.no_bonus_gap > 0.3, "without the shortness bonus the temperature does not give SimPO"
assert check.constant_alpha_gap > 0.1, "no single α reproduces SimPO on unequal lengths"
# 7: full support selects c*; a partial one leaves a length prior (observed ≥ 0.025 nats)
assert full_fit_gap < 1e-4, "SimPO's likelihood on every pair recovers π_g(c*)"
assert (
    abs(simpo_losses[0] - simpo_losses[1]) < 1e-12 and abs(simpo_losses[2] - simpo_losses[0]) < 1e-9
)
assert np.ptp(c_lbfgs) < 1e-4 and c_lbfgs.mean() <= c_max + 1e-6 and c_max > c_zero
assert simpo_cond_gap > 1e-3, "SimPO fits of equal loss differ within the support"
assert maxent_cond_gap < 1e-12 and abs(maxent_losses[0] - maxent_losses[1]) < 1e-12
# 8: the length-normalised objective: the same family at log Z_g = 1
assert stationarity < 1e-9 and abs(pi_ln.sum() - 1) < 1e-12 and identity_gap < 1e-9
assert j_rand <= j_opt and abs(log_zg_one - 1.0) < 1e-12 and family_gap < 1e-9
assert np.all(offset[by_winner["longer"]] < 0) and np.all(offset[by_winner["shorter"]] > 0)
assert np.all(offset[by_winner["equal"]] == 0) and by_winner["shorter"].any()
# γ: a margin in both orders is no probability model; the length offset is
assert (
    np.abs(offset_orders - 1.0).max() < 1e-12
    and abs(check.margin_mass - both_orders[differ].max()) < 1e-12
)
if GAMMA > 0:
    assert both_orders.max() < 1.0 and 1.0 - both_orders.min() <= np.tanh(GAMMA / 2) + 1e-12
else:
    assert np.abs(both_orders - 1.0).max() < 1e-12
assert len(fig_beta.frames) == len(betas) and len(fig_gamma.frames) == len(gammas)
print("checkpoints passed")

# %% [markdown]
# ## Exercises
#
# Each exercise uses the package; its worked solution is the collapsed cell below it (click to
# show it on the site). The solutions run with the chapter, so they cannot rot.
#
# **1. DPO against a uniform reference is the MaxEnt loss.** With
# $\log\pi_\text{ref}(y) = -\log|\mathcal Y|$ for every response, show with `losses.dpo_loss` and
# `losses.maxent_bt_loss` that DPO with $\beta$ is the MaxEnt Bradley–Terry loss with
# $\alpha = \beta$, on the chapter's pairs, at three values of β.

# %% tags=["hide-input"]
# Solution 1: a constant reference log-prob cancels in the DPO logit β(Δ log π − Δ log π_ref).
for b in (0.1, ALPHA, 2.0):
    d = losses.dpo_loss(policy_logps[w], policy_logps[l], uniform_ref[w], uniform_ref[l], b)
    m = losses.maxent_bt_loss(policy_logps[w], policy_logps[l], b)
    assert (d - m).abs().max().item() < 1e-12, b
print("DPO(uniform reference, β) = MaxEnt BT(α = β) on every pair, at β = 0.1, ALPHA, 2")

# %% [markdown]
# **2. What the margin γ does to the loss.** Show that SimPO's loss with margin γ equals the
# margin-free loss evaluated at a logit smaller by γ: $-\log\sigma(\beta\Delta\bar\ell - \gamma)$,
# where $\Delta\bar\ell$ is the gap in average log-probabilities. Then: by how much must the
# average log-prob gap grow for a pair to reach the same loss as without a margin?

# %% tags=["hide-input"]
# Solution 2: the margin shifts the logit by γ, so a pair needs an extra γ/β nats/token of gap.
avg = policy_logps / torch.tensor(space.lengths, dtype=policy_logps.dtype)
logit = BETA * (avg[w] - avg[l])
with_margin = losses.simpo_loss(avg[w], avg[l], BETA, gamma=GAMMA)
assert (with_margin - torch.nn.functional.softplus(-(logit - GAMMA))).abs().max().item() < 1e-12
print(f"γ = {GAMMA:g} costs an extra γ/β = {GAMMA / BETA:g} nats/token of average log-prob gap")
