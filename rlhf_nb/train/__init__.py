"""Training methods, one module per method with its config beside it, and the one run contract.

* :mod:`~rlhf_nb.train.contract` — ``train(testbed, config, *, on_step=None) -> Run`` for every
  method, dispatched on the config's type; :func:`run` gets a cached run (or trains it);
* :mod:`~rlhf_nb.train.online` (+ :mod:`~rlhf_nb.train.online_config`) — online RLOO with the
  entropy (MaxEnt) and KL regularisers, written by hand as named steps (chapter 05);
* :mod:`~rlhf_nb.train.offline` — DPO and SimPO on fixed pairs with TRL's trainers (chapter 06);
* :mod:`~rlhf_nb.train.online_simpo` — SimPO on pairs sampled from the current policy (ch. 06);
* :mod:`~rlhf_nb.train.grpo` — TRL's ``GRPOTrainer``, an independent cross-check (chapter 05);
* :mod:`~rlhf_nb.train.best_of_n` — best-of-n from the SFT policy, its gold/proxy/KL frontier;
* :mod:`~rlhf_nb.train.preference` — the config fields and pair loss DPO and SimPO share;
* :mod:`~rlhf_nb.train.evaluate` — what a preference run measures and the history writer;
* :mod:`~rlhf_nb.train.runs` — the :class:`Run` format, its summary table and the on-disk cache;
* :mod:`~rlhf_nb.train.pool` — :func:`run_all`, many runs in parallel processes, cached;
* :mod:`~rlhf_nb.train.seeds` — several seeds of a setting: bands, bootstrap differences, the
  checkpoint helper :func:`~rlhf_nb.train.seeds.holds`;
* :mod:`~rlhf_nb.train.sweep` — chapter 05's grid from its parameters and its central contrast.

Layering: imports :mod:`rlhf_nb.core`, :mod:`rlhf_nb.theory`, :mod:`rlhf_nb.sampling` and (at
run time) :mod:`rlhf_nb.testbed`; never :mod:`rlhf_nb.viz`. A new method is a module here with a
config dataclass and ``train(testbed, config, *, on_step=None)``, plus one row in
:data:`~rlhf_nb.train.contract.METHODS`.
"""

from rlhf_nb.train.contract import METHODS, kind_of, method_of, run, train
from rlhf_nb.train.pool import run_all
from rlhf_nb.train.runs import Run

__all__ = ["METHODS", "Run", "kind_of", "method_of", "run", "run_all", "train"]
