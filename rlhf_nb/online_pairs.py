"""Online SimPO: the SimPO loss on pairs sampled from the *current* policy (notebook 06, part 3b).

Offline SimPO only ever scores the responses in a fixed data set. Here the same reference-free
loss gets fresh pairs every step, ranked by the proxy reward model, as in online DPO / "iterative"
preference optimisation. One step, top to bottom:

1. draw ``batch_size`` prompts from the preference-data prompts;
2. sample two responses per prompt from the current policy (temperature 1);
3. label them with the proxy RM: the higher proxy reward is ``y_w`` (identical pairs are dropped);
4. SimPO loss ``-log sigmoid(beta (avg log pi(y_w) - avg log pi(y_l)) - gamma)``
   (``losses.simpo_loss``; with ``length_normalize=False`` the summed MaxEnt loss
   ``losses.maxent_bt_loss``; both via ``offline_eval.pair_terms``), one AdamW step with
   gradient clipping at 1.

The config is :class:`rlhf_nb.offline.OfflineConfig` (``method="simpo"``) read the same way:
``batch_size`` is prompts per step; the history has the same columns as an offline run
(``loss``/``rewards_*``/``margin``/``accuracy`` are means over the interval's online pairs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rlhf_nb.models import quiet
from rlhf_nb.offline import EvalCallback, OfflineConfig, progress_bar
from rlhf_nb.offline_eval import pair_terms, sequence_logps
from rlhf_nb.runs import Run, cached_training


@dataclass
class OnlineSimPOConfig(OfflineConfig):
    """:class:`~rlhf_nb.offline.OfflineConfig` for online SimPO (``method`` must be ``"simpo"``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method != "simpo":
            raise ValueError(f"method must be 'simpo' for online SimPO, got {self.method!r}")

    def label(self) -> str:
        return "online " + super().label()


def train(testbed, config: OnlineSimPOConfig, *, on_eval: Callable | None = None) -> Run:
    """Online SimPO on ``testbed`` (module docstring); returns a :class:`~rlhf_nb.runs.Run`."""
    if not isinstance(config, OnlineSimPOConfig):
        raise TypeError(f"config must be OnlineSimPOConfig, got {type(config).__name__}")
    tok = testbed.tokenizer
    with quiet():
        policy = testbed.load_sft_policy().to(config.device)
    opt = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    pool = list(testbed.preference_data["prompt"])
    g = torch.Generator().manual_seed(config.seed)
    log = EvalCallback(testbed, config, on_eval)
    log.bar = progress_bar(config)
    log.evaluate(policy, 0)
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
            keep = [i for i in range(len(prompts)) if a[i] != b[i]]
            if not keep:
                continue
            p = [prompts[i] for i in keep]
            w = [a[i] if ra[i] >= rb[i] else b[i] for i in keep]
            l_ = [b[i] if ra[i] >= rb[i] else a[i] for i in keep]
            # 4. the SimPO loss (or its summed form) and one optimiser step
            policy.train()
            ws, wa = sequence_logps(policy, tok, p, w, grad=True)
            ls, la = sequence_logps(policy, tok, p, l_, grad=True)
            rw, rl, loss, _ = pair_terms(config, (ws, wa, ls, la))
            loss, rw, rl = loss.mean(), rw.detach(), rl.detach()
            for group in opt.param_groups:  # linear warm-up, then constant (as the TRL runs)
                group["lr"] = config.lr * min(1.0, step / max(1, config.warmup_steps))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            interval.append([loss.item(), rw.mean().item(), rl.mean().item(),
                             (rw - rl).mean().item(), (rw > rl).float().mean().item()])  # fmt: skip
            log.bar.update(1)
            if not math.isfinite(loss.item()):
                status, message = "diverged", f"non-finite loss at step {step}"
                break
            if step % config.eval_interval == 0 or step == config.steps:
                means = torch.tensor(interval).mean(0).tolist()
                cols = ("loss", "rewards_chosen", "rewards_rejected", "margin", "accuracy")
                log.rows.setdefault(step, {"step": step}).update(zip(cols, means))
                log.evaluate(policy, step)
                interval = []
    except KeyboardInterrupt:
        status, message = "interrupted", "stopped by the user"
    log.bar.close()
    if status == "finished":
        message = f"{config.steps} steps in {time.perf_counter() - start:.0f} s"
    return Run(config, log.history(), status, policy.eval(), message, log.samples)


def cached(testbed, config: OnlineSimPOConfig, *, refresh: bool = False, cache_dir=None) -> Run:
    """:func:`train`, cached under ``runs/online_simpo/<hash of config and testbed>``."""
    return cached_training(
        "online_simpo", testbed, config, lambda: train(testbed, config),
        cache_dir=cache_dir, refresh=refresh,
    )  # fmt: skip
