"""Exact over-optimisation frontiers (rlhf_nb.theory.frontier) against brute force, the
first-order condition, and synthetic fits with known coefficients."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rlhf_nb.theory import exact, frontier


def brute_force_bon(ref, score, n):
    """Enumerate every n-tuple of draws; the winner is uniform among the tied best draws."""
    out = np.zeros(len(ref))
    for draw in itertools.product(range(len(ref)), repeat=n):
        p = np.prod([ref[i] for i in draw])
        best = max(score[i] for i in draw)
        winners = [i for i in draw if score[i] == best]
        for i in winners:
            out[i] += p / len(winners)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_best_of_n_equals_enumeration_with_and_without_ties(n):
    ref = np.array([0.4, 0.1, 0.2, 0.25, 0.05])
    for score in (np.array([0.3, 1.0, -2.0, 0.7, 2.0]), np.array([1.0, 1.0, 0.0, 2.0, 0.0])):
        np.testing.assert_allclose(frontier.best_of_n(ref, score, n),
                                   brute_force_bon(ref, score, n), atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(frontier.best_of_n(ref, score, 1), ref, atol=1e-15)


def test_best_of_n_kl_is_below_the_bound_and_meets_it_for_a_fine_score():
    rng = np.random.default_rng(0)
    coarse_ref = np.array([0.7, 0.2, 0.1])  # one response holds most of the mass: loose bound
    for n in (2, 4, 16, 64):
        kl = exact.kl_divergence(frontier.best_of_n(coarse_ref, [0.0, 1.0, 2.0], n), coarse_ref)
        assert kl <= frontier.bon_kl_bound(n) + 1e-12
    fine = np.full(5000, 1 / 5000)  # many tiny atoms, distinct scores: the bound is attained
    score = rng.normal(size=5000)
    for n in (2, 4, 16):
        kl = exact.kl_divergence(frontier.best_of_n(fine, score, n), fine)
        assert kl == pytest.approx(frontier.bon_kl_bound(n), abs=5e-3)
    assert frontier.bon_kl_bound(1) == 0.0


def test_combined_optimum_is_stationary_maximal_and_reduces_to_both_families():
    rng = np.random.default_rng(1)
    r, ref = rng.normal(size=6), rng.dirichlet(np.ones(6))
    for alpha, beta in [(0.5, 0.0), (0.0, 0.5), (0.3, 0.7), (2.0, 0.1)]:
        pi = frontier.combined_policy(r, ref, alpha, beta)
        assert frontier.stationarity_gap(pi, r, ref, alpha, beta) < 1e-10
        best = frontier.combined_objective(pi, r, ref, alpha, beta)
        for q in rng.dirichlet(np.ones(6), size=200):
            assert frontier.combined_objective(q, r, ref, alpha, beta) <= best + 1e-12
    np.testing.assert_allclose(frontier.combined_policy(r, ref, 0.4, 0.0),
                               exact.maxent_policy(r, 0.4), atol=1e-14)  # fmt: skip
    np.testing.assert_allclose(frontier.combined_policy(r, ref, 0.0, 0.4),
                               exact.kl_policy(r, ref, 0.4), atol=1e-14)  # fmt: skip
    with pytest.raises(ValueError, match="alpha \\+ beta must be > 0"):
        frontier.combined_policy(r, ref, 0.0, 0.0)


def test_frontier_ends_kl_family_at_the_reference_maxent_family_at_uniform():
    rng = np.random.default_rng(2)
    r, ref = rng.normal(size=5), rng.dirichlet(np.ones(5))
    f = frontier.frontier([exact.kl_policy(r, ref, 1e6), exact.maxent_policy(r, 1e6)], ref, r, r)
    assert f["d"][0] < 1e-3  # β → ∞: π_SFT itself
    uniform = np.full(5, 0.2)
    assert f["d"][1] == pytest.approx(math.sqrt(exact.kl_divergence(uniform, ref)), rel=1e-4)
    assert set(f) == {"kl", "d", "gold", "proxy"}


@pytest.mark.parametrize("form, a, b", [("bon", 1.0, 0.2), ("rl", 0.8, 0.3)])
def test_fit_gao_recovers_known_coefficients_from_noisy_points(form, a, b):
    rng = np.random.default_rng(3)
    d = np.linspace(0.1, 6.0, 40)
    gold = frontier.gao_curve(d, a, b, form) + rng.normal(scale=0.02, size=d.size)
    fit = frontier.fit_gao(d, gold, form)
    assert abs(fit.a - a) < 4 * fit.a_se and abs(fit.b - b) < 4 * fit.b_se
    assert fit.a_se < 0.05 and fit.b_se < 0.05
    want = a / (2 * b) if form == "bon" else math.exp(a / b - 1)
    assert fit.d_star == pytest.approx(want, rel=0.1)
    assert fit.gold_star == pytest.approx(float(fit.predict(fit.d_star)))
    with pytest.raises(ValueError, match="at least 3 points"):
        frontier.fit_gao([0.0, 1.0, 2.0], [0.0, 0.5, 0.6], form)
    with pytest.raises(ValueError, match="form must be one of"):
        frontier.fit_gao(d, gold, "linear")


def test_kl_family_stays_within_its_bound_and_maxent_family_does_not():
    rng = np.random.default_rng(4)
    for _ in range(50):
        r, ref = rng.normal(size=7), rng.dirichlet(np.ones(7))
        for beta in (0.05, 0.3, 1.0, 5.0):
            pi = exact.kl_policy(r, ref, beta)
            kl = exact.kl_divergence(pi, ref)
            inner = (pi @ r - ref @ r) / beta  # the tighter, middle term of the bound
            assert kl <= inner + 1e-12 <= frontier.kl_family_kl_bound(r, ref, beta) + 2e-12
    ref = np.array([0.97, 0.01, 0.01, 0.01])  # an SFT policy sure of one response
    far = exact.kl_divergence(exact.maxent_policy(np.zeros(4), 1.0), ref)  # uniform: α → ∞
    assert far > 1.0 and far == pytest.approx(math.log(0.25 / 0.97) * 0.25 + 0.75 * math.log(25))
