"""Testbed presets: the documented sizes of a build (``tiny`` for the book, ``smoke`` for CI).

A preset is a frozen dataclass validated on creation, so a bad field fails before any work;
``resolve_preset`` turns a name plus overrides into one and names the valid choices on error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from rlhf_nb.core import check_choice, check_ints, check_range, check_type
from rlhf_nb.testbed.task import LENGTH_BIASES, Task

CODE_VERSION = 1  # bump when a change alters what build() produces: old caches are then ignored


@dataclass(frozen=True)
class Preset:
    """Sizes of one testbed build. Invalid values raise ``ValueError``/``TypeError`` on creation.

    Attributes:
        name: label used in the cache folder name.
        n_sft_docs: documents (with one reference summary each) the SFT policy is trained on.
        n_pref_prompts: prompts of the preference data, two SFT samples each (pairs with two
            identical samples are dropped, as annotators cannot rank them).
        n_eval_prompts: held-out prompts for evaluation (``Testbed.eval_prompts``).
        heldout_fraction: share of preference pairs kept out of reward-model training.
        hidden_size, num_layers, num_heads: GPT-NeoX width, depth and heads (policy and RM).
        sft_steps, sft_batch_size, sft_lr: SFT AdamW steps, documents per step, peak rate.
        rm_steps, rm_batch_size, rm_lr: reward-model AdamW steps, pairs per step, peak rate.
        label_beta: inverse temperature of the gold Bradley-Terry labeller (higher = less noise).
        max_new_tokens: generation budget in tokens (= words); a summary this long is "cut off".
        length_bias: gold length preference, ``"short"``, ``"neutral"`` or ``"long"`` (TL;DR's
            human labels favour longer summaries; offline SimPO vs DPO experiments vary it).
    """

    name: str = "tiny"
    n_sft_docs: int = 4000
    n_pref_prompts: int = 5000
    n_eval_prompts: int = 256
    heldout_fraction: float = 0.2
    hidden_size: int = 96
    num_layers: int = 2
    num_heads: int = 4
    sft_steps: int = 2000
    sft_batch_size: int = 32
    sft_lr: float = 3e-3
    rm_steps: int = 400
    rm_batch_size: int = 32
    rm_lr: float = 1e-3
    label_beta: float = 2.0
    max_new_tokens: int = 16
    length_bias: str = "neutral"

    def __post_init__(self) -> None:
        check_type("name", self.name, str)
        check_ints(self, {
            "n_sft_docs": 8, "n_pref_prompts": 8, "n_eval_prompts": 1, "hidden_size": 8,
            "num_layers": 1, "num_heads": 1, "sft_steps": 1, "sft_batch_size": 1, "rm_steps": 1,
            "rm_batch_size": 1, "max_new_tokens": (2, 40),
        })  # fmt: skip
        check_range(
            "heldout_fraction",
            self.heldout_fraction,
            0.0,
            1.0,
            low_inclusive=False,
            high_inclusive=False,
        )
        for field in ("sft_lr", "rm_lr", "label_beta"):
            check_range(field, getattr(self, field), 0.0, None, low_inclusive=False)
        if self.hidden_size % self.num_heads:
            msg = f"hidden_size ({self.hidden_size}) must be divisible by num_heads"
            raise ValueError(f"{msg} ({self.num_heads})")
        check_type("length_bias", self.length_bias, str)
        check_choice("length_bias", self.length_bias, LENGTH_BIASES)


_SMOKE = dict(
    n_sft_docs=2000, n_pref_prompts=1500, n_eval_prompts=64, hidden_size=48, num_layers=2,
    num_heads=4, sft_steps=600, rm_steps=150,
)  # fmt: skip

PRESETS: dict[str, Preset] = {
    "tiny": Preset(),
    # the scale ladder (chapter 05, section 2c): the tiny recipe — same data, steps, rates and
    # depth — at a quarter, half and twice the width (the proxy RM scales alike: it is built from
    # the same config). "small" (~4x the tiny policy's parameters) is not on the book's default
    # ladder: on the 2-core book machine its online step costs ~8-10x the tiny one's, about 2 core-
    # hours for the ladder's 9 runs; pass it in chapter 05's SCALES where the time is at hand
    "micro": Preset(name="micro", hidden_size=24),
    "mini": Preset(name="mini", hidden_size=48),
    "small": Preset(name="small", hidden_size=192),
    "smoke": Preset(name="smoke", **_SMOKE),
    # the smoke-sized ladder rung (CI): the smoke recipe at twice the width
    "smoke-wide": Preset(name="smoke-wide", **{**_SMOKE, "hidden_size": 96}),
}


def resolve_preset(preset: str | Preset = "tiny", **overrides) -> Preset:
    """A :class:`Preset` from a name in ``PRESETS`` (or a Preset), with fields replaced."""
    if isinstance(preset, str):
        check_choice("preset", preset, PRESETS)
        preset = PRESETS[preset]
    check_type("preset", preset, (str, Preset))
    fields = [f.name for f in dataclasses.fields(Preset)]
    for key in overrides:
        if key not in fields or key == "name":
            raise ValueError(f"unknown preset field {key!r}; valid fields: {fields[1:]}")
    return dataclasses.replace(preset, **overrides)


def cache_key(preset: Preset, seed: int) -> str:
    """``<name>-seed<seed>-v<CODE_VERSION>``, plus a hash of the fields if they differ from the
    named preset's (e.g. ``length_bias="long"``)."""
    key = f"{preset.name}-seed{seed}-v{CODE_VERSION}"
    if preset != PRESETS.get(preset.name):
        blob = json.dumps(dataclasses.asdict(preset), sort_keys=True).encode()
        key += "-" + hashlib.sha256(blob).hexdigest()[:10]
    return key


def task_for(preset: Preset) -> Task:
    """The task a preset implies (its generation budget and gold length preference)."""
    return Task(max_words=preset.max_new_tokens, length_bias=preset.length_bias)
