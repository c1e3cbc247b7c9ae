"""Chapter 07's package side: the exact misspecified problem and its families, the remedies as
configs, the empirical frontier of runs and the Gao fits on it (rlhf_nb.chapters.ch07)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rlhf_nb.chapters import ch07 as overopt
from rlhf_nb.methods.online_config import OnlineConfig
from rlhf_nb.runs.record import COLUMNS, Run
from rlhf_nb.runs.seeds import SeedRuns
from rlhf_nb.theory import exact, frontier


@pytest.fixture(scope="module")
def problem():
    return frontier.misspecified_problem()


def test_problem_proxy_is_gold_plus_a_length_bonus(problem):
    np.testing.assert_allclose(problem.proxy - problem.gold,
                               problem.length_bonus * problem.space.lengths)  # fmt: skip
    assert problem.ref.min() > 0 and problem.ref.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="length_bonus must be in"):
        frontier.misspecified_problem(length_bonus=-1.0)


def test_family_ends_and_identities(problem):
    df = frontier.family_frontiers(problem, coefs=[math.inf, 1.0, 1e-3], ns=[1, 2, 64])
    first = df.groupby("family").first()
    assert first.loc["kl", "kl"] == pytest.approx(0.0, abs=1e-12)  # β = ∞: π_SFT itself
    assert first.loc["best_of_n", "kl"] == pytest.approx(0.0, abs=1e-12)  # n = 1
    uniform = np.full(problem.space.size, 1 / problem.space.size)
    assert first.loc["maxent", "kl"] == pytest.approx(exact.kl_divergence(uniform, problem.ref))
    assert first.loc["maxent", "entropy"] == pytest.approx(math.log(problem.space.size))
    # the combined family at t = 1 is combined_policy(α = β = 1), stationary
    pi = frontier.family_policies(problem, "combined", [1.0])[0]
    assert frontier.stationarity_gap(pi, problem.proxy, problem.ref, 1.0, 1.0) < 1e-9
    # every family ends (coefficient -> 0, n large) near the proxy's argmax set
    last = df.groupby("family").last()
    best = problem.proxy.max()
    for fam in ("kl", "maxent", "combined"):
        assert last.loc[fam, "proxy"] == pytest.approx(best, abs=1e-3)
    with pytest.raises(ValueError, match="family must be one of"):
        frontier.family_policies(problem, "ppo", [1.0])


def test_no_maxent_temperature_gives_back_sft(problem):
    """The MaxEnt family's closest point to π_SFT is still far from it (its end is uniform)."""
    df = frontier.family_frontiers(problem)
    d = df[df.family == "maxent"]["d"]
    assert d.min() > 0.5 and df[df.family == "kl"]["d"].min() == 0.0


def test_best_of_n_kl_respects_its_bound(problem):
    df = frontier.family_frontiers(problem, coefs=[1.0], ns=range(1, 65))
    bon = df[df.family == "best_of_n"]
    bound = np.array([frontier.bon_kl_bound(int(n)) for n in bon["coef"]])
    assert np.all(bon["kl"].to_numpy() <= bound + 1e-12)


MAXENT = OnlineConfig(regularizer="entropy", alpha=0.05, lr=3e-4, steps=200, seed=2)


def test_remedy_configs_change_only_the_regulariser():
    cfgs = overopt.remedy_configs(MAXENT, beta=0.2, vocab_size=84, sft_length=4.9,
                                  sft_entropy=1.7123, ref_mix=0.5, ensemble=3)  # fmt: skip
    assert list(cfgs) == list(overopt.REMEDIES)
    for cfg in cfgs.values():
        assert (cfg.lr, cfg.steps, cfg.seed, cfg.prompts_per_step) == (3e-4, 200, 2, 32)
    assert cfgs["entropy_norm"].alpha == pytest.approx(0.25)  # 0.05 x 4.9, 2 digits
    assert cfgs["length"].length_coef == pytest.approx(0.05 * math.log(84), abs=5e-3)
    assert cfgs["adaptive"].target_entropy == 1.71
    assert (cfgs["ref_mix"].alpha, cfgs["ref_mix"].beta, cfgs["ref_mix"].ref_mix) == (0, 0.2, 0.5)
    assert cfgs["entropy_kl"].regularizers == ("entropy", "kl")
    assert cfgs["ensemble"].ensemble == 3 and cfgs["ensemble"].alpha == 0.05
    with pytest.raises(ValueError, match="maxent must be a sequence-level entropy run"):
        overopt.remedy_configs(OnlineConfig(), beta=0.2, vocab_size=84, sft_length=4.9,
                               sft_entropy=1.7)  # fmt: skip
    with pytest.raises(ValueError, match="ref_mix must be in"):
        overopt.remedy_configs(MAXENT, beta=0.2, vocab_size=84, sft_length=4.9,
                               sft_entropy=1.7, ref_mix=1.0)  # fmt: skip


def fake_run(gold, kl, seed=0, length=None):
    n = len(gold)
    h = pd.DataFrame({c: np.zeros(n) for c in COLUMNS})
    h["step"], h["gold"], h["kl_k1"] = np.arange(n), gold, kl
    h["proxy"], h["length"] = np.asarray(gold) + 1.0, length if length is not None else 5.0
    h["eos_rate"], h["entropy_token"] = 1.0, 1.5
    return Run(OnlineConfig(seed=seed), h, status="finished")


def test_trajectory_smooths_and_takes_the_root_of_a_clipped_kl():
    run = fake_run([0.0, 2.0, 4.0], [-0.5, 1.0, 4.0])
    t = overopt.trajectory(run, window=2)  # steps (s-2, s]: two rows
    assert t["gold"].tolist() == [0.0, 1.0, 3.0]
    np.testing.assert_allclose(t["kl"], [-0.5, 0.25, 2.5])
    np.testing.assert_allclose(t["d"], [0.0, 0.5, math.sqrt(2.5)])


def test_gao_table_recovers_the_rl_form_from_runs():
    a, b = 1.2, 0.8  # R(d) = d (a - b log d), peak at d* = exp(a/b - 1)
    rng = np.random.default_rng(0)
    runs = []
    for seed in range(3):
        d = np.linspace(0.0, 6.0, 120)
        gain = frontier.gao_curve(d, a, b, "rl") + rng.normal(0, 0.02, d.size)
        runs.append(fake_run(gain + 2.0, d**2, seed=seed))  # gold starts at 2.0
    pts = overopt.frontier_points({"rloo": runs})
    assert pts["gain"].iloc[0] == pytest.approx(0.0, abs=0.05)
    table = overopt.gao_table(pts, {"rloo": "rl"})
    row = table.loc["rloo"]
    assert row["a"] == pytest.approx(a, abs=3 * row["a_se"] + 0.02)
    assert row["b"] == pytest.approx(b, abs=3 * row["b_se"] + 0.02)
    assert row["d_star"] == pytest.approx(math.exp(a / b - 1), rel=0.05)
    with pytest.raises(ValueError, match="form of 'rloo' must be one of"):
        overopt.gao_table(pts, {"rloo": "ppo"})
    with pytest.raises(ValueError, match="no points for method 'kl'"):
        overopt.gao_table(pts, {"kl": "rl"})


def test_remedy_table_means_and_bands_by_hand():
    runs = [fake_run(np.r_[np.zeros(5), np.full(10, v)], np.full(15, 2 * v), seed=s)
            for s, v in enumerate([1.0, 2.0, 3.0])]  # fmt: skip
    g = SeedRuns(MAXENT, runs, (0, 1, 2))
    t = overopt.remedy_table({"x": g})  # the last WINDOW = 10 steps
    assert t.loc["x", "gold_final"] == pytest.approx(2.0)
    assert t.loc["x", "kl_final"] == pytest.approx(4.0)
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert t.loc["x", "gold_final ±"] == pytest.approx(half)
    assert t.loc["x", "n"] == 3 and t.loc["x", "length_final"] == 5.0
    assert g.final("gold").values == (1.0, 2.0, 3.0)


def test_uniform_length_law_equals_enumeration():
    from rlhf_nb.theory.sequences import SequenceSpace, truncated_share, uniform_length_law

    for v, L in [(2, 3), (4, 5), (6, 4)]:
        s = SequenceSpace(v, L)
        law = np.bincount(s.lengths, minlength=L + 1)[1:] / s.size
        np.testing.assert_allclose(uniform_length_law(v, L), law, atol=1e-14)
        no_eos = np.mean([y[-1] != 0 for y in s.sequences])
        assert truncated_share(v, L) == pytest.approx(no_eos, abs=1e-14)
    assert truncated_share(84, 16) == pytest.approx(1 - 1 / 83, abs=1e-3)  # the testbed's V, cap


def test_outcome_rules_in_order():
    base = dict(length_final=5.0, eos_final=1.0, kl_final=10.0, gold_peak=2.0, gold_final=1.8)
    assert overopt.outcome({**base, "length_final": 15.5, "eos_final": 0.0}, cap=16) == (
        "length collapse"
    )
    assert overopt.outcome({**base, "kl_final": 1.0}, cap=16) == "anchored"
    assert overopt.outcome({**base, "gold_final": 0.5}, cap=16) == "proxy hacked"
    assert overopt.outcome(base, cap=16) == "stable"


def test_gao_table_reports_no_peak_when_b_is_not_clear_of_zero():
    rng = np.random.default_rng(1)
    d = np.linspace(0.0, 2.0, 80)
    runs = [fake_run(0.3 * d + rng.normal(0, 0.05, d.size), d**2, seed=s) for s in range(2)]
    row = overopt.gao_table(overopt.frontier_points({"m": runs}), {"m": "rl"}).loc["m"]
    assert math.isinf(row["d_star"]) and "not 2 SE above 0" in row["note"]
