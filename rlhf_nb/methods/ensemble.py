"""A proxy reward-model ensemble for a built testbed (chapter 07's remedy, Coste et al. 2024).

Member 0 is the testbed's own proxy RM; members 1…k−1 are trained the same way (initialised from
the SFT policy, Bradley–Terry on the same training pairs, the preset's RM steps, batch and rate)
with other seeds, so they differ only by initialisation of the head and minibatch order — the
disagreement an ensemble is meant to expose. Members are cached next to the testbed, under
``<cache>/ensembles/<testbed folder>/rm-<j>``, and never change the testbed itself.

:func:`aggregate` turns the members' scores into the reward an online run optimises: the mean
minus ``penalty``·(standard deviation over members), or the minimum.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GPTNeoXForSequenceClassification

from rlhf_nb.core import (
    cache_lock,
    check_choice,
    check_int,
    check_range,
    default_cache_dir,
    quiet,
)
from rlhf_nb.testbed.models import reward_model_from_policy, train_reward_model

MODES = ("mean_minus_std", "min")


def member_seed(testbed, j: int) -> int:
    """The training seed of member ``j`` (member 0 is the testbed's RM, trained with its seed)."""
    return testbed.seed if j == 0 else 1_000 * j + testbed.seed


def proxy_ensemble(testbed, k: int, *, cache_dir: str | Path | None = None) -> list:
    """``k`` proxy reward models of ``testbed`` (member 0 is ``testbed.proxy_rm``); members
    1…k−1 are trained on first use (seconds each at the tiny preset) and cached."""
    check_int("k", k, 1, 16)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / "ensembles" / testbed.path.name
    members = [testbed.proxy_rm]
    for j in range(1, k):
        path = folder / f"rm-{j}"
        with cache_lock(root, path):  # parallel runs of one ensemble train each member once
            if not (path / "config.json").exists():
                _train_member(testbed, j, path)
        with quiet():
            members.append(GPTNeoXForSequenceClassification.from_pretrained(path).eval())
    return members


def _train_member(testbed, j: int, path: Path) -> None:
    data, p = testbed.preference_data, testbed.preset
    with quiet(), torch.random.fork_rng():
        rm = reward_model_from_policy(testbed.sft_path, member_seed(testbed, j))
        train_reward_model(
            rm, testbed.tokenizer, list(data["prompt"]), list(data["chosen"]),
            list(data["rejected"]), steps=p.rm_steps, batch_size=p.rm_batch_size,
            lr=p.rm_lr, seed=member_seed(testbed, j),
        )  # fmt: skip
        tmp = path.with_name(path.name + ".tmp")
        rm.save_pretrained(tmp)
        tmp.replace(path)


def aggregate(scores: torch.Tensor, mode: str = "mean_minus_std", penalty: float = 1.0):
    """The ensemble's reward per sample from member scores ``[k, N]``: ``mean − penalty·std``
    (population std over members; conservative where the members disagree) or ``min``."""
    check_choice("mode", mode, MODES)
    check_range("penalty", penalty, 0.0, None)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [members, samples], got shape {tuple(scores.shape)}")
    if mode == "min":
        return scores.min(0).values
    return scores.mean(0) - penalty * scores.std(0, unbiased=False)
