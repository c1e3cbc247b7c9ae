"""Session set-up and parameter validation shared by every notebook.

``setup()`` is the first call of every notebook (d2l habit: the notebook imports, the package
decides). It

* validates the papermill parameters (``SMOKE``, ``SEED``, ``DEVICE``) and fails with a message
  naming the parameter and its valid values, before any work starts;
* pins torch to one CPU thread (two threads on a shared 2-core machine were 3-50x slower for the
  book's ~1M-parameter models);
* seeds Python, NumPy and torch;
* sets ``HF_HUB_OFFLINE=1`` (and ``HF_DATASETS_OFFLINE``, ``TRANSFORMERS_OFFLINE``) unless the
  caller asks for the network: nothing in the CPU path downloads anything;
* selects the plotly renderer (:func:`plotly_renderer`): for the static site (the build sets
  ``RLHF_NB_FIGURES=html``) ``plotly_mimetype+notebook``, figure JSON plus HTML with plotly.js
  emitted once; in a live kernel (JupyterLab, VS Code) ``plotly_mimetype``, JSON only, drawn by
  the installed plotly renderer, so no output and no widget redraw carries the 4.8 MB library;
  in Colab plotly's ``colab`` renderer;
* resolves ``DEVICE="auto"`` to CUDA when one is present, else the CPU.

The configs' field docs live in one place, their docstring's ``Attributes:`` section;
:func:`field_docs` copies each entry into the field's ``metadata["help"]``, which is what
``transformers.HfArgumentParser`` prints as the command-line runner's ``--help``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import random
import re
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEVICES = ("auto", "cpu", "cuda")
PLOTLY_RENDERER = "plotly_mimetype+notebook"  # static pages: JSON + HTML (plotly.js emitted once)
LIVE_RENDERER = "plotly_mimetype"  # JupyterLab / VS Code: JSON, drawn by their plotly extension
FIGURES_ENV = "RLHF_NB_FIGURES"  # "html" (set by the site build), "live", or unset: decide here
FIGURE_MODES = ("html", "live")


def check_type(name: str, value: Any, types: type | tuple[type, ...]) -> None:
    """Raise ``TypeError`` naming the parameter when ``value`` is not an instance of ``types``.

    ``bool`` is refused where a number is expected (``True`` is an ``int`` in Python).
    """
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join(t.__name__ for t in types)
        raise TypeError(f"{name} must be {names}, got {value!r} ({type(value).__name__})")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ``ValueError`` naming the parameter when ``value`` is not one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    finite: bool = True,
) -> None:
    """Raise ``ValueError`` naming the parameter and the valid interval when out of range.

    ``low``/``high`` of ``None`` mean unbounded. NaN is always out of range; ±inf too unless
    ``finite=False`` (e.g. a gradient-clipping norm, where inf means "no clipping").
    """
    check_type(name, value, (int, float))
    if finite and value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    lo_ok = low is None or (value >= low if low_inclusive else value > low)
    hi_ok = high is None or (value <= high if high_inclusive else value < high)
    if value != value or not (lo_ok and hi_ok):  # value != value catches NaN
        lb = "-inf" if low is None else f"{low}"
        hb = "inf" if high is None else f"{high}"
        interval = f"{'[' if low_inclusive and low is not None else '('}{lb}, {hb}"
        interval += "]" if high_inclusive and high is not None else ")"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> None:
    """``check_type(name, value, int)`` then ``check_range(name, value, low, high)``."""
    check_type(name, value, int)
    check_range(name, value, low, high)


def check_ints(obj: Any, bounds: dict[str, int | tuple[int, int]]) -> None:
    """:func:`check_int` on each attribute of ``obj`` named in ``bounds``: ``{field: low}`` or
    ``{field: (low, high)}`` (the validation of a config dataclass's integer fields)."""
    for field, bound in bounds.items():
        low, high = bound if isinstance(bound, tuple) else (bound, None)
        check_int(field, getattr(obj, field), low, high)


def field_docs(cls: type) -> type:
    """Class decorator (above ``@dataclass``): each field's entry in the Google-style
    ``Attributes:`` section of ``cls``'s docstring (``name: text``, or ``a, b: text`` for
    several, continued on deeper-indented lines) becomes its ``metadata["help"]``, in plain text
    (Sphinx roles and double backticks reduced to single backticks). A subclass inherits its
    fields' help. Raises ``TypeError`` naming the fields the docstring leaves out. Metadata is
    not part of a field's value, so cache keys (hashes of ``dataclasses.asdict``) do not see it.
    """
    docs, names, lines = {}, None, inspect.cleandoc(cls.__doc__ or "").splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.strip() == "Attributes:"), None)
    for line in lines[start:] if start is not None else []:
        if line.strip() and not line.startswith(" "):
            break  # the section ends at the next unindented line
        entry = re.match(r"^ {4}(\w+(?:, \w+)*): (.*)$", line)
        if entry:
            names = entry.group(1).split(", ")
            docs |= {name: entry.group(2) for name in names}
        elif names and line.strip():
            docs |= {name: docs[name] + " " + line.strip() for name in names}
    fields = dataclasses.fields(cls)
    missing = [f.name for f in fields if f.name not in docs and "help" not in f.metadata]
    if missing:
        raise TypeError(f"{cls.__name__}: fields not documented under Attributes: {missing}")
    for f in fields:
        if f.name in docs:
            text = re.sub(r":\w+:`~[^`]*?([^`.]+)`", r"`\1`", docs[f.name])  # :class:`~a.B`
            text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text)  # :func:`a.b`
            f.metadata = types.MappingProxyType({**f.metadata, "help": text.replace("``", "`")})
    return cls


@dataclass(frozen=True)
class Context:
    """What ``setup()`` decided: the validated parameters and the resolved device.

    Attributes:
        seed: the seed given to Python, NumPy and torch.
        device: ``"cpu"`` or ``"cuda"`` (``"auto"`` resolved).
        smoke: ``True`` in CI-sized runs (seconds, not minutes).
        cache_dir: where finished artefacts (testbeds, runs) are cached.
    """

    seed: int
    device: str
    smoke: bool
    cache_dir: Path


def default_cache_dir() -> Path:
    """``$RLHF_NB_CACHE`` if set, else ``~/.cache/rlhf_nb`` (the Makefile sets ``./.cache``)."""
    env = os.environ.get("RLHF_NB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rlhf_nb"


@contextlib.contextmanager
def cache_lock(root: Path, entry: Path):
    """Hold an exclusive inter-process lock on one cache entry (a run or a testbed folder).

    Two notebooks executed at once (``make book`` runs chapters side by side; a reader may run
    two kernels) can ask for the same testbed or run: the first takes the lock and builds it,
    the second waits, then finds it cached. The lock file is ``<root>/locks/<entry path
    relative to root, "/" -> "-">.lock``, never inside the entry. ``filelock`` works on POSIX
    and Windows, and a process that dies releases its lock.
    """
    import hashlib

    from filelock import FileLock

    root, entry = Path(root), Path(entry)
    folder = root / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        name = "-".join(entry.relative_to(root).parts)
    except ValueError:  # an entry outside the cache (e.g. stand-ins in a chosen folder)
        name = "path-" + hashlib.sha256(str(entry.resolve()).encode()).hexdigest()[:16]
    with FileLock(str(folder / (name + ".lock"))):
        yield


def resolve_device(device: str) -> str:
    """Map ``"auto"`` to ``"cuda"`` when torch sees a GPU, else ``"cpu"``; check the others."""
    check_type("DEVICE", device, str)
    check_choice("DEVICE", device, DEVICES)
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("DEVICE='cuda' was asked for but torch sees no GPU; use 'auto' or 'cpu'")
    return device


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def plotly_renderer() -> str:
    """The plotly renderer for this process: see the module docstring.

    ``RLHF_NB_FIGURES=html`` (the site build's papermill kernels) or ``=live`` forces a mode;
    unset, a Colab kernel gets ``colab``, any other kernel ``plotly_mimetype`` and a plain
    Python process (scripts, tests) ``plotly_mimetype+notebook``.
    """
    mode = os.environ.get(FIGURES_ENV, "")
    if mode:
        check_choice(FIGURES_ENV, mode, FIGURE_MODES)
        return PLOTLY_RENDERER if mode == "html" else LIVE_RENDERER
    if "google.colab" in sys.modules:
        return "colab"
    return LIVE_RENDERER if _in_kernel() else PLOTLY_RENDERER


def setup(
    seed: int = 0,
    device: str = "auto",
    smoke: bool = False,
    *,
    network: bool = False,
    threads: int = 1,
) -> Context:
    """Validate a notebook's parameters and make the session reproducible, offline and quiet.

    Args:
        seed: non-negative int (the notebook's ``SEED``).
        device: ``"auto"`` (CUDA if present, else CPU), ``"cpu"`` or ``"cuda"`` (``DEVICE``).
        smoke: CI-sized run (``SMOKE``).
        network: allow Hugging Face Hub access (default off: ``HF_HUB_OFFLINE=1``).
        threads: torch CPU threads (default 1; see the module docstring for why).

    Returns:
        The :class:`Context` with the resolved device.
    """
    check_type("SMOKE", smoke, bool)
    check_int("SEED", seed, 0, 2**32 - 1)
    check_int("threads", threads, 1)
    resolved = resolve_device(device)

    if not network:
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ[var] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    import numpy as np
    import torch

    if resolved == "cpu":
        torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    import plotly.io as pio

    pio.renderers.default = plotly_renderer()
    if _in_kernel() and pio.renderers.default == PLOTLY_RENDERER:
        # Emit plotly.js now, as an output of the set-up cell: otherwise it is emitted by the
        # first figure shown, which may sit inside a widget's Output and never reach the page.
        pio.renderers._activate_pending_renderers()
    return Context(seed=seed, device=resolved, smoke=smoke, cache_dir=default_cache_dir())


@contextlib.contextmanager
def quiet():
    """Silence transformers' and datasets' progress bars and load reports (e.g. "score.weight
    MISSING" when the RM head is created from the SFT policy, which is intended) inside the
    block."""
    import datasets
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    data_bars = datasets.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()
        if data_bars:
            datasets.enable_progress_bars()
