"""Every chapter executes under papermill with SMOKE=True, and bad parameters fail early."""

from __future__ import annotations

import time

import nbformat
import papermill as pm
import pytest

from rlhf_nb._site.build import execute, notebook_sources

SOURCES = notebook_sources()


@pytest.mark.notebook
@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_notebook_executes_in_smoke_mode(source, smoke_dir):
    t0 = time.perf_counter()
    out = execute(source, smoke_dir, smoke=True, timeout=600)
    seconds = time.perf_counter() - t0
    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "every code cell ran"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    print(f"{source.name}: {seconds:.1f} s (SMOKE)")


def test_every_notebook_follows_the_conventions():
    import jupytext

    assert SOURCES, "no notebooks found"
    for src in SOURCES:
        nb = jupytext.read(src)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{src.name}: exactly one cell tagged 'parameters'"
        for name in ("SMOKE", "SEED", "DEVICE"):
            assert f"{name} =" in tagged[0].source, f"{src.name}: parameters cell lacks {name}"
        first_md = nb.cells[0].source
        assert "colab-badge.svg" in first_md and f"notebooks/{src.stem}.ipynb" in first_md, (
            f"{src.name}: the first cell must carry an Open-in-Colab badge for this notebook"
        )
        text = "\n".join(c.source for c in nb.cells)
        assert '"google.colab" in sys.modules' in text, f"{src.name}: Colab set-up cell missing"
        assert "rlhf_nb.setup(" in text, f"{src.name}: must call rlhf_nb.setup()"
        assert "## Checkpoints" in text, f"{src.name}: must end with a Checkpoints section"
        assert "assert " in nb.cells[-1].source, f"{src.name}: last cell must assert"
        if src.stem >= "01":  # chapters 01 on end with exercises and executed, collapsed solutions
            start = next(i for i, c in enumerate(nb.cells) if "## Exercises" in c.source)
            solutions = [c for c in nb.cells[start:] if c.cell_type == "code"
                         and "hide-input" in c.metadata.get("tags", [])]  # fmt: skip
            assert 2 <= len(solutions) <= 4, f"{src.name}: 2-4 exercises with solutions"
            assert all("assert " in c.source for c in solutions), f"{src.name}: solutions check"


@pytest.mark.notebook
@pytest.mark.parametrize(
    "params, message",
    [
        ({"SEED": -1}, "SEED must be in"),
        ({"SEED": "zero"}, "SEED must be int"),
        ({"DEVICE": "tpu"}, "DEVICE must be one of"),
        ({"SMOKE": "yes"}, "SMOKE must be bool"),
    ],
)
def test_bad_parameter_fails_in_the_first_cells(params, message, tmp_path):
    """A wrong parameter stops the notebook at set-up with a message naming it."""
    source = SOURCES[0]
    with pytest.raises(pm.PapermillExecutionError) as err:
        execute(source, tmp_path, smoke=True, parameters=params, timeout=120)
    assert message in str(err.value)
    nb = nbformat.read(tmp_path / f"{source.stem}.ipynb", as_version=4)
    failed = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        and any(o.get("output_type") == "error" for o in c.get("outputs", []))
    ]
    code_index = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert failed and code_index.index(failed[0]) <= 4, "the error must come from the set-up cells"


CHAPTER_05 = next(s for s in SOURCES if s.stem.startswith("05_"))


@pytest.mark.notebook
def test_chapter_05_grid_is_a_parameter(tmp_path):
    """A reader's own α list goes through papermill -p: the grid, the headline MaxEnt setting
    and the tables use it (SMOKE keeps the first and last value of each list)."""
    params = {"ALPHAS": [0.0, 0.1], "MAXENT_ALPHA": 0.1, "BETAS": [0.1], "ALPHAS_LO": [0.0]}
    out = execute(CHAPTER_05, tmp_path, smoke=True, parameters=params, timeout=600)
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert "α=0.1 (seq)" in text and "β=0.1 (kl)" in text  # the reader's values were trained
    assert "α=0.2 (seq)" not in text and "β=0.05 (kl)" not in text  # not the book's defaults


@pytest.mark.notebook
@pytest.mark.parametrize(
    "params, message",
    [
        ({"ALPHAS": [0.02, 0.05]}, "ALPHAS must contain 0.0"),
        ({"BETAS": [0.0]}, "BETAS must be in (0.0, inf)"),
        ({"LR_LO": 2.0}, "LR_LO must be in (0.0, 1.0]"),
        ({"ALPHAS": "0.05"}, "ALPHAS must be"),
    ],
)
def test_chapter_05_bad_grid_fails_in_the_first_cells(params, message, tmp_path):
    with pytest.raises(pm.PapermillExecutionError) as err:
        execute(CHAPTER_05, tmp_path, smoke=True, parameters=params, timeout=120)
    assert message in str(err.value)


@pytest.mark.notebook
def test_chapters_execute_side_by_side_and_a_failure_stops_the_build(tmp_path, capsys):
    """``make book``'s ``--jobs``: chapters in their own processes, each with its log; the first
    failing chapter ends the build with its exit status and the tail of its log."""
    from rlhf_nb._site.build import execute_side_by_side

    two = SOURCES[:2]
    assert execute_side_by_side(two, tmp_path / "ok", 2, True, []) == 0
    for src in two:
        assert (tmp_path / "ok" / f"{src.stem}.ipynb").exists()
        assert (tmp_path / "ok" / "logs" / f"{src.stem}.log").exists()
    assert "all 2 chapters executed" in capsys.readouterr().out
    assert execute_side_by_side(two, tmp_path / "bad", 2, True, ["SEED=-1"]) != 0
    out = capsys.readouterr().out
    assert "FAILED" in out and "SEED must be in" in out


def test_book_jobs_auto_follows_the_cores_and_bad_values_name_the_option(monkeypatch):
    from rlhf_nb._site import build
    from rlhf_nb.runs import pool

    monkeypatch.setattr(pool, "resolve_workers", lambda w="auto": 2)
    assert build.book_jobs("auto", 10) == 3  # 2 cores + 1
    assert build.book_jobs("auto", 2) == 2  # never more than the chapters
    monkeypatch.setattr(pool, "resolve_workers", lambda w="auto": 16)
    assert build.book_jobs("auto", 10) == 10
    assert build.book_jobs("4", 10) == 4
    for bad in ("0", "-1", "many"):
        with pytest.raises(ValueError, match="--jobs must be an integer >= 1 or 'auto'"):
            build.book_jobs(bad, 10)
