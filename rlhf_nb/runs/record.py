"""One format for every training run, online (``rlhf_nb.methods.online``) or offline
(``rlhf_nb.methods.offline``), and a few decoded samples of a run.

A :class:`Run` is a config, a history (a ``pandas.DataFrame``, one row per logged step), a status
and the trained policy. The same plotting code (``rlhf_nb.viz.run_plots``) draws any of them,
and the same on-disk cache stores finished runs so that the book re-renders without re-training.

History columns shared by all runs (NaN where a run does not measure a quantity at a step):

=============  ==================================================================  =============
column         meaning                                                             unit
=============  ==================================================================  =============
step           optimiser steps taken when the row was logged                       count
gold           mean gold reward of the policy's samples                            reward units
proxy          mean proxy-RM reward of the policy's samples                        RM logits
kl_k1          mean over samples of sum_t log(pi/pi_sft)  (k1, sequence level)     nats/sequence
kl_k3          mean over samples of sum_t k3 per token (Schulman)                  nats/sequence
entropy_token  mean per-token entropy of the policy along its samples              nats/token
entropy_seq    mean of -log pi(y|x) over samples (sequence entropy estimate)       nats/sequence
length         mean response length (tokens, EOS included when produced)           tokens
eos_rate       fraction of samples that ended with EOS within the budget           fraction
win_rate       P(gold(sample) > gold(reference)) on the fixed eval prompts         fraction
seconds        wall time of the step                                               s
=============  ==================================================================  =============

Runs may add their own columns (``loss``, ``grad_norm``, ``margin``, ``accuracy``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

STATUSES = ("running", "finished", "diverged", "interrupted")
COLUMNS = (
    "step", "gold", "proxy", "kl_k1", "kl_k3", "entropy_token", "entropy_seq",
    "length", "eos_rate", "win_rate", "seconds",
)  # fmt: skip


@dataclass
class Run:
    """A training run.

    Attributes:
        config: the run's config dataclass (``OnlineConfig`` / ``OfflineConfig``).
        history: one row per logged step; at least :data:`COLUMNS` (NaN where not measured).
        status: ``"finished"``, ``"diverged"`` (non-finite loss/reward; ``message`` says where),
            ``"interrupted"`` (KeyboardInterrupt; resumable) or ``"running"``.
        policy: the trained model (``None`` when loaded from the cache without weights).
        message: a human-readable note on how the run ended.
        samples: step -> a few decoded samples, to show what the policy learned.
    """

    config: Any
    history: pd.DataFrame
    status: str = "running"
    policy: Any = None
    message: str = ""
    samples: dict[int, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def label(self) -> str:
        """A short legend label (the config's ``label()`` when it has one)."""
        fn = getattr(self.config, "label", None)
        return fn() if callable(fn) else type(self.config).__name__

    def final(self, column: str, *, window: int | None = None) -> float:
        """The final value of a history column by the book's one summary rule
        (:func:`rlhf_nb.stats.summarize`: the mean over the last ``window`` optimiser steps,
        default :data:`rlhf_nb.stats.WINDOW`); NaN when the column was never logged."""
        from rlhf_nb import stats

        return stats.final(self, column, window=window or stats.WINDOW)

    def value_at(self, column: str, step: int) -> float:
        """The last non-NaN value of ``column`` logged at or before ``step``."""
        s = self.history.set_index("step")[column].dropna()
        return float(s[s.index <= step].iloc[-1])

    def slope(self, column: str, frac: float = 0.25) -> float:
        """Least-squares slope of ``column`` over the last ``frac`` of the run's steps, per 100
        steps (e.g. nats/100 steps for ``kl_k1``): is it still rising when the run ends?"""
        import numpy as np

        h = self.history[["step", column]].dropna()
        h = h[h["step"] >= (1 - frac) * h["step"].max()]
        return 100 * float(np.polyfit(h["step"], h[column], 1)[0])


def samples_table(
    run, steps: Sequence[int] | None = None, n: int = 3, *, near: int | None = None
) -> pd.DataFrame:
    """A few decoded samples the run stored (``run.samples``) at ``steps`` (default: all), or,
    with ``near=s``, at the first stored step, the stored step closest to ``s`` and the last.
    ``text`` is the sample as stored; ``response`` the part after the task's ``TL;DR:``
    separator (``"(empty)"`` for an immediate EOS)."""
    from rlhf_nb.testbed.task import SEPARATOR

    stored = sorted(run.samples)
    if near is not None and stored:
        steps = sorted({stored[0], min(stored, key=lambda s: abs(s - near)), stored[-1]})
    steps = stored if steps is None else list(steps)
    rows = [
        {"step": s, "sample": i, "text": t,
         "response": t.split(SEPARATOR)[-1].strip() or "(empty)"}
        for s in steps
        for i, t in enumerate(run.samples.get(s, [])[:n])
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["step", "sample", "text", "response"])
