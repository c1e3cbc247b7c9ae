"""Exact quantities (rlhf_nb.theory.exact, .sequences, .lengthnorm), each against an independent
route: brute-force enumeration, a second formula, or random competitors."""

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_nb.theory import exact, lengthnorm
from rlhf_nb.theory.sequences import EOS, SequenceSpace

FAST = settings(max_examples=40, deadline=None)
temps = st.floats(0.05, 20.0)
sizes = st.integers(1, 12)
seeds = st.integers(0, 2**31 - 1)


def rewards(seed, n, scale=3.0):
    return scale * np.random.default_rng(seed).standard_normal(n)


def random_simplex(rng, n, k):
    return rng.dirichlet(np.full(n, 0.5), size=k)


# ---- categorical MaxEnt and KL-regularised optima -------------------------------------------


@FAST
@given(seed=seeds, n=sizes, alpha=temps)
def test_maxent_policy_is_gibbs_and_beats_random_policies(seed, n, alpha):
    r = rewards(seed, n)
    pi = exact.maxent_policy(r, alpha)
    w = np.exp(r / alpha - r.max() / alpha)  # direct formula, shifted
    np.testing.assert_allclose(pi, w / w.sum(), rtol=1e-12, atol=1e-300)
    best = exact.maxent_objective(pi, r, alpha)
    # Gibbs variational principle: the optimum's value is alpha log Z ...
    assert abs(best - exact.soft_value(r, alpha)) < 1e-9 * max(1.0, abs(best))
    # ... and J(q) = V* - alpha KL(q || pi*) for every q, so nothing beats it
    for q in random_simplex(np.random.default_rng(seed), n, 50):
        jq = exact.maxent_objective(q, r, alpha)
        assert abs(jq - (best - alpha * exact.kl_divergence(q, pi))) < 1e-9 * max(1.0, abs(best))
        assert jq <= best + 1e-12


@FAST
@given(seed=seeds, n=st.integers(2, 12), beta=temps)
def test_kl_policy_optimum_and_uniform_reference_is_maxent(seed, n, beta):
    rng = np.random.default_rng(seed)
    r, ref = rewards(seed, n), rng.dirichlet(np.ones(n))
    pi = exact.kl_policy(r, ref, beta)
    w = ref * np.exp((r - r.max()) / beta)
    np.testing.assert_allclose(pi, w / w.sum(), rtol=1e-10)
    best = exact.kl_objective(pi, r, ref, beta)
    assert abs(best - beta * np.log(np.sum(ref * np.exp(r / beta)))) < 1e-9 * max(1.0, abs(best))
    for q in random_simplex(rng, n, 30):
        assert exact.kl_objective(q, r, ref, beta) <= best + 1e-12
    # H(pi) = log n - KL(pi || uniform): MaxEnt is KL-regularised RL towards uniform
    u = np.full(n, 1.0 / n)
    np.testing.assert_allclose(
        exact.kl_policy(r, u, beta), exact.maxent_policy(r, beta), rtol=1e-12
    )
    q = random_simplex(rng, n, 1)[0]
    assert abs(exact.entropy(q) - (np.log(n) - exact.kl_divergence(q, u))) < 1e-12


def test_temperature_limits():
    r = np.array([1.0, 3.0, 2.0, 3.0 - 1e-3])
    assert exact.maxent_policy(r, 1e-5)[1] > 1 - 1e-12  # alpha -> 0: argmax
    np.testing.assert_allclose(exact.maxent_policy(r, 1e9), 0.25, atol=1e-8)  # alpha -> inf


@FAST
@given(seed=seeds, n=st.integers(2, 10), alpha=st.floats(0.1, 10.0))
def test_closest_maxent_temperature(seed, n, alpha):
    r = rewards(seed, n)
    # a reference on the MaxEnt family is reached exactly, at its own temperature
    on_family = exact.maxent_policy(r, alpha)
    a, kl = exact.closest_maxent_temperature(r, on_family)
    assert abs(kl) < 1e-10 and np.max(np.abs(exact.maxent_policy(r, a) - on_family)) < 1e-5
    # any other reference: no better than the family's closest point on a dense grid
    ref = random_simplex(np.random.default_rng(seed), n, 1)[0]
    a, kl = exact.closest_maxent_temperature(r, ref)
    grid = np.geomspace(1e-3, 1e3, 2001)
    brute = min(exact.kl_divergence(exact.maxent_policy(r, g), ref) for g in grid)
    assert kl <= brute + 1e-9 and 1e-3 <= a <= 1e3
    assert abs(kl - exact.kl_divergence(exact.maxent_policy(r, a), ref)) < 1e-12


@FAST
@given(seed=seeds, n=st.integers(2, 6), k=st.integers(1, 6))
def test_plackett_luce_against_enumerated_sequential_choice(seed, n, k):
    k = min(k, n)
    r = rewards(seed, n)
    ranking = np.random.default_rng(seed).permutation(n)[:k]
    logp, left = 0.0, list(range(n))
    for i in ranking:  # choose each ranked item from those still left
        logp += r[i] - math.log(sum(math.exp(r[j]) for j in left))
        left.remove(i)
    assert abs(exact.pl_log_prob(r, ranking) - logp) < 1e-9
    # full rankings form a distribution; K = 2 of n = 2 is Bradley-Terry
    if n <= 4:
        total = sum(
            math.exp(exact.pl_log_prob(r, list(p))) for p in itertools.permutations(range(n))
        )
        assert abs(total - 1.0) < 1e-12
    assert abs(exact.pl_log_prob(r[:2], [0, 1]) - math.log(exact.bt_prob(r[0], r[1]))) < 1e-12


@FAST
@given(seed=seeds, n=sizes, alpha=temps)
def test_implied_reward_inverts_maxent_policy(seed, n, alpha):
    r = rewards(seed, n, scale=1.0)
    pi = exact.maxent_policy(r, alpha)
    log_z = exact.soft_value(r, alpha) / alpha
    np.testing.assert_allclose(exact.implied_reward(pi, alpha, log_z), r, atol=1e-9)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: exact.maxent_policy([1.0, 2.0], 0.0), "alpha"),
        (lambda: exact.soft_value([1.0], -1.0), "alpha"),
        (lambda: exact.kl_policy([1.0, 2.0], [0.5, 0.6], 1.0), "ref"),
        (lambda: exact.kl_policy([1.0, 2.0, 3.0], [0.5, 0.5], 1.0), "r"),
        (lambda: exact.maxent_objective([0.5, 0.5], [[1.0, 2.0]], 1.0), "r"),
        (lambda: exact.pl_log_prob([1.0, 2.0], [0, 0]), "ranking"),
        (lambda: exact.closest_maxent_temperature([1.0, 2.0], [0.5, 0.5], 2.0, 1.0), "alpha_max"),
        (lambda: SequenceSpace(1, 3), "vocab_size"),
        (lambda: lengthnorm.length_normalised_optimum([1.0], [0], 1.0), "lengths"),
        (lambda: lengthnorm.simpo_residual([1.0, 2.0], [1, 2], 1.0, 0, 5), "l"),
    ],
)
def test_bad_inputs_name_the_parameter(call, name):
    with pytest.raises(ValueError, match=rf"^{name} "):
        call()


# ---- the enumerable sequence space ----------------------------------------------------------


def brute_force_probs(space, logits):
    """Walk each sequence token by token with an explicit softmax (no index tables)."""
    index = {p: i for i, p in enumerate(space.prefixes)}
    out = []
    for y in space.sequences:
        p = 1.0
        for t, tok in enumerate(y):
            row = logits[index[y[:t]]]
            p *= math.exp(row[tok]) / sum(math.exp(v) for v in row)
        out.append(p)
    return np.array(out)


@FAST
@given(seed=seeds, V=st.integers(2, 4), L=st.integers(1, 4))
def test_sequence_space_enumeration(seed, V, L):
    space = SequenceSpace(V, L)
    assert space.size == sum((V - 1) ** (n - 1) for n in range(1, L + 1)) + (V - 1) ** L
    assert len(set(space.sequences)) == space.size
    for y in space.sequences:  # ends in EOS, or is truncated at L with no EOS
        assert (y[-1] == EOS and EOS not in y[:-1]) or (len(y) == L and EOS not in y)
    rng = np.random.default_rng(seed)
    logits = space.random_logits(rng, scale=2.0)
    p = space.probs(logits)
    np.testing.assert_allclose(p, brute_force_probs(space, logits), rtol=1e-10)
    assert abs(p.sum() - 1.0) < 1e-12
    u = space.probs(space.uniform_logits())
    np.testing.assert_allclose(u, float(V) ** -space.lengths, rtol=1e-12)  # U(y) = V^-|y|
    # entropy: enumeration vs chain rule over prefixes; expected length vs reach probabilities
    assert abs(space.entropy(logits) - space.token_entropy(logits)) < 1e-9
    assert abs(space.expected_length(logits) - space.reach_probs(logits).sum()) < 1e-9
    # KL between two policies: enumeration vs chain rule (reach-weighted per-prefix KL)
    other = space.random_logits(rng)
    lp, lq = space.token_log_probs(logits), space.token_log_probs(other)
    chain = space.reach_probs(logits) @ np.sum(np.exp(lp) * (lp - lq), axis=1)
    assert abs(space.kl(logits, other) - chain) < 1e-9
    # any distribution over sequences is an autoregressive policy
    target = rng.dirichlet(np.full(space.size, 0.3))
    np.testing.assert_allclose(space.probs(space.logits_from_probs(target)), target, atol=1e-12)


def test_sequence_maxent_optimum_over_policies():
    space = SequenceSpace(3, 3)
    rng = np.random.default_rng(0)
    r, alpha = rng.standard_normal(space.size), 0.7
    opt = space.logits_from_probs(exact.maxent_policy(r, alpha))
    best = space.probs(opt) @ r + alpha * space.entropy(opt)
    assert abs(best - alpha * space.log_partition(r, alpha)) < 1e-9
    for _ in range(200):
        lg = space.random_logits(rng, scale=3.0)
        assert space.probs(lg) @ r + alpha * space.entropy(lg) < best


# ---- SimPO's length-normalised temperature --------------------------------------------------


@FAST
@given(seed=seeds, n=st.integers(2, 30), beta=temps, max_len=st.integers(1, 8))
def test_simpo_residual_is_what_the_substitution_leaves(seed, n, beta, max_len):
    rng = np.random.default_rng(seed)
    r, lengths = rewards(seed, n, 1.0), rng.integers(1, max_len + 1, n)
    pi_g, log_z = lengthnorm.substituted_gibbs(r, lengths, beta)
    assert abs(log_z - math.log(sum(math.exp(lengths[i] * r[i] / beta) for i in range(n)))) < 1e-9
    w, l = rng.integers(0, n, 20), rng.integers(0, n, 20)
    gap = r[w] - r[l]
    logit = lengthnorm.simpo_logit(pi_g, lengths, beta, w, l)
    residual = lengthnorm.simpo_residual(r, lengths, beta, w, l)
    np.testing.assert_allclose(gap, logit + residual, atol=1e-9)
    same = lengths[w] == lengths[l]
    assert np.all(residual[same] == 0.0)
    assert np.all((np.abs(residual[~same]) > 0) == (log_z != 0))


def test_simpo_residual_on_the_sequence_space():
    space = SequenceSpace(3, 4)
    r = np.random.default_rng(1).standard_normal(space.size)
    short, long = int(np.argmin(space.lengths)), int(np.argmax(space.lengths))
    res = lengthnorm.simpo_residual(r, space.lengths, 1.0, short, long)
    assert abs(res) > 0.1  # lengths 1 and 4 differ: the log Z terms do not cancel
    same = np.flatnonzero(space.lengths == space.lengths[long])[:2]
    assert lengthnorm.simpo_residual(r, space.lengths, 1.0, same[0], same[1]) == 0.0


@FAST
@given(seed=seeds, n=st.integers(1, 40), beta=temps, max_len=st.integers(1, 8))
def test_length_normalised_optimum(seed, n, beta, max_len):
    rng = np.random.default_rng(seed)
    r, lengths = rewards(seed, n, 2.0), rng.integers(1, max_len + 1, n)
    pi, lam = lengthnorm.length_normalised_optimum(r, lengths, beta)
    assert abs(pi.sum() - 1.0) < 1e-12
    # stationarity: r - (beta/|y|)(log pi + 1) is the same constant lambda for every y
    # (checked where pi(y) is representable: at small beta some pi(y) underflow to 0.0)
    ok = pi > 1e-300
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose((r - beta / lengths * (np.log(pi) + 1.0))[ok], lam, atol=1e-9)
    best = lengthnorm.length_normalised_objective(pi, r, lengths, beta)
    for q in random_simplex(rng, n, 30):  # concave objective: no random policy beats it
        assert lengthnorm.length_normalised_objective(q, r, lengths, beta) <= best + 1e-9
    # lambda cancels: the Bradley-Terry logit is the reward gap, with the length offset
    w, l = rng.choice(np.flatnonzero(ok), 20), rng.choice(np.flatnonzero(ok), 20)
    np.testing.assert_allclose(
        lengthnorm.length_offset_logit(pi, lengths, beta, w, l), r[w] - r[l], atol=1e-9
    )


def test_length_normalised_optimum_equal_lengths_is_maxent():
    r = np.random.default_rng(2).standard_normal(9)
    pi, _ = lengthnorm.length_normalised_optimum(r, np.full(9, 3), 1.5)
    np.testing.assert_allclose(pi, exact.maxent_policy(r, 0.5), rtol=1e-12)  # alpha = beta/|y|


def test_simpo_logit_reads_only_the_pair_so_zeros_elsewhere_are_fine():
    pi, lengths = np.array([0.5, 0.5, 0.0]), np.array([2, 4, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no log(0) of the unread third response
        got = lengthnorm.simpo_logit(pi, lengths, 2.0, 0, 1)
    assert abs(got - (2.0 * np.log(0.5) / 2 - 2.0 * np.log(0.5) / 4)) < 1e-15
