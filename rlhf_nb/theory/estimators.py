"""KL and entropy estimators, and their exact moments and gradients (notebook 03).

Per-sample KL estimators (Schulman, "Approximating KL divergence", 2020), for y ~ pi and
log-ratio  d = log ref(y) - log pi(y)  (nats):

* k1 = -d = log(pi/ref)             unbiased, can be negative, high variance;
* k2 = d^2 / 2                      biased, low variance, >= 0;
* k3 = (e^d - 1) - d = ref/pi - 1 - log(ref/pi)   unbiased, >= 0, low variance near ref.

All three work elementwise on NumPy arrays or torch tensors of any (equal) shape: per token
(nats per token) or per sequence (nats per sequence), whichever the log-probs are.

On a categorical pi every moment of every estimator is a finite sum, so the bias, the variance
and the gradient each estimator induces are computed *exactly* here, not sampled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.optimize import brentq

from rlhf_nb.core import check_choice, check_range, check_type
from rlhf_nb.theory.exact import as_probs, kl_divergence, maxent_policy

ESTIMATORS = ("k1", "k2", "k3")
PLACEMENTS = ("reward", "loss")


def _log_ratio(logp, ref_logp):
    if tuple(np.shape(logp)) != tuple(np.shape(ref_logp)):
        raise ValueError(
            f"logp and ref_logp must have equal shapes, got {np.shape(logp)}, {np.shape(ref_logp)}"
        )
    return ref_logp - logp


def _exp(x):
    return torch.exp(x) if isinstance(x, torch.Tensor) else np.exp(x)


def k1(logp, ref_logp):
    """k1 = log pi(y) - log ref(y), elementwise; unbiased for KL(pi||ref) under y ~ pi. Nats."""
    return -_log_ratio(logp, ref_logp)


def k2(logp, ref_logp):
    """k2 = (log pi(y) - log ref(y))^2 / 2, elementwise; biased, >= 0. Nats."""
    return 0.5 * _log_ratio(logp, ref_logp) ** 2


def k3(logp, ref_logp):
    """k3 = ref(y)/pi(y) - 1 - log(ref(y)/pi(y)), elementwise; unbiased, >= 0. Nats."""
    d = _log_ratio(logp, ref_logp)
    return (_exp(d) - 1.0) - d


def exact_kl(p, q) -> float:
    """KL(p || q) = sum_y p(y) log(p(y)/q(y)) for categoricals of shape (n,), nats.

    The quantity k1/k2/k3 estimate; same as :func:`rlhf_nb.theory.exact.kl_divergence`.
    """
    return kl_divergence(p, q)


def estimator_moments(p, q) -> dict[str, tuple[float, float]]:
    """Exact (mean, variance) of k1, k2, k3 for one sample y ~ p, against ref q (notebook 03).

    Args: p, q, probabilities of shape (n,), q > 0 where p > 0.
    Returns ``{"k1": (mean, var), ...}`` in nats and nats^2; bias = mean - exact_kl(p, q).
    """
    p, q = as_probs("p", p), as_probs("q", q)
    nz = p > 0
    lp, lq, w = np.log(p[nz]), np.log(q[nz]), p[nz]
    out = {}
    with np.errstate(over="ignore", invalid="ignore"):
        for name, k in zip(ESTIMATORS, (k1, k2, k3), strict=True):
            v = k(lp, lq)
            mean = float(w @ v)
            if name == "k3":  # E[ref/pi - 1 - d] in closed form: ref/pi overflows where pi ~ 0
                mean = float(q[nz].sum() - w.sum() + w @ (lp - lq))
            # an overflowing second moment is reported as inf: the variance really is that large
            var = float(w @ (v - mean) ** 2)
            out[name] = (mean, var if np.isfinite(var) else float("inf"))
    return out


def path_kl_limit(theta0, direction) -> float:
    """sup_t KL(pi_t || pi_0) along pi_t = softmax(theta0 + t * direction), t >= 0. Nats.

    d/dt KL(pi_t || pi_0) = t * Var_{pi_t}(direction) >= 0, so KL grows monotonically along the
    ray, towards pi_inf = pi_0 restricted to argmax(direction): KL -> -log pi_0(argmax set).
    """
    direction = np.asarray(direction, float)
    top = direction >= direction.max() - 1e-12
    return float(-np.log(maxent_policy(theta0, 1.0)[top].sum()))


def path_point_at_kl(theta0, direction, kl: float) -> np.ndarray:
    """The policy pi_t = softmax(theta0 + t * direction) whose KL(pi_t || pi_0) equals ``kl``.

    Solves for t >= 0 by bracketing (KL is monotone in t, see :func:`path_kl_limit`); lets
    estimators be compared at equal *distance* from the reference, whatever the random draw.
    Raises ValueError when ``kl`` is not below the ray's limit. Returns probabilities (n,).
    """
    theta0, direction = np.asarray(theta0, float), np.asarray(direction, float)
    limit = path_kl_limit(theta0, direction)
    if not 0.0 <= kl < limit:
        raise ValueError(f"kl must be in [0, {limit:.4g}) on this path (its limit), got {kl}")
    ref = maxent_policy(theta0, 1.0)

    def policy(t: float) -> np.ndarray:
        return maxent_policy(theta0 + t * direction, 1.0)

    hi = 1.0
    while exact_kl(policy(hi), ref) < kl:
        hi *= 2.0
    return policy(brentq(lambda t: exact_kl(policy(t), ref) - kl, 0.0, hi, xtol=1e-12))


def moments_on_random_paths(kls, *, n_paths: int, size: int, rng) -> pd.DataFrame:
    """Exact estimator moments at fixed distances ``kls`` from the reference, on random paths.

    Draws ``n_paths`` (theta0, direction) pairs, each N(0, 1) of shape (size,), and on each
    path evaluates :func:`estimator_moments` at every KL in ``kls`` it can reach (paths whose
    limit is below a target skip it; the ``reached`` column counts them). One draw says little
    about an estimator; the spread over draws says what holds in general.

    Returns a long DataFrame: path, kl (target, nats), estimator, bias = E[k] - KL (nats),
    rel_bias = bias / KL, std (nats).
    """
    check_type("n_paths", n_paths, int)
    check_range("n_paths", n_paths, 1, None)
    check_type("size", size, int)
    check_range("size", size, 2, None)
    kls = [float(k) for k in kls]
    if not kls or min(kls) <= 0:
        raise ValueError(f"kls must be a non-empty list of positive distances (nats), got {kls}")
    rows = []
    for path in range(n_paths):
        theta0, direction = rng.normal(0, 1, size), rng.normal(0, 1, size)
        ref, limit = maxent_policy(theta0, 1.0), path_kl_limit(theta0, direction)
        for kl in kls:
            if kl >= limit:
                continue
            pi = path_point_at_kl(theta0, direction, kl)
            for name, (mean, var) in estimator_moments(pi, ref).items():
                rows.append(
                    dict(
                        path=path,
                        kl=kl,
                        estimator=name,
                        bias=mean - kl,
                        rel_bias=(mean - kl) / kl,
                        std=float(np.sqrt(var)),
                    )
                )
    return pd.DataFrame(rows)


def paths_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per distance of a :func:`moments_on_random_paths` table: how many paths reach it
    (``paths``), the median of |k2 bias| / KL, the median of sd(k3) / sd(k1), and the share of
    paths where k3 is the noisier estimator (``share k3 noisier``). Indexed by ``kl`` (nats)."""
    wide = table.pivot_table(index=["kl", "path"], columns="estimator", values=["rel_bias", "std"])
    ratio = wide["std"]["k3"] / wide["std"]["k1"]
    by_kl = wide.groupby(level="kl")
    return pd.DataFrame({
        "paths": by_kl.size(),
        "|k2 bias|/KL": wide["rel_bias"]["k2"].abs().groupby(level="kl").median(),
        "sd k3/sd k1": ratio.groupby(level="kl").median(),
        "share k3 noisier": (ratio > 1).groupby(level="kl").mean(),
    })  # fmt: skip


def kl_gradient(theta, ref_logp, estimator: str, placement: str) -> torch.Tensor:
    """Exact expected gradient w.r.t. logits theta of a KL estimator's surrogate (notebook 03).

    Policy pi = softmax(theta), shape (n,); y ~ pi, samples held fixed (stop-gradient), as in
    practice. Two places to put an estimator k(y):

    * ``"reward"``: subtracted from the reward, so it reaches theta only through REINFORCE,
      surrogate = sg[k(y)] * log pi(y)  (gradient E[k grad log pi]);
    * ``"loss"``: added to the loss and differentiated directly, surrogate = k(y) with its
      dependence on log pi(y) kept (gradient E[grad k]).

    Both expectations over y ~ pi are exact sums (weights pi detached). Compare with
    grad KL(pi||ref) = pi * (log pi - log ref - KL). Args: theta, ref_logp, float64 tensors (n,).
    Returns a tensor of shape (n,).
    """
    check_choice("estimator", estimator, ESTIMATORS)
    check_choice("placement", placement, PLACEMENTS)
    if theta.shape != ref_logp.shape or theta.ndim != 1:
        raise ValueError(
            f"theta and ref_logp must be 1-D of equal shape, got {theta.shape}, {ref_logp.shape}"
        )
    theta = theta.detach().clone().requires_grad_(True)
    logp = torch.log_softmax(theta, dim=0)
    weights = logp.exp().detach()  # the sampling distribution: no gradient flows through it
    k = {"k1": k1, "k2": k2, "k3": k3}[estimator](logp, ref_logp)
    surrogate = k.detach() * logp if placement == "reward" else k
    (grad,) = torch.autograd.grad((weights * surrogate).sum(), theta)
    return grad


def true_kl_gradient(theta, ref_logp, direction: str = "reverse") -> torch.Tensor:
    """grad_theta of KL(pi||ref) ("reverse") or KL(ref||pi) ("forward"), pi = softmax(theta).

    Autograd through the exact sum; the reference both k-estimator gradients are compared with.
    """
    check_choice("direction", direction, ("reverse", "forward"))
    theta = theta.detach().clone().requires_grad_(True)
    logp = torch.log_softmax(theta, dim=0)
    if direction == "reverse":
        kl = (logp.exp() * (logp - ref_logp)).sum()
    else:
        kl = (ref_logp.exp() * (ref_logp - logp)).sum()
    (grad,) = torch.autograd.grad(kl, theta)
    return grad


def sequence_entropy_sample(seq_logp):
    """Entropy estimate -log pi(y) for sampled sequences y ~ pi, elementwise (notebook 03).

    Unbiased for the sequence-level entropy H(pi), nats per sequence. seq_logp: shape (N,).
    """
    return -seq_logp


def token_entropy_sum(step_logits, mask):
    """sum_t H(pi(. | y_<t)) along sampled sequences: exact per-step entropies (notebook 03).

    Unbiased for H(pi) by the chain rule; the randomness of each drawn token is averaged out,
    which usually (not always: each term conditions on a different prefix) lowers the variance
    relative to -log pi(y). step_logits: (N, T, V); mask: (N, T), 1 on real steps.
    NumPy or torch. Returns shape (N,), nats per sequence.
    """
    if tuple(np.shape(step_logits))[:2] != tuple(np.shape(mask)):
        raise ValueError(
            f"mask must have shape (N, T) = {np.shape(step_logits)[:2]}, got {np.shape(mask)}"
        )
    if isinstance(step_logits, torch.Tensor):
        logp = torch.log_softmax(step_logits, dim=-1)
        h = -(logp.exp() * logp).sum(-1)
        return (h * mask).sum(-1)
    from scipy.special import log_softmax

    logp = log_softmax(np.asarray(step_logits, dtype=np.float64), axis=-1)
    h = -np.sum(np.exp(logp) * logp, axis=-1)
    return np.sum(np.where(np.asarray(mask, dtype=bool), h, 0.0), axis=-1)
