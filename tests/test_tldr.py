"""The TL;DR preset code path on tiny local stand-ins (``rlhf_nb.testbed.standin``): the real
loading code (tokenizers, pad token, reward models of another tokenizer, datasets from disk,
LoRA), the rewards both ways, and every method running unchanged on it."""

from __future__ import annotations

import random

import pytest
import torch

from rlhf_nb.methods import offline, online
from rlhf_nb.runs import train
from rlhf_nb.sampling import rollout, token_logprobs
from rlhf_nb.testbed import real, standin, tldr


@pytest.fixture(scope="module")
def tb():
    return real.load(standin.preset(), device="cpu")


def test_presets_are_checked_before_loading():
    with pytest.raises(ValueError, match="preset must be one of"):
        real.load("pythia-9b-tldr")
    with pytest.raises(ValueError, match="unknown TL;DR preset field 'polcy'"):
        real.load("pythia-1b-tldr", polcy="x")
    with pytest.raises(ValueError, match="dtype must be one of"):
        tldr.resolve_tldr_preset("pythia-1b-tldr", dtype="float8")
    with pytest.raises(ValueError, match="max_new_tokens"):
        tldr.resolve_tldr_preset("pythia-1b-tldr", max_new_tokens=0)
    for p in tldr.TLDR_PRESETS.values():  # names as published (module docstring)
        assert p.policy.startswith("cleanrl/EleutherAI_pythia-") and p.policy.endswith("tldr")
        assert "__reward__" in p.proxy_rm and "__reward__" in p.gold_rm


def test_pythia_sizes_match_the_published_parameter_counts():
    # Biderman et al. 2023 (Pythia), Table 1, total parameters
    published = {"160m": 162_322_944, "410m": 405_334_016, "1b": 1_011_781_632,
                 "2.8b": 2_775_208_960, "6.9b": 6_857_302_016}  # fmt: skip
    for size, n in published.items():
        assert tldr.parameter_count(size) == n, size


def test_lora_count_equals_peft(tb):
    policy = tb.load_sft_policy()
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    cfg = policy.get_base_model().config
    assert trainable == tldr.lora_parameters(cfg.hidden_size, cfg.num_hidden_layers, 4)
    est = tldr.memory_estimate("pythia-1b-tldr")
    with torch.device("meta"):  # the gold RM's count: a 2.8b backbone with a scalar head
        from transformers import GPTNeoXForSequenceClassification

        rm = GPTNeoXForSequenceClassification(tldr.pythia_config("2.8b", num_labels=1))
    assert est["gold RM"] == pytest.approx(sum(p.numel() for p in rm.parameters()) * 2 / 1e9)
    assert est["trainable parameters"] == tldr.lora_parameters(2048, 16, 16)
    assert 5 < est["total"] < 15  # fits a 15 GB T4 with room for activations
    full = tldr.memory_estimate("pythia-1b-tldr", full_finetune=True)
    n = tldr.parameter_count("1b")  # 16 bytes per trained weight + a float16 reference copy
    assert full["policy (+ reference)"] == pytest.approx(18 * n / 1e9)
    assert full["trainable parameters"] == n and full["total"] + tldr.RUNTIME_GB > 15


def test_tokenizers_pad_and_another_gold_tokenizer(tb):
    tok = tb.tokenizer
    assert tok.pad_token == real.PAD and tok.pad_token_id != tok.eos_token_id
    assert tok.padding_side == "left" and tb.same_proxy_tokens
    assert tb.gold_tokenizer.get_vocab() != tok.get_vocab()  # re-tokenised for the gold RM
    assert tb.eval_prompts[0].endswith("TL;DR:") and len(tb.eval_prompts) == 16
    assert len(tb.references(tb.eval_prompts)) == 16
    assert set(tb.preference_data.column_names) >= {"prompt", "chosen", "rejected"}


def test_rewards_from_ids_equal_the_text_path(tb):
    """The proxy RM reads sampled ids directly (it shares the policy's tokenizer); on responses
    whose text tokenises to exactly those ids (here the references) both paths agree. Sampled
    BPE ids need not round-trip through text, which is why the ids are scored, not re-read."""
    tok, prompts = tb.tokenizer, tb.eval_prompts[:4]
    refs = tb.references(prompts)
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    rows = [tok(" " + r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in refs]
    resp = torch.full((4, max(map(len, rows))), tok.pad_token_id)
    for i, row in enumerate(rows):
        resp[i, : len(row)] = torch.tensor(row)
    batch = {"prompt_ids": enc["input_ids"], "prompt_mask": enc["attention_mask"], "k": 1,
             "ids": torch.cat([enc["input_ids"], resp], 1)}  # fmt: skip
    torch.testing.assert_close(tb.proxy_reward_rollout(batch), tb.proxy_reward(prompts, refs),
                               atol=1e-5, rtol=1e-5)  # fmt: skip


def test_missing_eos_is_penalised(tb):
    policy = tb.load_sft_policy()
    torch.manual_seed(0)
    prompts = tb.task.documents(4, random.Random(0))
    batch = rollout(policy, tb.tokenizer, prompts, 3, tb.max_new_tokens)
    assert (~batch["eos"]).any()  # random weights rarely stop: the penalty path is exercised
    xs = [p for p in prompts for _ in range(3)]
    r, gold = online.score(tb, batch, xs)
    expected = tb.proxy_reward_rollout(batch) - tb.missing_eos_penalty * (~batch["eos"]).float()
    torch.testing.assert_close(r, expected)
    assert gold.shape == r.shape and tb.missing_eos_penalty == 1.0


def test_lora_reference_is_the_sft_policy(tb):
    policy = tb.load_sft_policy()
    with torch.no_grad():  # move the adapters off zero, so the policy differs from SFT
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    torch.manual_seed(1)
    batch = rollout(policy, tb.tokenizer, tb.eval_prompts[:3], 2, tb.max_new_tokens)
    ref, ctx = tb.reference(policy)
    with torch.no_grad(), ctx():
        ref_lp, _ = token_logprobs(ref, batch)
    with torch.no_grad():
        sft_lp, _ = token_logprobs(tb.sft_policy, batch)
        pol_lp, _ = token_logprobs(policy, batch)
    m = batch["response_mask"].bool()
    torch.testing.assert_close(ref_lp[m], sft_lp[m], atol=1e-5, rtol=1e-5)
    assert (pol_lp[m] - sft_lp[m]).abs().max() > 1e-3


@pytest.mark.parametrize(
    "config",
    [
        online.OnlineConfig(regularizer="kl", beta=0.1, steps=2, prompts_per_step=4, k=2,
                            n_eval_prompts=8, lr=1e-3),
        online.OnlineConfig(regularizer="entropy_token", alpha=0.1, steps=2, prompts_per_step=4,
                            k=2, n_eval_prompts=8, lr=1e-3),
        offline.OfflineConfig(method="simpo", steps=2, batch_size=4, eval_interval=1,
                              n_eval_prompts=8, n_heldout_pairs=8),
    ],
    ids=["kl", "entropy_token", "simpo"],
)  # fmt: skip
def test_every_method_runs_unchanged_on_the_real_path(tb, config):
    run = train(tb, config)
    h = run.history
    assert run.status == "finished" and h["step"].max() == 2
    assert h["gold"].notna().all() and h["kl_k1"].iloc[0] == pytest.approx(0.0, abs=1e-5)
    assert h["length"].between(1, tb.max_new_tokens).all()
    assert 0.0 <= run.final("win_rate") <= 1.0


def test_gpu_benchmark_runs_on_cpu_in_tiny_mode():
    """``benchmarks/gpu_step.py`` is for a GPU; ``--tiny`` runs the same code on small random
    models on the CPU, so the script cannot rot where no GPU is lent. Values, not times:
    one row per size, a positive ratio."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_step.py"
    cmd = [sys.executable, str(script), "--tiny", "--rounds", "1", "--steps", "2", "--prompts",
           "4", "--k", "2", "--prompt-tokens", "48", "--new-tokens", "6"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split("|") for line in out.stdout.splitlines() if line.startswith("| 4")]
    rows += [line.split("|") for line in out.stdout.splitlines() if line.startswith("| 1b")]
    assert [r[1].strip() for r in rows] == ["410m", "1b"]
    assert all(float(r[4]) > 0 for r in rows)
