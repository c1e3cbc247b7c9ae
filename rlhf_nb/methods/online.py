"""Online RLHF with RLOO: MaxEnt (entropy bonus, no anchor) vs KL-regularised (notebook 05).

``train(testbed, config)`` is the paper's central experiment at toy scale. Each step
(:func:`train`, top to bottom):

1. draw fresh training prompts x and sample k responses y ~ π(·|x) (``generate``, KV cache,
   temperature 1, stop at EOS or ``max_new_tokens``);
2. score them with the proxy RM r(x, y) (and the gold reward, for the history only);
3. compute log π(y|x) and log π_ref(y|x) token by token;
4. apply the regularisers (``rlhf_nb.methods.online_config``; the maths of steps 4-6 is in
   :mod:`rlhf_nb.methods.rloo`): shaped reward
   R = r - α·log π(y|x) - β·Σ_t log(π/π_ref), plus loss terms -α·H_token and β·k3;
5. RLOO advantages A_i = R_i - mean_{j≠i} R_j over the k samples of a prompt;
6. policy-gradient loss -mean_i A_i · log π(y_i|x_i), one Adam step.

The k samples of a prompt share it, so steps 1-3 run each prompt through a model once and repeat
its keys and values k times (:func:`rlhf_nb.sampling.prompt_cache`). That is an exact rewrite of
one forward pass over the full sequences (:func:`token_logprobs_full`; tests compare samples,
log-probs, gradients and RM scores), not an approximation, and it is where the step saves time
against TRL's ``GRPOTrainer``, which runs every prompt k times (``benchmarks/online_step.py``).

The history (``rlhf_nb.runs.record.COLUMNS`` plus ``loss``, ``grad_norm``, ``reward_shaped``)
logs the samples drawn at step s, i.e. the policy after s updates.

Data-parallel (``accelerator`` with several processes, ``accelerate launch``; the runner
``python -m rlhf_nb.run`` passes one): every process draws the same global batch of
``prompts_per_step × processes`` prompts from the shared prompt RNG and takes its own slice, so
the k samples of a prompt (its RLOO group) stay in one process; each samples with its own torch
seed; the policy is wrapped by ``accelerator.prepare`` (DDP averages the gradients, so every
process takes the same step) and the log-probs with gradient are one forward pass over the full
sequences (DDP expects one forward per backward); the history's means are averaged over the
processes (equal shares, so they are the means over all samples). With one process nothing of
this runs: the loop is the single-process one above, bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from rlhf_nb.core import check_type, quiet
from rlhf_nb.sampling import rollout, token_logprobs, token_logprobs_full
from rlhf_nb.methods.ensemble import aggregate, proxy_ensemble
from rlhf_nb.methods.online_config import REGULARIZERS, OnlineConfig
from rlhf_nb.methods.rloo import adapt_alpha, coefficients, mixed_reference, rloo_loss
from rlhf_nb.runs.record import COLUMNS, Run
from rlhf_nb.runs.cache import run_path

__all__ = ["REGULARIZERS", "OnlineConfig", "log_probs", "score", "train", "update"]


def score(testbed, batch: dict, prompts: list[str], reward_fn=None, ensemble=None):
    """Step 2: the reward optimised, r(x, y) [N] (the proxy RM on the sampled ids, each prompt
    run once for its k samples; ``ensemble=(members, mode, penalty)`` aggregates several RMs,
    :func:`rlhf_nb.methods.ensemble.aggregate`; or ``reward_fn(prompts, texts)``), minus the
    testbed's ``missing_eos_penalty`` (real presets; 0 for the toy) where a sample has no EOS,
    and the gold reward [N] (logged only, never optimised). ``prompts`` is [N], one per
    sample."""
    if reward_fn is None and ensemble is not None:
        members, mode, penalty = ensemble
        scores = torch.stack([testbed.proxy_reward_rollout(batch, rm) for rm in members])
        r = aggregate(scores.float(), mode, penalty)
    elif reward_fn is None:
        r = testbed.proxy_reward_rollout(batch).float()
    else:
        r = reward_fn(prompts, batch["texts"]).float().to(batch["ids"].device)
    penalty = getattr(testbed, "missing_eos_penalty", 0.0)
    if penalty:
        r = r - penalty * (~batch["eos"]).float().to(r.device)
    return r, testbed.gold_reward(prompts, batch["texts"])


def log_probs(policy, ref, batch: dict, ref_context=contextlib.nullcontext, full: bool = False):
    """Step 3: log π(y_t|·) with gradient and the per-token entropy of π, and log π_ref(y_t|·)
    without gradient; each [N, T-1], aligned with ``batch["response_mask"]``. ``ref_context``:
    what the reference runs in (a LoRA policy's ``disable_adapter``); ``full``: one forward
    pass over the full sequences (data-parallel runs; equal values, tested)."""
    policy.train()
    logp, ent = (token_logprobs_full if full else token_logprobs)(policy, batch)
    with torch.no_grad(), ref_context():
        ref_logp, _ = token_logprobs(ref, batch)
    return logp, ent, ref_logp


def update(policy, opt, loss, grad_clip: float, accelerator=None) -> float:
    """One Adam step on ``loss`` with the global gradient norm clipped to ``grad_clip``; returns
    the norm before clipping. A non-finite norm skips the step (the caller ends the run).
    With an ``accelerator``, its ``backward`` and ``clip_grad_norm_`` (DDP/FSDP-aware)."""
    opt.zero_grad()
    if accelerator is None:
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip).item()
    else:
        accelerator.backward(loss)
        gn = float(accelerator.clip_grad_norm_(policy.parameters(), grad_clip))
    if math.isfinite(gn):
        opt.step()
    return gn


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
    """Run online RLOO from the SFT policy (module docstring); returns a :class:`Run`.

    Args:
        testbed: a built :class:`rlhf_nb.testbed.Testbed` (policy init, reference, rewards).
        config: the validated :class:`OnlineConfig`.
        on_step: ``on_step(history)`` after every step (the run contract,
            :mod:`rlhf_nb.runs.contract`); may raise ``KeyboardInterrupt`` to stop.
        resume: continue from this config's last checkpoint when one exists.
        reward_fn: ``(prompts, responses) -> float tensor [N]`` to optimise instead of the proxy
            RM (e.g. ``testbed.gold_reward``; tests inject non-finite rewards with it).
        checkpoint_dir: where checkpoints go (default ``<cache>/checkpoints/online/<key>``).
        progress: ``False`` hides the progress bar; ``None`` (default) shows it unless
            ``TQDM_DISABLE=1`` (the book's build and the process pool set it).
        accelerator: an ``accelerate.Accelerator``; with several processes the run is
            data-parallel (module docstring), the progress bar shows on the main one only.
    """
    check_type("config", config, OnlineConfig)
    loop = _Loop(testbed, config, checkpoint_dir, accelerator)
    start = loop.resume() if resume else 0
    status, message = "running", ""
    if progress is None:  # read at call time (tqdm reads its TQDM_* variables at import)
        progress = os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true")
    progress = progress and loop.rank == 0
    bar = tqdm(range(start, config.steps + 1), desc=config.label(), leave=False,
               disable=not progress)  # fmt: skip
    try:
        for step in bar:
            row, problem = loop.step(step, reward_fn)
            if row is not None:
                loop.rows.append(row)
            if problem:
                status, message = "diverged", problem
                break
            loop.checkpoint(step)
            bar.set_postfix(gold=f"{row['gold']:.2f}", proxy=f"{row['proxy']:.2f}",
                            kl=f"{row['kl_k1']:.2f}")  # fmt: skip
            if on_step is not None:
                on_step(_history(loop.rows))
        if status == "running":
            status, message = "finished", f"{config.steps} steps"
    except KeyboardInterrupt:
        status, message = "interrupted", f"interrupted after {len(loop.rows)} logged steps"
    finally:
        bar.close()
    loop.policy.eval()
    run = Run(config, _history(loop.rows), status, loop.policy, message, loop.samples)
    if loop.par is not None:  # each process's own step means, before averaging (runner report)
        run.process_rows = loop.par.local
    return run


class _Parallel:
    """What a data-parallel run adds to the loop (module docstring): the process's slice of
    each step's prompts and the averaging of the history's means over the processes."""

    def __init__(self, accelerator):
        self.acc = accelerator
        self.world, self.rank = accelerator.num_processes, accelerator.process_index
        self.local: list[dict] = []  # this process's rows before averaging

    def shard(self, prompts: list[str]) -> list[str]:
        """This process's contiguous share of the global batch."""
        n = len(prompts) // self.world
        return prompts[self.rank * n : (self.rank + 1) * n]

    def mean(self, row: dict) -> dict:
        """``row`` with every numeric value averaged over the processes (NaN stays NaN)."""
        self.local.append(dict(row))
        keys = [k for k, v in row.items() if k != "step" and isinstance(v, float | int)]
        local = torch.tensor([float(row[k]) for k in keys], device=self.acc.device)
        return row | dict(zip(keys, self.acc.reduce(local, "mean").tolist()))


class _Loop:
    """The state of one online run (policy, reference, optimiser, prompt RNG, history) and its
    step; :func:`train` drives it."""

    def __init__(self, testbed, cfg: OnlineConfig, checkpoint_dir: Path | None, accelerator=None):
        self.testbed, self.cfg = testbed, cfg
        self.par = _Parallel(accelerator) if accelerator and accelerator.num_processes > 1 else None
        self.acc, self.rank = accelerator, self.par.rank if self.par else 0
        device = accelerator.device if accelerator is not None else cfg.device
        torch.manual_seed(cfg.seed + 1_000_003 * self.rank)  # each process draws its own samples
        self.max_new = cfg.max_new_tokens or testbed.max_new_tokens
        with quiet():
            self.policy = testbed.load_sft_policy().to(device)
        self.ref, self.ref_context = testbed.reference(self.policy)
        self.ref = self.ref.to(device).eval()
        trainable = [p for p in self.policy.parameters() if p.requires_grad]  # all, or LoRA's
        self.opt = torch.optim.Adam(trainable, lr=cfg.lr)
        self.model = self.policy  # what the gradient flows through: DDP/FSDP-wrapped when parallel
        if self.par is not None:
            self.model, self.opt = accelerator.prepare(self.policy, self.opt)
        self.coef, self.held_out = coefficients(cfg), set(testbed.eval_prompts)  # never trained on
        self.prompt_rng = random.Random(cfg.seed)
        folder = checkpoint_dir or run_path("online", testbed, cfg, area="checkpoints")
        self.ckpt = Path(folder) / "checkpoint.pt"
        self.rng_file = Path(folder) / f"rng-rank{self.rank}.pt"  # per process (own samples)
        self.rows: list[dict] = []
        self.samples: dict[int, list[str]] = {}
        self.ensemble = None
        if cfg.ensemble > 1:
            members = [m.to(cfg.device) for m in proxy_ensemble(testbed, cfg.ensemble)]
            self.ensemble = (members, cfg.ensemble_mode, cfg.ensemble_penalty)

    def resume(self) -> int:
        """Load the last checkpoint, if any; returns the step to continue from."""
        self.rows, self.samples, start = _load_checkpoint(
            self.ckpt, self.policy, self.opt, self.prompt_rng
        )
        if self.par is not None and start:
            torch.set_rng_state(torch.load(self.rng_file, weights_only=False))
        cfg = self.cfg
        if cfg.target_entropy is not None and self.rows:  # the adaptive α of the next step
            last = self.rows[-1]
            self.coef["alpha_tok"] = adapt_alpha(
                last["alpha_tok"], last["entropy_token"], cfg.target_entropy, cfg.entropy_rate
            )
        return start

    def step(self, step: int, reward_fn=None) -> tuple[dict | None, str]:
        """Steps 1-6 of the module docstring on fresh prompts, the history row of the samples
        drawn (policy after ``step`` updates), then the update (none after the last row).
        Returns ``(row, problem)``: ``problem`` is "" or why the run diverged."""
        cfg, t0 = self.cfg, time.perf_counter()
        world = self.par.world if self.par else 1
        prompts = self.testbed.task.documents(cfg.prompts_per_step * world, self.prompt_rng,
                                              self.held_out)  # fmt: skip
        if self.par is not None:
            prompts = self.par.shard(prompts)
        try:  # 1. fresh prompts x, k samples y ~ π(·|x) each
            with self.full_parameters():
                batch = rollout(self.policy, self.testbed.tokenizer, prompts, cfg.k, self.max_new)
        except RuntimeError as exc:  # NaN/inf logits: torch.multinomial refuses them
            return None, f"sampling failed at step {step}: {exc}"
        xs = [p for p in prompts for _ in range(cfg.k)]
        r, gold = score(self.testbed, batch, xs, reward_fn, self.ensemble)  # 2.
        logp, ent, ref_logp = log_probs(self.model, self.ref, batch, self.ref_context,
                                        full=self.par is not None)  # 3. # fmt: skip
        anchor = None  # ref_mix λ < 1: the KL penalties use λ·π_SFT + (1−λ)·uniform per token
        if cfg.ref_mix != 1.0:
            anchor = mixed_reference(ref_logp, cfg.ref_mix, self.ref.config.vocab_size)
        mask = batch["response_mask"]
        loss, terms = rloo_loss(r, logp, ent, ref_logp, mask, cfg.k, self.coef, anchor)
        row, problem = _row(step, r, gold, batch, terms, loss), ""
        if cfg.target_entropy is not None:  # log this step's α, then adapt it for the next
            row["alpha_tok"] = self.coef["alpha_tok"]
            self.coef["alpha_tok"] = adapt_alpha(row["alpha_tok"], terms["entropy_token"],
                                                 cfg.target_entropy, cfg.entropy_rate)  # fmt: skip
        if step % cfg.eval_interval == 0 or step == cfg.steps:
            with self.full_parameters():
                row["win_rate"] = _win_rate(self.testbed, self.policy, cfg, step, self.max_new)
        if step % cfg.sample_interval == 0 or step == cfg.steps:
            self.samples[step] = [f"{x} {y}" for x, y in zip(prompts, batch["texts"][:: cfg.k])][:4]
        if self.par is not None:  # the means over every process's samples
            row = self.par.mean(row)
        if not (math.isfinite(row["proxy"]) and math.isfinite(row["loss"])):
            problem = f"non-finite reward or loss at step {step}"
        elif step < cfg.steps:  # 6. one optimiser step (the last row only measures)
            acc = self.acc if self.par is not None else None
            row["grad_norm"] = update(self.model, self.opt, loss, cfg.grad_clip, acc)
            if not math.isfinite(row["grad_norm"]):
                problem = f"non-finite gradient at step {step}"
        row["seconds"] = time.perf_counter() - t0
        return row, problem

    def full_parameters(self):
        """The context generation runs in: under FSDP the shards gathered into full parameters
        (``summon_full_params``); otherwise nothing to do."""
        if self.par is not None and self.acc.distributed_type.name == "FSDP":
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            return FSDP.summon_full_params(self.model, writeback=False)
        return contextlib.nullcontext()

    def checkpoint(self, step: int) -> None:
        """Save a resumable checkpoint every ``checkpoint_interval`` steps (0: never)."""
        every = self.cfg.checkpoint_interval
        if every and (step + 1) % every == 0:
            if self.par is not None:  # each process's sampling RNG; the rest once, by rank 0
                self.rng_file.parent.mkdir(parents=True, exist_ok=True)
                torch.save(torch.get_rng_state(), self.rng_file)
            if self.rank == 0:
                _save_checkpoint(self.ckpt, self.policy, self.opt, self.prompt_rng, self.rows,
                                 self.samples, step + 1)  # fmt: skip
            if self.par is not None:
                self.par.acc.wait_for_everyone()


def _row(step: int, r, gold, batch: dict, terms: dict, loss) -> dict:
    """The history row of the samples drawn at ``step`` (before the step's update)."""
    return {
        "step": step, "gold": gold.mean().item(), "proxy": r.mean().item(),
        "kl_k1": terms["kl_k1"], "kl_k3": terms["kl_k3"],
        "entropy_token": terms["entropy_token"], "entropy_seq": terms["entropy_seq"],
        "length": batch["length"].mean().item(), "eos_rate": batch["eos"].float().mean().item(),
        "win_rate": math.nan, "reward_shaped": terms["reward_shaped"], "loss": loss.item(),
        "grad_norm": math.nan,
    }  # fmt: skip


def _win_rate(testbed, policy, cfg: OnlineConfig, step: int, max_new: int) -> float:
    """Win rate against the references on the eval prompts, drawn with their own seeded RNG."""
    prompts = testbed.eval_prompts[: cfg.n_eval_prompts]
    texts = testbed.sample(policy, prompts, seed=cfg.seed + 10_000 + step, max_new_tokens=max_new)
    return testbed.win_rate(prompts, texts)


def _history(rows: list[dict]) -> pd.DataFrame:
    extra = ["reward_shaped", "loss", "grad_norm"]
    if rows and "alpha_tok" in rows[0]:  # the adaptive entropy coefficient, when it adapts
        extra.append("alpha_tok")
    return pd.DataFrame(rows, columns=[*COLUMNS, *extra])


def _save_checkpoint(path: Path, policy, opt, prompt_rng, rows, samples, step) -> None:
    """Everything ``resume=True`` needs to continue bit-for-bit (CUDA RNGs too when the policy
    is on a GPU), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    on_cuda = next(policy.parameters()).is_cuda
    state = {
        "policy": _trained_state(policy),
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if on_cuda else None,
        "prompt_rng": prompt_rng.getstate(),
        "rows": list(rows),
        "samples": dict(samples),
        "step": step,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load_checkpoint(path: Path, policy, opt, prompt_rng) -> tuple[list, dict, int]:
    """Restore a :func:`_save_checkpoint` state into ``policy``, ``opt``, the RNGs; returns
    ``(rows, samples, next step)``, or a fresh start when there is no checkpoint."""
    if not path.exists():
        return [], {}, 0
    state = torch.load(path, weights_only=False)
    if hasattr(policy, "get_base_model"):  # a LoRA policy: its adapters
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(policy, state["policy"])
    else:
        policy.load_state_dict(state["policy"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    prompt_rng.setstate(state["prompt_rng"])
    return state["rows"], state["samples"], state["step"]


def _trained_state(policy) -> dict:
    """What a checkpoint keeps of the policy: every weight, or a LoRA policy's adapters only
    (the frozen base is reloaded from its source)."""
    if hasattr(policy, "get_base_model"):
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(policy)
    return policy.state_dict()
