"""What the offline chapter (06) measures about a policy: the shared history columns of
``rlhf_nb.runs`` on held-out prompts, and the DPO/SimPO metrics on held-out preference pairs.

:func:`policy_metrics` samples one response per prompt at temperature 1 (keeping the token ids, so
that EOS is seen) and scores the samples under the policy and the SFT policy:

* ``kl_k1`` = mean over samples of sum_t log(pi/pi_sft)(y_t) and ``kl_k3`` = mean of
  sum_t (rho_t - 1 - log rho_t) with rho_t = pi_sft/pi (notebook 03), both nats per sequence;
* ``entropy_token`` = token-weighted mean of H(pi(.|x, y_<t)); ``entropy_seq`` = mean -log pi(y|x);
* ``length`` (tokens, EOS included when produced), ``eos_rate``, ``gold``, ``proxy``, ``win_rate``.

:func:`preference_metrics` computes the implicit rewards the trainers log (TRL's
``rewards/chosen``... on training batches) on held-out pairs, with :mod:`rlhf_nb.losses`:
DPO's ``beta * log(pi/pi_sft)`` (summed log-probs) or SimPO's ``beta * avg log pi``.
"""

from __future__ import annotations

import torch

from rlhf_nb import losses
from rlhf_nb.models import _pack


@torch.no_grad()
def sample_ids(policy, tokenizer, prompts, *, max_new_tokens: int, seed: int):
    """One temperature-1 sample per prompt. Returns ``(ids [B, P+T], attention [B, P+T],
    response_mask [B, T], has_eos [B])``; the response mask covers the tokens up to and including
    the first EOS (all ``T`` when there is none)."""
    enc = tokenizer(
        list(prompts), return_tensors="pt", padding=True, padding_side="left",
        add_special_tokens=False,
    ).to(policy.device)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = policy.generate(
            **enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
            max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )  # fmt: skip
    new = out[:, enc["input_ids"].shape[1] :]
    is_eos = (new == tokenizer.eos_token_id).long()
    mask = (is_eos.cumsum(-1) - is_eos) == 0  # no EOS strictly before t
    return out, torch.cat([enc["attention_mask"].bool(), mask], -1), mask, is_eos.sum(-1) > 0


def response_token_logps(model, ids, attention, n_response: int):
    """Per-token log-probs and entropies of the last ``n_response`` positions, each ``[B, T]``."""
    pos = (attention.long().cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=attention.long(), position_ids=pos).logits
    logp = torch.log_softmax(logits[:, -n_response - 1 : -1].float(), -1)
    token = logp.gather(-1, ids[:, -n_response:, None]).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return token, entropy


@torch.no_grad()
def policy_metrics(testbed, policy, prompts, *, seed: int, n_show: int = 3):
    """The shared history columns for ``policy`` on ``prompts`` (a dict), and ``n_show`` decoded
    samples. Sampling uses its own seeded RNG, so every evaluation of a run draws with the same
    random numbers (less noise between steps)."""
    was_training = policy.training
    policy.eval()
    tok, T = testbed.tokenizer, testbed.max_new_tokens
    ids, attn, mask, has_eos = sample_ids(policy, tok, prompts, max_new_tokens=T, seed=seed)
    T = mask.shape[1]
    lp, ent = response_token_logps(policy, ids, attn, T)
    sft = testbed.sft_policy.to(policy.device)
    lq, _ = response_token_logps(sft, ids, attn, T)
    m = mask.float()
    log_ratio = (lq - lp) * m  # log rho_t = log pi_sft - log pi
    texts = [s.strip() for s in tok.batch_decode(ids[:, -T:] * mask, skip_special_tokens=True)]
    policy.train(was_training)
    return {
        "gold": testbed.gold_reward(prompts, texts).mean().item(),
        "proxy": testbed.proxy_reward(prompts, texts).mean().item(),
        "kl_k1": (-log_ratio).sum(-1).mean().item(),
        "kl_k3": ((log_ratio.exp() - 1 - log_ratio) * m).sum(-1).mean().item(),
        "entropy_token": ((ent * m).sum() / m.sum()).item(),
        "entropy_seq": (-(lp * m).sum(-1)).mean().item(),
        "length": m.sum(-1).mean().item(),
        "eos_rate": has_eos.float().mean().item(),
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


def preference_metrics(config, logps, ref_logps=None) -> dict:
    """Held-out DPO metrics from sequence log-probs.

    Args:
        config: an ``OfflineConfig`` (method, beta, gamma, length_normalize).
        logps: ``(chosen_sum, chosen_avg, rejected_sum, rejected_avg)`` of the policy, each ``[N]``.
        ref_logps: the same four for the SFT policy (DPO only).

    Returns ``heldout_rewards_chosen``/``_rejected`` (mean implicit rewards), ``heldout_margin``
    (mean r_w - r_l), ``heldout_accuracy`` (fraction r_w > r_l), ``heldout_loss`` (the method's
    loss, :mod:`rlhf_nb.losses`) and ``heldout_weight``: the mean of sigmoid(-z), z the loss's
    logit (SimPO: r_w - r_l - gamma), i.e. |d loss / d z|, how hard each pair still pushes.
    """
    cs, ca, rs, ra = logps
    b = config.beta
    if config.method == "dpo":
        rcs, _, rrs, _ = ref_logps
        rw, rl = b * (cs - rcs), b * (rs - rrs)
        loss, z = losses.dpo_loss(cs, rs, rcs, rrs, b), rw - rl
    elif config.length_normalize:
        rw, rl = b * ca, b * ra
        loss, z = losses.simpo_loss(ca, ra, b, config.gamma), rw - rl - config.gamma
    else:
        rw, rl = b * cs, b * rs
        loss, z = losses.maxent_bt_loss(cs, rs, b), rw - rl
    return {
        "heldout_rewards_chosen": rw.mean().item(),
        "heldout_rewards_rejected": rl.mean().item(),
        "heldout_margin": (rw - rl).mean().item(),
        "heldout_accuracy": (rw > rl).float().mean().item(),
        "heldout_loss": loss.mean().item(),
        "heldout_weight": torch.sigmoid(-z).mean().item(),
    }
