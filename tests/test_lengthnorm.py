"""SimPO's exact objective J' and what its likelihood identifies (rlhf_nb.theory.lengthnorm), each
against an independent route: a second formula, random competitors, SimPO's loss as TRL computes
it (``rlhf_nb.theory.losses``, checked against TRL in ``test_losses.py``), or a grid search.

The substituted Gibbs family and the length-normalised optimum are tested in ``test_exact.py``.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.special import expit

from rlhf_nb.theory import exact, lengthnorm, losses
from rlhf_nb.theory.sequences import SequenceSpace

FAST = settings(max_examples=40, deadline=None)
seeds = st.integers(0, 2**31 - 1)
betas = st.floats(0.1, 10.0)


def problem(seed, n, max_len, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng, scale * rng.standard_normal(n), rng.integers(1, max_len + 1, n)


def bt_loss(r, w, l):
    return -np.log(exact.bt_prob(r[w], r[l]))


# ---- J'(pi) = E_pi[r + (beta/|y|)(1 - log pi)] ----------------------------------------------


@FAST
@given(seed=seeds, n=st.integers(2, 30), beta=betas, max_len=st.integers(1, 8))
def test_simpo_optimum_maximises_jprime_and_is_gibbs_at_log_zg_zero(seed, n, beta, max_len):
    rng, r, lengths = problem(seed, n, max_len)
    pi, lam = lengthnorm.simpo_optimum(r, lengths, beta)
    assert abs(pi.sum() - 1.0) < 1e-12
    ok = pi > 1e-300  # stationarity where pi is representable: r - (beta/|y|) log pi = lambda
    np.testing.assert_allclose((r - beta / lengths * np.log(pi))[ok], lam, atol=1e-9)
    best = lengthnorm.simpo_objective(pi, r, lengths, beta)
    for q in rng.dirichlet(np.full(n, 0.5), size=30):  # concave: no random policy beats it
        assert lengthnorm.simpo_objective(q, r, lengths, beta) <= best + 1e-9
    # a second route: the offset c* where the substituted family has log Z_g = 0, by bisection
    c_star = brentq(lambda c: lengthnorm.substituted_gibbs(r + c, lengths, beta)[1], -50, 50)
    assert abs(c_star + lam) < 1e-8
    pi_g, _ = lengthnorm.substituted_gibbs(r + c_star, lengths, beta)
    np.testing.assert_allclose(pi, pi_g, rtol=1e-7, atol=1e-300)


def test_simpo_objective_is_the_length_normalised_one_plus_a_shortness_bonus():
    rng, r, lengths = problem(3, 12, 5)
    q = rng.dirichlet(np.ones(12))
    direct = float(np.sum(q * (r + 2.0 / lengths * (1.0 - np.log(q)))))
    assert abs(lengthnorm.simpo_objective(q, r, lengths, 2.0) - direct) < 1e-12


@FAST
@given(seed=seeds, n=st.integers(2, 30), beta=betas, max_len=st.integers(2, 8))
def test_simpo_loss_is_the_bt_likelihood_of_jprime(seed, n, beta, max_len):
    """SimPO (gamma = 0) at argmax J' is the Bradley-Terry loss of r, on pairs of any lengths."""
    _, r, lengths = problem(seed, n, max_len)
    pi, _ = lengthnorm.simpo_optimum(r, lengths, beta)
    w, l = lengthnorm.oriented_pairs(r)
    keep = pi[w] * pi[l] > 1e-300  # pairs whose log-probs are representable
    w, l = w[keep], l[keep]
    avg = torch.tensor(np.log(pi[np.r_[w, l]]) / lengths[np.r_[w, l]])
    simpo = losses.simpo_loss(avg[: w.size], avg[w.size :], beta).numpy()
    np.testing.assert_allclose(simpo, bt_loss(r, w, l), rtol=1e-9, atol=1e-12)


def test_length_normalised_optimum_is_the_family_at_log_zg_one():
    _, r, lengths = problem(4, 20, 6)
    pi, lam = lengthnorm.length_normalised_optimum(r, lengths, 1.5)
    pi_g, log_zg = lengthnorm.substituted_gibbs(r - lam, lengths, 1.5)
    assert abs(log_zg - 1.0) < 1e-12
    np.testing.assert_allclose(pi, pi_g, rtol=1e-12)


# ---- chapter 09's numbers -------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_simpo_maxent_check_against_independent_formulas(gamma):
    space, beta = SequenceSpace(3, 4), 2.0
    r, lengths = np.random.default_rng(0).standard_normal(space.size), space.lengths
    got = lengthnorm.simpo_maxent_check(r, lengths, beta, gamma)
    w, l = lengthnorm.oriented_pairs(r)
    keep = lengths[w] != lengths[l]
    w, l = w[keep], l[keep]
    gap, offset = r[w] - r[l], beta * (1 / lengths[w] - 1 / lengths[l])
    assert got.pairs == w.size and got.jprime_gap < 1e-12
    # at argmax J (no bonus) SimPO's logit is the reward gap minus the length offset
    no_bonus = np.max(np.abs(np.logaddexp(0, -(gap - offset)) - np.logaddexp(0, -gap)))
    assert abs(got.no_bonus_gap - no_bonus) < 1e-9 and got.no_bonus_gap > 0.3
    # one alpha for all: the 1-D search against a dense grid
    pi, _ = lengthnorm.simpo_optimum(r, lengths, beta)
    d = np.log(pi[w]) - np.log(pi[l])
    grid = np.geomspace(1e-3, 1e3, 20001)
    on_grid = min(np.max(np.abs(np.logaddexp(0, -a * d) - bt_loss(r, w, l))) for a in grid)
    assert got.constant_alpha_gap <= on_grid + 1e-9 and on_grid - got.constant_alpha_gap < 1e-3
    assert got.constant_alpha_gap > 0.1
    # at argmax J' SimPO's logit is the reward gap, so the margin's two orders read it directly
    both = expit(gap - gamma) + expit(-gap - gamma)
    assert abs(got.margin_mass - both.max()) < 1e-12
    assert (got.margin_mass < 1.0) if gamma > 0 else abs(got.margin_mass - 1.0) < 1e-12


def test_simpo_maxent_check_needs_unequal_lengths():
    with pytest.raises(ValueError, match="lengths"):
        lengthnorm.simpo_maxent_check([0.1, 0.5, -1.0], [3, 3, 3], 2.0)
    with pytest.raises(ValueError, match="gamma"):
        lengthnorm.simpo_maxent_check([0.1, 0.5], [1, 3], 2.0, gamma=-1.0)


# ---- what the likelihood identifies ---------------------------------------------------------


def test_oriented_pairs_cover_every_pair_once_winner_first():
    r = np.random.default_rng(5).standard_normal(9)
    w, l = lengthnorm.oriented_pairs(r)
    assert w.size == 36 and np.all(r[w] >= r[l])
    assert {frozenset(p) for p in zip(w.tolist(), l.tolist())} == {
        frozenset((i, j)) for i in range(9) for j in range(i + 1, 9)
    }


def test_pair_cross_entropy_is_simpos_loss_weighted_over_both_orders():
    space, beta = SequenceSpace(3, 3), 1.5
    rng = np.random.default_rng(6)
    logp = space.log_probs(space.random_logits(rng))
    w, l = lengthnorm.oriented_pairs(rng.standard_normal(space.size))
    p = rng.uniform(size=w.size)
    avg = torch.tensor(logp / space.lengths)
    trl = p * losses.simpo_loss(avg[w], avg[l], beta).numpy()
    trl += (1 - p) * losses.simpo_loss(avg[l], avg[w], beta).numpy()
    got = lengthnorm.pair_cross_entropy(beta * logp / space.lengths, w, l, p)
    assert abs(got - trl.mean()) < 1e-12


def test_stratified_support_takes_a_share_of_every_length():
    lengths = SequenceSpace(3, 4).lengths
    s = lengthnorm.stratified_support(lengths, 0.5, np.random.default_rng(0))
    counts = np.bincount(lengths[s], minlength=5)[1:]
    np.testing.assert_array_equal(counts, [1, 1, 2, 12])
    assert np.all(np.diff(s) > 0)


@pytest.mark.parametrize("constant", [False, True])
def test_support_fits_are_a_family_of_equal_loss(constant):
    space, beta = SequenceSpace(3, 4), 2.0
    rng = np.random.default_rng(7)
    r, lengths = rng.standard_normal(space.size), space.lengths
    temps = np.full(space.size, 0.5) if constant else beta / lengths
    support = lengthnorm.stratified_support(lengths, 0.5, rng)
    w, l = lengthnorm.oriented_pairs(r)
    inside = np.isin(w, support) & np.isin(l, support)
    w, l = w[inside], l[inside]
    p = exact.bt_prob(r[w], r[l])
    top, c_max = lengthnorm.support_fit(r, temps, support)
    assert abs(np.exp(top[support]).sum() - 1.0) < 1e-12  # c_max: all mass on the support
    lower, c = lengthnorm.support_fit(r, temps, support, c_max - 0.7)
    assert c == c_max - 0.7 and abs(np.exp(lower).sum() - 1.0) < 1e-12
    np.testing.assert_allclose(temps[support] * lower[support] - r[support], c, atol=1e-12)
    loss = [lengthnorm.pair_cross_entropy(temps * x, w, l, p) for x in (top, lower)]
    assert abs(loss[0] - loss[1]) < 1e-12
    gap = lengthnorm.conditional_gap(top, lower, support)
    if constant:  # one temperature: the fits agree within the support
        assert gap < 1e-12
    else:  # SimPO: log pi(y|S) differs by the length prior 0.7/beta per token, renormalised
        prior = 0.7 / beta * lengths[support] + np.log(np.exp(lower[support]).sum())
        assert abs(gap - np.max(np.abs(prior))) < 1e-12 and gap > 0.1
        # and they are minimisers: L-BFGS from a random start reaches the same loss
        fit = lengthnorm.fit_simpo(lengths, beta, w, l, p, rng.standard_normal(space.size))
        assert abs(lengthnorm.pair_cross_entropy(temps * fit, w, l, p) - loss[0]) < 1e-9
    with pytest.raises(ValueError, match="c"):
        lengthnorm.support_fit(r, temps, support, c_max + 0.1)


def test_fit_simpo_on_every_pair_recovers_the_jprime_optimum():
    space, beta = SequenceSpace(3, 4), 2.0
    rng = np.random.default_rng(8)
    r = rng.standard_normal(space.size)
    w, l = lengthnorm.oriented_pairs(r)
    fit = lengthnorm.fit_simpo(
        space.lengths, beta, w, l, exact.bt_prob(r[w], r[l]), rng.standard_normal(space.size)
    )
    pi, _ = lengthnorm.simpo_optimum(r, space.lengths, beta)
    assert np.max(np.abs(fit - np.log(pi))) < 1e-5
