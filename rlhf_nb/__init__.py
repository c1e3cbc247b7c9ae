"""rlhf-nb: the helper package behind the executable book on Maximum-Entropy RLHF.

Notebooks narrate, call, plot and assert; the reusable logic lives here. Every notebook starts
with :func:`setup`, which makes a run reproducible, offline and quiet (see ``rlhf_nb.core``).

Layers, lowest first (a module imports only its own layer and those below):

* :mod:`rlhf_nb.core` — ``setup()``, parameter checks, ``quiet()``; :mod:`rlhf_nb.notation`;
* :mod:`rlhf_nb.theory` — the exact maths of chapters 01–03;
* :mod:`rlhf_nb.sampling` — rollout, log-probs, entropies, reward-model scoring;
* :mod:`rlhf_nb.testbed` — the tiny summarisation testbed of chapters 04–06, and the real
  models of the TL;DR presets (chapter 08);
* :mod:`rlhf_nb.train` — the training methods and the one run contract (chapters 05–06);
* :mod:`rlhf_nb.viz` — figures, sliders, widgets;
* :mod:`rlhf_nb.run` — the command-line runner (``python -m rlhf_nb.run``; chapter 08), its
  options generated from the config dataclasses by :mod:`rlhf_nb.cli`;
* ``rlhf_nb._site`` — the book's build (not used by the notebooks).
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
