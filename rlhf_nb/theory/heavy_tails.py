"""The limit of the KL anchor: a heavy-tailed proxy error, computed exactly (chapter 07).

Kwa, Thomas & Garriga-Alonso (2024), "catastrophic Goodhart": write the proxy as gold plus an
error, proxy = gold + X. When X is light-tailed under the reference, the KL-regularised
optimum gains gold; when X is heavy-tailed, policies exist with a large proxy gain at a small
KL and no gold gain at all — a KL budget bounds how far the policy moves, not how much of the
proxy's gain is error.

Here on chapter 07's exact plane (:func:`~rlhf_nb.theory.frontier.misspecified_problem` with
no length bonus: the proxy's only error is X). Each draw gives every response an error

    X(y) = scale · q(u(y)) / median_y |q(u(y))|,   u(y) iid uniform on (0, 1),

with q the quantile function of a Student-t law with ``df`` degrees of freedom (``df = inf``:
the normal). The *same* uniforms serve every df, so within a draw the errors have the same
ranks and the same bulk (median |X| = ``scale``); only the tail differs. Along the KL family
π_β ∝ π_SFT·exp(proxy/β) — a ray in logit space, log π_SFT + s·proxy, whose KL to π_SFT grows
monotonically in s — the member at a KL budget K is found by bracketing
(:func:`~rlhf_nb.theory.estimators.path_point_at_kl`), so every tail is compared at the same
distance from π_SFT. All sums are exact (float64); only the draw of u is random.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from rlhf_nb.core import check_int, check_range
from rlhf_nb.theory import estimators
from rlhf_nb.theory.frontier import MisspecifiedProblem


def tailed_errors(u, df: float, scale: float) -> np.ndarray:
    """X = scale·q(u)/median|q(u)|, q the Student-t(df) quantile (df = inf: normal); shape of u.

    Args: u, uniforms in (0, 1), shape (n,); df > 0 (inf allowed); scale > 0 (reward units).
    """
    from scipy import stats

    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 1 or u.size < 2 or np.any((u <= 0) | (u >= 1)):
        raise ValueError(f"u must be a 1-D array of >= 2 uniforms in (0, 1), got shape {u.shape}")
    check_range("df", df, 0.0, None, low_inclusive=False, finite=False)
    check_range("scale", scale, 0.0, None, low_inclusive=False)
    q = stats.norm.ppf(u) if math.isinf(df) else stats.t(df).ppf(u)
    return scale * q / np.median(np.abs(q))


def with_error(problem: MisspecifiedProblem, errors) -> MisspecifiedProblem:
    """The problem with proxy = gold + ``errors`` (shape (S,), reward units), no length bonus."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.shape != problem.gold.shape or not np.all(np.isfinite(errors)):
        raise ValueError(f"errors must be finite of shape {problem.gold.shape}, got {errors.shape}")
    return dataclasses.replace(problem, proxy=problem.gold + errors, length_bonus=0.0)


def at_kl_budget(problem: MisspecifiedProblem, kl: float) -> np.ndarray | None:
    """The KL-family member π_β ∝ π_SFT·exp(proxy/β) with KL(π_β‖π_SFT) = ``kl`` nats, or
    ``None`` when the family never gets that far (its limit is −log π_SFT(argmax proxy))."""
    check_range("kl", kl, 0.0, None, low_inclusive=False)
    log_ref = np.log(problem.ref)
    if kl >= estimators.path_kl_limit(log_ref, problem.proxy):
        return None
    return estimators.path_point_at_kl(log_ref, problem.proxy, kl)


def catastrophic_goodhart(problem: MisspecifiedProblem, *, dfs, kls, scale: float,
                          n_draws: int, rng) -> pd.DataFrame:  # fmt: skip
    """Gold and proxy gains of the KL family at fixed KL budgets, per error tail, over draws.

    For each of ``n_draws`` draws of u (one uniform per response, from ``rng``), each tail in
    ``dfs`` and each budget in ``kls`` (nats): the member :func:`at_kl_budget` of the KL family
    under proxy = gold + :func:`tailed_errors`. Budgets a draw cannot reach are skipped.

    Returns a long DataFrame: ``draw``, ``df``, ``kl`` (nats), ``gold_gain`` and
    ``proxy_gain`` (E_π − E_SFT, reward units) and ``error_gain`` = proxy_gain − gold_gain, the
    part of the proxy's gain that is error.
    """
    check_int("n_draws", n_draws, 1)
    dfs, kls = [float(d) for d in dfs], [float(k) for k in kls]
    if not dfs or not kls:
        raise ValueError("dfs and kls must be non-empty")
    base = problem.ref @ problem.gold
    rows = []
    for draw in range(n_draws):
        u = rng.uniform(size=problem.gold.size)
        for df in dfs:
            p = with_error(problem, tailed_errors(u, df, scale))
            start = p.ref @ p.proxy
            for kl in kls:
                pi = at_kl_budget(p, kl)
                if pi is None:
                    continue
                gold, proxy = pi @ p.gold - base, pi @ p.proxy - start
                rows.append({"draw": draw, "df": df, "kl": kl, "gold_gain": gold,
                             "proxy_gain": proxy, "error_gain": proxy - gold})  # fmt: skip
    return pd.DataFrame(rows)


def tail_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (df, kl) of a :func:`catastrophic_goodhart` table: ``draws`` that reach the budget,
    the median and the 5 % / 95 % quantiles of ``gold_gain``, the share of draws that *lose*
    gold, the median ``proxy_gain`` and the median share of the proxy's gain that is gold."""
    g = table.assign(gold_share=table.gold_gain / table.proxy_gain).groupby(["df", "kl"])
    return pd.DataFrame({
        "draws": g.size(),
        "gold gain (median)": g.gold_gain.median(),
        "gold gain 5%": g.gold_gain.quantile(0.05),
        "gold gain 95%": g.gold_gain.quantile(0.95),
        "share losing gold": g.gold_gain.apply(lambda x: float((x < 0).mean())),
        "proxy gain (median)": g.proxy_gain.median(),
        "gold share of proxy gain (median)": g.gold_share.median(),
    })  # fmt: skip
