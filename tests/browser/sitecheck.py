"""Open every page of the built site in headless Chromium and check what a reader would see.

For each page: it loads; the browser console has no JavaScript errors; every plotly figure the
executed notebook produced is on the page *and* rendered (plotly.js drew an ``svg.main-svg``);
every slider of those figures is on the page and moves its figure; every math element was typeset
by MathJax (an ``mjx-container``). A screenshot of each page is saved.

Driven with selenium and Debian's ``chromium`` + ``chromium-driver`` (no browser download: the
driver path is given explicitly, so Selenium Manager never goes to the network). The site is
served from 127.0.0.1 by a thread in this process. Used by ``tests/test_site.py`` (and
``labcheck.py``, for its driver); not part of the installed package.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
PLOTLY_MIME = "application/vnd.plotly.v1+json"
# External resources a page may fail to load when the check runs offline: the Open-in-Colab
# badge image is decorative (its link still works). Anything else that fails to load counts.
OFFLINE_OK = ("colab.research.google.com/assets/colab-badge.svg",)


def browser_available() -> str | None:
    """``None`` when Chromium and its driver are installed, else the reason they are not."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        hint = "Debian: apt-get install chromium chromium-driver"
        return f"not installed: {', '.join(missing)} ({hint})"
    return None


@dataclass
class PageReport:
    """What the browser saw on one page."""

    page: str
    figures: int = 0
    figures_rendered: int = 0
    figures_expected: int | None = None
    math: int = 0
    math_rendered: int = 0
    sliders: int = 0
    sliders_working: int = 0
    sliders_expected: int | None = None
    js_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    @property
    def problems(self) -> list[str]:
        out = [f"JavaScript error: {e}" for e in self.js_errors]
        if self.figures_rendered < self.figures:
            out.append(
                f"{self.figures - self.figures_rendered}/{self.figures} plotly figures not rendered"
            )
        if self.figures_expected is not None and self.figures != self.figures_expected:
            out.append(
                f"{self.figures} plotly figures on the page, notebook has {self.figures_expected}"
            )
        if self.sliders_expected is not None and self.sliders != self.sliders_expected:
            out.append(
                f"{self.sliders} plotly sliders on the page, notebook has {self.sliders_expected}"
            )
        if self.sliders_working < self.sliders:
            out.append(f"{self.sliders - self.sliders_working}/{self.sliders} sliders do nothing")
        if self.math_rendered < self.math:
            out.append(f"{self.math - self.math_rendered}/{self.math} math elements not typeset")
        return out


def _plotly_figures(notebook: Path) -> list[dict]:
    """The plotly figures (``data``/``layout`` dicts) among an executed notebook's outputs."""
    nb = json.loads(notebook.read_text())
    return [
        out["data"][PLOTLY_MIME]
        for cell in nb["cells"]
        for out in cell.get("outputs", [])
        if PLOTLY_MIME in out.get("data", {})
    ]


def _has_slider(fig: dict) -> bool:
    """Counted like the page check does: a first slider with two steps or more."""
    sliders = (fig.get("layout") or {}).get("sliders") or []
    return bool(sliders) and len(sliders[0].get("steps") or []) > 1


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


def _serve(root: Path):
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument("--window-size=1280,1000")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


_PROBE = """
const figs = document.querySelectorAll('.plotly-graph-div');
const math = document.querySelectorAll('.math');
return {
  ready: document.readyState,
  figures: figs.length,
  figures_rendered: [...figs].filter(d => d.querySelector('svg.main-svg')).length,
  math: math.length,
  math_rendered: [...math].filter(m => m.querySelector('mjx-container')).length,
  height: document.documentElement.scrollHeight,
};
"""


# Move every plotly slider (of two steps or more) to another step, as a reader's click does (the
# step's own method and args), and count the sliders whose figure actually changed.
_SLIDERS = """
const done = arguments[arguments.length - 1];
const gds = [...document.querySelectorAll('.plotly-graph-div')]
  .filter(gd => gd.layout && gd.layout.sliders && gd.layout.sliders.length
    && gd.layout.sliders[0].steps.length > 1);  // a one-step slider has nowhere to go
const snap = gd => JSON.stringify([gd.data.map(t => [t.x, t.y, t.z, t.visible]), gd.layout.title]);
(async () => {
  let working = 0;
  for (const gd of gds) {
    const s = gd.layout.sliders[0];
    const step = s.steps[((s.active || 0) + 1) % s.steps.length];
    const before = snap(gd);
    try {
      const fn = {animate: Plotly.animate, update: Plotly.update, restyle: Plotly.restyle,
                  relayout: Plotly.relayout}[step.method];
      await fn(gd, ...step.args);
      if (snap(gd) !== before) working++;
    } catch (e) { console.warn('slider step failed', e); }
  }
  done({sliders: gds.length, sliders_working: working});
})();
"""


def check_pages(
    html_dir: Path,
    pages: list[str] | None = None,
    *,
    screens: Path | None = None,
    notebooks: Path | None = None,
    timeout: float = 30.0,
) -> list[PageReport]:
    """Load each page (paths relative to ``html_dir``; default: every ``.html`` outside ``_*``).

    Args:
        screens: folder for one PNG screenshot per page (created; ``None``: no screenshots).
        notebooks: folder of the executed notebooks, to know how many figures and sliders each
            chapter has.
        timeout: seconds to wait per page for figures and math to render.
    """
    html_dir = Path(html_dir)
    if pages is None:
        pages = sorted(
            str(p.relative_to(html_dir))
            for p in html_dir.rglob("*.html")
            if not any(part.startswith("_") for part in p.relative_to(html_dir).parts)
        )
    if screens is not None:  # replace this check's screenshots, keep sub-folders (lab/)
        screens.mkdir(parents=True, exist_ok=True)
        for old in screens.glob("*.png"):
            old.unlink()
    server = _serve(html_dir)
    driver = _driver()
    reports = []
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        for page in pages:
            driver.get(base + page)
            deadline = time.monotonic() + timeout
            while True:
                s = driver.execute_script(_PROBE)
                done = (
                    s["ready"] == "complete"
                    and s["figures_rendered"] == s["figures"]
                    and s["math_rendered"] == s["math"]
                )
                if done or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            rep = PageReport(
                page, s["figures"], s["figures_rendered"], None, s["math"], s["math_rendered"]
            )
            if notebooks is not None:
                nb = Path(notebooks) / (Path(page).stem + ".ipynb")
                if nb.exists():
                    figs = _plotly_figures(nb)
                    rep.figures_expected = len(figs)
                    rep.sliders_expected = sum(_has_slider(fig) for fig in figs)
            rep.js_errors = [
                e["message"]
                for e in driver.get_log("browser")
                if e["level"] == "SEVERE" and not any(ok in e["message"] for ok in OFFLINE_OK)
            ]
            if s["figures_rendered"]:
                moved = driver.execute_async_script(_SLIDERS)
                rep.sliders, rep.sliders_working = moved["sliders"], moved["sliders_working"]
            if screens is not None:
                driver.set_window_size(1280, min(max(s["height"], 800), 12000))
                rep.screenshot = screens / (page.replace("/", "__").removesuffix(".html") + ".png")
                driver.save_screenshot(str(rep.screenshot))
                driver.set_window_size(1280, 1000)
            reports.append(rep)
    finally:
        driver.quit()
        server.shutdown()
    return reports
