"""CI guards the science, not only the code: chapter 05's central contrast, re-run at reduced but
real size on every `make test`.

A MaxEnt run (sequence-level entropy bonus α = 0.05, no anchor) and a KL-regularised run (β = 0.2)
train from the smoke testbed's SFT policy on its learned proxy, at two seeds, and
:func:`rlhf_nb.chapters.ch05.central_contrast` asserts the seed-robust facts seed by seed: the
MaxEnt run's gold ends far below its peak with several times the anchored run's KL, and the anchored
run ends near its best. The negative case removes the anchor (β = 0) and checks that the same
statements then fail, so the test can tell the two regimes apart.

Why the smoke testbed: building the book's tiny testbed alone takes ~140 s on one core, most of
the 3-minute budget; the smoke build is shared with the other tests. Thresholds and the seed
values they were set against (this machine, lr 1e-3, 60 steps of 16 prompts x 4, seeds 0 and 1):
MaxEnt gold fall 6.59 / 6.63 (threshold 2); MaxEnt KL 26.0 / 29.1 nats vs the anchored run's
0.98 / 0.87 (ratio 27 / 33, threshold 5); anchored fall 0.29 / 0.43 (threshold 0.75); final-gold
gap 6.55 / 6.31 (threshold 3). Without the anchor (β = 0) the fall was 1.55 / 1.50 and the KL
10.4 / 13.0 nats (ratio 2.5 / 2.2): two statements fail at each seed. 73 s on 2 cores.
"""

from __future__ import annotations

import pytest

from rlhf_nb.chapters import ch05 as sweep
from rlhf_nb.methods.online_config import OnlineConfig
from rlhf_nb.runs import get_runs
from rlhf_nb.testbed.presets import PRESETS

SEEDS = (0, 1)
SIZE = dict(lr=1e-3, steps=60, prompts_per_step=16, eval_interval=60, n_eval_prompts=16)
MAXENT = OnlineConfig(regularizer="entropy", alpha=0.05, **SIZE)


def _train(*configs):
    # refresh: retrain every time, so that the test measures this code, not a cached result
    return get_runs(
        list(configs), seeds=SEEDS, preset="smoke", workers=2, refresh=True, verbose=False
    )


@pytest.fixture(scope="module")
def contrast():
    anchored = OnlineConfig(regularizer="kl", beta=0.2, **SIZE)
    return _train(MAXENT, anchored)


def test_maxent_over_optimises_and_the_kl_anchor_holds_for_every_seed(contrast):
    maxent, anchored = contrast
    assert [r.status for r in (*maxent.runs, *anchored.runs)] == ["finished"] * 4
    for g in (maxent, anchored):  # the measured values, for `pytest -s` and the closing notes
        print(g.label, g.summaries()[["gold_fall", "gold_final", "kl_k1_final"]].round(2))
    failed = sweep.central_contrast(maxent, anchored)
    assert not failed, failed
    # the MaxEnt run's exploit: maximal length, no EOS, every seed
    cap = PRESETS["smoke"].max_new_tokens
    assert all(r.final("length") > cap - 1 for r in maxent.runs)
    assert all(r.final("eos_rate") < 0.2 for r in maxent.runs)


def test_the_check_fails_once_the_anchor_is_removed(contrast):
    maxent, _ = contrast
    (unanchored,) = _train(OnlineConfig(regularizer="kl", beta=0.0, **SIZE))
    print(unanchored.label, unanchored.summaries()[["gold_fall", "kl_k1_final"]].round(2))
    failed = sweep.central_contrast(maxent, unanchored)
    assert len(failed) >= len(SEEDS), failed  # at least one statement fails at every seed
    assert any("anchored gold ends" in f for f in failed), failed
