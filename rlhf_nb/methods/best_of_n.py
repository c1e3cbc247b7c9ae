"""Best-of-n on the testbed: the frontier of the simplest over-optimiser (chapter 07).

Sample N responses per prompt from the SFT policy, pick the one the *proxy* RM scores highest,
report its *gold* reward. One set of N samples gives an unbiased estimate for every n ≤ N
(Nakano et al. 2021; Gao et al. 2022, appendix): with the samples sorted by proxy score
ascending, the best of n random draws without replacement is the i-th with probability

    w_i(n) = C(i−1, n−1) / C(N, n),   i = n … N,

so E[gold of best-of-n] = Σ_i w_i(n)·gold_(i), and the same for the proxy. Ties in the proxy
are broken by a seeded random order.

The distance from the SFT policy is given two ways: the standard bound KL ≤ log n − (n−1)/n
(:func:`rlhf_nb.theory.frontier.bon_kl_bound`, exact only for a continuous score; over a finite
set of samples it is never attained for n >= 2: with N distinct atoms the exact KL stays below
it and saturates at log N), and the exact KL of best-of-n over the sample itself (each of the N
samples an atom of mass 1/N, equal proxy scores tied; :func:`rlhf_nb.theory.frontier.best_of_n`),
which falls further below the bound when the policy repeats itself.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rlhf_nb.core import check_int
from rlhf_nb.theory.exact import kl_divergence
from rlhf_nb.theory.frontier import best_of_n, bon_kl_bound


def order_weights(n_samples: int, n: int) -> np.ndarray:
    """w_i(n) = C(i−1, n−1)/C(N, n) for ranks i = 1…N (ascending): the probability that the best
    of n draws without replacement from N sorted samples is the i-th. Sums to 1."""
    check_int("n_samples", n_samples, 1)
    check_int("n", n, 1, n_samples)
    total = math.comb(n_samples, n)
    return np.array([math.comb(i - 1, n - 1) / total for i in range(1, n_samples + 1)])


def bon_frontier(
    testbed, *, n_max: int = 64, n_prompts: int = 256, seed: int = 0, ns=None
) -> pd.DataFrame:
    """Gold and proxy of best-of-n (selected by the proxy) from the SFT policy, for n in ``ns``
    (default: powers of 2 up to ``n_max``), on the first ``n_prompts`` eval prompts.

    Returns one row per n: ``n``, ``gold``, ``gold_se`` (over prompts), ``proxy``, ``kl_bound``
    and ``kl_sample`` (nats; module docstring) and ``d_bound``, ``d_sample`` (their square
    roots, √nats). Samples are drawn with ``seed`` (the caller's RNG is untouched).
    """
    check_int("n_max", n_max, 1)
    check_int("n_prompts", n_prompts, 1, len(testbed.eval_prompts))
    ns = [2**k for k in range(int(math.log2(n_max)) + 1)] if ns is None else list(ns)
    for n in ns:
        check_int("ns", n, 1, n_max)
    prompts = testbed.eval_prompts[:n_prompts]
    texts = testbed.sample(testbed.sft_policy, prompts, n=n_max, seed=seed)
    xs = [p for p in prompts for _ in range(n_max)]
    proxy = testbed.proxy_reward(xs, texts).double().view(n_prompts, n_max).numpy()
    gold = testbed.gold_reward(xs, texts).double().view(n_prompts, n_max).numpy()
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(proxy.shape), proxy), axis=1)  # by proxy, ties at random
    gold_sorted = np.take_along_axis(gold, order, axis=1)
    proxy_sorted = np.take_along_axis(proxy, order, axis=1)
    uniform = np.full(n_max, 1.0 / n_max)
    rows = []
    for n in ns:
        w = order_weights(n_max, n)
        per_prompt = gold_sorted @ w
        kl_s = np.mean([kl_divergence(best_of_n(uniform, p, n), uniform) for p in proxy])
        rows.append({
            "n": n, "gold": per_prompt.mean(),
            "gold_se": per_prompt.std(ddof=1) / math.sqrt(n_prompts) if n_prompts > 1 else 0.0,
            "proxy": float((proxy_sorted @ w).mean()), "kl_bound": bon_kl_bound(n),
            "kl_sample": float(kl_s),
        })  # fmt: skip
    out = pd.DataFrame(rows)
    out["d_bound"], out["d_sample"] = np.sqrt(out["kl_bound"]), np.sqrt(out["kl_sample"])
    return out
