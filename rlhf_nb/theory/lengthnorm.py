"""SimPO's length-normalised temperature alpha_y = beta/|y|, computed exactly (notebook 02).

Units: beta is SimPO's, in reward units per (nat/token) (it scales a per-token average
log-probability), so beta/|y| is a temperature in reward units per nat, like alpha.

1. The *substituted Gibbs family* (the paper's step, and the reviewers' objection).
   Substituting alpha_y = beta/|y| into pi*(y) = exp(r(y)/alpha)/Z gives, for rewards r + c
   (Bradley-Terry cannot see the offset c), pi_g(y) = exp(|y| (r(y) + c)/beta) / Z_g(c), i.e.
   r(y) = (beta/|y|) log pi_g(y) + (beta/|y|) log Z_g(c) - c. In the Bradley-Terry difference
   the log Z_g terms carry different weights: the residual beta (1/|y_w| - 1/|y_l|) log Z_g(c)
   survives unless |y_w| = |y_l| or log Z_g(c) = 0. The offset acts on pi_g as a length prior
   of c/beta nats per token.

2. The *optimum of the length-normalised entropy objective* (the book's first variant):
   max_pi E_pi[ r(y) - (beta/|y|) log pi(y) ] subject to sum_y pi(y) = 1. Concave; stationarity
   r(y) - (beta/|y|) (log pi(y) + 1) = lambda, so log pi(y) = |y| (r(y) - lambda)/beta - 1:
   the family of 1. at the offset where log Z_g = 1. Lambda cancels in r(y_w) - r(y_l), leaving
   SimPO's logit plus the length offset beta (1/|y_w| - 1/|y_l|) -- the residual at log Z_g = 1.

3. *SimPO's exact objective* J'(pi) = E_pi[ r(y) + (beta/|y|) (1 - log pi(y)) ]: 2. plus a
   shortness bonus beta/|y|. Stationarity r(y) - (beta/|y|) log pi(y) = lambda: the family at
   log Z_g = 0, where the residual vanishes, so SimPO's loss (gamma = 0) is exactly the
   Bradley-Terry likelihood of J''s optimum, on pairs of any lengths.

4. *Identifiability.* With preferences on every pair of the space, normalisation selects the
   offset of 3.; with preferences on part of it, every c up to a bound minimises SimPO's loss
   equally, and the fits differ within the support by the length prior c/beta, while a
   constant temperature's fits differ only by their mass on the support.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq, minimize, minimize_scalar
from scipy.special import expit, logsumexp

from rlhf_nb.core import check_range
from rlhf_nb.theory import exact, losses
from rlhf_nb.theory.exact import as_probs, as_vector


def _inputs(r, lengths, beta: float) -> tuple[np.ndarray, np.ndarray]:
    check_range("beta", beta, 0.0, None, low_inclusive=False)
    r = as_vector("r", r)
    lengths = as_vector("lengths", lengths, size=r.size)
    if np.any(lengths < 1):
        raise ValueError(f"lengths must be >= 1 (tokens per response), got min {lengths.min()}")
    return r, lengths


def _pair_index(name: str, i, n: int) -> np.ndarray:
    i = np.asarray(i)
    if not np.issubdtype(i.dtype, np.integer) or np.any(i < 0) or np.any(i >= n):
        raise ValueError(f"{name} must be integer indices in [0, {n - 1}], got {i}")
    return i


def substituted_gibbs(r, lengths, beta: float) -> tuple[np.ndarray, float]:
    """pi_g(y) = exp(|y| r(y)/beta) / Z_g and log Z_g (nats), the substituted policy (1. above).

    Args: r, rewards (n,); lengths, tokens per response (n,), >= 1; beta > 0.
    Returns (pi_g of shape (n,), log Z_g).
    """
    r, lengths = _inputs(r, lengths, beta)
    z = lengths * r / beta
    log_z = float(logsumexp(z))
    return np.exp(z - log_z), log_z


def simpo_logit(pi, lengths, beta: float, w, l, gamma: float = 0.0):
    """SimPO's Bradley-Terry logit (beta/|y_w|) log pi(y_w) - (beta/|y_l|) log pi(y_l) - gamma.

    Args: pi, probabilities (n,) > 0 at w and l; lengths (n,); beta > 0; w, l, response indices
    (ints or int arrays of the same shape); gamma, SimPO's target margin (reward units).
    Returns reward units, shape of ``w``.
    """
    pi = as_probs("pi", pi)
    _, lengths = _inputs(np.zeros_like(pi), lengths, beta)
    w, l = _pair_index("w", w, pi.size), _pair_index("l", l, pi.size)
    # the log only where it is read: pi may be 0.0 elsewhere (an optimum's underflowed tail)
    return beta * np.log(pi[w]) / lengths[w] - beta * np.log(pi[l]) / lengths[l] - gamma


def simpo_residual(r, lengths, beta: float, w, l):
    """The reviewers' residual  beta (1/|y_w| - 1/|y_l|) log Z_g  (notebook 02, 1. above).

    It is exactly what the substitution leaves over:
    r(y_w) - r(y_l) = simpo_logit(pi_g, ...) + simpo_residual(...). Zero iff |y_w| = |y_l|
    (or log Z_g = 0). Args as :func:`substituted_gibbs`, plus indices w, l. Reward units.
    """
    r, lengths = _inputs(r, lengths, beta)
    w, l = _pair_index("w", w, r.size), _pair_index("l", l, r.size)
    _, log_z = substituted_gibbs(r, lengths, beta)
    return beta * (1.0 / lengths[w] - 1.0 / lengths[l]) * log_z


def length_normalised_objective(pi, r, lengths, beta: float) -> float:
    """J(pi) = E_pi[ r(y) - (beta/|y|) log pi(y) ]  (notebook 02, 2. above). Reward units."""
    pi = as_probs("pi", pi)
    r, lengths = _inputs(r, lengths, beta)
    nz = pi > 0
    return float(pi @ r - beta * np.sum(pi[nz] * np.log(pi[nz]) / lengths[nz]))


def _multiplier(r, lengths, beta: float, log_zg: float) -> float:
    """lambda with log sum_y exp(|y| (r(y) - lambda)/beta - log_zg) = 0, i.e. the offset c = -lambda
    at which the substituted Gibbs family has log Z_g(c) = log_zg (1. above). The left side falls
    strictly in lambda, so the root is bracketed, found by Brent's method and polished by Newton
    steps to ~1e-15. Reward units."""

    def log_mass(lam: float) -> float:
        return float(logsumexp(lengths * (r - lam) / beta - log_zg))

    # At lam_lo the largest term is exp(0) (mass >= 1); at lam_hi every term is <= 1/n.
    lam_lo = float(np.max(r - beta * log_zg / lengths))
    lam_hi = float(np.max(r + beta * (np.log(r.size) - log_zg) / lengths))
    pad = 1e-9 * (1.0 + abs(lam_lo) + abs(lam_hi))  # guards against rounding at the ends
    lam = brentq(log_mass, lam_lo - pad, lam_hi + pad, xtol=1e-14)
    for _ in range(3):  # Newton polish: d log_mass / d lam = -E_pi[|y|]/beta
        pi = np.exp(lengths * (r - lam) / beta - log_zg - log_mass(lam))
        lam += log_mass(lam) / (pi @ lengths / beta)
    return lam


def length_normalised_optimum(r, lengths, beta: float) -> tuple[np.ndarray, float]:
    """argmax_pi E_pi[r(y) - (beta/|y|) log pi(y)] and its multiplier lambda (2. above).

    log pi(y) = |y| (r(y) - lambda)/beta - 1: the substituted Gibbs policy at the offset
    c = -lambda where log Z_g = 1. Args as :func:`substituted_gibbs`.
    Returns (pi of shape (n,), lambda in reward units).
    """
    r, lengths = _inputs(r, lengths, beta)
    lam = _multiplier(r, lengths, beta, 1.0)
    return np.exp(lengths * (r - lam) / beta - 1.0), lam


def simpo_objective(pi, r, lengths, beta: float) -> float:
    """J'(pi) = E_pi[ r(y) + (beta/|y|) (1 - log pi(y)) ]  (notebook 02, 3. above). Reward units.

    The length-normalised entropy objective plus a shortness bonus E_pi[beta/|y|].
    """
    pi = as_probs("pi", pi)
    r, lengths = _inputs(r, lengths, beta)
    return length_normalised_objective(pi, r, lengths, beta) + float(pi @ (beta / lengths))


def simpo_optimum(r, lengths, beta: float) -> tuple[np.ndarray, float]:
    """argmax_pi J'(pi) and its multiplier lambda (3. above): SimPO's exact objective.

    log pi(y) = |y| (r(y) - lambda)/beta: the substituted Gibbs policy at the offset c* = -lambda
    where log Z_g = 0, so r(y) = (beta/|y|) log pi(y) + lambda and SimPO's logit (gamma = 0) is
    the reward gap exactly. Args as :func:`substituted_gibbs`.
    Returns (pi of shape (n,), lambda in reward units).
    """
    r, lengths = _inputs(r, lengths, beta)
    lam = _multiplier(r, lengths, beta, 0.0)
    return np.exp(lengths * (r - lam) / beta), lam


def length_offset_logit(pi, lengths, beta: float, w, l):
    """(beta/|y_w|) log pi(y_w) - (beta/|y_l|) log pi(y_l) + beta (1/|y_w| - 1/|y_l|).

    At pi = :func:`length_normalised_optimum` this equals r(y_w) - r(y_l) exactly (notebook 02,
    the book's derivation): SimPO's logit with the margin -gamma replaced by the length offset
    beta (1/|y_w| - 1/|y_l|). Reward units, shape of ``w``.
    """
    _, lengths = _inputs(np.zeros(np.size(lengths)), lengths, beta)
    w, l = np.asarray(w), np.asarray(l)
    offset = beta * (1.0 / lengths[w] - 1.0 / lengths[l])
    return simpo_logit(pi, lengths, beta, w, l) + offset


def oriented_pairs(r) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of responses once, oriented so that y_w has the higher reward (notebook 02).

    Args: r, rewards (n,). Returns (w, l), int arrays of shape (n (n - 1)/2,).
    """
    r = as_vector("r", r)
    w, l = (a.ravel() for a in np.triu_indices(r.size, 1))
    swap = r[w] < r[l]
    return np.where(swap, l, w), np.where(swap, w, l)


# ---- what SimPO's likelihood identifies (notebook 02, 4. above) -----------------------------


def pair_cross_entropy(score, w, l, p_w) -> float:
    """Mean over pairs of  -p log sigmoid(s_w - s_l) - (1 - p) log sigmoid(s_l - s_w)  (nats).

    The expected reference-free Bradley-Terry loss when y_w wins with probability p_w. Args:
    score (n,), reward units: (beta/|y|) log pi(y) for SimPO (gamma = 0), alpha log pi(y) for
    MaxEnt-BT; only the entries at w, l are read (others may be -inf); w, l, p_w of shape (m,).
    """
    score = np.asarray(score, dtype=np.float64)
    s = score[np.asarray(w)] - score[np.asarray(l)]
    p = np.asarray(p_w, dtype=np.float64)
    return float(np.mean(p * np.logaddexp(0.0, -s) + (1.0 - p) * np.logaddexp(0.0, s)))


def fit_simpo(lengths, beta: float, w, l, p_w, init_logits) -> np.ndarray:
    """log pi minimising SimPO's expected loss (gamma = 0) over the pairs (w, l), by L-BFGS.

    pi = softmax(theta) over all n responses, so the fit is normalised on the whole space;
    the gradient is analytic. Args: lengths (n,); beta > 0; w, l, p_w as
    :func:`pair_cross_entropy`; init_logits (n,), the starting theta. Returns log pi (n,), nats.
    """
    _, lengths = _inputs(np.zeros(np.size(lengths)), lengths, beta)
    w, l = _pair_index("w", w, lengths.size), _pair_index("l", l, lengths.size)
    p = np.asarray(p_w, dtype=np.float64)
    dw, dl = beta / lengths[w], beta / lengths[l]

    def loss_and_grad(theta):
        logp = theta - logsumexp(theta)
        s = dw * logp[w] - dl * logp[l]
        loss = np.sum(p * np.logaddexp(0.0, -s) + (1.0 - p) * np.logaddexp(0.0, s))
        g = expit(s) - p  # d loss / d s, per pair
        grad = np.bincount(w, g * dw, lengths.size) - np.bincount(l, g * dl, lengths.size)
        return loss, grad - np.sum(g * (dw - dl)) * np.exp(logp)  # d logsumexp / d theta = pi

    theta0 = as_vector("init_logits", init_logits, size=lengths.size)
    opts = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000}
    best = minimize(loss_and_grad, theta0, jac=True, method="L-BFGS-B", options=opts)
    return best.x - logsumexp(best.x)


def support_fit(r, temps, support, c: float | None = None) -> tuple[np.ndarray, float]:
    """A minimiser of the reference-free BT loss on the pairs within ``support`` (notebook 02).

    With preferences from BT(r) on every pair within the support, the expected loss of the score
    temps(y) log pi(y) is minimal exactly where temps(y) log pi(y) = r(y) + c on the support, one
    c for all (the pairs connect the support), and pi is a probability only while
    sum_support exp((r + c)/temps) <= 1, i.e. c <= c_max. Every such c gives the same loss; the
    mass 1 - pi(support) is spread evenly off the support. Args: r (n,); temps (n,) > 0, reward
    units per nat: beta/|y| for SimPO, one alpha for MaxEnt-BT; support, indices; c <= c_max
    (None: c_max, all mass on the support, log pi = -inf off it).
    Returns (log pi of shape (n,), c).
    """
    r = as_vector("r", r)
    temps = as_vector("temps", temps, size=r.size)
    if np.any(temps <= 0):
        raise ValueError(f"temps must be > 0, got min {temps.min()}")
    s = _pair_index("support", support, r.size)
    c_max = -_multiplier(r[s], 1.0 / temps[s], 1.0, 0.0)  # sum_S exp((r + c)/temps) = 1
    c = c_max if c is None else c
    check_range("c", c, None, c_max + 1e-12)
    logp = np.empty(r.size)
    logp[s] = (r[s] + c) / temps[s]
    rest = np.setdiff1d(np.arange(r.size), s)
    with np.errstate(divide="ignore"):  # all mass on the support: log 0 = -inf off it
        spare = np.log(max(0.0, -np.expm1(logsumexp(logp[s]))))
    logp[rest] = spare - np.log(max(rest.size, 1))
    return logp, float(c)


def stratified_support(lengths, share: float, rng: np.random.Generator) -> np.ndarray:
    """A random ``share`` of each length's responses (at least one each), sorted indices.

    The partial data set of notebook 02: every length present, so a length prior is visible.
    """
    check_range("share", share, 0.0, 1.0, low_inclusive=False)
    lengths = np.asarray(lengths)
    picks = []
    for n in np.unique(lengths):
        same = np.flatnonzero(lengths == n)
        picks.append(rng.choice(same, max(1, round(share * same.size)), replace=False))
    return np.sort(np.concatenate(picks))


def conditional_gap(logp_a, logp_b, support) -> float:
    """max_{y in support} |log pi_a(y | support) - log pi_b(y | support)|, nats."""
    s = np.asarray(support)
    a, b = np.asarray(logp_a)[s], np.asarray(logp_b)[s]
    return float(np.max(np.abs((a - logsumexp(a)) - (b - logsumexp(b)))))


# ---- chapter 09's claim: what is exact in "SimPO is MaxEnt RL" ------------------------------


@dataclass(frozen=True)
class SimpoMaxentCheck:
    """The numbers behind "SimPO is MaxEnt RL with a length-normalised temperature" (notebook 02).

    All gaps are losses in nats, maxima over the preference pairs with |y_w| != |y_l| (oriented
    by reward), at the policy named in each field.
    """

    pairs: int  # preference pairs with |y_w| != |y_l|
    jprime_gap: float  # |SimPO loss (gamma = 0) - BT loss of r| at argmax J': float64 zero
    no_bonus_gap: float  # the same at argmax E_pi[r - (beta/|y|) log pi] (no shortness bonus)
    constant_alpha_gap: float  # min over one alpha of |MaxEnt-BT loss - SimPO loss| at argmax J'
    best_alpha: float  # the alpha attaining it, reward units per nat
    margin_mass: float  # max sigmoid(s - gamma) + sigmoid(-s - gamma) over pairs: 1 iff gamma = 0


def simpo_maxent_check(r, lengths, beta: float, gamma: float = 0.0) -> SimpoMaxentCheck:
    """SimPO against J', the length-normalised objective and constant-alpha MaxEnt-BT (3. above).

    Args: r, rewards (n,); lengths (n,), which must not all be equal; beta > 0; gamma >= 0,
    SimPO's margin (read only by ``margin_mass``). SimPO's loss is :func:`losses.simpo_loss`.
    """
    check_range("gamma", gamma, 0.0, None)
    r, lengths = _inputs(r, lengths, beta)
    w, l = oriented_pairs(r)
    keep = lengths[w] != lengths[l]
    if not keep.any():
        raise ValueError("lengths must not all be equal: the check is on unequal-length pairs")
    w, l = w[keep], l[keep]
    bt_loss = -np.log(exact.bt_prob(r[w], r[l]))

    def simpo(pi):  # SimPO's loss, gamma = 0, on the average log-probs of pi
        avg = torch.tensor(np.log(pi) / lengths)
        return losses.simpo_loss(avg[w], avg[l], beta).numpy()

    pi_j, _ = simpo_optimum(r, lengths, beta)
    pi_ln, _ = length_normalised_optimum(r, lengths, beta)
    target = simpo(pi_j)
    d = np.log(pi_j[w]) - np.log(pi_j[l])  # MaxEnt-BT's logit is alpha d

    def alpha_gap(log_alpha):  # quasi-convex in log alpha: each term is monotone minus a constant
        return float(np.max(np.abs(np.logaddexp(0.0, -np.exp(log_alpha) * d) - target)))

    best = minimize_scalar(alpha_gap, bounds=(-12.0, 12.0), method="bounded")
    s = simpo_logit(pi_j, lengths, beta, w, l)  # both orders, each with the margin -gamma
    mass = expit(s - gamma) + expit(-s - gamma)
    return SimpoMaxentCheck(
        pairs=int(w.size),
        jprime_gap=float(np.max(np.abs(target - bt_loss))),
        no_bonus_gap=float(np.max(np.abs(simpo(pi_ln) - bt_loss))),
        constant_alpha_gap=float(best.fun),
        best_alpha=float(np.exp(best.x)),
        margin_mass=float(np.max(mass)),
    )
