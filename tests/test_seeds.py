"""The several-seed runner's statistics, checked against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from rlhf_nb import runs as train
from rlhf_nb import stats as seeds
from rlhf_nb.methods.online_config import OnlineConfig
from rlhf_nb.runs import SeedRuns, with_seeds
from rlhf_nb.runs.record import COLUMNS, Run
from rlhf_nb.viz import run_plots


def _run(seed: int, gold: list[float], kl: list[float] | None = None) -> Run:
    n = len(gold)
    h = pd.DataFrame({c: [math.nan] * n for c in COLUMNS})
    h["step"] = range(n)
    h["gold"] = gold
    h["proxy"] = np.linspace(0, 1, n)
    h["kl_k1"] = kl if kl is not None else np.linspace(0, 2, n)
    cfg = OnlineConfig(regularizer="entropy", alpha=0.05, steps=max(n - 1, 1), seed=seed)
    return Run(cfg, h, status="finished")


def _group(values_per_seed: list[list[float]]) -> SeedRuns:
    runs = [_run(s, v) for s, v in enumerate(values_per_seed)]
    return SeedRuns(runs[0].config, runs, tuple(range(len(runs))))


def test_band_is_the_student_t_interval_of_the_per_step_mean():
    g = _group([[0.0, 1.0, 2.0], [0.0, 2.0, 4.0], [0.0, 3.0, 3.0]])
    b = g.band("gold")
    step1 = np.array([1.0, 2.0, 3.0])
    half = sps.t.ppf(0.975, 2) * step1.std(ddof=1) / math.sqrt(3)
    assert b.loc[1, "mean"] == pytest.approx(2.0)
    assert (b.loc[1, "lo"], b.loc[1, "hi"]) == pytest.approx((2.0 - half, 2.0 + half))
    assert b.loc[0, "lo"] == b.loc[0, "hi"] == 0.0  # identical seeds: no width
    assert b.loc[2, "min"] == 2.0 and b.loc[2, "max"] == 4.0 and (b["n"] == 3).all()


def test_band_keeps_the_seeds_that_logged_a_step():
    """A diverged run (shorter history) does not erase the other seeds' later steps."""
    g = _group([[0.0, 1.0, 2.0], [0.0, 3.0]])
    b = g.band("gold")
    assert b.loc[2, "n"] == 1 and b.loc[2, "mean"] == b.loc[2, "lo"] == 2.0


def test_stat_and_summaries_agree_with_the_summary_table():
    g = _group([[0.0, 2.0, 1.0], [0.0, 3.0, 0.0], [0.0, 1.0, 1.0]])
    s = g.summaries(window=1)  # rows as logged, so the values can be checked by hand
    assert list(s.index) == [0, 1, 2]
    assert s["gold_fall"].tolist() == pytest.approx([1.0, 3.0, 0.0])
    st = g.stat("gold_fall", window=1)
    assert st.mean == pytest.approx(4 / 3) and st.n == 3 and st.min == 0.0 and st.max == 3.0
    assert st.lo < st.mean < st.hi
    assert "n=3" in str(st)
    assert g.final("gold", window=1).values == (1.0, 0.0, 1.0)
    assert g.final("gold").values == (1.0, 1.0, 2 / 3)  # the default: the last 10 steps' mean
    assert g.label.endswith("3 seeds")


def test_differ_detects_a_gap_far_beyond_the_spread_and_not_one_inside_it():
    far = seeds.differ([10.0, 10.5, 9.8], [1.0, 1.2, 0.9])
    assert far.differs and far.lo > 8 and far.mean == pytest.approx(10.1 - 1.0333333)
    near = seeds.differ([1.0, 2.0, 3.0], [1.5, 2.5, 1.8])
    assert not near.differs and near.lo < 0 < near.hi
    again = seeds.differ([1.0, 2.0, 3.0], [1.5, 2.5, 1.8])
    assert (again.lo, again.hi) == (near.lo, near.hi)  # seeded bootstrap: reproducible
    assert "beyond seed noise" in str(far) and "within seed noise" in str(near)


def test_margin_is_the_distance_in_seed_sds():
    assert seeds.margin([1.0, 2.0, 3.0], 5.0) == pytest.approx(3.0)
    assert seeds.margin([2.0, 2.0], 0.0) == math.inf


def test_bad_inputs_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="seeds must be a non-empty list"):
        with_seeds(OnlineConfig(), [1, 1])
    with pytest.raises(ValueError, match="finite values"):
        seeds.Stat.of([1.0, math.nan])
    with pytest.raises(TypeError, match="config must be"):
        train.kind_of(object())
    assert [c.seed for c in with_seeds(OnlineConfig(), [3, 4])] == [3, 4]


def test_band_figure_draws_a_mean_and_a_filled_band_per_setting():
    a = _group([[0.0, 1.0, 2.0], [0.0, 2.0, 4.0]])
    b = _group([[0.0, -1.0, -2.0], [0.0, -2.0, -1.0]])
    fig = run_plots.band_figure([a, b], ("gold", "kl_k1"), seeds=True)
    fills = [t for t in fig.data if t.fill == "toself"]
    assert len(fills) == 4  # two settings x two panels
    means = [t for t in fig.data if t.showlegend]
    assert [t.name for t in means] == [a.label, b.label]  # one legend entry per setting
    assert list(means[0].y) == pytest.approx([0.0, 1.5, 3.0])


def test_holds_asserts_every_seed_and_the_margin(capsys):
    line = seeds.holds("x", [10.0, 11.0, 12.0], ">", 5.0)
    assert (
        "margin 6.0 seed SDs" in line
    )  # (11 - 5) / sd 1 and "for all 3 seeds" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="wrong side"):
        seeds.holds("x", [10.0, 11.0, 4.0], ">", 5.0)
    with pytest.raises(AssertionError, match="inside the seed spread"):
        seeds.holds("x", [10.0, 11.0, 12.0], "<", 12.5)  # every seed below, 1.5 SDs away
    with pytest.raises(ValueError, match="side must be"):
        seeds.holds("x", [1.0, 2.0], ">=", 0.0)


def test_holds_on_a_log_scale_for_ratios_and_drops():
    # one seed far above the others widens the linear SD but not the claim's safety
    values = [2.4, 2.7, 6.0]
    with pytest.raises(AssertionError, match="inside the seed spread"):
        seeds.holds("fall", values, ">", 0.3)
    assert "of the log" in seeds.holds("fall", values, ">", 0.3, log=True)
    with pytest.raises(ValueError, match="of one sign"):
        seeds.holds("fall", [1.0, -1.0], ">", 0.3, log=True)
    # a change below a negative threshold, skewed the safe way (issue 26's chapter 06 case:
    # -3.95, -1.72, -1.50 < -0.3 is 1.5 linear SDs but 3.8 SDs of log|value| from the threshold)
    drop = [-3.95, -1.72, -1.50]
    with pytest.raises(AssertionError, match="inside the seed spread"):
        seeds.holds("Δgold", drop, "<", -0.3)
    line = seeds.holds("Δgold", drop, "<", -0.3, log=True)
    assert "margin 3.8 seed SDs of the log" in line, line
    with pytest.raises(ValueError, match="of one sign"):
        seeds.holds("Δgold", drop, "<", 0.0, log=True)
