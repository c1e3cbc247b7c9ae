"""Online SimPO: the SimPO loss on pairs sampled from the *current* policy (notebook 06, part 3b).

Offline SimPO only ever scores the responses in a fixed data set. Here the same reference-free
loss gets fresh pairs every step, ranked by the proxy reward model, as in online DPO / "iterative"
preference optimisation. One step, top to bottom (:func:`train`):

1. draw ``batch_size`` prompts from the preference-data prompts;
2. sample two responses per prompt from the current policy (temperature 1);
3. label them with the proxy RM: the higher proxy reward is ``y_w`` (identical pairs are dropped;
   a step whose pairs are all identical makes no update, but is still counted and evaluated);
4. SimPO loss ``-log sigmoid(beta (avg log pi(y_w) - avg log pi(y_l)) - gamma)``
   (``losses.simpo_loss``; with ``length_normalize=False`` the summed MaxEnt loss
   ``losses.maxent_bt_loss``; both via :func:`rlhf_nb.train.preference.pair_terms`), one AdamW
   step with gradient clipping at 1.

The history is written by the same :class:`~rlhf_nb.train.evaluate.HistoryWriter` as an
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
from rlhf_nb.sampling import sequence_logps
from rlhf_nb.train.evaluate import TRAIN_METRICS, HistoryWriter
from rlhf_nb.train.preference import PreferenceConfig, pair_terms
from rlhf_nb.train.runs import Run


@dataclass
class OnlineSimPOConfig(PreferenceConfig):
    """One online SimPO run (fields: :class:`~rlhf_nb.train.preference.PreferenceConfig`;
    ``method`` must be ``"simpo"``, ``batch_size`` is prompts per step, each sampled twice)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method != "simpo":
            raise ValueError(f"method must be 'simpo' for online SimPO, got {self.method!r}")

    def label(self) -> str:
        return "online " + super().label()


def label_pairs(prompts: list[str], a: list[str], b: list[str], ra, rb):
    """Step 3: the proxy-preferred sample of each pair is the chosen one (ties go to ``a``);
    identical pairs are dropped. Returns ``(prompts, chosen, rejected)`` lists."""
    keep = [i for i in range(len(prompts)) if a[i] != b[i]]
    chosen = [a[i] if ra[i] >= rb[i] else b[i] for i in keep]
    rejected = [b[i] if ra[i] >= rb[i] else a[i] for i in keep]
    return [prompts[i] for i in keep], chosen, rejected


def train(testbed, config: OnlineSimPOConfig, *, on_step: Callable | None = None) -> Run:
    """Online SimPO on ``testbed`` (module docstring); returns a :class:`~rlhf_nb.train.runs.Run`.
    ``on_step(history)`` after each history row (the run contract,
    :mod:`rlhf_nb.train.contract`)."""
    check_type("config", config, OnlineSimPOConfig)
    tok = testbed.tokenizer
    with quiet():
        policy = testbed.load_sft_policy().to(config.device)
    opt = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    pool = list(testbed.preference_data["prompt"])
    g = torch.Generator().manual_seed(config.seed)
    log = HistoryWriter(testbed, config, on_step)
    log.start(policy)
    interval, status, message, start = [], "finished", "", time.perf_counter()
    try:
        for step in range(1, config.steps + 1):
            # 1-2. prompts, and two samples from the current policy for each
            idx = torch.randint(len(pool), (config.batch_size,), generator=g).tolist()
            prompts = [pool[i] for i in idx]
            ys = testbed.sample(policy, prompts, n=2, seed=config.seed * 1_000_003 + step)
            # 3. the proxy RM ranks each pair
            a, b = ys[0::2], ys[1::2]
            ra, rb = testbed.proxy_reward(prompts, a), testbed.proxy_reward(prompts, b)
            p, w, l_ = label_pairs(prompts, a, b, ra, rb)
            if p:  # 4. the SimPO loss (or its summed form) and one optimiser step
                metrics = _update(policy, opt, tok, config, step, p, w, l_)
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


def _update(policy, opt, tok, config, step: int, prompts, chosen, rejected) -> list[float]:
    """Step 4: the pair loss on the current policy, linear warm-up of the rate, one clipped AdamW
    step. Returns the interval metrics ``[loss, r_w, r_l, margin, accuracy]`` of this batch."""
    policy.train()
    ws, wa = sequence_logps(policy, tok, prompts, chosen, grad=True)
    ls, la = sequence_logps(policy, tok, prompts, rejected, grad=True)
    rw, rl, loss, _ = pair_terms(config, (ws, wa, ls, la))
    loss, rw, rl = loss.mean(), rw.detach(), rl.detach()
    for group in opt.param_groups:  # linear warm-up, then constant (as the TRL runs)
        group["lr"] = config.lr * min(1.0, step / max(1, config.warmup_steps))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    opt.step()
    return [loss.item(), rw.mean().item(), rl.mean().item(), (rw - rl).mean().item(),
            (rw > rl).float().mean().item()]  # fmt: skip
