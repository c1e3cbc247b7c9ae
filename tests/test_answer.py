"""Chapter 09's package side: the 2×2 cells, gold at matched KL, the factor effects and their
verdict (rlhf_nb.chapters.ch09), and the claim assessments (rlhf_nb.chapters.claims)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from rlhf_nb.chapters import ch09 as twobytwo
from rlhf_nb.chapters import claims
from rlhf_nb.methods.offline import OfflineConfig
from rlhf_nb.methods.online_config import OnlineConfig
from rlhf_nb.methods.online_simpo import OnlineSimPOConfig
from rlhf_nb.runs.record import COLUMNS, Run
from rlhf_nb.runs.seeds import SeedRuns
from rlhf_nb.stats import Stat
from rlhf_nb.theory import lengthnorm
from rlhf_nb.theory.sequences import SequenceSpace


def test_cells_cross_source_and_labeller_with_shared_fields():
    off = {"SimPO": OfflineConfig(method="simpo", beta=2.0, gamma=1.0, steps=30, seed=4)}
    grid = twobytwo.cells(off)
    assert set(grid) == {("SimPO", s, lab) for s in twobytwo.SOURCES for lab in twobytwo.LABELLERS}
    assert grid[("SimPO", "offline", "gold")] is off["SimPO"]
    assert grid[("SimPO", "offline", "proxy")].labeller == "proxy"
    on_gold, on_proxy = grid[("SimPO", "online", "gold")], grid[("SimPO", "online", "proxy")]
    assert isinstance(on_gold, OnlineSimPOConfig) and on_gold.labeller == "gold"
    assert on_proxy.labeller == "proxy"  # the online default: chapter 06's cached run
    assert (on_gold.beta, on_gold.gamma, on_gold.steps, on_gold.seed) == (2.0, 1.0, 30, 4)
    with pytest.raises(ValueError, match="must use the data's own"):
        twobytwo.cells({"x": OfflineConfig(labeller="proxy")})
    with pytest.raises(TypeError, match="must be an OfflineConfig"):
        twobytwo.cells({"x": OnlineConfig()})


def run_of(gold, kl, seed=0, cfg=None, length=5.0):
    n = len(gold)
    h = pd.DataFrame({c: np.zeros(n) for c in COLUMNS})
    h["step"], h["gold"], h["kl_k1"], h["length"], h["eos_rate"] = np.arange(n), gold, kl, length, 1
    h["proxy"] = np.asarray(kl, dtype=float)
    h["entropy_token"] = np.linspace(2.0, 1.0, n)
    return Run(cfg or OnlineConfig(seed=seed), h, status="finished")


def test_gold_at_kl_interpolates_and_says_nan_where_never_reached():
    r = run_of([1.0, 2.0, 4.0], [0.0, 1.0, 3.0])
    got = twobytwo.gold_at_kl(r, [0.5, 2.0, 3.0, 5.0], window=1)
    np.testing.assert_allclose(got[:3], [1.5, 3.0, 4.0])
    assert math.isnan(got[3])


def test_effects_and_carriers_by_hand():
    rows = []
    for src in twobytwo.SOURCES:
        for lab in twobytwo.LABELLERS:
            for seed in range(3):  # the proxy labeller adds +1 KL everywhere, the source nothing
                kl = (1.0 if lab == "proxy" else 0.0) + 0.01 * seed
                rows.append({"method": "m", "source": src, "labeller": lab, "seed": seed,
                             "kl_final": kl})  # fmt: skip
    t = pd.DataFrame(rows)
    eff = twobytwo.effects(t, "kl_final")
    lab = eff[eff.factor.str.startswith("labeller")]
    assert lab["mean"].tolist() == pytest.approx([1.0, 1.0]) and lab["differs"].all()
    src = eff[eff.factor.str.startswith("source")]
    assert src["mean"].tolist() == pytest.approx([0.0, 0.0]) and not src["differs"].any()
    assert twobytwo.carriers(eff, harmful=1) == {"m": ["labeller (proxy − gold)"]}
    assert twobytwo.carriers(eff, harmful=-1) == {"m": []}
    with pytest.raises(ValueError, match="harmful must be"):
        twobytwo.carriers(eff, harmful=0)
    with pytest.raises(ValueError, match="lacks cell"):
        twobytwo.effects(t[t.source == "offline"], "kl_final")


def seed_runs(cfg, golds, kls, length=5.0):
    runs = [
        run_of(g, k, seed=i, cfg=cfg, length=length) for i, (g, k) in enumerate(zip(golds, kls))
    ]
    return SeedRuns(cfg, runs, tuple(range(len(runs))))


def test_claims_follow_their_rules():
    up_down = [np.r_[np.linspace(0, 2, 30), np.linspace(2, -5, 30)] + 0.01 * i for i in range(3)]
    maxent = seed_runs(OnlineConfig(regularizer="entropy", alpha=0.05), up_down,
                       [np.linspace(0, 50, 60)] * 3, length=16.0)  # fmt: skip
    flat = [np.r_[np.linspace(0, 0.4, 30), np.full(30, 0.35)]] * 3
    strong = seed_runs(OnlineConfig(regularizer="kl", beta=0.2), flat, [np.linspace(0, 1, 60)] * 3)
    c = claims.maxent_overoptimises(maxent)
    assert c.status == "confirmed" and c.seeds == 3
    assert claims.maxent_overoptimises(strong).status == "not reproduced at toy scale"
    c = claims.kl_unstable(maxent, strong, cap=16)
    assert c.status == "confirmed with caveats" and "stops growing" in c.evidence
    assert claims.kl_anchor_stable(strong, strong).status == "confirmed with caveats"  # KL rising
    toy = SequenceSpace(3, 4)  # chapter 02's exact space: responses of 1-4 tokens
    chk = lengthnorm.simpo_maxent_check(
        np.random.default_rng(0).standard_normal(toy.size), toy.lengths, 2.0, gamma=1.0
    )
    c = claims.simpo_is_maxent(chk)
    assert c.status == "confirmed with caveats" and "shortness bonus" in c.evidence
    assert "not derived" in c.evidence and c.seeds == 0  # γ > 0; an exact check, no seeds
    at_gamma0 = claims.simpo_is_maxent(dataclasses.replace(chk, margin_mass=1.0))
    assert "not derived" not in at_gamma0.evidence  # γ = 0: SimPO is a likelihood
    for field in ("jprime_gap", "no_bonus_gap", "constant_alpha_gap"):  # each leg of the rule
        broken = dataclasses.replace(chk, **{field: 0.1 if field == "jprime_gap" else 0.0})
        assert claims.simpo_is_maxent(broken).status == "contested", field
    t = claims.table([c])
    assert list(t.columns) == ["claim", "where", "evidence", "seeds", "status"]
    with pytest.raises(ValueError, match="status must be one of"):
        claims.Claim("x", "y", "z", 1, "probably")


def test_claims_on_the_truth_and_the_cap_follow_their_rules():
    """The book's own rows: MaxEnt on the gold reward (collapse and loss at every seed →
    confirmed; a gain at every seed → contested), the KL anchor on the truth (bootstrap CI
    below / above / around 0), and the cap exponent's reading of the KL plateau."""
    cfg = OnlineConfig(regularizer="entropy", alpha=0.05, reward="gold")
    falling = [np.linspace(1.0, -2.0 - 0.1 * i, 60) for i in range(3)]
    rising = [np.linspace(1.0, 2.0 + 0.1 * i, 60) for i in range(3)]
    kls = [np.linspace(0, 50, 60)] * 3
    collapsed = seed_runs(cfg, falling, kls, length=16.0)
    for r in collapsed.runs:
        r.history["eos_rate"] = 0.0
    none = seed_runs(OnlineConfig(reward="gold"), rising, kls)
    c = claims.maxent_fails_on_truth(collapsed, none, collapsed, cap=16)
    assert c.status == "confirmed" and "on the gold reward" in c.evidence
    assert claims.maxent_fails_on_truth(none, none, none, cap=16).status == "contested"
    short = seed_runs(cfg, falling, kls, length=5.0)  # loses gold, but not at the cap
    assert claims.maxent_fails_on_truth(short, none, short, cap=16).status.startswith("not rep")
    lower = seed_runs(OnlineConfig(regularizer="kl", beta=0.2, reward="gold"),
                      [g - 3 for g in rising], kls)  # fmt: skip
    assert claims.kl_on_truth(lower, none).status == "confirmed"
    assert claims.kl_on_truth(none, lower).status == "contested"
    assert claims.kl_on_truth(none, none).status == "not reproduced at toy scale"
    grows = claims.kl_unstable(collapsed, none, cap=16, cap_exponent=Stat.of([0.9, 1.0, 1.1]))
    assert "the plateau is the budget" in grows.evidence
    flat = claims.kl_unstable(collapsed, none, cap=16, cap_exponent=Stat.of([0.1, 0.9, 1.0]))
    assert "does not move with the budget" in flat.evidence


def test_cell_widget_builds_without_training():
    from rlhf_nb import testbed
    from rlhf_nb.viz import live

    tb = testbed.build("smoke")
    grid = twobytwo.cells({"SimPO": OfflineConfig(steps=2)})
    box = live.cell_widget(tb, grid, {}, steps=4)
    (m, s, lab), (seed, controls) = (row.children for row in box.children[:2])
    labels = [c.description for c in (m, s, lab, seed, controls.children[0])]
    assert labels == ["method", "pairs", "labels", "seed", "train 4 steps"]
    with pytest.raises(ValueError, match="steps must be in"):
        live.cell_widget(tb, grid, {}, steps=0)


def test_anchor_widget_button_trains_and_draws_the_live_run():
    from rlhf_nb import testbed
    from rlhf_nb.viz import live

    box, fig = live.anchor_widget(testbed.build("smoke"), [], steps=2, alpha=0.0, ref_mix=0.5)
    alpha, lam, controls, shown = box.children
    button, bar, status = controls.children
    assert shown is fig and (alpha.description, lam.description) == ("α", "λ")
    button.click()
    gold = fig.data[0]  # no background runs: trace 0 is the live run's gold panel
    assert list(gold.x) == [0, 1, 2] and all(math.isfinite(v) for v in gold.y)
    assert not button.disabled and button.description == "train 2 steps"
    assert bar.value == 2 and bar.bar_style == "success"
    assert status.value.startswith("β=0.2 λ=0.5 (kl)") and "finished after" in status.value


def test_matched_kl_compares_settings_at_budgets_every_run_reaches():
    """Two settings with the same gold per nat but one moving twice as far: equal at every
    shared budget, unequal at the end."""
    from rlhf_nb import stats
    from rlhf_nb.runs import SeedRuns

    def setting(speed):
        kls = [np.arange(20) * speed * (1 + 0.1 * s) for s in range(3)]
        runs = [run_of(1.0 + kl, kl, s) for s, kl in enumerate(kls)]
        return SeedRuns(runs[0].config, runs, (0, 1, 2))

    settings = {"slow": setting(0.1), "fast": setting(0.2)}
    budgets = stats.shared_budgets(settings, (0.5, 1.0))
    slow_reach = float(stats.smoothed(settings["slow"].runs[0].history, "kl_k1").max())
    assert budgets == pytest.approx([0.5 * slow_reach, slow_reach], rel=1e-2)
    assert budgets[-1] <= slow_reach  # rounded down: the run that sets the reach reaches it
    assert stats._floor_sig(1.8385) == 1.83 and stats._floor_sig(0.4599) == 0.459
    assert stats._floor_sig(2.0) == 2.0 and stats._floor_sig(65.05) == 65.0
    m = stats.matched_kl(settings, budgets)
    assert (m["reached"] == 3).all()
    for b in budgets:  # gold = 1 + KL in both: the gain at a budget is the budget
        for k in settings:
            np.testing.assert_allclose(m.loc[(k, b), "gain"].values, b, rtol=1e-2)
    assert settings["fast"].final("gold").mean > settings["slow"].final("gold").mean + 1
    diffs = stats.matched_difference(m, "fast", "slow")  # same gold per nat: no difference
    assert list(diffs) == budgets
    assert all(abs(d.mean) < 1e-2 * b and not d.differs for b, d in diffs.items())
    flat = {
        "flat": SeedRuns(run_of([1.0] * 5, [0.0] * 5).config, [run_of([1.0] * 5, [0.0] * 5)], (0,))
    }
    with pytest.raises(ValueError, match="never moves"):
        stats.shared_budgets(flat)


def test_matched_readings_of_chapters_05_and_07():
    """ch07.matched_remedies picks the remedy with the most gold per nat at the top budget;
    ch05.matched_reading says a setting with less gold per nat is worse beyond noise."""
    from rlhf_nb.chapters import ch05, ch07
    from rlhf_nb.runs import SeedRuns

    def setting(per_nat, cfg):
        kls = [np.arange(40) * 0.1 * (1 + 0.05 * s) for s in range(3)]
        runs = [run_of(1.0 + per_nat * kl, kl, s, cfg=cfg) for s, kl in enumerate(kls)]
        return SeedRuns(cfg, runs, (0, 1, 2))

    ent = {"regularizer": "entropy"}
    settings = {"anchor": setting(1.0, OnlineConfig(regularizer="kl", beta=0.2)),
                "remedy: good": setting(2.0, OnlineConfig(**ent, alpha=0.05)),
                "remedy: poor": setting(0.5, OnlineConfig(**ent, alpha=0.1))}  # fmt: skip
    m = ch07.matched_remedies(settings, "anchor")
    assert m.best == "remedy: good" and m.anchor == "anchor"
    top = m.budgets[-1]
    assert m.best_gain.mean == pytest.approx(2.0 * top, rel=2e-2)
    assert m.minus_anchor.mean == pytest.approx(top, rel=5e-2) and m.minus_anchor.differs
    assert list(m.table.columns) == [f"gold gain at KL {b:g}" for b in m.budgets] + [
        "gold gain, final"
    ]
    for k, g in settings.items():  # final gain by the summary rule = final() minus step 0
        want = g.final("gold").mean - g.summaries()["gold_start"].mean()
        assert m.table.loc[k, "gold gain, final"] == pytest.approx(want, abs=1e-12)
    assert m.sentence().startswith(f"at KL {top:g} nats the best remedy is good (gold gain ")
    with pytest.raises(ValueError, match="anchor="):
        ch07.matched_remedies(settings, "missing")

    seeded = {"rloo": setting(1.0, OnlineConfig(alpha=0.0)),
              "maxent": setting(0.5, OnlineConfig(**ent, alpha=0.05)),
              "kl_weak": setting(1.0, OnlineConfig(regularizer="kl", beta=0.05)),
              "kl_strong": setting(1.0, OnlineConfig(regularizer="kl", beta=0.2))}  # fmt: skip
    table, sentence = ch05.matched_reading(seeded)
    assert len(table.splitlines()) == 2 + 4 * 3  # header, rule, 4 settings x 3 budgets
    assert sentence.startswith(f"At equal KL to SFT, {seeded['maxent'].label} minus ")
    assert sentence.count("(beyond seed noise)") == 3
    with pytest.raises(ValueError, match="a and b must be in"):
        ch05.matched_reading(seeded, a="ref_mix")


def test_across_scales_claim_follows_its_rule():
    from rlhf_nb.chapters import claims
    from rlhf_nb.stats import Stat

    ok = {"mini": {"failed": [], "kl_ratio": Stat.of([20.0, 25.0, 30.0])},
          "tiny": {"failed": [], "kl_ratio": Stat.of([40.0, 50.0, 60.0])}}  # fmt: skip
    sizes = {"mini": 70_000, "tiny": 240_000}
    c = claims.across_scales(ok, sizes)
    assert c.status == "confirmed" and c.seeds == 3 and "0.24M" in c.evidence
    bad = {**ok, "tiny": {"failed": ["seed 1: MaxEnt KL > 5x"], "kl_ratio": Stat.of([4.0, 6, 7])}}
    c = claims.across_scales(bad, sizes)
    assert c.status == "not reproduced at toy scale" and "tiny seed 1" in c.evidence
