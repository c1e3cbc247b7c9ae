"""One source of truth: each notebook's parameters cell *is* its chapter module's ``Params``; later
chapters read earlier chapters' runs from those chapters' modules; and the same runs give the
same start / peak / final in every table that shows them (chapters 05, 06, 07, 09, the claims)."""

from __future__ import annotations

import ast
import dataclasses

import jupytext
import numpy as np
import pandas as pd
import pytest
from papermill.translators import PythonTranslator

from rlhf_nb import stats, testbed
from rlhf_nb.chapters import ch04, ch05, ch06, ch07, ch09, claims
from rlhf_nb.runs import Run, SeedRuns

CHAPTERS = {"04_testbed": ch04, "05_online_maxent_vs_kl": ch05, "06_offline_simpo_vs_dpo": ch06,
            "07_overoptimization": ch07, "09_the_answer": ch09}  # fmt: skip


def _parameters_cell(root, stem: str):
    nb = jupytext.read(root / "notebooks" / f"{stem}.py")
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return cell


def _cell_values(source: str) -> dict:
    """``NAME = literal`` assignments of a parameters cell (tuple targets unpacked)."""
    out = {}
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign), ast.dump(node)
        (target,) = node.targets
        value = ast.literal_eval(node.value)
        if isinstance(target, ast.Tuple):
            out.update({t.id: v for t, v in zip(target.elts, value)})
        else:
            out[target.id] = value
    return out


def _norm(v):
    return tuple(v) if isinstance(v, list) else v


@pytest.mark.parametrize("stem", list(CHAPTERS))
def test_parameters_cell_equals_the_chapter_defaults(root, stem):
    module = CHAPTERS[stem]
    cell = _parameters_cell(root, stem).source
    values = _cell_values(cell)
    fields = {f.name: f.default for f in dataclasses.fields(module.Params)}
    assert {n.lower() for n in values} == set(fields), (stem, sorted(values), sorted(fields))
    for name, v in values.items():
        assert _norm(v) == fields[name.lower()], (stem, name, v, fields[name.lower()])
    # and the notebook builds its Params from exactly these names
    assert module.Params.from_globals(values) == module.Params()
    # papermill can read every single-name line (a '=' in a comment defeats its parser)
    single = {n for n in values if f"{n}, " not in cell and f", {n} =" not in cell}
    assert single <= {p.name for p in PythonTranslator.inspect(_parameters_cell(root, stem))}


def test_params_name_the_notebook_parameter_in_errors():
    with pytest.raises(ValueError, match="ALPHAS must contain 0.0"):
        ch05.Params(alphas=[0.1, 0.2])
    with pytest.raises(ValueError, match="N_SEEDS"):
        ch06.Params(n_seeds=1)
    with pytest.raises(ValueError, match="BON_N_MAX must be a power of 2"):
        ch07.Params(bon_n_max=48)
    with pytest.raises(ValueError, match="KL_BUDGETS"):
        ch09.Params(kl_budgets=[0.5, -1.0])
    with pytest.raises(ValueError, match="WORKERS"):
        ch05.Params(workers=0)
    assert ch05.Params(alphas=[0.0, 0.05]).alphas == (0.0, 0.05)  # papermill's lists -> tuples


@pytest.fixture(scope="module")
def smoke_tb():
    return testbed.build("smoke")


@pytest.mark.parametrize("smoke", [False, True])
def test_later_chapters_read_the_earlier_chapters_configs(smoke_tb, smoke):
    p05, p06 = ch05.Params(smoke=smoke), ch06.Params(smoke=smoke)
    c05, c06 = ch05.configs(p05), ch06.configs(p06, smoke_tb)
    assert c06["online"] == c05["headline"]["maxent"]  # 06's online MaxEnt run is 05's
    c07 = ch07.configs(ch07.Params(smoke=smoke), smoke_tb)
    assert c07["heads"] == c05["headline"]
    assert c07["sweep"] == c05["grid"]["alpha_hi"]
    assert c07["offline"] == {"DPO": c06["dpo"], "SimPO": c06["simpo"],
                              "online SimPO": c06["osimpo"]}  # fmt: skip
    c09 = ch09.configs(ch09.Params(smoke=smoke), smoke_tb)
    assert c09["heads"] == c05["headline"]
    assert c09["cells"][("SimPO", "offline", "gold")] == c06["simpo"]
    assert c09["cells"][("DPO", "offline", "gold")] == c06["dpo"]
    assert c09["cells"][("SimPO", "online", "proxy")] == c06["osimpo"]
    assert c09["explain"][("summed log-probs", "offline")] == c06["sum"]
    # a change to a chapter-05 parameter reaches chapter 06 (no retyped copy)
    p06b = ch06.Params(smoke=smoke, seed=3)
    assert ch06.configs(p06b)["online"] == ch05.configs(ch05.Params(smoke=smoke, seed=3))[
        "headline"]["maxent"]  # fmt: skip


def _fake_run(seed: int, steps: int = 60, every: int = 1) -> Run:
    """A run with a noisy history (online-like when ``every`` = 1, offline-like otherwise)."""
    from rlhf_nb.methods.online_config import OnlineConfig

    rng = np.random.default_rng(seed)
    step = np.arange(0, steps + 1, every)
    x = step / steps
    h = pd.DataFrame({
        "step": step, "gold": 2 + 3 * x - 6 * x**2 + rng.normal(0, 0.3, step.size),
        "proxy": 1 + 4 * x + rng.normal(0, 0.3, step.size),
        "kl_k1": 40 * x**2 + rng.normal(0, 0.5, step.size),
        "length": 5 + 10 * x, "eos_rate": 1 - x, "entropy_token": 1.8 + x,
        "win_rate": np.where(step % 10 == 0, 0.3 + 0.1 * x, np.nan),
    })  # fmt: skip
    cfg = OnlineConfig(regularizer="entropy", alpha=0.05, steps=steps, seed=seed)
    return Run(config=cfg, history=h, status="finished")


@pytest.mark.parametrize("every", [1, 25])
def test_every_table_gives_the_same_start_peak_and_final(every):
    g = SeedRuns(_fake_run(0).config, [_fake_run(s, 300, every) for s in (0, 1, 2)], (0, 1, 2))
    s = g.summaries()
    # the rule itself, by hand: trailing mean over the last WINDOW steps
    h = g.runs[0].history
    tail = h[h.step > h.step.max() - stats.WINDOW]
    assert s.loc[0, "kl_k1_final"] == pytest.approx(tail.kl_k1.mean(), abs=1e-12)
    assert s.loc[0, "gold_start"] == h.gold.iloc[0]
    # chapter 05's and 09's tables, the seed stats, Run.final and chapter 07's remedy table
    tab05 = stats.summary_table(g.runs)
    tab09 = ch09.cell_table({("SimPO", "online", "proxy"): g.runs})
    rem07 = ch07.remedy_table({"x": g})
    for col, c09 in (("kl_k1_final", "kl_final"), ("gold_final", "gold_final"),
                     ("gold_peak", "gold_peak"), ("gold_start", "gold_start")):  # fmt: skip
        np.testing.assert_array_equal(tab05[col].to_numpy(), s[col].to_numpy())
        np.testing.assert_array_equal(tab09[c09].to_numpy(), s[col].to_numpy())
    assert [r.final("kl_k1") for r in g.runs] == list(s["kl_k1_final"])
    assert g.final("kl_k1").values == tuple(s["kl_k1_final"])
    assert rem07.loc["x", "kl_final"] == pytest.approx(s["kl_k1_final"].mean(), abs=1e-12)
    assert rem07.loc["x", "gold_peak"] == pytest.approx(s["gold_peak"].mean(), abs=1e-12)
    # chapter 06's end values and deltas
    ends = ch06.end_values(g.runs[1])
    assert ends["KL end"] == s.loc[1, "kl_k1_final"] and ends["gold end"] == s.loc[1, "gold_final"]
    np.testing.assert_array_equal(g.deltas()["KL end"].to_numpy(), s["kl_k1_final"].to_numpy())
    # the claims quote the same numbers
    c = claims.kl_unstable(g, g, cap=16)
    assert f"{s['kl_k1_final'].mean():.2f}" in c.evidence
    fall = claims.maxent_overoptimises(g)
    assert f"{s['gold_fall'].mean():.2f}" in fall.evidence


def test_summary_rule_window_is_in_steps_not_rows():
    r = _fake_run(0, 300, 25)  # an evaluation every 25 steps: each row as logged
    sm = stats.smoothed(r.history, "gold")
    np.testing.assert_array_equal(sm.to_numpy(), r.history.gold.to_numpy())
    r1 = _fake_run(0, 300, 1)
    sm1 = stats.smoothed(r1.history, "gold", window=3)
    assert sm1.iloc[-1] == pytest.approx(r1.history.gold.iloc[-3:].mean(), abs=1e-12)
    assert sm1.iloc[0] == r1.history.gold.iloc[0]
    s = stats.summarize(r1.history, "gold", window=3)
    assert s.peak == sm1.max() and s.peak_step == int(sm1.idxmax())
    assert np.isnan(stats.summarize(r1.history, "missing").final)
    with pytest.raises(ValueError, match="window"):
        stats.smoothed(r1.history, "gold", window=0)


def test_peak_reads_only_full_windows():
    """A lucky step-0 batch is the start, never the peak: peaks come from windows that lie
    wholly inside the run (offline runs: every evaluation after step 0)."""
    r = _fake_run(0, 300, 1)
    h = r.history.copy()
    h.loc[0, "gold"] = 100.0
    s = stats.summarize(h, "gold")
    assert s.start == 100.0 and s.peak < 100.0 and s.peak_step >= stats.WINDOW - 1
    off = _fake_run(0, 300, 25).history.copy()
    off.loc[0, "gold"] = 100.0
    so = stats.summarize(off, "gold")
    assert so.peak_step >= 25 and so.peak == off.gold.iloc[1:].max()
    short = stats.summarize(h.iloc[:5], "gold")  # shorter than a window: every row counts
    assert short.peak == 100.0 and short.peak_step == 0


def test_cap_sweep_reuses_the_headline_runs_and_changes_only_the_budget():
    p = ch05.Params()
    c = ch05.configs(p)
    heads, caps = c["headline"], c["caps"]
    own = ch05.budget(p)
    assert own == testbed.PRESETS["tiny"].max_new_tokens == 16 and sorted(caps) == [8, 16, 32]
    for k in ch05.CAP_SETTINGS:
        assert caps[own][k] is heads[k]  # the headline run itself, not a second run of it
        assert caps[own][k].max_new_tokens is None  # so its cache key is the headline run's
        for cap in (8, 32):
            assert dataclasses.replace(caps[cap][k], max_new_tokens=None) == heads[k]
            assert caps[cap][k].max_new_tokens == cap and f"cap {cap}" in caps[cap][k].label()
    assert sorted(ch05.configs(ch05.Params(smoke=True))["caps"]) == [8, 32]
    for bad, msg in (((4, 41), "CAPS must be in [2, 40]"), ((), "CAPS must be a non-empty")):
        with pytest.raises(ValueError, match=msg.replace("[", r"\[")):
            ch05.Params(caps=bad)


def test_scale_ladder_reruns_the_headline_configs_on_other_widths():
    p = ch05.Params()
    heads, lad = ch05.configs(p)["headline"], ch05.ladder_configs(p)
    assert list(lad) == list(ch05.LADDER_SETTINGS) and all(lad[k] == heads[k] for k in lad)
    assert ch05.ladder_presets(p) == ("micro", "mini", "tiny")
    assert ch05.ladder_presets(ch05.Params(smoke=True)) == ch05.SMOKE_SCALES
    widths = [testbed.PRESETS[n].hidden_size for n in p.scales]
    assert widths == [24, 48, 96]  # the tiny recipe at 1/4, 1/2 and 1 times the width
    for n in p.scales:  # nothing but the width (and the name) differs from tiny
        other = dataclasses.replace(testbed.PRESETS[n], name="tiny", hidden_size=96)
        assert other == testbed.PRESETS["tiny"], n
    for bad, msg in ((["tiny"], "at least two distinct"), (["tiny", "tiny"], "at least two"),
                     (["tiny", "huge"], "'huge' is not a preset")):  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            ch05.Params(scales=bad)


def test_ladder_table_and_contrasts_by_the_summary_rule():
    def runs(kl, gold):
        out = []
        for s in (0, 1, 2):
            r = _fake_run(s)
            out.append(Run(r.config, r.history.assign(kl_k1=kl * (1 + s), gold=gold), "finished"))
        return SeedRuns(out[0].config, out, (0, 1, 2))

    lad = {n: {"rloo": runs(5.0, 0.0), "maxent": runs(50.0, -5.0), "kl_strong": runs(2.0, 2.0)}
           for n in ("a", "b")}  # fmt: skip
    t = ch05.ladder_table(lad, {"a": 1000, "b": 4000})
    assert set(t.index) == {(k, n) for k in ("rloo", "maxent", "kl_strong") for n in (1000, 4000)}
    assert np.allclose(t.loc[("maxent", 4000), "kl_k1_final"].values, [50, 100, 150])
    con = ch05.ladder_contrasts(lad)
    assert np.allclose(con["a"]["kl_ratio"].values, 25.0)
    # a flat gold has no fall from its peak, so the MaxEnt "falls > 2" statement fails per seed
    assert len(con["a"]["failed"]) == 3 and all("falls" in f for f in con["a"]["failed"])
    heads = ch05.headline(ch05.grid(ch05.Params()), ch05.MAXENT_ALPHA)
    md, names = ch05.sweep_view(t, heads, x_label=lambda n: f"{n}p")
    lines = md.splitlines()
    assert lines[0].startswith("| setting | final KL (nats) |") and len(lines) == 2 + len(t)
    assert f"| {names['maxent']}, 4000p | 100.00 (50.00 to 150.00) |" in md
    assert names["maxent"] == heads["maxent"].label().split(",")[0]
    assert names["kl_k1_final"] == "final KL (nats)" and names["proxy_gain"] == "proxy gain"


def test_cap_exponents_recover_a_power_law_and_the_table_divides_by_the_cap():
    """final KL ∝ cap^b: exactly b = 1 for a KL proportional to the cap, b = 0 for one that
    ignores it; length / cap and KL per token in the table."""

    def runs(cap, kl_of_cap):
        out = []
        for s in (0, 1, 2):
            r = _fake_run(s)
            h = r.history.assign(kl_k1=kl_of_cap(cap) * (1 + s), length=float(cap))
            out.append(Run(r.config, h, "finished"))
        return SeedRuns(out[0].config, out, (0, 1, 2))

    caps = {c: {"grows": runs(c, lambda c: 2.0 * c), "flat": runs(c, lambda c: 3.0)}
            for c in (8, 16, 32)}  # fmt: skip
    b = ch05.cap_exponents(caps)
    assert np.allclose(b["grows"].values, 1.0) and np.allclose(b["flat"].values, 0.0)
    t = ch05.cap_table(caps)
    assert np.allclose(t.loc[("grows", 8), "length_share"].values, 1.0)
    assert np.allclose(t.loc[("flat", 32), "kl_per_token"].values, [3 / 32, 6 / 32, 9 / 32])
    with pytest.raises(ValueError, match="at least two caps"):
        ch05.cap_exponents({8: caps[8]})


def test_runaway_reads_each_seed_end_and_when_it_left_the_sft_length():
    """Two seeds run to the cap (length 5 -> 16 from step 20 and 40) and lose gold; the third
    stays at the SFT length: it is counted apart, with its numbers, and has no escape step."""

    def run(seed, start):
        r = _fake_run(seed, steps=100)
        step = r.history["step"].to_numpy()
        ran = start is not None
        up = np.clip((step - (start or 0)) / 10, 0, 1) if ran else np.zeros(step.size)
        h = r.history.assign(length=5 + 11 * up, eos_rate=1 - up, gold=2.0 - 7 * up,
                             kl_k1=1 + 30 * up)  # fmt: skip
        return Run(r.config, h, "finished")

    sr = SeedRuns(run(0, 0).config, [run(0, 20), run(1, 40), run(2, None)], (0, 1, 2))
    ra = ch05.runaway(sr, cap=16)
    t = ra.table
    assert list(t.ran) == [True, True, False] and list(t.collapsed) == [True, True, False]
    # halfway from 5 to 16 tokens is 10.5: reached 5 steps after the onset, then smoothed over
    # the window of 10 steps, about 5 steps later again
    assert 20 < t.escape_step[0] < 35 and 40 < t.escape_step[1] < 55
    assert np.isnan(t.escape_step[2]) and ra.n_collapsed == 2 and ra.steps == 100
    assert ra.most_collapsed  # 2 of 3
    text = ra.sentence()
    assert "at 2 of 3 seeds" in text and "seed 2 had not run to the cap by its last step" in text
    assert "final length 5.0, EOS 1.00, gold +2.00 from +2.00" in text
    # a run at the cap whose gold did not fall counts as ran, not collapsed
    flat = SeedRuns(sr.config, [Run(r.config, r.history.assign(gold=2.0), "finished")
                                for r in sr.runs], (0, 1, 2))  # fmt: skip
    assert (
        ch05.runaway(flat, cap=16).n_collapsed == 0
        and not ch05.runaway(flat, cap=16).most_collapsed
    )
    assert "ran to the cap without that fall" in ch05.runaway(flat, cap=16).sentence()
    with pytest.raises(ValueError, match="cap"):
        ch05.runaway(sr, cap=0)
