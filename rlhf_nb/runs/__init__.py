"""Getting runs: the run format, the cache, the one process pool and the one entry point.

* :func:`get_runs` — **the one way to get runs**: one config, a list or a dict of them (any mix
  of methods), cached or trained (``workers`` processes at a time), returned in the shape asked
  for; with ``seeds=[...]`` each config becomes a :class:`~rlhf_nb.runs.seeds.SeedRuns`;
* :func:`train` — one run, trained in this process, no cache (a live widget's run, with
  ``on_step``); :data:`METHODS` says which module trains which config type
  (:mod:`~rlhf_nb.runs.contract`);
* :mod:`~rlhf_nb.runs.record` — the :class:`Run` format (config, history, status, samples);
* :mod:`~rlhf_nb.runs.cache` — the on-disk cache: key, save/load, lock, the build's run log;
* :mod:`~rlhf_nb.runs.pool` — the process pool behind :func:`get_runs`, which also builds
  testbeds side by side (:func:`~rlhf_nb.runs.pool.parallel_map`);
* :mod:`~rlhf_nb.runs.seeds` — :class:`~rlhf_nb.runs.seeds.SeedRuns`, one setting at several
  seeds (its statistics are :mod:`rlhf_nb.stats`).

Used by chapters 04–09 (through :mod:`rlhf_nb.chapters`), the widgets of :mod:`rlhf_nb.viz`
and the runner. Imports :mod:`rlhf_nb.core`, :mod:`rlhf_nb.stats` and, on first use, the
method modules of :mod:`rlhf_nb.methods` and :mod:`rlhf_nb.testbed`.
"""

from rlhf_nb.runs.contract import METHODS, kind_of, method_of, train
from rlhf_nb.runs.pool import get_runs
from rlhf_nb.runs.record import Run
from rlhf_nb.runs.seeds import SeedRuns, with_seeds

__all__ = ["METHODS", "Run", "SeedRuns", "get_runs", "kind_of", "method_of", "train", "with_seeds"]
