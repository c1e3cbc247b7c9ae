"""The command-line runner: one RLHF run on a preset, written to a folder, resumable, and
data-parallel under ``accelerate launch`` (chapter 08).

    python -m rlhf_nb.run --preset pythia-1b-tldr --method maxent --alpha 0.01 --out runs/a
    python -m rlhf_nb.run --preset standin --method kl --beta 0.05 --steps 20 --out /tmp/k
    python -m rlhf_nb.run ... --out runs/a --resume          # after an interrupt
    accelerate launch --config_file accelerate/ddp.yaml -m rlhf_nb.run --preset ... --out ...

It goes through the same code as the book's toy runs: the preset becomes a testbed
(:func:`rlhf_nb.testbed.real.load`, or :func:`rlhf_nb.testbed.build` for the toy presets), the
method a config (:class:`~rlhf_nb.methods.online.OnlineConfig` for ``maxent``/``kl``/``rloo``,
:class:`~rlhf_nb.methods.offline.OfflineConfig` for ``dpo``/``simpo``), trained by the run
contract's method. Every option is checked, and the config and preset built, before any model
loads: a bad option fails at once, naming it.

The output folder holds ``options.json`` (what was asked; ``--resume`` refuses other options),
``history.csv`` and ``run.json`` (the book's run format, :func:`rlhf_nb.runs.cache.save_run`,
rewritten after every logged step, so an interrupted run keeps its history), ``checkpoint/``
(resumable state every ``--checkpoint-interval`` steps), ``run/`` (the same, with the final
policy in ``run/policy`` under ``--save-policy``)
and, for a data-parallel run, ``processes/rank<r>.json`` (each process's own step means and a
checksum of its parameters: the processes must agree).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tomllib
from pathlib import Path

ONLINE = {"maxent": "entropy", "kl": "kl", "rloo": "none"}  # method -> OnlineConfig regularizer
OFFLINE = ("dpo", "simpo")
METHODS = (*ONLINE, *OFFLINE)
TOY = ("tiny", "smoke")  # the book's toy testbed presets
OVERRIDES = ("policy", "proxy_rm", "gold_rm", "prompts", "preferences", "lora_r", "dtype")


def presets() -> list[str]:
    """Every preset name the runner accepts: TL;DR presets, ``standin`` and the toy ones."""
    from rlhf_nb.testbed.tldr import TLDR_PRESETS

    return [*TLDR_PRESETS, "standin", *TOY]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m rlhf_nb.run",
        description="One RLHF run (online MaxEnt/KL/RLOO or offline DPO/SimPO) on a preset, "
        "written to --out; resumable; data-parallel under `accelerate launch`.",
        epilog="Options may also come from --config FILE (.json or .toml, keys as the long "
        "option names with '_' for '-'); flags given on the command line win.",
    )
    a = ap.add_argument
    a(
        "--preset",
        choices=presets(),
        help="pythia-*-tldr: real checkpoints (Hub names, see "
        "rlhf_nb.testbed.tldr); standin: tiny random local models; tiny/smoke: the toy testbed",
    )
    a(
        "--method",
        choices=METHODS,
        help="maxent: RLOO + sequence entropy bonus α (no anchor); "
        "kl: RLOO + β·KL to the SFT policy in the reward; rloo: plain RLOO; dpo / simpo: offline "
        "on the preset's preference pairs",
    )
    a("--out", help="output folder (history, checkpoints, samples)")
    a("--config", help="a .json or .toml file of options")
    a("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    a("--alpha", type=float, help="maxent: entropy temperature α >= 0 (default 0.05)")
    a(
        "--entropy",
        choices=("seq", "token"),
        help="maxent: 'seq' = -α·log π(y|x) in the reward "
        "(default), 'token' = -α·mean token entropy in the loss (TRL's entropy_coef)",
    )
    a("--beta", type=float, help="kl: KL coefficient β (default 0.05); dpo/simpo: the papers' β")
    a("--gamma", type=float, help="simpo: target margin γ (default 1.0)")
    a(
        "--lr",
        type=float,
        help="learning rate (default: 3e-4 on the toy presets, 1e-5 with "
        "LoRA, 1e-6 for full fine-tuning of a Pythia preset)",
    )
    a("--steps", type=int, help="optimiser steps (default 100)")
    a(
        "--batch-size",
        type=int,
        help="online: prompts per step per process (default 16); "
        "offline: pairs per step per process (default 16)",
    )
    a("--k", type=int, help="online: samples per prompt, the RLOO group (default 4)")
    a("--seed", type=int, help="seed of prompts, samples and evaluation (default 0)")
    a("--eval-interval", type=int, help="evaluate every this many steps (default 10)")
    a("--n-eval-prompts", type=int, help="evaluation prompts (default: the preset's)")
    a("--checkpoint-interval", type=int, help="checkpoint every this many steps (default 10)")
    a("--device", choices=("auto", "cpu", "cuda"), help="default auto (CUDA when available)")
    a("--save-policy", action="store_true", help="save the final policy in --out/run/policy")
    a("--no-progress", action="store_true", help="hide the progress bar")
    for name in OVERRIDES:
        what = "(a Hub name or a local folder)" if name not in ("lora_r", "dtype") else ""
        a(f"--{name.replace('_', '-')}", type=int if name == "lora_r" else str,
          help=f"TL;DR presets: replace the preset's {name} {what}")  # fmt: skip
    return ap


DEFAULTS = dict(alpha=0.05, entropy="seq", beta=None, gamma=1.0, steps=100, batch_size=16, k=4,
                seed=0, eval_interval=10, checkpoint_interval=10, device="auto")  # fmt: skip


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The options: the config file, then the command line; required ones checked."""
    ap = parser()
    args = ap.parse_args(argv)
    given = {k for k, v in vars(args).items() if v not in (None, False)}
    if args.config:
        path = Path(args.config)
        if not path.exists():
            ap.error(f"--config: no such file {path}")
        raw = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(
            path.read_text())  # fmt: skip
        known = {act.dest for act in ap._actions}
        for key, value in raw.items():
            dest = key.replace("-", "_")
            if dest not in known or dest in ("config", "help"):
                ap.error(f"--config {path}: unknown option {key!r}")
            if dest not in given:
                setattr(args, dest, value)
        # values from a file pass through the same checks as flags
        args = ap.parse_args(_as_argv(ap, args))
    for dest, value in DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    for required in ("preset", "method", "out"):
        if getattr(args, required) is None:
            ap.error(f"--{required} is required (choices: "
                     f"{', '.join(presets() if required == 'preset' else METHODS)})"
                     if required != "out" else "--out is required (the output folder)")  # fmt: skip
    if args.preset in TOY and any(getattr(args, n) is not None for n in OVERRIDES):
        ap.error(f"--preset {args.preset} is the toy testbed; --policy/--proxy-rm/... apply to "
                 "TL;DR presets only")  # fmt: skip
    return args


def _as_argv(ap, args) -> list[str]:
    out = []
    for act in ap._actions:
        value = getattr(args, act.dest, None)
        if act.dest in ("help", "config") or value in (None, False):
            continue
        out += [act.option_strings[0]] if value is True else [act.option_strings[0], str(value)]
    return out


def _lr(args, lora: bool) -> float:
    if args.lr is not None:
        return args.lr
    return 3e-4 if args.preset in TOY else (1e-5 if lora else 1e-6)


def make_config(args, device: str, lora: bool):
    """The run's config dataclass from the options (raises ``ValueError`` naming a field)."""
    from rlhf_nb.methods.offline import OfflineConfig
    from rlhf_nb.methods.online import OnlineConfig

    common = dict(lr=_lr(args, lora), steps=args.steps, seed=args.seed,
                  eval_interval=args.eval_interval, device=device.split(":")[0])  # fmt: skip
    if args.n_eval_prompts is not None:
        common["n_eval_prompts"] = args.n_eval_prompts
    if args.method in ONLINE:
        reg = ONLINE[args.method]
        if reg == "entropy" and args.entropy == "token":
            reg = "entropy_token"
        extra = {"alpha": args.alpha} if args.method == "maxent" else {}
        if args.method == "kl":
            extra["beta"] = 0.05 if args.beta is None else args.beta
        return OnlineConfig(regularizer=reg, prompts_per_step=args.batch_size, k=args.k,
                            checkpoint_interval=args.checkpoint_interval, **extra,
                            **common)  # fmt: skip
    extra = {"gamma": args.gamma} if args.method == "simpo" else {}
    return OfflineConfig(method=args.method, beta=args.beta, batch_size=args.batch_size,
                         warmup_steps=min(10, args.steps), **extra, **common)  # fmt: skip


def make_preset(args):
    """The TL;DR preset of ``args`` (``None`` for the toy presets), overrides applied."""
    from rlhf_nb.testbed import standin
    from rlhf_nb.testbed.tldr import resolve_tldr_preset

    if args.preset in TOY:
        return None
    over = {n: getattr(args, n) for n in OVERRIDES if getattr(args, n) is not None}
    if args.preset == "standin":
        return standin.preset(**over)
    return resolve_tldr_preset(args.preset, **over)


def _check_resume(args, out: Path) -> None:
    saved = out / "options.json"
    mine = _options(args)
    if args.resume and saved.exists():
        theirs = json.loads(saved.read_text())
        diff = {k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)}
        if diff:
            raise SystemExit(f"error: --resume with other options than the run in {out}: "
                             + ", ".join(f"--{k.replace('_', '-')} {theirs.get(k)!r} -> "
                                         f"{mine.get(k)!r}" for k in sorted(diff)))  # fmt: skip
    elif not args.resume and (out / "history.csv").exists():
        raise SystemExit(f"error: {out} already holds a run; pass --resume to continue it or "
                         "choose another --out")  # fmt: skip


def _finished(out: Path) -> str | None:
    """The status of the run saved in ``out`` when it ended (finished or diverged), else None."""
    meta = out / "run" / "run.json"
    if not meta.exists() or not (out / "history.csv").exists():
        return None
    status = json.loads(meta.read_text()).get("status")
    return status if status in ("finished", "diverged") else None


def _options(args) -> dict:
    skip = ("resume", "config", "no_progress", "out")
    return {k: v for k, v in sorted(vars(args).items()) if k not in skip}


def main(argv: list[str] | None = None, *, on_step=None) -> int:
    """Run from command-line options (``argv``; default ``sys.argv``). ``on_step(history)``:
    the run contract's callback (may raise ``KeyboardInterrupt`` to stop). Returns the exit
    code: 0 finished, 1 diverged, 130 interrupted (resumable)."""
    args = parse(argv)
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: torch sees no CUDA device")
    try:  # everything that can be checked before a model loads
        preset = make_preset(args)
        config = make_config(args, device, lora=bool(preset and preset.lora_r))
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"error: {exc}") from None
    out = Path(args.out)
    _check_resume(args, out)
    done = _finished(out) if args.resume else None
    if done is not None:  # nothing left to train: say so, keep the folder as it is
        print(f"{done}: already ended, nothing to resume -> {out}", file=sys.stderr)
        return {"finished": 0, "diverged": 1}[done]

    from accelerate import Accelerator

    acc = Accelerator(cpu=device == "cpu")
    main_process = acc.is_main_process
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "options.json").write_text(json.dumps(_options(args), indent=1))
    if device == "cpu" and acc.num_processes > 1:
        torch.set_num_threads(1)
    testbed = _testbed(args, preset, str(acc.device) if device == "cuda" else "cpu")
    run = _train(testbed, config, args, out, acc, on_step, main_process)
    if acc.num_processes > 1:
        _write_process_report(out, acc, run)
    if main_process:
        _save(run, out, args.save_policy)
        print(f"{run.status}: {run.message} -> {out}", file=sys.stderr)
    return {"finished": 0, "diverged": 1}.get(run.status, 130)


def _testbed(args, preset, device: str):
    from rlhf_nb import testbed as toy
    from rlhf_nb.testbed import real

    if preset is None:
        return toy.build(args.preset, seed=args.seed)
    return real.load(preset, device=device)


def _train(testbed, config, args, out: Path, acc, on_step, main_process):
    from rlhf_nb.methods import offline, online
    from rlhf_nb.runs.cache import save_run

    def write_as_it_goes(history):
        if main_process:  # the history survives an interrupt or a crash
            from rlhf_nb.runs.record import Run

            save_run(Run(config, history, "running"), out / "run")
        if on_step is not None:
            on_step(history)

    progress = not args.no_progress
    if args.method in ONLINE:
        return online.train(testbed, config, on_step=write_as_it_goes, resume=args.resume,
                            checkpoint_dir=out / "checkpoint", progress=progress,
                            accelerator=acc)  # fmt: skip
    if not progress:
        os.environ["TQDM_DISABLE"] = "1"
    return offline.train(testbed, config, on_step=write_as_it_goes,
                         output_dir=out / "checkpoint", save_steps=args.checkpoint_interval,
                         resume=args.resume)  # fmt: skip


def _save(run, out: Path, weights: bool) -> None:
    from rlhf_nb.runs.cache import save_run

    save_run(run, out / "run", weights=weights)
    run.history.to_csv(out / "history.csv", index=False)


def _write_process_report(out: Path, acc, run) -> None:
    """Each process's checksum of its parameters and the step means of its own samples."""
    policy = run.policy
    h = hashlib.sha256()
    for name, p in sorted(policy.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    report = {
        "rank": acc.process_index,
        "processes": acc.num_processes,
        "parameters_sha256": h.hexdigest(),
        "local_rows": getattr(run, "process_rows", []),
    }
    folder = out / "processes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"rank{acc.process_index}.json").write_text(json.dumps(report))
    acc.wait_for_everyone()


if __name__ == "__main__":
    sys.exit(main())
