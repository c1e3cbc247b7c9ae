"""The command-line runner: one RLHF run on a preset, written to a folder, resumable, and
data-parallel under ``accelerate launch`` (chapter 08).

    python -m rlhf_nb.run --preset pythia-1b-tldr --method maxent --alpha 0.01 --lr 1e-5 --out a
    python -m rlhf_nb.run --preset standin --method kl --beta 0.05 --steps 20 --out /tmp/k
    python -m rlhf_nb.run ... --out runs/a --resume          # after an interrupt
    accelerate launch --config_file accelerate/ddp.yaml -m rlhf_nb.run --preset ... --out ...

Its options are the config dataclasses' fields, with their defaults and docs (:mod:`rlhf_nb.cli`,
``--help``). The preset becomes a testbed (:func:`rlhf_nb.testbed.real.load`, or
:func:`rlhf_nb.testbed.build` for the toy presets), trained by the same code as the book's runs:
:func:`rlhf_nb.methods.online_dp.train` (the online loop, resumable and data-parallel) or
:func:`rlhf_nb.methods.offline.train`.

The output folder holds ``options.json`` (what was asked; ``--resume`` refuses other options),
``history.csv`` and ``run.json`` (the book's run format, :func:`rlhf_nb.runs.cache.save_run`,
rewritten after every logged step, so an interrupted run keeps its history), ``checkpoint/``
(resumable state every ``--checkpoint-interval`` steps), ``run/`` (the same, with the final
policy in ``run/policy`` under ``--save-policy``) and, for a data-parallel run,
``processes/rank<r>.json`` (each process's own step means and a checksum of its parameters: the
processes must agree).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

from rlhf_nb.cli import ONLINE, RunnerArgs, make_config, make_preset, name_the_option, parse


def _options(args: RunnerArgs, options) -> dict:
    """What was asked, as ``options.json`` keeps it: the runner's options that shape the run and
    the config's fields, each under its option's name."""
    skip = ("resume", "config", "no_progress", "out")
    mine = {k: v for k, v in dataclasses.asdict(args).items() if k not in skip}
    return dict(sorted((mine | dataclasses.asdict(options)).items()))


def _check_resume(args: RunnerArgs, options, out: Path) -> None:
    saved = out / "options.json"
    mine = _options(args, options)
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


def main(argv: list[str] | None = None, *, on_step=None) -> int:
    """Run from command-line options (``argv``; default ``sys.argv``). ``on_step(history)``:
    the run contract's callback (may raise ``KeyboardInterrupt`` to stop). Returns the exit
    code: 0 finished, 1 diverged, 130 interrupted (resumable)."""
    args, options = parse(argv)
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: torch sees no CUDA device")
    try:  # everything that can be checked before a model loads
        preset = make_preset(args)
        config = make_config(args, options, device)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"error: {name_the_option(exc, args.method)}") from None
    out = Path(args.out)
    _check_resume(args, options, out)
    done = _finished(out) if args.resume else None
    if done is not None:  # nothing left to train: say so, keep the folder as it is
        print(f"{done}: already ended, nothing to resume -> {out}", file=sys.stderr)
        return {"finished": 0, "diverged": 1}[done]

    from accelerate import Accelerator

    acc = Accelerator(cpu=device == "cpu")
    main_process = acc.is_main_process
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "options.json").write_text(json.dumps(_options(args, options), indent=1))
    if device == "cpu" and acc.num_processes > 1:
        torch.set_num_threads(1)
    testbed = _testbed(args, preset, str(acc.device) if device == "cuda" else "cpu", config.seed)
    run = _train(testbed, config, args, out, acc, on_step, main_process)
    if acc.num_processes > 1:
        _write_process_report(out, acc, run)
    if main_process:
        _save(run, out, args.save_policy)
        print(f"{run.status}: {run.message} -> {out}", file=sys.stderr)
    return {"finished": 0, "diverged": 1}.get(run.status, 130)


def _testbed(args: RunnerArgs, preset, device: str, seed: int):
    from rlhf_nb import testbed as toy
    from rlhf_nb.testbed import real

    if preset is None:  # the toy testbed of the run's seed
        return toy.build(args.preset, seed=seed)
    return real.load(preset, device=device)


def _train(testbed, config, args: RunnerArgs, out: Path, acc, on_step, main_process):
    from rlhf_nb.methods import offline, online_dp
    from rlhf_nb.runs.cache import save_run

    def write_as_it_goes(history):
        if main_process:  # the history survives an interrupt or a crash
            from rlhf_nb.runs.record import Run

            save_run(Run(config, history, "running"), out / "run")
        if on_step is not None:
            on_step(history)

    progress = not args.no_progress
    if args.method in ONLINE:
        return online_dp.train(testbed, config, on_step=write_as_it_goes, resume=args.resume,
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
