"""Seconds per RL step: ``rlhf_nb.methods.online`` (RLOO) vs TRL's ``GRPOTrainer``, interleaved.

Identical model (the testbed's SFT policy), prompts x k, and max new tokens. Each round times a
block of steps of each, alternating, so that load from other processes hits both alike. Prints
both medians and the ratio (target: ours / TRL <= 0.67). Timings on a shared CPU are noisy.
With ``--beta 0`` TRL skips the reference model while our loop always runs it (the history logs
KL to SFT); ``--beta 0.05`` makes both compute reference log-probs.

    .venv/bin/python benchmarks/online_step.py [--preset tiny] [--rounds 3] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import TrainerCallback

from rlhf_nb import testbed
from rlhf_nb.methods import grpo, online


class StepTimer(TrainerCallback):
    """Wall time of every optimiser step of a Trainer (generation + scoring + update)."""

    def __init__(self):
        self.times, self._t0 = [], None

    def on_step_begin(self, args, state, control, **kw):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self._t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--beta", type=float, default=0.0, help="> 0: both compute reference log-probs")
    ap.add_argument("--trl-checkpointing", action="store_true",
                    help="keep TRL's default: recompute activations")  # fmt: skip
    a = ap.parse_args()
    torch.set_num_threads(1)
    tb = testbed.build(a.preset)
    reg = dict(regularizer="kl", beta=a.beta) if a.beta > 0 else {}
    ours, trl = [], []
    for r in range(a.rounds):
        cfg = online.OnlineConfig(
            steps=a.steps, prompts_per_step=a.prompts, k=a.k, eval_interval=10**6, seed=r, **reg
        )
        # final row only measures (no update) and row 0 also evaluates: drop both
        h = online.train(tb, cfg, progress=False).history
        ours_r = h["seconds"].iloc[1:-1].tolist()
        ours += ours_r
        gcfg = grpo.GRPOCheckConfig(
            beta=a.beta, steps=a.steps, prompts_per_step=a.prompts, k=a.k, seed=r
        )
        # TRL's GRPOConfig turns gradient checkpointing on by default; our loop does not
        # recompute, so the fair comparison turns it off (--trl-checkpointing keeps TRL's default)
        trainer, _ = grpo.grpo_trainer(tb, gcfg, gradient_checkpointing=a.trl_checkpointing)
        timer = StepTimer()
        trainer.add_callback(timer)
        trainer.train()
        trl_r = timer.times[1:]  # the first step includes dataloader start-up
        trl += trl_r
        mo, mt = statistics.median(ours_r), statistics.median(trl_r)
        print(f"round {r}: ours {mo:.3f} s/step, TRL {mt:.3f} s/step")
    mo, mt = statistics.median(ours), statistics.median(trl)
    print(
        f"preset={a.preset} batch={a.prompts}x{a.k} "
        f"max_new_tokens={tb.max_new_tokens} beta={a.beta}"
    )
    print(f"rlhf_nb.methods.online: median {mo:.3f} s/step over {len(ours)} steps")
    print(f"TRL GRPOTrainer: median {mt:.3f} s/step over {len(trl)} steps")
    print(f"ratio ours/TRL = {mo / mt:.2f} (target <= 0.67)")


if __name__ == "__main__":
    main()
