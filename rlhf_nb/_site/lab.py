"""``make lab``: the book in JupyterLab, from the project's venv.

    python -m rlhf_nb._site.lab                  # open chapter 00 in your browser
    python -m rlhf_nb._site.lab --no-browser --port 8899

What it sets up, and why (each was a reader's stumble in a plain ``jupyter lab``):

* **The ``.py`` chapters open as notebooks on a double-click.** The chapters' source of truth is
  py:percent (jupytext); JupyterLab's default viewer for Python files is the text editor. This
  module writes ``lab/overrides.json`` (``defaultViewers``: python -> "Jupytext Notebook") into
  the venv's JupyterLab settings folder, where it is a default the reader can still change.
* **Saving does not rewrite a chapter's header.** ``pyproject.toml``'s ``[tool.jupytext]``
  filters jupytext's version fields out of the ``.py`` header (tested in ``tests/test_lab.py``).
* **Figures and widgets**: plotly figures are sent as JSON and drawn by the jupyterlab-plotly
  extension (no output carries plotly.js, see :func:`rlhf_nb.core.plotly_renderer`); ipywidgets
  and anywidget (plotly's ``FigureWidget``) come with the ``book`` extra.
* The server listens on loopback only, with a token, rooted at the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OVERRIDES = ROOT / "lab" / "overrides.json"
FIRST_PAGE = "notebooks/00_overview.py"


def settings_dir() -> Path:
    """The JupyterLab application settings folder of this Python (``<app dir>/settings``)."""
    from jupyterlab.commands import get_app_dir

    return Path(get_app_dir()) / "settings"


def install_settings(target: Path | None = None) -> Path:
    """Merge ``lab/overrides.json`` into ``target`` (default :func:`settings_dir`'s
    ``overrides.json``), keeping any other plugin's overrides already there. Returns the path."""
    target = target or settings_dir() / "overrides.json"
    ours = json.loads(OVERRIDES.read_text())
    merged = json.loads(target.read_text()) if target.exists() else {}
    for plugin, values in ours.items():
        merged[plugin] = {**merged.get(plugin, {}), **values}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(merged, indent=2) + "\n")
    return target


def command(
    *, root: Path = ROOT, port: int | None = None, browser: bool = True, extra: list[str] = ()
) -> list[str]:
    """The ``jupyter lab`` command line :func:`main` runs (the browser test starts the same
    server on a scratch ``root``)."""
    jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or "jupyter"
    cmd = [jupyter, "lab", f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1",
           f"--LabApp.default_url=/lab/tree/{FIRST_PAGE}"]  # fmt: skip
    if port is not None:
        cmd.append(f"--ServerApp.port={port}")
    if not browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers, CI: Jupyter refuses root
        cmd.append("--allow-root")
    return [*cmd, *extra]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--port", type=int, default=None, help="port (default: the first free from 8888)"
    )
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    args = p.parse_args(argv)
    if args.port is not None and not 1 <= args.port <= 65535:
        p.error(f"--port must be in [1, 65535], got {args.port}")
    path = install_settings()
    print(f"JupyterLab settings: {path} (.py chapters open as notebooks)")
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    return subprocess.call(command(port=args.port, browser=not args.no_browser), env=env)


if __name__ == "__main__":
    sys.exit(main())
