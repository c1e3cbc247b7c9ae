"""Offline preference optimisation with TRL's trainers: DPO and SimPO (notebook 06).

Both start from the testbed's SFT policy and train on its fixed preference pairs
(``testbed.preference_data``, TRL's prompt/chosen/rejected format):

* ``method="dpo"``: ``trl.DPOTrainer`` (sigmoid loss), reference model = the SFT policy;
  ``rlhf_nb.losses.dpo_loss`` on summed log-probs (notebook 02, section 3).
* ``method="simpo"``: ``trl.experimental.cpo.CPOTrainer(loss_type="simpo", cpo_alpha=0.0)``,
  reference-free; ``rlhf_nb.losses.simpo_loss`` on *average* log-probs (notebook 02, section 4).
  ``cpo_alpha=0`` matters: TRL's default ``cpo_alpha=1.0`` adds a behaviour-cloning NLL term
  (CPO-SimPO), which is not SimPO.
* ``method="simpo", length_normalize=False``: the same trainer with ``loss_type="sigmoid"``, i.e.
  ``-log sigmoid(beta (log pi(y_w) - log pi(y_l)))`` on *summed* log-probs: the constant-alpha
  MaxEnt Bradley-Terry loss of notebook 02 (``losses.maxent_bt_loss``; no margin, so gamma = 0).

:class:`EvalCallback` writes the history: the shared ``rlhf_nb.runs.COLUMNS`` on held-out prompts
(:func:`rlhf_nb.offline_eval.policy_metrics`), TRL's own training metrics averaged over each
interval (``loss``, ``rewards_chosen``, ``rewards_rejected``, ``margin``, ``accuracy``; for SimPO
the implicit reward is beta * average log-prob) and the same on held-out pairs (``heldout_*``,
plus ``heldout_weight``, the mean per-pair gradient weight sigmoid(-logit) of the loss).
:func:`live_widget` trains a short run from a button in a live kernel.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import datasets
import pandas as pd
from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from rlhf_nb.config import check_choice, check_int, check_ints, check_range, check_type
from rlhf_nb.models import quiet
from rlhf_nb.offline_eval import policy_metrics, preference_metrics, sequence_logps
from rlhf_nb.runs import COLUMNS, Run, cached_training

METHODS = ("dpo", "simpo")
DEFAULT_BETA = {"dpo": 0.1, "simpo": 2.0}
TRL_METRICS = {  # TRL log key -> history column (means over the training batches of an interval)
    "loss": "loss",
    "rewards/chosen": "rewards_chosen",
    "rewards/rejected": "rewards_rejected",
    "rewards/margins": "margin",
    "rewards/accuracies": "accuracy",
}
HELDOUT = ("heldout_rewards_chosen", "heldout_rewards_rejected", "heldout_margin",
           "heldout_accuracy", "heldout_loss", "heldout_weight")  # fmt: skip
OFFLINE_COLUMNS = (*COLUMNS, *TRL_METRICS.values(), *HELDOUT)


@dataclass
class OfflineConfig:
    """One offline run. Invalid values raise ``ValueError``/``TypeError`` on creation.

    Attributes:
        method: ``"dpo"`` (Rafailov et al. 2023) or ``"simpo"`` (Meng et al. 2024).
        beta: inverse temperature > 0. DPO: KL strength (TRL default 0.1); SimPO: reward scale of
            the average log-prob (the SimPO paper uses 2-2.5). ``None`` picks ``DEFAULT_BETA``.
        gamma: SimPO's target reward margin >= 0 (reward units; the paper's gamma/beta ~ 0.5).
            Unused by DPO; must be 0 with ``length_normalize=False`` (TRL's summed loss has none).
        length_normalize: SimPO only. ``True``: average log-probs (SimPO); ``False``: summed
            log-probs (the constant-alpha MaxEnt loss, notebook 02). Must be ``True`` for DPO.
        lr: AdamW learning rate > 0, constant after ``warmup_steps`` of linear warm-up.
        steps: optimiser steps (>= 1); one epoch is ``len(preference_data) / batch_size`` steps.
        batch_size: preference pairs per step (>= 1).
        warmup_steps: linear warm-up steps (>= 0).
        eval_interval: evaluate every this many steps and at the end (>= 1); row 0 is the SFT.
        n_eval_prompts: held-out prompts (of ``testbed.eval_prompts``) for gold/KL/win (>= 1).
        n_heldout_pairs: held-out preference pairs for the ``heldout_*`` metrics (>= 1).
        seed: seeds TRL's data order and the evaluation draws.
        device: ``"cpu"`` or ``"cuda"``.
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

    def __post_init__(self) -> None:
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


class EvalCallback(TrainerCallback):
    """Writes the run history (module docstring) at step 0, every ``eval_interval`` steps and at
    the end; ``on_eval(history)`` (if given) is called after each row, e.g. a live plot."""

    def __init__(self, testbed, config: OfflineConfig, on_eval: Callable | None = None):
        self.testbed, self.config, self.on_eval = testbed, config, on_eval
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

    def evaluate(self, model, step: int) -> None:
        seconds = (time.perf_counter() - self._clock) / max(1, step - self._last_step)
        model_mode = model.training
        model.eval()
        row, texts = policy_metrics(self.testbed, model, self.prompts, seed=self.config.seed)
        row |= preference_metrics(self.config, self._logps(model), self.ref)
        model.train(model_mode)
        row["seconds"] = seconds if step else math.nan
        self.rows.setdefault(step, {}).update(row, step=step)
        self.samples[step] = texts
        if self.on_eval is not None:
            self.on_eval(self.history())
        if self.bar is not None:
            self.bar.set_postfix(gold=f"{row['gold']:.2f}", kl=f"{row['kl_k1']:.1f}", refresh=False)
        self._clock, self._last_step = time.perf_counter(), step

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.bar = progress_bar(self.config)  # the run's one progress bar (TRL's are removed)
        self.evaluate(model, 0)

    def on_train_end(self, args, state, control, **kwargs):
        self.bar.close()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        s = state.global_step
        self.bar.update(1)
        if s % self.config.eval_interval == 0 or s == state.max_steps:
            self.evaluate(model, s)
            control.should_log = True  # TRL's interval means land on the same row

    def on_log(self, args, state, control, logs=None, **kwargs):
        row = self.rows.setdefault(state.global_step, {"step": state.global_step})
        row.update({col: logs[key] for key, col in TRL_METRICS.items() if key in logs})
        if self.on_eval is not None and "loss" in logs:  # redraw with TRL's metrics merged in
            self.on_eval(self.history())

    def history(self) -> pd.DataFrame:
        """One row per evaluated step, columns :data:`OFFLINE_COLUMNS` (NaN where not measured)."""
        h = pd.DataFrame([self.rows[s] for s in sorted(self.rows)])
        return h.reindex(columns=list(OFFLINE_COLUMNS)).astype(float).astype({"step": int})


def progress_bar(config):
    """A text progress bar (plain ``tqdm``) for one run. It shows in live kernels and terminals;
    the notebooks executed for the site run with ``TQDM_DISABLE=1``, so they save none."""
    from tqdm import tqdm

    return tqdm(total=config.steps, desc=config.label(), leave=False, mininterval=1.0)


def _dataset(testbed):
    """TRL's prompt/chosen/rejected columns; responses get a leading space, since TRL tokenises
    ``prompt + response`` as one string and ``"TL;DR:" + "apple"`` would be one unknown word."""
    d = testbed.preference_data.select_columns(["prompt", "chosen", "rejected"])
    return d.map(lambda e: {"chosen": " " + e["chosen"], "rejected": " " + e["rejected"]})


def make_trainer(testbed, config: OfflineConfig, callbacks=(), output_dir: str | None = None):
    """The TRL trainer of ``config`` (CPU-safe: fp32, no reporting, no checkpoints)."""
    common = dict(
        output_dir=output_dir or tempfile.mkdtemp(prefix="rlhf_nb_offline_"),
        use_cpu=config.device == "cpu", bf16=False, fp16=False, report_to="none",
        per_device_train_batch_size=config.batch_size, learning_rate=config.lr,
        max_steps=config.steps, lr_scheduler_type="constant_with_warmup",
        warmup_steps=config.warmup_steps, logging_steps=config.eval_interval,
        save_strategy="no", seed=config.seed, data_seed=config.seed, beta=config.beta,
        gradient_checkpointing=False, max_length=128, disable_tqdm=True,
        dataloader_num_workers=0,
    )  # fmt: skip
    with quiet(), warnings.catch_warnings(), _no_dataset_bars():
        warnings.simplefilter("ignore")
        policy = testbed.load_sft_policy().to(config.device)
        data = _dataset(testbed)
        if config.method == "dpo":
            from trl import DPOConfig, DPOTrainer

            trainer = DPOTrainer(
                model=policy, ref_model=testbed.load_sft_policy().to(config.device),
                args=DPOConfig(**common, loss_type=["sigmoid"]), train_dataset=data,
                processing_class=testbed.tokenizer, callbacks=list(callbacks),
            )  # fmt: skip
        else:
            from trl.experimental.cpo import CPOConfig, CPOTrainer

            args = CPOConfig(
                **common, loss_type="simpo" if config.length_normalize else "sigmoid",
                cpo_alpha=0.0, simpo_gamma=config.gamma, remove_unused_columns=False,
            )  # fmt: skip
            trainer = CPOTrainer(
                model=policy, args=args, train_dataset=data, processing_class=testbed.tokenizer,
                callbacks=list(callbacks),
            )  # fmt: skip
    for cb in (PrinterCallback, ProgressCallback):  # EvalCallback draws the one progress bar
        trainer.remove_callback(cb)
    return trainer


@contextlib.contextmanager
def _no_dataset_bars():
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def train(testbed, config: OfflineConfig, *, on_eval: Callable | None = None) -> Run:
    """Train ``config`` on ``testbed``'s preference data; return the :class:`~rlhf_nb.runs.Run`
    (history columns :data:`OFFLINE_COLUMNS`). A non-finite training loss ends the run as
    ``"diverged"``; Ctrl-C as ``"interrupted"`` (the history so far is kept)."""
    check_type("config", config, OfflineConfig)
    callback = EvalCallback(testbed, config, on_eval)
    trainer = make_trainer(testbed, config, [callback])
    status, message, start = "finished", "", time.perf_counter()
    try:
        with quiet(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train()
    except KeyboardInterrupt:
        status, message = "interrupted", "stopped by the user"
    history = callback.history()
    bad = history["loss"].dropna().pipe(lambda s: s[~s.map(math.isfinite)])
    if len(bad):
        status, message = (
            "diverged",
            f"non-finite loss at step {int(history.loc[bad.index[0], 'step'])}",
        )
    elif status == "finished":
        message = (
            f"{config.steps} steps in {time.perf_counter() - start:.0f} s (evaluation included)"
        )
    policy = trainer.model.eval()
    return Run(config, history, status, policy, message, callback.samples)


def live_widget(
    testbed,
    *,
    steps: int = 60,
    beta: float = DEFAULT_BETA["simpo"],
    gamma: float = 1.0,
    lr: float = 3e-4,
    seed: int = 0,
    device: str = "cpu",
):
    """Method, β, γ and learning-rate controls and a button that trains a short live run of
    ``steps`` steps from ``testbed``'s SFT policy (:func:`train`, 64 held-out prompts, 128
    held-out pairs, ten evaluations) and redraws its gold reward, KL and margin as it goes.

    Nothing trains until the button is pressed, so rendering the widget (papermill) is instant;
    the button is disabled while a run trains. The other arguments are the controls' initial
    values (β on a log slider over [0.01, 20], γ over [0, 5], lr on a log slider over
    [1e-5, 1e-2]) and the run's ``seed`` and ``device``. Returns the ``VBox`` (displayed by the
    caller) and the figure.
    """
    import ipywidgets as w

    from rlhf_nb import run_plots, widgets

    check_int("steps", steps, 1)
    method_w = w.Dropdown(options=["simpo", "dpo"], value="simpo", description="method")
    beta_w = widgets.log_slider("β", beta, 0.01, 20.0)
    gamma_w = w.FloatSlider(value=gamma, min=0.0, max=5.0, step=0.1, description="γ")
    lr_w = widgets.log_slider("lr", lr, 1e-5, 1e-2)
    button = w.Button(description=f"train {steps} steps")
    status = w.Label()
    fig, update = run_plots.live_history(("gold", "kl_k1", "margin"), title="live run")

    def on_click(_):
        button.disabled = True
        try:
            cfg = OfflineConfig(
                method=method_w.value, beta=beta_w.value, gamma=gamma_w.value, lr=lr_w.value,
                steps=steps, eval_interval=max(1, steps // 10), n_eval_prompts=64,
                n_heldout_pairs=128, seed=seed, device=device,
            )  # fmt: skip
            status.value = f"training {cfg.label()} ..."
            run = train(testbed, cfg, on_eval=update)
            status.value = f"{cfg.label()}: {run.status}, gold {run.final('gold'):.2f}"
        finally:
            button.disabled = False

    button.on_click(on_click)
    return w.VBox([w.HBox([method_w, button]), beta_w, gamma_w, lr_w, status, fig]), fig


def cached(testbed, config: OfflineConfig, *, refresh: bool = False, cache_dir=None) -> Run:
    """:func:`train`, cached under ``runs/offline/<hash of config and testbed>`` (history only)."""
    return cached_training(
        "offline", testbed, config, lambda: train(testbed, config),
        cache_dir=cache_dir, refresh=refresh,
    )  # fmt: skip
