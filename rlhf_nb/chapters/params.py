"""The fields every training chapter's parameters cell shares, as a dataclass base.

A chapter module's ``Params`` subclasses :class:`ChapterParams` with that chapter's own fields;
its defaults *are* the notebook's parameters cell (``tests/test_chapters.py`` parses each cell
and compares), and the notebook builds it with one line,
``p = ch05.Params.from_globals(globals())``, so that papermill's ``-p NAME=value`` and a reader's
edit reach the same object. Every field is checked on creation (``ValueError``/``TypeError``
naming the notebook parameter and its valid range) before any work starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rlhf_nb.core import check_choice, check_int, check_range, check_type


@dataclass(frozen=True)
class ChapterParams:
    """Fields shared by chapters 05–09 (notebook name in capitals).

    Attributes:
        smoke: SMOKE — CI-sized runs (the ``smoke`` testbed, a few steps, 2 seeds).
        seed: SEED — seeds Python, NumPy and torch, the testbed, and the first run seed (>= 0).
        device: DEVICE — ``"auto"`` (CUDA if present), ``"cpu"`` or ``"cuda"``.
        workers: WORKERS — parallel training processes; ``"auto"`` = this machine's cores.
        n_seeds: N_SEEDS — run seeds per headline setting, from SEED up (2–10; SMOKE uses 2).
    """

    smoke: bool = False
    seed: int = 0
    device: str = "auto"
    workers: int | str = "auto"
    n_seeds: int = 3

    def __post_init__(self):
        check_type("SMOKE", self.smoke, bool)
        check_int("SEED", self.seed, 0)
        check_choice("DEVICE", self.device, ("auto", "cpu", "cuda"))
        if self.workers != "auto":
            check_int("WORKERS", self.workers, 1, 256)
        check_int("N_SEEDS", self.n_seeds, 2, 10)
        for f in dataclasses.fields(self):  # lists from papermill or a reader -> tuples
            v = getattr(self, f.name)
            if isinstance(v, list):
                object.__setattr__(self, f.name, tuple(v))

    @classmethod
    def from_globals(cls, namespace: dict[str, Any]):
        """The chapter's parameters from a notebook's globals (:func:`from_globals`)."""
        return from_globals(cls, namespace)

    def shared(self, cls):
        """Another chapter's parameters (``cls``, e.g. ``ch05.Params``) at this chapter's SMOKE,
        SEED, DEVICE, WORKERS and N_SEEDS, its own fields at their defaults: whose runs a later
        chapter reads."""
        return cls(smoke=self.smoke, seed=self.seed, device=self.device, workers=self.workers,
                   n_seeds=self.n_seeds)  # fmt: skip

    @property
    def run_seeds(self) -> list[int]:
        """The run seeds of the multi-seed settings: SEED, SEED+1, ... (2 in SMOKE)."""
        return [self.seed + i for i in range(2 if self.smoke else self.n_seeds)]

    @property
    def preset(self) -> str:
        """The testbed preset: ``"smoke"`` in SMOKE, else ``"tiny"``."""
        return "smoke" if self.smoke else "tiny"

    @property
    def resolved_device(self) -> str:
        """``device`` with ``"auto"`` resolved (``"cuda"`` when torch sees a GPU, else
        ``"cpu"``): what a config that has a ``device`` field gets, so its cache key is the
        machine's."""
        from rlhf_nb.core import resolve_device

        return resolve_device(self.device)

    def pool(self, cache_dir=None) -> dict[str, Any]:
        """The keyword arguments of :func:`rlhf_nb.runs.get_runs` for this chapter's testbed."""
        return dict(preset=self.preset, testbed_seed=self.seed, workers=self.workers,
                    cache_dir=cache_dir)  # fmt: skip


def from_globals(cls, namespace: dict[str, Any]):
    """A parameters dataclass ``cls`` from a notebook's globals: each field from the variable of
    the same name in capitals (``alphas`` <- ``ALPHAS``), missing ones at their default."""
    names = {f.name: f.name.upper() for f in dataclasses.fields(cls)}
    return cls(**{k: namespace[v] for k, v in names.items() if v in namespace})


def check_floats(name: str, values, low: float, *, positive: bool = False) -> tuple[float, ...]:
    """A non-empty list of numbers >= ``low`` (> ``low`` when ``positive``), as a tuple."""
    check_type(name, values, (list, tuple))
    if not values:
        raise ValueError(f"{name} must be a non-empty list, got {values!r}")
    for v in values:
        check_range(name, v, low, None, low_inclusive=not positive)
    return tuple(float(v) for v in values)
