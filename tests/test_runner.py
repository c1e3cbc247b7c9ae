"""The command-line runner (``python -m rlhf_nb.run``) on the tiny local stand-ins: options
checked before any model loads, resume equal to an uninterrupted run, and two processes under
``accelerate launch`` that stay in sync and log both processes' samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rlhf_nb import run as runner
from rlhf_nb.testbed import real

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--preset", "standin", "--batch-size", "4", "--k", "2", "--checkpoint-interval", "2",
         "--eval-interval", "2", "--n-eval-prompts", "8", "--no-progress",
         "--device", "cpu"]  # fmt: skip


def _history(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "history.csv").drop(columns=["seconds"])


def test_help_names_every_method_and_preset():
    out = subprocess.run([sys.executable, "-m", "rlhf_nb.run", "--help"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    for word in (*runner.METHODS, "pythia-1b-tldr", "standin", "--resume", "--alpha", "--beta"):
        assert word in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--preset", "pythia-9b-tldr", "--method", "kl"], "--preset: invalid choice"),
        (["--preset", "standin", "--method", "ppo"], "--method: invalid choice"),
        (["--preset", "standin", "--method", "kl", "--beta", "-1"], "beta must be in [0.0, inf)"),
        (["--preset", "standin", "--method", "maxent", "--steps", "0"], "steps must be"),
        (["--preset", "standin", "--method", "kl"], "--out is required"),
        (["--preset", "tiny", "--method", "kl", "--policy", "x"], "TL;DR presets only"),
    ],
)
def test_bad_options_fail_before_any_model_loads(argv, needle, monkeypatch, capsys, tmp_path):
    def no_load(*a, **k):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(real, "load", no_load)
    if "--out" not in argv and "--out is required" not in needle:
        argv = [*argv, "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exc:
        runner.main(argv)
    message = str(exc.value.code) + capsys.readouterr().err
    assert needle in message, message


def test_config_file_and_flags(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('preset = "standin"\nmethod = "maxent"\nalpha = 0.2\nsteps = 7\n')
    args = runner.parse(["--config", str(cfg), "--steps", "3", "--out", str(tmp_path / "o")])
    assert (args.alpha, args.steps, args.method) == (0.2, 3, "maxent")  # the flag wins
    cfg.write_text('preset = "standin"\nalfa = 0.2\n')
    with pytest.raises(SystemExit):
        runner.parse(["--config", str(cfg), "--out", str(tmp_path / "o")])


class _StopAt:
    def __init__(self, step):
        self.step = step

    def __call__(self, history):
        if int(history["step"].max()) >= self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("method", ["maxent", "dpo"])
def test_resume_gives_the_uninterrupted_history(method, tmp_path):
    argv = [*SMALL, "--method", method, "--steps", "6", "--lr", "1e-3"]
    assert runner.main([*argv, "--out", str(tmp_path / "a")]) == 0
    b = tmp_path / "b"
    assert runner.main([*argv, "--out", str(b)], on_step=_StopAt(4)) == 130
    partial = _history(b / "run")
    assert partial["step"].max() < 6
    with pytest.raises(SystemExit, match="already holds a run"):
        runner.main([*argv, "--out", str(b)])
    with pytest.raises(SystemExit, match="other options"):
        runner.main([*argv, "--out", str(b), "--resume", "--seed", "1"])
    assert runner.main([*argv, "--out", str(b), "--resume"]) == 0
    full, resumed = _history(tmp_path / "a"), _history(b)
    pd.testing.assert_frame_equal(full, resumed, check_exact=False, rtol=1e-6, atol=1e-7)
    assert len(full) == (7 if method == "maxent" else 4)  # online: every step; offline: evals


def test_two_processes_stay_in_sync_and_log_both(tmp_path):
    """``accelerate launch`` with the shipped 2-process CPU config (gloo). accelerate 1.15's
    ``--cpu`` flag starts a single process, so the config asks for the multi-process launcher
    and the runner's ``--device cpu`` keeps it on the CPU."""
    out = tmp_path / "ddp"
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
           str(ROOT / "accelerate" / "cpu_2proc.yaml"), "-m", "rlhf_nb.run", *SMALL,
           "--method", "kl", "--beta", "0.1", "--lr", "1e-3", "--steps", "3",
           "--out", str(out)]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / "processes" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["processes"] for r in ranks] == [2, 2]
    assert ranks[0]["parameters_sha256"] == ranks[1]["parameters_sha256"]  # in sync
    hist = pd.read_csv(out / "history.csv")
    for step, row in hist.set_index("step").iterrows():
        local = [r["local_rows"][int(step)] for r in ranks]
        assert local[0]["gold"] != local[1]["gold"]  # each process drew its own samples
        for col in ("gold", "proxy", "kl_k1", "length"):
            assert row[col] == pytest.approx((local[0][col] + local[1][col]) / 2, abs=1e-6)
    assert ranks[0]["local_rows"][0]["step"] == 0 and len(hist) == 4


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    """--resume on a run that already ended trains nothing (TRL would take one step more from
    its final checkpoint); the offline loop also returns a final checkpoint's history as is."""
    from rlhf_nb.testbed import real, standin
    from rlhf_nb.methods import offline

    argv = [*SMALL, "--method", "dpo", "--steps", "4", "--out", str(tmp_path / "d")]
    assert runner.main(argv) == 0
    before = (tmp_path / "d" / "history.csv").read_text()
    assert runner.main([*argv, "--resume"]) == 0
    assert (tmp_path / "d" / "history.csv").read_text() == before
    tb = real.load(standin.preset(), device="cpu")
    cfg = offline.OfflineConfig(method="dpo", steps=4, batch_size=4, eval_interval=2,
                                n_eval_prompts=8, n_heldout_pairs=8)  # fmt: skip
    run = offline.train(tb, cfg, output_dir=tmp_path / "d" / "checkpoint", resume=True)
    assert run.status == "finished" and run.history["step"].tolist() == [0, 2, 4]
