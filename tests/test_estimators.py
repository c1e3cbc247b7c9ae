"""KL and entropy estimators (rlhf_nb.theory.estimators) against exact sums, closed-form
gradients and large-sample Monte Carlo."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_nb.theory import estimators as est
from rlhf_nb.theory.sequences import SequenceSpace

FAST = settings(max_examples=40, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def pair(seed, n, spread=1.0):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(n, spread))
    q = rng.dirichlet(np.full(n, spread))
    return np.maximum(p, 1e-12) / np.maximum(p, 1e-12).sum(), q


@FAST
@given(seed=seeds, n=st.integers(2, 10))
def test_estimator_values_and_exact_moments(seed, n):
    p, q = pair(seed, n)
    lp, lq = np.log(p), np.log(q)
    np.testing.assert_allclose(est.k1(lp, lq), np.log(p / q), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(est.k2(lp, lq), 0.5 * np.log(p / q) ** 2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(est.k3(lp, lq), q / p - 1 - np.log(q / p), rtol=1e-9, atol=1e-12)
    assert np.all(est.k3(lp, lq) >= 0)
    kl = est.exact_kl(p, q)
    assert abs(kl - np.sum(p * np.log(p / q))) < 1e-12
    m = est.estimator_moments(p, q)
    assert abs(m["k1"][0] - kl) < 1e-9 and abs(m["k3"][0] - kl) < 1e-9  # unbiased
    # second formula for the variances: E[k^2] - E[k]^2
    for name, k in (("k1", est.k1), ("k2", est.k2), ("k3", est.k3)):
        v = k(lp, lq)
        assert abs(m[name][1] - (p @ v**2 - (p @ v) ** 2)) < 1e-9 * max(1.0, p @ v**2)


def test_torch_and_numpy_agree_and_shapes_checked():
    lp, lq = np.log([0.2, 0.8]), np.log([0.5, 0.5])
    for k in (est.k1, est.k2, est.k3):
        np.testing.assert_allclose(
            k(torch.tensor(lp), torch.tensor(lq)).numpy(), k(lp, lq), rtol=1e-12
        )
    with pytest.raises(ValueError, match="logp and ref_logp"):
        est.k3(lp, lq[:1])


def test_monte_carlo_means_match_exact_moments():
    p, q = pair(3, 6)
    rng = np.random.default_rng(0)
    y = rng.choice(6, size=200_000, p=p)
    m = est.estimator_moments(p, q)
    for name, k in (("k1", est.k1), ("k2", est.k2), ("k3", est.k3)):
        mean, var = m[name]
        assert abs(k(np.log(p[y]), np.log(q[y])).mean() - mean) < 5 * np.sqrt(var / y.size)


@FAST
@given(seed=seeds, n=st.integers(2, 8))
def test_kl_gradient_placements(seed, n):
    rng = np.random.default_rng(seed)
    theta = torch.tensor(rng.standard_normal(n), dtype=torch.float64)
    ref_logp = torch.log_softmax(torch.tensor(rng.standard_normal(n), dtype=torch.float64), 0)
    pi = torch.softmax(theta, 0)
    kl = (pi * (pi.log() - ref_logp)).sum()
    closed_form = pi * (pi.log() - ref_logp - kl)  # d KL(pi||ref) / d theta, by hand
    true = est.true_kl_gradient(theta, ref_logp)
    torch.testing.assert_close(true, closed_form, rtol=0, atol=1e-12)
    forward = est.true_kl_gradient(theta, ref_logp, "forward")
    torch.testing.assert_close(forward, pi - ref_logp.exp(), rtol=0, atol=1e-12)

    def g(k, where):
        return est.kl_gradient(theta, ref_logp, k, where)

    torch.testing.assert_close(g("k1", "reward"), true, rtol=0, atol=1e-12)  # REINFORCE on k1
    torch.testing.assert_close(g("k2", "loss"), true, rtol=0, atol=1e-12)  # k2 as a loss
    torch.testing.assert_close(
        g("k1", "loss"), torch.zeros(n, dtype=torch.float64), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(g("k3", "loss"), forward, rtol=0, atol=1e-12)  # forward KL!


@FAST
@given(seed=seeds, V=st.integers(2, 4), L=st.integers(1, 4))
def test_entropy_estimators_are_unbiased(seed, V, L):
    space = SequenceSpace(V, L)
    logits = space.random_logits(np.random.default_rng(seed), scale=1.5)
    p, H = space.probs(logits), space.entropy(logits)
    seq = est.sequence_entropy_sample(space.log_probs(logits))
    tok = est.token_entropy_sum(space.step_logits(logits), space.mask)
    assert abs(p @ seq - H) < 1e-9 and abs(p @ tok - H) < 1e-9  # exact expectations over y ~ pi
    tok_t = est.token_entropy_sum(torch.tensor(space.step_logits(logits)), torch.tensor(space.mask))
    np.testing.assert_allclose(tok_t.numpy(), tok, rtol=1e-12, atol=1e-12)


@FAST
@given(seed=seeds, n=st.integers(2, 10), frac=st.floats(0.01, 0.95))
def test_path_point_at_kl_hits_the_target(seed, n, frac):
    rng = np.random.default_rng(seed)
    theta0, direction = rng.normal(0, 1, n), rng.normal(0, 1, n)
    limit = est.path_kl_limit(theta0, direction)
    ref = np.exp(theta0 - theta0.max()) / np.exp(theta0 - theta0.max()).sum()
    gap = np.diff(np.sort(direction))[-1]  # top minus runner-up: how fast pi_t concentrates
    z = theta0 + (60 / max(gap, 1e-9)) * direction
    far = np.exp(z - z.max())
    assert abs(est.exact_kl(far / far.sum(), ref) - limit) < 1e-6  # the limit is the t -> inf KL
    pi = est.path_point_at_kl(theta0, direction, frac * limit)
    assert abs(est.exact_kl(pi, ref) - frac * limit) < 1e-8
    with pytest.raises(ValueError, match="kl must be in"):
        est.path_point_at_kl(theta0, direction, limit * 1.01)


def test_moments_on_random_paths_table():
    table = est.moments_on_random_paths(
        [0.01, 1.0], n_paths=5, size=6, rng=np.random.default_rng(0)
    )
    assert set(table.estimator) == {"k1", "k2", "k3"}
    assert table.query("estimator != 'k2'").bias.abs().max() < 1e-9  # k1, k3 unbiased
    assert (table.groupby(["kl", "estimator"]).path.count() <= 5).all()
    summary = est.paths_summary(table)
    assert list(summary.index) == [0.01, 1.0] and summary.loc[0.01, "paths"] == 5
    near = table[(table.kl == 0.01)].pivot(index="path", columns="estimator", values="std")
    assert summary.loc[0.01, "sd k3/sd k1"] == pytest.approx((near.k3 / near.k1).median())
    assert summary.loc[0.01, "share k3 noisier"] == 0.0  # k3 is the quieter one near ref
    with pytest.raises(ValueError, match="n_paths"):
        est.moments_on_random_paths([1.0], n_paths=0, size=6, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="kls"):
        est.moments_on_random_paths([0.0], n_paths=2, size=6, rng=np.random.default_rng(0))
