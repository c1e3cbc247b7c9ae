"""The repository URL, kept in one place (``pyproject.toml``'s ``[project.urls] Repository``),
and the two things in every chapter that depend on it: the Open-in-Colab badge of the first cell
and the Colab set-up cell that installs this package.

A notebook cannot import ``rlhf_nb`` before its set-up cell has installed it, so the cells hold
the URL as text; this module writes that text from ``pyproject.toml`` and checks it:

    python -m rlhf_nb._site.colab            # rewrite every chapter's badge and install URL
    python -m rlhf_nb._site.colab --check    # exit 1 naming each chapter that disagrees

To point the badges at a fork: change ``Repository`` in ``pyproject.toml``, run ``make colab``
(this module, then ``jupytext --sync``), commit.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BADGE = re.compile(r"https://colab\.research\.google\.com/github/(?P<repo>[^/]+/[^/]+)/blob/"
                   r"(?P<branch>[^/]+)/notebooks/(?P<stem>[\w.-]+)\.ipynb")  # fmt: skip
INSTALL = re.compile(r'"rlhf-nb @ git\+(?P<url>[^"]+)"')
SETUP_CELL = """import subprocess
import sys

if "google.colab" in sys.modules:  # Colab only; Colab keeps its own torch
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "rlhf-nb @ git+{url}"], check=True)"""


def repo_url(root: Path = ROOT) -> str:
    """``[project.urls] Repository`` of ``pyproject.toml``, e.g. ``https://github.com/o/r``."""
    meta = tomllib.loads((root / "pyproject.toml").read_text())
    url = meta["project"]["urls"]["Repository"].rstrip("/")
    if not re.fullmatch(r"https://github\.com/[^/]+/[^/]+", url):
        raise ValueError(f"[project.urls] Repository must be https://github.com/OWNER/REPO, got "
                         f"{url!r}")  # fmt: skip
    return url


def expected(source: str, stem: str, url: str) -> str:
    """``source`` (a chapter's ``.py``) with its badge and install URL set to ``url``."""
    repo = url.removeprefix("https://github.com/")
    source = BADGE.sub(lambda m: m.group(0).replace(m["repo"], repo).replace(m["stem"], stem),
                       source)  # fmt: skip
    return INSTALL.sub(f'"rlhf-nb @ git+{url}"', source)


def problems(path: Path, url: str) -> list[str]:
    """What is wrong with one chapter's badge and set-up cell ([] when all is right)."""
    text = path.read_text()
    out = []
    badges = list(BADGE.finditer(text))
    if not badges:
        out.append("no Open-in-Colab badge")
    for m in badges:
        if (m["repo"], m["stem"]) != (url.removeprefix("https://github.com/"), path.stem):
            out.append(f"badge points at {m['repo']}/{m['stem']}")
    if SETUP_CELL.format(url=url) not in text:
        out.append(f"no Colab set-up cell installing {url}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlhf_nb._site.colab", description=__doc__)
    ap.add_argument("--check", action="store_true", help="only report; exit 1 on a mismatch")
    args = ap.parse_args(argv)
    url, bad = repo_url(), 0
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        if args.check:
            for p in problems(path, url):
                print(f"{path.name}: {p}")
                bad += 1
        else:
            new = expected(path.read_text(), path.stem, url)
            if new != path.read_text():
                path.write_text(new)
                print(f"updated {path.name}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
