"""The training methods, one module per method with its config beside it.

Every method is ``train(testbed, config, *, on_step=None) -> Run``
(:mod:`rlhf_nb.runs.contract` dispatches on the config's type and caches):

* :mod:`~rlhf_nb.methods.online` (+ :mod:`~rlhf_nb.methods.online_config`,
  :mod:`~rlhf_nb.methods.rloo`) — online RLOO with the entropy (MaxEnt) and KL regularisers,
  written by hand as named steps so that the update reads top to bottom (chapters 05, 07);
  :mod:`~rlhf_nb.methods.online_dp` runs the same steps resumably and data-parallel for the
  command-line runner (chapter 08);
* :mod:`~rlhf_nb.methods.offline` (+ :mod:`~rlhf_nb.methods.preference`,
  :mod:`~rlhf_nb.methods.evaluate`) — DPO and SimPO on fixed pairs with TRL's trainers
  (chapters 06, 09);
* :mod:`~rlhf_nb.methods.online_simpo` — SimPO on pairs sampled from the current policy
  (chapters 06, 09);
* :mod:`~rlhf_nb.methods.grpo` — TRL's ``GRPOTrainer``, an independent cross-check (chapter 05);
* :mod:`~rlhf_nb.methods.best_of_n` — best-of-n from the SFT policy (chapter 07);
* :mod:`~rlhf_nb.methods.ensemble` — the proxy-RM ensemble of chapter 07's remedy.

Imports :mod:`rlhf_nb.core`, :mod:`rlhf_nb.theory`, :mod:`rlhf_nb.sampling`,
:mod:`rlhf_nb.runs.record` / :mod:`rlhf_nb.runs.cache` and (at run time) :mod:`rlhf_nb.testbed`;
never :mod:`rlhf_nb.viz` or :mod:`rlhf_nb.chapters`. A new method is a module here with a config
dataclass and ``train``, plus one row in :data:`rlhf_nb.runs.contract.METHODS`.
"""
