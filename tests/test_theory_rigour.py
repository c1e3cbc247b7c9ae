"""Issue 25's theory, each result against an independent computation: what the loop's detached
surrogates ascend (rlhf_nb.theory.surrogates), the uniform anchors, the exact Goodhart
criterion, heavy-tailed proxy error, the combined optimum as KL-RL towards a tempered
reference, best-of-n's KL on a finite space, the entropy covariance law and the large-α
length limits."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_nb.theory import exact, frontier, heavy_tails, lengthnorm
from rlhf_nb.theory import surrogates as su
from rlhf_nb.theory.sequences import SequenceSpace, large_alpha_no_eos_share, truncated_share

FAST = settings(max_examples=15, deadline=None)
seeds = st.integers(0, 2**31 - 1)
SPACE = SequenceSpace(4, 4)  # the issue's V = 4, L = 4 space: 121 sequences


def _numeric_objective_grad(space, logits, f, eps=1e-6, n_coords=6, seed=0):
    """Central differences of E_π[f(log π, |y|)] on a few logits, through the NumPy route
    (SequenceSpace.log_probs), independent of the torch surrogates."""
    rng = np.random.default_rng(seed)
    coords = [tuple(rng.integers(0, s) for s in space.shape) for _ in range(n_coords)]

    def value(lg):
        lp = space.log_probs(lg)
        return float(np.exp(lp) @ f(lp, space.lengths))

    out = []
    for c in coords:
        up, dn = logits.copy(), logits.copy()
        up[c] += eps
        dn[c] -= eps
        out.append((value(up) - value(dn)) / (2 * eps))
    return coords, np.array(out)


@FAST
@given(seed=seeds, alpha=st.floats(0.05, 2.0))
def test_entropy_norm_loop_ascends_j_prime_not_the_documented_objective(seed, alpha):
    rng = np.random.default_rng(seed)
    logits, r = SPACE.random_logits(rng), rng.normal(0, 1, SPACE.size)
    g = su.entropy_norm_gradients(SPACE, logits, r, alpha)
    assert su.relative_error(g["loop"], g["j_prime"]) < 1e-10
    # the documented objective differs by ∇E[α/|y|] = E[(α/|y|)∇log π], not zero here
    assert su.relative_error(g["loop"], g["documented"]) > 1e-3
    # J′'s gradient against finite differences of the NumPy enumeration
    coords, fd = _numeric_objective_grad(
        SPACE, logits, lambda lp, n: r + alpha / n * (1 - lp), seed=seed % 1000
    )
    np.testing.assert_allclose([g["j_prime"][c].item() for c in coords], fd, atol=1e-7)


def test_entropy_norm_with_equal_lengths_is_the_documented_objective():
    space = SequenceSpace(4, 1)  # every response has one token: α/|y| is one constant
    rng = np.random.default_rng(0)
    logits, r = space.random_logits(rng), rng.normal(0, 1, space.size)
    g = su.entropy_norm_gradients(space, logits, r, 0.7)
    assert su.relative_error(g["loop"], g["documented"]) < 1e-12
    assert su.relative_error(g["documented"], g["j_prime"]) < 1e-12


def test_the_issue_instance_relative_errors():
    """The issue's numbers are one draw; the gap to the documented objective is O(1)."""
    rng = np.random.default_rng(0)
    logits, r = SPACE.random_logits(rng), rng.normal(0, 1, SPACE.size)
    g = su.entropy_norm_gradients(SPACE, logits, r, 0.7)
    assert su.relative_error(g["loop"], g["j_prime"]) < 1e-14
    assert 0.2 < su.relative_error(g["loop"], g["documented"]) < 2.0


@FAST
@given(seed=seeds, scale=st.floats(0.2, 2.0))
def test_kl_placements_on_sequences(seed, scale):
    rng = np.random.default_rng(seed)
    ref = SPACE.random_logits(rng)
    pi = ref + SPACE.random_logits(rng, scale)
    t = su.kl_placements_table(SPACE, pi, ref)
    assert t.loc[("k1", "reward"), "rel_error_sequence"] < 1e-10  # exact: the loop's ``kl``
    assert t.loc[("k2", "loss"), "rel_error_state_frozen"] < 1e-10
    assert t.loc[("k3", "loss"), "rel_error_state_frozen_forward"] < 1e-10
    assert t.loc[("k1", "loss"), "rel_error_sequence"] == pytest.approx(1.0, abs=1e-10)  # zero


def test_sequence_kl_gradient_is_state_frozen_plus_the_state_distribution_term():
    rng = np.random.default_rng(3)
    ref, pi = SPACE.random_logits(rng), SPACE.random_logits(rng)
    seq = su.kl_target_gradient(SPACE, pi, ref, "sequence")
    frozen = su.kl_target_gradient(SPACE, pi, ref, "state_frozen")
    # independent: ∇ Σ_s ρ_θ(s)·sg[KL_s], the mass moved between states
    theta = torch.tensor(pi, requires_grad=True)
    tok, ref_tok = torch.log_softmax(theta, 1), torch.log_softmax(torch.tensor(ref), 1)
    kl_s = (tok.exp() * (tok - ref_tok)).sum(1).detach()
    rho = su.sequence_log_probs(SPACE, theta).exp() @ torch.tensor(SPACE.visits)
    (moved,) = torch.autograd.grad((rho * kl_s).sum(), theta)
    assert su.relative_error(frozen + moved, seq) < 1e-12
    assert su.relative_error(frozen, seq) > 0.05


def test_one_step_space_makes_every_state_frozen_gradient_exact():
    """On one state (a categorical, chapter 03 §2) the state distribution cannot move."""
    space = SequenceSpace(5, 1)
    rng = np.random.default_rng(1)
    ref, pi = space.random_logits(rng), space.random_logits(rng)
    t = su.kl_placements_table(space, pi, ref)
    assert t.loc[("k2", "loss"), "rel_error_sequence"] < 1e-12
    assert t.loc[("k3", "loss"), "rel_error_sequence_forward"] < 1e-12


def test_placement_cosines_near_and_far():
    near = su.placement_cosines(SPACE, n_pairs=8, scale=0.3, rng=np.random.default_rng(0))
    np.testing.assert_allclose(near.cos_k2_loss, near.cos_frozen, atol=1e-12)
    assert near.cos_k2_loss.min() > 0.9  # near the reference the missing term is small
    far = su.placement_cosines(SPACE, n_pairs=32, scale=2.0, rng=np.random.default_rng(0))
    assert far.cos_k2_loss.min() < 0.5  # far away it can point elsewhere (measured < 0)


def test_uniform_anchors_per_token_and_per_response():
    """KL(π‖U_tok) = −H + log V·E|y|; the optimum of E r − β·KL(π‖U_tok) is MaxEnt with a length
    cost β·log V per token; MaxEnt's own anchor is the uniform law over responses."""
    from rlhf_nb.methods.rloo import mixed_reference

    space, beta = SequenceSpace(4, 5), 0.3
    rng = np.random.default_rng(0)
    logits, r = space.random_logits(rng), rng.normal(0, 1, space.size)
    V = space.vocab_size
    u_tok = space.probs(space.uniform_logits())
    lp = space.log_probs(logits)
    p = np.exp(lp)
    kl_tok = p @ (lp + np.log(V) * space.lengths)  # what λ = 0 sums per token, in expectation
    assert abs(exact.kl_divergence(p, u_tok) - kl_tok) < 1e-12
    assert (
        abs(kl_tok - (-space.entropy(logits) + np.log(V) * space.expected_length(logits))) < 1e-12
    )
    # the loop's λ = 0 reference is log(1/V) on every token
    steps = torch.tensor(space.token_log_probs(logits)[space.step_prefix, space.step_token])
    assert torch.allclose(mixed_reference(steps, 0.0, V), torch.full_like(steps, -np.log(V)))
    towards_u_tok = exact.kl_policy(r, u_tok, beta)
    maxent_plus_length = exact.maxent_policy(r - beta * np.log(V) * space.lengths, beta)
    assert np.max(np.abs(towards_u_tok - maxent_plus_length)) < 1e-12
    uniform = np.full(space.size, 1.0 / space.size)
    assert np.max(np.abs(exact.kl_policy(r, uniform, beta) - exact.maxent_policy(r, beta))) < 1e-12
    assert np.max(np.abs(towards_u_tok - exact.maxent_policy(r, beta))) > 0.01


def test_uniform_policy_makes_the_surprisal_the_lower_variance_entropy_estimator():
    from rlhf_nb.theory import estimators

    space = SequenceSpace(4, 5)
    logits = space.logits_from_probs(np.full(space.size, 1.0 / space.size))
    p, H = space.probs(logits), space.entropy(logits)
    surprisal = estimators.sequence_entropy_sample(space.log_probs(logits))
    token_sum = estimators.token_entropy_sum(space.step_logits(logits), space.mask)
    assert abs(p @ token_sum - H) < 1e-12
    assert np.sqrt(p @ (surprisal - H) ** 2) < 1e-12 < 0.5 < np.sqrt(p @ (token_sum - H) ** 2)


@pytest.mark.parametrize("family", frontier.GOODHART_FAMILIES)
@pytest.mark.parametrize("length_bonus", [0.4, 0.0])
def test_goodhart_slope_is_the_derivative_and_its_root_the_grid_argmax(family, length_bonus):
    problem = frontier.misspecified_problem(length_bonus=length_bonus)
    for s in (0.3, 2.0, 7.0):
        h = 1e-5
        up = frontier.goodhart_policy(problem, family, s + h) @ problem.gold
        dn = frontier.goodhart_policy(problem, family, s - h) @ problem.gold
        slope = frontier.goodhart_slope(frontier.goodhart_policy(problem, family, s),
                                        problem.gold, problem.proxy)  # fmt: skip
        assert abs((up - dn) / (2 * h) - slope) < 1e-7
    peak = frontier.goodhart_peak(problem, family)
    coefs = np.geomspace(1e2, 1e-2, 4001)
    pols = frontier.family_policies(problem, family, coefs)
    golds = np.array([p @ problem.gold for p in pols])
    i = int(np.argmax(golds))
    assert peak.gold >= golds[i] - 1e-12
    assert abs(np.log(peak.coef / coefs[i])) <= np.log(coefs[0] / coefs[1]) + 1e-9
    if family in ("kl", "maxent") and length_bonus > 0:
        assert peak.interior  # the misspecified proxy: gold rises, peaks, falls
    if length_bonus == 0 and family == "kl":
        assert not peak.interior and peak.coef == pytest.approx(1e-2)  # honest: monotone


def test_honest_proxy_maxent_gold_is_monotone_in_alpha():
    honest = frontier.misspecified_problem(length_bonus=0.0)
    alphas = np.geomspace(1e2, 1e-2, 200)
    golds = [p @ honest.gold for p in frontier.family_policies(honest, "maxent", alphas)]
    assert np.all(np.diff(golds) > -1e-12)  # gold only rises as α falls: no over-optimisation


def test_tempered_reference_identity_and_the_combined_optimum():
    problem = frontier.misspecified_problem()
    r, ref = problem.proxy, problem.ref
    rng = np.random.default_rng(0)
    for alpha, beta in ((0.2, 0.2), (1.0, 0.3), (0.05, 2.0)):
        ref_t, log_z = frontier.tempered_reference(ref, alpha, beta)
        for q in rng.dirichlet(np.ones(ref.size), size=5):
            lhs = frontier.combined_objective(q, r, ref, alpha, beta)
            rhs = q @ r - (alpha + beta) * exact.kl_divergence(q, ref_t) + (alpha + beta) * log_z
            assert abs(lhs - rhs) < 1e-10
        pi = frontier.combined_policy(r, ref, alpha, beta)
        assert np.max(np.abs(pi - exact.kl_policy(r, ref_t, alpha + beta))) < 1e-12
        lengths = problem.space.lengths
        assert ref_t @ lengths > ref @ lengths  # the tempered anchor is long-biased here


def test_bon_kl_on_a_finite_space_stays_below_the_bound_and_saturates():
    rng = np.random.default_rng(0)
    ref, score = rng.dirichlet(np.ones(50)), rng.normal(size=50)  # distinct scores
    top = -np.log(ref[np.argmax(score)])
    for n in (2, 4, 16, 256):
        kl = exact.kl_divergence(frontier.best_of_n(ref, score, n), ref)
        assert kl < frontier.bon_kl_bound(n) - 1e-6 and kl < top
    big = exact.kl_divergence(frontier.best_of_n(ref, score, 1 << 20), ref)
    assert abs(big - top) < 1e-9 and frontier.bon_kl_bound(1 << 20) > 3 * top


def test_heavy_tailed_errors_share_ranks_and_bulk():
    u = np.random.default_rng(0).uniform(size=500)
    light, heavy = (heavy_tails.tailed_errors(u, df, 0.3) for df in (np.inf, 1.0))
    assert np.median(np.abs(light)) == pytest.approx(0.3) == np.median(np.abs(heavy))
    assert (np.argsort(light) == np.argsort(heavy)).all()
    assert np.abs(heavy).max() > 10 * np.abs(light).max()


def test_catastrophic_goodhart_on_the_exact_plane():
    problem = frontier.misspecified_problem(length_bonus=0.0)
    table = heavy_tails.catastrophic_goodhart(problem, dfs=[np.inf, 1.0], kls=[1.0], scale=0.3,
                                              n_draws=32, rng=np.random.default_rng(0))  # fmt: skip
    pi = heavy_tails.at_kl_budget(heavy_tails.with_error(problem, np.zeros(problem.gold.size)), 1.0)
    assert abs(exact.kl_divergence(pi, problem.ref) - 1.0) < 1e-9
    s = heavy_tails.tail_summary(table).xs(1.0, level="kl")
    light, heavy = s.loc[np.inf], s.loc[1.0]
    # measured over 128 draws: light median 0.39 (5 % 0.25), none losing gold; Cauchy median
    # −0.05, 59 % losing gold, proxy gain 11 vs 0.8
    assert light["gold gain 5%"] > 0.1 and light["share losing gold"] == 0
    assert heavy["gold gain (median)"] < 0.25 * light["gold gain (median)"]
    assert heavy["share losing gold"] > 0.25
    assert heavy["proxy gain (median)"] > 4 * light["proxy gain (median)"]


def test_entropy_covariance_law_step_by_step():
    rng = np.random.default_rng(0)
    r, z0 = rng.normal(0, 1.5, 8), rng.normal(0, 1, 8)
    errs = []
    for lr in (0.1, 0.05):
        d = exact.entropy_steps(r, z0, alpha=1.0, lr=lr, steps=int(4 / lr))
        errs.append((d.dH - d.predicted).abs().max())
        np.testing.assert_allclose(d.reward_term + d.bonus_term, d.predicted, atol=1e-14)
    assert 3.0 < errs[0] / errs[1] < 5.0  # the remainder is second order in the step
    long = exact.entropy_steps(r, z0, alpha=1.0, lr=0.2, steps=400)
    assert abs(long.entropy.iloc[-1] - exact.entropy(exact.maxent_policy(r, 1.0))) < 1e-9
    vanilla = exact.entropy_steps(r, z0, alpha=0.0, lr=0.05, steps=10, kind="vanilla")
    assert (vanilla.dH - vanilla.predicted).abs().max() < 0.05 * vanilla.dH.abs().max()


def test_large_alpha_no_eos_shares_against_exact_optima():
    space, alpha = SequenceSpace(4, 5), 1e5
    first = np.array([y[0] for y in space.sequences])
    r = (first == 1) - 0.15 * space.lengths
    no_eos = np.array([y[-1] != 0 for y in space.sequences])
    optima = {
        "sequence": exact.maxent_policy(r, alpha),
        "length": exact.maxent_policy(r - alpha * np.log(4) * space.lengths, alpha),
        "token_averaged": lengthnorm.length_normalised_optimum(r, space.lengths, alpha)[0],
    }
    for bonus, p in optima.items():
        assert abs(p[no_eos].sum() - large_alpha_no_eos_share(4, 5, bonus)) < 1e-4, bonus
    assert large_alpha_no_eos_share(84, 16, "sequence") == truncated_share(84, 16)
    shares = [large_alpha_no_eos_share(84, 16, b) for b in ("sequence", "length", "token_averaged")]
    assert shares == pytest.approx([0.988, 0.826, 0.883], abs=1e-3)


def test_runaway_temperature_flattens_the_length_law():
    from rlhf_nb.theory.sequences import runaway_temperature

    space, cost = SequenceSpace(4, 5), 0.15
    first = np.array([y[0] for y in space.sequences])
    r = (first == 1) - cost * space.lengths
    p = exact.maxent_policy(r, runaway_temperature(cost, 4))
    masses = [p[(first == 1) & (space.lengths == n)].sum() for n in range(2, 5)]
    assert np.ptp(masses) < 1e-12 * np.mean(masses)
    for factor, sign in ((0.8, -1), (1.25, 1)):  # decays below α*, grows above
        q = exact.maxent_policy(r, factor * runaway_temperature(cost, 4))
        m = [q[(first == 1) & (space.lengths == n)].sum() for n in range(2, 5)]
        assert np.all(sign * np.diff(m) > 0)
