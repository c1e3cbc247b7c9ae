"""The project's contract: dependency lists agree, pins are exact, the README commands exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
