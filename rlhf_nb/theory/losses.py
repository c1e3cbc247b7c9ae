"""Preference losses as pure tensor functions of sequence log-probabilities (notebook 02).

Each returns per-pair losses of shape (B,) in nats (take ``.mean()`` for the batch loss, as TRL
does). Inputs are sequence log-probabilities log pi(y|x) of shape (B,): *summed* over the
response tokens (nats per sequence) unless the name says ``avg`` (mean over the response
tokens, nats per token). ``tests/test_losses.py`` checks each against TRL on the same inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhf_nb.core import check_range


def _same_shape(**tensors: torch.Tensor) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"log-prob tensors must have equal shapes (B,), got {shapes}")


def _positive(name: str, value: float) -> None:
    check_range(name, value, 0.0, None, low_inclusive=False)


def sequence_logps(
    token_logps: torch.Tensor, mask: torch.Tensor, average: bool = False
) -> torch.Tensor:
    """log pi(y) = sum_t mask_t log pi(y_t|y_<t) (or its mean over the unmasked tokens).

    Args: token_logps, (B, T) nats per token; mask, (B, T) 1 on response tokens, >= 1 per row.
    Returns (B,): nats per sequence (``average=False``) or nats per token (``average=True``,
    SimPO's length-normalised log-probability).
    """
    _same_shape(token_logps=token_logps, mask=mask)
    mask = mask.to(token_logps.dtype)
    total = (token_logps * mask).sum(-1)
    if not average:
        return total
    n = mask.sum(-1)
    if torch.any(n < 1):
        raise ValueError("mask must mark at least one response token in every row to average")
    return total / n


def dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta: float):
    """DPO:  -log sigmoid( beta [ (log pi_w - log ref_w) - (log pi_l - log ref_l) ] ).

    Rafailov et al. 2023, eq. 7; notebook 02, "DPO from KL-constrained RL". All inputs (B,)
    summed log-probs (nats per sequence); beta > 0. Returns (B,).
    """
    _positive("beta", beta)
    _same_shape(
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    logits = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * logits)


def simpo_loss(chosen_avg_logps, rejected_avg_logps, beta: float, gamma: float = 0.0):
    """SimPO:  -log sigmoid( beta (avg log pi_w - avg log pi_l) - gamma ).

    Meng et al. 2024, eq. 6; notebook 02. Inputs (B,) *average* log-probs (nats per token), i.e.
    (1/|y|) log pi(y); beta > 0 in reward units per (nat/token), since it scales a per-token
    average; gamma >= 0 the target reward margin (reward units). Returns (B,).
    Fed *summed* log-probs with gamma = 0 it is :func:`maxent_bt_loss` with alpha = beta.
    With gamma = 0 it is exactly the Bradley-Terry likelihood of the objective
    E_pi[r + (beta/|y|)(1 - log pi)] (``lengthnorm.simpo_optimum``, notebook 02, section 6);
    with gamma > 0 it is no likelihood: sigmoid(s - gamma) + sigmoid(-s - gamma) < 1.
    """
    _positive("beta", beta)
    check_range("gamma", gamma, 0.0, None)
    _same_shape(chosen_avg_logps=chosen_avg_logps, rejected_avg_logps=rejected_avg_logps)
    return -F.logsigmoid(beta * (chosen_avg_logps - rejected_avg_logps) - gamma)


def maxent_bt_loss(chosen_logps, rejected_logps, alpha: float):
    """Reference-free MaxEnt Bradley-Terry loss:  -log sigmoid( alpha (log pi_w - log pi_l) ).

    Notebook 02: substituting r = alpha log pi* + alpha log Z into Bradley-Terry (Z cancels).
    Equals :func:`dpo_loss` with a uniform reference (ref_w = ref_l) and beta = alpha.
    Inputs (B,) summed log-probs (nats per sequence); alpha > 0. Returns (B,).
    """
    _positive("alpha", alpha)
    _same_shape(chosen_logps=chosen_logps, rejected_logps=rejected_logps)
    return -F.logsigmoid(alpha * (chosen_logps - rejected_logps))


def pl_loss(ranked_logps, alpha: float):
    """Plackett-Luce loss  -sum_k [ s_k - log sum_{j>=k} exp s_j ],  s = alpha log pi (notebook 02).

    The MaxEnt reparameterisation in a K-way ranking; Z cancels as in Bradley-Terry, and K = 2
    gives :func:`maxent_bt_loss`. ranked_logps: (B, K) summed log-probs, best response first;
    alpha > 0. Returns (B,) nats.
    """
    _positive("alpha", alpha)
    if ranked_logps.ndim != 2 or ranked_logps.shape[1] < 2:
        raise ValueError(
            f"ranked_logps must have shape (B, K) with K >= 2, got {tuple(ranked_logps.shape)}"
        )
    s = alpha * ranked_logps
    # log sum_{j >= k} exp s_j for every k: reverse cumulative logsumexp
    tails = torch.logcumsumexp(s.flip(-1), dim=-1).flip(-1)
    return -(s - tails)[:, :-1].sum(-1)  # the last term is s_K - s_K = 0
