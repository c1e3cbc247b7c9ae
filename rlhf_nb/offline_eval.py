"""What the offline chapter (06) measures about a policy: the shared history columns of
``rlhf_nb.runs`` on held-out prompts, and the DPO/SimPO metrics on held-out preference pairs.

:func:`policy_metrics` samples one response per prompt at temperature 1 (``rlhf_nb.online.rollout``,
keeping the token ids, so that EOS is seen) and scores the samples under the policy and the SFT
policy (``rlhf_nb.online.token_logprobs_full``):

* ``kl_k1`` = mean over samples of sum_t log(pi/pi_sft)(y_t) and ``kl_k3`` = mean of
  sum_t (rho_t - 1 - log rho_t) with rho_t = pi_sft/pi (notebook 03), both nats per sequence;
* ``entropy_token`` = token-weighted mean of H(pi(.|x, y_<t)); ``entropy_seq`` = mean -log pi(y|x);
* ``length`` (tokens, EOS included when produced), ``eos_rate``, ``gold``, ``proxy``, ``win_rate``.

:func:`preference_metrics` computes the implicit rewards the trainers log (TRL's
``rewards/chosen``... on training batches) on held-out pairs, with :mod:`rlhf_nb.losses`:
DPO's ``beta * log(pi/pi_sft)`` (summed log-probs) or SimPO's ``beta * avg log pi``
(:func:`pair_terms`, shared with online SimPO, ``rlhf_nb.online_pairs``).
"""

from __future__ import annotations

import torch

from rlhf_nb import estimators, losses
from rlhf_nb.models import _pack
from rlhf_nb.online import rollout, token_logprobs_full


@torch.no_grad()
def policy_metrics(testbed, policy, prompts, *, seed: int, n_show: int = 3):
    """The shared history columns for ``policy`` on ``prompts`` (a dict), and ``n_show`` decoded
    samples. Sampling (:func:`rlhf_nb.online.rollout`, one sample per prompt) uses its own seeded
    RNG, so every evaluation of a run draws with the same random numbers (less noise between
    steps) and the caller's RNG state is left as it was."""
    was_training = policy.training
    tok = testbed.tokenizer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        batch = rollout(policy, tok, list(prompts), 1, testbed.max_new_tokens)
    # the response positions only: the last T columns of the [B, P+T-1] per-token layout
    T = batch["ids"].shape[1] - batch["prompt_ids"].shape[1]
    lp, ent = (x[:, -T:] for x in token_logprobs_full(policy, batch))
    lq, _ = token_logprobs_full(testbed.sft_policy.to(policy.device), batch)
    lq, m = lq[:, -T:], batch["response_mask"][:, -T:]
    texts = batch["texts"]
    policy.train(was_training)
    return {
        "gold": testbed.gold_reward(prompts, texts).mean().item(),
        "proxy": testbed.proxy_reward(prompts, texts).mean().item(),
        "kl_k1": ((lp - lq) * m).sum(-1).mean().item(),
        "kl_k3": estimators.k3(lp * m, lq * m).sum(-1).mean().item(),
        "entropy_token": ((ent * m).sum() / m.sum()).item(),
        "entropy_seq": (-(lp * m).sum(-1)).mean().item(),
        "length": batch["length"].mean().item(),
        "eos_rate": batch["eos"].float().mean().item(),
        "win_rate": testbed.win_rate(prompts, texts),
    }, texts[:n_show]


def sequence_logps(model, tokenizer, prompts, responses, batch_size: int = 256, grad=False):
    """Summed and averaged log pi(response + EOS | prompt), each ``[N]`` (nats per sequence,
    nats per token), tokenised as the trainers do (``prompt`` + ``" " + response`` + EOS).
    Without ``grad`` it runs under ``torch.no_grad()``."""
    total, avg = [], []
    with torch.set_grad_enabled(grad):
        for i in range(0, len(prompts), batch_size):
            chunk = slice(i, i + batch_size)
            ids, attn, resp = _pack(tokenizer, prompts[chunk], responses[chunk])
            ids, attn, resp = ids.to(model.device), attn.to(model.device), resp.to(model.device)
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
            token = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            total.append(losses.sequence_logps(token, resp[:, 1:]))
            avg.append(losses.sequence_logps(token, resp[:, 1:], average=True))
    return torch.cat(total), torch.cat(avg)


def pair_terms(config, logps, ref_logps=None):
    """The per-pair terms of ``config``'s preference loss, each ``[N]`` (gradient kept).

    Args:
        config: an ``OfflineConfig`` (method, beta, gamma, length_normalize).
        logps: ``(chosen_sum, chosen_avg, rejected_sum, rejected_avg)`` of the policy, each ``[N]``.
        ref_logps: the same four for the SFT policy (DPO only).

    Returns ``(r_w, r_l, loss, z)``: the implicit rewards of the chosen and rejected responses
    (DPO: ``beta * log(pi/pi_sft)`` of summed log-probs; SimPO: ``beta * avg log pi``; summed
    SimPO: ``beta * log pi``), the loss (:mod:`rlhf_nb.losses`) and its logit ``z`` (SimPO:
    ``r_w - r_l - gamma``, else ``r_w - r_l``).
    """
    cs, ca, rs, ra = logps
    b = config.beta
    if config.method == "dpo":
        rcs, _, rrs, _ = ref_logps
        rw, rl = b * (cs - rcs), b * (rs - rrs)
        return rw, rl, losses.dpo_loss(cs, rs, rcs, rrs, b), rw - rl
    if config.length_normalize:
        rw, rl = b * ca, b * ra
        return rw, rl, losses.simpo_loss(ca, ra, b, config.gamma), rw - rl - config.gamma
    rw, rl = b * cs, b * rs
    return rw, rl, losses.maxent_bt_loss(cs, rs, b), rw - rl


def preference_metrics(config, logps, ref_logps=None) -> dict:
    """Held-out DPO metrics from sequence log-probs (arguments as :func:`pair_terms`).

    Returns ``heldout_rewards_chosen``/``_rejected`` (mean implicit rewards), ``heldout_margin``
    (mean r_w - r_l), ``heldout_accuracy`` (fraction r_w > r_l), ``heldout_loss`` (the method's
    loss, :mod:`rlhf_nb.losses`) and ``heldout_weight``: the mean of sigmoid(-z), z the loss's
    logit (SimPO: r_w - r_l - gamma), i.e. |d loss / d z|, how hard each pair still pushes.
    """
    rw, rl, loss, z = pair_terms(config, logps, ref_logps)
    return {
        "heldout_rewards_chosen": rw.mean().item(),
        "heldout_rewards_rejected": rl.mean().item(),
        "heldout_margin": (rw - rl).mean().item(),
        "heldout_accuracy": (rw > rl).float().mean().item(),
        "heldout_loss": loss.mean().item(),
        "heldout_weight": torch.sigmoid(-z).mean().item(),
    }
