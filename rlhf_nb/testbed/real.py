"""A testbed of real models: a (policy, tokenizer, proxy RM, gold RM, prompts, references) set
that the online and offline methods run on unchanged (chapter 08).

:func:`load` reads a :class:`~rlhf_nb.testbed.tldr.TLDRPreset` (Hub names or local folders) and
returns a :class:`RealTestbed`, which offers what :class:`rlhf_nb.testbed.Testbed` offers to the
training code: ``tokenizer``, ``sft_policy``, ``load_sft_policy()``, ``reference(policy)``,
``proxy_reward``/``proxy_reward_rollout``, ``gold_reward``, ``win_rate``, ``references``,
``sample``, ``eval_prompts``, ``task.documents`` (training prompts), ``preference_data`` /
``preference_heldout``, ``max_new_tokens`` and ``path`` (its cache key). What differs from the
toy, and where it is handled:

* the gold reward is a learned reward model, not a formula;
* tokenizers: a Pythia tokenizer has no pad token, so ``[PAD]`` is added (as the N+ recipe does;
  the embedding matrix is resized only if the id does not fit); padding is on the left for
  generation. A reward model with another tokenizer than the policy scores the decoded text
  re-tokenised with its own; with the same tokenizer it scores the sampled ids directly
  (:func:`rlhf_nb.sampling.reward_scores_tokens`);
* responses are scored as ``prompt + " " + response + EOS`` (the leading space is the first BPE
  token of a TL;DR summary after ``"TL;DR:"``);
* a response that hits the budget without EOS is penalised (``missing_eos_penalty``,
  :func:`rlhf_nb.methods.online.score`);
* dtype per device (:func:`resolve_dtype`) and LoRA through ``peft``: the reference is then the
  policy itself with its adapters switched off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import warnings
from pathlib import Path

import torch

from rlhf_nb.core import check_choice, default_cache_dir, quiet
from rlhf_nb.sampling import generate, reward_scores, reward_scores_tokens
from rlhf_nb.testbed.assemble import win_rate
from rlhf_nb.testbed.tldr import TLDRPreset, resolve_tldr_preset

PAD = "[PAD]"


def resolve_dtype(name: str, device: str, *, trained: bool = False) -> torch.dtype:
    """The weights dtype: float32 on a CPU; on a GPU ``"auto"`` is bfloat16 where the card
    supports it (Ampere and later), else float16 for frozen models and float32 for trained ones
    (a T4 has no bfloat16, and float16 Adam updates underflow)."""
    if device == "cpu" or name == "float32":
        return torch.float32
    if name != "auto":
        return getattr(torch, name)
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32 if trained else torch.float16


def load_dataset(name: str, split: str):
    """A split of a Hub dataset or of a ``save_to_disk`` folder (``DatasetDict``)."""
    import datasets

    if Path(name).exists():
        data = datasets.load_from_disk(name)
        if isinstance(data, datasets.DatasetDict):
            check_choice(f"split of {name}", split, list(data))
            return data[split]
        return data
    return datasets.load_dataset(name, split=split)


def load_tokenizer(name: str, revision: str | None = None):
    """``AutoTokenizer`` with a pad token distinct from EOS (``[PAD]`` added when missing) and
    left padding."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name, revision=revision, padding_side="left")
    if tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        tok.add_special_tokens({"pad_token": PAD})
    return tok


def _fit_vocab(model, tok) -> None:
    """Make room for added tokens (Pythia's vocabulary is padded to 50304, so usually none)."""
    if len(tok) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tok))
    model.config.pad_token_id = tok.pad_token_id


class PromptSet:
    """The training prompts, drawn like the toy task's documents
    (:meth:`rlhf_nb.testbed.task.Task.documents`)."""

    def __init__(self, prompts: list[str]):
        self.prompts = prompts

    def documents(self, n: int, rng: random.Random, exclude=frozenset()) -> list[str]:
        """``n`` distinct prompts not in ``exclude``, drawn with ``rng``."""
        pool = [p for p in self.prompts if p not in exclude] if exclude else self.prompts
        if n > len(pool):
            raise ValueError(f"asked for {n} prompts, the prompt set has {len(pool)}")
        return rng.sample(pool, n)


class RealTestbed:
    """Real models behind the testbed interface (module docstring). Build with :func:`load`."""

    def __init__(self, preset: TLDRPreset, device: str):
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        self.preset, self.device, self.seed = preset, device, 0
        rev = preset.revision
        blob = json.dumps([preset.name, preset.policy, preset.proxy_rm, preset.gold_rm,
                           preset.prompts, preset.preferences, rev], sort_keys=True)  # fmt: skip
        key = f"{preset.name}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"
        self.path = default_cache_dir() / "real" / key  # names the runs' cache entries
        self.max_new_tokens = preset.max_new_tokens
        self.max_length = preset.max_prompt_tokens + preset.max_new_tokens + 1  # TRL's cap
        self.missing_eos_penalty = preset.missing_eos_penalty
        frozen = resolve_dtype(preset.dtype, device)
        self.train_dtype = resolve_dtype(preset.dtype, device, trained=not preset.lora_r)
        with quiet():
            self.tokenizer = load_tokenizer(preset.policy, rev.get("policy"))
            self.proxy_tokenizer = load_tokenizer(preset.proxy_rm, rev.get("proxy_rm"))
            self.gold_tokenizer = load_tokenizer(preset.gold_rm, rev.get("gold_rm"))
            rms = {}
            for role, dtype in (("proxy_rm", frozen),
                                ("gold_rm", resolve_dtype(preset.gold_dtype, device))):  # fmt: skip
                rm = AutoModelForSequenceClassification.from_pretrained(
                    getattr(preset, role), revision=rev.get(role), num_labels=1, dtype=dtype
                )
                _fit_vocab(rm, getattr(self, role.replace("_rm", "_tokenizer")))
                rms[role] = rm.to(device).eval().requires_grad_(False)
            self.proxy_rm, self.gold_rm = rms["proxy_rm"], rms["gold_rm"]
            self._causal_lm = AutoModelForCausalLM
        self._sft = None
        self.same_proxy_tokens = self.proxy_tokenizer.get_vocab() == self.tokenizer.get_vocab()
        self._load_prompts()
        self.stats = {"device": device, "dtype": str(frozen), "lora_r": preset.lora_r}

    def _load_prompts(self) -> None:
        p = self.preset
        train = load_dataset(p.prompts, p.prompt_split)
        evals = load_dataset(p.prompts, p.eval_split)
        fits = lambda x: len(self.tokenizer(x)["input_ids"]) <= p.max_prompt_tokens  # noqa: E731
        prompts = [x for x in train["prompt"][: p.n_train_prompts or None] if fits(x)]
        eval_rows = [(x, c) for x, c in zip(evals["prompt"], evals["completion"]) if fits(x)]
        eval_rows = eval_rows[: p.n_eval_prompts]
        self.eval_prompts = [x for x, _ in eval_rows]
        self._refs = dict(zip(train["prompt"], train["completion"])) | dict(eval_rows)
        self.eval_references = [c.strip() for _, c in eval_rows]
        self.task = PromptSet(prompts)
        self._prefs = None

    def _preferences(self):
        if self._prefs is None:
            p = self.preset
            cols = ["prompt", "chosen", "rejected"]
            train = load_dataset(p.preferences, p.pref_split).select_columns(cols)
            held = load_dataset(p.preferences, p.pref_eval_split).select_columns(cols)
            # TL;DR pairs only (trl-lib/tldr-preference's validation split mixes in CNN/DM)
            held = held.filter(lambda e: e["prompt"].rstrip().endswith("TL;DR:"))
            n = min(len(train), p.n_pref_pairs or len(train))
            self._prefs = (
                train.select(range(n)),
                held.select(range(min(len(held), p.n_heldout_pairs))),
            )
        return self._prefs

    @property
    def preference_data(self):
        """Training preference pairs (TRL's ``prompt``/``chosen``/``rejected``)."""
        return self._preferences()[0]

    @property
    def preference_heldout(self):
        """Held-out preference pairs."""
        return self._preferences()[1]

    @property
    def sft_path(self) -> str:
        """Where the SFT policy loads from (a Hub name or a local folder)."""
        return self.preset.policy

    def _load_policy(self, dtype):
        with quiet():
            m = self._causal_lm.from_pretrained(
                self.preset.policy, revision=self.preset.revision.get("policy"), dtype=dtype
            )
        _fit_vocab(m, self.tokenizer)
        m.generation_config.pad_token_id = self.tokenizer.pad_token_id
        return m.to(self.device)

    @property
    def sft_policy(self):
        """The frozen SFT policy (loaded on first use: a LoRA run never needs a second copy)."""
        if self._sft is None:
            frozen = resolve_dtype(self.preset.dtype, self.device)
            self._sft = self._load_policy(frozen).eval().requires_grad_(False)
        return self._sft

    def unload_sft_policy(self) -> None:
        """Free the frozen SFT copy (it loads again on next use), e.g. between two trainers
        measured one after the other."""
        self._sft = None

    def load_sft_policy(self):
        """A trainable copy of the SFT policy: the full model, or (``lora_r > 0``) the frozen
        base with LoRA adapters (``peft``)."""
        model = self._load_policy(self.train_dtype)
        if not self.preset.lora_r:
            return model
        from peft import LoraConfig, get_peft_model

        p = self.preset
        cfg = LoraConfig(r=p.lora_r, lora_alpha=p.lora_alpha, lora_dropout=p.lora_dropout,
                         target_modules=list(p.lora_targets), task_type="CAUSAL_LM")  # fmt: skip
        with warnings.catch_warnings():  # peft asks a deprecated transformers property
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(model, cfg)

    def reference(self, policy):
        """``(model, context)``: the KL reference and the context to run it in. With LoRA the
        reference is ``policy`` with its adapters disabled; otherwise the frozen SFT policy."""
        if hasattr(policy, "disable_adapter"):
            return policy, policy.disable_adapter
        return self.sft_policy, contextlib.nullcontext

    # ---- rewards -------------------------------------------------------------------------------
    def _scores(self, rm, tok, prompts, responses) -> torch.Tensor:
        responses = [" " + r.strip() for r in responses]
        return reward_scores(rm, tok, prompts, responses, self.preset.eval_batch_size)

    def proxy_reward(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """Proxy RM score of each (prompt, response), float32 ``[N]``."""
        return self._scores(self.proxy_rm, self.proxy_tokenizer, list(prompts), list(responses))

    def gold_reward(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
        """Gold RM score of each (prompt, response), float32 ``[N]`` (evaluation only)."""
        return self._scores(self.gold_rm, self.gold_tokenizer, list(prompts), list(responses))

    def proxy_reward_rollout(self, batch: dict, rm=None) -> torch.Tensor:
        """The proxy RM on a rollout batch: from the sampled ids when the RM shares the policy's
        tokenizer (each prompt run once for its k samples), else from the decoded texts."""
        rm = self.proxy_rm if rm is None else rm
        if self.same_proxy_tokens and hasattr(rm, "score"):
            n = batch["prompt_ids"].shape[1]
            return reward_scores_tokens(
                rm,
                self.tokenizer,
                batch["prompt_ids"],
                batch["prompt_mask"],
                batch["ids"][:, n:],
                batch["k"],
            )
        prompts = self.tokenizer.batch_decode(batch["prompt_ids"], skip_special_tokens=True)
        xs = [p for p in prompts for _ in range(batch["k"])]
        return self._scores(rm, self.proxy_tokenizer, xs, batch["texts"]).to(batch["ids"].device)

    def references(self, prompts: list[str]) -> list[str]:
        """The reference (human) summary of each prompt."""
        return [self._refs[p].strip() for p in prompts]

    def win_rate(self, prompts: list[str], responses: list[str]) -> float:
        """``P(gold(response) > gold(reference))``, ties 1/2: the paper's win rate against the
        TL;DR reference summaries, judged by the gold RM."""
        return win_rate(self.gold_reward(prompts, responses),
                        self.gold_reward(prompts, self.references(prompts)))  # fmt: skip

    def sample(self, policy, prompts, n=1, temperature=1.0, *, seed=None, max_new_tokens=None):
        """``n`` responses per prompt, as :meth:`rlhf_nb.testbed.Testbed.sample`."""
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            return generate(policy, self.tokenizer, list(prompts), n=n, temperature=temperature,
                            max_new_tokens=max_new_tokens or self.max_new_tokens,
                            batch_size=self.preset.eval_batch_size)  # fmt: skip


def load(preset: str | TLDRPreset = "pythia-1b-tldr", *, device: str = "auto", **overrides):
    """The :class:`RealTestbed` of ``preset`` (a name in
    :data:`~rlhf_nb.testbed.tldr.TLDR_PRESETS` or a preset) with fields replaced by
    ``overrides`` (e.g. local paths). ``device``: ``"auto"`` (CUDA when available), ``"cpu"``,
    ``"cuda"`` or ``"cuda:N"``. Errors in names or fields are raised before any model loads."""
    preset = resolve_tldr_preset(preset, **overrides)
    if not re.fullmatch(r"cuda:\d+", str(device)):  # a process's own GPU under accelerate
        check_choice("device", device, ("auto", "cpu", "cuda"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA device; use 'auto' or 'cpu'")
    return RealTestbed(preset, device)
