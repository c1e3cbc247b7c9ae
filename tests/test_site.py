"""The site, built from the smoke-executed notebooks, checked page by page in headless Chromium.

Runs after test_notebooks.py (pytest orders files by name); notebooks missing from build/smoke
are executed here. Without Chromium the checks are skipped with a visible reason, unless
RLHF_NB_REQUIRE_BROWSER=1 (set by .ci/run), where they fail.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from browser import sitecheck
from conftest import need_browser

from rlhf_nb._site.build import ROOT, build_site, execute, notebook_sources

SITE = ROOT / "build" / "site-smoke"
SCREENS = ROOT / "book" / "_build" / "screens"


@pytest.fixture(scope="module")
def site(smoke_dir):
    for src in notebook_sources():
        if not (smoke_dir / f"{src.stem}.ipynb").exists():
            execute(src, smoke_dir, smoke=True, timeout=600)
    index = build_site(smoke_dir, SITE)
    return index.parent


@pytest.mark.site
def test_site_has_a_page_per_chapter(site):
    for src in notebook_sources():
        assert (site / "chapters" / f"{src.stem}.html").exists()
    assert (site / "_static" / "mathjax" / "tex-chtml.js").exists(), (
        "MathJax must be served locally"
    )


def test_execute_disables_progress_bars_only_while_running(tmp_path, monkeypatch):
    """The kernel inherits ``TQDM_DISABLE=1``, HTML figures and an absolute run-log path (the
    kernel runs in notebooks/, not in the caller's folder) from ``execute``; the caller's values
    come back."""
    import papermill

    seen, env = [], []

    def fake_execute(src, out, **kw):
        seen.append(os.environ.get("TQDM_DISABLE"))
        env.append((os.environ.get("RLHF_NB_FIGURES"), os.environ.get("RLHF_NB_CACHE_LOG")))
        Path(out).write_text(Path(src).read_text())

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    source = tmp_path / "01_x.py"
    source.write_text("# %%\nx = 1\n")
    for before in (None, "0"):
        if before is None:
            monkeypatch.delenv("TQDM_DISABLE", raising=False)
        else:
            monkeypatch.setenv("TQDM_DISABLE", before)
        execute(source, tmp_path / "out", smoke=True)
        assert os.environ.get("TQDM_DISABLE") == before
    assert seen == ["1", "1"]
    monkeypatch.chdir(tmp_path)
    execute(source, Path("rel"), smoke=True)  # make book passes a relative --out
    figures, log = env[-1]
    assert figures == "html" and Path(log).is_absolute()
    assert Path(log) == (tmp_path / "rel" / "logs" / "01_x.runs.tsv") and Path(log).exists()
    assert "RLHF_NB_CACHE_LOG" not in os.environ


@pytest.mark.site
def test_site_notebooks_are_valid(site):
    """What ``prepare_for_site`` writes for Jupyter Book is still a valid notebook."""
    import nbformat

    staged = sorted((ROOT / "build" / f"src-{SITE.name}" / "chapters").glob("*.ipynb"))
    assert [nb.stem for nb in staged] == [src.stem for src in notebook_sources()]
    for path in staged:
        nbformat.validate(nbformat.reads(path.read_text(), as_version=nbformat.NO_CONVERT))


@pytest.mark.site
def test_no_progress_bars_on_the_pages(site):
    for page in (site / "chapters").glob("*.html"):
        assert "it/s]" not in page.read_text(), f"{page.name} shows tqdm redraws"


def test_plotly_js_is_served_once(site):
    """plotly.js (~4.8 MB) is one static file every page loads, not a copy inside each chapter:
    a chapter page weighs what its own figures weigh."""
    bundle = site / "_static" / "plotly.min.js"
    assert bundle.stat().st_size > 1_000_000
    for page in sorted((site / "chapters").glob("*.html")):
        html = page.read_text()
        assert "plotly.min.js" in html, page.name
        assert "* plotly.js v" not in html, f"{page.name} embeds plotly.js"
        assert page.stat().st_size < 2_000_000, (page.name, page.stat().st_size)


def test_every_figure_has_a_caption(site):
    """Each plotly figure on a chapter page sits in a <figure> with a numbered <figcaption>
    (its title; rlhf_nb._site.build.prepare_for_site)."""
    import re

    for page in sorted((site / "chapters").glob("*.html")):
        html = page.read_text()
        figures = html.count('class="plotly-graph-div"')
        captions = re.findall(r'<figcaption class="rlhf-caption"><strong>Figure (\d+)\.</strong>'
                              r" ([^<]*)</figcaption>", html)  # fmt: skip
        assert len(captions) == figures, (page.name, figures, len(captions))
        assert [int(n) for n, _ in captions] == list(range(1, figures + 1)), page.name
        assert all(text.strip() for _, text in captions), page.name


@pytest.mark.site
def test_every_page_renders_in_chromium(site, smoke_dir):
    need_browser()
    reports = sitecheck.check_pages(site, screens=SCREENS, notebooks=smoke_dir)
    chapters = [r for r in reports if r.page.startswith("chapters/")]
    assert len(chapters) == len(notebook_sources())
    for r in reports:
        assert r.problems == [], f"{r.page}: {r.problems}"
        assert r.screenshot is not None and r.screenshot.stat().st_size > 10_000
    for r in chapters:
        assert r.figures == r.figures_expected and r.figures >= 1, f"{r.page}: no plotly figure"
        assert r.sliders == r.sliders_expected, f"{r.page}: plotly sliders are missing"
        assert r.math >= 1, f"{r.page}: no math on the page"
    print("\n".join(f"{r.page}: {r.figures} figures, {r.sliders} sliders" for r in chapters))


PLOTLY_DIV = '<div class="plotly-graph-div" id="p" style="height:300px"></div>'


def _page(tmp_path, name, body):
    head = '<head><link rel="icon" href="data:,"></head>'  # no favicon request
    (tmp_path / name).write_text(f"<!doctype html><html>{head}<body>{body}</body></html>")
    return name


@pytest.mark.site
def test_check_fails_without_plotly_js(tmp_path):
    """A page whose plotly.js is missing or broken must be reported, not passed."""
    need_browser()
    figure = textwrap.dedent(f"""{PLOTLY_DIV}
        <script>Plotly.newPlot('p', [{{y: [1, 2, 3]}}]);</script>""")
    pages = [
        _page(tmp_path, "no_plotly.html", figure),
        _page(tmp_path, "math_untypeset.html", '<span class="math">\\(x^2\\)</span>'),
    ]
    reports = {r.page: r for r in sitecheck.check_pages(tmp_path, pages, timeout=3)}
    bad = reports["no_plotly.html"]
    assert bad.figures == 1 and bad.figures_rendered == 0
    assert any("not rendered" in p for p in bad.problems)
    assert any("Plotly is not defined" in e for e in bad.js_errors)
    assert any("not typeset" in p for p in reports["math_untypeset.html"].problems)


@pytest.mark.site
def test_check_passes_a_page_with_plotly_js(tmp_path):
    """The same page with plotly.js inlined passes: the check is about rendering, not markup."""
    need_browser()
    from plotly.offline import get_plotlyjs

    body = f"<script>{get_plotlyjs()}</script>{PLOTLY_DIV}"
    body += "<script>Plotly.newPlot('p', [{y: [1, 2, 3]}]);</script>"
    name = _page(tmp_path, "ok.html", body)
    (rep,) = sitecheck.check_pages(tmp_path, [name], timeout=10)
    assert rep.figures == rep.figures_rendered == 1 and rep.problems == []


@pytest.mark.site
def test_check_moves_sliders_and_flags_a_dead_one(tmp_path):
    """A slider whose steps point at frames the page does not carry is reported."""
    need_browser()
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    from rlhf_nb.viz import plotting

    good = plotting.slider_figure("a", [1.0, 2.0], lambda a: [go.Scatter(y=[0, a])])
    dead = go.Figure(good)
    dead.frames = []  # the steps still name frames "1" and "2"
    body = f"<script>{get_plotlyjs()}</script>"
    for name, fig in (("good", good), ("dead", dead)):
        body += fig.to_html(full_html=False, include_plotlyjs=False, div_id=name)
    (rep,) = sitecheck.check_pages(tmp_path, [_page(tmp_path, "s.html", body)], timeout=10)
    assert (rep.figures_rendered, rep.sliders, rep.sliders_working) == (2, 2, 1)
    assert "1/2 sliders do nothing" in rep.problems
