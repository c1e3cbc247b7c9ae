"""Colab: the repository URL lives in pyproject.toml only; every chapter's badge and set-up cell
agree with it, the set-up cell does nothing outside Colab, and no chapter reads a file that is
neither in the repository nor written by the package."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from rlhf_nb._site import colab

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def test_every_chapter_points_at_the_repository_of_pyproject():
    url = colab.repo_url()
    assert url == "https://github.com/rlhf-nb/rlhf-nb"
    for path in CHAPTERS:
        assert colab.problems(path, url) == [], path.name
        assert path.read_text().index("colab-badge.svg") < path.read_text().index("%% tags")


def test_a_fork_rewrites_badge_and_install(tmp_path):
    src = CHAPTERS[0].read_text()
    fork = "https://github.com/someone/rlhf-nb-fork"
    new = colab.expected(src, CHAPTERS[0].stem, fork)
    assert "github/someone/rlhf-nb-fork/blob/main/notebooks/00_overview.ipynb" in new
    assert '"rlhf-nb @ git+https://github.com/someone/rlhf-nb-fork"' in new
    assert "rlhf-nb/rlhf-nb" not in new
    path = tmp_path / CHAPTERS[0].name
    path.write_text(new)
    assert colab.problems(path, fork) == []
    assert colab.problems(path, colab.repo_url()) != []  # the check sees the mismatch


def test_setup_cell_is_a_no_op_outside_colab(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    exec(colab.SETUP_CELL.format(url=colab.repo_url()), {})  # noqa: S102 - the cell itself
    assert calls == []


FILE = re.compile(
    r"""["']([\w./-]+\.(?:csv|json|txt|pt|bin|ya?ml|toml|png|npz|npy|parquet|pkl))["']"""
)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_no_chapter_reads_a_file_from_nowhere(path):
    """Every file name a chapter's code mentions is in the repository or is written by code (the
    cache, an output folder): a reader in Colab has nothing but the installed package."""
    code = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))
    for name in FILE.findall(code):
        written = re.search(rf"(out|cache_dir|tmp|OUT)[^\n]*{re.escape(name)}", code)
        assert (ROOT / name).exists() or written, f"{path.name} needs {name}"
