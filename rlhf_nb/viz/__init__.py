"""Figures and controls: everything a reader sees move.

* :mod:`~rlhf_nb.viz.plotting` — the book's plotly template, slider figures (interactive on the
  static site) and static figures;
* :mod:`~rlhf_nb.viz.run_plots` — figures of run histories: one run, a sweep, panels, seed bands,
  a live history that redraws during training;
* :mod:`~rlhf_nb.viz.widgets` — ipywidgets helpers (log sliders, a figure that redraws);
* :mod:`~rlhf_nb.viz.live` — the live-run widgets of chapters 05 and 06 (a button trains a short
  run through :func:`rlhf_nb.train.train` and draws it as it goes).

Top layer: may import :mod:`rlhf_nb.train`; nothing below imports it. A new figure type goes in
``run_plots.py`` (history-based) or ``plotting.py`` (anything else), with a test in
``tests/test_plotting.py``.
"""
