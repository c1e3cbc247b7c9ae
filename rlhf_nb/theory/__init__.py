"""The exact maths of chapters 01–03, in float64 on spaces small enough to enumerate.

* :mod:`~rlhf_nb.theory.exact` — MaxEnt and KL-regularised optima, entropies, KL, the
  Bradley–Terry and Plackett–Luce models, implied rewards (chapters 01–02);
* :mod:`~rlhf_nb.theory.sequences` — a finite space of token sequences with EOS, where the
  sequence-level objectives can be summed exactly (chapters 01, 03);
* :mod:`~rlhf_nb.theory.lengthnorm` — SimPO's length normalisation as a substituted Gibbs policy,
  the length offset, SimPO's exact objective J' and what its likelihood identifies (chapter 02);
* :mod:`~rlhf_nb.theory.estimators` — k1/k2/k3 KL estimators and entropy estimators, their
  moments and gradients (chapter 03);
* :mod:`~rlhf_nb.theory.surrogates` — what the online loop's detached surrogates ascend on a
  sequence space: per-token KL placements, the ``entropy_norm`` bonus (chapters 03, 05, 07);
* :mod:`~rlhf_nb.theory.losses` — DPO, SimPO, MaxEnt-BT and Plackett–Luce losses on
  log-probabilities (chapter 02; the training methods call the same functions);
* :mod:`~rlhf_nb.theory.frontier` — over-optimisation frontiers (gold vs √KL) of the KL, MaxEnt
  and combined families and of best-of-n, exactly; Gao et al.'s fits; the exact Goodhart
  criterion (chapter 07);
* :mod:`~rlhf_nb.theory.heavy_tails` — heavy-tailed proxy error, where a KL budget no longer
  protects the gold reward (chapter 07).

Lowest layer: imports only :mod:`rlhf_nb.core`, numpy and torch. A new exact result goes here,
with a test that checks it by an independent route (``tests/test_exact.py``,
``tests/test_theory_rigour.py``).
"""
