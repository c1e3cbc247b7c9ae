"""Tiny local stand-ins for the TL;DR preset: the real loading code, tiny random weights.

:func:`build` writes, offline and in a few seconds, everything a
:class:`~rlhf_nb.testbed.tldr.TLDRPreset` names, into one folder:

* ``tokenizer``: a byte-level BPE trained on the toy task's text (Pythia's kind of tokenizer:
  ``<|endoftext|>`` is EOS, no pad token, so the loader adds ``[PAD]``);
* ``policy``: a random GPT-NeoX ``AutoModelForCausalLM`` on that tokenizer;
* ``proxy_rm``: a random GPT-NeoX ``AutoModelForSequenceClassification`` on the same tokenizer
  (scored from the sampled ids);
* ``gold_rm``: a larger one on *another* tokenizer (a smaller BPE), so the re-tokenising path
  is exercised as with a gold RM of another family;
* ``prompts``: a ``DatasetDict`` (``train``/``validation``; ``prompt`` ending in
  ``"\\nTL;DR:"``, ``completion``) like ``trl-lib/tldr``; ``preferences``: ``prompt``/``chosen``/
  ``rejected`` like ``trl-lib/tldr-preference``.

The documents come from the toy task (:class:`rlhf_nb.testbed.task.Task`), dressed in TL;DR's
``SUBREDDIT/TITLE/POST`` layout. Random weights mean the numbers of a run on stand-ins say
nothing about RLHF: they check that the code path runs (tests, chapter 08's SMOKE mode).
:func:`preset` returns the :class:`TLDRPreset` that points every name at the folder.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from rlhf_nb.core import cache_lock, check_int, default_cache_dir, quiet
from rlhf_nb.testbed.task import Task
from rlhf_nb.testbed.tldr import TLDRPreset

VERSION = 1
EOS = "<|endoftext|>"


def _documents(n: int, seed: int) -> list[tuple[str, str]]:
    task, rng = Task(), random.Random(seed)
    rows = []
    for doc in task.documents(n, rng):
        body = doc.removesuffix("TL;DR:").strip()
        words = body.split()
        prompt = (f"SUBREDDIT: r/{words[0]}\n\nTITLE: {' '.join(words[1:4])}\n\n"
                  f"POST: {body}\n\nTL;DR:")  # fmt: skip
        rows.append((prompt, task.reference(doc, seed)))
    return rows


def _tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   unk_token=EOS)  # fmt: skip


def _config(vocab: int, hidden: int, layers: int):
    """A small GPT-NeoX; the vocabulary is padded past the tokenizer (Pythia pads 50277 tokens
    to 50304), so the loader's ``[PAD]`` fits without resizing."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=vocab + 8, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=4 * hidden, max_position_embeddings=256, rotary_pct=0.25,
        use_parallel_residual=True, tie_word_embeddings=False, eos_token_id=0, bos_token_id=0,
        num_labels=1,
    )  # fmt: skip


def build(path: str | Path | None = None, *, seed: int = 0, n_prompts: int = 256) -> Path:
    """Write the stand-ins into ``path`` (default ``<cache>/standin/v<VERSION>-seed<seed>``)
    unless they are there already; returns the folder. Deterministic in ``seed``."""
    check_int("seed", seed, 0)
    check_int("n_prompts", n_prompts, 16)
    root = default_cache_dir()
    path = Path(path) if path is not None else root / "standin" / f"v{VERSION}-seed{seed}"
    done = path / "standin.json"
    if done.exists():
        return path
    with cache_lock(root, path), quiet():
        if done.exists():
            return path
        _write(path, seed, n_prompts)
        done.write_text(json.dumps({"version": VERSION, "seed": seed, "n_prompts": n_prompts}))
    return path


def _write(path: Path, seed: int, n_prompts: int) -> None:
    import datasets
    from transformers import GPTNeoXForCausalLM, GPTNeoXForSequenceClassification

    path.mkdir(parents=True, exist_ok=True)
    rows = _documents(n_prompts, seed)
    texts = [f"{p} {c}" for p, c in rows]
    tok, gold_tok = _tokenizer(texts, 400), _tokenizer(texts, 300)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        models = {
            "policy": (GPTNeoXForCausalLM(_config(len(tok), 32, 2)), tok),
            "proxy_rm": (GPTNeoXForSequenceClassification(_config(len(tok), 32, 2)), tok),
            "gold_rm": (
                GPTNeoXForSequenceClassification(_config(len(gold_tok), 48, 2)),
                gold_tok,
            ),  # fmt: skip
        }
    for name, (model, t) in models.items():
        model.save_pretrained(path / name)
        t.save_pretrained(path / name)
    cut = n_prompts * 3 // 4
    split = {"train": rows[:cut], "validation": rows[cut:]}
    datasets.DatasetDict({
        k: datasets.Dataset.from_dict({"prompt": [p for p, _ in v],
                                       "completion": [c for _, c in v]})
        for k, v in split.items()
    }).save_to_disk(path / "prompts")  # fmt: skip
    rng = random.Random(seed)

    def pairs(v):  # the reference beats a summary of another post (a crude but clear label)
        other = [c for _, c in v]
        rng.shuffle(other)
        return {"prompt": [p for p, _ in v], "chosen": [" " + c for _, c in v],
                "rejected": [" " + o for o in other]}  # fmt: skip

    datasets.DatasetDict({k: datasets.Dataset.from_dict(pairs(v)) for k, v in split.items()}
                         ).save_to_disk(path / "preferences")  # fmt: skip


def preset(path: str | Path | None = None, **overrides) -> TLDRPreset:
    """A :class:`TLDRPreset` whose every name points into the stand-in folder ``path`` (built
    if missing). Small sizes: 16 new tokens, LoRA rank 4, float32."""
    path = build(path)
    fields = dict(
        name="standin", policy=str(path / "policy"), proxy_rm=str(path / "proxy_rm"),
        gold_rm=str(path / "gold_rm"), prompts=str(path / "prompts"),
        preferences=str(path / "preferences"), n_train_prompts=0, n_eval_prompts=16,
        n_pref_pairs=0, n_heldout_pairs=16, max_prompt_tokens=200, max_new_tokens=16,
        dtype="float32", gold_dtype="float32", lora_r=4, lora_alpha=8, eval_batch_size=64,
        notes="tiny random stand-ins (rlhf_nb.testbed.standin): checks the code path only",
    )  # fmt: skip
    return TLDRPreset(**(fields | overrides))
