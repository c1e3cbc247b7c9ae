"""Over-optimisation as a frontier, computed exactly on a finite response space (chapter 07).

The field states over-optimisation as gold reward against how far the policy moved,
d = √KL(π‖π_SFT) (Gao, Schulman & Hilton 2022). On a space small enough to enumerate, every
family of policies the book trains towards has a closed form, so its frontier is a curve we can
compute exactly — no sampling, float64:

* the **KL family** π_β ∝ π_SFT·exp(r/β) (β from ∞, where π = π_SFT and d = 0, down to 0);
* the **MaxEnt family** π_α ∝ exp(r/α) (α from ∞, where π is *uniform* — its "safe" end is not
  π_SFT, so it starts at d = √KL(uniform‖π_SFT) > 0 — down to 0);
* the **combined optimum** of E_π r + α·H(π) − β·KL(π‖π_SFT) (:func:`combined_policy`);
* **best-of-n** under a reward: sample n responses from π_SFT, keep the best
  (:func:`best_of_n`), with its exact KL next to the usual bound log n − (n−1)/n
  (:func:`bon_kl_bound`).

The combined optimum is KL-RL with coefficient α+β towards the tempered reference
π_SFT^{β/(α+β)} (:func:`tempered_reference`). Where gold peaks along a family is an exact root:
d E_{π_s}[gold]/ds = Cov_{π_s}(gold, proxy) for s = 1/β, 1/α or 1/(2t)
(:func:`goodhart_slope`, :func:`goodhart_peak`).

:func:`frontier` turns any list of policies into (d, gold, proxy) rows, and :func:`fit_gao`
fits Gao et al.'s functional forms to measured points. The empirical frontier of the testbed
runs (chapters 05–07) uses the same two functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from rlhf_nb.core import check_choice, check_int, check_range
from rlhf_nb.theory.exact import as_probs, as_vector, kl_divergence


def combined_policy(r, ref, alpha: float, beta: float) -> np.ndarray:
    """The optimum of  J(π) = E_π[r] + α·H(π) − β·KL(π‖ref)  over the simplex, α, β ≥ 0, α+β > 0.

    Derivation (Lagrange multiplier λ for Σ_y π(y) = 1): for every y with π(y) > 0,

        ∂J/∂π(y) = r(y) − α(log π(y) + 1) − β(log π(y) − log ref(y) + 1) = λ,

    so (α+β)·log π(y) = r(y) + β·log ref(y) + const, i.e.

        π*(y) ∝ ref(y)^{β/(α+β)} · exp(r(y)/(α+β)).

    β = 0 gives the MaxEnt optimum exp(r/α)/Z; α = 0 the KL optimum ref·exp(r/β)/Z. Responses
    with ref(y) = 0 keep π*(y) = 0 when β > 0 (KL would be infinite otherwise).
    :func:`stationarity_gap` checks the first-order condition numerically.

    Args: r, rewards (n,); ref, reference probabilities (n,); alpha, beta >= 0, not both 0.
    Returns π*, shape (n,).
    """
    r, ref = as_vector("r", r), as_probs("ref", ref, size=np.size(r))
    check_range("alpha", alpha, 0.0, None)
    check_range("beta", beta, 0.0, None)
    if alpha + beta <= 0:
        raise ValueError("alpha + beta must be > 0 (with both 0 the optimum is the argmax of r)")
    with np.errstate(divide="ignore"):
        log_ref = np.log(ref)
    logits = r / (alpha + beta) + (beta / (alpha + beta)) * log_ref if beta > 0 else r / alpha
    return np.exp(logits - logsumexp(logits))


def combined_objective(pi, r, ref, alpha: float, beta: float) -> float:
    """J(π) = E_π[r] + α·H(π) − β·KL(π‖ref), reward units (0·log 0 = 0)."""
    pi = as_probs("pi", pi)
    r = as_vector("r", r, size=pi.size)
    nz = pi > 0
    h = -float(np.sum(pi[nz] * np.log(pi[nz])))
    kl = kl_divergence(pi, ref) if beta > 0 else 0.0
    return float(pi @ r) + alpha * h - beta * kl


def stationarity_gap(pi, r, ref, alpha: float, beta: float) -> float:
    """max − min over the support of π of ∂J/∂π(y) (:func:`combined_policy`'s docstring): 0 at an
    interior stationary point of J on the simplex (reward units)."""
    pi, r = as_probs("pi", pi), as_vector("r", r)
    ref = as_probs("ref", ref, size=pi.size)
    s = pi > 0
    g = r[s] - alpha * (np.log(pi[s]) + 1) - beta * (np.log(pi[s]) - np.log(ref[s]) + 1)
    return float(g.max() - g.min())


def tempered_reference(ref, alpha: float, beta: float) -> tuple[np.ndarray, float]:
    """The reference the combined objective really anchors to: ref_τ = ref^τ / Z_τ, τ = β/(α+β),
    and log Z_τ (nats). With it, for every π (:func:`combined_policy`'s objective J),

        E_π[r] + α·H(π) − β·KL(π‖ref) = E_π[r] − (α+β)·KL(π‖ref_τ) + (α+β)·log Z_τ,

    since (α+β)·Σπ log(π/ref_τ) = (α+β)·Σπ log π − β·Σπ log ref + (α+β)·log Z_τ. So entropy +
    KL is KL-regularised RL with coefficient α+β towards the *tempered* reference, and
    ``combined_policy(r, ref, α, β) == exact.kl_policy(r, ref_τ, α+β)``. Tempering (τ < 1)
    flattens ref towards uniform; on a space where most responses are long and ref favours
    short ones, ref_τ is the longer — where the combined family sits on chapter 07's plane.

    Args: ref, probabilities (n,); alpha >= 0, beta > 0. Returns (ref_τ of shape (n,), log Z_τ).
    """
    ref = as_probs("ref", ref)
    check_range("alpha", alpha, 0.0, None)
    check_range("beta", beta, 0.0, None, low_inclusive=False)
    tau = beta / (alpha + beta)
    with np.errstate(divide="ignore"):
        z = tau * np.log(ref)
    log_z = float(logsumexp(z))
    return np.exp(z - log_z), log_z


def kl_family_kl_bound(r, ref, beta: float) -> float:
    """An upper bound on how far the KL-regularised optimum π_β ∝ ref·exp(r/β) moves from ref:

        KL(π_β‖ref) ≤ (E_{π_β}[r] − E_ref[r]) / β ≤ (max r − E_ref[r]) / β   (nats).

    Proof: KL(π_β‖ref) = E_{π_β}[r]/β − log E_ref[exp(r/β)], and by Jensen
    log E_ref[exp(r/β)] ≥ E_ref[r]/β. So a β-anchored run cannot drift further than the reward's
    range above the reference's mean, divided by β — whatever the optimiser does to reach it;
    the MaxEnt family has no such bound towards π_SFT (its α → ∞ end is the uniform policy).

    For a policy π that is *not* the optimum (a trained run), KL(π‖ref) ≤ (E_π r − E_ref r)/β
    is the same inequality as E_π r − β·KL(π‖ref) ≥ E_ref r: it holds exactly when the run has
    not lost ground on its own objective since ref. Checked on a run it is a certificate of
    that, not a prediction of how far the run will drift.
    Returns the outer bound (max r − E_ref r)/β."""
    r, ref = as_vector("r", r), as_probs("ref", ref, size=np.size(r))
    check_range("beta", beta, 0.0, None, low_inclusive=False)
    return float((r[ref > 0].max() - ref @ r) / beta)


def best_of_n(ref, score, n: int) -> np.ndarray:
    """The exact distribution of best-of-n: draw y_1…y_n iid from ``ref``, return the one with
    the highest ``score`` (ties broken uniformly among the tied draws).

    Sort the responses by score and let G be a group of equal scores, F(G) = P_ref(score ≤ s_G)
    and F⁻(G) = P_ref(score < s_G). The best draw lands in G with probability F(G)ⁿ − F⁻(G)ⁿ,
    and within G it is a draw from ref restricted to G, so

        π_n(y) = ref(y)/ref(G) · (F(G)ⁿ − F⁻(G)ⁿ),   y ∈ G.

    Args: ref, probabilities (n_y,); score, the reward it is scored by (n_y,); n >= 1 draws.
    """
    ref = as_probs("ref", ref)
    score = as_vector("score", score, size=ref.size)
    check_int("n", n, 1)
    out = np.zeros_like(ref)
    levels = np.unique(score[ref > 0])  # ascending
    below = 0.0
    for s in levels:
        group = (score == s) & (ref > 0)
        mass = ref[group].sum()
        upto = min(1.0, below + mass)
        out[group] = ref[group] / mass * (upto**n - below**n)
        below = upto
    return out / out.sum()


def bon_kl_bound(n: int) -> float:
    """log n − (n−1)/n nats: the KL(π_n‖ref) of best-of-n when the score's law under ref is
    atomless (a continuous score: no two draws ever tie), and an upper bound otherwise
    (Beirami et al. 2024).

    On a finite space it is never attained for n >= 2, even with distinct scores: each response
    is an atom, the exact KL (:func:`best_of_n` + ``kl_divergence``) lies strictly below the
    bound and saturates at −log P_ref(top score level) as n → ∞ (best-of-n then returns the
    argmax), while the bound grows like log n. Ties and a reference that puts much mass on few
    responses make the gap larger. ``tests/test_theory_rigour.py`` checks all three."""
    check_int("n", n, 1)
    return math.log(n) - (n - 1) / n


def frontier(policies, ref, gold, proxy=None) -> dict[str, np.ndarray]:
    """The frontier of a list of policies: ``d`` = √KL(π‖ref) (√nats), ``kl`` (nats), ``gold`` =
    E_π[gold] and (when given) ``proxy`` = E_π[proxy] (reward units), one entry per policy."""
    ref = as_probs("ref", ref)
    gold = as_vector("gold", gold, size=ref.size)
    kl = np.array([kl_divergence(as_probs("policy", p, size=ref.size), ref) for p in policies])
    out = {"kl": kl, "d": np.sqrt(np.maximum(kl, 0.0)),
           "gold": np.array([np.asarray(p) @ gold for p in policies])}  # fmt: skip
    if proxy is not None:
        proxy = as_vector("proxy", proxy, size=ref.size)
        out["proxy"] = np.array([np.asarray(p) @ proxy for p in policies])
    return out


GAO_FORMS = ("bon", "rl")


@dataclass(frozen=True)
class GaoFit:
    """A fit of Gao et al.'s form to (d, gold − gold at d = 0).

    Attributes:
        form: ``"bon"``: R(d) = d·(a − b·d); ``"rl"``: R(d) = d·(a − b·log d).
        a, b: the coefficients (reward units per √nat; ``b`` of ``"bon"`` per nat).
        a_se, b_se: their standard errors (from the fit's covariance).
        d_star: the d of the gold peak (``"bon"``: a/(2b); ``"rl"``: exp(a/b − 1)); ``inf`` when
            the fit does not turn over (b <= 0).
        gold_star: R(d_star), the predicted peak gain over d = 0.
    """

    form: str
    a: float
    b: float
    a_se: float
    b_se: float
    d_star: float
    gold_star: float

    def predict(self, d) -> np.ndarray:
        """R(d) for an array of d (√nats)."""
        return gao_curve(np.asarray(d, dtype=np.float64), self.a, self.b, self.form)


def gao_curve(d, a: float, b: float, form: str) -> np.ndarray:
    """Gao et al. (2022): best-of-n R(d) = d(a − b·d), RL R(d) = d(a − b·log d); R(0) = 0."""
    check_choice("form", form, GAO_FORMS)
    d = np.asarray(d, dtype=np.float64)
    if form == "bon":
        return d * (a - b * d)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, d * (a - b * np.log(np.where(d > 0, d, 1.0))), 0.0)


def fit_gao(d, gold, form: str) -> GaoFit:
    """Least-squares fit of :func:`gao_curve` to measured points (``scipy.optimize.curve_fit``).

    Args:
        d: √KL(π‖π_SFT) of each point (√nats), >= 0.
        gold: the gold reward *gain* over the starting policy at each point (the forms have
            R(0) = 0: subtract the gold at d = 0 first).
        form: ``"bon"`` or ``"rl"``.
    Returns a :class:`GaoFit` with coefficients, standard errors and the predicted peak.
    """
    from scipy.optimize import curve_fit

    check_choice("form", form, GAO_FORMS)
    d, gold = as_vector("d", d), as_vector("gold", gold, size=np.size(d))
    if np.any(d < 0):
        raise ValueError("d must be >= 0 (it is a square root of a KL)")
    if np.count_nonzero(d > 0) < 3:
        raise ValueError(f"need at least 3 points with d > 0 to fit two coefficients, got {d}")
    (a, b), cov = curve_fit(lambda x, a, b: gao_curve(x, a, b, form), d, gold, p0=(1.0, 0.1))
    a_se, b_se = (float(math.sqrt(v)) if np.isfinite(v) and v >= 0 else math.nan
                  for v in np.diag(cov))  # fmt: skip
    if b <= 0:
        d_star = math.inf
    elif form == "bon":
        d_star = a / (2 * b)
    else:
        d_star = math.exp(a / b - 1)
    gold_star = float(gao_curve(d_star, a, b, form)) if math.isfinite(d_star) else math.inf
    return GaoFit(form, float(a), float(b), a_se, b_se, float(d_star), gold_star)


@dataclass(frozen=True)
class MisspecifiedProblem:
    """A finite response space with a gold reward, a proxy that over-rewards length, and an SFT
    reference (chapter 07's exact plane).

    Attributes:
        space: the enumerable :class:`~rlhf_nb.theory.sequences.SequenceSpace` (EOS = token 0).
        ref: π_SFT(y), shape (S,): an autoregressive policy that usually opens with the right
            token and stops early.
        gold: r_gold(y) = 1[first token is 1] − ``token_cost``·|y|, shape (S,) (chapter 03's
            "short correct answer" reward).
        proxy: r_proxy(y) = r_gold(y) + ``length_bonus``·|y|: right about the answer, wrong about
            length — the misspecification a learned RM with a length bias has.
        token_cost, length_bonus: reward units per token.
    """

    space: object
    ref: np.ndarray
    gold: np.ndarray
    proxy: np.ndarray
    token_cost: float
    length_bonus: float


def misspecified_problem(
    vocab_size: int = 4,
    max_len: int = 5,
    *,
    token_cost: float = 0.15,
    length_bonus: float = 0.4,
    seed: int = 0,
) -> MisspecifiedProblem:
    """Build a :class:`MisspecifiedProblem`. The SFT logits are N(0, 0.5²) noise (``seed``)
    plus +1.5 on the right first token at the root and +1 on EOS after it, so π_SFT is
    mostly right and short, with mass on every response (its KL to anything is finite).

    Args: vocab_size (2-12) and max_len (1-8) of the space; token_cost, length_bonus >= 0,
    reward units per token; seed >= 0.
    """
    from rlhf_nb.theory.sequences import EOS, SequenceSpace

    check_range("token_cost", token_cost, 0.0, None)
    check_range("length_bonus", length_bonus, 0.0, None)
    check_int("seed", seed, 0)
    space = SequenceSpace(vocab_size, max_len)
    logits = space.random_logits(np.random.default_rng(seed), 0.5)
    logits[0, 1] += 1.5  # the root (empty prefix): the right first token
    logits[1:, EOS] += 1.0  # afterwards: stop
    first = np.array([y[0] for y in space.sequences])
    gold = np.where(first == 1, 1.0, 0.0) - token_cost * space.lengths
    proxy = gold + length_bonus * space.lengths
    return MisspecifiedProblem(space, space.probs(logits), gold, proxy, token_cost, length_bonus)


FAMILIES = ("kl", "maxent", "combined", "best_of_n")


def family_policies(problem: MisspecifiedProblem, family: str, coefs) -> list[np.ndarray]:
    """The exact policies of one family under the proxy, one per coefficient:

    * ``"kl"``: π_β ∝ π_SFT·exp(r_proxy/β); β = inf gives π_SFT itself;
    * ``"maxent"``: π_α ∝ exp(r_proxy/α); α = inf gives the uniform policy over responses;
    * ``"combined"``: :func:`combined_policy` with α = β = t (entropy *and* KL, equal weights):
      π_t ∝ π_SFT^{1/2}·exp(r_proxy/(2t)); t = inf gives the normalised √π_SFT;
    * ``"best_of_n"``: :func:`best_of_n` of π_SFT under the proxy, coefficient n (int >= 1).
    """
    check_choice("family", family, FAMILIES)
    r, ref = problem.proxy, problem.ref
    out = []
    for c in coefs:
        if family == "best_of_n":
            out.append(best_of_n(ref, r, int(c)))
        elif math.isinf(c):
            end = {"kl": ref, "maxent": np.ones_like(ref), "combined": np.sqrt(ref)}[family]
            out.append(end / end.sum())
        elif family == "kl":
            out.append(combined_policy(r, ref, 0.0, c))
        elif family == "maxent":
            out.append(combined_policy(r, ref, c, 0.0))
        else:
            out.append(combined_policy(r, ref, c, c))
    return out


def family_frontiers(problem: MisspecifiedProblem, coefs=None, ns=None):
    """Every family of :func:`family_policies` on the (d, gold) plane, as one ``pandas``
    DataFrame: ``family``, ``coef`` (β, α, t or n; ``inf`` for the families' regularised end),
    ``kl`` (nats), ``d`` (√nats), ``gold``, ``proxy`` (reward units), ``length`` (E|y|, tokens,
    EOS included) and ``entropy`` (nats per response).

    Args: coefs, the temperatures (default: inf and 40 values log-spaced from 100 to 0.01);
    ns, the best-of-n sizes (default 1…64).
    """
    import pandas as pd

    from rlhf_nb.theory.exact import entropy

    coefs = [math.inf, *np.logspace(2, -2, 40)] if coefs is None else list(coefs)
    ns = range(1, 65) if ns is None else list(ns)
    rows = []
    for family in FAMILIES:
        grid = ns if family == "best_of_n" else coefs
        pols = family_policies(problem, family, grid)
        pts = frontier(pols, problem.ref, problem.gold, problem.proxy)
        for i, (c, pi) in enumerate(zip(grid, pols)):
            rows.append({"family": family, "coef": float(c), "kl": pts["kl"][i], "d": pts["d"][i],
                         "gold": pts["gold"][i], "proxy": pts["proxy"][i],
                         "length": float(pi @ problem.space.lengths),
                         "entropy": entropy(pi)})  # fmt: skip
    return pd.DataFrame(rows)


GOODHART_FAMILIES = ("kl", "maxent", "combined")


def _family_base(problem: MisspecifiedProblem, family: str) -> tuple[np.ndarray, float]:
    """(log base, c): the family is π_s ∝ base·exp(s·proxy), s = c/coefficient."""
    check_choice("family", family, GOODHART_FAMILIES)
    log_ref = np.log(problem.ref)
    return {"kl": (log_ref, 1.0), "maxent": (np.zeros_like(log_ref), 1.0),
            "combined": (0.5 * log_ref, 0.5)}[family]  # fmt: skip


def goodhart_slope(pi, gold, proxy) -> float:
    """Cov_π(gold, proxy) = E_π[gold·proxy] − E_π[gold]·E_π[proxy] (reward units²).

    The exact Goodhart criterion (chapter 07): along any exponential family
    π_s ∝ base·exp(s·proxy) — the KL family (base π_SFT, s = 1/β), the MaxEnt family (base 1,
    s = 1/α), entropy + KL with α = β = t (base √π_SFT, s = 1/(2t)) —

        d E_{π_s}[gold] / ds = Cov_{π_s}(gold, proxy),

    because d log π_s(y)/ds = proxy(y) − E_{π_s}[proxy]. So gold rises with optimisation
    pressure s while gold and proxy covary positively under the current policy, and peaks
    exactly where that covariance changes sign (:func:`goodhart_peak`). Args: pi, gold, proxy,
    shape (n,)."""
    pi = as_probs("pi", pi)
    gold = as_vector("gold", gold, size=pi.size)
    proxy = as_vector("proxy", proxy, size=pi.size)
    return float(pi @ (gold * proxy) - (pi @ gold) * (pi @ proxy))


def goodhart_policy(problem: MisspecifiedProblem, family: str, s: float) -> np.ndarray:
    """π_s ∝ base·exp(s·proxy) of :func:`goodhart_slope`, s >= 0 (s = 0 is the base)."""
    log_base, _ = _family_base(problem, family)
    check_range("s", s, 0.0, None)
    z = log_base + s * problem.proxy
    return np.exp(z - logsumexp(z))


@dataclass(frozen=True)
class GoodhartPeak:
    """Where gold peaks along a family (:func:`goodhart_peak`).

    Attributes:
        family: ``"kl"``, ``"maxent"`` or ``"combined"``.
        s: optimisation pressure at the peak (1/β, 1/α or 1/(2t)).
        coef: the family's coefficient there (β, α or t).
        gold: E_π[gold] at the peak (reward units).
        interior: True when the peak is a sign change of Cov(gold, proxy) inside the searched
            range, False when gold is monotone there and the peak is an end of the range.
    """

    family: str
    s: float
    coef: float
    gold: float
    interior: bool


def goodhart_peak(problem: MisspecifiedProblem, family: str, *, coef_min: float = 1e-2,
                  coef_max: float = 1e2, n_grid: int = 400) -> GoodhartPeak:  # fmt: skip
    """The gold maximum along a family as a root of :func:`goodhart_slope`.

    Brackets the sign changes + → − of Cov_{π_s}(gold, proxy) on a log grid of ``n_grid``
    pressures s between the coefficients ``coef_max`` and ``coef_min`` and solves each by
    Brent's method (xtol 1e-13); the peak is the best of these roots and the two ends. No
    search over gold itself: the test checks it against the grid argmax of gold."""
    from scipy.optimize import brentq

    _, c = _family_base(problem, family)
    check_range("coef_min", coef_min, 0.0, None, low_inclusive=False)
    check_range("coef_max", coef_max, coef_min, None, low_inclusive=False)
    check_int("n_grid", n_grid, 3)

    def slope(s: float) -> float:
        return goodhart_slope(goodhart_policy(problem, family, s), problem.gold, problem.proxy)

    def gold(s: float) -> float:
        return float(goodhart_policy(problem, family, s) @ problem.gold)

    grid = np.geomspace(c / coef_max, c / coef_min, n_grid)
    slopes = np.array([slope(s) for s in grid])
    roots = [brentq(slope, grid[i], grid[i + 1], xtol=1e-13)
             for i in np.nonzero((slopes[:-1] > 0) & (slopes[1:] <= 0))[0]]  # fmt: skip
    candidates = [(gold(s), s, True) for s in roots]
    candidates += [(gold(grid[0]), grid[0], False), (gold(grid[-1]), grid[-1], False)]
    g, s, interior = max(candidates)
    return GoodhartPeak(family, float(s), float(c / s), g, interior)
