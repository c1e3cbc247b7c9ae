"""Online RLHF with RLOO: MaxEnt (entropy bonus, no anchor) vs KL-regularised (notebook 05).

``train(testbed, config)`` is the paper's central experiment at toy scale. Each step
(:func:`train`, top to bottom):

1. draw fresh training prompts x and sample k responses y ~ π(·|x) (``generate``, KV cache,
   temperature 1, stop at EOS or ``max_new_tokens``);
2. score them with the proxy RM r(x, y) (and the gold reward, for the history only);
3. compute log π(y|x) and log π_ref(y|x) token by token;
4. apply the regularisers (``rlhf_nb.online_config``): shaped reward
   R = r - α·log π(y|x) - β·Σ_t log(π/π_ref), plus loss terms -α·H_token and β·k3;
5. RLOO advantages A_i = R_i - mean_{j≠i} R_j over the k samples of a prompt;
6. policy-gradient loss -mean_i A_i · log π(y_i|x_i), one Adam step.

The k samples of a prompt share it, so steps 1-3 run each prompt through a model once and repeat
its keys and values k times (:func:`rlhf_nb.models.prompt_cache`). That is an exact rewrite of
one forward pass over the full sequences (:func:`token_logprobs_full`; tests compare samples,
log-probs, gradients and RM scores), not an approximation, and it is where the step saves time
against TRL's ``GRPOTrainer``, which runs every prompt k times (``benchmarks/online_step.py``).

The history (``rlhf_nb.runs.COLUMNS`` plus ``loss``, ``grad_norm``, ``reward_shaped``) logs the
samples drawn at step s, i.e. the policy after s updates.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from rlhf_nb import estimators
from rlhf_nb.models import cache_kwarg, positions, prompt_cache, quiet
from rlhf_nb.online_config import REGULARIZERS, OnlineConfig
from rlhf_nb.runs import COLUMNS, Run, run_path

__all__ = [
    "REGULARIZERS",
    "OnlineConfig",
    "prompt_cache",
    "rollout",
    "token_logprobs",
    "token_logprobs_full",
    "rloo_advantages",
    "shaped_reward",
    "train",
]


@torch.no_grad()
def rollout(policy, tokenizer, prompts: list[str], k: int, max_new_tokens: int) -> dict:
    """Sample ``k`` responses per prompt (prompt-major) with ``generate`` and a KV cache.

    The prompt (all but its last token) is prefilled once per prompt and its cache repeated k
    times (:func:`prompt_cache`), so ``generate`` only decodes; the samples are identical to
    generating from k copies of each prompt with the same seed (tested).

    Returns ``ids`` [B, T] (left-padded prompt, then response, then pad), ``attention_mask`` [B, T]
    (1 on prompt and response tokens up to and including the first EOS), ``response_mask``
    [B, T-1] (aligned with ``ids[:, 1:]``: 1 where the token is a response token), ``texts``
    (decoded without EOS), ``eos`` [B] bool, ``length`` [B] (response tokens incl. EOS), and the
    shared prompts: ``prompt_ids``/``prompt_mask`` [P, Lp] and ``k``.
    """
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left",
                    add_special_tokens=False)  # fmt: skip
    device = next(policy.parameters()).device
    pid, pmask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    policy.eval()
    shared = {}
    if pid.shape[1] > 1:  # prefill all but the last prompt token; generate feeds that one
        _, cache = prompt_cache(policy, pid[:, :-1], pmask[:, :-1], k)
        shared[cache_kwarg(policy)] = cache
    full_pmask = pmask.repeat_interleave(k, 0)
    ids = policy.generate(
        input_ids=pid.repeat_interleave(k, 0),
        attention_mask=full_pmask,
        **shared,
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    n_prompt = pid.shape[1]
    new = ids[:, n_prompt:]
    is_eos = new == tokenizer.eos_token_id
    # a token is part of the response if no EOS came strictly before it
    before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    resp = before == 0
    attn = torch.cat([full_pmask, resp.long()], dim=1)
    response_mask = torch.cat([torch.zeros_like(full_pmask), resp.long()], dim=1)
    texts = tokenizer.batch_decode(new.masked_fill(~resp, tokenizer.pad_token_id),
                                   skip_special_tokens=True)  # fmt: skip
    return {
        "ids": ids,
        "attention_mask": attn,
        "response_mask": response_mask[:, 1:].float(),
        "texts": [t.strip() for t in texts],
        "eos": is_eos.any(dim=1),
        "length": resp.sum(dim=1).float(),
        "prompt_ids": pid,
        "prompt_mask": pmask,
        "k": k,
    }


def token_logprobs(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(y_t | x, y_<t) of each sampled token and the per-token entropy H(π(·|x, y_<t)).

    Both [B, T-1], aligned with ``batch["response_mask"]`` (zero before the first response
    position; mask before summing). Computed the way the sampler ran: each prompt once
    (:func:`prompt_cache`), then the k responses on top of its cache; equal to one forward pass
    over ``batch["ids"]``, gradient included (tested), at ~half the tokens.
    """
    pid, pmask, k = batch["prompt_ids"], batch["prompt_mask"], batch["k"]
    n_prompt = pid.shape[1]
    out, cache = prompt_cache(model, pid, pmask, k)
    attn, response = batch["attention_mask"], batch["ids"][:, n_prompt:]
    rest = model(
        input_ids=response,
        attention_mask=attn,
        position_ids=positions(attn)[:, n_prompt:],
        use_cache=True,
        **{cache_kwarg(model): cache},
    )
    # logits that predict response token t: the last prompt position, then response positions
    logits = torch.cat([out.logits[:, -1:].repeat_interleave(k, 0), rest.logits[:, :-1]], dim=1)
    logp, entropy = _logp_entropy(logits, response)
    pad = (n_prompt - 1, 0)  # back to the [B, T-1] layout of response_mask
    return torch.nn.functional.pad(logp, pad), torch.nn.functional.pad(entropy, pad)


def token_logprobs_full(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`token_logprobs` computes, the plain way: one forward pass over the full
    left-padded sequences ``batch["ids"]``, every prompt once per sample. Slower; kept as the
    reference the shared-prompt path is checked against (tests, notebook 05)."""
    attn = batch["attention_mask"]
    logits = model(input_ids=batch["ids"], attention_mask=attn, position_ids=positions(attn)).logits
    return _logp_entropy(logits[:, :-1], batch["ids"][:, 1:])


def _logp_entropy(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(token) under ``logits`` [B, T, V] (float32 log-softmax) and the entropy of each
    position's distribution, both [B, T]."""
    logp_all = torch.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, tokens[..., None]).squeeze(-1)
    return logp, -(logp_all.exp() * logp_all).sum(-1)


def shaped_reward(r, seq_logp, k1_seq, alpha: float, beta: float) -> torch.Tensor:
    """R = r - α·log π(y|x) - β·Σ_t log(π/π_ref), per sample [N], everything detached.

    With y ~ π, -log π(y|x) is an unbiased sample of the sequence entropy H(π(·|x)), so REINFORCE
    on R ascends E[r] + α·H(π) - β·KL(π||π_ref): the MaxEnt objective of notebook 01 (β = 0) or
    the KL-regularised one (α = 0, k1 estimator of notebook 03).
    """
    return r - alpha * seq_logp.detach() - beta * k1_seq.detach()


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """A_i = R_i - (1/(k-1)) Σ_{j≠i} R_j within each group of ``k`` samples of one prompt.

    ``rewards``: [P·k] (prompt-major). Sums to zero per prompt (Ahmadian et al. 2024, eq. 7).
    """
    r = rewards.view(-1, k)
    baseline = (r.sum(dim=1, keepdim=True) - r) / (k - 1)
    return (r - baseline).reshape(-1)


def train(
    testbed,
    config: OnlineConfig,
    resume: bool = False,
    *,
    callback=None,
    reward_fn=None,
    checkpoint_dir: Path | None = None,
    progress: bool = True,
) -> Run:
    """Run online RLOO from the SFT policy (module docstring); returns a :class:`Run`.

    Args:
        testbed: a built :class:`rlhf_nb.testbed.Testbed` (policy init, reference, rewards).
        config: the validated :class:`OnlineConfig`.
        resume: continue from this config's last checkpoint when one exists.
        callback: ``callback(history_df)`` after every step (live figures; may raise
            ``KeyboardInterrupt`` to stop).
        reward_fn: ``(prompts, responses) -> float tensor [N]`` to optimise instead of the proxy
            RM (e.g. ``testbed.gold_reward``; tests inject non-finite rewards with it).
        checkpoint_dir: where checkpoints go (default ``<cache>/checkpoints/online/<key>``).
    """
    cfg, tok = config, testbed.tokenizer
    torch.manual_seed(cfg.seed)
    max_new = cfg.max_new_tokens or testbed.max_new_tokens
    with quiet():
        policy = testbed.load_sft_policy().to(cfg.device)
    ref = testbed.sft_policy.to(cfg.device).eval()
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    regs = set(cfg.regularizers)
    alpha_seq = cfg.alpha if "entropy" in regs else 0.0
    alpha_tok = cfg.alpha if "entropy_token" in regs else 0.0
    beta_rew = cfg.beta if "kl" in regs else 0.0
    beta_loss = cfg.beta if "kl_loss" in regs else 0.0
    eval_prompts = testbed.eval_prompts[: cfg.n_eval_prompts]
    held_out = set(testbed.eval_prompts)  # training prompts never overlap the eval prompts
    prompt_rng = random.Random(cfg.seed)
    rows, samples, start = [], {}, 0
    ckpt_dir = checkpoint_dir or run_path("online", testbed, cfg, area="checkpoints")
    ckpt = Path(ckpt_dir) / "checkpoint.pt"
    if resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        policy.load_state_dict(state["policy"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        prompt_rng.setstate(state["prompt_rng"])
        rows, samples, start = state["rows"], state["samples"], state["step"]
    status, message = "running", ""
    bar = tqdm(range(start, cfg.steps + 1), desc=cfg.label(), disable=not progress, leave=False)
    try:
        for step in bar:
            t0 = time.perf_counter()
            # 1. fresh prompts x, k samples y ~ π(·|x) each
            prompts = testbed.task.documents(cfg.prompts_per_step, prompt_rng, held_out)
            try:
                batch = rollout(policy, tok, prompts, cfg.k, max_new)
            except RuntimeError as exc:  # NaN/inf logits: torch.multinomial refuses them
                status, message = "diverged", f"sampling failed at step {step}: {exc}"
                break
            xs = [p for p in prompts for _ in range(cfg.k)]
            # 2. proxy reward r(x, y) (what is optimised) and gold (only logged)
            if reward_fn is None:  # from the sampled ids, each prompt once for its k samples
                r = testbed.proxy_reward_rollout(batch).float()
            else:
                r = reward_fn(xs, batch["texts"]).float().to(cfg.device)
            gold = testbed.gold_reward(xs, batch["texts"])
            # 3. log π(y_t|·) with gradient; log π_ref(y_t|·) without
            policy.train()
            logp, ent = token_logprobs(policy, batch)
            with torch.no_grad():
                ref_logp, _ = token_logprobs(ref, batch)
            mask = batch["response_mask"]
            seq_logp = (logp * mask).sum(-1)  # log π(y|x), nats/sequence
            k1_seq = ((logp.detach() - ref_logp) * mask).sum(-1)  # Σ_t log π/π_ref
            k3_tok = estimators.k3(logp, ref_logp)  # per token, nats
            # 4. regularised (shaped) reward: R = r - α·log π(y|x) - β·Σ_t log π/π_ref
            shaped = shaped_reward(r, seq_logp, k1_seq, alpha_seq, beta_rew)
            # 5. RLOO leave-one-out advantage
            adv = rloo_advantages(shaped, cfg.k)
            # 6. REINFORCE loss, plus the loss-side regularisers (token-mean entropy, k3)
            loss = -(adv * seq_logp).mean()
            loss = loss - alpha_tok * _token_mean(ent, mask) + beta_loss * _token_mean(k3_tok, mask)
            row = {
                "step": step,
                "gold": gold.mean().item(),
                "proxy": r.mean().item(),
                "kl_k1": k1_seq.mean().item(),
                "kl_k3": (k3_tok.detach() * mask).sum(-1).mean().item(),
                "entropy_token": _token_mean(ent.detach(), mask).item(),
                "entropy_seq": -seq_logp.mean().item(),
                "length": batch["length"].mean().item(),
                "eos_rate": batch["eos"].float().mean().item(),
                "win_rate": math.nan,
                "reward_shaped": shaped.mean().item(),
                "loss": loss.item(),
                "grad_norm": math.nan,
            }
            if step % cfg.eval_interval == 0 or step == cfg.steps:
                eval_texts = testbed.sample(policy, eval_prompts, seed=cfg.seed + 10_000 + step,
                                            max_new_tokens=max_new)  # fmt: skip
                row["win_rate"] = testbed.win_rate(eval_prompts, eval_texts)
            if step % cfg.sample_interval == 0 or step == cfg.steps:
                samples[step] = [
                    f"{x} {y}" for x, y in zip(xs[:: cfg.k], batch["texts"][:: cfg.k])
                ][:4]
            if not (math.isfinite(row["proxy"]) and math.isfinite(row["loss"])):
                status, message = "diverged", f"non-finite reward or loss at step {step}"
            elif step < cfg.steps:  # the last row only measures: no update
                opt.zero_grad()
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
                row["grad_norm"] = gn.item()
                if not math.isfinite(row["grad_norm"]):
                    status, message = "diverged", f"non-finite gradient at step {step}"
                else:
                    opt.step()
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            if status == "diverged":
                break
            if cfg.checkpoint_interval and (step + 1) % cfg.checkpoint_interval == 0:
                _save_checkpoint(ckpt, policy, opt, prompt_rng, rows, samples, step + 1)
            bar.set_postfix(gold=f"{row['gold']:.2f}", proxy=f"{row['proxy']:.2f}",
                            kl=f"{row['kl_k1']:.2f}")  # fmt: skip
            if callback is not None:
                callback(_history(rows))
        if status == "running":
            status, message = "finished", f"{cfg.steps} steps"
    except KeyboardInterrupt:
        status, message = "interrupted", f"interrupted after {len(rows)} logged steps"
    finally:
        bar.close()
    policy.eval()
    return Run(cfg, _history(rows), status, policy, message, samples)


def _token_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of a per-token quantity [B, T-1] over all response tokens of the batch."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def _history(rows: list[dict]) -> pd.DataFrame:
    extra = ["reward_shaped", "loss", "grad_norm"]
    return pd.DataFrame(rows, columns=[*COLUMNS, *extra])


def _save_checkpoint(path: Path, policy, opt, prompt_rng, rows, samples, step) -> None:
    """Everything ``resume=True`` needs to continue bit-for-bit, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "policy": policy.state_dict(),
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "prompt_rng": prompt_rng.getstate(),
        "rows": list(rows),
        "samples": dict(samples),
        "step": step,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
