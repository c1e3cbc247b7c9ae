"""Figures and controls: everything a reader sees move.

* :mod:`~rlhf_nb.viz.plotting` — the book's plotly template, slider figures (interactive on the
  static site) and static figures;
* :mod:`~rlhf_nb.viz.run_plots` — figures of run histories: runs in panels, a sweep slider,
  seed bands, a live history that redraws during training;
* :mod:`~rlhf_nb.viz.frontier_plots` — chapter 07's frontier plane (gold against √KL), exact and
  measured;
* :mod:`~rlhf_nb.viz.widgets` — ipywidgets helpers (log and linear sliders, a figure that
  redraws when a control moves); they train nothing;
* :mod:`~rlhf_nb.viz.live` — the live-run widgets of chapters 05, 06, 07 and 09: a button trains
  a short run in the kernel (no cache) and draws it as it goes. Chapters 05 and 07 call
  :func:`rlhf_nb.methods.online.train` and chapter 06 :func:`rlhf_nb.methods.offline.train`
  directly; only chapter 09's widget, whose configs are of several methods, goes through the run
  contract (:func:`rlhf_nb.runs.contract.train`).

Top layer beside :mod:`rlhf_nb.chapters`: imports :mod:`rlhf_nb.core`, :mod:`rlhf_nb.theory`,
:mod:`rlhf_nb.methods` and :mod:`rlhf_nb.runs`; nothing below imports it. A new figure type goes in
``run_plots.py`` (history-based) or ``plotting.py`` (anything else), with a test in
``tests/test_plotting.py``.
"""
