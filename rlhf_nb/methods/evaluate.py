"""What every preference run logs: the shared history columns on held-out prompts and the
DPO/SimPO metrics on held-out pairs, written row by row by one :class:`HistoryWriter`.

:func:`policy_metrics` samples one response per prompt at temperature 1
(:func:`rlhf_nb.sampling.rollout`, keeping the token ids, so that EOS is seen) and scores the
samples under the policy and the SFT policy (:func:`rlhf_nb.sampling.token_logprobs_full`):

* ``kl_k1`` = mean over samples of sum_t log(pi/pi_sft)(y_t) and ``kl_k3`` = mean of
  sum_t (rho_t - 1 - log rho_t) with rho_t = pi_sft/pi (notebook 03), both nats per sequence;
* ``entropy_token`` = token-weighted mean of H(pi(.|x, y_<t)); ``entropy_seq`` = mean -log pi(y|x);
* ``length`` (tokens, EOS included when produced), ``eos_rate``, ``gold``, ``proxy``, ``win_rate``.

:class:`HistoryWriter` adds the held-out pair metrics
(:func:`rlhf_nb.methods.preference.preference_metrics`) and the training metrics a method logs
(interval means of ``loss``, ``rewards_chosen``, ...), keeps a few samples per evaluation and the
run's one progress bar. Offline runs feed it from a TRL callback (``rlhf_nb.methods.offline``),
online SimPO from its own loop (``rlhf_nb.methods.online_simpo``): one writer, one history format.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pandas as pd
import torch

from rlhf_nb.methods.preference import preference_metrics
from rlhf_nb.runs.record import COLUMNS
from rlhf_nb.sampling import rollout, sequence_logps, token_logprobs_full
from rlhf_nb.theory import estimators

TRAIN_METRICS = ("loss", "rewards_chosen", "rewards_rejected", "margin", "accuracy")
HELDOUT = ("heldout_rewards_chosen", "heldout_rewards_rejected", "heldout_margin",
           "heldout_accuracy", "heldout_loss", "heldout_weight")  # fmt: skip
PREFERENCE_COLUMNS = (*COLUMNS, *TRAIN_METRICS, *HELDOUT)


@torch.no_grad()
def policy_metrics(testbed, policy, prompts, *, seed: int, n_show: int = 3):
    """The shared history columns for ``policy`` on ``prompts`` (a dict), and ``n_show`` decoded
    samples. Sampling (:func:`rlhf_nb.sampling.rollout`, one sample per prompt) uses its own seeded
    RNG, so every evaluation of a run draws with the same random numbers (less noise between
    steps) and the caller's RNG state is left as it was."""
    was_training = policy.training
    tok = testbed.tokenizer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        batch = rollout(policy, tok, list(prompts), 1, testbed.max_new_tokens)
    # the response positions only: the last T columns of the [B, P+T-1] per-token layout
    T = batch["ids"].shape[1] - batch["prompt_ids"].shape[1]
    lp, ent = (x[:, -T:] for x in token_logprobs_full(policy, batch))
    lq, _ = token_logprobs_full(testbed.sft_policy.to(policy.device), batch)
    lq, m = lq[:, -T:], batch["response_mask"][:, -T:]
    texts = batch["texts"]
    policy.train(was_training)
    return {
        "gold": testbed.gold_reward(prompts, texts).mean().item(),
        "proxy": testbed.proxy_reward(prompts, texts).mean().item(),
        "kl_k1": ((lp - lq) * m).sum(-1).mean().item(),
        "kl_k3": estimators.k3(lp * m, lq * m).sum(-1).mean().item(),
        "entropy_token": ((ent * m).sum() / m.sum()).item(),
        "entropy_seq": (-(lp * m).sum(-1)).mean().item(),
        "length": batch["length"].mean().item(),
        "eos_rate": batch["eos"].float().mean().item(),
        "win_rate": testbed.win_rate(prompts, texts),
    }, texts[:n_show]


class HistoryWriter:
    """The history of one preference run (columns :data:`PREFERENCE_COLUMNS`), one row per
    evaluated step; ``on_step(history)`` (if given) after each row is written or completed.

    Use: :meth:`start` (progress bar, row 0 = the SFT policy), then per optimiser step
    :meth:`tick`, :meth:`log` for the training metrics of an interval and :meth:`evaluate` every
    ``config.eval_interval`` steps and at the end; :meth:`close`; :meth:`history`.
    """

    def __init__(self, testbed, config, on_step: Callable | None = None):
        self.testbed, self.config, self.on_step = testbed, config, on_step
        self.prompts = testbed.eval_prompts[: config.n_eval_prompts]
        held = testbed.preference_heldout[: config.n_heldout_pairs]
        self.pairs = held["prompt"], held["chosen"], held["rejected"]
        self.ref = self._logps(testbed.sft_policy) if config.method == "dpo" else None
        self.rows: dict[int, dict] = {}
        self.samples: dict[int, list[str]] = {}
        self._clock, self._last_step = time.perf_counter(), 0
        self.bar = None

    def _logps(self, model):
        p, c, r = self.pairs
        return (*sequence_logps(model, self.testbed.tokenizer, p, c),
                *sequence_logps(model, self.testbed.tokenizer, p, r))  # fmt: skip

    def start(self, model) -> None:
        """Open the run's progress bar and evaluate the starting (SFT) policy as row 0 (unless a
        resumed history has it)."""
        self.bar = progress_bar(self.config)
        if self.rows:
            self.bar.update(max(self.rows))
            self._last_step = max(self.rows)
        else:
            self.evaluate(model, 0)

    def save(self, path) -> None:
        """Write the rows and samples so far as JSON (a resumable run's history)."""
        import json
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        state = {"rows": {str(k): v for k, v in self.rows.items()},
                 "samples": {str(k): v for k, v in self.samples.items()}}  # fmt: skip
        Path(path).write_text(json.dumps(state))

    def load(self, path) -> None:
        """Continue the history written by :meth:`save`."""
        import json
        from pathlib import Path

        state = json.loads(Path(path).read_text())
        self.rows = {int(k): v for k, v in state["rows"].items()}
        self.samples = {int(k): v for k, v in state["samples"].items()}

    def tick(self) -> None:
        """One optimiser step done (the progress bar)."""
        if self.bar is not None:
            self.bar.update(1)

    def evaluate(self, model, step: int) -> None:
        """Measure ``model`` (:func:`policy_metrics` and the held-out pair metrics) as row
        ``step``; its ``seconds`` is the mean wall time per step since the last evaluation."""
        seconds = (time.perf_counter() - self._clock) / max(1, step - self._last_step)
        model_mode = model.training
        model.eval()
        row, texts = policy_metrics(self.testbed, model, self.prompts, seed=self.config.seed)
        row |= preference_metrics(self.config, self._logps(model), self.ref)
        model.train(model_mode)
        row["seconds"] = seconds if step else math.nan
        self.rows.setdefault(step, {}).update(row, step=step)
        self.samples[step] = texts
        if self.on_step is not None:
            self.on_step(self.history())
        if self.bar is not None:
            self.bar.set_postfix(gold=f"{row['gold']:.2f}", kl=f"{row['kl_k1']:.1f}", refresh=False)
        self._clock, self._last_step = time.perf_counter(), step

    def log(self, step: int, metrics: dict) -> None:
        """Merge training metrics (columns of :data:`TRAIN_METRICS`) into row ``step``."""
        self.rows.setdefault(step, {"step": step}).update(metrics)
        if self.on_step is not None and "loss" in metrics:  # redraw with the metrics merged in
            self.on_step(self.history())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def history(self) -> pd.DataFrame:
        """One row per evaluated step, columns :data:`PREFERENCE_COLUMNS` (NaN where not
        measured)."""
        h = pd.DataFrame([self.rows[s] for s in sorted(self.rows)])
        return h.reindex(columns=list(PREFERENCE_COLUMNS)).astype(float).astype({"step": int})


def progress_bar(config):
    """A text progress bar (plain ``tqdm``) for one run. It shows in live kernels and terminals;
    the notebooks executed for the site run with ``TQDM_DISABLE=1``, so they save none."""
    import os

    from tqdm import tqdm

    off = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true")  # read now, not at import
    return tqdm(total=config.steps, desc=config.label(), leave=False, mininterval=1.0, disable=off)
