"""Would training several seeds as one batched program pay on this CPU? Measure it first.

Three ways to run the forward pass of M policies (M seeds of one setting, each on its own
samples), timed interleaved on the same inputs:

* ``loop``: M ordinary forward passes, one per member (what M runs in one process do);
* ``vmap``: ``torch.func.stack_module_state`` + ``functional_call`` + ``vmap`` over the stacked
  parameters (PyTorch's vectorised-ensemble recipe; HF's mask builder has data-dependent control
  flow, so the causal+padding mask is passed in 4-D);
* ``ceiling``: ONE model on all M·B rows. No stacked scheme (vmap, a bmm-stacked model, an
  ensemble layer) can do less work than this, since it performs the same multiply-adds with no
  member dimension; so ``ceiling / loop`` bounds what batching the seeds could save.

Each is timed for the training-shaped pass (full sequences, B = prompts·k rows) and for one
decode step of generation (one new token per row on a KV cache, where per-call overhead weighs
most). The first table shows whether the pass is bound by per-op overhead or by arithmetic:
seconds per token against the number of rows.

    .venv/bin/python benchmarks/batched_seeds.py [--members 3] [--rows 128] [--rounds 5]
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time

import torch
from torch.func import functional_call, stack_module_state, vmap

from rlhf_nb import testbed
from rlhf_nb.sampling import cache_kwarg, positions, prompt_cache, rollout


def timeit(fn, rounds: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def mask4(attn: torch.Tensor) -> torch.Tensor:
    """[B, T] padding mask -> [B, 1, T, T] boolean causal+padding mask (what HF builds)."""
    t = attn.shape[-1]
    causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
    return (causal[None] & attn.bool()[:, None, :])[:, None]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--rows", type=int, default=128, help="rows per member (prompts x k)")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    tb = testbed.build(a.preset)
    m, k = a.members, 4
    policies = [tb.load_sft_policy().eval() for _ in range(m)]
    n_params = sum(p.numel() for p in policies[0].parameters())

    # 1. overhead or arithmetic? seconds per token of one forward vs rows
    print(f"policy: {n_params:,} parameters; torch threads: {torch.get_num_threads()}")
    print("\n| rows | tokens | ms / forward | µs / token |\n|---:|---:|---:|---:|")
    seq = 37
    for rows in (8, 32, 128, 384):
        ids = torch.randint(2, len(tb.tokenizer) - 1, (rows, seq))
        with torch.no_grad():
            t = timeit(lambda ids=ids: policies[0](input_ids=ids), a.rounds)
        print(f"| {rows} | {rows * seq} | {t * 1e3:.1f} | {t / rows / seq * 1e6:.2f} |")

    # 2. M members on their own samples: loop vs vmap vs the ceiling
    prompts = tb.task.documents(a.rows // k, random.Random(0), set(tb.eval_prompts))
    torch.manual_seed(0)
    batches = [rollout(p, tb.tokenizer, prompts, k, tb.max_new_tokens) for p in policies]
    width = max(b["ids"].shape[1] for b in batches)
    pad = torch.nn.functional.pad
    ids = torch.stack([pad(b["ids"], (0, width - b["ids"].shape[1])) for b in batches])
    attn = torch.stack([pad(b["attention_mask"], (0, width - b["ids"].shape[1])) for b in batches])
    params, buffers = stack_module_state(policies)
    base = copy.deepcopy(policies[0]).to("meta")

    def member(p, b, i, am):
        kw = dict(input_ids=i, attention_mask=mask4(am), position_ids=positions(am))
        return functional_call(base, (p, b), args=(), kwargs=kw).logits

    batched = vmap(member)

    def loop():
        for j in range(m):
            policies[j](input_ids=ids[j], attention_mask=attn[j], position_ids=positions(attn[j]))

    flat_ids, flat_attn = ids.flatten(0, 1), attn.flatten(0, 1)

    def ceiling():
        policies[0](input_ids=flat_ids, attention_mask=flat_attn, position_ids=positions(flat_attn))

    with torch.no_grad():
        err = (
            batched(params, buffers, ids, attn)[1]
            - policies[1](
                input_ids=ids[1], attention_mask=attn[1], position_ids=positions(attn[1])
            ).logits
        )
        real = attn[1].bool()
        err = err[real].abs().max().item()
        t_loop = timeit(loop, a.rounds)
        t_vmap = timeit(lambda: batched(params, buffers, ids, attn), a.rounds)
        t_ceil = timeit(ceiling, a.rounds)
    print(f"\ntraining-shaped forward, {m} members x {a.rows} rows x {width} tokens "
          f"(vmap vs member 1 on real tokens: max |Δlogit| {err:.1e})")  # fmt: skip
    print("| method | ms | ratio to loop |\n|---|---:|---:|")
    for name, t in (("loop", t_loop), ("vmap", t_vmap), ("ceiling (one model, all rows)", t_ceil)):
        print(f"| {name} | {t * 1e3:.1f} | {t / t_loop:.2f} |")

    # 3. one decode step on a KV cache (per-call overhead weighs most here)
    enc = tb.tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left",
                       add_special_tokens=False)  # fmt: skip
    pid, pm = enc["input_ids"], enc["attention_mask"]
    step_in = torch.randint(2, len(tb.tokenizer) - 1, (a.rows, 1))
    big_pid, big_pm = pid.repeat(m, 1), pm.repeat(m, 1)

    def decode(policy, pid_, pm_, new):
        with torch.no_grad():
            _, cache = prompt_cache(policy, pid_, pm_, k)
            am = torch.cat([pm_.repeat_interleave(k, 0), torch.ones_like(new)], dim=1)
            t0 = time.perf_counter()
            policy(input_ids=new, attention_mask=am, position_ids=positions(am)[:, -1:],
                   use_cache=True, **{cache_kwarg(policy): cache})  # fmt: skip
            return time.perf_counter() - t0

    d_loop = statistics.median(
        sum(decode(p, pid, pm, step_in) for p in policies) for _ in range(a.rounds)
    )
    d_ceil = statistics.median(
        decode(policies[0], big_pid, big_pm, step_in.repeat(m, 1)) for _ in range(a.rounds)
    )
    print(f"\none decode step (1 token per row, KV cache of the prompt), {m} members")
    print("| method | ms | ratio to loop |\n|---|---:|---:|")
    print(f"| loop | {d_loop * 1e3:.2f} | 1.00 |")
    print(f"| ceiling (one model, all rows) | {d_ceil * 1e3:.2f} | {d_ceil / d_loop:.2f} |")


if __name__ == "__main__":
    main()
