"""Online RLHF with RLOO: MaxEnt (entropy bonus, no anchor) vs KL-regularised (notebook 05).

``train(testbed, config)`` is the paper's central experiment at toy scale, in one process and
one function that reads top to bottom (:func:`train`). Each step:

1. draw fresh training prompts x and sample k responses y ~ π(·|x)
   (:func:`rlhf_nb.sampling.rollout`: KV cache, temperature 1, stop at EOS or ``max_new_tokens``);
2. score them with the proxy RM r(x, y) (or, with ``reward="gold"``, the gold reward itself), and
   the gold reward for the history (:func:`score`);
3. compute log π(y|x) and log π_ref(y|x) token by token (:func:`log_probs`);
4. apply the regularisers (``rlhf_nb.methods.online_config``; the maths of steps 4-6 is in
   :mod:`rlhf_nb.methods.rloo`, run by :func:`regularised_loss`): shaped reward
   R = r - α·log π(y|x) - β·Σ_t log(π/π_ref), plus loss terms -α·H_token and β·k3;
5. RLOO advantages A_i = R_i - mean_{j≠i} R_j over the k samples of a prompt;
6. policy-gradient loss -mean_i A_i · log π(y_i|x_i), one Adam step (:func:`update`).

The k samples of a prompt share it, so steps 1-3 run each prompt through a model once and repeat
its keys and values k times (:func:`rlhf_nb.sampling.prompt_cache`). That is an exact rewrite of
one forward pass over the full sequences (:func:`token_logprobs_full`; tests compare samples,
log-probs, gradients and RM scores), not an approximation, and it is where the step saves time
against TRL's ``GRPOTrainer``, which runs every prompt k times (``benchmarks/online_step.py``).

The history (``rlhf_nb.runs.record.COLUMNS`` plus ``loss``, ``grad_norm``, ``reward_shaped``)
logs the samples drawn at step s, i.e. the policy after s updates.

This loop keeps no checkpoints and runs in one process. The command-line runner's variant,
resumable and data-parallel under ``accelerate launch`` (chapter 08), is
:mod:`rlhf_nb.methods.online_dp`: the same named steps below, in the same order.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from rlhf_nb.core import check_type, quiet
from rlhf_nb.methods.ensemble import aggregate, proxy_ensemble
from rlhf_nb.methods.online_config import REGULARIZERS, OnlineConfig
from rlhf_nb.methods.rloo import adapt_alpha, coefficients, mixed_reference, rloo_loss
from rlhf_nb.runs.record import COLUMNS, Run
from rlhf_nb.sampling import rollout, token_logprobs

__all__ = ["REGULARIZERS", "OnlineConfig", "log_probs", "score", "train", "update"]


def train(
    testbed,
    config: OnlineConfig,
    *,
    on_step: Callable | None = None,
    reward_fn: Callable | None = None,
    progress: bool | None = None,
) -> Run:
    """Run online RLOO from the SFT policy (module docstring); returns a :class:`Run`.

    Args:
        testbed: a built :class:`rlhf_nb.testbed.Testbed` (policy init, reference, rewards).
        config: the validated :class:`OnlineConfig` (``checkpoint_interval`` must be 0: a
            resumable run is :func:`rlhf_nb.methods.online_dp.train`).
        on_step: ``on_step(history)`` after every step (the run contract,
            :mod:`rlhf_nb.runs.contract`); may raise ``KeyboardInterrupt`` to stop.
        reward_fn: ``(prompts, responses) -> float tensor [N]`` to optimise instead of the proxy
            RM (e.g. ``testbed.gold_reward``; tests inject non-finite rewards with it).
        progress: ``False`` hides the progress bar; ``None`` (default) shows it unless
            ``TQDM_DISABLE=1`` (the book's build and the process pool set it).
    """
    check_type("config", config, OnlineConfig)
    cfg = config
    if cfg.checkpoint_interval:
        raise ValueError(
            f"checkpoint_interval={cfg.checkpoint_interval}: this loop keeps no "
            "checkpoints; the resumable one is rlhf_nb.methods.online_dp.train"
        )
    reward_fn = reward_function(testbed, cfg, reward_fn)
    s = setup(testbed, cfg)
    rows, samples, status, message = [], {}, "running", ""
    bar = progress_bar(cfg, range(cfg.steps + 1), progress)
    try:
        for step in bar:
            t0 = time.perf_counter()
            # 1. fresh prompts x (never the eval prompts), k samples y ~ π(·|x) each
            prompts = testbed.task.documents(cfg.prompts_per_step, s.prompt_rng, s.held_out)
            try:
                batch = rollout(s.policy, testbed.tokenizer, prompts, cfg.k, s.max_new)
            except RuntimeError as exc:  # NaN/inf logits: torch.multinomial refuses them
                status, message = "diverged", f"sampling failed at step {step}: {exc}"
                break
            # 2. the reward optimised, r(x, y) [N], and the gold reward (logged, never optimised)
            xs = [p for p in prompts for _ in range(cfg.k)]
            r, gold = score(testbed, batch, xs, reward_fn, s.ensemble)
            # 3. log π(y_t|·) with gradient and π's entropy, log π_ref(y_t|·) without; [N, T-1]
            logp, ent, ref_logp = log_probs(s.policy, s.ref, batch, s.ref_context)
            # 4-6. shaped reward, RLOO advantages, policy-gradient loss (rlhf_nb.methods.rloo)
            loss, terms = regularised_loss(cfg, s, r, logp, ent, ref_logp, batch["response_mask"])
            # the history row of the samples drawn: the policy after `step` updates
            row = history_row(step, r, gold, batch, terms, loss)
            log_proxy(testbed, cfg, batch, row)  # reward="gold": the proxy RM's view, logged
            evaluate(testbed, cfg, s, step, prompts, batch, row, samples)  # win rate, samples
            adapt_entropy_coef(cfg, s, row)  # target_entropy only: α of the next step
            problem = diverged(row, step)  # a non-finite reward or loss: no update
            if not problem and step < cfg.steps:  # 6. one Adam step (the last row only measures)
                row["grad_norm"] = update(s.policy, s.opt, loss, cfg.grad_clip)
                problem = diverged(row, step, updated=True)
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            if problem:
                status, message = "diverged", problem
                break
            bar.set_postfix(gold=f"{row['gold']:.2f}", proxy=f"{row['proxy']:.2f}",
                            kl=f"{row['kl_k1']:.2f}")  # fmt: skip
            if on_step is not None:
                on_step(history(rows))
        if status == "running":
            status, message = "finished", f"{cfg.steps} steps"
    except KeyboardInterrupt:
        status, message = "interrupted", f"interrupted after {len(rows)} logged steps"
    finally:
        bar.close()
    s.policy.eval()
    return Run(cfg, history(rows), status, s.policy, message, samples)


# ---- the named steps (shared with rlhf_nb.methods.online_dp) ----------------------------------
@dataclass
class State:
    """What an online run holds besides its history: the trainable policy, the frozen reference
    (and the context it runs in: a LoRA policy's ``disable_adapter``), Adam, the regularisers'
    coefficients (:func:`rlhf_nb.methods.rloo.coefficients`; ``alpha_tok`` changes when it
    adapts), the prompt RNG, the eval prompts never trained on, the generation budget and the
    proxy-RM ensemble ``(members, mode, penalty)`` or ``None``."""

    policy: Any
    ref: Any
    ref_context: Callable
    opt: torch.optim.Optimizer
    coef: dict[str, float]
    prompt_rng: random.Random
    held_out: set[str]
    max_new: int
    ensemble: tuple | None


def setup(testbed, cfg: OnlineConfig, device: str | None = None, sample_seed: int | None = None):
    """The :class:`State` at step 0: the torch RNG seeded with ``sample_seed`` (default
    ``cfg.seed``; it draws the samples), a fresh copy of the SFT policy on ``device`` (default
    ``cfg.device``), Adam over its trainable parameters (all, or LoRA's), the prompt RNG seeded
    with ``cfg.seed``."""
    device = device or cfg.device
    torch.manual_seed(cfg.seed if sample_seed is None else sample_seed)
    with quiet():
        policy = testbed.load_sft_policy().to(device)
    ref, ref_context = testbed.reference(policy)
    ref = ref.to(device).eval()
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr)
    ensemble = None
    if cfg.ensemble > 1:
        members = [m.to(device) for m in proxy_ensemble(testbed, cfg.ensemble)]
        ensemble = (members, cfg.ensemble_mode, cfg.ensemble_penalty)
    return State(policy, ref, ref_context, opt, coefficients(cfg), random.Random(cfg.seed),
                 set(testbed.eval_prompts), cfg.max_new_tokens or testbed.max_new_tokens,
                 ensemble)  # fmt: skip


def reward_function(testbed, cfg: OnlineConfig, reward_fn: Callable | None) -> Callable | None:
    """The ``reward_fn`` a loop optimises: the caller's, else the testbed's gold reward when
    ``cfg.reward == "gold"``, else ``None`` (the proxy RM, read from the sampled ids). A caller's
    ``reward_fn`` with ``reward="gold"`` is ambiguous: ``ValueError``."""
    if cfg.reward == "gold":
        if reward_fn is not None:
            raise ValueError("reward='gold' already names the reward optimised; pass reward_fn "
                             "only with reward='proxy'")  # fmt: skip
        return testbed.gold_reward
    return reward_fn


def log_proxy(testbed, cfg: OnlineConfig, batch: dict, row: dict) -> None:
    """With ``reward="gold"`` the row's ``proxy`` is the proxy RM's mean score of the samples
    (what a run on the proxy would have seen), not the reward optimised."""
    if cfg.reward == "gold":
        row["proxy"] = testbed.proxy_reward_rollout(batch).float().mean().item()


def score(testbed, batch: dict, prompts: list[str], reward_fn=None, ensemble=None):
    """Step 2: the reward optimised, r(x, y) [N] (the proxy RM on the sampled ids, each prompt
    run once for its k samples; ``ensemble=(members, mode, penalty)`` aggregates several RMs,
    :func:`rlhf_nb.methods.ensemble.aggregate`; or ``reward_fn(prompts, texts)``), minus the
    testbed's ``missing_eos_penalty`` (real presets; 0 for the toy) where a sample has no EOS,
    and the gold reward [N] (logged only, never optimised). ``prompts`` is [N], one per
    sample."""
    if reward_fn is None and ensemble is not None:
        members, mode, penalty = ensemble
        scores = torch.stack([testbed.proxy_reward_rollout(batch, rm) for rm in members])
        r = aggregate(scores.float(), mode, penalty)
    elif reward_fn is None:
        r = testbed.proxy_reward_rollout(batch).float()
    else:
        r = reward_fn(prompts, batch["texts"]).float().to(batch["ids"].device)
    penalty = getattr(testbed, "missing_eos_penalty", 0.0)
    if penalty:
        r = r - penalty * (~batch["eos"]).float().to(r.device)
    return r, testbed.gold_reward(prompts, batch["texts"])


def log_probs(policy, ref, batch: dict, ref_context=contextlib.nullcontext,
              forward: Callable = token_logprobs):  # fmt: skip
    """Step 3: log π(y_t|·) with gradient and the per-token entropy of π, and log π_ref(y_t|·)
    without gradient; each [N, T-1], aligned with ``batch["response_mask"]``. ``ref_context``:
    what the reference runs in (a LoRA policy's ``disable_adapter``); ``forward``: the policy's
    pass, :func:`~rlhf_nb.sampling.token_logprobs` (each prompt once) or
    :func:`~rlhf_nb.sampling.token_logprobs_full` (the full sequences; equal values, tested)."""
    policy.train()
    logp, ent = forward(policy, batch)
    with torch.no_grad(), ref_context():
        ref_logp, _ = token_logprobs(ref, batch)
    return logp, ent, ref_logp


def regularised_loss(cfg: OnlineConfig, s: State, r, logp, ent, ref_logp, mask):
    """Steps 4-6 with the run's coefficients: :func:`rlhf_nb.methods.rloo.rloo_loss`, the KL
    penalties against λ·π_SFT + (1−λ)·uniform per token when ``ref_mix`` λ < 1. Returns
    ``(loss, terms)``; ``terms`` also logs ``alpha_tok``, the α used, when it adapts."""
    anchor = None
    if cfg.ref_mix != 1.0:
        anchor = mixed_reference(ref_logp, cfg.ref_mix, s.ref.config.vocab_size)
    loss, terms = rloo_loss(r, logp, ent, ref_logp, mask, cfg.k, s.coef, anchor)
    if cfg.target_entropy is not None:
        terms["alpha_tok"] = s.coef["alpha_tok"]
    return loss, terms


def adapt_entropy_coef(cfg: OnlineConfig, s: State, row: dict) -> None:
    """With ``target_entropy``: the ``entropy_token`` α of the next step from this step's row,
    α ← max(0, α + rate·(target − H̄_tok)) (:func:`rlhf_nb.methods.rloo.adapt_alpha`)."""
    if cfg.target_entropy is not None:
        s.coef["alpha_tok"] = adapt_alpha(row["alpha_tok"], row["entropy_token"],
                                          cfg.target_entropy, cfg.entropy_rate)  # fmt: skip


def update(policy, opt, loss, grad_clip: float) -> float:
    """Step 6: one Adam step on ``loss`` with the global gradient norm clipped to ``grad_clip``;
    returns the norm before clipping. A non-finite norm skips the step (the run then ends)."""
    opt.zero_grad()
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip).item()
    if math.isfinite(gn):
        opt.step()
    return gn


def history_row(step: int, r, gold, batch: dict, terms: dict, loss) -> dict:
    """The history row of the samples drawn at ``step`` (before the step's update)."""
    row = {
        "step": step, "gold": gold.mean().item(), "proxy": r.mean().item(),
        "kl_k1": terms["kl_k1"], "kl_k3": terms["kl_k3"],
        "entropy_token": terms["entropy_token"], "entropy_seq": terms["entropy_seq"],
        "length": batch["length"].mean().item(), "eos_rate": batch["eos"].float().mean().item(),
        "win_rate": math.nan, "reward_shaped": terms["reward_shaped"], "loss": loss.item(),
        "grad_norm": math.nan,
    }  # fmt: skip
    if "alpha_tok" in terms:
        row["alpha_tok"] = terms["alpha_tok"]
    return row


def evaluate(testbed, cfg, s: State, step, prompts, batch, row, samples,
             full_parameters=contextlib.nullcontext) -> None:  # fmt: skip
    """Every ``eval_interval`` steps and at the end, the win rate against the references on the
    eval prompts (drawn with their own seeded RNG, in ``full_parameters()``: FSDP's gathered
    weights) into ``row``; every ``sample_interval`` steps and at the end, the first sample of
    up to 4 prompts into ``samples[step]``."""
    if step % cfg.eval_interval == 0 or step == cfg.steps:
        eval_prompts = testbed.eval_prompts[: cfg.n_eval_prompts]
        with full_parameters():
            texts = testbed.sample(s.policy, eval_prompts, seed=cfg.seed + 10_000 + step,
                                   max_new_tokens=s.max_new)  # fmt: skip
        row["win_rate"] = testbed.win_rate(eval_prompts, texts)
    if step % cfg.sample_interval == 0 or step == cfg.steps:
        samples[step] = [f"{x} {y}" for x, y in zip(prompts, batch["texts"][:: cfg.k])][:4]


def diverged(row: dict, step: int, updated: bool = False) -> str:
    """Why the run ends at ``step``, or "": a non-finite mean reward or loss (checked before the
    update), or once ``updated`` a non-finite gradient norm (:func:`update` skipped the step)."""
    if not (math.isfinite(row["proxy"]) and math.isfinite(row["loss"])):
        return f"non-finite reward or loss at step {step}"
    if updated and not math.isfinite(row["grad_norm"]):
        return f"non-finite gradient at step {step}"
    return ""


def progress_bar(cfg: OnlineConfig, steps: range, show: bool | None):
    """A tqdm bar over ``steps``; ``show=None`` reads ``TQDM_DISABLE`` now (tqdm reads its
    variables at import, before a notebook or the process pool sets them)."""
    if show is None:
        show = os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true")
    return tqdm(steps, desc=cfg.label(), leave=False, disable=not show)


def history(rows: list[dict]) -> pd.DataFrame:
    """The run's history: :data:`~rlhf_nb.runs.record.COLUMNS`, the loss terms, ``alpha_tok``
    when α adapts."""
    extra = ["reward_shaped", "loss", "grad_norm"]
    if rows and "alpha_tok" in rows[0]:
        extra.append("alpha_tok")
    return pd.DataFrame(rows, columns=[*COLUMNS, *extra])
