"""The tiny summarisation testbed of chapters 04–06: a task with a known gold reward, a learned
proxy reward model, an SFT policy, preference data — built once per (preset, seed) and cached.

* :mod:`~rlhf_nb.testbed.task` — documents, reference summaries and the gold reward's named
  terms (:class:`~rlhf_nb.testbed.task.GoldWeights`);
* :mod:`~rlhf_nb.testbed.presets` — the named sizes (``smoke``, ``tiny``, …) and their cache keys;
* :mod:`~rlhf_nb.testbed.models` — tokenizer and GPT-NeoX factories, the SFT and reward-model fit
  loop;
* :mod:`~rlhf_nb.testbed.assemble` — writes, checksums and verifies a testbed folder;
* :mod:`~rlhf_nb.testbed.testbed` — :class:`Testbed` (the loaded bundle: rewards, sampling,
  references) and :func:`build` (build or load from the cache);
* :mod:`~rlhf_nb.testbed.tldr`, :mod:`~rlhf_nb.testbed.real`, :mod:`~rlhf_nb.testbed.standin`
  — the paper's own setting (Pythia + TL;DR, chapter 08) and its tiny local stand-ins.

What chapter 04 measures about a build (blind spot, seed table) is
:mod:`rlhf_nb.chapters.ch04`; the proxy-RM ensemble of chapter 07's remedy is
:mod:`rlhf_nb.methods.ensemble`. Imports :mod:`rlhf_nb.core`, :mod:`rlhf_nb.theory` and
:mod:`rlhf_nb.sampling` only. A new preset goes in ``presets.py``
(with a smoke-sized test build); a new task or gold term in ``task.py``.
"""

from rlhf_nb.testbed.presets import PRESETS, Preset, resolve_preset
from rlhf_nb.testbed.testbed import Testbed, build

__all__ = ["PRESETS", "Preset", "Testbed", "build", "resolve_preset"]
