"""Chapter 04 (the testbed): what a testbed is like, measured, and the same measures over several
testbed seeds.

A claim about the testbed (the proxy correlates loosely with gold; the SFT policy loses to the
references; the proxy has a blind spot for repetition) is a claim about a *build*: other seeds
draw other documents, other preference labels and other SFT and RM weights. :func:`seed_table`
builds the testbed at several seeds (in parallel processes, each build cached) and tabulates
:func:`measure` for each, so chapter 04 can state its claims as ranges over builds. Builds go
through the book's one process pool (:func:`rlhf_nb.runs.pool.parallel_map`, ``workers="auto"``:
one per core). Chapter 06 builds its length-biased testbeds with :func:`build_all`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from rlhf_nb import testbed as tb_mod
from rlhf_nb.chapters.params import from_globals
from rlhf_nb.core import check_choice, check_int, check_type, default_cache_dir
from rlhf_nb.runs.pool import parallel_map, resolve_workers
from rlhf_nb.testbed.presets import cache_key, resolve_preset


@dataclass(frozen=True)
class Params:
    """Chapter 04's parameters cell (notebook names in capitals), checked on creation.

    Attributes:
        smoke: SMOKE — CI-sized builds (the ``smoke`` preset).
        seed: SEED — seeds Python, NumPy and torch, and the testbed build (>= 0).
        device: DEVICE — ``"auto"``, ``"cpu"`` or ``"cuda"``.
        preset: PRESET — testbed preset (``rlhf_nb.testbed.PRESETS``).
        n_testbed_seeds: N_TESTBED_SEEDS — testbeds in the seed table, from SEED up (2–10).
        workers: WORKERS — parallel build processes; ``"auto"`` = one per core.
    """

    smoke: bool = False
    seed: int = 0
    device: str = "auto"
    preset: str = "tiny"
    n_testbed_seeds: int = 3
    workers: int | str = "auto"

    def __post_init__(self):
        check_type("SMOKE", self.smoke, bool)
        check_int("SEED", self.seed, 0)
        check_choice("DEVICE", self.device, ("auto", "cpu", "cuda"))
        check_choice("PRESET", self.preset, tb_mod.PRESETS)
        check_int("N_TESTBED_SEEDS", self.n_testbed_seeds, 2, 10)
        if self.workers != "auto":
            check_int("WORKERS", self.workers, 1, 256)

    from_globals = classmethod(from_globals)  # the notebook's globals, by name

    @property
    def tb_preset(self) -> str:
        return "smoke" if self.smoke else self.preset


# the build-time figures (rlhf_nb.testbed.assemble.measure) that chapter 04 reports per seed
BUILD_STATS = (
    "gold_sft", "gold_reference", "gold_oracle", "sft_win_rate", "label_gold_agreement",
    "rm_heldout_accuracy", "rm_heldout_gold_accuracy", "proxy_gold_pearson",
)  # fmt: skip


def blind_spot(testbed) -> dict:
    """The repetition blind spot: repeat each held-out document's first topic word k times,
    k = 1..max_new_tokens, and score it with the proxy and the gold reward.

    Returns ``ks`` [K]; ``proxy`` and ``gold`` [K, N] (N held-out documents); ``oracle_proxy``
    [N]; ``beats``: the fraction of documents on which some k-fold repetition outscores the oracle
    summary under the proxy; ``proxy_gap_max``: mean over documents of the proxy's largest
    preference (RM logits) of a repetition over the oracle.
    """
    prompts = testbed.eval_prompts
    oracles = testbed.oracles(prompts)
    firsts = [s.split()[0] for s in oracles]
    ks = list(range(1, testbed.max_new_tokens + 1))
    texts = {k: [" ".join([w] * k) for w in firsts] for k in ks}
    proxy = torch.stack([testbed.proxy_reward(prompts, texts[k]) for k in ks])
    gold = torch.stack([testbed.gold_reward(prompts, texts[k]) for k in ks])
    oracle_proxy = testbed.proxy_reward(prompts, oracles)
    gap = proxy - oracle_proxy  # [K, N]
    return {
        "ks": ks, "texts": texts, "proxy": proxy, "gold": gold, "oracle_proxy": oracle_proxy,
        "beats": (gap.max(0).values > 0).float().mean().item(),
        "proxy_gap_max": gap.max(0).values.mean().item(),
    }  # fmt: skip


def measure(testbed) -> dict:
    """One row of :func:`seed_table`: the build-time figures plus the blind spot's
    ``beats`` and ``proxy_gap_max``, and the proxy and gold of the longest repetition minus
    those of the SFT policy's samples (``rep_proxy_minus_sft``, ``rep_gold_minus_sft``)."""
    spot = blind_spot(testbed)
    sft = testbed.sample(testbed.sft_policy, testbed.eval_prompts, n=4, seed=testbed.seed + 10)
    x4 = [p for p in testbed.eval_prompts for _ in range(4)]
    sft_proxy = testbed.proxy_reward(x4, sft).mean().item()
    row = {k: testbed.stats[k] for k in BUILD_STATS}
    row.update(
        beats=spot["beats"],
        proxy_gap_max=spot["proxy_gap_max"],
        rep_proxy_minus_sft=spot["proxy"][-1].mean().item() - sft_proxy,
        rep_gold_minus_sft=spot["gold"][-1].mean().item() - testbed.stats["gold_sft"],
    )
    return row


def _build(args) -> str:
    preset, seed, cache_dir, overrides = args
    return tb_mod.build(preset, seed=seed, cache_dir=cache_dir, **overrides).path.name


def build_all(
    preset: str, variants: Sequence[dict], *, seed: int = 0, workers="auto", cache_dir=None
) -> list:
    """Build (or load) the testbed of ``preset`` and ``seed`` once per dict of preset overrides in
    ``variants`` (e.g. ``[{"length_bias": "short"}, {"length_bias": "long"}]``), ``workers`` at a
    time in spawned processes, then load and return them in order. A build takes minutes on one
    core (the tiny preset), so independent builds go in parallel."""
    return _build_in_pool(preset, [(seed, dict(v)) for v in variants], workers, cache_dir)


def _build_in_pool(preset: str, specs: list[tuple[int, dict]], workers, cache_dir) -> list:
    """Build the testbeds ``specs`` (``(seed, overrides)`` pairs) that are not cached yet,
    ``workers`` at a time in spawned processes (none spawned when at most one is missing), then
    load and return all of them in order."""
    workers = resolve_workers(workers)  # a bad value fails here, before any build
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    built = [
        (root / "testbed" / cache_key(resolve_preset(preset, **o), s)).exists() for s, o in specs
    ]
    missing = [(preset, s, cache_dir, o) for (s, o), b in zip(specs, built) if not b]
    if len(missing) > 1:  # one missing build runs below, in this process
        parallel_map(_build, missing, workers=workers)
    return [tb_mod.build(preset, seed=s, cache_dir=cache_dir, **o) for s, o in specs]


def build_seeds(
    preset: str, seeds: Sequence[int], *, workers="auto", cache_dir=None, **overrides
) -> list:
    """Build (or load) the testbed of ``preset`` at each of ``seeds`` (with the same preset
    ``overrides``), ``workers`` at a time in spawned processes, then load and return them in
    order. Chapter 04 builds its own testbed this way together with the next seeds of its seed
    table: a cold build runs in one process on one core, so on the book's 2-core machine a
    second build beside it costs no wall time (:func:`seed_table` then only loads it)."""
    seeds = _check_seeds(seeds)
    return _build_in_pool(preset, [(s, dict(overrides)) for s in seeds], workers, cache_dir)


def _check_seeds(seeds) -> list[int]:
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct ints, got {seeds}")
    return seeds


def _build_and_measure(args) -> dict:
    preset, seed, cache_dir, overrides = args
    return measure(tb_mod.build(preset, seed=seed, cache_dir=cache_dir, **overrides))


def seed_table(
    preset: str = "tiny",
    seeds: Sequence[int] = (0, 1, 2),
    *,
    workers="auto",
    cache_dir=None,
    **overrides,
) -> pd.DataFrame:
    """:func:`measure` for the testbed built at each seed (index ``testbed seed``), the builds
    ``workers`` at a time in spawned processes (cached builds only load)."""
    seeds = _check_seeds(seeds)
    jobs = [(preset, s, cache_dir, overrides) for s in seeds]
    rows = parallel_map(_build_and_measure, jobs, workers=workers)
    return pd.DataFrame(rows, index=pd.Index(seeds, name="testbed seed"))
