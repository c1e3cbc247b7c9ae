"""Where the time of one tiny RL step goes: each named step of the online loop, and the offline one.

Online (:mod:`rlhf_nb.methods.online`): every named step the loop calls (rollout, score,
log_probs, regularised_loss, update, evaluate) is wrapped with a timer for one run of ``--steps``
steps; the rest of the step (history rows, prompt drawing, bookkeeping) is what is left of the
row's ``seconds``. Reported per step: mean seconds and share of the step. The rollout is split
further with ``torch.profiler`` into the model's forward passes (``aten::`` ops inside
``generate``) and everything else (the Python of ``generate``: logits processors, stopping
criteria, cache bookkeeping).

Offline (:mod:`rlhf_nb.methods.offline`): TRL's trainer step (forward + backward + Adam) vs the
history's held-out evaluation, from the same kind of wrapping.

    .venv/bin/python benchmarks/profile_step.py [--preset tiny] [--steps 20] [--seed 0]

Timings on a shared CPU are noisy; the shares are what to read.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
from collections import defaultdict

import torch

from rlhf_nb import testbed
from rlhf_nb.methods import evaluate as evaluate_mod
from rlhf_nb.methods import offline, online


@contextlib.contextmanager
def timed(module, names, totals):
    """Replace ``module.<name>`` by a wrapper adding its wall time to ``totals[name]``."""
    saved = {n: getattr(module, n) for n in names}

    def wrap(name, fn):
        def inner(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                totals[name] += time.perf_counter() - t0

        return inner

    for n, fn in saved.items():
        setattr(module, n, wrap(n, fn))
    try:
        yield totals
    finally:
        for n, fn in saved.items():
            setattr(module, n, fn)


def table(totals: dict, total: float, steps: int, title: str) -> None:
    print(f"\n{title}: {total / steps:.4f} s per step over {steps} steps")
    print("| part | s/step | share |\n|---|---:|---:|")
    rest = total - sum(totals.values())
    for name, t in [*sorted(totals.items(), key=lambda kv: -kv[1]), ("rest (Python)", rest)]:
        print(f"| {name} | {t / steps:.4f} | {t / total:.0%} |")


def profile_online(tb, steps: int, seed: int) -> None:
    names = ["rollout", "score", "log_probs", "regularised_loss", "update", "evaluate"]
    cfg = online.OnlineConfig(steps=steps, seed=seed, regularizer="entropy", alpha=0.05)
    with timed(online, names, defaultdict(float)) as totals:
        run = online.train(tb, cfg, progress=False)
    total = run.history["seconds"].sum()
    table(totals, total, len(run.history), f"online step ({cfg.label()}, {cfg.prompts_per_step}"
          f" prompts x {cfg.k}, {tb.max_new_tokens} new tokens)")  # fmt: skip
    # inside the rollout: model forward ops vs the rest of generate's Python
    policy = tb.load_sft_policy()
    prompts = tb.task.documents(cfg.prompts_per_step, random.Random(seed), set(tb.eval_prompts))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(5):
            online.rollout(policy, tb.tokenizer, prompts, cfg.k, tb.max_new_tokens)
        wall = (time.perf_counter() - t0) / 5
    ops = prof.key_averages()
    forward = sum(e.self_cpu_time_total for e in ops if e.key.startswith("aten::")) / 5e6
    print(f"\nrollout: {wall:.4f} s; aten ops {forward:.4f} s ({forward / wall:.0%}), "
          f"the rest ({1 - forward / wall:.0%}) is Python around them")  # fmt: skip
    top = sorted(ops, key=lambda e: -e.self_cpu_time_total)[:8]
    names = [f"{e.key} {e.self_cpu_time_total / 5e3:.1f} x{e.count // 5}" for e in top]
    print("top aten ops by self time (ms per rollout):", ", ".join(names))


def profile_offline(tb, steps: int, seed: int) -> None:
    cfg = offline.OfflineConfig(method="simpo", steps=steps, seed=seed, eval_interval=10)
    with timed(evaluate_mod.HistoryWriter, ["evaluate"], defaultdict(float)) as totals:
        t0 = time.perf_counter()
        offline.train(tb, cfg)
        total = time.perf_counter() - t0
    totals["trainer (forward, backward, Adam, TRL)"] = total - sum(totals.values())
    table(dict(totals), total, steps, f"offline step ({cfg.label()}, batch {cfg.batch_size} pairs)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    tb = testbed.build(a.preset, seed=a.seed)
    profile_online(tb, a.steps, a.seed)
    profile_offline(tb, a.steps, a.seed)


if __name__ == "__main__":
    main()
