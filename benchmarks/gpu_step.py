"""One online RL step on a GPU at Pythia scale: ``rlhf_nb``'s loop vs TRL's ``GRPOTrainer``.

Builds randomly initialised Pythia-410m and Pythia-1b architectures (speed and memory do not
depend on the weights; :func:`rlhf_nb.testbed.tldr.pythia_config`, no download) as the policy
and the proxy reward model, saves them locally, and runs both trainers on the identical setting
through the TL;DR preset code path (:mod:`rlhf_nb.testbed.real`): the same prompts (~``--prompt-
tokens`` tokens, TL;DR's layout), ``--prompts`` × ``--k`` samples, ``--new-tokens`` new tokens,
β > 0 (both compute the reference log-probs), full fine-tuning, one dtype for both, no
gradient checkpointing (TRL's ``GRPOConfig`` turns it on by default). Rounds
alternate a block of steps of each, so drift in the machine hits both alike. Prints, per size,
the median seconds per step of each (after one untimed warm-up round of both, ``--warmup``),
their ratio (target: ours / TRL <= 1), generation tokens/s of our sampler, and the peak GPU
memory of each, with the GPU's name.

    python benchmarks/gpu_step.py                    # CUDA, ~5-8 minutes on one modern GPU
    python benchmarks/gpu_step.py --tiny --rounds 1  # a small CPU check of the script itself
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from online_step import StepTimer  # noqa: E402

from rlhf_nb.methods import grpo, online  # noqa: E402
from rlhf_nb.sampling import rollout  # noqa: E402
from rlhf_nb.testbed import real, standin, tldr  # noqa: E402


def build_models(folder: Path, size: str, tiny: bool, prompt_tokens: int, n_prompts: int):
    """Random policy and reward model of a Pythia size, a BPE tokenizer and TL;DR-like prompts,
    saved under ``folder``; returns the preset pointing at them."""
    import datasets
    from transformers import GPTNeoXForCausalLM, GPTNeoXForSequenceClassification

    src = standin.build(folder / "standin")  # tokenizer + documents of the stand-ins
    tok = real.load_tokenizer(str(src / "policy"))
    over = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=512,
                intermediate_size=256) if tiny else {}  # fmt: skip
    cfg = tldr.pythia_config(size, num_labels=1, pad_token_id=tok.pad_token_id, **over)
    torch.manual_seed(0)
    for name, cls in (("policy", GPTNeoXForCausalLM), ("rm", GPTNeoXForSequenceClassification)):
        cls(cfg).save_pretrained(folder / size / name)
        tok.save_pretrained(folder / size / name)
    words = datasets.load_from_disk(str(src / "prompts"))["train"]["prompt"]
    rng = random.Random(0)
    prompts = []
    for _ in range(n_prompts):  # posts of ~prompt_tokens tokens, ending in TL;DR:
        body = ""
        while len(tok(body)["input_ids"]) < prompt_tokens - 8:
            body += " " + rng.choice(words).split("POST:")[-1].removesuffix("TL;DR:").strip()
        prompts.append(f"POST:{body}\n\nTL;DR:")
    split = {"train": prompts[8:], "validation": prompts[:8]}
    datasets.DatasetDict({
        k: datasets.Dataset.from_dict({"prompt": v, "completion": ["a summary"] * len(v)})
        for k, v in split.items()
    }).save_to_disk(folder / size / "data")  # fmt: skip
    path = folder / size
    return tldr.TLDRPreset(
        name=f"bench-{size}", policy=str(path / "policy"), proxy_rm=str(path / "rm"),
        gold_rm=str(path / "rm"), prompts=str(path / "data"), preferences=str(path / "data"),
        n_train_prompts=0, n_eval_prompts=8, max_prompt_tokens=prompt_tokens + 64, lora_r=0,
        eval_batch_size=64, missing_eos_penalty=0.0,
    )  # fmt: skip


def peak_gb(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else float("nan")


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def ours(testbed, a, seed: int, device: str) -> tuple[list[float], float, float]:
    """Seconds per step of ``rlhf_nb.methods.online`` (steps 1..n; step 0 also evaluates),
    generation tokens/s of its sampler, peak memory."""
    reset_peak(device)
    cfg = online.OnlineConfig(regularizer="kl", beta=0.04, lr=1e-6, steps=a.steps + 1,
                              prompts_per_step=a.prompts, k=a.k, max_new_tokens=a.new_tokens,
                              eval_interval=10**6, n_eval_prompts=8, seed=seed,
                              device=device)  # fmt: skip
    ends = []  # when each step's row was logged

    def timer(history):
        if device == "cuda":
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
        if len(history) == a.steps + 1:  # steps 0..n done: skip the last, measuring-only row
            raise KeyboardInterrupt

    policy = online.train(testbed, cfg, on_step=timer, progress=False).policy
    times = [t1 - t0 for t0, t1 in zip(ends, ends[1:])]
    prompts = testbed.task.documents(a.prompts, random.Random(seed))
    t0 = time.perf_counter()
    batch = rollout(policy, testbed.tokenizer, prompts, a.k, a.new_tokens)
    if device == "cuda":
        torch.cuda.synchronize()
    tps = batch["length"].sum().item() / (time.perf_counter() - t0)
    mem = peak_gb(device)
    del policy, batch
    testbed.unload_sft_policy()  # TRL loads its own reference: do not count ours twice
    gc.collect()
    return times, tps, mem


def trl(testbed, a, seed: int, device: str, dtype) -> tuple[list[float], float]:
    """Seconds per step of TRL's ``GRPOTrainer`` on the same setting (first step dropped: it
    includes the dataloader's start), peak memory."""
    reset_peak(device)
    gcfg = grpo.GRPOCheckConfig(beta=0.04, lr=1e-6, steps=a.steps + 1,
                                prompts_per_step=a.prompts, k=a.k, seed=seed)  # fmt: skip
    trainer, _ = grpo.grpo_trainer(
        testbed, gcfg, use_cpu=device == "cpu", max_completion_length=a.new_tokens,
        model_init_kwargs={"dtype": dtype}, bf16=dtype == torch.bfloat16,
        gradient_checkpointing=False,  # TRL's default is on; our loop does not recompute
    )  # fmt: skip
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    mem = peak_gb(device)
    del trainer
    gc.collect()
    return timer.times[1:], mem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="410m,1b", help="comma-separated Pythia sizes")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--warmup",
        type=int,
        default=1,
        choices=(0, 1),
        help="one untimed round of each trainer first (1, the default) or none (0)",
    )
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round and trainer")
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step")
    ap.add_argument("--k", type=int, default=4, help="samples per prompt")
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=53)
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16",
                    help="weights of both trainers on the GPU (CPU: float32)")  # fmt: skip
    ap.add_argument("--tiny", action="store_true", help="small random models on the CPU")
    a = ap.parse_args()
    device = "cpu" if a.tiny or not torch.cuda.is_available() else "cuda"
    if device == "cpu" and not a.tiny:
        sys.exit("no CUDA device: run on a GPU, or pass --tiny for a CPU check of the script")
    dtype = torch.float32 if device == "cpu" else getattr(torch, a.dtype)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU (--tiny)"
    rows, t_start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes.split(","):
            n = 8 + a.prompts * (a.steps + 2)  # evaluation + every step's prompts
            preset = build_models(Path(tmp), size, a.tiny, a.prompt_tokens, n)
            d = a.dtype if device == "cuda" else "float32"
            testbed = real.load(preset, device=device, dtype=d, gold_dtype=d)
            o, t, tps, mo, mt = [], [], [], [], []
            if a.warmup:  # untimed: the process's first CUDA steps (kernel choice, allocator
                ours(testbed, a, 0, device)  # growth) would otherwise land on whichever
                trl(testbed, a, 0, device, dtype)  # trainer runs first, always ours
            for r in range(a.rounds):
                ot, otps, om = ours(testbed, a, r, device)
                tt, tm = trl(testbed, a, r, device, dtype)
                o, t, tps, mo, mt = o + ot, t + tt, tps + [otps], mo + [om], mt + [tm]
                print(f"{size} round {r}: ours {statistics.median(ot):.3f} s/step, "
                      f"TRL {statistics.median(tt):.3f} s/step", flush=True)  # fmt: skip
            rows.append((size, statistics.median(o), statistics.median(t),
                         statistics.median(tps), max(mo), max(mt)))  # fmt: skip
            del testbed
    print(f"\n{name}; batch {a.prompts}x{a.k}, prompt ~{a.prompt_tokens} tokens, "
          f"{a.new_tokens} new tokens, dtype {dtype}, full fine-tuning, beta 0.04")  # fmt: skip
    print("| size | ours s/step | TRL s/step | ours/TRL | gen tokens/s | peak GB ours | TRL |")
    print("|---|---|---|---|---|---|---|")
    for size, mo, mt, tps, po, pt in rows:
        print(f"| {size} | {mo:.3f} | {mt:.3f} | {mo / mt:.2f} | {tps:.0f} | {po:.1f} | {pt:.1f} |")
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
