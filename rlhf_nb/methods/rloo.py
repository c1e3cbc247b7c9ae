"""The RLOO update of chapter 05, steps 4-6: shaped reward, leave-one-out advantages, the loss.

Pure functions of tensors (no model, no testbed), so that each equation can be read, shown in the
chapter (``inspect.getsource``) and tested on its own; :mod:`rlhf_nb.methods.online` runs them in
its loop. Shapes: ``N = P·k`` samples, prompt-major (the k samples of a prompt are adjacent);
per-token quantities are ``[N, T-1]`` with a response mask of the same shape.
"""

from __future__ import annotations

import math

import torch

from rlhf_nb.methods.online_config import OnlineConfig
from rlhf_nb.theory import estimators


def shaped_reward(r, seq_logp, k1_seq, alpha: float, beta: float) -> torch.Tensor:
    """R = r - α·log π(y|x) - β·Σ_t log(π/π_ref), per sample [N], everything detached.

    With y ~ π, -log π(y|x) is an unbiased sample of the sequence entropy H(π(·|x)), so REINFORCE
    on R ascends E[r] + α·H(π) - β·KL(π||π_ref): the MaxEnt objective of notebook 01 (β = 0) or
    the KL-regularised one (α = 0, k1 estimator of notebook 03). The gradient is exact, not only
    the value: ∇E[f] = E[f·∇log π] + E[∇f], and here E[∇f] = -(α + β)·E[∇log π] = 0 because α
    and β are constants (``rlhf_nb.theory.surrogates``). With a per-response weight such as
    ``entropy_norm``'s α/|y| that term is not zero (:func:`remedy_terms`).
    """
    return r - alpha * seq_logp.detach() - beta * k1_seq.detach()


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """A_i = R_i - (1/(k-1)) Σ_{j≠i} R_j within each group of ``k`` samples of one prompt.

    ``rewards``: [P·k] (prompt-major). Sums to zero per prompt (Ahmadian et al. 2024, eq. 7).
    """
    r = rewards.view(-1, k)
    baseline = (r.sum(dim=1, keepdim=True) - r) / (k - 1)
    return (r - baseline).reshape(-1)


def rloo_loss(r, logp, ent, ref_logp, mask, k: int, coef: dict[str, float], anchor_logp=None):
    """Steps 4-6: the regularised REINFORCE-leave-one-out loss of one batch.

    With seq_logp = Σ_t log π(y_t|·) (nats/sequence) and k1 = Σ_t log π/π_ref (nats/sequence):

    4. shaped reward  R = r - α_seq·log π(y|x) - β·k1   (detached; :func:`shaped_reward`),
       plus the remedies of chapter 07 when switched on (:func:`remedy_terms`);
    5. advantages     A_i = R_i - mean_{j≠i} R_j over the k samples of a prompt
       (:func:`rloo_advantages`);
    6. loss           L = -mean_i A_i·seq_logp_i - α_tok·H̄_tok + β_loss·k̄3_tok,

    where H̄_tok and k̄3_tok are token means over the batch's response tokens: the per-token
    entropy term (TRL's ``entropy_coef``; its gradient flows through the logits at the visited
    states only) and the k3 KL term (GRPO's; with the visited states held fixed its expected
    gradient is the state-frozen forward KL's, Σ_s ρ(s)·∇KL(π_ref(·|s)‖π(·|s)), not
    ∇KL(π‖π_ref): notebook 03, §2). ``coef`` holds ``alpha_seq`` (reward units per nat
    of sequence log-prob), ``alpha_tok`` (loss units per nat of mean token entropy), ``beta_rew``
    and ``beta_loss`` (per nat of KL), zero when the regulariser is off.

    ``anchor_logp``: the per-token log-probs of the KL penalties' reference when it is not
    π_ref itself (a mixed reference, :func:`mixed_reference`); the logged ``kl_k1``/``kl_k3``
    stay the KL to π_ref (the SFT policy), the frontier's axis, whatever the anchor.

    Returns ``(loss, terms)``, ``terms`` the detached per-batch quantities the history logs.
    """
    seq_logp = (logp * mask).sum(-1)  # log π(y|x), nats/sequence
    k1_seq = ((logp.detach() - ref_logp) * mask).sum(-1)  # Σ_t log π/π_ref
    k3_tok = estimators.k3(logp, ref_logp)  # per token, nats
    k1_pen, k3_pen = k1_seq, k3_tok
    if anchor_logp is not None:  # penalties against the anchor, logs against π_ref
        k1_pen = ((logp.detach() - anchor_logp) * mask).sum(-1)
        k3_pen = estimators.k3(logp, anchor_logp)
    shaped = shaped_reward(r, seq_logp, k1_pen, coef["alpha_seq"], coef["beta_rew"])
    if coef.get("alpha_norm", 0.0) or coef.get("length", 0.0):
        shaped = shaped - remedy_terms(seq_logp, mask, coef)
    adv = rloo_advantages(shaped, k)
    loss = -(adv * seq_logp).mean()
    loss = (loss - coef["alpha_tok"] * _token_mean(ent, mask)
            + coef["beta_loss"] * _token_mean(k3_pen, mask))  # fmt: skip
    terms = {
        "kl_k1": k1_seq.mean().item(),
        "kl_k3": (k3_tok.detach() * mask).sum(-1).mean().item(),
        "entropy_token": _token_mean(ent.detach(), mask).item(),
        "entropy_seq": -seq_logp.mean().item(),
        "reward_shaped": shaped.mean().item(),
    }
    return loss, terms


def remedy_terms(seq_logp, mask, coef: dict[str, float]) -> torch.Tensor:
    """What the chapter-07 remedies subtract from the reward, per sample [N], detached:

        α_norm·log π(y|x)/|y|  +  c·|y|,

    the length-normalised entropy bonus (−(α/|y|)·log π(y|x) is paid, chapter 02/03's
    token-averaged form) and the length penalty, with |y| the response tokens (EOS included).

    Paid as a detached reward whose weight α/|y| varies with the response, the bonus makes the
    update ascend J′ = E[r + (α/|y|)(1 − log π)] — SimPO's exact objective (chapter 02), entropy
    per token plus a shortness bonus α/|y| — not E[r − (α/|y|)·log π]: the two gradients differ
    by E[(α/|y|)·∇log π] ≠ 0 (``rlhf_nb.theory.surrogates.entropy_norm_gradients``)."""
    length = mask.sum(-1)
    return (coef.get("alpha_norm", 0.0) * seq_logp.detach() / length.clamp(min=1)
            + coef.get("length", 0.0) * length)  # fmt: skip


def coefficients(config: OnlineConfig) -> dict[str, float]:
    """The coefficients of :func:`rloo_loss` that ``config.regularizer`` switches on."""
    regs = set(config.regularizers)
    return {
        "alpha_seq": config.alpha if "entropy" in regs else 0.0,
        "alpha_tok": config.alpha if "entropy_token" in regs else 0.0,
        "beta_rew": config.beta if "kl" in regs else 0.0,
        "beta_loss": config.beta if "kl_loss" in regs else 0.0,
        "alpha_norm": config.alpha if "entropy_norm" in regs else 0.0,
        "length": config.length_coef if "length" in regs else 0.0,
    }


def mixed_reference(ref_logp: torch.Tensor, mix: float, vocab_size: int) -> torch.Tensor:
    """log of the per-token mixture λ·π_ref(y_t|·) + (1−λ)/V of the reference and the uniform
    policy over the V tokens, [N, T-1] (λ = ``mix``; λ = 1 returns ``ref_logp`` unchanged).

    At λ = 0 every token is scored against 1/V, so a k1 penalty summed over the response is
    β·(log π(y|x) + |y|·log V): MaxEnt with α = β plus a length cost β·log V per token, with the
    per-token uniform U_tok(y) = V^−|y| as anchor — not MaxEnt's uniform law over responses."""
    if mix == 1.0:
        return ref_logp
    uniform = torch.full_like(ref_logp, -math.log(vocab_size))
    if mix == 0.0:
        return uniform
    return torch.logaddexp(ref_logp + math.log(mix), uniform + math.log(1.0 - mix))


def adapt_alpha(alpha: float, entropy: float, target: float, rate: float) -> float:
    """One step of the adaptive entropy coefficient: α ← max(0, α + rate·(target − H̄_tok));
    the coefficient grows while the per-token entropy is below its target, shrinks above."""
    return max(0.0, alpha + rate * (target - entropy))


def _token_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of a per-token quantity [B, T-1] over all response tokens of the batch."""
    return (x * mask).sum() / mask.sum().clamp(min=1)
