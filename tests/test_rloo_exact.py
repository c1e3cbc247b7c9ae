"""Equivalence tests of the online RLOO loss (:mod:`rlhf_nb.methods.rloo`, chapter 05, steps 4-6).

1. **Expected RLOO gradient = exact gradient of the regularised objective.** On the enumerable
   space of :class:`~rlhf_nb.theory.sequences.SequenceSpace` (one prompt, V tokens incl. EOS, up
   to L tokens) a tabular policy has free logits θ (P prefixes × V). The objectives, in nats:

       entropy arm  J(θ) = E_π[r] + α·H(π)          (the loop pays −α·log π(y) in the reward),
       KL arm       J(θ) = E_π[r] − β·KL(π‖π_ref)   (the loop pays −β·Σ_t log π/π_ref).

   ∇J is autograd on the enumerated sum, float64. The RLOO estimator of one group of k i.i.d.
   samples τ = (y_1..y_k) is −∇L(τ), L = ``rloo_loss`` of that group; its expectation is
   Σ_τ P(τ)·(−∇L(τ)) over all S^k tuples, computed exactly: the repo's ``rloo_loss`` runs once on
   the batch of all tuples (S^k groups, prompt-major), ∂loss/∂logp [N, L] is its per-token weight
   (the advantages are detached), and each group's weight is scaled by S^k·P(τ). Since
   E[A_i ∇log π(y_i)] = E[R ∇log π] (the leave-one-out baseline is independent of y_i) and
   ∇(E[r] + α·H) = E[(r − α log π) ∇log π], the two agree to rounding. Flipping the
   regulariser's sign must break the match (so the test can fail).
2. **KL arm = TRL's ``RLOOTrainer`` on the same batch.** TRL 1.16 computes the advantages inside
   ``_generate_and_score_completions`` (not callable alone: it generates); those lines are copied
   verbatim below. Its loss is ``RLOOTrainer._compute_loss``, called unchanged on a stub trainer
   whose log-prob function returns our tensors.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rlhf_nb.methods.online_config import OnlineConfig
from rlhf_nb.methods.rloo import coefficients, rloo_advantages, rloo_loss, shaped_reward
from rlhf_nb.theory.sequences import SequenceSpace

ALPHA, BETA = 0.7, 0.4
F64 = torch.float64


def token_logps(space: SequenceSpace, theta: torch.Tensor, idx: np.ndarray):
    """Per-token log π(y_t|y_<t) [n, L] of the sequences ``idx`` (n,) under logits θ (P, V),
    the per-token entropy of π at the visited prefixes [n, L] (nats) and the response mask
    [n, L] (float; EOS included). Log-probs and entropies are 0 past |y|."""
    lp = torch.log_softmax(theta, dim=-1)
    prefix = torch.as_tensor(space.step_prefix[idx])
    mask = torch.as_tensor(space.mask[idx], dtype=F64)
    logp = lp[prefix, torch.as_tensor(space.step_token[idx])] * mask
    ent = -(lp.exp() * lp).sum(-1)[prefix] * mask
    return logp, ent, mask


def exact_objective(space, theta, ref_theta, r, arm: str) -> torch.Tensor:
    """J(θ) by enumerating all S sequences: E_π[r] + α·H(π) or E_π[r] − β·KL(π‖π_ref), nats."""
    every = np.arange(space.size)
    seq_logp = token_logps(space, theta, every)[0].sum(-1)  # log π(y), (S,)
    p = seq_logp.exp()
    if arm == "entropy":
        return p @ r - ALPHA * (p @ seq_logp)
    ref_seq = token_logps(space, ref_theta, every)[0].sum(-1)
    return p @ r - BETA * (p @ (seq_logp - ref_seq))


def expected_rloo_ascent(space, theta, ref_theta, r, k: int, coef: dict) -> torch.Tensor:
    """E_τ[−∇θ L(τ)] exactly, τ = k i.i.d. samples of π, L = ``rloo_loss`` of one group; (P, V).

    All G = S^k tuples form one prompt-major batch of N = G·k samples; ``rloo_loss`` averages the
    G group losses, so ∂L_τ/∂logp = G·∂loss/∂logp on τ's rows. With the advantages detached,
    ∇θ L_τ = Σ_n (∂L_τ/∂logp_n)·∇θ logp_n, weighted here by P(τ) = Π_i π(y_i) (held fixed)."""
    tuples = np.array(list(itertools.product(range(space.size), repeat=k)))  # (G, k)
    idx = tuples.reshape(-1)  # prompt-major: samples g·k .. g·k+k−1 are group g
    logp, ent, mask = token_logps(space, theta, idx)
    ref_logp = token_logps(space, ref_theta, idx)[0].detach()
    leaf = logp.detach().requires_grad_()  # the loop's log-probs, as the graph's input
    loss, _ = rloo_loss(r[idx], leaf, ent.detach(), ref_logp, mask, k, coef)
    (dloss,) = torch.autograd.grad(loss, leaf)  # [N, L]
    with torch.no_grad():
        seq_p = token_logps(space, theta, np.arange(space.size))[0].sum(-1).exp()
        p_tuple = seq_p[torch.as_tensor(tuples)].prod(1)  # (G,)
    assert abs(p_tuple.sum().item() - 1.0) < 1e-12  # the tuples exhaust the sample space
    weight = (len(tuples) * p_tuple).repeat_interleave(k)[:, None]
    (grad,) = torch.autograd.grad((weight * dloss * logp).sum(), theta)
    return -grad


def _problem(vocab: int, max_len: int, seed: int):
    """The space, policy logits θ (leaf), reference logits and a reward r (S,), float64."""
    space = SequenceSpace(vocab, max_len)
    rng = np.random.default_rng(seed)
    theta = torch.tensor(space.random_logits(rng), dtype=F64, requires_grad=True)
    ref_theta = torch.tensor(space.random_logits(rng), dtype=F64)
    r = torch.tensor(rng.standard_normal(space.size), dtype=F64)
    return space, theta, ref_theta, r


def test_token_logps_match_the_sequence_space():
    """Our torch log-probs [S] equal :meth:`SequenceSpace.log_probs` (numpy enumeration)."""
    space, theta, _, _ = _problem(4, 3, 0)
    ours = token_logps(space, theta, np.arange(space.size))[0].sum(-1).detach().numpy()
    np.testing.assert_allclose(ours, space.log_probs(theta.detach().numpy()), rtol=0, atol=1e-13)


CASES = [(4, 3, 2), (3, 3, 3)]  # (V, L, k): S = 40 → 1600 tuples; S = 15 → 3375 tuples


@pytest.mark.parametrize("vocab,max_len,k", CASES)
@pytest.mark.parametrize("arm", ["entropy", "kl"])
def test_expected_rloo_gradient_is_the_exact_gradient(arm, vocab, max_len, k):
    """E[−∇ rloo_loss] (P, V) equals ∇J by autograd on the enumeration, to 1e-10 (float64);
    the coefficients are the ones the loop uses (``coefficients(OnlineConfig(...))``)."""
    space, theta, ref_theta, r = _problem(vocab, max_len, seed=k)
    strength = {"alpha": ALPHA} if arm == "entropy" else {"beta": BETA}
    coef = coefficients(OnlineConfig(regularizer=arm, **strength))
    (exact,) = torch.autograd.grad(exact_objective(space, theta, ref_theta, r, arm), theta)
    rloo = expected_rloo_ascent(space, theta, ref_theta, r, k, coef)
    err = (rloo - exact).abs().max().item()
    assert err < 1e-10, f"{arm}, k={k}: max |E[RLOO] − ∇J| = {err:.3e}"
    # the regulariser is seen: its sign flipped (or dropped), the match breaks by far
    key = "alpha_seq" if arm == "entropy" else "beta_rew"
    flipped = expected_rloo_ascent(space, theta, ref_theta, r, k, coef | {key: -coef[key]})
    assert (flipped - exact).abs().max().item() > 1e-2
    dropped = expected_rloo_ascent(space, theta, ref_theta, r, k, coef | {key: 0.0})
    assert (dropped - exact).abs().max().item() > 1e-2


def trl_rloo_advantages(rewards, old_per_token_logps, ref_per_token_logps, completion_mask,
                        beta: float, num_generations: int):  # fmt: skip
    """TRL 1.16 ``trl/trainer/rloo_trainer.py`` lines 1664-1699 verbatim (inside
    ``RLOOTrainer._generate_and_score_completions``), less the per-group std of 1676-1680 (used
    for logging only). ``gather`` is the identity (one process); ``rewards`` [N] is TRL's summed
    reward (one reward function of weight 1, no clipping, all scorable). Returns (advantages
    [N], kl [N] = Σ_t k1 per sequence)."""
    from trl.trainer.utils import nanstd

    self = SimpleNamespace(beta=beta, normalize_advantages=False)
    gather = lambda t: t  # noqa: E731

    # ---- TRL 1.16 rloo_trainer.py:1664-1675, 1682-1699: code verbatim, comments shortened ----
    if self.beta != 0.0:
        per_token_kl = old_per_token_logps - ref_per_token_logps
        kl = (per_token_kl * completion_mask).sum(-1)
        kl = gather(kl)  # rewards are gathered, so kl must be too
        rewards = rewards - self.beta * kl

    grouped_rewards = rewards.view(-1, num_generations)
    scorable_counts = (~torch.isnan(grouped_rewards)).sum(dim=1, keepdim=True)  # (num_prompts, 1)
    grouped_sum = torch.nansum(grouped_rewards, dim=1, keepdim=True)  # (num_prompts, 1)
    if num_generations > 1:
        baselines = (grouped_sum - grouped_rewards) / (scorable_counts - 1)
        baselines = baselines.view(-1)  # Flatten back to match rewards shape
        advantages = rewards - baselines
    else:  # this case doesn't occur during training, but could in eval when num_generations_eval=1
        advantages = torch.zeros_like(rewards)
    if self.normalize_advantages:
        advantages = (advantages - torch.nanmean(advantages)) / (nanstd(advantages) + 1e-4)
    advantages = torch.nan_to_num(advantages, nan=0.0)
    # ---- end of TRL's lines ----
    return advantages, kl


def trl_compute_loss(per_token_logps, entropies, completion_mask, advantages):
    """``RLOOTrainer._compute_loss`` of TRL 1.16 (rloo_trainer.py:1794-1861), unchanged, on a stub
    trainer: its log-prob call returns ``per_token_logps`` [N, T] (on-policy: ``old_logps`` is
    their detached sum, so the ratio is 1 and the clip inactive), one process, no MoE loss."""
    from trl import RLOOTrainer

    identity = lambda t, **_: t  # noqa: E731
    stub = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **kw: (per_token_logps, entropies, None),
        aux_loss_enabled=False, epsilon_low=0.2, epsilon_high=0.2,
        model=SimpleNamespace(training=True), _metrics=defaultdict(lambda: defaultdict(list)),
        accelerator=SimpleNamespace(reduce=identity, gather=identity),
    )  # fmt: skip
    n, t = completion_mask.shape
    inputs = {
        "prompt_ids": torch.zeros(n, 1, dtype=torch.long), "prompt_mask": torch.ones(n, 1),
        "completion_ids": torch.zeros(n, t, dtype=torch.long), "completion_mask": completion_mask,
        "old_logps": (per_token_logps.detach() * completion_mask).sum(1), "advantages": advantages,
    }  # fmt: skip
    return RLOOTrainer._compute_loss(stub, None, inputs)


@pytest.mark.parametrize("seed", [0, 1])
def test_kl_arm_equals_trl_rloo_trainer(seed):
    """Our KL arm (``regularizer="kl"``) against TRL's RLOO on one batch: P = 3 prompts × k = 4
    samples drawn from a tabular policy (V = 5, L = 4, so lengths vary and the mask matters),
    float64. TRL options matched to ours: ``beta`` = β with the k1 KL summed over the sequence in
    the reward (TRL's only form); ``normalize_advantages=False`` (default; we never normalise);
    ``num_iterations=1`` (one update per batch, so TRL's PPO ratio is 1); temperature 1 (TRL
    rescales logits by it; our rollout samples at 1); no ``reward_clip_range``; one process.

    Compared: the advantages [N] (our ``rloo_advantages(shaped_reward(...))`` vs TRL's), the
    per-sequence KL (our logged ``kl_k1`` vs the mean of TRL's), and the per-sample, per-token
    gradient ∂loss/∂log π(y_t) [N, T] of ``rloo_loss`` vs ``_compute_loss`` (= −A_n·mask/N for
    both). The loss *values* differ by design: ours is −mean A·log π(y), TRL's −mean A·ratio,
    which is 0 at ratio 1 since the advantages sum to 0 per prompt; only gradients matter."""
    space = SequenceSpace(5, 4)
    rng = np.random.default_rng(seed)
    theta = torch.tensor(space.random_logits(rng), dtype=F64)
    ref_theta = torch.tensor(space.random_logits(rng), dtype=F64)
    prompts, k = 3, 4
    idx = space.sample(theta.numpy(), prompts * k, rng)
    logp, ent, mask = token_logps(space, theta, idx)
    ref_logp = token_logps(space, ref_theta, idx)[0]
    r = torch.tensor(rng.standard_normal(prompts * k), dtype=F64)

    adv_trl, kl_trl = trl_rloo_advantages(r, logp, ref_logp, mask, BETA, k)
    k1_seq = ((logp - ref_logp) * mask).sum(-1)
    adv_ours = rloo_advantages(shaped_reward(r, (logp * mask).sum(-1), k1_seq, 0.0, BETA), k)
    torch.testing.assert_close(adv_ours, adv_trl, rtol=0, atol=1e-12)

    ours_in = logp.clone().requires_grad_()
    coef = coefficients(OnlineConfig(regularizer="kl", beta=BETA))
    loss, terms = rloo_loss(r, ours_in, ent, ref_logp, mask, k, coef)
    (g_ours,) = torch.autograd.grad(loss, ours_in)
    trl_in = logp.clone().requires_grad_()
    trl_loss = trl_compute_loss(trl_in, ent, mask, adv_trl)
    (g_trl,) = torch.autograd.grad(trl_loss, trl_in)
    torch.testing.assert_close(g_ours, g_trl, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_ours, -adv_trl[:, None] * mask / len(idx), rtol=0, atol=1e-12)
    assert abs(terms["kl_k1"] - kl_trl.mean().item()) < 1e-12
    assert abs(trl_loss.item()) < 1e-12  # TRL's value: −mean A at ratio 1
