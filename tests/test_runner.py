"""The command-line runner (``python -m rlhf_nb.run``) on the tiny local stand-ins: options
generated from the config dataclasses (``rlhf_nb.cli``: their defaults, their docs as help,
their checks), checked before any model loads, resume equal to an uninterrupted run, and two
processes under ``accelerate launch`` that stay in sync and log both processes' samples."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rlhf_nb import cli
from rlhf_nb import run as runner
from rlhf_nb.methods.offline import OfflineConfig
from rlhf_nb.methods.online_config import OnlineConfig
from rlhf_nb.runs.cache import RUNS_CODE_VERSION, config_key
from rlhf_nb.testbed import real

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--preset", "standin", "--checkpoint-interval", "2", "--eval-interval", "2",
         "--n-eval-prompts", "8", "--no-progress", "--device", "cpu"]  # fmt: skip
BATCH = {"online": ["--prompts-per-step", "4", "--k", "2"], "offline": ["--batch-size", "4"]}
# config_key of the default configs (testbed key "tb") at RUNS_CODE_VERSION 3: the keys of the
# book's cached runs. A deliberate bump of RUNS_CODE_VERSION re-pins them here.
PINNED_KEYS = {
    3: {"OnlineConfig": "7b7cf67b0c90fffe", "OfflineConfig": "aa89b6b0c1c25d60"},
    # OnlineConfig gained ``reward`` (default "proxy"): a new key, and rekey moves old entries
    4: {"OnlineConfig": "5a6839293ac0d9b4", "OfflineConfig": "4d2acc7406a7f8e1"},
}


def _history(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "history.csv").drop(columns=["seconds"])


def _help_entries(text: str) -> dict[str, dict[str, str]]:
    """``--help`` as ``{section title: {first option string: its help, whitespace joined}}``."""
    sections, entry = {}, None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            section = sections.setdefault(line[:-1], {})
        elif line.startswith("  --") and sections:
            entry = line.split()[0]
            section[entry] = line
        elif line.startswith("   ") and entry is not None:
            section[entry] += " " + line
    return {t: {k: " ".join(v.split()) for k, v in e.items()} for t, e in sections.items()}


def test_help_shows_every_config_field_with_its_default_and_doc():
    out = subprocess.run([sys.executable, "-m", "rlhf_nb.run", "--help"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    for word in (*cli.METHODS, "pythia-1b-tldr", "standin", "--resume", "--alpha", "--beta"):
        assert word in out
    sections = _help_entries(out)
    for cls in (OnlineConfig, OfflineConfig, cli.RunnerArgs):
        title = next(t for t in sections if t.startswith(cls.__name__) or (
            cls is cli.RunnerArgs and t == "runner options"))  # fmt: skip
        for f in dataclasses.fields(cls):
            if cls is not cli.RunnerArgs and f.name in cli.RUNNER_FIELDS:
                assert f"--{f.name}" not in sections[title]  # the runner's option sets it
                continue
            entry = sections[title][f"--{f.name}"]
            assert f"(default: {f.default})" in entry, (cls.__name__, f.name, entry)
            first_words = " ".join(f.metadata["help"].split()[:4])
            assert first_words in entry, (cls.__name__, f.name, entry)  # the field's own doc


def test_the_cli_config_is_the_dataclass_defaults():
    """No option given: the config is the dataclass's defaults, but for the fields the runner
    sets (``device`` resolved, ``checkpoint_interval``, offline ``method``)."""
    base = ["--preset", "tiny", "--out", "o"]
    cfg = cli.make_config(*cli.parse([*base, "--method", "rloo"]), "cpu")
    assert cfg == OnlineConfig(regularizer="none", checkpoint_interval=10, device="cpu")
    cfg = cli.make_config(*cli.parse([*base, "--method", "maxent", "--alpha", "0.1"]), "cpu")
    assert cfg == OnlineConfig(regularizer="entropy", alpha=0.1, checkpoint_interval=10)
    for method in ("dpo", "simpo"):
        cfg = cli.make_config(*cli.parse([*base, "--method", method]), "cuda:1")
        assert cfg == OfflineConfig(method=method, device="cuda")
    args, _ = cli.parse(base + ["--method", "kl"])
    assert (args.device, args.checkpoint_interval) == ("auto", 10)


def test_field_docs_do_not_change_cache_keys():
    """The help is field metadata, which ``config_key`` never hashes: the default configs keep
    the keys they had before the configs were documented for the parser."""
    for cls in (OnlineConfig, OfflineConfig):
        assert config_key(cls(), "tb") == PINNED_KEYS[RUNS_CODE_VERSION][cls.__name__]
        assert all("help" in f.metadata for f in dataclasses.fields(cls))
        bare = dataclasses.make_dataclass(cls.__name__, [  # the same fields, no help
            (f.name, f.type, dataclasses.field(default=f.default, metadata={
                k: v for k, v in f.metadata.items() if k != "help"}))
            for f in dataclasses.fields(cls)
        ])  # fmt: skip
        assert config_key(cls(), "tb") == config_key(bare(**dataclasses.asdict(cls())), "tb")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--preset", "pythia-9b-tldr", "--method", "kl"], "--preset: invalid choice"),
        (["--preset", "standin", "--method", "ppo"], "--method: invalid choice"),
        (["--preset", "standin", "--method", "kl", "--beta", "-1"],
         "--beta: beta must be in [0.0, inf)"),
        (["--preset", "standin", "--method", "maxent", "--alpha", "0.1", "--steps", "0"],
         "--steps: steps must be in [1, inf)"),
        (["--preset", "standin", "--method", "rloo", "--k", "1"], "--k: k must be in [2, inf)"),
        (["--preset", "standin", "--method", "dpo", "--lr", "2"], "--lr: lr must be in"),
        (["--preset", "standin", "--method", "rloo", "--steps", "2.5"],
         "argument --steps: invalid int value: '2.5'"),
        (["--preset", "standin", "--method", "rloo", "--regularizer", "magic"],
         "--regularizer: regularizer must be one of"),
        (["--preset", "standin", "--method", "rloo", "--alfa", "1"], "unrecognized arguments"),
        (["--preset", "standin", "--method", "maxent"], "--method maxent needs --alpha > 0"),
        (["--preset", "standin", "--method", "kl"], "--method kl needs --beta > 0"),
        (["--preset", "standin", "--method", "kl"], None),  # --out missing: named below
        (["--preset", "tiny", "--method", "kl", "--policy", "x"], "TL;DR presets only"),
    ],
)  # fmt: skip
def test_bad_options_fail_naming_the_option_before_any_model_loads(
    argv, needle, monkeypatch, capsys, tmp_path
):
    def no_load(*a, **k):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(real, "load", no_load)
    if needle is None:
        needle = "--out is required"
    elif "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exc:
        runner.main(argv)
    message = str(exc.value.code) + capsys.readouterr().err
    assert needle in message, message


def test_config_file_and_flags(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('preset = "standin"\nmethod = "maxent"\nalpha = 0.2\nsteps = 7\n'
                   'prompts-per-step = 5\nno_progress = true\n')  # fmt: skip
    args, options = cli.parse(["--config", str(cfg), "--steps", "3", "--out", str(tmp_path)])
    assert (options.alpha, options.steps, options.prompts_per_step) == (0.2, 3, 5)  # flag wins
    assert (args.method, args.preset, args.no_progress) == ("maxent", "standin", True)
    cfg.write_text('preset = "standin"\nalfa = 0.2\n')
    with pytest.raises(SystemExit):
        cli.parse(["--config", str(cfg), "--out", str(tmp_path / "o")])


class _StopAt:
    def __init__(self, step):
        self.step = step

    def __call__(self, history):
        if int(history["step"].max()) >= self.step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("method", ["maxent", "dpo"])
def test_resume_gives_the_uninterrupted_history(method, tmp_path):
    given = ["--alpha", "0.05", *BATCH["online"]] if method == "maxent" else BATCH["offline"]
    argv = [*SMALL, *given, "--method", method, "--steps", "6", "--lr", "1e-3"]
    assert runner.main([*argv, "--out", str(tmp_path / "a")]) == 0
    saved = json.loads((tmp_path / "a" / "run" / "run.json").read_text())["config"]
    want = (OnlineConfig(regularizer="entropy", alpha=0.05, prompts_per_step=4)
            if method == "maxent" else OfflineConfig(method="dpo", batch_size=4))  # fmt: skip
    online = dict(k=2, checkpoint_interval=2) if method == "maxent" else {}
    want = dataclasses.replace(want, eval_interval=2, n_eval_prompts=8, steps=6, lr=1e-3, **online)
    assert saved == json.loads(json.dumps(dataclasses.asdict(want)))  # the flags, else defaults
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
           *BATCH["online"], "--method", "kl", "--beta", "0.1", "--lr", "1e-3", "--steps", "3",
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
    from rlhf_nb.methods import offline
    from rlhf_nb.testbed import real, standin

    argv = [*SMALL, *BATCH["offline"], "--method", "dpo", "--steps", "4",
            "--out", str(tmp_path / "d")]  # fmt: skip
    assert runner.main(argv) == 0
    before = (tmp_path / "d" / "history.csv").read_text()
    assert runner.main([*argv, "--resume"]) == 0
    assert (tmp_path / "d" / "history.csv").read_text() == before
    tb = real.load(standin.preset(), device="cpu")
    cfg = offline.OfflineConfig(method="dpo", steps=4, batch_size=4, eval_interval=2,
                                n_eval_prompts=8, n_heldout_pairs=8)  # fmt: skip
    run = offline.train(tb, cfg, output_dir=tmp_path / "d" / "checkpoint", resume=True)
    assert run.status == "finished" and run.history["step"].tolist() == [0, 2, 4]
