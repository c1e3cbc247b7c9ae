"""Build tooling: execute the notebooks with papermill and build the Jupyter Book (1.x) site.

Used by the Makefile (``make book``) and by the tests (``make test``)::

    python -m rlhf_nb._site.build execute --out build/executed          # default presets
    python -m rlhf_nb._site.build execute --out build/smoke --smoke     # CI-sized
    python -m rlhf_nb._site.build site --executed build/executed --out book

The ``.py`` files in ``notebooks/`` are the source of truth. papermill cannot read them, so each
is converted with jupytext first; the executed ``.ipynb`` go to a build folder, and the site is
built from *those* (Jupyter Book is told not to execute again).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rlhf_nb._site import results

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
BOOK = ROOT / "book"
KERNEL = "python3"


def notebook_sources(pattern: str = "*") -> list[Path]:
    """The book's chapters: ``notebooks/NN_slug.py``, in order."""
    return sorted(p for p in NOTEBOOKS.glob(f"{pattern}.py") if p.stem[:2].isdigit())


def execute(
    source: Path,
    out_dir: Path,
    *,
    smoke: bool,
    parameters: dict | None = None,
    timeout: int | None = None,
) -> Path:
    """Convert ``source`` (py:percent) to ipynb and execute it with papermill.

    Parameters are injected after the cell tagged ``parameters``: ``SMOKE`` plus ``parameters``.
    The notebook runs with ``notebooks/`` as its working directory. Returns the executed path.
    The kernel runs with ``TQDM_DISABLE=1``: progress bars are for live kernels; saved notebooks
    would keep every redraw. ``timeout`` (seconds per cell) is ``None`` by default: a training
    cell on a slow or loaded machine may take as long as it needs (the smoke tests pass one).
    Cell outputs are echoed to stdout as they arrive (papermill's ``log_output``), so a chapter's
    log shows its runs being trained, and :func:`execute_side_by_side` relays them.
    """
    import jupytext
    import nbformat
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    src_ipynb = out_dir / f"{source.stem}.input.ipynb"
    nbformat.write(nb, src_ipynb)
    out = out_dir / f"{source.stem}.ipynb"
    # the kernel inherits os.environ: no progress bars; figures as JSON + HTML for the site; a
    # record of the runs the chapter loads and trains (benchmarks/book_cost.py --executed)
    runs_log = (out_dir / "logs" / f"{source.stem}.runs.tsv").resolve()  # the kernel's cwd differs
    runs_log.parent.mkdir(exist_ok=True)
    runs_log.write_text("")
    with _env(TQDM_DISABLE="1", RLHF_NB_FIGURES="html", RLHF_NB_CACHE_LOG=str(runs_log)):
        pm.execute_notebook(
            str(src_ipynb),
            str(out),
            parameters={"SMOKE": smoke, **(parameters or {})},
            kernel_name=KERNEL,
            cwd=str(NOTEBOOKS),
            progress_bar=False,
            log_output=True,
            execution_timeout=timeout,
        )
    src_ipynb.unlink()
    return out


@contextlib.contextmanager
def _env(**values: str):
    """Set environment variables for the duration of the block, then restore the old values."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = (
    '<div class="admonition note"><p class="admonition-title">Live widget</p>'
    "<p>This control needs a running kernel: open the notebook in JupyterLab or Colab to use it. "
    "The plotly slider figure next to it works on this page.</p></div>"
)
PLOTLY_MATHJAX_CDN = re.compile(r'<script src="https://cdn[^"]*/mathjax/[^"]*"></script>')
# plotly's notebook renderer embeds the whole plotly.js (~4.8 MB) in an output of each chapter;
# the site serves it once instead (_static/plotly.min.js, book/_config.yml's html_js_files)
PLOTLY_BUNDLE = "/** * plotly.js v"
PLOTLY_STATIC = "plotly.min.js"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def prepare_for_site(nb: dict) -> dict:
    """Make an executed notebook render fully offline on the static site.

    * Live ipywidgets have no kernel on a static page; myst-nb would load require.js and the
      widget manager from a CDN for them. Their saved state is dropped and each widget output is
      replaced by a note pointing to the plotly slider version of the same figure.
    * plotly's notebook renderer adds a MathJax ``<script>`` from a CDN to every figure; the site
      serves its own MathJax, so the tag is removed.
    * the same renderer embeds all of plotly.js in an output of the set-up cell (and again where a
      widget first draws); every page loads the one copy in ``_static`` (:func:`build_site`), so
      those outputs are dropped and a page weighs what its own figures weigh.
    * every figure gets a numbered caption, its title (:func:`_caption`).
    """
    n_fig = 0
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data:
                out["data"] = {"text/html": WIDGET_NOTE}
            elif "text/html" in data:
                html = data["text/html"]
                html = "".join(html) if isinstance(html, list) else html
                if PLOTLY_BUNDLE in html.replace("\n", " ")[:2000]:
                    html = ""  # plotly.js itself: served once from _static
                html = PLOTLY_MATHJAX_CDN.sub("", html)
                if PLOTLY_MIME in data and html:
                    n_fig += 1
                    html = _caption(html, data[PLOTLY_MIME], n_fig)
                data["text/html"] = html
    return nb


RESULTS_INTRO = (
    "Generated by `make book` from the executed chapters (their cells tagged `results`) and the "
    "build's timings; the README carries the same text.\n\n"
)


def _caption(html: str, figure: dict, number: int) -> str:
    """``html`` (a plotly figure) inside ``<figure>`` with a ``<figcaption>``: "Figure n." and
    the figure's title (escaped; its ``$…$`` maths is typeset by the page's MathJax)."""
    import html as html_lib

    title = figure.get("layout", {}).get("title", "")
    title = title.get("text", "") if isinstance(title, dict) else title
    title = re.sub(r"<[^>]+>", " ", title or "").strip()  # plotly titles may carry <br>, <b>
    caption = f"<strong>Figure {number}.</strong> {html_lib.escape(title)}".rstrip()
    return (
        f'<figure class="rlhf-figure">{html}<figcaption class="rlhf-caption">{caption}'
        "</figcaption></figure>"
    )


def write_toc(src: Path, chapters: list[str], *, results_page: bool = False) -> None:
    """Jupyter Book's table of contents, generated so that it can never miss a chapter."""
    lines = ["format: jb-book", "root: intro", "chapters:"]
    lines += [f"  - file: chapters/{c}" for c in chapters]
    lines += ["  - file: results"] if results_page else []
    lines += ["  - file: bibliography"]
    (src / "_toc.yml").write_text("\n".join(lines) + "\n")


def build_site(executed: Path, out: Path, *, quiet: bool = True) -> Path:
    """Build the site from already-executed notebooks; return the path of ``index.html``.

    The chapters are the current ``notebooks/NN_slug.py`` (stale files in ``executed`` are ignored).

    ``book/`` (config, intro, static files) is copied to ``build/src-<out>`` together with the
    executed notebooks, and ``jupyter-book build`` writes ``out/_build/html``.
    """
    stems = [p.stem for p in notebook_sources()]
    notebooks = [executed / f"{stem}.ipynb" for stem in stems]
    missing = [nb.name for nb in notebooks if not nb.exists()]
    if missing:
        raise FileNotFoundError(f"not executed yet in {executed}: {missing} (run the execute step)")
    src = ROOT / "build" / f"src-{Path(out).resolve().name}"  # staging, git-ignored
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(BOOK, src, ignore=shutil.ignore_patterns("_build", "chapters"))
    (src / "chapters").mkdir()
    for nb in notebooks:
        executed_nb = json.loads(nb.read_text())
        (src / "chapters" / nb.name).write_text(json.dumps(prepare_for_site(executed_nb)))
    write_toc(src, [nb.stem for nb in notebooks], results_page=(executed / "results.md").exists())
    if (executed / "results.md").exists():  # the build's own numbers, generated
        body = re.sub(r"^### ", "## ", (executed / "results.md").read_text(), flags=re.M)
        (src / "results.md").write_text("# Results of this build\n\n" + RESULTS_INTRO + body)
    from plotly.offline import get_plotlyjs

    (src / "_static").mkdir(exist_ok=True)
    (src / "_static" / PLOTLY_STATIC).write_text(get_plotlyjs())
    html = out / "_build" / "html"
    shutil.rmtree(html, ignore_errors=True)
    cmd = [
        str(Path(sys.executable).with_name("jupyter-book")),
        "build",
        str(src),
        "--path-output",
        str(out),
        "--all",
        "-W",
        "-n",
        "--keep-going",
    ]
    res = subprocess.run(cmd, capture_output=quiet, text=True, env={**os.environ})
    index = html / "index.html"
    if res.returncode != 0 or not index.exists():
        log = (res.stdout or "")[-6000:] + (res.stderr or "")[-3000:] if quiet else ""
        raise RuntimeError(f"jupyter-book build failed (exit {res.returncode}):\n{log}")
    return index


def book_jobs(jobs: str | int, n_chapters: int) -> int:
    """``--jobs``: an int >= 1, or ``"auto"`` = the cores this process may use + 1, at most
    ``n_chapters``. One more chapter than cores keeps every core busy while a chapter loads,
    plots or waits on a run another chapter holds the lock of (measured on 2 cores: 3 side by
    side beat 2); each chapter's pool also sizes itself to the cores (``WORKERS="auto"``)."""
    from rlhf_nb.runs.pool import resolve_workers

    if str(jobs) == "auto":
        return max(1, min(n_chapters, resolve_workers("auto") + 1))
    try:
        n = int(jobs)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--jobs must be an integer >= 1 or 'auto', got {jobs!r}")
    return n


def execute_side_by_side(
    sources: list[Path], out: Path, jobs: int, smoke: bool, params: list[str]
) -> int:
    """Execute ``sources`` with at most ``jobs`` at a time, each chapter in its own
    ``python -m rlhf_nb._site.build execute --only STEM`` process, started in chapter order.

    Each chapter's output goes to ``out/logs/STEM.log``; one line is printed when a chapter
    starts and when it ends, with its wall time. On the first failure the running chapters are
    stopped and the failing log's tail is printed; returns the exit status (0: all executed).
    A cold ``make book`` on 2 cores spends most of its time in chapters 04-06, whose runs are
    single-threaded processes: side by side they keep both cores busy where one chapter alone
    leaves a core idle (loading, plotting, the last run of a pool).
    """
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    waiting, running, t_all = list(sources), {}, time.perf_counter()
    failed: list[tuple[Path, int]] = []
    extra = (["--smoke"] if smoke else []) + [a for p in params for a in ("-p", p)]
    while waiting or running:
        while waiting and len(running) < jobs:
            src = waiting.pop(0)
            cmd = [sys.executable, "-m", "rlhf_nb._site.build", "execute", "--out", str(out),
                   "--only", src.stem, *extra]  # fmt: skip
            log = open(logs / f"{src.stem}.log", "w")  # noqa: SIM115 - closed when it ends
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            running[src] = (proc, log, time.perf_counter(), 0)
            print(f"executing {src.name} (log: {logs / (src.stem + '.log')}) ...", flush=True)
        time.sleep(0.5)
        for src, (proc, log, t0, seen) in list(running.items()):
            seen = _relay_progress(src, logs / f"{src.stem}.log", seen, t0)
            running[src] = (proc, log, t0, seen)
            if proc.poll() is None:
                continue
            log.close()
            del running[src]
            if proc.returncode != 0:  # keep going: the other chapters' work is not lost
                failed.append((src, proc.returncode))
                print(
                    f"FAILED {src.name} (exit {proc.returncode}) after "
                    f"{time.perf_counter() - t0:.0f} s; continuing with the others",
                    flush=True,
                )
                continue
            print(f"  {src.name} done in {time.perf_counter() - t0:.1f} s", flush=True)
    total = time.perf_counter() - t_all
    if failed:
        for src, code in failed:
            tail = (logs / f"{src.stem}.log").read_text()[-4000:]
            print(f"\n===== {src.name} FAILED (exit {code}); its log ends:\n{tail}", flush=True)
        print(f"{len(failed)} of {len(sources)} chapters failed ({total:.1f} s): "
              f"{', '.join(s.name for s, _ in failed)}", flush=True)  # fmt: skip
        return failed[0][1]
    print(f"all {len(sources)} chapters executed in {total:.1f} s")
    return 0


def _relay_progress(src: Path, log: Path, seen: int, t0: float) -> int:
    """Print the lines of a chapter's log past byte ``seen`` that report training progress
    (``get_runs``' "[k/n] trained ..." and "... runs trained in ..." lines), prefixed with the
    chapter and its elapsed time; returns the new offset."""
    try:
        with open(log, "rb") as f:
            f.seek(seen)
            chunk = f.read()
    except OSError:
        return seen
    end = chunk.rfind(b"\n") + 1  # complete lines only
    for line in chunk[:end].decode(errors="replace").splitlines():
        if _is_progress(line):
            print(f"  {src.stem[:2]} +{time.perf_counter() - t0:.0f}s {line.strip()}", flush=True)
    return seen + end


def _is_progress(line: str) -> bool:
    """A training-progress line of ``get_runs``: "training N runs, W at a time ...",
    "[k/n] trained ...", "[k/n] loaded ..." or "N runs trained in ..."."""
    return ("] trained " in line or "] loaded " in line or " runs trained in " in line
            or (line.lstrip().startswith("training ") and " at a time " in line))  # fmt: skip


def _show_progress() -> None:
    """Echo the training-progress lines of the executing notebook (``get_runs``' "[k/n] trained
    ..." lines, which papermill's ``log_output`` sends to its logger) to stdout, and nothing
    else of its cell outputs."""
    import logging

    class Progress(logging.Filter):
        def filter(self, record) -> bool:
            msg = record.getMessage()
            if not _is_progress(msg):
                return False
            record.msg, record.args = msg.strip(), None  # one line each, no blank line after
            return True

    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(Progress())
    handler.setFormatter(logging.Formatter("    %(message)s"))
    logger = logging.getLogger("papermill")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _record_time(out: Path, stem: str, seconds: float, params: list[str]) -> None:
    """Add one chapter's wall time to ``out/timings.json`` (side-by-side chapters write it too,
    so under a lock)."""
    from filelock import FileLock

    out.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out / "timings.json.lock")):
        results.write_timings(out, {stem: seconds}, params)


def parse_params(items: list[str]) -> dict:
    """``["SEED=3", "PRESET=tiny"]`` -> ``{"SEED": 3, "PRESET": "tiny"}``: each value parsed as a
    Python literal, else kept as a bare string; ``ValueError`` for an item not ``NAME=VALUE``."""
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"--param must look like NAME=VALUE, got {item!r}")
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value  # a bare string, e.g. -p PRESET=tiny
    return params


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlhf_nb._site.build", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("execute", help="execute notebooks with papermill")
    ex.add_argument("--out", type=Path, required=True)
    ex.add_argument("--smoke", action="store_true")
    ex.add_argument("--only", default="*", help="glob on the notebook stem, e.g. '05_*'")
    ex.add_argument(
        "--jobs", default="1", metavar="N|auto",
        help="chapters executed side by side, each in its own process (default 1: in order; "
        "'auto': this machine's cores + 1, at most the number of chapters). Chapters share "
        "testbeds and runs through the cache, whose entries are locked, so a chapter that needs "
        "what another is building waits for it.",
    )  # fmt: skip
    ex.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE",
        help="a notebook parameter, e.g. -p SEED=1 (the value is parsed as a Python literal)",
    )  # fmt: skip
    rs = sub.add_parser("results", help="write the results summary into the README and the site")
    rs.add_argument("--executed", type=Path, required=True)
    st = sub.add_parser("site", help="build the Jupyter Book from executed notebooks")
    st.add_argument("--executed", type=Path, required=True)
    st.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    if args.cmd == "execute":
        sources = notebook_sources(args.only)
        if not sources:
            ap.error(f"no notebook matches --only {args.only!r}")
        try:
            params = parse_params(args.param)
        except ValueError as exc:
            ap.error(str(exc))
        try:
            args.jobs = book_jobs(args.jobs, len(sources))
        except ValueError as exc:
            ap.error(str(exc))
        print(f"executing {len(sources)} chapter(s), {args.jobs} at a time", flush=True)
        if args.jobs > 1 and len(sources) > 1:
            return execute_side_by_side(sources, args.out, args.jobs, args.smoke, args.param)
        _show_progress()
        failed = []
        for src in sources:  # like make -k: a failing chapter does not stop the next ones
            t0 = time.perf_counter()
            print(f"executing {src.name} (smoke={args.smoke}, {params or 'defaults'}) ...",
                  flush=True)  # fmt: skip
            try:
                execute(src, args.out, smoke=args.smoke, parameters=params)
            except Exception as exc:  # noqa: BLE001 - reported below, with the others
                failed.append((src, exc))
                print(f"  FAILED after {time.perf_counter() - t0:.1f} s", flush=True)
                continue
            seconds = time.perf_counter() - t0
            print(f"  done in {seconds:.1f} s", flush=True)
            _record_time(
                args.out, src.stem, seconds, args.param + (["SMOKE=True"] if args.smoke else [])
            )
        for src, exc in failed:
            print(f"\n===== {src.name} FAILED:\n{str(exc)[-4000:]}", flush=True)
        return 1 if failed else 0
    if args.cmd == "results":
        text = results.render(args.executed, [p.stem for p in notebook_sources()])
        (args.executed / "results.md").write_text(text)
        changed = results.update_readme(text)
        print(f"results: {args.executed / 'results.md'}; README.md "
              f"{'updated' if changed else 'unchanged'}")  # fmt: skip
        return 0
    index = build_site(args.executed, args.out, quiet=False)
    print(f"site built: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
