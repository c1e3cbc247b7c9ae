"""The project's contract: dependency lists agree, pins are exact, the README commands exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {
    "torch",
    "transformers",
    "trl",
    "datasets",
    "accelerate",
    "jupytext",
    "papermill",
    "ipykernel",
    "ipywidgets",
    "plotly",
    "jupyterlab",
    "scipy",
    "pandas",
    "tqdm",
    "pytest",
    "jupyter-book",
}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_requirements() -> list[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return meta["dependencies"] + [
        r for extra in meta["optional-dependencies"].values() for r in extra
    ]


def environment_requirements() -> list[str]:
    lines, in_pip = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if re.match(r"\s*- pip:\s*$", line):
            in_pip = True
            continue
        if in_pip and re.match(r"\s+- ", line):
            lines.append(line.split("- ", 1)[1].strip())
    return lines


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_name(name)] = version.strip()
    return pins


def test_required_packages_are_declared():
    assert REQUIRED <= {_name(r) for r in pyproject_requirements()}


def test_environment_yml_mirrors_pyproject():
    py = {_name(r) for r in pyproject_requirements()}
    env = {_name(r) for r in environment_requirements()}
    assert py == env, f"only in pyproject: {py - env}; only in environment.yml: {env - py}"


def test_every_dependency_is_pinned_exactly():
    pins = constraints()
    missing = {_name(r) for r in pyproject_requirements()} - set(pins)
    assert not missing, f"not pinned in constraints.txt: {missing}"
    assert pins["torch"] == "2.13.0", "torch must be pinned to the CPU wheel available offline"
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pins.values())


def test_pyproject_keeps_ranges_for_colab():
    for req in pyproject_requirements():
        assert "==" not in req, f"{req}: pyproject keeps ranges; pins live in constraints.txt"


def test_readme_and_ci_use_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_build_outputs_are_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    for path in (".venv/", "build/", "book/_build/", ".cache/"):
        assert path in ignored


def test_notation_table_matches_the_config_fields():
    """Every symbol's config fields exist and document the symbol's unit (chapter 00's table)."""
    from rlhf_nb import notation

    for sym in notation.SYMBOLS:
        assert sym.fields, sym
        for name in sym.fields:
            cls, field = name.split(".")
            doc = notation.field_doc(cls, field)
            assert sym.unit in doc, f"{name}: documented as {doc!r}, table says {sym.unit!r}"
    assert notation.table().index.is_unique


LAYERS = {  # a module may import its own layer and the layers below it, never one above
    "core": 0, "notation": 0, "stats": 0, "theory": 1, "sampling": 2, "testbed": 3,
    "methods": 4, "runs": 4, "chapters": 5, "viz": 5, "run": 6, "cli": 6, "_site": 7,
}  # fmt: skip


def test_package_layers_never_import_upwards():
    import ast

    root = Path(__file__).resolve().parents[1] / "rlhf_nb"
    bad = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).with_suffix("")
        if rel.parts == ("__init__",):
            continue
        layer = LAYERS[rel.parts[0]]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] if node.module != "rlhf_nb" else [
                    f"rlhf_nb.{a.name}" for a in node.names]  # fmt: skip
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                parts = t.split(".")
                if parts[0] == "rlhf_nb" and len(parts) > 1 and LAYERS[parts[1]] > layer:
                    bad.append(f"{rel} imports {t}")
    assert not bad, bad
    # within a layer: the chapters never import the figures, the run format never the methods
    within = {"chapters": "rlhf_nb.viz", "runs/record": "rlhf_nb.methods",
              "runs/cache": "rlhf_nb.methods", "stats": "rlhf_nb."}  # fmt: skip
    for path in root.rglob("*.py"):
        rel = "/".join(path.relative_to(root).with_suffix("").parts)
        for prefix, banned in within.items():
            if rel.startswith(prefix):
                for node in ast.walk(ast.parse(path.read_text())):
                    names = (
                        [node.module or ""]
                        if isinstance(node, ast.ImportFrom)
                        else [a.name for a in node.names]
                        if isinstance(node, ast.Import)
                        else []
                    )
                    assert not any(n.startswith(banned) for n in names), (rel, names)


def test_every_subpackage_is_packaged():
    """A plain (non-editable) install, e.g. Colab's, must ship the subpackages too."""
    from fnmatch import fnmatch

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = meta["tool"]["setuptools"]["packages"]["find"]["include"]
    for init in (ROOT / "rlhf_nb").rglob("__init__.py"):
        name = ".".join(init.parent.relative_to(ROOT).parts)
        assert any(fnmatch(name, pat) for pat in include), f"{name} is not packaged"


def test_every_reference_is_cited_and_every_citation_exists():
    """``book/references.bib`` and the chapters' ``{cite}`` roles agree both ways (the site build
    fails on an unknown key too, with ``-W``)."""
    import re

    keys = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(), re.M))
    text = "\n".join(p.read_text() for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")))
    cited = {k.strip() for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text)
             for k in group.split(",")}  # fmt: skip
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"
    assert keys <= cited, f"in references.bib but never cited: {sorted(keys - cited)}"


def test_readme_results_match_the_last_build():
    """The README's results block is what the last ``make book`` generated
    (``build/executed/results.md``); without a build here there is nothing to compare."""
    from rlhf_nb._site import results

    built = ROOT / "build" / "executed" / "results.md"
    block = results.readme_block((ROOT / "README.md").read_text())
    assert block is not None, "README.md lacks the results markers"
    if not built.exists():
        pytest.skip("no make book build in this checkout: nothing to compare the README with")
    assert block == built.read_text(), "README results differ from the last build: make book"


def test_results_wall_time_table_counts_trained_and_loaded_runs(tmp_path):
    from rlhf_nb._site import results

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "05_x.runs.tsv").write_text(
        "/c/runs/a\ttrained\n/c/runs/a\tloaded\n/c/runs/b\tloaded\n/c/runs/b\tloaded\n/c/runs/c\ttra"
    )  # the last line half-written (a build still running): not counted
    results.write_timings(tmp_path, {"05_x": 12.3, "06_y": 4.0}, [])
    page = results.render(tmp_path, ["05_x", "06_y"])
    assert "| `05_x` | 12 | 1 | 1 |" in page  # a: trained (then loaded), b: loaded twice
    assert "| `06_y` | 4 | 0 | 0 |" in page  # no run log: nothing trained or loaded
    assert results.run_counts(tmp_path / "logs" / "missing.runs.tsv") == (0, 0)
