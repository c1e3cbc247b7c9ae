"""Exact quantities on finite response spaces (notebooks 00-02).

Float64 NumPy throughout: on a finite space every quantity is a sum we can compute exactly.
Rewards are in reward units; log-probabilities, entropies and KL divergences are in nats. A
response space is a 1-D array of size n (one entry per response y). Sequences with lengths live
in ``rlhf_nb.theory.sequences``; SimPO's length-normalised temperature in
``rlhf_nb.theory.lengthnorm``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_expit, logsumexp

from rlhf_nb.core import check_range

PROB_TOL = 1e-9  # how far from 1 a probability vector may sum


def as_vector(name: str, x, *, size: int | None = None) -> np.ndarray:
    """``x`` as a finite float64 array of shape (n,), n >= 1; ``ValueError`` naming it otherwise."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {x.shape}")
    if size is not None and x.size != size:
        raise ValueError(f"{name} must have shape ({size},) to match, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite, got {x}")
    return x


def as_probs(name: str, p, *, size: int | None = None) -> np.ndarray:
    """``p`` as a probability vector: shape (n,), entries in [0, 1], summing to 1 within 1e-9."""
    p = as_vector(name, p, size=size)
    if np.any(p < 0) or abs(p.sum() - 1.0) > PROB_TOL:
        raise ValueError(
            f"{name} must be a probability vector (entries >= 0, sum within {PROB_TOL} of 1), "
            f"got sum {p.sum()!r} and min {p.min()!r}"
        )
    return p


def _check_temperature(name: str, value: float) -> None:
    check_range(name, value, 0.0, None, low_inclusive=False)


def soft_value(r, alpha: float) -> float:
    """The MaxEnt optimum's value  V* = alpha * log sum_y exp(r(y)/alpha)  (notebook 01, eq. V*).

    ``V* = alpha * log Z``: the maximum of ``E_pi[r] + alpha * H(pi)``.

    Args:
        r: rewards, shape (n,), in reward units.
        alpha: temperature > 0 (reward units per nat).
    """
    _check_temperature("alpha", alpha)
    r = as_vector("r", r)
    return float(alpha * logsumexp(r / alpha))


def maxent_policy(r, alpha: float) -> np.ndarray:
    """The MaxEnt optimum  pi*(y) = exp(r(y)/alpha) / Z  (notebook 01, Gibbs variational principle).

    Stable log-sum-exp normalisation. Args: r, rewards of shape (n,); alpha > 0.
    Returns probabilities of shape (n,), float64, summing to 1.
    """
    _check_temperature("alpha", alpha)
    z = as_vector("r", r) / alpha
    return np.exp(z - logsumexp(z))


def entropy(pi) -> float:
    """Shannon entropy  H(pi) = -sum_y pi(y) log pi(y)  in nats (0 log 0 = 0). pi: shape (n,)."""
    pi = as_probs("pi", pi)
    nz = pi > 0
    return float(-np.sum(pi[nz] * np.log(pi[nz])))


def kl_divergence(p, q) -> float:
    """KL(p || q) = sum_y p(y) log(p(y)/q(y))  in nats, for categoricals of shape (n,).

    Infinite when p puts mass where q has none (notebooks 01 and 03).
    """
    p = as_probs("p", p)
    q = as_probs("q", q, size=p.size)
    nz = p > 0
    if np.any(q[nz] == 0):
        return float("inf")
    return float(np.sum(p[nz] * (np.log(p[nz]) - np.log(q[nz]))))


def maxent_objective(pi, r, alpha: float) -> float:
    """J_alpha(pi) = E_pi[r] + alpha * H(pi)  (notebook 01, the MaxEnt RL objective).

    Args: pi, probabilities of shape (n,); r, rewards of shape (n,); alpha > 0.
    Returns reward units.
    """
    _check_temperature("alpha", alpha)
    pi = as_probs("pi", pi)
    r = as_vector("r", r, size=pi.size)
    return float(pi @ r + alpha * entropy(pi))


def kl_policy(r, ref, beta: float) -> np.ndarray:
    """The KL-regularised optimum  pi*(y) = ref(y) exp(r(y)/beta) / Z  (notebook 01; DPO, eq. 4).

    Args: r, rewards (n,); ref, reference probabilities (n,) (zeros stay zero); beta > 0.
    Returns probabilities of shape (n,).
    """
    _check_temperature("beta", beta)
    ref = as_probs("ref", ref)
    r = as_vector("r", r, size=ref.size)
    with np.errstate(divide="ignore"):
        z = np.log(ref) + r / beta
    return np.exp(z - logsumexp(z))


def kl_objective(pi, r, ref, beta: float) -> float:
    """J_beta(pi) = E_pi[r] - beta * KL(pi || ref)  (notebook 01, KL-regularised RL objective).

    Args: pi, ref, probabilities (n,); r, rewards (n,); beta > 0. Returns reward units.
    """
    _check_temperature("beta", beta)
    pi = as_probs("pi", pi)
    r = as_vector("r", r, size=pi.size)
    return float(pi @ r - beta * kl_divergence(pi, ref))


def closest_maxent_temperature(
    r, ref, alpha_min: float = 1e-3, alpha_max: float = 1e3, n_grid: int = 241
) -> tuple[float, float]:
    """min over alpha of KL(pi_alpha || ref), pi_alpha = :func:`maxent_policy` (notebook 01).

    The MaxEnt optima form a one-parameter family running from argmax r (alpha -> 0) to uniform
    (alpha -> inf); this is how close that family ever comes to a reference such as an SFT policy.
    A log-spaced grid of ``n_grid`` temperatures in [alpha_min, alpha_max] locates the best
    point, then a bounded Brent search on log alpha refines it between its grid neighbours.

    Args: r, rewards (n,); ref, reference probabilities (n,); 0 < alpha_min < alpha_max (reward
    units per nat); n_grid >= 3. Returns (alpha at the minimum, the minimum KL in nats).
    """
    _check_temperature("alpha_min", alpha_min)
    check_range("alpha_max", alpha_max, alpha_min, None, low_inclusive=False)
    check_range("n_grid", n_grid, 3, None)
    ref = as_probs("ref", ref)
    r = as_vector("r", r, size=ref.size)

    def kl_at(log_alpha: float) -> float:
        return kl_divergence(maxent_policy(r, float(np.exp(log_alpha))), ref)

    grid = np.linspace(np.log(alpha_min), np.log(alpha_max), int(n_grid))
    i = int(np.argmin([kl_at(x) for x in grid]))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    best = minimize_scalar(kl_at, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    x = best.x if best.fun <= kl_at(grid[i]) else grid[i]
    return float(np.exp(x)), kl_at(x)


def bt_prob(r_w, r_l):
    """Bradley-Terry  P(y_w > y_l) = sigmoid(r_w - r_l)  (notebook 02), elementwise on arrays."""
    return np.exp(log_expit(np.asarray(r_w, dtype=np.float64) - np.asarray(r_l, dtype=np.float64)))


def pl_log_prob(r, ranking) -> float:
    """Plackett-Luce  log P(ranking) = sum_k [r(s_k) - log sum_{j >= k} exp r(s_j)]  (notebook 02).

    Args:
        r: scores of shape (n,) (rewards, or alpha * log pi for the reparameterised form).
        ranking: indices of shape (K,), best first, distinct, K <= n (a top-K ranking).
    Returns a log-probability in nats.
    """
    r = as_vector("r", r)
    ranking = np.asarray(ranking)
    if (
        ranking.ndim != 1
        or ranking.size == 0
        or not np.issubdtype(ranking.dtype, np.integer)
        or len(set(ranking.tolist())) != ranking.size
        or ranking.min() < 0
        or ranking.max() >= r.size
    ):
        raise ValueError(f"ranking must hold distinct indices in [0, {r.size - 1}], got {ranking}")
    rest = np.setdiff1d(np.arange(r.size), ranking)  # unranked items stay in every denominator
    s = np.concatenate([r[ranking], r[rest]])
    tails = logsumexp(np.broadcast_to(s, (ranking.size, s.size)), axis=1, b=_upper(ranking.size, s))
    return float(np.sum(s[: ranking.size] - tails))


def _upper(k: int, s: np.ndarray) -> np.ndarray:
    """Mask (k, len(s)) whose row i keeps positions >= i (the Plackett-Luce tail sets)."""
    return (np.arange(s.size)[None, :] >= np.arange(k)[:, None]).astype(np.float64)


def implied_reward(pi, alpha: float, log_z: float = 0.0) -> np.ndarray:
    """Reward reparameterisation  r(y) = alpha log pi(y) + alpha log Z  (notebook 02, eq. reparam).

    Inverts :func:`maxent_policy`: ``implied_reward(maxent_policy(r, a), a, log Z) == r``.
    Args: pi, probabilities (n,), all > 0; alpha > 0; log_z in nats.
    """
    _check_temperature("alpha", alpha)
    pi = as_probs("pi", pi)
    if np.any(pi <= 0):
        raise ValueError("pi must be > 0 everywhere to imply a finite reward")
    return alpha * np.log(pi) + alpha * log_z


def entropy_change_first_order(z, dz) -> float:
    """−Cov_{y~π}(log π(y), Δz(y)), π = softmax(z): the first-order change of H(π) when the
    logits move from z to z + Δz (Cui et al. 2025, the entropy mechanism; nats).

    Derivation: ∂H/∂z_y = −π(y)·(log π(y) + H(π)), so dH = Σ_y ∂H/∂z_y·dz_y
    = −(E_π[log π·dz] − E_π[log π]·E_π[dz]). Raising the logit of a response that is already
    likely (log π above its mean) lowers the entropy; raising a rare one raises it. The
    remainder H(z + Δz) − H(z) − this is O(|Δz|²). Args: z, dz, logits of shape (n,).
    """
    z = as_vector("z", z)
    dz = as_vector("dz", dz, size=z.size)
    logp = z - logsumexp(z)
    pi = np.exp(logp)
    return float(-(pi @ (logp * dz) - (pi @ logp) * (pi @ dz)))


def entropy_steps(r, z0, *, alpha: float, lr: float, steps: int, kind: str = "natural"):
    """Exact policy-gradient steps on J_α = E_π[r] + α·H(π) over logits z, with the entropy
    change of every step set against :func:`entropy_change_first_order` (chapter 01).

    The expected advantage of the loop's shaped reward r − α·log π(y) is
    A(y) = r(y) − α·log π(y) − E_π[r − α·log π]; a step moves the logits by Δz = lr·A
    (``"natural"``: the natural gradient of a softmax policy) or Δz = lr·π⊙A (``"vanilla"``:
    the plain gradient ∂J_α/∂z). Then −Cov_π(log π, Δz) = lr·(−Cov_π(log π, r) + α·Var_π(log π))
    for the natural step: the reward lowers the entropy where likely responses pay more, the
    bonus raises it by α·Var(log π).

    Args: r, rewards (n,); z0, starting logits (n,); alpha >= 0; lr > 0; steps >= 1.
    Returns a ``pandas`` DataFrame, one row per step: ``step``, ``entropy`` (before the step,
    nats), ``dH`` (exact change), ``predicted`` (−Cov(log π, Δz)), ``reward_term`` and
    ``bonus_term`` (its two parts, natural steps only: −lr·Cov(log π, r), lr·α·Var(log π)).
    """
    import pandas as pd

    from rlhf_nb.core import check_choice, check_int

    r = as_vector("r", r)
    z = as_vector("z0", z0, size=r.size).copy()
    check_range("alpha", alpha, 0.0, None)
    check_range("lr", lr, 0.0, None, low_inclusive=False)
    check_int("steps", steps, 1)
    check_choice("kind", kind, ("natural", "vanilla"))
    rows = []
    for step in range(steps):
        logp = z - logsumexp(z)
        pi = np.exp(logp)
        shaped = r - alpha * logp
        adv = shaped - pi @ shaped
        dz = lr * adv if kind == "natural" else lr * pi * adv
        h0 = entropy(pi)
        h1 = entropy(np.exp((z + dz) - logsumexp(z + dz)))
        cov_r = pi @ (logp * r) - (pi @ logp) * (pi @ r)
        var_l = pi @ logp**2 - (pi @ logp) ** 2
        nat = kind == "natural"
        rows.append({"step": step, "entropy": h0, "dH": h1 - h0,
                     "predicted": entropy_change_first_order(z, dz),
                     "reward_term": -lr * cov_r if nat else np.nan,
                     "bonus_term": lr * alpha * var_l if nat else np.nan})  # fmt: skip
        z = z + dz
    return pd.DataFrame(rows)
