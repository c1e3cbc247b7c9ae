"""Each notebooks/NN_slug.py has a paired NN_slug.ipynb with the same cells and no outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest

from rlhf_nb._site.build import NOTEBOOKS, notebook_sources


def pairing_problems(py: Path) -> list[str]:
    """Why ``py`` and its paired ``.ipynb`` are out of sync (empty list: in sync)."""
    ipynb = py.with_suffix(".ipynb")
    if not ipynb.exists():
        return [f"{py.name}: paired {ipynb.name} is missing (run: make sync)"]
    a = jupytext.read(py)
    b = nbformat.read(ipynb, as_version=4)
    problems = []
    for i, cell in enumerate(b.cells):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            problems.append(f"{ipynb.name}: cell {i} carries outputs (commit it without outputs)")
    cells_a = [(c.cell_type, c.source.strip()) for c in a.cells]
    cells_b = [(c.cell_type, c.source.strip()) for c in b.cells]
    if cells_a != cells_b:
        diff = next(
            (i for i, (x, y) in enumerate(zip(cells_a, cells_b, strict=False)) if x != y),
            min(len(cells_a), len(cells_b)),
        )
        problems.append(
            f"{py.name} and {ipynb.name} differ from cell {diff} on "
            f"({len(cells_a)} vs {len(cells_b)} cells): run `make sync`"
        )
    tags_a = [c.metadata.get("tags", []) for c in a.cells]
    tags_b = [c.metadata.get("tags", []) for c in b.cells]
    if cells_a == cells_b and tags_a != tags_b:
        problems.append(f"{py.name} and {ipynb.name}: cell tags differ: run `make sync`")
    return problems


@pytest.mark.parametrize("py", notebook_sources(), ids=lambda p: p.stem)
def test_pair_in_sync_and_without_outputs(py):
    assert pairing_problems(py) == []


def test_no_orphan_ipynb():
    orphans = [p.name for p in NOTEBOOKS.glob("*.ipynb") if not p.with_suffix(".py").exists()]
    assert orphans == []


def test_pairing_check_catches_an_unsynced_pair(tmp_path):
    src = notebook_sources()[0]
    py, ipynb = tmp_path / src.name, tmp_path / f"{src.stem}.ipynb"
    shutil.copy(src, py)
    shutil.copy(src.with_suffix(".ipynb"), ipynb)
    assert pairing_problems(py) == []
    py.write_text(py.read_text() + "\n# %%\nprint('a cell only the .py has')\n")
    assert any("differ" in p for p in pairing_problems(py))


def test_pairing_check_catches_outputs(tmp_path):
    src = notebook_sources()[0]
    py, ipynb = tmp_path / src.name, tmp_path / f"{src.stem}.ipynb"
    shutil.copy(src, py)
    nb = nbformat.read(src.with_suffix(".ipynb"), as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    nbformat.write(nb, ipynb)
    assert any("carries outputs" in p for p in pairing_problems(py))
