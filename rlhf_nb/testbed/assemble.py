"""How a testbed is built and checked on disk (steps 1-4 of ``rlhf_nb.testbed``).

``build_into`` writes every artefact of one build into a folder; ``checksum``/``verify`` are the
cache's integrity check (a SHA-256 over every file, stored in a completeness marker written last).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from pathlib import Path

import torch

from rlhf_nb.sampling import generate, reward_scores
from rlhf_nb.testbed.models import (
    make_config,
    make_tokenizer,
    new_policy,
    reward_model_from_policy,
    train_reward_model,
    train_sft,
)
from rlhf_nb.testbed.presets import CODE_VERSION, Preset, task_for

MARKER = "COMPLETE.json"


def checksum(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER):
        h.update(str(f.relative_to(folder)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def verify(path: Path) -> str | None:
    """``None`` if the cached build is complete and intact, else what is wrong."""
    try:
        expected = json.loads((path / MARKER).read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        return "no valid completeness marker (partial build?)"
    return None if checksum(path) == expected else "checksum mismatch (corrupted files)"


def build_into(out: Path, preset: Preset, seed: int) -> None:
    """Steps 1-4 of the module docstring, writing every artefact under ``out``."""
    start = time.perf_counter()
    task = task_for(preset)
    rng = random.Random(seed)
    eval_prompts = task.documents(preset.n_eval_prompts, rng)
    sft_docs = task.documents(preset.n_sft_docs, rng, exclude=set(eval_prompts))
    pref_prompts = task.documents(preset.n_pref_prompts, rng, exclude=set(eval_prompts))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        # 2. SFT on reference summaries
        tokenizer = make_tokenizer(task.vocabulary)
        config = make_config(
            len(tokenizer), preset.hidden_size, preset.num_layers, preset.num_heads
        )
        policy = new_policy(config, seed)
        refs = [task.reference(p, seed) for p in sft_docs]
        sft_losses = train_sft(
            policy, tokenizer, sft_docs, refs,
            steps=preset.sft_steps, batch_size=preset.sft_batch_size, lr=preset.sft_lr, seed=seed,
        )  # fmt: skip
        policy.save_pretrained(out / "sft")
        tokenizer.save_pretrained(out / "sft")
        # 3. Preference pairs labelled by the noisy gold Bradley-Terry model
        torch.manual_seed(seed + 1)
        samples = generate(
            policy, tokenizer, pref_prompts, n=2, max_new_tokens=preset.max_new_tokens
        )
        pairs = [(p, samples[2 * i], samples[2 * i + 1]) for i, p in enumerate(pref_prompts)]
        pairs = [(p, a, b) for p, a, b in pairs if a != b]
        ps = [p for p, _, _ in pairs]
        ga = torch.tensor(task.gold_rewards(ps, [a for _, a, _ in pairs]))
        gb = torch.tensor(task.gold_rewards(ps, [b for _, _, b in pairs]))
        a_wins = torch.rand(len(pairs)) < torch.sigmoid(preset.label_beta * (ga - gb))
        rows = {"prompt": [], "chosen": [], "rejected": [], "gold_chosen": [], "gold_rejected": []}
        for (p, a, b), win, x, y in zip(pairs, a_wins.tolist(), ga.tolist(), gb.tolist()):
            rows["prompt"].append(p)
            rows["chosen"].append(a if win else b)
            rows["rejected"].append(b if win else a)
            rows["gold_chosen"].append(x if win else y)
            rows["gold_rejected"].append(y if win else x)
        n_train = round(len(pairs) * (1 - preset.heldout_fraction))
        split = {k: {c: v[:n_train] if k == "train" else v[n_train:] for c, v in rows.items()}
                 for k in ("train", "heldout")}  # fmt: skip
        # 4. Proxy reward model, initialised from the SFT policy
        rm = reward_model_from_policy(out / "sft", seed)
        tr = split["train"]
        rm_losses = train_reward_model(
            rm, tokenizer, tr["prompt"], tr["chosen"], tr["rejected"],
            steps=preset.rm_steps, batch_size=preset.rm_batch_size, lr=preset.rm_lr, seed=seed,
        )  # fmt: skip
        rm.save_pretrained(out / "rm")
        tokenizer.save_pretrained(out / "rm")
        torch.manual_seed(seed + 2)
        stats = measure(task, policy, rm, tokenizer, eval_prompts, split["heldout"], seed, preset)
        stats["n_train_pairs"] = n_train
    (out / "preferences.json").write_text(json.dumps({
        k: {c: split[k][c] for c in ("prompt", "chosen", "rejected")} for k in split
    }))  # fmt: skip
    (out / "meta.json").write_text(json.dumps({
        "preset": dataclasses.asdict(preset), "seed": seed, "code_version": CODE_VERSION,
        "eval_prompts": eval_prompts, "stats": stats, "sft_losses": sft_losses,
        "rm_losses": rm_losses, "build_seconds": time.perf_counter() - start,
    }, indent=1))  # fmt: skip


def win_rate(gold: torch.Tensor, ref_gold: torch.Tensor) -> float:
    """``P(gold > ref_gold)`` over paired gold rewards, ties counting 1/2 (:meth:`Testbed.win_rate
    <rlhf_nb.testbed.Testbed.win_rate>` and the build's ``sft_win_rate``)."""
    return ((gold > ref_gold).float() + 0.5 * (gold == ref_gold).float()).mean().item()


def measure(task, policy, rm, tokenizer, eval_prompts, heldout, seed, preset) -> dict:
    """Build-time figures: RM held-out accuracy, proxy-gold correlation, mean gold of SFT samples,
    references and oracle, SFT win rate (notebook 04 recomputes them).

    The :class:`rlhf_nb.testbed.Testbed` does not exist yet (it loads these figures), so the
    task's own summarisers and gold reward are used directly."""

    def gold(ps, rs):
        return torch.tensor(task.gold_rewards(ps, rs))

    rc = reward_scores(rm, tokenizer, heldout["prompt"], heldout["chosen"])
    rr = reward_scores(rm, tokenizer, heldout["prompt"], heldout["rejected"])
    gc, gr = torch.tensor(heldout["gold_chosen"]), torch.tensor(heldout["gold_rejected"])
    prompts = [p for p in eval_prompts for _ in range(4)]
    sft = generate(policy, tokenizer, eval_prompts, n=4, max_new_tokens=preset.max_new_tokens)
    g_sft, r_sft = gold(prompts, sft), reward_scores(rm, tokenizer, prompts, sft)
    g_ref = gold(prompts, [task.reference(p, seed) for p in prompts])
    return {
        "rm_heldout_accuracy": (rc > rr).float().mean().item(),
        "rm_heldout_gold_accuracy": ((rc > rr) == (gc > gr)).float()[gc != gr].mean().item(),
        "label_gold_agreement": (gc > gr).float()[gc != gr].mean().item(),
        "n_heldout_pairs": len(heldout["prompt"]),
        "proxy_gold_pearson": torch.corrcoef(torch.stack([g_sft, r_sft]))[0, 1].item(),
        "gold_sft": g_sft.mean().item(),
        "gold_reference": g_ref.mean().item(),
        "gold_oracle": gold(eval_prompts, [task.oracle(p) for p in eval_prompts]).mean().item(),
        "sft_win_rate": win_rate(g_sft, g_ref),
    }
