"""Presets for the paper's own setting: Pythia policies on Reddit TL;DR (chapter 08).

A :class:`TLDRPreset` names everything a run needs: the SFT policy, the *proxy* reward model the
policy optimises, a *larger gold* reward model used only for evaluation (Gao et al. 2022's
gold/proxy design, standing in for the paper's LLM judge), the prompt data with its reference
summaries, the preference pairs of the offline methods, generation length, dtype and LoRA.
:func:`rlhf_nb.testbed.real.load` turns one into a testbed the online and offline methods run on
unchanged. Every name is a field, so a local folder (``save_pretrained`` / ``save_to_disk``)
replaces it: the tests run this code on tiny stand-ins (:mod:`rlhf_nb.testbed.standin`).

Where the names come from (all public; nothing is downloaded by the tests or the book's CPU
build; checked in TRL's repository and the Hub pages, November 2026):

* policies and reward models: the checkpoints of Huang et al. 2024, "The N+ Implementation
  Details of RLHF with PPO: A Case Study on TL;DR Summarization", published on the Hub as
  ``cleanrl/EleutherAI_pythia-<size>-deduped__{sft,reward}__tldr`` for 1b, 2.8b and 6.9b
  (revision ``main``). TRL's ``docs/source/ppo_trainer.md`` and
  ``examples/scripts/ppo/ppo_tldr.py`` train from the 1b SFT with the 1b reward model; its
  online-DPO docs use the 6.9b ones. The reward models load as
  ``GPTNeoXForSequenceClassification`` (one label; converted from the N+ code's scalar head,
  which may shift every score by a constant: harmless for RLOO's baseline and for win rates)
  and were trained on ``" " + summary + "<|endoftext|>"``: they are read at the EOS token,
  which is where :mod:`rlhf_nb.testbed.real` reads them;
* prompts and references: ``trl-lib/tldr`` (``prompt`` = ``"SUBREDDIT: r/…\\n\\nTITLE: …\\n\\n
  POST: …\\n\\nTL;DR:"``, ``completion`` = the author's summary; splits train 116,722 /
  validation 6,447 / test 6,553; TRL's ``examples/datasets/tldr.py``); preference pairs:
  ``trl-lib/tldr-preference`` (``prompt``/``chosen``/``rejected``, OpenAI's summarize-from-
  feedback comparisons, ``examples/datasets/tldr_preference.py``; its validation split mixes in
  CNN/DM articles, which the loader drops);
* the recipe's details: a ``[PAD]`` token added to Pythia's tokenizer, prompts capped at 512
  tokens, 53 new tokens, a missing EOS penalised by 1 (TRL's ``--missing_eos_penalty 1.0``;
  the N+ code replaces the score by −1). Those recipes sample at temperature 0.7; the book
  samples at 1, the temperature the MaxEnt derivations assume.

Sizes: no public TL;DR SFT or reward checkpoint exists for Pythia 160m or 410m, and training one
(SFT on ~117k posts, then a reward model on ~93k comparisons) does not fit a free Colab session,
so those sizes are dropped rather than shipped untrained. ``pythia-1b-tldr`` is the Colab preset
(LoRA, proxy 1b, gold 2.8b); ``pythia-2.8b-tldr`` needs a ≥ 40 GB card (gold 6.9b).
:func:`memory_estimate` states each preset's weights-and-optimiser memory from its architecture.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from rlhf_nb.core import check_choice, check_ints, check_range, check_type

DTYPES = ("auto", "float32", "bfloat16", "float16")

# Pythia architectures (EleutherAI/pythia models/*/pythia-*-deduped.yml; intermediate size and
# vocabulary from the config.json of the cleanrl/ and trl-lib/ copies): GPT-NeoX, rotary on 25 %
# of each head, parallel residual, vocabulary padded to 50304 (6.9b: 50432). Speed and memory
# depend on these, not on the weights: benchmarks/gpu_step.py builds them randomly initialised.
PYTHIA_ARCH: dict[str, dict] = {
    "160m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "410m": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=8),
    "2.8b": dict(hidden_size=2560, num_hidden_layers=32, num_attention_heads=32),
    "6.9b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, vocab_size=50432),
}


def pythia_config(size: str, **overrides):
    """The ``GPTNeoXConfig`` of a Pythia size (:data:`PYTHIA_ARCH`), without any download."""
    from transformers import GPTNeoXConfig

    check_choice("size", size, PYTHIA_ARCH)
    arch = PYTHIA_ARCH[size]
    fields = dict(
        vocab_size=50304, intermediate_size=4 * arch["hidden_size"], rotary_pct=0.25,
        max_position_embeddings=2048, use_parallel_residual=True, tie_word_embeddings=False,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return GPTNeoXConfig(**(fields | arch | overrides))


def _cleanrl(size: str, kind: str) -> str:
    return f"cleanrl/EleutherAI_pythia-{size}-deduped__{kind}__tldr"


@dataclass(frozen=True)
class TLDRPreset:
    """One real-model setting. Invalid values raise ``ValueError``/``TypeError`` on creation.

    Attributes:
        name: label used in cache keys and legends.
        policy: the SFT policy, a Hub name or a local folder (``AutoModelForCausalLM``); its
            tokenizer is loaded from the same place.
        proxy_rm: the reward model optimised (``AutoModelForSequenceClassification``, one label).
        gold_rm: a larger reward model used only to evaluate (gold reward, win rate); never
            optimised. May use another tokenizer than the policy: responses are then re-tokenised.
        revision: optional Hub revisions, ``{"policy": ..., "proxy_rm": ..., "gold_rm": ...}``.
        prompts: dataset with ``prompt`` and ``completion`` (the reference summary) columns, a
            Hub name or a ``save_to_disk`` folder.
        prompt_split, eval_split: its training-prompt and evaluation splits.
        preferences: dataset with ``prompt``/``chosen``/``rejected`` (TRL's format) for DPO and
            SimPO; ``pref_split``/``pref_eval_split`` its splits.
        n_train_prompts: training prompts kept (the first ones of ``prompt_split``; 0 = all).
        n_eval_prompts: evaluation prompts (gold, KL, win rate against the references).
        n_pref_pairs, n_heldout_pairs: preference pairs kept for training / held out (0 = all).
        max_prompt_tokens: prompts longer than this (policy tokens) are dropped, as TL;DR
            recipes cap the query at 512 tokens.
        max_new_tokens: generation budget in policy tokens (TL;DR summaries: 53).
        missing_eos_penalty: subtracted from the optimised reward of a response that hits the
            budget without EOS (TRL's ``missing_eos_penalty``; the N+ recipe scores such
            responses -1); 0 disables.
        dtype: weights dtype on a GPU: ``"auto"`` = bfloat16 where the card supports it, else
            float16 for frozen models and float32 for trained ones; on a CPU always float32.
        lora_r: LoRA rank of the trained policy (``peft``); 0 = full fine-tuning. With LoRA the
            reference is the same model with its adapters switched off (no second copy).
        lora_alpha, lora_dropout: LoRA scaling numerator and dropout.
        lora_targets: module names adapted (GPT-NeoX: ``query_key_value``, ``dense``,
            ``dense_h_to_4h``, ``dense_4h_to_h``).
        gold_dtype: dtype of the gold RM (``"auto"`` as ``dtype``; evaluation only).
        eval_batch_size: responses per reward-model forward pass.
        notes: where the names came from, the card the preset was sized for.
    """

    name: str
    policy: str
    proxy_rm: str
    gold_rm: str
    revision: dict = field(default_factory=dict)
    prompts: str = "trl-lib/tldr"
    prompt_split: str = "train"
    eval_split: str = "validation"
    preferences: str = "trl-lib/tldr-preference"
    pref_split: str = "train"
    pref_eval_split: str = "validation"
    n_train_prompts: int = 20_000
    n_eval_prompts: int = 128
    n_pref_pairs: int = 20_000
    n_heldout_pairs: int = 256
    max_prompt_tokens: int = 512
    max_new_tokens: int = 53
    missing_eos_penalty: float = 1.0
    dtype: str = "auto"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")
    gold_dtype: str = "auto"
    eval_batch_size: int = 16
    notes: str = ""

    def __post_init__(self) -> None:
        for name in ("name", "policy", "proxy_rm", "gold_rm", "prompts", "preferences"):
            check_type(name, getattr(self, name), str)
        check_type("revision", self.revision, dict)
        for key in self.revision:
            check_choice("revision key", key, ("policy", "proxy_rm", "gold_rm"))
        check_ints(self, {
            "n_train_prompts": 0, "n_eval_prompts": 1, "n_pref_pairs": 0, "n_heldout_pairs": 1,
            "max_prompt_tokens": 1, "max_new_tokens": (1, 64), "lora_r": 0, "lora_alpha": 1,
            "eval_batch_size": 1,
        })  # fmt: skip
        check_range("missing_eos_penalty", self.missing_eos_penalty, 0.0, None)
        check_range("lora_dropout", self.lora_dropout, 0.0, 1.0, high_inclusive=False)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("gold_dtype", self.gold_dtype, DTYPES)
        check_type("lora_targets", self.lora_targets, (tuple, list))


_SOURCES = (
    "cleanrl/* checkpoints: Huang et al. 2024 (N+ implementation details of RLHF, TL;DR); "
    "trl-lib/tldr and trl-lib/tldr-preference: TRL's TL;DR datasets."
)
# (policy, proxy RM, gold RM) sizes of each named preset, and the card it was sized for
PRESET_SIZES = {
    "pythia-1b-tldr": ("1b", "1b", "2.8b"),
    "pythia-2.8b-tldr": ("2.8b", "2.8b", "6.9b"),
}
_CARDS = {
    "pythia-1b-tldr": "Sized for a free Colab T4 (15 GB): LoRA policy, frozen 1b proxy and 2.8b "
    "gold RM in float16.",
    "pythia-2.8b-tldr": "Needs a >= 40 GB card (A100/H100): gold RM 6.9b.",
}
TLDR_PRESETS: dict[str, TLDRPreset] = {
    name: TLDRPreset(
        name=name,
        policy=_cleanrl(pol, "sft"),
        proxy_rm=_cleanrl(prox, "reward"),
        gold_rm=_cleanrl(gold, "reward"),
        lora_r=16,
        notes=f"{_SOURCES} {_CARDS[name]}",
    )  # fmt: skip
    for name, (pol, prox, gold) in PRESET_SIZES.items()
}


def resolve_tldr_preset(preset: str | TLDRPreset, **overrides) -> TLDRPreset:
    """A :class:`TLDRPreset` from a name in :data:`TLDR_PRESETS` (or a preset), fields replaced
    (e.g. ``policy="/path/to/local/sft"``); unknown fields are named with the valid ones."""
    if isinstance(preset, str):
        check_choice("preset", preset, TLDR_PRESETS)
        preset = TLDR_PRESETS[preset]
    check_type("preset", preset, TLDRPreset)
    fields = [f.name for f in dataclasses.fields(TLDRPreset)]
    for key in overrides:
        if key not in fields:
            raise ValueError(f"unknown TL;DR preset field {key!r}; valid fields: {fields}")
    return dataclasses.replace(preset, **overrides)


def parameter_count(size: str) -> int:
    """Parameters of a Pythia size, counted on the meta device (no memory, no download)."""
    import torch
    from transformers import GPTNeoXForCausalLM

    with torch.device("meta"):
        model = GPTNeoXForCausalLM(pythia_config(size))
    return sum(p.numel() for p in model.parameters())


def lora_parameters(hidden: int, layers: int, r: int) -> int:
    """Trainable parameters of rank-``r`` LoRA on every GPT-NeoX projection: ``r·(in + out)``
    per matrix, for ``query_key_value`` (h→3h), ``dense`` (h→h), ``dense_h_to_4h`` and
    ``dense_4h_to_h`` in each layer (equals ``peft``'s count, tested)."""
    h = hidden
    return layers * r * ((h + 3 * h) + (h + h) + (h + 4 * h) + (4 * h + h))


RUNTIME_GB = 3.0  # activations, generation KV cache and CUDA context at the presets' sizes


def memory_estimate(preset: str, *, fp16: bool = True, full_finetune: bool = False) -> dict:
    """Weights + optimiser memory of a named preset in GB (activations, generation KV cache and
    the CUDA context come on top: budget ~2-3 GB more at 16 x 4 samples of 512 + 53 tokens).

    Frozen models (proxy RM, gold RM, and the LoRA base) count 2 bytes per parameter in
    float16/bfloat16 (``fp16=False``: 4); LoRA adapters and their Adam state 16 bytes per
    trainable parameter (weights, gradients, two moments in float32); full fine-tuning (a
    preset without LoRA, or ``full_finetune=True``) counts 16 bytes per policy parameter plus a
    frozen reference copy. :data:`RUNTIME_GB` is the rest of a card's budget.
    """
    check_choice("preset", preset, PRESET_SIZES)
    p = TLDR_PRESETS[preset]

    def reward_model(size: str) -> int:  # a scalar head (hidden x 1) instead of the LM head
        cfg = pythia_config(size)
        return parameter_count(size) - cfg.vocab_size * cfg.hidden_size + cfg.hidden_size

    sizes = PRESET_SIZES[preset]
    pol, prox, gold = parameter_count(sizes[0]), reward_model(sizes[1]), reward_model(sizes[2])
    frozen = 2 if fp16 else 4
    arch = PYTHIA_ARCH[PRESET_SIZES[preset][0]]
    lora = lora_parameters(arch["hidden_size"], arch["num_hidden_layers"], p.lora_r)
    lora_on = p.lora_r and not full_finetune
    if lora_on:
        policy_gb = (pol * frozen + lora * 16) / 1e9
    else:
        policy_gb = (pol * 16 + pol * frozen) / 1e9
    out = {
        "policy (+ reference)": policy_gb,
        "proxy RM": prox * frozen / 1e9,
        "gold RM": gold * frozen / 1e9,
    }
    out["total"] = sum(out.values())
    out["trainable parameters"] = lora if lora_on else pol
    return out
