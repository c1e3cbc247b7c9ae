"""The one run contract: every training method is

    train(testbed, config, *, on_step=None, **options) -> Run

and :func:`run` gets a finished run from the cache (or trains and caches it), whatever the method.

The config's type says the method. :data:`METHODS` maps each config class to its module and its
cache area (``<cache>/runs/<area>/<key>``, :func:`rlhf_nb.runs.cache.run_path`):

=====================  ================================  ================  =========================
config                 module                            cache area        method
=====================  ================================  ================  =========================
``OnlineConfig``       ``rlhf_nb.methods.online``        ``online``        RLOO, α/β regularisers
``OfflineConfig``      ``rlhf_nb.methods.offline``       ``offline``       DPO / SimPO, fixed pairs
``OnlineSimPOConfig``  ``rlhf_nb.methods.online_simpo``  ``online_simpo``  SimPO, self-sampled pairs
``GRPOCheckConfig``    ``rlhf_nb.methods.grpo``          ``trl``           TRL's GRPOTrainer
=====================  ================================  ================  =========================

``on_step(history)`` has one meaning for every method: it is called with the history so far (a
``DataFrame``, the columns of :data:`rlhf_nb.runs.record.COLUMNS` and the method's own) each time
the run logs a row, e.g. to redraw a live figure; it may raise ``KeyboardInterrupt`` to stop the
run, which then ends as ``"interrupted"`` with its history kept.

The modules are imported on first use, so that ``import rlhf_nb.train`` does not load TRL. A new
method is a module with a config dataclass (documented field by field, validated on creation),
``train(testbed, config, *, on_step=None)`` and a row here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlhf_nb.runs.cache import cached_training
from rlhf_nb.runs.record import Run

METHODS: dict[str, tuple[str, str]] = {  # config class name -> (module, cache area)
    "OnlineConfig": ("rlhf_nb.methods.online", "online"),
    "OfflineConfig": ("rlhf_nb.methods.offline", "offline"),
    "OnlineSimPOConfig": ("rlhf_nb.methods.online_simpo", "online_simpo"),
    "GRPOCheckConfig": ("rlhf_nb.methods.grpo", "trl"),
}


def method_of(config: Any) -> tuple[Any, str]:
    """``(module, cache area)`` of ``config``'s training method; ``TypeError`` naming the valid
    config types for anything else (a dict, a string, ...)."""
    name = type(config).__name__
    if name in METHODS:
        module_name, area = METHODS[name]
        module = importlib.import_module(module_name)
        if type(config) is getattr(module, name):
            return module, area
    raise TypeError(
        f"config must be one of {', '.join(METHODS)} (a dataclass instance), got "
        f"{type(config).__name__}: {config!r:.80}"
    )


def kind_of(config: Any) -> str:
    """The cache area of ``config``'s runs (``online``, ``offline``, ``online_simpo``, ``trl``)."""
    return method_of(config)[1]


def train(testbed, config: Any, *, on_step: Callable | None = None, **options) -> Run:
    """Train ``config`` on ``testbed`` with its method (module docstring), no cache. ``options``
    go to the method's ``train`` (e.g. ``reward_fn`` for online runs; the resumable online
    loop is :func:`rlhf_nb.methods.online_dp.train`)."""
    module, _ = method_of(config)
    return module.train(testbed, config, on_step=on_step, **options)


def run(testbed, config: Any, *, cache_dir: str | Path | None = None, refresh: bool = False) -> Run:
    """The run of ``config`` on ``testbed`` from the cache, trained (and cached) on a miss.

    Cached runs keep their history, status, message and samples, not the policy weights
    (:func:`rlhf_nb.runs.cache.cached_training`); ``refresh=True`` retrains. Progress bars show
    in a live kernel or terminal and are off when ``TQDM_DISABLE=1`` (the book's build, the
    process pool).
    """
    module, area = method_of(config)
    return cached_training(
        area, testbed, config, lambda: module.train(testbed, config),
        cache_dir=cache_dir, refresh=refresh,
    )  # fmt: skip
