"""The book in JupyterLab, in headless Chromium (tests/browser/labcheck.py): chapter 01's α slider
redraws its figure, chapter 05's live run trains at the learning rate its slider shows, and a
save keeps the .py header and puts no plotly.js in the .ipynb. Screenshots of every step go to
book/_build/screens/lab/.

Runs after test_notebooks.py and test_site.py (file order), so chapter 05's smoke runs are
cached. Skipped without Chromium unless RLHF_NB_REQUIRE_BROWSER=1 (set by .ci/run).
"""

from __future__ import annotations

import pytest
from browser import labcheck
from conftest import need_browser

from rlhf_nb._site.build import ROOT

SCREENS = ROOT / "book" / "_build" / "screens" / "lab"


@pytest.mark.site
def test_widgets_work_in_jupyterlab():
    need_browser()
    reports = labcheck.check_lab(SCREENS)
    for rep in reports:
        print(f"{rep.chapter}: opened as {rep.opened_as}; Run All {rep.run_all_s:.1f} s "
              f"({rep.cells_run}/{rep.cells} cells); {rep.control} {rep.value_before} -> "
              f"{rep.value_after}; redraw {rep.redraw_s:.2f} s; kernel while training: "
              f"{rep.kernel_status_while_training or '-'}; saved .ipynb "
              f"{rep.saved_ipynb_bytes / 1e6:.2f} MB; {rep.status_line}")  # fmt: skip
    assert [r.chapter for r in reports] == list(labcheck.CHECKS)
    problems = [f"{r.chapter}: {p}" for r in reports for p in r.problems]
    assert not problems, "\n".join(problems)
    assert all(r.screenshots and all(p.exists() for p in r.screenshots) for r in reports)
