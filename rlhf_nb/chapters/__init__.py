"""One module per training chapter: its parameters, the runs it needs, and its analysis.

Each module has a ``Params`` dataclass whose defaults *are* the notebook's parameters cell
(``tests/test_chapters.py`` asserts it), ``configs(params)`` building that chapter's runs, and
the chapter's own analysis. A later chapter gets an earlier chapter's runs by calling that
chapter's ``configs``, never by retyping a config, so that every table is about the same runs.

* :mod:`~rlhf_nb.chapters.ch04` — the testbed's seed table and blind spot (chapter 04);
* :mod:`~rlhf_nb.chapters.ch05` — the online grid, its headline settings and the central
  contrast (chapter 05; CI's ``tests/test_science.py``);
* :mod:`~rlhf_nb.chapters.ch06` — the offline DPO/SimPO runs and their online counterparts
  (chapter 06);
* :mod:`~rlhf_nb.chapters.ch07` — the measured frontier, Gao fits and the remedies (chapter 07);
* :mod:`~rlhf_nb.chapters.ch09` — the data-vs-labeller 2×2 (chapter 09) and
  :mod:`~rlhf_nb.chapters.claims`, the paper's claims assessed.

Top layer beside :mod:`rlhf_nb.viz`: imports :mod:`rlhf_nb.stats`, :mod:`rlhf_nb.runs`,
:mod:`rlhf_nb.methods`, :mod:`rlhf_nb.testbed` and :mod:`rlhf_nb.theory`.
"""
