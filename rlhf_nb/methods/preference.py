"""What DPO and SimPO share, offline and online: the config fields and the loss on pairs.

:func:`pair_terms` turns sequence log-probs into the per-pair implicit rewards, the loss and its
logit, with :mod:`rlhf_nb.theory.losses` (the same functions chapter 02 checks exactly);
:func:`preference_metrics` averages them on held-out pairs, the ``heldout_*`` history columns.

The symbols: DPO's and SimPO's β are the papers' (the config field ``beta``); with summed
log-probs (``length_normalize=False``) SimPO's β *is* the MaxEnt temperature α of chapter 02, and
:func:`pair_terms` passes it to :func:`~rlhf_nb.theory.losses.maxent_bt_loss` under that name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf_nb.core import check_choice, check_ints, check_range, check_type, field_docs
from rlhf_nb.theory import losses

METHODS = ("dpo", "simpo")
LABELLERS = ("gold", "proxy")
DEFAULT_BETA = {"dpo": 0.1, "simpo": 2.0}


@field_docs
@dataclass
class PreferenceConfig:
    """The fields every preference-loss run shares: the loss (DPO or SimPO), the optimiser, the
    evaluation. Invalid values raise ``ValueError``/``TypeError`` on creation. Not used on its
    own: :class:`~rlhf_nb.methods.offline.OfflineConfig` (fixed pairs) and
    :class:`~rlhf_nb.methods.online_simpo.OnlineSimPOConfig` (self-sampled pairs) are the configs.

    Attributes:
        method: ``"dpo"`` (Rafailov et al. 2023) or ``"simpo"`` (Meng et al. 2024).
        beta: the papers' β, an inverse temperature > 0. DPO: the KL strength β of
            β·log(π/π_sft) (TRL default 0.1), in reward units per nat; SimPO: the reward scale of
            the average log-prob, β·(1/|y|)·log π(y|x) (the SimPO paper uses 2-2.5), in reward
            units per nat/token; summed SimPO (``length_normalize=False``): the MaxEnt
            temperature α of chapter 02, reward α·log π(y|x), in reward units per nat.
            ``None`` picks ``DEFAULT_BETA``.
        gamma: SimPO's target reward margin >= 0 (reward units; the paper's gamma/beta ~ 0.5).
            Unused by DPO; must be 0 with ``length_normalize=False`` (TRL's summed loss has none).
        length_normalize: SimPO only. ``True``: average log-probs (SimPO); ``False``: summed
            log-probs (the constant-alpha MaxEnt loss, notebook 02). Must be ``True`` for DPO.
        lr: AdamW learning rate > 0, constant after ``warmup_steps`` of linear warm-up.
        steps: optimiser steps (>= 1).
        batch_size: preference pairs per step (>= 1): offline, pairs from the data set (one
            epoch is ``len(preference_data) / batch_size`` steps); online, prompts per step, each
            sampled twice.
        warmup_steps: linear warm-up steps (>= 0).
        eval_interval: evaluate every this many steps and at the end (>= 1); row 0 is the SFT.
        n_eval_prompts: held-out prompts (of ``testbed.eval_prompts``) for gold/KL/win (>= 1).
        n_heldout_pairs: held-out preference pairs for the ``heldout_*`` metrics (>= 1).
        seed: seeds the data order (offline) or the prompts and samples (online), and the
            evaluation draws.
        device: ``"cpu"`` or ``"cuda"``.
        labeller: who says which response of a pair wins (chapter 09's 2×2 experiment).
            ``None`` (default): the setting's own — offline, the data's labels, drawn from the
            noisy gold Bradley–Terry model; online, the proxy RM. ``"gold"``: the noisy gold
            Bradley–Terry model, P(a ≻ b) = σ(label_beta·(gold(a) − gold(b))) (the testbed's
            preset ``label_beta``), a fresh seeded draw per pair; ``"proxy"``: the proxy RM,
            the higher score wins. Each config normalises its own default to ``None`` (so the
            book's cached runs keep their keys).
    """

    method: str = "simpo"
    beta: float | None = None
    gamma: float = 1.0
    length_normalize: bool = True
    lr: float = 3e-4
    steps: int = 300
    batch_size: int = 32
    warmup_steps: int = 10
    eval_interval: int = 25
    n_eval_prompts: int = 256
    n_heldout_pairs: int = 512
    seed: int = 0
    device: str = "cpu"
    labeller: str = "gold"

    def __post_init__(self) -> None:
        check_choice("labeller", self.labeller, LABELLERS)
        check_type("method", self.method, str)
        check_choice("method", self.method, METHODS)
        if self.beta is None:
            self.beta = DEFAULT_BETA[self.method]
        check_range("beta", self.beta, 0.0, None, low_inclusive=False)
        check_range("gamma", self.gamma, 0.0, None)
        check_type("length_normalize", self.length_normalize, bool)
        check_range("lr", self.lr, 0.0, 1.0, low_inclusive=False)
        check_ints(self, {"steps": 1, "batch_size": 1, "warmup_steps": 0, "eval_interval": 1,
                          "n_eval_prompts": 1, "n_heldout_pairs": 1, "seed": 0})  # fmt: skip
        check_choice("device", self.device, ("cpu", "cuda"))
        if self.method == "dpo" and not self.length_normalize:
            raise ValueError("length_normalize=False is a SimPO variant; DPO sums log-probs anyway")
        if not self.length_normalize and self.gamma != 0:
            raise ValueError(
                f"gamma must be 0 with length_normalize=False (summed log-probs, TRL's sigmoid "
                f"loss has no margin), got {self.gamma!r}"
            )

    def label(self) -> str:
        """Legend label, e.g. ``SimPO β=2 γ=1, lr=1e-3``."""
        if self.method == "dpo":
            name = f"DPO β={self.beta:g}"
        elif self.length_normalize:
            name = f"SimPO β={self.beta:g} γ={self.gamma:g}"
        else:
            name = f"SimPO-sum β={self.beta:.3g}"
        return f"{name}, lr={self.lr:.0e}"


def pair_terms(config, logps, ref_logps=None):
    """The per-pair terms of ``config``'s preference loss, each ``[N]`` (gradient kept).

    Args:
        config: a :class:`PreferenceConfig` (method, beta, gamma, length_normalize).
        logps: ``(chosen_sum, chosen_avg, rejected_sum, rejected_avg)`` of the policy, each ``[N]``.
        ref_logps: the same four for the SFT policy (DPO only).

    Returns ``(r_w, r_l, loss, z)``: the implicit rewards of the chosen and rejected responses
    (DPO: ``beta * log(pi/pi_sft)`` of summed log-probs; SimPO: ``beta * avg log pi``; summed
    SimPO: ``beta * log pi``), the loss (:mod:`rlhf_nb.theory.losses`) and its logit ``z`` (SimPO:
    ``r_w - r_l - gamma``, else ``r_w - r_l``).
    """
    cs, ca, rs, ra = logps
    b = config.beta
    if config.method == "dpo":
        rcs, _, rrs, _ = ref_logps
        rw, rl = b * (cs - rcs), b * (rs - rrs)
        return rw, rl, losses.dpo_loss(cs, rs, rcs, rrs, b), rw - rl
    if config.length_normalize:
        rw, rl = b * ca, b * ra
        return rw, rl, losses.simpo_loss(ca, ra, b, config.gamma), rw - rl - config.gamma
    alpha = b  # summed log-probs: SimPO's β is the MaxEnt temperature α (chapter 02)
    rw, rl = alpha * cs, alpha * rs
    return rw, rl, losses.maxent_bt_loss(cs, rs, alpha=alpha), rw - rl


def preference_metrics(config, logps, ref_logps=None) -> dict:
    """Held-out DPO metrics from sequence log-probs (arguments as :func:`pair_terms`).

    Returns ``heldout_rewards_chosen``/``_rejected`` (mean implicit rewards), ``heldout_margin``
    (mean r_w - r_l), ``heldout_accuracy`` (fraction r_w > r_l), ``heldout_loss`` (the method's
    loss, :mod:`rlhf_nb.theory.losses`) and ``heldout_weight``: the mean of sigmoid(-z), z the
    loss's logit (SimPO: r_w - r_l - gamma), i.e. |d loss / d z|, how hard each pair still pushes.
    """
    rw, rl, loss, z = pair_terms(config, logps, ref_logps)
    return {
        "heldout_rewards_chosen": rw.mean().item(),
        "heldout_rewards_rejected": rl.mean().item(),
        "heldout_margin": (rw - rl).mean().item(),
        "heldout_accuracy": (rw > rl).float().mean().item(),
        "heldout_loss": loss.mean().item(),
        "heldout_weight": torch.sigmoid(-z).mean().item(),
    }
