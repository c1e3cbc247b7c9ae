"""The browser checks of the tests, in headless Chromium: test harness, not part of the installed
``rlhf_nb`` package (a Colab reader does not get it).

* :mod:`~browser.sitecheck` — every page of the built site: figures rendered, sliders move,
  math typeset, no JavaScript errors (``tests/test_site.py``);
* :mod:`~browser.labcheck` — chapters 01 and 05 in a headless JupyterLab: sliders, the live run,
  saving (``tests/test_site_lab.py``).

The tests import them as ``from browser import sitecheck`` (pytest puts ``tests/`` on
``sys.path``, as for ``conftest``).
"""
