"""The configuration of one online RL run (``rlhf_nb.methods.online.train``), field by field.

Each field's doc below (``OnlineConfig``'s ``Attributes:``) is also its ``--help`` in the
command-line runner (:func:`rlhf_nb.core.field_docs`, ``python -m rlhf_nb.run``).

Regularisers (notebook 05, "The update"; combine them with ``+``, e.g. ``"entropy+kl"``):

==================  ==========================================================================
``none``            plain RLOO on the reward r(x, y) (the proxy RM, or ``reward="gold"``)
``entropy``         MaxEnt RL: shaped reward r - α·log π(y|x) (sequence level, detached); an
                    unbiased estimate of ∇(E[r] + α·H(π)) (notebook 01, the MaxEnt objective)
``entropy_token``   loss term -α·(mean per-token entropy of π along the samples), what TRL's
                    GRPO ``entropy_coef`` adds
``entropy_norm``    length-normalised MaxEnt: shaped reward r - (α/|y|)·log π(y|x) (detached),
                    chapter 02/03's token-averaged bonus. Because its weight α/|y| varies with
                    the response, REINFORCE on it ascends J′ = E[r + (α/|y|)(1 - log π)], SimPO's
                    exact objective (chapter 02): a length-normalised entropy bonus *plus* a
                    shortness bonus α/|y| — not E[r - (α/|y|)·log π] (``rlhf_nb.theory.
                    surrogates.entropy_norm_gradients``, checked by exact enumeration)
``kl``              shaped reward r - β·Σ_t log(π/π_ref) (k1 in the reward, as RLOO does)
``kl_loss``         loss term β·(mean per-token k3), as GRPO does. Differentiated with the
                    visited states held fixed, its expected gradient is the *state-frozen
                    forward* KL's, Σ_s ρ(s)·∇KL(π_ref(·|s)‖π(·|s)) over the visited states s
                    (scaled by 1/E|y|), not ∇KL(π‖π_ref) (notebook 03, §2)
``length``          shaped reward r - c·|y| (``length_coef`` c per response token, EOS included)
==================  ==========================================================================

The reference of ``kl``/``kl_loss`` is the SFT policy, or with ``ref_mix`` λ < 1 the per-token
mixture λ·π_SFT(·|x, y<t) + (1-λ)/V: λ = 1 is KL-regularised RLHF. λ = 0 is a KL to the
*per-token* uniform U_tok(y|x) = V^-|y|; summed over a response (``kl``) it is
KL(π‖U_tok) = -H(π) + log V·E|y|, so λ = 0 is MaxEnt RL with α = β **plus a length cost β·log V
per token** (the ``length`` remedy at c = β·log V). It is not MaxEnt's anchor: MaxEnt RL is KL
to the uniform law over *responses* (notebook 01), which over variable lengths is a different
distribution (notebook 03, §4; ``tests/test_theory_rigour.py``). With
``target_entropy`` set, the ``entropy_token`` coefficient adapts every step to hold the batch-mean
per-token entropy at the target: α ← max(0, α + ``entropy_rate``·(target - H̄_tok)), starting
from ``alpha`` (as TRL's ``use_adaptive_entropy``; SAC's temperature tuning).

With ``reward="gold"`` the reward optimised is the testbed's gold reward itself — the truth the
proxy RM was trained to imitate, a *verifiable* reward with no misspecification to exploit
(chapter 07 §5 crosses it with the regularisers); the history's ``proxy`` column still logs the
proxy RM's score of the samples. With ``ensemble`` k > 1 the reward optimised is an ensemble of
k proxy RMs (member 0 the testbed's; ``rlhf_nb.methods.ensemble``): their mean minus
``ensemble_penalty``·std, or their minimum (``ensemble_mode``) — conservative where the members
disagree (Coste et al. 2024).

Every field enters a run's cache key (:func:`rlhf_nb.runs.cache.config_key`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_nb.core import check_choice, check_ints, check_range, check_type, field_docs

REGULARIZERS = ("none", "entropy", "entropy_token", "entropy_norm", "kl", "kl_loss", "length")


@field_docs
@dataclass
class OnlineConfig:
    """One online RLOO run. Invalid values raise ``ValueError``/``TypeError`` on creation.

    Attributes:
        regularizer: ``"none"`` or ``+``-joined names from ``REGULARIZERS``: ``entropy``,
            ``entropy_token``, ``entropy_norm``, ``kl``, ``kl_loss``, ``length`` (module
            docstring), e.g. ``"entropy+kl"``.
        alpha: the entropy temperature α >= 0, the paper's "entropy coefficient" (Çağatan &
            Akgün 2025, §4). Its unit depends on the regulariser: under ``entropy`` it weighs
            the sequence entropy in the reward, r - α·log π(y|x), in reward units per nat (of
            sequence log-prob); under ``entropy_token`` it weighs the batch-mean per-token entropy
            in the loss, -α·H̄_tok, in loss units per nat/token (TRL's ``entropy_coef``); under
            ``entropy_norm`` it weighs -(1/|y|)·log π(y|x) in the reward, reward units per
            nat/token (SimPO's β; the run optimises J′, module docstring).
        beta: the KL coefficient β >= 0. Under ``kl`` it weighs the sequence k1 in the reward,
            r - β·Σ_t log(π/π_ref), in reward units per nat (InstructGPT's in-reward β; the
            expected update is exactly that of E[r] - β·KL(π‖π_ref)). Under ``kl_loss`` it
            weighs the batch token-mean of per-token k3 in the loss, +β·k̄3_tok, in loss units
            per nat/token (GRPO's beta), and its expected gradient is the state-frozen forward
            KL's (module docstring), not β·∇KL(π‖π_ref).
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
        checkpoint_interval: save a resumable checkpoint every this many steps (0: never; the
            resumable loop is ``rlhf_nb.methods.online_dp.train``, the teaching loop keeps none).
        seed: seeds the training prompts, the sampling and the eval draws.
        device: ``"cpu"`` or ``"cuda"``.
        ref_mix: λ in [0, 1], the SFT weight of the per-token KL reference (module docstring);
            1 (default) is the SFT policy itself. Needs ``kl`` or ``kl_loss``.
        length_coef: c >= 0, reward units per response token of the ``length`` penalty.
        target_entropy: per-token entropy target (nats/token) of an adaptive ``entropy_token``
            coefficient; ``None`` (default) keeps α fixed.
        entropy_rate: step size of the adaptive coefficient (loss units per nat/token of entropy
            error, per step), > 0.
        ensemble: proxy RMs in the reward (1-16; 1 = the testbed's proxy alone).
        ensemble_mode: ``"mean_minus_std"`` or ``"min"`` over the members.
        ensemble_penalty: the std weight of ``"mean_minus_std"`` (>= 0; reward units per unit
            of member std).
        reward: the reward optimised: ``"proxy"`` (default; the learned proxy RM, as in the
            paper) or ``"gold"`` (the testbed's gold reward; module docstring).
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
    ref_mix: float = 1.0
    length_coef: float = 0.0
    target_entropy: float | None = None
    entropy_rate: float = 0.05
    ensemble: int = 1
    ensemble_mode: str = "mean_minus_std"
    ensemble_penalty: float = 1.0
    reward: str = "proxy"

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
        self._check_remedies()
        uses_alpha = {"entropy", "entropy_token", "entropy_norm"} & set(self.regularizers)
        if self.alpha > 0 and not uses_alpha:
            raise ValueError(
                f"alpha={self.alpha} has no effect with regularizer={self.regularizer!r}; "
                "add 'entropy', 'entropy_token' or 'entropy_norm'"
            )
        if self.beta > 0 and not {"kl", "kl_loss"} & set(self.regularizers):
            raise ValueError(
                f"beta={self.beta} has no effect with regularizer={self.regularizer!r}; "
                "add 'kl' or 'kl_loss'"
            )

    def _check_remedies(self) -> None:
        regs = set(self.regularizers)
        check_range("ref_mix", self.ref_mix, 0.0, 1.0)
        check_range("length_coef", self.length_coef, 0.0, None)
        check_range("entropy_rate", self.entropy_rate, 0.0, None, low_inclusive=False)
        if self.ref_mix != 1.0 and not {"kl", "kl_loss"} & regs:
            raise ValueError(f"ref_mix={self.ref_mix} has no effect without 'kl' or 'kl_loss'")
        if ("length" in regs) != (self.length_coef > 0):
            raise ValueError(
                "regularizer 'length' and length_coef > 0 go together, got "
                f"regularizer={self.regularizer!r}, length_coef={self.length_coef}"
            )
        check_ints(self, {"ensemble": (1, 16)})
        check_choice("ensemble_mode", self.ensemble_mode, ("mean_minus_std", "min"))
        check_range("ensemble_penalty", self.ensemble_penalty, 0.0, None)
        check_choice("reward", self.reward, ("proxy", "gold"))
        if self.reward == "gold" and self.ensemble > 1:
            raise ValueError(f"ensemble={self.ensemble} aggregates proxy RMs; reward='gold' "
                             "optimises the gold reward itself: use ensemble=1")  # fmt: skip
        if self.target_entropy is not None:
            check_range("target_entropy", self.target_entropy, 0.0, None)
            if "entropy_token" not in regs:
                raise ValueError("target_entropy adapts the 'entropy_token' coefficient: add it")

    @property
    def regularizers(self) -> tuple[str, ...]:
        """The regulariser names, ``()`` for ``"none"``."""
        names = tuple(n.strip() for n in self.regularizer.split("+"))
        return () if names == ("none",) else names

    def label(self, lr_format: str = ".0e") -> str:
        """Legend label, e.g. ``α=0.05 (seq), lr=3e-4`` or ``β=0.05 (kl), lr=3e-4`` (``, cap 32``
        when ``max_new_tokens`` is set); the
        learning rate in ``lr_format`` (one digit for legends; the live widget shows ``.3g``)."""
        parts = []
        for name in self.regularizers:
            if name == "length":
                parts.append(f"c={self.length_coef:g} (length)")
                continue
            coef = f"α={self.alpha:g}" if name.startswith("entropy") else f"β={self.beta:g}"
            if name.startswith("kl") and self.ref_mix != 1.0:
                coef += f" λ={self.ref_mix:g}"
            if name == "entropy_token" and self.target_entropy is not None:
                coef = f"H*={self.target_entropy:g}"
            parts.append(f"{coef} ({'seq' if name == 'entropy' else name})")
        if self.ensemble > 1:
            mode = "min" if self.ensemble_mode == "min" else f"mean-{self.ensemble_penalty:g}sd"
            parts.append(f"{self.ensemble} RMs ({mode})")
        cap = "" if self.max_new_tokens is None else f", cap {self.max_new_tokens}"
        gold = " [gold reward]" if self.reward == "gold" else ""
        return f"{', '.join(parts) or 'no reg.'}, lr={self.lr:{lr_format}}{cap}{gold}"
