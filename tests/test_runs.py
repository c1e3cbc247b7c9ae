"""The shared Run format: cache round-trip, bad status refused, broken cache retrained."""

from __future__ import annotations

import functools
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from rlhf_nb.runs import cache as runs
from rlhf_nb.runs.cache import cached_run, config_key, load_run, save_run
from rlhf_nb.runs.record import COLUMNS, Run


@dataclass
class Cfg:
    lr: float = 1e-3
    alpha: float = 0.0

    def label(self):
        return f"lr={self.lr:g} α={self.alpha:g}"


def make_run(cfg=None, status="finished"):
    hist = pd.DataFrame({c: np.arange(3, dtype=float) for c in COLUMNS})
    hist.loc[1, "win_rate"] = np.nan
    return Run(cfg or Cfg(), hist, status=status, message="ok", samples={0: ["a b"], 2: ["c"]})


def test_round_trip(tmp_path):
    run = make_run()
    back = load_run(save_run(run, tmp_path / "r"), Cfg)
    pd.testing.assert_frame_equal(back.history, run.history)
    assert (back.config, back.status, back.message, back.samples) == (
        run.config, run.status, run.message, run.samples,
    )  # fmt: skip
    assert back.label == "lr=0.001 α=0" and back.final("win_rate", window=1) == 2.0


def test_bad_status_is_refused():
    with pytest.raises(ValueError, match="status must be one of"):
        make_run(status="done")


def test_config_key_is_stable_and_sensitive():
    assert config_key(Cfg()) == config_key(Cfg())
    assert config_key(Cfg()) != config_key(Cfg(alpha=0.1))
    assert config_key(Cfg()) != config_key(Cfg(), "testbed-b")


def test_cached_run_trains_once_and_survives_corruption(tmp_path):
    calls = []

    def train():
        calls.append(1)
        return make_run()

    a = cached_run("test", "k", train, config_cls=Cfg, cache_dir=tmp_path)
    b = cached_run("test", "k", train, config_cls=Cfg, cache_dir=tmp_path)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(a.history, b.history)
    (tmp_path / "runs" / "test" / "k" / "run.json").write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable"):
        cached_run("test", "k", train, config_cls=Cfg, cache_dir=tmp_path)
    assert len(calls) == 2


def _train_slowly(counter: str) -> Run:
    with open(counter, "a") as f:  # one "x" per training, whichever process does it
        f.write("x")
    time.sleep(1.0)
    return make_run()


def _ask_for_shared_run(cache: str, counter: str, out: str) -> None:
    run = cached_run("test", "shared", functools.partial(_train_slowly, counter),
                     config_cls=Cfg, cache_dir=cache)  # fmt: skip
    Path(out).write_text(f"{run.status} {runs.last_use(Path(cache) / 'runs' / 'test' / 'shared')}")


def test_two_processes_asking_for_one_run_train_it_once(tmp_path):
    """Chapters executed side by side share runs: the entry's lock makes the second process wait
    for the first one's training and load it, instead of training it again."""
    counter, ctx = tmp_path / "calls", mp.get_context("spawn")
    procs = [ctx.Process(target=_ask_for_shared_run,
                         args=(str(tmp_path / "cache"), str(counter), str(tmp_path / f"out{i}")))
             for i in range(2)]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert counter.read_text() == "x", "the run was trained more than once"
    outs = sorted((tmp_path / f"out{i}").read_text() for i in range(2))
    assert outs == ["finished loaded", "finished trained"], outs  # the pool says which, per run
    assert (tmp_path / "cache" / "locks" / "runs-test-shared.lock").exists()


def test_interrupted_runs_are_not_cached(tmp_path):
    cached_run("test", "i", lambda: make_run(status="interrupted"), cache_dir=tmp_path)
    assert not (tmp_path / "runs" / "test" / "i").exists()


def test_cached_training_lives_at_run_path(tmp_path):
    """``runs/<kind>/<config_key(config, testbed folder)>``: the location the book's caches use."""
    tb = SimpleNamespace(path=Path("somewhere/tb-a"))
    path = runs.run_path("test", tb, Cfg(), tmp_path)
    assert path == tmp_path / "runs" / "test" / config_key(Cfg(), "tb-a")
    assert runs.run_path("test", tb, Cfg(), tmp_path, area="checkpoints").parts[-3:] == (
        "checkpoints", "test", path.name,
    )  # fmt: skip
    run = runs.cached_training("test", tb, Cfg(), make_run, cache_dir=tmp_path)
    assert path.exists() and run.config == Cfg()

    def retrain():
        pytest.fail("a cached run was retrained")

    again = runs.cached_training("test", tb, Cfg(), retrain, cache_dir=tmp_path)
    assert again.config == Cfg() and again.samples == run.samples


def test_value_at_and_slope_read_the_history():
    import pandas as pd

    from rlhf_nb.runs.record import Run

    h = pd.DataFrame({"step": [0, 1, 2, 3, 4], "kl_k1": [0.0, float("nan"), 2.0, 3.0, 4.0]})
    run = Run(config=None, history=h, status="finished")
    assert run.value_at("kl_k1", 1) == 0.0 and run.value_at("kl_k1", 3) == 3.0
    assert run.slope("kl_k1", frac=0.5) == pytest.approx(100.0)  # steps 2-4: +1 per step


def test_cache_lookups_are_logged_when_asked(tmp_path, monkeypatch):
    log = tmp_path / "runs.tsv"
    monkeypatch.setenv("RLHF_NB_CACHE_LOG", str(log))
    for _ in range(2):
        cached_run("test", "k", make_run, config_cls=Cfg, cache_dir=tmp_path)
    path = tmp_path / "runs" / "test" / "k"
    assert log.read_text().splitlines() == [f"{path}\ttrained", f"{path}\tloaded"]
    monkeypatch.delenv("RLHF_NB_CACHE_LOG")
    cached_run("test", "k", make_run, config_cls=Cfg, cache_dir=tmp_path)
    assert len(log.read_text().splitlines()) == 2  # unset: nothing written
    monkeypatch.setenv("RLHF_NB_CACHE_LOG", str(tmp_path / "no" / "such" / "dir.tsv"))
    with pytest.warns(UserWarning, match="not writable"):  # never stops the run
        run = cached_run("test", "k", make_run, config_cls=Cfg, cache_dir=tmp_path)
    assert run.status == "finished"


def test_rekey_moves_a_version_3_cache_to_version_4(tmp_path):
    """A run cached under version 3's key (labeller None, "only when set" fields left out) is
    found and moved to its version-4 key, with its labeller named; a second pass moves nothing."""
    import dataclasses
    import json

    from rlhf_nb.methods.offline import OfflineConfig
    from rlhf_nb.methods.online_config import OnlineConfig
    from rlhf_nb.runs import cache

    (tmp_path / "testbed" / "tb-abc").mkdir(parents=True)
    old = {}
    for cfg in (
        OfflineConfig(method="simpo", steps=7),
        OnlineConfig(regularizer="kl", beta=0.1, steps=5, ref_mix=0.5),
    ):
        fields = dataclasses.asdict(cfg)
        if "labeller" in fields:
            fields["labeller"] = None  # how version 3 stored the default labeller
        name = type(cfg).__name__
        key = cache._v3_key(name, fields, "tb-abc")
        entry = tmp_path / "runs" / "x" / key
        entry.mkdir(parents=True)
        (entry / "run.json").write_text(json.dumps({"config_type": name, "config": fields,
                                                    "status": "finished", "message": "",
                                                    "samples": {}}))  # fmt: skip
        (entry / "history.csv").write_text("step,gold\n0,1.0\n")
        old[name] = (cfg, key)
    assert cache.rekey(tmp_path, verbose=False) == {"moved": 2, "current": 0, "unknown": 0}
    for cfg, key in old.values():
        new = tmp_path / "runs" / "x" / cache.config_key(cfg, "tb-abc")
        assert new.exists() and not (tmp_path / "runs" / "x" / key).exists()
        back = cache.load_run(new, type(cfg))
        assert back.config == cfg
    assert cache.rekey(tmp_path, verbose=False) == {"moved": 0, "current": 2, "unknown": 0}


def test_rekey_moves_runs_cached_before_a_field_was_added(tmp_path):
    """OnlineConfig gained ``reward`` (default "proxy", what every earlier run optimised): a run
    stored without the field, under the key its config had then, moves to its current key; a
    run that optimised the gold reward is a new config, never confused with it."""
    import dataclasses
    import json

    from rlhf_nb.methods.online_config import OnlineConfig
    from rlhf_nb.runs import cache

    (tmp_path / "testbed" / "tb-abc").mkdir(parents=True)
    cfg = OnlineConfig(regularizer="entropy", alpha=0.05, steps=5)
    fields = dataclasses.asdict(cfg)
    del fields["reward"]  # as stored before the field existed
    old_key = cache._stored_key("OnlineConfig", fields, "tb-abc")
    entry = tmp_path / "runs" / "online" / old_key
    entry.mkdir(parents=True)
    (entry / "run.json").write_text(json.dumps({"config_type": "OnlineConfig", "config": fields,
                                                "status": "finished", "message": "",
                                                "samples": {}}))  # fmt: skip
    (entry / "history.csv").write_text("step,gold\n0,1.0\n")
    assert old_key != cache.config_key(cfg, "tb-abc")
    assert cache.rekey(tmp_path, verbose=False) == {"moved": 1, "current": 0, "unknown": 0}
    new = tmp_path / "runs" / "online" / cache.config_key(cfg, "tb-abc")
    assert new.exists() and cache.load_run(new, OnlineConfig).config == cfg
    gold = dataclasses.replace(cfg, reward="gold")
    assert cache.config_key(gold, "tb-abc") not in (old_key, new.name)
    assert cache.rekey(tmp_path, verbose=False) == {"moved": 0, "current": 1, "unknown": 0}


def test_the_book_relays_trained_and_loaded_progress_lines():
    """``make book`` echoes each chapter's progress: a run trained there, and one it loaded after
    a chapter beside it trained it under the lock, both count as done."""
    from rlhf_nb._site.build import _is_progress

    assert _is_progress("  [3/9] trained online alpha=0.05 seed 1 in 120 s (400 s elapsed)")
    assert _is_progress("  [4/9] loaded (another process trained it) after online seed 1 in 9 s")
    assert _is_progress("7 runs trained in 900 s, 2 at a time; 2 more loaded after another ...")
    assert not _is_progress("the run was loaded from the cache")
