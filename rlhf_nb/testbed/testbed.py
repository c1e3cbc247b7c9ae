"""The offline testbed: a toy TL;DR with a gold reward, an SFT policy and an exploitable proxy RM.

``build(preset, seed)`` (notebook 04) makes, deterministically and offline:

1. prompts from :class:`rlhf_nb.testbed.task.Task` (SFT, preference and evaluation sets, disjoint);
2. an SFT policy (tiny GPT-NeoX) trained on noisy reference summaries;
3. preference pairs: two SFT samples per prompt, the winner drawn from the gold Bradley-Terry
   model ``P(a > b) = sigmoid(label_beta * (gold(a) - gold(b)))`` (noisy on purpose);
4. a proxy reward model trained on them with the Bradley-Terry loss.

The result is cached under ``cache_dir/testbed/<preset>-seed<seed>-v<CODE_VERSION>`` (plus a hash
of any overridden preset field): built in a temporary folder, checksummed, then renamed into
place; a partial or corrupted cache is rebuilt with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import datasets
import torch
from transformers import (
    GPTNeoXForCausalLM,
    GPTNeoXForSequenceClassification,
    PreTrainedTokenizerFast,
)

from rlhf_nb.core import cache_lock, check_int, check_range, default_cache_dir, quiet
from rlhf_nb.sampling import check_texts, generate, reward_scores, reward_scores_tokens
from rlhf_nb.testbed.assemble import MARKER, build_into, checksum, verify, win_rate
from rlhf_nb.testbed.presets import (
    CODE_VERSION,
    PRESETS,
    Preset,
    cache_key,
    resolve_preset,
    task_for,
)

__all__ = ["CODE_VERSION", "PRESETS", "Preset", "Testbed", "build", "resolve_preset"]


class Testbed:
    """A built testbed: text-in, text-out access to the task, the models and the rewards.

    Attributes:
        preset, seed, path: what was built and where it is cached.
        task: the :class:`rlhf_nb.testbed.task.Task` (documents, summarisers, gold reward).
        tokenizer: word-level ``PreTrainedTokenizerFast`` (left padding).
        sft_policy: the SFT ``GPTNeoXForCausalLM`` (eval mode; do not train it in place, use
            :meth:`load_sft_policy` for a trainable copy).
        proxy_rm: the proxy ``GPTNeoXForSequenceClassification`` (one label).
        preference_data / preference_heldout: ``datasets.Dataset`` with ``prompt``/``chosen``/
            ``rejected`` columns (TRL's format): the RM's training and held-out pairs.
        eval_prompts: held-out prompts; ``eval_references`` their reference summaries.
        max_new_tokens: the generation budget.
        stats: figures measured at build time (RM accuracy, correlations, gold of SFT/oracle...).
        build_seconds: wall time of the build (not of the cache load).
    """

    def __init__(self, path: Path, preset: Preset, seed: int):
        meta = json.loads((path / "meta.json").read_text())
        wanted = {"preset": dataclasses.asdict(preset), "seed": seed, "code_version": CODE_VERSION}
        if any(meta[k] != v for k, v in wanted.items()):  # e.g. a preset default changed
            raise ValueError(
                f"it was built for {[meta[k] for k in wanted]}, not {list(wanted.values())}"
            )
        self.path, self.preset, self.seed = path, preset, seed
        self.task = task_for(preset)
        self.max_new_tokens = preset.max_new_tokens
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(self.sft_path)
        self.sft_policy = GPTNeoXForCausalLM.from_pretrained(self.sft_path).eval()
        self.proxy_rm = GPTNeoXForSequenceClassification.from_pretrained(self.rm_path).eval()
        prefs = json.loads((path / "preferences.json").read_text())
        self.preference_data = datasets.Dataset.from_dict(prefs["train"])
        self.preference_heldout = datasets.Dataset.from_dict(prefs["heldout"])
        self.eval_prompts: list[str] = meta["eval_prompts"]
        self.eval_references = self.references(self.eval_prompts)
        self.stats: dict = meta["stats"]
        self.build_seconds: float = meta["build_seconds"]

    @property
    def sft_path(self) -> Path:
        """Local folder of the SFT policy and tokenizer (``from_pretrained``-able, e.g. by TRL)."""
        return self.path / "sft"

    @property
    def rm_path(self) -> Path:
        """Local folder of the proxy reward model and tokenizer."""
        return self.path / "rm"

    def load_sft_policy(self) -> GPTNeoXForCausalLM:
        """A fresh copy of the SFT policy (to fine-tune without touching ``sft_policy``)."""
        return GPTNeoXForCausalLM.from_pretrained(self.sft_path)

    def reference(self, policy):
        """``(model, context)``: the KL reference of a run training ``policy`` — the frozen SFT
        policy — and the context it runs in (none here; a LoRA policy of a real preset runs
        itself with its adapters off, :meth:`rlhf_nb.testbed.real.RealTestbed.reference`)."""
        return self.sft_policy, contextlib.nullcontext

    def gold_components(self, prompts: list[str], responses: list[str]):
        """The gold reward term by term, a ``pandas.DataFrame`` (one row per pair, a ``total``
        column); see :func:`rlhf_nb.testbed.task.gold_components`."""
        import pandas as pd

        _check_pairs(prompts, responses)
        return pd.DataFrame([self.task.gold_components(p, r) for p, r in zip(prompts, responses)])

    def gold_reward(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """Gold reward of each pair, float32 ``[N]`` (reward units; oracle ~3-3.5)."""
        _check_pairs(prompts, responses)
        return torch.tensor(self.task.gold_rewards(prompts, responses), dtype=torch.float32)

    def proxy_reward(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """Proxy RM score of each pair, float32 ``[N]`` (Bradley-Terry logit scale)."""
        _check_pairs(prompts, responses)
        return reward_scores(self.proxy_rm, self.tokenizer, list(prompts), list(responses))

    def proxy_reward_rollout(self, batch: dict, rm=None) -> torch.Tensor:
        """``proxy_reward`` of a :func:`rlhf_nb.sampling.rollout` batch, from its token ids.

        Skips decoding and re-tokenising and runs each prompt once for its k samples
        (:func:`rlhf_nb.sampling.reward_scores_tokens`); equal to ``proxy_reward(prompts,
        batch["texts"])`` to float rounding (tested). Float32 ``[N]``. ``rm``: another reward
        model on the same tokenizer (an ensemble member), default the proxy RM.
        """
        n_prompt = batch["prompt_ids"].shape[1]
        return reward_scores_tokens(
            self.proxy_rm if rm is None else rm, self.tokenizer, batch["prompt_ids"],
            batch["prompt_mask"], batch["ids"][:, n_prompt:], batch["k"],
        )  # fmt: skip

    def scores(self, prompts: list[str], responses: list[str]):
        """One row per pair: the response, the gold components, ``gold`` and ``proxy`` (a
        ``pandas.DataFrame``; what notebook 04 shows for hand-edited summaries)."""
        df = self.gold_components(prompts, responses).rename(columns={"total": "gold"})
        df.insert(0, "response", list(responses))
        df["proxy"] = self.proxy_reward(prompts, responses).numpy()
        return df

    def references(self, prompts: list[str]) -> list[str]:
        """The noisy reference summary of each prompt (deterministic in prompt and seed)."""
        return [self.task.reference(p, self.seed) for p in prompts]

    def oracles(self, prompts: list[str]) -> list[str]:
        """The ideal summary of each prompt (topics once each, in order)."""
        return [self.task.oracle(p) for p in prompts]

    def win_rate(self, prompts: list[str], responses: list[str]) -> float:
        """``P(gold(response) > gold(reference))`` over the pairs, ties counting 1/2 (the
        analogue of the paper's judged win rate against the TL;DR reference summaries)."""
        ref = self.references(prompts)
        return win_rate(self.gold_reward(prompts, responses), self.gold_reward(prompts, ref))

    def sample(
        self,
        policy,
        prompts: list[str],
        n: int = 1,
        temperature: float = 1.0,
        *,
        seed: int | None = None,
        max_new_tokens: int | None = None,
    ) -> list[str]:
        """``n`` responses per prompt (``[p0 x n, p1 x n, ...]``); ``seed`` makes draws repeatable
        without touching the global RNG. See :func:`rlhf_nb.sampling.generate`."""
        check_range("n", n, 1, None)
        check_range("temperature", temperature, 0.0, None)
        kwargs = dict(
            n=n, temperature=temperature, max_new_tokens=max_new_tokens or self.max_new_tokens
        )
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            return generate(policy, self.tokenizer, list(prompts), **kwargs)


def _check_pairs(prompts, responses) -> None:
    """Both lists of str of the same, non-zero length (``TypeError``/``ValueError`` naming the
    argument otherwise)."""
    prompts, responses = check_texts("prompts", prompts), check_texts("responses", responses)
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    if not prompts:
        raise ValueError("prompts and responses are empty: need at least one pair")


def build(
    preset: str | Preset = "tiny", seed: int = 0, cache_dir: str | Path | None = None, **overrides
) -> Testbed:
    """Build (or load from the cache) the testbed of ``preset`` and ``seed``.

    Args:
        preset: a name in ``PRESETS`` (``"tiny"``: the book's runs; ``"smoke"``: CI) or a Preset.
        seed: non-negative int; same (preset, seed) -> identical data, weights and figures.
        cache_dir: cache root (default :func:`rlhf_nb.core.default_cache_dir`); the build goes
            in ``cache_dir/testbed/<cache_key>``.
        **overrides: preset fields to replace, e.g. ``length_bias="long"`` (part of the cache key).
    """
    preset = resolve_preset(preset, **overrides)
    check_int("seed", seed, 0, 2**32 - 1)
    with quiet():
        return _build(preset, seed, cache_dir)


def _build(preset: Preset, seed: int, cache_dir) -> Testbed:
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / "testbed" / cache_key(preset, seed)
    if path.exists() and verify(path) is None:  # the common case, without taking the lock
        try:
            return Testbed(path, preset, seed)
        except Exception:  # noqa: BLE001 - any unreadable artefact means "rebuild" (below)
            pass
    with cache_lock(root, path):  # a second process building the same testbed waits here
        if path.exists():
            problem = verify(path)
            if problem is None:
                try:
                    return Testbed(path, preset, seed)
                except Exception as exc:  # noqa: BLE001 - any unreadable artefact: rebuild
                    problem = f"could not load it ({type(exc).__name__}: {exc})"
            warnings.warn(f"testbed cache {path} is unusable: {problem}; rebuilding", stacklevel=3)
            shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        try:
            build_into(tmp, preset, seed)
            (tmp / MARKER).write_text(json.dumps({"sha256": checksum(tmp)}))
            tmp.rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return Testbed(path, preset, seed)
