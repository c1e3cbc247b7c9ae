"""The configuration of one online RL run (``rlhf_nb.train.online.train``), field by field.

Regularisers (notebook 05, "The update"; combine them with ``+``, e.g. ``"entropy+kl"``):

==================  ==========================================================================
``none``            plain RLOO on the proxy reward r(x, y)
``entropy``         MaxEnt RL: shaped reward r - α·log π(y|x) (sequence level, detached); an
                    unbiased estimate of ∇(E[r] + α·H(π)) (notebook 01, the MaxEnt objective)
``entropy_token``   loss term -α·(mean per-token entropy of π along the samples), what TRL's
                    GRPO ``entropy_coef`` adds
``kl``              shaped reward r - β·Σ_t log(π/π_ref) (k1 in the reward, as RLOO does)
``kl_loss``         loss term β·(mean per-token k3), as GRPO does (notebook 03, estimators)
==================  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_nb.core import check_choice, check_ints, check_range, check_type

REGULARIZERS = ("none", "entropy", "entropy_token", "kl", "kl_loss")


@dataclass
class OnlineConfig:
    """One online RLOO run. Invalid values raise ``ValueError``/``TypeError`` on creation.

    Attributes:
        regularizer: ``"none"`` or ``+``-joined names from ``REGULARIZERS`` (module docstring).
        alpha: the entropy temperature α >= 0, the paper's "entropy coefficient" (Çağatan &
            Akgün 2025, §4). Its unit depends on the regulariser: under ``entropy`` it weighs
            the sequence entropy in the reward, r - α·log π(y|x), in reward units per nat (of
            sequence log-prob); under ``entropy_token`` it weighs the batch-mean per-token entropy
            in the loss, -α·H̄_tok, in loss units per nat/token (TRL's ``entropy_coef``).
        beta: the KL coefficient β >= 0 of β·KL(π‖π_ref), in reward units per nat; used by
            ``kl`` (k1 in the reward) and ``kl_loss`` (k3 in the loss; InstructGPT's β).
        lr: Adam learning rate (> 0), constant, no warm-up.
        steps: optimiser steps (>= 1); the history has ``steps + 1`` rows (row 0 is the SFT
            policy, row ``s`` the policy after ``s`` updates).
        prompts_per_step: fresh training prompts drawn per step (>= 1).
        k: samples per prompt (>= 2), for the RLOO leave-one-out baseline (Ahmadian et al. 2024).
        max_new_tokens: generation budget; ``None`` uses the testbed's.
        grad_clip: max global gradient norm (> 0; ``inf`` disables clipping).
        eval_interval: every this many steps (and at the end) sample one response per held-out
            eval prompt and log the win rate against the references (>= 1).
        n_eval_prompts: how many of ``testbed.eval_prompts`` the win rate uses (>= 1).
        sample_interval: every this many steps store a few decoded samples in ``Run.samples``.
        checkpoint_interval: save a resumable checkpoint every this many steps (0: never).
        seed: seeds the training prompts, the sampling and the eval draws.
        device: ``"cpu"`` or ``"cuda"``.
    """

    regularizer: str = "none"
    alpha: float = 0.0
    beta: float = 0.0
    lr: float = 3e-4
    steps: int = 200
    prompts_per_step: int = 32
    k: int = 4
    max_new_tokens: int | None = None
    grad_clip: float = 1.0
    eval_interval: int = 10
    n_eval_prompts: int = 64
    sample_interval: int = 25
    checkpoint_interval: int = 0
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_type("regularizer", self.regularizer, str)
        for name in self.regularizers:
            check_choice("regularizer", name, REGULARIZERS)
        for name in ("alpha", "beta"):
            check_range(name, getattr(self, name), 0.0, None)
        check_range("lr", self.lr, 0.0, None, low_inclusive=False)
        check_range("grad_clip", self.grad_clip, 0.0, None, low_inclusive=False, finite=False)
        check_ints(
            self,
            {
                "steps": 1,
                "prompts_per_step": 1,
                "k": 2,
                "eval_interval": 1,
                "n_eval_prompts": 1,
                "sample_interval": 1,
                "checkpoint_interval": 0,
                "seed": 0,
            },
        )
        if self.max_new_tokens is not None:
            check_ints(self, {"max_new_tokens": (1, 64)})
        check_choice("device", self.device, ("cpu", "cuda"))
        uses_alpha = {"entropy", "entropy_token"} & set(self.regularizers)
        if self.alpha > 0 and not uses_alpha:
            raise ValueError(
                f"alpha={self.alpha} has no effect with regularizer={self.regularizer!r}; "
                "add 'entropy' or 'entropy_token'"
            )
        if self.beta > 0 and not {"kl", "kl_loss"} & set(self.regularizers):
            raise ValueError(
                f"beta={self.beta} has no effect with regularizer={self.regularizer!r}; "
                "add 'kl' or 'kl_loss'"
            )

    @property
    def regularizers(self) -> tuple[str, ...]:
        """The regulariser names, ``()`` for ``"none"``."""
        names = tuple(n.strip() for n in self.regularizer.split("+"))
        return () if names == ("none",) else names

    def label(self) -> str:
        """Legend label, e.g. ``α=0.05 (seq), lr=3e-4`` or ``β=0.05 (kl), lr=3e-4``."""
        parts = []
        for name in self.regularizers:
            coef = f"α={self.alpha:g}" if name.startswith("entropy") else f"β={self.beta:g}"
            parts.append(f"{coef} ({'seq' if name == 'entropy' else name})")
        return f"{', '.join(parts) or 'no reg.'}, lr={self.lr:.0e}"
