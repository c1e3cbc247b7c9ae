"""Offline preference optimisation with TRL's trainers: DPO and SimPO (notebook 06).

Both start from the testbed's SFT policy and train on its fixed preference pairs
(``testbed.preference_data``, TRL's prompt/chosen/rejected format):

* ``method="dpo"``: ``trl.DPOTrainer`` (sigmoid loss), reference model = the SFT policy;
  ``rlhf_nb.theory.losses.dpo_loss`` on summed log-probs (notebook 02, section 3).
* ``method="simpo"``: ``trl.experimental.cpo.CPOTrainer(loss_type="simpo", cpo_alpha=0.0)``,
  reference-free; ``rlhf_nb.theory.losses.simpo_loss`` on *average* log-probs (notebook 02,
  section 4).
  ``cpo_alpha=0`` matters: TRL's default ``cpo_alpha=1.0`` adds a behaviour-cloning NLL term
  (CPO-SimPO), which is not SimPO.
* ``method="simpo", length_normalize=False``: the same trainer with ``loss_type="sigmoid"``, i.e.
  ``-log sigmoid(beta (log pi(y_w) - log pi(y_l)))`` on *summed* log-probs: the constant-alpha
  MaxEnt Bradley-Terry loss of notebook 02 (``losses.maxent_bt_loss``; no margin, so gamma = 0).

The history is written by :class:`rlhf_nb.methods.evaluate.HistoryWriter`, fed from a TRL callback
(:class:`TRLHistory`): the shared ``rlhf_nb.runs.record.COLUMNS`` on held-out prompts
(:func:`rlhf_nb.methods.evaluate.policy_metrics`), TRL's own training metrics averaged over each
interval (``loss``, ``rewards_chosen``, ``rewards_rejected``, ``margin``, ``accuracy``; for SimPO
the implicit reward is beta * average log-prob) and the same on held-out pairs (``heldout_*``,
plus ``heldout_weight``, the mean per-pair gradient weight sigmoid(-logit) of the loss).
The live widget of chapter 06 is :func:`rlhf_nb.viz.live.offline_widget`.
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from rlhf_nb.core import check_type, quiet
from rlhf_nb.methods.evaluate import PREFERENCE_COLUMNS, TRAIN_METRICS, HistoryWriter
from rlhf_nb.methods.preference import DEFAULT_BETA, METHODS, PreferenceConfig
from rlhf_nb.runs.record import Run

__all__ = [
    "DEFAULT_BETA",
    "METHODS",
    "PREFERENCE_COLUMNS",
    "OfflineConfig",
    "make_trainer",
    "train",
]
HISTORY_FILE = "rlhf_nb_history.json"
# TRL log key -> history column (means over the training batches of an interval)
TRL_METRICS = dict(
    zip(("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"),
        TRAIN_METRICS)
)  # fmt: skip


@dataclass
class OfflineConfig(PreferenceConfig):
    """One offline run: DPO or SimPO on the testbed's fixed preference pairs (fields:
    :class:`~rlhf_nb.methods.preference.PreferenceConfig`; ``batch_size`` is pairs per step).
    ``labeller="gold"`` (the default) is the data as built; ``"proxy"`` relabels the same pairs
    by the proxy RM (:func:`relabel`)."""

    def label(self) -> str:
        return super().label() + (" [proxy labels]" if self.labeller == "proxy" else "")


class TRLHistory(TrainerCallback):
    """Feeds a TRL trainer's steps and logs to a :class:`~rlhf_nb.methods.evaluate.HistoryWriter`:
    row 0 at the start, an evaluation every ``eval_interval`` steps and at the end, TRL's interval
    means (:data:`TRL_METRICS`) merged into the same rows."""

    def __init__(self, writer: HistoryWriter):
        self.writer = writer

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.writer.start(model)  # the run's one progress bar (TRL's are removed)

    def on_save(self, args, state, control, **kwargs):
        """Keep the history beside TRL's checkpoint, so that a resumed run continues it."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.writer.save(folder / HISTORY_FILE)

    def on_train_end(self, args, state, control, **kwargs):
        self.writer.close()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        s = state.global_step
        self.writer.tick()
        if s % self.writer.config.eval_interval == 0 or s == state.max_steps:
            self.writer.evaluate(model, s)
            control.should_log = True  # TRL's interval means land on the same row

    def on_log(self, args, state, control, logs=None, **kwargs):
        metrics = {col: logs[key] for key, col in TRL_METRICS.items() if key in logs}
        self.writer.log(state.global_step, metrics)


def proxy_flips(testbed, data) -> list[bool]:
    """Per pair of ``data`` (``prompt``/``chosen``/``rejected``): does the proxy RM score the
    rejected response higher, i.e. would it flip the label? (Ties keep the data's order.)"""
    prompts = list(data["prompt"])
    rc = testbed.proxy_reward(prompts, list(data["chosen"])).tolist()
    rr = testbed.proxy_reward(prompts, list(data["rejected"])).tolist()
    return [b > a for a, b in zip(rc, rr)]


def relabel(testbed, data):
    """The same pairs with the proxy RM as the labeller: in each pair the response with the
    higher proxy score becomes ``chosen`` (:func:`proxy_flips`). Returns a new
    ``datasets.Dataset`` with ``prompt``/``chosen``/``rejected``; the fraction of pairs whose
    label flipped is in its ``info.description``."""
    prompts, chosen, rejected = list(data["prompt"]), list(data["chosen"]), list(data["rejected"])
    flip = proxy_flips(testbed, data)
    out = datasets.Dataset.from_dict({
        "prompt": prompts,
        "chosen": [r if f else c for c, r, f in zip(chosen, rejected, flip)],
        "rejected": [c if f else r for c, r, f in zip(chosen, rejected, flip)],
    })  # fmt: skip
    out.info.description = f"proxy labels; {sum(flip) / max(1, len(flip)):.4f} of pairs flipped"
    return out


def _dataset(testbed, config: OfflineConfig | None = None):
    """TRL's prompt/chosen/rejected columns (relabelled by the proxy RM when ``config`` asks);
    responses get a leading space, since TRL tokenises ``prompt + response`` as one string and
    ``"TL;DR:" + "apple"`` would be one unknown word."""
    d = testbed.preference_data.select_columns(["prompt", "chosen", "rejected"])
    if config is not None and config.labeller == "proxy":
        d = relabel(testbed, d)
    return d.map(lambda e: {"chosen": " " + e["chosen"], "rejected": " " + e["rejected"]})


def make_trainer(
    testbed, config: OfflineConfig, callbacks=(), output_dir: str | None = None, save_steps: int = 0
):
    """The TRL trainer of ``config`` (CPU-safe: fp32, no reporting; a resumable TRL checkpoint
    in ``output_dir`` every ``save_steps`` steps, none when 0)."""
    saving = dict(save_strategy="steps", save_steps=save_steps) if save_steps else {}
    common = dict(
        output_dir=output_dir or tempfile.mkdtemp(prefix="rlhf_nb_offline_"),
        use_cpu=config.device == "cpu", bf16=False, fp16=False, report_to="none",
        per_device_train_batch_size=config.batch_size, learning_rate=config.lr,
        max_steps=config.steps, lr_scheduler_type="constant_with_warmup",
        warmup_steps=config.warmup_steps, logging_steps=config.eval_interval,
        save_strategy="no", seed=config.seed, data_seed=config.seed, beta=config.beta,
        gradient_checkpointing=False, max_length=getattr(testbed, "max_length", 128),
        disable_tqdm=True,
        dataloader_num_workers=0,
    ) | saving  # fmt: skip
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.random.fork_rng():  # a LoRA policy's adapters start from the run's seed
            torch.manual_seed(config.seed)
            policy = testbed.load_sft_policy().to(config.device)
        data = _dataset(testbed, config)
        if config.method == "dpo":
            from trl import DPOConfig, DPOTrainer

            # a LoRA policy is its own reference (TRL runs it with the adapters off)
            lora = hasattr(policy, "get_base_model")
            ref = None if lora else testbed.load_sft_policy().to(config.device)
            trainer = DPOTrainer(
                model=policy, ref_model=ref,
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
    for cb in (PrinterCallback, ProgressCallback):  # HistoryWriter draws the one progress bar
        trainer.remove_callback(cb)
    return trainer


def train(
    testbed,
    config: OfflineConfig,
    *,
    on_step: Callable | None = None,
    output_dir: str | Path | None = None,
    save_steps: int = 0,
    resume: bool = False,
) -> Run:
    """Train ``config`` on ``testbed``'s preference data; return the
    :class:`~rlhf_nb.runs.record.Run` (history columns
    :data:`~rlhf_nb.methods.evaluate.PREFERENCE_COLUMNS`). ``on_step(history)`` after each history
    row (the run contract, :mod:`rlhf_nb.runs.contract`). A non-finite
    training loss ends the run as ``"diverged"``; Ctrl-C as ``"interrupted"`` (the history so far
    is kept). ``output_dir``/``save_steps``: TRL checkpoints (with the history so far) every
    ``save_steps`` steps; ``resume=True`` continues from the last one in ``output_dir`` (TRL
    restores weights, optimiser, scheduler, RNG states and the data order)."""
    check_type("config", config, OfflineConfig)
    writer = HistoryWriter(testbed, config, on_step)
    last = None
    if resume and output_dir is not None and Path(output_dir).exists():
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(output_dir))
        if last is not None:
            writer.load(Path(last) / HISTORY_FILE)
    out = None if output_dir is None else str(output_dir)
    if last is not None and int(Path(last).name.split("-")[-1]) >= config.steps:
        # the last checkpoint is the end of the run (TRL would take one step more): return it
        return Run(
            config,
            writer.history(),
            "finished",
            None,
            f"{config.steps} steps (resumed at its last checkpoint)",
            writer.samples,
        )
    trainer = make_trainer(testbed, config, [TRLHistory(writer)], out, save_steps)
    status, message, start = "finished", "", time.perf_counter()
    try:
        with quiet(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train(resume_from_checkpoint=last)
    except KeyboardInterrupt:
        status, message = "interrupted", "stopped by the user"
        writer.close()
    history = writer.history()
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
    return Run(config, history, status, policy, message, writer.samples)
