"""Online SimPO (and online DPO): the pair loss on pairs sampled from the *current* policy
(notebook 06, part 3b; chapter 09's 2×2 experiment).

Offline SimPO only ever scores the responses in a fixed data set. Here the same reference-free
loss gets fresh pairs every step, ranked by the proxy reward model, as in online DPO / "iterative"
preference optimisation. One step, top to bottom (:func:`train`):

1. draw ``batch_size`` prompts from the preference-data prompts;
2. sample two responses per prompt from the current policy (temperature 1);
3. label them (:func:`label_pairs`): by default with the proxy RM, the higher proxy reward is
   ``y_w``; with ``labeller="gold"`` by the noisy gold Bradley–Terry model that labelled the
   offline data (a seeded draw per pair). Identical pairs are dropped; a step whose pairs are all
   identical makes no update, but is still counted and evaluated;
4. SimPO loss ``-log sigmoid(beta (avg log pi(y_w) - avg log pi(y_l)) - gamma)``
   (``losses.simpo_loss``; with ``length_normalize=False`` the summed MaxEnt loss
   ``losses.maxent_bt_loss``; with ``method="dpo"`` the DPO loss against the SFT policy; all via
   :func:`rlhf_nb.methods.preference.pair_terms`), one AdamW step with gradient clipping at 1.

The history is written by the same :class:`~rlhf_nb.methods.evaluate.HistoryWriter` as an
offline run's, with the same columns (``loss``/``rewards_*``/``margin``/``accuracy`` are means
over the interval's online pairs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rlhf_nb.core import check_type, quiet
from rlhf_nb.methods.evaluate import TRAIN_METRICS, HistoryWriter
from rlhf_nb.methods.preference import PreferenceConfig, pair_terms
from rlhf_nb.runs.record import Run
from rlhf_nb.sampling import sequence_logps


@dataclass
class OnlineSimPOConfig(PreferenceConfig):
    """One online preference run (fields: :class:`~rlhf_nb.methods.preference.PreferenceConfig`;
    ``batch_size`` is prompts per step, each sampled twice). ``method="simpo"`` is online SimPO,
    ``"dpo"`` online DPO (reference: the SFT policy). ``labeller="proxy"`` (the default) labels
    each fresh pair by the proxy RM; ``"gold"`` by a draw of the gold Bradley–Terry model."""

    labeller: str = "proxy"

    def label(self) -> str:
        gold = " [gold labels]" if self.labeller == "gold" else ""
        return "online " + super().label() + gold


def label_pairs(prompts: list[str], a: list[str], b: list[str], ra, rb):
    """Step 3: the sample with the higher score of each pair is the chosen one (ties go to
    ``a``); identical pairs are dropped. Returns ``(prompts, chosen, rejected)`` lists. With the
    gold labeller, ``ra``/``rb`` are 1/0 from :func:`gold_bt_labels`."""
    keep = [i for i in range(len(prompts)) if a[i] != b[i]]
    chosen = [a[i] if ra[i] >= rb[i] else b[i] for i in keep]
    rejected = [b[i] if ra[i] >= rb[i] else a[i] for i in keep]
    return [prompts[i] for i in keep], chosen, rejected


def gold_bt_labels(testbed, prompts, a, b, generator: torch.Generator):
    """The noisy gold Bradley–Terry labeller of the testbed's offline data, for fresh pairs:
    a wins with probability σ(label_beta·(gold(a) − gold(b))). Returns ``(ra, rb)`` as 1/0
    tensors for :func:`label_pairs` (the winner scores 1), drawn from ``generator``."""
    ga, gb = testbed.gold_reward(prompts, a), testbed.gold_reward(prompts, b)
    p_a = torch.sigmoid(testbed.preset.label_beta * (ga - gb))
    a_wins = (torch.rand(len(prompts), generator=generator) < p_a).float()
    return a_wins, 1.0 - a_wins


def train(testbed, config: OnlineSimPOConfig, *, on_step: Callable | None = None) -> Run:
    """Online SimPO on ``testbed`` (module docstring); returns a :class:`~rlhf_nb.runs.record.Run`.
    ``on_step(history)`` after each history row (the run contract,
    :mod:`rlhf_nb.runs.contract`)."""
    check_type("config", config, OnlineSimPOConfig)
    tok = testbed.tokenizer
    with quiet():
        policy = testbed.load_sft_policy().to(config.device)
    opt = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    ref = testbed.sft_policy.to(config.device).eval() if config.method == "dpo" else None
    pool = list(testbed.preference_data["prompt"])
    g = torch.Generator().manual_seed(config.seed)
    g_label = torch.Generator().manual_seed(config.seed + 77_777)  # the gold labeller's draws
    log = HistoryWriter(testbed, config, on_step)
    log.start(policy)
    interval, status, message, start = [], "finished", "", time.perf_counter()
    try:
        for step in range(1, config.steps + 1):
            # 1-2. prompts, and two samples from the current policy for each
            idx = torch.randint(len(pool), (config.batch_size,), generator=g).tolist()
            prompts = [pool[i] for i in idx]
            ys = testbed.sample(policy, prompts, n=2, seed=config.seed * 1_000_003 + step)
            # 3. the proxy RM (or the gold Bradley-Terry model) ranks each pair
            a, b = ys[0::2], ys[1::2]
            if config.labeller == "gold":
                ra, rb = gold_bt_labels(testbed, prompts, a, b, g_label)
            else:
                ra, rb = testbed.proxy_reward(prompts, a), testbed.proxy_reward(prompts, b)
            p, w, l_ = label_pairs(prompts, a, b, ra, rb)
            if p:  # 4. the SimPO loss (or its summed form) and one optimiser step
                metrics = _update(policy, ref, opt, tok, config, step, p, w, l_)
                interval.append(metrics)
                if not math.isfinite(metrics[0]):
                    log.tick()
                    status, message = "diverged", f"non-finite loss at step {step}"
                    break
            log.tick()
            if step % config.eval_interval == 0 or step == config.steps:
                if interval:
                    log.log(step, dict(zip(TRAIN_METRICS, torch.tensor(interval).mean(0).tolist())))
                log.evaluate(policy, step)
                interval = []
    except KeyboardInterrupt:
        status, message = "interrupted", "stopped by the user"
    log.close()
    if status == "finished":
        message = f"{config.steps} steps in {time.perf_counter() - start:.0f} s"
    return Run(config, log.history(), status, policy.eval(), message, log.samples)


def _update(policy, ref_policy, opt, tok, config, step, prompts, chosen, rejected) -> list[float]:
    """Step 4: the pair loss on the current policy, linear warm-up of the rate, one clipped AdamW
    step. Returns the interval metrics ``[loss, r_w, r_l, margin, accuracy]`` of this batch."""
    policy.train()
    ws, wa = sequence_logps(policy, tok, prompts, chosen, grad=True)
    ls, la = sequence_logps(policy, tok, prompts, rejected, grad=True)
    ref = None
    if config.method == "dpo":  # DPO's reference: the SFT policy, no gradient
        ref = (*sequence_logps(ref_policy, tok, prompts, chosen),
               *sequence_logps(ref_policy, tok, prompts, rejected))  # fmt: skip
    rw, rl, loss, _ = pair_terms(config, (ws, wa, ls, la), ref)
    loss, rw, rl = loss.mean(), rw.detach(), rl.detach()
    for group in opt.param_groups:  # linear warm-up, then constant (as the TRL runs)
        group["lr"] = config.lr * min(1.0, step / max(1, config.warmup_steps))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    opt.step()
    return [loss.item(), rw.mean().item(), rl.mean().item(), (rw - rl).mean().item(),
            (rw > rl).float().mean().item()]  # fmt: skip
