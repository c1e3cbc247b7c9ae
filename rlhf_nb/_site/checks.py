"""Every checkpoint of a chapter at once: the hold-out validation tool (issue 26, seed discipline).

A notebook stops at its first failing checkpoint, so a chapter tried at a testbed seed it was not
tuned on tells you about one statement per execution. This runs a chapter's source as a Python
program, with every ``assert`` statement and every ``stats.holds(...)`` call wrapped so that a
failure is recorded and execution goes on, then prints one line per checkpoint::

    python -m rlhf_nb._site.checks notebooks/05_online_maxent_vs_kl.py -p SEED=3

Runs come from the cache (``RLHF_NB_CACHE``) like in the notebook, so after a chapter has been
executed at a seed this takes the time of its cells without training. The parameters replace the
assignments of the cell tagged ``parameters`` (as papermill's injected cell would). Exit status
1 when any checkpoint failed. What it reports is the evidence for the comment above each
checkpoint (its calibration seeds and hold-out result); it changes nothing in the chapter.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from rlhf_nb._site.build import NOTEBOOKS, parse_params


@dataclass
class Check:
    """One executed checkpoint: its source line, the statement, and the failure (``None``: it
    held)."""

    line: int
    source: str
    error: str | None


def _is_holds(node: ast.stmt) -> bool:
    """``stats.holds(...)`` or ``holds(...)`` as a statement of its own."""
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)):
        return False
    f = node.value.func
    return (isinstance(f, ast.Attribute) and f.attr == "holds") or (
        isinstance(f, ast.Name) and f.id == "holds"
    )


class _Wrap(ast.NodeTransformer):
    """Each checkpoint statement ``s`` becomes ``__check__(line, lambda: s)`` in spirit: a
    ``try`` that records an ``AssertionError`` with the statement's line and source."""

    def __init__(self, text: str):
        self.text = text

    def _wrap(self, node: ast.stmt) -> ast.stmt:
        src = ast.get_source_segment(self.text, node) or ""
        tmpl = ast.parse(
            "try:\n    pass\nexcept AssertionError as __e:\n"
            "    __checks__.fail(__LINE__, __SRC__, __e)\nelse:\n"
            "    __checks__.ok(__LINE__, __SRC__)\n"
        ).body[0]
        tmpl.body = [node]
        for n in ast.walk(tmpl):
            if isinstance(n, ast.Name) and n.id == "__LINE__":
                n.__class__, n.value = ast.Constant, node.lineno
            elif isinstance(n, ast.Name) and n.id == "__SRC__":
                n.__class__, n.value = ast.Constant, src
        return ast.copy_location(tmpl, node)

    def visit_Assert(self, node):
        return self._wrap(node)

    def visit_Expr(self, node):
        return self._wrap(node) if _is_holds(node) else node

    # a checkpoint inside a function or a comprehension is not a top-level statement of a cell
    def visit_FunctionDef(self, node):
        return node


class _Recorder:
    def __init__(self):
        self.checks: list[Check] = []

    def ok(self, line, src):
        self.checks.append(Check(line, src, None))

    def fail(self, line, src, exc):
        msg = str(exc) or "assertion failed"
        self.checks.append(Check(line, src, msg))
        print(f"CHECKPOINT FAILED (line {line}): {msg[:400]}", flush=True)


def program(source: Path, params: dict) -> tuple[ast.Module, str]:
    """The chapter's source with its parameter assignments replaced by ``params`` and every
    checkpoint wrapped; ``ValueError`` naming a parameter the chapter does not have."""
    text = source.read_text()
    tree = ast.parse(text, filename=str(source))
    names = {t.id for node in tree.body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}  # fmt: skip
    unknown = sorted(set(params) - names)
    if unknown:
        raise ValueError(f"{source.name} has no parameter {unknown}; its names: {sorted(names)}")
    seen = set()
    for node in tree.body:  # the first assignment of each name: the parameters cell
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            t = node.targets[0]
            if isinstance(t, ast.Name) and t.id in params and t.id not in seen:
                node.value = ast.copy_location(ast.Constant(params[t.id]), node.value)
                seen.add(t.id)
    tree = ast.fix_missing_locations(_Wrap(text).visit(tree))
    return tree, text


def run(source: Path, params: dict) -> list[Check]:
    """Execute ``source`` (a chapter's py:percent file) at ``params`` with ``notebooks/`` as the
    working directory; the list of every checkpoint executed, in order."""
    import plotly.graph_objects as go

    go.Figure.show = lambda *a, **k: None  # a script has no front end to show a figure in
    tree, _ = program(source, params)
    rec = _Recorder()
    ns = {"__name__": "__main__", "__checks__": rec, "display": lambda *a, **k: None,
          "__file__": str(source)}  # fmt: skip
    cwd = os.getcwd()
    os.chdir(NOTEBOOKS)
    try:
        exec(compile(tree, str(source), "exec"), ns)  # noqa: S102 - the book's own source
    except Exception:  # noqa: BLE001 - a crash outside a checkpoint ends the run: say where
        traceback.print_exc()
        rec.checks.append(Check(-1, "<the chapter crashed outside a checkpoint>", "crash"))
    finally:
        os.chdir(cwd)
    return rec.checks


def report(checks: list[Check]) -> str:
    """One line per checkpoint statement (held / FAILED, its line, its first source line; ``×n``
    when a loop executed it n times, with how many of them failed), each failure's message under
    it, and a count."""
    by_line: dict[int, list[Check]] = {}
    for c in checks:
        by_line.setdefault(c.line, []).append(c)
    lines = []
    for line, cs in by_line.items():
        src = cs[0].source.strip()
        first = src.splitlines()[0] if src else src
        errors = [c.error for c in cs if c.error is not None]
        times = ""
        if len(cs) > 1:
            times = f" ×{len(cs)}" + (f", {len(errors)} failed" if errors else "")
        lines.append(f"{'FAILED' if errors else 'held  '} line {line:4d}{times}: {first[:100]}")
        lines += [f"       {e[:600]}" for e in errors]
    n_fail = sum(any(c.error is not None for c in cs) for cs in by_line.values())
    lines.append(f"{len(by_line)} checkpoint statements executed, {n_fail} failed")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlhf_nb._site.checks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("source", type=Path, help="a chapter, e.g. notebooks/05_online_maxent_vs_kl.py")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a parameter, e.g. -p SEED=3 (parsed as a Python literal)")  # fmt: skip
    args = ap.parse_args(argv)
    if not args.source.is_file():
        ap.error(f"source: no such chapter file {args.source}")
    try:
        params = parse_params(args.param)
        checks = run(args.source.resolve(), params)
    except ValueError as exc:
        ap.error(str(exc))
    print(report(checks), flush=True)
    return 1 if any(c.error is not None for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
