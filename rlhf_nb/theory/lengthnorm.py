"""SimPO's length-normalised temperature alpha_y = beta/|y|, computed exactly (notebook 02).

Two different policies carry the name "MaxEnt with temperature beta/|y|"; both are computed here.
Units: beta is SimPO's, in reward units per (nat/token) (it scales a per-token average
log-probability), so beta/|y| is a temperature in reward units per nat, like alpha.

1. The *substituted Gibbs policy* (the paper's step, and the reviewers' objection).
   Substituting alpha_y = beta/|y| into pi*(y) = exp(r(y)/alpha)/Z gives
   pi_g(y) = exp(|y| r(y)/beta) / Z_g, i.e.  r(y) = (beta/|y|) log pi_g(y) + (beta/|y|) log Z_g.
   In the Bradley-Terry difference r(y_w) - r(y_l) the log Z_g terms then carry different
   weights, and the residual  beta (1/|y_w| - 1/|y_l|) log Z_g  survives unless |y_w| = |y_l|.

2. The *optimum of the length-normalised entropy objective* (this book's own derivation, not
   the paper's):  max_pi  E_pi[ r(y) - (beta/|y|) log pi(y) ]  subject to sum_y pi(y) = 1.
   The objective is concave; its stationarity condition is
   r(y) - (beta/|y|) (log pi(y) + 1) = lambda  for every y, so
   log pi(y) = |y| (r(y) - lambda)/beta - 1, with lambda fixed by sum_y pi(y) = 1 (1-D root).
   Lambda is one constant for all y, so it cancels in r(y_w) - r(y_l), leaving the exact logit
   (beta/|y_w|) log pi(y_w) - (beta/|y_l|) log pi(y_l) + beta (1/|y_w| - 1/|y_l|).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import logsumexp

from rlhf_nb.core import check_range
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


def length_normalised_optimum(r, lengths, beta: float) -> tuple[np.ndarray, float]:
    """argmax_pi E_pi[r(y) - (beta/|y|) log pi(y)] and its multiplier lambda (2. above).

    Solves log sum_y exp(|y| (r(y) - lambda)/beta - 1) = 0 for lambda: the left side falls
    strictly in lambda, so the root is bracketed and found by Brent's method, then polished by
    Newton steps to ~1e-15. Args as :func:`substituted_gibbs`.
    Returns (pi of shape (n,), lambda in reward units).
    """
    r, lengths = _inputs(r, lengths, beta)

    def log_mass(lam: float) -> float:
        return float(logsumexp(lengths * (r - lam) / beta - 1.0))

    # At lam_lo the largest term is exp(0) (mass >= 1); at lam_hi every term is <= 1/n.
    lam_lo = float(np.max(r - beta / lengths))
    lam_hi = float(np.max(r + beta * (np.log(r.size) - 1.0) / lengths))
    pad = 1e-9 * (1.0 + abs(lam_lo) + abs(lam_hi))  # guards against rounding at the ends
    lam = brentq(log_mass, lam_lo - pad, lam_hi + pad, xtol=1e-14)
    for _ in range(3):  # Newton polish: d log_mass / d lam = -E_pi[|y|]/beta
        pi = np.exp(lengths * (r - lam) / beta - 1.0 - log_mass(lam))
        lam += log_mass(lam) / (pi @ lengths / beta)
    logp = lengths * (r - lam) / beta - 1.0
    return np.exp(logp), lam


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
