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
# # 01 · The MaxEnt optimal policy, derived and then checked
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rlhf-nb/rlhf-nb/blob/main/notebooks/01_maxent_optimal_policy.ipynb)
#
# Maximum-Entropy RL asks for the policy that maximises reward *plus* an entropy bonus. On a
# finite set of responses we can write the answer in closed form, and — because the set is
# finite — check every claim about it by computing it. This chapter derives the optimum, then
# tests it against random competitors, its two temperature limits, and its twin:
# KL-regularised RL towards a reference policy. It ends with how the entropy moves, step by step,
# on the way to the optimum.

# %% tags=["parameters"]
SMOKE = False  # CI-sized run: seconds instead of minutes
SEED = 0  # seeds Python, NumPy and torch
DEVICE = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
ALPHA = 1.0  # MaxEnt temperature alpha shown first, > 0
N_RESPONSES = 8  # size of the response set Y, >= 2
N_RANDOM = 5000  # random policies the optimum is compared with, >= 1
LR = 0.05  # step size of the exact policy-gradient steps of the last section, > 0

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

import rlhf_nb
from rlhf_nb.theory import exact
from rlhf_nb.viz import plotting, widgets

ctx = rlhf_nb.setup(seed=SEED, device=DEVICE, smoke=SMOKE)
rlhf_nb.check_range("ALPHA", ALPHA, 0.0, None, low_inclusive=False)
rlhf_nb.check_type("N_RESPONSES", N_RESPONSES, int)
rlhf_nb.check_range("N_RESPONSES", N_RESPONSES, 2, 1000)
rlhf_nb.check_type("N_RANDOM", N_RANDOM, int)
rlhf_nb.check_range("N_RANDOM", N_RANDOM, 1, None)
rlhf_nb.check_range("LR", LR, 0.0, 0.5, low_inclusive=False)
n_random = min(N_RANDOM, 500) if SMOKE else N_RANDOM
rng = np.random.default_rng(SEED)
print(f"device={ctx.device}  seed={ctx.seed}  smoke={ctx.smoke}  random policies={n_random}")

# %% [markdown]
# ## The objective and its optimum (Gibbs variational principle)
#
# A prompt $x$ is fixed throughout, so we drop it. A policy $\pi$ is a distribution over a finite
# set $\mathcal Y$ of responses with rewards $r(y)$. MaxEnt RL maximises
#
# $$J_\alpha(\pi) = \mathbb{E}_{y\sim\pi}[r(y)] + \alpha H(\pi), \qquad
#   H(\pi) = -\sum_y \pi(y)\log\pi(y) \;\text{(nats)}.$$
#
# Define $Z = \sum_y e^{r(y)/\alpha}$ and $\pi^*(y) = e^{r(y)/\alpha}/Z$, so that
# $r(y) = \alpha\log\pi^*(y) + \alpha\log Z$. Substituting this into $J_\alpha$:
#
# $$J_\alpha(\pi) = \sum_y \pi(y)\big[\alpha\log\pi^*(y) + \alpha\log Z - \alpha\log\pi(y)\big]
#   = \alpha\log Z - \alpha\,\mathrm{KL}(\pi\,\|\,\pi^*).$$
#
# KL is $\ge 0$ and zero only at $\pi = \pi^*$. So $\pi^*$ is the unique maximiser, and the
# maximum is the *soft value* $V^* = \alpha\log Z$. No Lagrangian needed — and the identity
# holds for **every** $\pi$, which is what we check first.

# %%
rewards = rng.normal(0.0, 1.5, size=N_RESPONSES)
pi_star = exact.maxent_policy(rewards, ALPHA)
v_star = exact.soft_value(rewards, ALPHA)
j_star = exact.maxent_objective(pi_star, rewards, ALPHA)
competitors = rng.dirichlet(np.full(N_RESPONSES, 0.5), size=n_random)
j_random = np.array([exact.maxent_objective(q, rewards, ALPHA) for q in competitors])
identity_gap = max(
    abs(
        exact.maxent_objective(q, rewards, ALPHA)
        - (v_star - ALPHA * exact.kl_divergence(q, pi_star))
    )
    for q in competitors
)
print(f"J(π*) = {j_star:.6f}   α log Z = {v_star:.6f}   difference = {j_star - v_star:.1e}")
print(
    f"best of {n_random} random policies: J = {j_random.max():.6f}"
    f"  (short by {j_star - j_random.max():.4f})"
)
print(f"max over random q of |J(q) − (α log Z − α KL(q‖π*))| = {identity_gap:.1e}")

# %%
plotting.static_figure(
    [go.Histogram(x=j_random, nbinsx=60, name="random policies")],
    title=f"J_α of {n_random} random policies vs the optimum (α = {ALPHA:g})",
    xaxis_title="J_α(π) = E[r] + α H(π)",
    yaxis_title="count",
    shapes=[
        dict(type="line", x0=j_star, x1=j_star, y0=0, y1=1, yref="paper", line=dict(color="red"))
    ],
    annotations=[
        dict(x=j_star, y=1, yref="paper", text="π* (α log Z)", showarrow=False, xanchor="right")
    ],
).show()

# %% [markdown]
# ## The two limits of the temperature
#
# As $\alpha\to0$ the entropy bonus vanishes and $\pi^*$ concentrates on $\arg\max_y r(y)$. As
# $\alpha\to\infty$ the reward is drowned and $\pi^*$ tends to uniform, $H\to\log|\mathcal Y|$.

# %%
alphas = np.geomspace(0.02, 50.0, 9 if SMOKE else 41)
policies = np.array([exact.maxent_policy(rewards, a) for a in alphas])
entropies = np.array([exact.entropy(p) for p in policies])
best = int(np.argmax(rewards))
print(f"α = {alphas[0]:.3g}: π*(argmax) = {policies[0, best]:.6f}")
print(f"α = {alphas[-1]:.3g}: H(π*) = {entropies[-1]:.4f} nats, log|Y| = {np.log(N_RESPONSES):.4f}")
plotting.static_figure(
    [
        go.Scatter(x=alphas, y=policies[:, best], name="π*(argmax r)"),
        go.Scatter(x=alphas, y=entropies / np.log(N_RESPONSES), name="H(π*) / log|Y|"),
    ],
    title="From argmax to uniform",
    xaxis_title="α",
    xaxis_type="log",
    yaxis_title="fraction",
).show()

# %% [markdown]
# ## MaxEnt RL *is* KL-regularised RL — towards the uniform policy
#
# KL-regularised RL, the objective behind PPO-RLHF and DPO, maximises
# $\mathbb{E}_\pi[r] - \beta\,\mathrm{KL}(\pi\|\pi_{\text{ref}})$ (DPO fits the same optimum
# offline; on finite data with near-deterministic preferences its fit can leave the anchor behind
# whatever β {cite:p}`azar2023general`, and direct alignment over-optimises much as online RLHF does
# {cite:p}`rafailov2024scaling`); by the same algebra its optimum is
#
# $$\pi^*_{\text{KL}}(y) = \frac{\pi_{\text{ref}}(y)\, e^{r(y)/\beta}}{Z_{\text{ref}}}.$$
#
# For the uniform policy $U(y) = 1/|\mathcal Y|$,
# $\;H(\pi) = \log|\mathcal Y| - \mathrm{KL}(\pi\|U)$, so
#
# $$J_\alpha(\pi) = \mathbb{E}_\pi[r] - \alpha\,\mathrm{KL}(\pi\|U) + \alpha\log|\mathcal Y|:$$
#
# the same objective up to a constant. **MaxEnt RL is KL-regularised RL whose anchor has moved
# from the SFT model to "any string"** — everything the SFT model knew about which responses are
# plausible is dropped from the regulariser. "Any string" means the uniform law over *responses*:
# when responses have lengths it is not the per-token uniform law $V^{-|y|}$ (a KL towards that
# one is MaxEnt plus a length cost of $\alpha\log V$ per token, chapter 03), and it is not a
# neutral prior either — chapter 03 shows what it costs when responses have lengths. Entropy
# bonuses that only shield some low-probability tokens pay a KL to a *filtered* copy of the policy
# instead {cite:p}`huang2025lpreg`; the point stands that the anchor decides where the optimum
# goes.

# %%
uniform = np.full(N_RESPONSES, 1.0 / N_RESPONSES)
entropy_gap = max(
    abs(exact.entropy(q) - (np.log(N_RESPONSES) - exact.kl_divergence(q, uniform)))
    for q in competitors
)
uniform_ref_gap = np.max(np.abs(exact.kl_policy(rewards, uniform, ALPHA) - pi_star))
print(f"max |H(q) − (log|Y| − KL(q‖U))| over random q = {entropy_gap:.1e}")
print(f"max |π*_KL(ref = U, β = α) − π*_MaxEnt| = {uniform_ref_gap:.1e}")

# %% [markdown]
# Now give the KL-regularised objective a *real* reference: an "SFT model" that puts most of its
# mass on a few plausible responses (here the second- and third-best, standing in for fluent
# answers). Move the temperature and compare the two optima: as it rises, the KL optimum returns
# to the reference; the MaxEnt optimum spreads over everything.

# %%
order = np.argsort(-rewards)
sft = np.full(N_RESPONSES, 0.02)
sft[order[1:3]] = 1.0
sft /= sft.sum()
labels = [f"y{i} (r={r:+.2f})" for i, r in enumerate(rewards)]


def optimum_bars(alpha):
    """Bars for the reference, the MaxEnt optimum and the KL optimum at temperature alpha."""
    return [
        go.Bar(x=labels, y=sft, name="π_ref (SFT)", marker_color="lightgray"),
        go.Bar(x=labels, y=exact.maxent_policy(rewards, alpha), name="MaxEnt π* ∝ exp(r/α)"),
        go.Bar(
            x=labels, y=exact.kl_policy(rewards, sft, alpha), name="KL π* ∝ π_ref exp(r/β), β=α"
        ),
    ]


def optimum_figure(alpha):
    return plotting.static_figure(
        optimum_bars(alpha),
        title=f"MaxEnt vs KL-regularised optimum at α = β = {alpha:.3g}",
        yaxis_title="probability",
        yaxis_range=[0, 1.05],
        barmode="group",
    )


# %% [markdown]
# In a live kernel, drag the slider:

# %%
box = widgets.live_figure(optimum_figure, alpha=widgets.log_slider("α = β", ALPHA, 0.02, 50.0))

# %% [markdown]
# On the static site, this version carries every frame in the page:

# %%
start = int(np.argmin(np.abs(np.log(alphas) - np.log(ALPHA))))
fig = plotting.slider_figure(
    "α = β",
    alphas,
    optimum_bars,
    title="MaxEnt vs KL-regularised optimum",
    yaxis_title="probability",
    yrange=(0, 1.05),
    active=start,
)
fig.update_layout(barmode="group")
fig.show()

# %%
kl_to_ref = {
    name: np.array([exact.kl_divergence(policy(a), sft) for a in alphas])
    for name, policy in (
        ("MaxEnt", lambda a: exact.maxent_policy(rewards, a)),
        ("KL-regularised", lambda a: exact.kl_policy(rewards, sft, a)),
    )
}
for name, kl in kl_to_ref.items():
    print(
        f"{name:>15}: KL(π*‖π_ref) = {kl[0]:.3f} nats at α = {alphas[0]:.3g},"
        f" {kl[-1]:.3f} nats at α = {alphas[-1]:.3g}"
    )
plotting.static_figure(
    [go.Scatter(x=alphas, y=kl, name=name) for name, kl in kl_to_ref.items()],
    title="Distance of each optimum from the SFT reference",
    xaxis_title="α = β",
    xaxis_type="log",
    yaxis_title="KL(π* ‖ π_ref), nats",
).show()

# %% [markdown]
# The KL optimum returns to $\pi_{\text{ref}}$ as $\beta$ grows (how far it moves is bounded by the
# reward's range over $\beta$, chapter 09; what that bound does *not* promise — that the gain is
# real when the reward model's errors are heavy-tailed {cite:p}`kwa2024catastrophic` — is in
# chapter 07). The MaxEnt optimum cannot use
# $\pi_{\text{ref}}$ at all: whatever $\alpha$, it is a member of one fixed family,
# $\pi_\alpha \propto e^{r/\alpha}$, which runs from $\arg\max_y r(y)$ ($\alpha\to0$) to uniform
# ($\alpha\to\infty$). So $\mathrm{KL}(\pi_\alpha\|\pi_{\text{SFT}})$ can be small at *some*
# temperature only if $\pi_{\text{SFT}}$ is itself close to a member of that family. Whether it is
# depends on the SFT model, not on MaxEnt. The closest the family comes to this chapter's SFT model,
# and to a counter-example SFT model that lies on the family ($\pi_\alpha$ at $\alpha$ = `ALPHA`):

# %%
sft_on_family = exact.maxent_policy(rewards, ALPHA)
closest = {  # name -> (argmin alpha, min over alpha of KL(pi_alpha || SFT))
    "chapter": exact.closest_maxent_temperature(rewards, sft),
    "on family": exact.closest_maxent_temperature(rewards, sft_on_family),
}
for name, (a_min, kl_min) in closest.items():
    print(f"SFT {name:>9}: min over α of KL(π_α‖π_SFT) = {kl_min:.3g} nats, at α = {a_min:.4g}")

# %% [markdown]
# This SFT model puts its mass on the second- and third-best responses, a shape no
# $\pi_\alpha$ has, so the MaxEnt optimum stays far from it at every temperature; the
# counter-example is reached exactly, at its own temperature.
#
# ## How the entropy moves, one policy-gradient step at a time
#
# The optimum is where training should end; the entropy on the way there follows a law of its own
# {cite:p}`cui2025entropy`. For a softmax policy $\pi = \mathrm{softmax}(z)$,
# $\partial H/\partial z_y = -\pi(y)\,(\log\pi(y) + H)$, so a step $z \to z + \Delta z$ changes the
# entropy by
#
# $$\Delta H = -\mathrm{Cov}_{y\sim\pi}\big(\log\pi(y),\,\Delta z(y)\big) + O(|\Delta z|^2).$$
#
# A policy-gradient step with the loop's shaped reward $r - \alpha\log\pi$ moves the logits by
# $\Delta z = \eta A$ (the natural gradient), $A(y) = r(y) - \alpha\log\pi(y) - \text{mean}$, and then
#
# $$\Delta H \approx -\eta\,\mathrm{Cov}_\pi(\log\pi, r) + \eta\,\alpha\,\mathrm{Var}_\pi(\log\pi):$$
#
# the reward lowers the entropy whenever the likely responses are the well-paid ones (the
# "entropy collapse" of RL without a bonus, chapter 07), and the bonus raises it by
# $\alpha\,\mathrm{Var}(\log\pi)$ until the two balance — at $\pi_\alpha$. Exact steps on this
# chapter's rewards (`exact.entropy_steps`), from a random start, with $\alpha = 0$ and
# $\alpha$ = `ALPHA`:

# %%
z0 = rng.normal(0.0, 1.0, N_RESPONSES)
n_steps = int(min(20_000, np.ceil(10 / (LR * ALPHA))))  # the gap to π_α shrinks like (1 − ηα)^t
steps = {a: exact.entropy_steps(rewards, z0, alpha=a, lr=LR, steps=n_steps) for a in (0.0, ALPHA)}
half = exact.entropy_steps(rewards, z0, alpha=ALPHA, lr=LR / 2, steps=2 * n_steps)
law_error = {
    a: float((d.dH - d.predicted).abs().sum() / d.dH.abs().sum()) for a, d in steps.items()
}
halving = float((steps[ALPHA].dH - steps[ALPHA].predicted).abs().max()
                / (half.dH - half.predicted).abs().max())  # fmt: skip
h_target = exact.entropy(pi_star)
h_end = {a: d.entropy.iloc[-1] for a, d in steps.items()}
for a, d in steps.items():
    print(f"α = {a:g}: H {d.entropy.iloc[0]:.3f} → {h_end[a]:.4f} nats in {n_steps} steps of η = "
          f"{LR:g}; Σ_t |ΔH − (−Cov(log π, Δz))| is {law_error[a]:.1%} of Σ_t |ΔH|")  # fmt: skip
print(
    f"halving η divides the law's largest error by {halving:.2f} (second order: 4); "
    f"H(π_α) at α = {ALPHA:g} is {h_target:.4f} nats"
)
plotting.static_figure(
    [go.Scatter(y=d.entropy, name=f"H(π_t), α = {a:g}") for a, d in steps.items()]
    + [go.Scatter(y=np.cumsum(d.predicted) + d.entropy.iloc[0], name=f"H₀ + Σ −Cov(log π, Δz), α = {a:g}",
                  line=dict(dash="dot")) for a, d in steps.items()],
    title="Entropy along exact policy-gradient steps and the covariance law",
    xaxis_title="step", yaxis_title="entropy (nats)",
).show()  # fmt: skip

# %% [markdown]
# The law is first order, so it is tight for small steps: summed over the run its error is a small
# share of the entropy's movement, and per step it shrinks like $\eta^2$ (the printout gives the
# factor for halving $\eta$).
# Without a bonus the entropy falls towards the argmax's 0; with one it settles at $H(\pi_\alpha)$,
# where $\mathrm{Cov}(\log\pi, r) = \alpha\,\mathrm{Var}(\log\pi)$.
#
# ## Checkpoints
# What you should have seen: $\pi^*$ is the Gibbs policy; its value is $\alpha\log Z$; the identity
# $J(q) = \alpha\log Z - \alpha\mathrm{KL}(q\|\pi^*)$ holds for every random policy, so none beats
# $\pi^*$; $\alpha\to0$ gives argmax and $\alpha\to\infty$ uniform; MaxEnt equals KL-regularisation
# towards uniform; only the KL optimum stays near the SFT reference at high temperature; and the
# MaxEnt family never comes near this SFT model, though it passes through an SFT model on the family;
# and the entropy moving by $-\mathrm{Cov}(\log\pi, \Delta z)$ to first order, falling without a bonus
# and settling at $H(\pi_\alpha)$ with one.

# %%
assert abs(pi_star.sum() - 1) < 1e-12 and abs(j_star - v_star) < 1e-9
assert identity_gap < 1e-9 and j_random.max() < j_star
assert policies[0, best] > 0.99 and np.max(np.abs(policies[-1] - uniform)) < 0.05
assert np.all(np.diff(entropies) > 0), "entropy of π* must increase with α"
assert entropy_gap < 1e-12 and uniform_ref_gap < 1e-12
assert kl_to_ref["KL-regularised"][-1] < 0.01 < kl_to_ref["MaxEnt"][-1]
assert np.all(kl_to_ref["MaxEnt"] > 0.5)
assert closest["chapter"][1] > 0.5, "no π_α comes near this chapter's SFT model"
assert abs(closest["on family"][1]) < 1e-10, "an SFT model on the family is reached exactly"
assert (
    len(fig.frames) == len(alphas)
    and fig.layout.sliders[0].steps[start].label == fig.frames[start].name
)
# the covariance law: over 20 random rewards and starts with η = 0.05 the summed error was at
# most 6 % of the summed |ΔH| without a bonus and 17 % with α = 1; halving η divided the
# largest error by 3.98-4.07 at SEED 0..2
assert max(law_error.values()) < 0.3, law_error
assert 3.0 < halving < 5.0, halving
assert abs(h_end[ALPHA] - h_target) < 1e-3, (h_end, h_target)
assert h_end[0.0] < steps[0.0].entropy.iloc[0] - 0.1, "no bonus: the entropy falls"
print("checkpoints passed")

# %% [markdown]
# ## Exercises
#
# Each exercise uses the package; its worked solution is the collapsed cell below it (click to
# show it on the site). The solutions run with the chapter, so they cannot rot.
#
# **1. The soft value is a smooth maximum.** Show, for every temperature in `alphas`, that
# $\max_y r(y) \le \alpha\log Z \le \max_y r(y) + \alpha\log|\mathcal Y|$ (`exact.soft_value`).
# Which bound is tight as $\alpha\to0$, which as $\alpha\to\infty$?

# %% tags=["hide-input"]
# Solution 1: α·log Z = α·log Σ exp(r/α) lies between max r (one term) and max r + α·log n (n terms
# each at most exp(max r / α)); the lower bound is tight as α → 0, the upper gap grows like α·log n.
values = np.array([exact.soft_value(rewards, a) for a in alphas])
assert np.all(values >= rewards.max() - 1e-12)
assert np.all(values <= rewards.max() + alphas * np.log(N_RESPONSES) + 1e-12)
print(f"α={alphas[0]:g}: α log Z − max r = {values[0] - rewards.max():.2e};  "
      f"α={alphas[-1]:g}: max r + α log n − α log Z = "
      f"{rewards.max() + alphas[-1] * np.log(N_RESPONSES) - values[-1]:.3f}")  # fmt: skip

# %% [markdown]
# **2. Log-odds are reward gaps over temperature.** Show that for every pair of responses
# $\log\pi_\alpha(y_i) - \log\pi_\alpha(y_j) = (r_i - r_j)/\alpha$, at three temperatures. What does
# this say about how a MaxEnt policy ranks responses, whatever $\alpha$?

# %% tags=["hide-input"]
# Solution 2: the partition function cancels in a ratio, so the ranking is the reward's at every α;
# only the spread (1/α) changes.
for a in (0.1, ALPHA, 10.0):
    logp = np.log(exact.maxent_policy(rewards, a))
    gap = np.max(
        np.abs((logp[:, None] - logp[None, :]) - (rewards[:, None] - rewards[None, :]) / a)
    )
    assert gap < 1e-9, (a, gap)
print("log-odds = reward gap / α at α = 0.1, ALPHA, 10 (largest error < 1e-9)")

# %% [markdown]
# **3. An SFT model that *is* a MaxEnt optimum.** Make an SFT model tempered from the rewards,
# $\pi_\text{SFT}\propto e^{r/0.7}$, and find with `exact.closest_maxent_temperature` the $\alpha$ at
# which the MaxEnt optimum comes closest to it. Why is the answer what it is, and why is this the
# exception rather than the rule (compare the chapter's SFT model)?

# %% tags=["hide-input"]
# Solution 3: π_0.7 = π_SFT exactly, so the KL reaches 0 at α = 0.7; a real SFT model is not
# Gibbs in the reward model's scores, and then no temperature reaches it (section above).
tempered = exact.maxent_policy(rewards, 0.7)
a_best, kl_best = exact.closest_maxent_temperature(rewards, tempered)
print(f"closest α = {a_best:.6f}, KL there = {kl_best:.2e} nats")
assert abs(a_best - 0.7) < 1e-4 and kl_best < 1e-10
