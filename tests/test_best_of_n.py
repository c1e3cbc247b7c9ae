"""Best-of-n on the testbed (rlhf_nb.methods.best_of_n): the order-statistic weights and the
frontier's identities at n = 1 and its monotonicity."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rlhf_nb import testbed
from rlhf_nb.methods.best_of_n import bon_frontier, order_weights
from rlhf_nb.theory.frontier import bon_kl_bound


def test_order_weights_equal_enumerating_every_subset():
    n_samples = 6
    for n in range(1, n_samples + 1):
        counts = np.zeros(n_samples)
        for subset in itertools.combinations(range(n_samples), n):
            counts[max(subset)] += 1
        np.testing.assert_allclose(order_weights(n_samples, n), counts / math.comb(n_samples, n))
    with pytest.raises(ValueError, match="n must be in"):
        order_weights(4, 5)


def test_bon_frontier_on_the_smoke_testbed():
    tb = testbed.build("smoke")
    f = bon_frontier(tb, n_max=8, n_prompts=16, seed=0)
    assert f["n"].tolist() == [1, 2, 4, 8]
    first = f.iloc[0]
    assert first.kl_bound == 0 and first.kl_sample == pytest.approx(0.0, abs=1e-12)
    assert (np.diff(f["proxy"]) >= -1e-12).all()  # the proxy of best-of-n never falls with n
    assert (f["kl_sample"] <= f["kl_bound"] + 1e-12).all()
    assert f["kl_bound"].tolist() == pytest.approx([bon_kl_bound(n) for n in (1, 2, 4, 8)])
    again = bon_frontier(tb, n_max=8, n_prompts=16, seed=0)
    assert again.equals(f)  # seeded: the same samples, the same frontier
