"""rlhf-nb: the helper package behind the executable book on Maximum-Entropy RLHF.

Notebooks narrate, call, plot and assert; the reusable logic lives here. Every notebook starts
with :func:`setup`, which makes a run reproducible, offline and quiet (see ``rlhf_nb.core``).

Layers, lowest first (a module imports only its own layer and those below):

* :mod:`rlhf_nb.core` — ``setup()``, parameter checks, ``quiet()``, the cache folder and its
  lock; :mod:`rlhf_nb.notation` — the notation table, tied to the config fields (chapter 00);
* :mod:`rlhf_nb.stats` — the one summary rule (start, peak, final), seed bands, bootstrap
  differences, checkpoint margins (chapters 04–09);
* :mod:`rlhf_nb.theory` — the exact maths of chapters 01–03 (and chapter 07's exact frontiers);
* :mod:`rlhf_nb.sampling` — rollout, log-probs, entropies, reward-model scoring;
* :mod:`rlhf_nb.testbed` — the tiny summarisation testbed of chapters 04–06, and the real
  models of the TL;DR presets (chapter 08);
* :mod:`rlhf_nb.methods` — the training methods, one module per method with its config, each
  ``train(testbed, config, *, on_step=None) -> Run`` (chapters 05–09);
* :mod:`rlhf_nb.runs` — getting runs: the run format and the cache (``record``, ``cache``, which
  the methods write through), and the one entry point :func:`rlhf_nb.runs.get_runs` with its
  process pool and seeds (``contract``, ``pool``, ``seeds``, which load the methods on first use);
* :mod:`rlhf_nb.chapters` — one module per training chapter (04, 05, 06, 07, 09): its parameters,
  the configs of its runs, its analysis;
* :mod:`rlhf_nb.viz` — figures, sliders, the live-run widgets;
* :mod:`rlhf_nb.run` — the command-line runner (``python -m rlhf_nb.run``; chapter 08), its
  options generated from the config dataclasses by :mod:`rlhf_nb.cli`;
* ``rlhf_nb._site`` — the book's build: notebook execution, the site, the README's results
  block, ``make lab`` (not used by the notebooks). The browser checks are in ``tests/browser/``.
"""

from rlhf_nb.core import (
    Context,
    check_choice,
    check_int,
    check_ints,
    check_range,
    check_type,
    setup,
)

__all__ = [
    "Context",
    "setup",
    "check_choice",
    "check_int",
    "check_ints",
    "check_range",
    "check_type",
]
__version__ = "0.1.0"
