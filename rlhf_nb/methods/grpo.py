"""An independent cross-check of notebook 05 with TRL's ``GRPOTrainer``, a library we did not write.

Same testbed, same SFT start, the proxy RM as the reward function; ``beta=0, entropy_coef=α``
is the entropy-regularised, anchor-free run, ``beta>0`` the KL-regularised one (GRPO puts the k3
estimator in the loss). The reward function also records the gold reward of every completion,
and the trained policy's KL to SFT (k1), entropy, length and win rate are measured on held-out
prompts at the end, so the result is a :class:`rlhf_nb.runs.record.Run` that
``rlhf_nb.viz.run_plots`` draws like ours.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import datasets
import pandas as pd

from rlhf_nb.core import check_ints, check_range, check_type, quiet
from rlhf_nb.methods.evaluate import policy_metrics
from rlhf_nb.runs.record import COLUMNS, Run


@dataclass
class GRPOCheckConfig:
    """A small GRPO run (TRL 1.16 ``GRPOConfig`` fields in brackets).

    Attributes:
        beta: KL coefficient β [``beta``], k3 per token in the loss (0: no anchor); loss units
            per nat/token.
        entropy_coef: token-level entropy temperature α [``entropy_coef``]: -α·H̄_tok in the
            loss, loss units per nat/token.
        lr: learning rate [``learning_rate``], constant.
        steps: optimiser steps [``max_steps``].
        prompts_per_step: prompts per step; the batch is ``prompts_per_step * k`` completions.
        k: samples per prompt [``num_generations``].
        seed: seeds the prompts and TRL [``seed``].
    """

    beta: float = 0.0
    entropy_coef: float = 0.0
    lr: float = 3e-4
    steps: int = 100
    prompts_per_step: int = 16
    k: int = 4
    seed: int = 0

    def __post_init__(self):
        check_range("beta", self.beta, 0.0, None)
        check_range("entropy_coef", self.entropy_coef, 0.0, None)
        check_range("lr", self.lr, 0.0, None, low_inclusive=False)
        check_ints(self, {"steps": 1, "prompts_per_step": 1, "k": 2, "seed": 0})

    def label(self) -> str:
        return f"TRL GRPO β={self.beta:g}, entropy_coef={self.entropy_coef:g}, lr={self.lr:.0e}"


def grpo_trainer(
    testbed,
    config: GRPOCheckConfig,
    *,
    output_dir: str | None = None,
    on_log: Callable | None = None,
    model=None,
    **overrides,
):
    """A ``GRPOTrainer`` on the testbed (CPU, fp32, no logging); ``overrides`` replace
    GRPOConfig fields (e.g. ``use_cpu=False``); ``model``: a loaded policy instead of the SFT
    folder.

    Returns ``(trainer, log)``, ``log`` a list the reward function appends
    ``(gold mean, proxy mean)`` to at every generation batch (then it calls ``on_log(log)``).
    """
    from trl import GRPOConfig, GRPOTrainer

    rng = random.Random(config.seed)
    n = config.steps * config.prompts_per_step
    prompts = testbed.task.documents(n, rng, exclude=set(testbed.eval_prompts))
    log: list[tuple[float, float]] = []

    def proxy_reward(prompts, completions, **_):
        proxy = testbed.proxy_reward(list(prompts), [c.strip() for c in completions])
        gold = testbed.gold_reward(list(prompts), [c.strip() for c in completions])
        log.append((gold.mean().item(), proxy.mean().item()))
        if on_log is not None:
            on_log(log)
        return proxy.tolist()

    with quiet(), warnings.catch_warnings():
        # transformers 5 renames (e.g. gradient_checkpointing) that TRL's defaults trigger
        warnings.simplefilter("ignore", FutureWarning)
        fields = dict(
            output_dir=output_dir or tempfile.mkdtemp(prefix="grpo-"),
            beta=config.beta,
            entropy_coef=config.entropy_coef,
            learning_rate=config.lr,
            lr_scheduler_type="constant",
            warmup_steps=0,
            max_steps=config.steps,
            per_device_train_batch_size=config.prompts_per_step * config.k,
            num_generations=config.k,
            max_completion_length=testbed.max_new_tokens,
            temperature=1.0,
            top_k=0,
            seed=config.seed,
            use_cpu=True,
            bf16=False,
            report_to="none",
            logging_steps=1,
            save_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        args = GRPOConfig(**(fields | overrides))  # e.g. use_cpu=False on a GPU
        trainer = GRPOTrainer(
            model=str(testbed.sft_path) if model is None else model,
            reward_funcs=proxy_reward,
            args=args,
            train_dataset=datasets.Dataset.from_dict({"prompt": prompts}),
            processing_class=testbed.tokenizer,
        )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints every log dict when tqdm is disabled
    return trainer, log


EVAL_PROMPTS = 64  # held-out prompts of the end-of-run measurement


def _history(log: list[tuple[float, float]], seconds: float) -> pd.DataFrame:
    rows = [{"step": i, "gold": g, "proxy": p, "seconds": seconds} for i, (g, p) in enumerate(log)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def train(testbed, config: GRPOCheckConfig, *, on_step: Callable | None = None) -> Run:
    """Train with TRL GRPO and return a :class:`Run`: gold/proxy per step from the reward
    function; KL to SFT (k1), entropy, length, EOS rate and win rate of the last row measured on
    :data:`EVAL_PROMPTS` held-out prompts with :func:`rlhf_nb.methods.evaluate.policy_metrics`,
    seeded by ``config.seed``. ``on_step(history)`` after every generation batch (the run
    contract, :mod:`rlhf_nb.runs.contract`)."""
    check_type("config", config, GRPOCheckConfig)
    t0 = time.perf_counter()
    on_log = None if on_step is None else (lambda log: on_step(_history(log, math.nan)))
    trainer, log = grpo_trainer(testbed, config, on_log=on_log)
    status, message = "finished", f"{config.steps} GRPO steps"
    try:
        with quiet(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            trainer.train()
    except KeyboardInterrupt:
        status, message = "interrupted", f"stopped by the user after {len(log)} steps"
    seconds = (time.perf_counter() - t0) / max(1, len(log))
    policy = trainer.model.eval()
    hist = _history(log, seconds)
    prompts = testbed.eval_prompts[:EVAL_PROMPTS]
    metrics, texts = policy_metrics(testbed, policy, prompts, seed=config.seed, n_show=4)
    last = hist.index[-1]
    for col in ("kl_k1", "entropy_token", "length", "eos_rate", "win_rate"):
        hist.loc[last, col] = metrics[col]
    hist.loc[0, "kl_k1"] = 0.0
    if not all(math.isfinite(g) for g, _ in log):
        status, message = "diverged", "non-finite gold reward"
    samples = {config.steps: [f"{x} {y}" for x, y in zip(prompts, texts)]}
    return Run(config, hist, status, policy, message, samples)
