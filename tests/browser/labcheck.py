"""The book as a reader meets it in JupyterLab, checked in headless Chromium.

Starts the server ``make lab`` starts (:mod:`rlhf_nb._site.lab`), on loopback with a fresh
token, rooted at a scratch copy of the chapters with ``SMOKE = True`` (so a chapter runs in
seconds), with its own settings, workspace and runtime folders (nothing of the user's is read or
written). Then, as a reader would:

* **chapter 01**: double-click-equivalent open of the ``.py`` (``/lab/tree/...``: the default
  viewer) must give a notebook, not a text editor; Run All; drag the α slider's handle; the
  figure's data must change (the redraw time is measured);
* **chapter 05**: Run All; drag the learning-rate slider of the live run; press "train 40
  steps"; the live run must train at the slider's value and draw its curves;
* after each: save (Ctrl+S), and the saved ``.ipynb`` must not carry plotly.js (a live kernel
  sends figures as JSON only) and the ``.py`` header must not change (jupytext's version fields
  are filtered).

A screenshot is saved after each step under ``screens`` (``book/_build/screens/lab`` in the
tests). Used by ``tests/test_site_lab.py``; run it alone from the repository root:
``python -m tests.browser.labcheck [--screens DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from rlhf_nb._site import lab

from . import sitecheck

# Settings for the scratch server only: no news/update toasts over the notebook, and every cell
# kept in the DOM (JupyterLab's default windowing drops off-screen cells, which the check reads).
TEST_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}
PLOTLY_JS_MARK = "plotly.js v"  # the banner at the top of the inlined library


@dataclass
class LabReport:
    """What the browser saw for one chapter."""

    chapter: str
    opened_as: str = ""  # "notebook" or "editor"
    cells: int = 0
    cells_run: int = 0
    errors: list[str] = field(default_factory=list)
    run_all_s: float = float("nan")
    control: str = ""
    value_before: str = ""
    value_after: str = ""
    figure_changed: bool = False
    redraw_s: float = float("nan")
    kernel_status_while_training: str = ""
    status_line: str = ""
    saved_ipynb_bytes: int = 0
    saved_has_plotly_js: bool = False
    header_unchanged: bool = False
    screenshots: list[Path] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = list(self.errors)
        if self.opened_as != "notebook":
            out.append(f"the .py opened as {self.opened_as or 'nothing'}, not as a notebook")
        if self.cells_run < self.cells:
            out.append(f"{self.cells_run} of {self.cells} code cells ran")
        if self.value_before == self.value_after:
            out.append(f"{self.control} did not move ({self.value_before})")
        if not self.figure_changed:
            out.append(f"the figure did not change after moving {self.control}")
        if self.saved_has_plotly_js:
            out.append("the saved .ipynb carries plotly.js")
        if not self.header_unchanged:
            out.append("saving changed the .py header")
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scratch_copy(chapters: list[str], dest: Path) -> Path:
    """Copy ``pyproject.toml`` (jupytext's config) and the chapters' ``.py`` into ``dest``, with
    the parameter ``SMOKE = True``. Returns ``dest``."""
    (dest / "notebooks").mkdir(parents=True, exist_ok=True)
    shutil.copy(lab.ROOT / "pyproject.toml", dest / "pyproject.toml")
    for stem in chapters:
        text = (lab.ROOT / "notebooks" / f"{stem}.py").read_text()
        smoke, n = re.subn(r"^SMOKE = False\b", "SMOKE = True", text, count=1, flags=re.M)
        if n != 1:
            raise ValueError(f"{stem}.py has no 'SMOKE = False' parameter line")
        (dest / "notebooks" / f"{stem}.py").write_text(smoke)
    return dest


class LabServer:
    """``jupyter lab`` as ``make lab`` runs it, on a scratch root with its own folders."""

    def __init__(self, root: Path, work: Path):
        self.root, self.work = root, work
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> LabServer:
        app_settings = self.work / "app-settings"
        lab.install_settings(app_settings / "overrides.json")
        user = self.work / "user-settings"
        for name, values in TEST_SETTINGS.items():
            (user / name).parent.mkdir(parents=True, exist_ok=True)
            (user / name).write_text(json.dumps(values))
        env = {k: v for k, v in os.environ.items() if k != "RLHF_NB_FIGURES"}
        env.update(JUPYTER_CONFIG_DIR=str(self.work / "config"),
                   JUPYTER_RUNTIME_DIR=str(self.work / "runtime"),
                   JUPYTER_DATA_DIR=str(self.work / "data"), TQDM_DISABLE="1")  # fmt: skip
        extra = [f"--IdentityProvider.token={self.token}", "--ServerApp.open_browser=False",
                 f"--LabApp.app_settings_dir={app_settings}",
                 f"--LabApp.user_settings_dir={user}",
                 f"--LabApp.workspaces_dir={self.work / 'workspaces'}"]  # fmt: skip
        cmd = lab.command(root=self.root, port=self.port, browser=False, extra=extra)
        self.log = open(self.work / "lab.log", "w")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.url('api/status')}", timeout=2)
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__(None, None, None)
                    log = (self.work / "lab.log").read_text()[-3000:]
                    msg = f"JupyterLab did not start on port {self.port}:\n{log}"
                    raise RuntimeError(msg) from None
                time.sleep(0.5)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


# --- what the page shows -------------------------------------------------------------------

_STATE = """
const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
if (!nb) return {notebook: false, editor: !!document.querySelector('.jp-FileEditor')};
const cells = [...nb.querySelectorAll('.jp-CodeCell')];
const prompts = cells.map(c => (c.querySelector('.jp-InputArea-prompt') || {}).textContent || '');
const errors = [...nb.querySelectorAll(
    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
  .map(o => o.textContent).filter(t => t.includes('Traceback (most recent call last)'))
  .map(t => t.slice(0, 600));
const bar = [...document.querySelectorAll('.jp-StatusBar-TextItem')]
  .map(e => e.textContent).find(t => t.includes(' | ')) || '';  // "Python 3 (ipykernel) | Idle"
return {notebook: true, cells: cells.length, running: prompts.filter(p => p.includes('*')).length,
        run: prompts.filter(p => /\\[\\d+\\]/.test(p)).length, errors,
        kernel: bar.split(' | ').pop().trim(),
        text: nb.textContent.length};
"""

# The plotly figures inside widget boxes: data (x, y of every trace) as a string to compare.
_WIDGET_FIGURES = """
const gds = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .widget-vbox')]
  .flatMap(b => [...b.querySelectorAll('.js-plotly-plot')]);
return gds.map(gd => JSON.stringify((gd.data || []).map(t => [t.name, t.x, t.y])));
"""


def _slider(driver, label: str):
    """The ipywidgets slider whose description is ``label``: (its element, its readout)."""
    from selenium.webdriver.common.by import By

    for s in driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .widget-slider"):
        desc = s.find_elements(By.CSS_SELECTOR, ".widget-label")
        if desc and desc[0].text.strip() == label:
            return s, s.find_element(By.CSS_SELECTOR, ".widget-readout")
    raise LookupError(f"no slider labelled {label!r} on the page")


def _scroll_to_widget(driver, element) -> None:
    """Scroll the widget box holding ``element`` to the top of the notebook (for screenshots)."""
    from selenium.webdriver.common.by import By

    box = element.find_element(By.XPATH, "./ancestor::div[contains(@class,'widget-vbox')][1]")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", box)
    time.sleep(0.5)


def _drag(driver, slider, dx: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    handle = slider.find_element(By.CSS_SELECTOR, ".noUi-handle")
    driver.execute_script("arguments[0].scrollIntoView({block: 'nearest'})", handle)
    time.sleep(0.3)
    ActionChains(driver).click_and_hold(handle).move_by_offset(dx, 0).release().perform()


def _run_all(driver, rep: LabReport, timeout: float) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(
        By.XPATH, "//div[contains(@class,'lm-MenuBar-itemLabel')][text()='Run']"
    ).click()
    driver.find_element(By.CSS_SELECTOR, "li.lm-Menu-item[data-command='runmenu:run-all']").click()
    t0, deadline = time.monotonic(), time.monotonic() + timeout
    while True:
        time.sleep(0.5)
        s = driver.execute_script(_STATE)
        finished = s["run"] == s["cells"] and not s["running"]
        if finished or s["errors"] or time.monotonic() > deadline:
            break
    rep.run_all_s = time.monotonic() - t0
    rep.cells, rep.cells_run, rep.errors = s["cells"], s["run"], s["errors"]
    if not finished and not s["errors"]:
        rep.errors.append(f"Run All did not finish in {timeout:.0f} s ({s['run']}/{s['cells']})")


def _shot(driver, screens: Path | None, rep: LabReport, name: str) -> None:
    if screens is not None:
        path = screens / f"{rep.chapter[:2]}_{name}.png"
        driver.save_screenshot(str(path))
        rep.screenshots.append(path)


def _save_and_inspect(driver, server: LabServer, rep: LabReport, header: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    nb = driver.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    nb.click()
    nb.send_keys(Keys.ESCAPE, Keys.CONTROL, "s")
    ipynb = server.root / "notebooks" / f"{rep.chapter}.ipynb"
    deadline = time.monotonic() + 30
    while not ipynb.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1.0)  # let the paired write finish
    if ipynb.exists():
        data = ipynb.read_bytes()
        rep.saved_ipynb_bytes = len(data)
        rep.saved_has_plotly_js = PLOTLY_JS_MARK.encode() in data
    else:
        rep.errors.append("Ctrl+S wrote no paired .ipynb")
    py = (server.root / "notebooks" / f"{rep.chapter}.py").read_text()
    rep.header_unchanged = py.split("# ---\n", 2)[1] == header


def _open(driver, server: LabServer, rep: LabReport, timeout: float = 90) -> str:
    """Open the chapter's .py by its tree URL (its default viewer); wait for the kernel."""
    header = (server.root / "notebooks" / f"{rep.chapter}.py").read_text().split("# ---\n", 2)[1]
    driver.get(server.url(f"lab/tree/notebooks/{rep.chapter}.py") + "&reset")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = driver.execute_script(_STATE)
        if s["notebook"] and s["cells"] > 1 and s["kernel"].lower() == "idle":
            break
        if s.get("editor"):
            break
        time.sleep(0.5)
    rep.opened_as = "notebook" if s["notebook"] else ("editor" if s.get("editor") else "")
    return header


def _prepare(driver, server: LabServer, rep: LabReport, control: str, timeout: float):
    """Open the chapter, Run All, find the slider ``control`` and bring its widget into view.
    Returns ``(header, slider, readout)``, or ``None`` when the .py did not open as a notebook."""
    rep.control = control
    header = _open(driver, server, rep)
    if rep.opened_as != "notebook":
        return None
    _run_all(driver, rep, timeout=timeout)
    slider, readout = _slider(driver, control)
    _scroll_to_widget(driver, slider)
    rep.value_before = readout.text
    return header, slider, readout


def check_chapter_01(driver, server: LabServer, screens: Path | None, rep: LabReport) -> None:
    if (found := _prepare(driver, server, rep, "α = β", timeout=300)) is None:
        return
    header, slider, readout = found
    before = driver.execute_script(_WIDGET_FIGURES)
    _shot(driver, screens, rep, "1_before_move")
    _drag(driver, slider, 60)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        after = driver.execute_script(_WIDGET_FIGURES)
        if after and after != before:
            rep.figure_changed, rep.redraw_s = True, time.monotonic() - t0
            break
        time.sleep(0.05)
    rep.value_after = readout.text
    time.sleep(0.5)
    _shot(driver, screens, rep, "2_after_move")
    _save_and_inspect(driver, server, rep, header)


def check_chapter_05(driver, server: LabServer, screens: Path | None, rep: LabReport) -> None:
    from selenium.webdriver.common.by import By

    if (found := _prepare(driver, server, rep, "lr", timeout=600)) is None:
        return
    header, slider, readout = found
    _drag(driver, slider, -80)
    time.sleep(1.0)
    rep.value_after = readout.text
    before = driver.execute_script(_WIDGET_FIGURES)
    _shot(driver, screens, rep, "1_lr_moved")
    buttons = driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .widget-button")
    button = next(b for b in buttons if b.text.strip().startswith("train "))
    button.click()
    t0 = time.monotonic()
    status = button.find_element(By.XPATH, "./ancestor::div[contains(@class,'widget-hbox')][1]")
    while time.monotonic() - t0 < 300:
        time.sleep(0.5)
        line = status.text
        if not rep.kernel_status_while_training and "training" in line:
            rep.kernel_status_while_training = driver.execute_script(_STATE)["kernel"]
            _shot(driver, screens, rep, "2_training")
        if "finished after" in line or "diverged after" in line or "failed" in line:
            break
    rep.redraw_s = time.monotonic() - t0
    rep.status_line = status.text.replace("\n", " ")
    after = driver.execute_script(_WIDGET_FIGURES)
    rep.figure_changed = bool(after) and after != before
    if "failed" in rep.status_line or "after" not in rep.status_line:
        rep.errors.append(f"live run: {rep.status_line!r}")
    else:
        lr_used = float(re.search(r"lr=([\d.e+-]+)", rep.status_line).group(1))
        if abs(lr_used - float(rep.value_after)) > 0.01 * float(rep.value_after):
            rep.errors.append(f"trained at lr={lr_used}, the slider reads {rep.value_after}")
    _shot(driver, screens, rep, "3_trained")
    _save_and_inspect(driver, server, rep, header)


CHECKS = {
    "01_maxent_optimal_policy": "check_chapter_01",
    "05_online_maxent_vs_kl": "check_chapter_05",
}


def _checked(fn, chapter: str, driver, server: LabServer, screens: Path | None) -> LabReport:
    """Run one chapter's check; an exception becomes a reported problem with a screenshot."""
    rep = LabReport(chapter)
    try:
        fn(driver, server, screens, rep)
    except Exception as err:  # a missing element, a timeout: report it with what the page shows
        rep.errors.append(f"{type(err).__name__}: {str(err).splitlines()[0]}")
        _shot(driver, screens, rep, "error")
    return rep


def check_lab(
    screens: Path | None = None, work: Path | None = None, chapters: list[str] | None = None
) -> list[LabReport]:
    """Run the chapter checks (default: both); ``screens`` gets the screenshots (emptied
    first); ``work`` keeps the scratch server's folders (default: a temporary folder)."""
    chapters = chapters or list(CHECKS)
    if screens is not None:
        shutil.rmtree(screens, ignore_errors=True)
        screens.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="rlhf-nb-lab-") as tmp:
        work = Path(work or tmp)
        root = scratch_copy(chapters, work / "root")
        with LabServer(root, work) as server:
            driver = sitecheck._driver()
            driver.set_window_size(1400, 1000)
            try:
                return [_checked(globals()[CHECKS[c]], c, driver, server, screens)
                        for c in chapters]  # fmt: skip
            finally:
                driver.quit()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="JupyterLab checks in headless Chromium")
    p.add_argument("--screens", type=Path, default=lab.ROOT / "book" / "_build" / "screens" / "lab")
    p.add_argument("--only", choices=list(CHECKS), action="append", help="check one chapter")
    p.add_argument("--work", type=Path, default=None, help="keep the server's folders here")
    args = p.parse_args(argv)
    reason = sitecheck.browser_available()
    if reason:
        print(f"Chromium {reason}")
        return 2
    bad = 0
    for rep in check_lab(args.screens, args.work, args.only):
        print(json.dumps({k: str(v) for k, v in rep.__dict__.items()}, indent=1))
        for problem in rep.problems:
            print(f"PROBLEM {rep.chapter}: {problem}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
