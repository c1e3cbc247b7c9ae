"""The online RLOO loop of the command-line runner: resumable, and data-parallel under
``accelerate launch`` (``python -m rlhf_nb.run``, chapter 08).

:func:`train` runs the steps of the teaching loop, :func:`rlhf_nb.methods.online.train`, with the
same named functions in the same order, and adds what a long run on real models needs:

* **checkpoints**, every ``config.checkpoint_interval`` steps: the policy's weights (or a LoRA
  policy's adapters), Adam's state, the prompt RNG, the torch (and CUDA) RNGs, the history and
  the samples, written atomically; ``resume=True`` continues from the last one with the history
  an uninterrupted run would have had (tested).
* **several processes** (an ``accelerator`` with ``num_processes > 1``): every process draws the
  same global batch of ``prompts_per_step × processes`` prompts from the shared prompt RNG and
  takes its own slice, so the k samples of a prompt (its RLOO group) stay in one process; each
  samples with its own torch seed; the policy is wrapped by ``accelerator.prepare`` (DDP averages
  the gradients, so every process takes the same step; FSDP shards them and gathers the full
  parameters to generate) and the log-probs with gradient are one forward pass over the full
  sequences (DDP expects one forward per backward); the history's means are averaged over the
  processes (equal shares, so they are the means over all samples), and so is the entropy that
  adapts ``target_entropy``'s α, so that every process uses the same α.

With one process (no accelerator, or one process) and no checkpoints this is the teaching loop
bit for bit (tests/test_online.py compares the histories).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from rlhf_nb.core import check_type
from rlhf_nb.methods import online
from rlhf_nb.methods.online_config import OnlineConfig
from rlhf_nb.runs.cache import run_path
from rlhf_nb.runs.record import Run
from rlhf_nb.sampling import rollout, token_logprobs, token_logprobs_full

__all__ = ["train"]


def train(
    testbed,
    config: OnlineConfig,
    *,
    on_step: Callable | None = None,
    resume: bool = False,
    reward_fn: Callable | None = None,
    checkpoint_dir: Path | None = None,
    progress: bool | None = None,
    accelerator=None,
) -> Run:
    """:func:`rlhf_nb.methods.online.train` with checkpoints and several processes (module
    docstring); returns a :class:`Run`.

    Args:
        testbed, config, on_step, reward_fn, progress: as :func:`rlhf_nb.methods.online.train`
            (the bar shows on the main process only).
        resume: continue from the last checkpoint in ``checkpoint_dir``, when there is one.
        checkpoint_dir: where checkpoints go (default ``<cache>/checkpoints/online/<key>``).
        accelerator: an ``accelerate.Accelerator``; with several processes the run is
            data-parallel, and the returned run's ``process_rows`` hold this process's own step
            means before averaging (the runner's report).
    """
    check_type("config", config, OnlineConfig)
    cfg, par = config, Processes(accelerator)
    reward_fn = online.reward_function(testbed, cfg, reward_fn)
    s = online.setup(testbed, cfg, par.device, sample_seed=cfg.seed + 1_000_003 * par.rank)
    model = par.prepare(s)  # what the gradient flows through: DDP/FSDP-wrapped when parallel
    folder = Path(checkpoint_dir or run_path("online", testbed, cfg, area="checkpoints"))
    ckpt = Checkpoints(folder, cfg.checkpoint_interval, par)
    rows, samples, start = ckpt.load(s) if resume else ([], {}, 0)
    if rows:  # the α the next step would have used
        online.adapt_entropy_coef(cfg, s, rows[-1])
    status, message = "running", ""
    show = progress if par.rank == 0 else False  # the main process's bar only
    bar = online.progress_bar(cfg, range(start, cfg.steps + 1), show)
    try:
        for step in bar:
            t0 = time.perf_counter()
            # 1. the same global batch on every process, each its own share; k samples each
            prompts = testbed.task.documents(cfg.prompts_per_step * par.world, s.prompt_rng,
                                             s.held_out)  # fmt: skip
            prompts = par.shard(prompts)
            try:
                with par.full_parameters(model):
                    batch = rollout(s.policy, testbed.tokenizer, prompts, cfg.k, s.max_new)
            except RuntimeError as exc:  # NaN/inf logits: torch.multinomial refuses them
                status, message = "diverged", f"sampling failed at step {step}: {exc}"
                break
            xs = [p for p in prompts for _ in range(cfg.k)]
            r, gold = online.score(testbed, batch, xs, reward_fn, s.ensemble)  # 2.
            logp, ent, ref_logp = online.log_probs(model, s.ref, batch, s.ref_context,
                                                   par.forward)  # 3. # fmt: skip
            mask = batch["response_mask"]
            loss, terms = online.regularised_loss(cfg, s, r, logp, ent, ref_logp, mask)  # 4-6.
            row = online.history_row(step, r, gold, batch, terms, loss)
            online.log_proxy(testbed, cfg, batch, row)
            online.evaluate(testbed, cfg, s, step, prompts, batch, row, samples,
                            lambda: par.full_parameters(model))  # fmt: skip
            row = par.mean(row)  # the means over every process's samples
            online.adapt_entropy_coef(cfg, s, row)
            problem = online.diverged(row, step)
            if not problem and step < cfg.steps:  # 6. one optimiser step
                row["grad_norm"] = par.update(model, s.opt, loss, cfg.grad_clip)
                problem = online.diverged(row, step, updated=True)
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            if problem:
                status, message = "diverged", problem
                break
            ckpt.save(step, s, rows, samples)
            bar.set_postfix(gold=f"{row['gold']:.2f}", proxy=f"{row['proxy']:.2f}",
                            kl=f"{row['kl_k1']:.2f}")  # fmt: skip
            if on_step is not None:
                on_step(online.history(rows))
        if status == "running":
            status, message = "finished", f"{cfg.steps} steps"
    except KeyboardInterrupt:
        status, message = "interrupted", f"interrupted after {len(rows)} logged steps"
    finally:
        bar.close()
    s.policy.eval()
    run = Run(cfg, online.history(rows), status, s.policy, message, samples)
    run.process_rows = par.local
    return run


class Processes:
    """What differs between one process and several (module docstring), so that :func:`train`
    reads the same for both: with one process every method is the teaching loop's own step."""

    def __init__(self, accelerator=None):
        parallel = accelerator is not None and accelerator.num_processes > 1
        self.acc = accelerator if parallel else None
        self.world = accelerator.num_processes if parallel else 1
        self.rank = accelerator.process_index if parallel else 0
        self.device = accelerator.device if accelerator is not None else None
        self.forward = token_logprobs_full if parallel else token_logprobs
        self.local: list[dict] = []  # this process's rows before averaging (several only)

    def prepare(self, s: online.State):
        """The model the gradient flows through; with several processes the policy and Adam
        wrapped by ``accelerator.prepare`` (the wrapped optimiser replaces ``s.opt``)."""
        if self.acc is None:
            return s.policy
        model, s.opt = self.acc.prepare(s.policy, s.opt)
        return model

    def shard(self, prompts: list[str]) -> list[str]:
        """This process's contiguous share of the global batch."""
        n = len(prompts) // self.world
        return prompts[self.rank * n : (self.rank + 1) * n]

    def full_parameters(self, model):
        """The context generation runs in: under FSDP the shards gathered into full parameters
        (``summon_full_params``); otherwise nothing to do."""
        if self.acc is not None and self.acc.distributed_type.name == "FSDP":
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            return FSDP.summon_full_params(model, writeback=False)
        return contextlib.nullcontext()

    def mean(self, row: dict) -> dict:
        """``row`` with every numeric value averaged over the processes (NaN stays NaN)."""
        if self.acc is None:
            return row
        self.local.append(dict(row))
        keys = [k for k, v in row.items() if k != "step" and isinstance(v, float | int)]
        local = torch.tensor([float(row[k]) for k in keys], device=self.acc.device)
        return row | dict(zip(keys, self.acc.reduce(local, "mean").tolist()))

    def update(self, model, opt, loss, grad_clip: float) -> float:
        """Step 6, :func:`rlhf_nb.methods.online.update`; with several processes the
        accelerator's ``backward`` and ``clip_grad_norm_`` (DDP/FSDP-aware)."""
        if self.acc is None:
            return online.update(model, opt, loss, grad_clip)
        opt.zero_grad()
        self.acc.backward(loss)
        gn = float(self.acc.clip_grad_norm_(model.parameters(), grad_clip))
        if math.isfinite(gn):
            opt.step()
        return gn

    def wait(self) -> None:
        if self.acc is not None:
            self.acc.wait_for_everyone()


class Checkpoints:
    """A run's resumable state in ``folder``: ``checkpoint.pt`` (written by the main process)
    and, with several processes, each one's sampling RNG in ``rng-rank<r>.pt``."""

    def __init__(self, folder: Path, every: int, par: Processes):
        self.file, self.every, self.par = folder / "checkpoint.pt", every, par
        self.rng_file = folder / f"rng-rank{par.rank}.pt"

    def save(self, step: int, s: online.State, rows: list[dict], samples: dict) -> None:
        """After ``step``, every ``every`` steps (0: never): everything :meth:`load` needs to
        continue bit for bit (the CUDA RNGs too when the policy is on a GPU), atomically."""
        if not self.every or (step + 1) % self.every:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        if self.par.acc is not None:  # each process's own sampling RNG
            torch.save(torch.get_rng_state(), self.rng_file)
        if self.par.rank == 0:
            on_cuda = next(s.policy.parameters()).is_cuda
            state = {
                "policy": _trained_state(s.policy),
                "optimizer": s.opt.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if on_cuda else None,
                "prompt_rng": s.prompt_rng.getstate(),
                "rows": list(rows),
                "samples": dict(samples),
                "step": step + 1,
            }
            tmp = self.file.with_suffix(".tmp")
            torch.save(state, tmp)
            tmp.replace(self.file)
        self.par.wait()

    def load(self, s: online.State) -> tuple[list, dict, int]:
        """Restore the last checkpoint into the policy, Adam and the RNGs; returns ``(rows,
        samples, next step)``, or a fresh start when there is none."""
        if not self.file.exists():
            return [], {}, 0
        state = torch.load(self.file, weights_only=False)
        if hasattr(s.policy, "get_base_model"):  # a LoRA policy: its adapters
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(s.policy, state["policy"])
        else:
            s.policy.load_state_dict(state["policy"])
        s.opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        s.prompt_rng.setstate(state["prompt_rng"])
        if self.par.acc is not None and state["step"]:
            torch.set_rng_state(torch.load(self.rng_file, weights_only=False))
        return state["rows"], state["samples"], state["step"]


def _trained_state(policy) -> dict:
    """What a checkpoint keeps of the policy: every weight, or a LoRA policy's adapters only
    (the frozen base is reloaded from its source)."""
    if hasattr(policy, "get_base_model"):
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(policy)
    return policy.state_dict()
