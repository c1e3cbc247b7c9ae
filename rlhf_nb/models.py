"""Tokenizer, policy and reward model of the offline testbed, and their training loop.

The models are ``transformers`` GPT-NeoX (Pythia's architecture, so the same code loads real
Pythia checkpoints), a few hundred thousand parameters. The tokenizer is a word-level
``PreTrainedTokenizerFast`` built in memory. Everything saves and loads with
``save_pretrained``/``from_pretrained`` from a local folder; nothing is downloaded.

Both are trained by one hand-written loop (``_fit``; each trainer supplies only its batch loss)
rather than through TRL's ``SFTTrainer`` / ``RewardTrainer``. That is a design choice, not a
measured failure of TRL: each step on a 0.2M-parameter model takes milliseconds, the ``Trainer``
machinery (dataset tokenisation passes, accelerate wrapping, callbacks, logging) adds fixed costs
to a build that must fit in ~3 CPU minutes, and the hand loop shows the loss exactly as notebook
04 writes it (token cross-entropy on the response; Bradley-Terry
``-log sigmoid(r_chosen - r_rejected)``).
"""

from __future__ import annotations

import contextlib
import inspect

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    GPTNeoXForSequenceClassification,
    PreTrainedTokenizerFast,
)

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


def make_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer: one token per whitespace-separated word, ids 0-2 are specials.

    Left padding (decoder-only generation); unknown words map to ``<unk>``; decoding joins words
    with single spaces, so ``decode(encode(text)) == text`` for in-vocabulary text.
    """
    vocab = {w: i for i, w in enumerate([PAD, EOS, UNK, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side="left"
    )


def make_config(vocab_size: int, hidden: int, layers: int, heads: int) -> GPTNeoXConfig:
    """A Pythia-style GPT-NeoX config scaled down (rotary on a quarter of each head, parallel
    attention/MLP residual as in Pythia, untied embeddings). Token ids: pad 0, eos 1."""
    return GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=64,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
        num_labels=1,
    )


def _pack(tokenizer, prompts: list[str], responses: list[str]):
    """Right-padded ``prompt response <eos>`` ids ``[B, T]``, attention mask and a mask of the
    response+EOS positions (the tokens a policy is trained to emit)."""
    rows, resp_masks = [], []
    for p, r in zip(prompts, responses):
        p_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
        r_ids = tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(p_ids + r_ids)
        resp_masks.append([0] * len(p_ids) + [1] * len(r_ids))
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    resp = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, m) in enumerate(zip(rows, resp_masks)):
        ids[i, : len(row)] = torch.tensor(row)
        attn[i, : len(row)] = 1
        resp[i, : len(row)] = torch.tensor(m, dtype=torch.bool)
    return ids, attn, resp


def _lr(step: int, steps: int, lr: float, warmup: int = 20) -> float:
    """Linear warm-up then cosine decay to 10% of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.45 * (1 + torch.cos(torch.tensor(t * torch.pi)).item()))


def _fit(model, n: int, batch_loss, *, steps, batch_size, lr, seed) -> list[float]:
    """AdamW on ``batch_loss(idx)`` for ``steps`` minibatches of ``batch_size`` row indices drawn
    from ``range(n)`` by a seeded ``torch.Generator``: warm-up/cosine rate (:func:`_lr`), weight
    decay 0.01, gradients clipped to norm 1. Leaves ``model`` in eval mode; returns each loss."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    losses = []
    for step in range(steps):
        idx = torch.randint(n, (batch_size,), generator=g)
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, lr)
        loss = batch_loss(idx)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def train_sft(model, tokenizer, prompts, responses, *, steps, batch_size, lr, seed) -> list[float]:
    """Supervised fine-tuning: mean cross-entropy of the response+EOS tokens given the prompt.

    Minibatches are drawn with a seeded ``torch.Generator``; returns the per-step loss (nats/token).
    """
    ids, attn, resp = _pack(tokenizer, prompts, responses)

    def batch_loss(idx):
        logits = model(input_ids=ids[idx], attention_mask=attn[idx]).logits[:, :-1]
        target, mask = ids[idx, 1:], resp[idx, 1:]
        return F.cross_entropy(logits[mask], target[mask])

    return _fit(
        model, len(prompts), batch_loss, steps=steps, batch_size=batch_size, lr=lr, seed=seed
    )


def reward_scores(rm, tokenizer, prompts, responses, batch_size: int = 512) -> torch.Tensor:
    """The reward model's score of each ``prompt response <eos>`` (read at the EOS), ``[N]``."""
    out = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            ids, attn, _ = _pack(
                tokenizer, prompts[i : i + batch_size], responses[i : i + batch_size]
            )
            out.append(rm(input_ids=ids, attention_mask=attn).logits[:, 0].float())
    return torch.cat(out) if out else torch.zeros(0)


def prompt_cache(model, prompt_ids, prompt_mask, k: int):
    """Run the prompts through ``model`` once and repeat their KV cache ``k`` times.

    The k samples of a prompt share it, so its keys and values need computing once per prompt,
    not once per sample (at the tiny preset the prompt is ~60% of every sequence). Returns
    ``(output, cache)``: the model output for the P prompts (its logits predict the first
    response token) and a cache holding P·k rows, prompt-major, ready to extend with the
    responses. Position ids follow the left padding, as in ``generate``. Gradients flow through
    the cache, so a loss on the responses also differentiates through the shared prompt.
    """
    out = model(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=positions(prompt_mask),
        use_cache=True,
    )
    cache = out.cache if cache_kwarg(model) == "cache" else out.past_key_values
    cache.batch_repeat_interleave(k)
    return out, cache


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids under left padding: 0 at each row's first real token (as ``generate``)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def cache_kwarg(model) -> str:
    """The forward keyword of a KV cache: ``cache`` (transformers 5) or ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def reward_scores_tokens(rm, tokenizer, prompt_ids, prompt_mask, response_ids, k: int):
    """:func:`reward_scores` of sampled token ids, each prompt run once for its ``k`` responses.

    ``prompt_ids``/``prompt_mask`` [P, Lp] are left-padded; ``response_ids`` [P·k, L] are what
    ``generate`` appended (prompt-major). Each response is read as its text would be: tokens up
    to the first EOS, special tokens (pad, unk) dropped as ``decode(skip_special_tokens=True)``
    drops them, then one EOS where the score is read. The prompt's keys and values are computed
    once and repeated k times (:func:`prompt_cache`); the scores equal
    ``reward_scores`` of the decoded texts to float rounding (tested). Returns float32 ``[P·k]``.
    """
    device_in, device = response_ids.device, next(rm.parameters()).device
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    response_ids = response_ids.to(device)
    is_eos = response_ids == tokenizer.eos_token_id
    before_eos = torch.cumsum(is_eos.long(), dim=1) == 0
    special = torch.tensor(tokenizer.all_special_ids, device=response_ids.device)
    keep = before_eos & ~torch.isin(response_ids, special)
    n = keep.sum(dim=1)  # response words; the EOS goes at index n
    # move the kept tokens to the front of each row (stable), then pad and place the EOS
    order = torch.argsort((~keep).int(), dim=1, stable=True)
    width = int(n.max()) + 1
    compact = torch.nn.functional.pad(response_ids.gather(1, order), (0, 1))[:, :width]
    col = torch.arange(width, device=response_ids.device)[None]
    compact = compact.masked_fill(col >= n[:, None], tokenizer.pad_token_id)
    compact[torch.arange(len(n)), n] = tokenizer.eos_token_id
    _, cache = prompt_cache(rm.base_model, prompt_ids, prompt_mask, k)
    attn = torch.cat([prompt_mask.repeat_interleave(k, 0), (col <= n[:, None]).long()], dim=1)
    hidden = rm.base_model(
        input_ids=compact,
        attention_mask=attn,
        position_ids=positions(attn)[:, prompt_ids.shape[1] :],
        **{cache_kwarg(rm.base_model): cache},
    ).last_hidden_state
    return rm.score(hidden[torch.arange(len(n)), n])[:, 0].float().to(device_in)


def train_reward_model(rm, tokenizer, prompts, chosen, rejected, *, steps, batch_size, lr, seed):
    """Bradley-Terry reward modelling: minimise ``-log sigmoid(r(x, y_w) - r(x, y_l))``.

    ``rm`` is a ``GPTNeoXForSequenceClassification`` with one label (it reads the last non-pad
    token, the EOS). Each step scores a minibatch of pairs, chosen and rejected in one batch.
    Returns the per-step loss (nats per pair).
    """
    n = len(prompts)
    ids, attn, _ = _pack(tokenizer, prompts + prompts, chosen + rejected)

    def batch_loss(idx):
        both = torch.cat([idx, idx + n])
        r = rm(input_ids=ids[both], attention_mask=attn[both]).logits[:, 0]
        return -F.logsigmoid(r[: len(idx)] - r[len(idx) :]).mean()

    return _fit(rm, n, batch_loss, steps=steps, batch_size=batch_size, lr=lr, seed=seed)


@torch.no_grad()
def generate(
    policy,
    tokenizer,
    prompts: list[str],
    *,
    n: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 16,
    batch_size: int = 512,
) -> list[str]:
    """Sample ``n`` responses per prompt (prompt-major order) with ``generate`` and a KV cache.

    Left padding, pure ancestral sampling at ``temperature`` (``top_k=0``, ``top_p=1``);
    ``temperature=0`` means greedy. Decoded without special tokens, so the EOS is dropped.
    Uses torch's global RNG: seed it (or pass ``seed`` to ``Testbed.sample``) for repeatable draws.
    """
    expanded = [p for p in prompts for _ in range(n)]
    device = next(policy.parameters()).device
    sampling = (
        dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        if temperature > 0
        else dict(do_sample=False)
    )
    out: list[str] = []
    policy.eval()
    for i in range(0, len(expanded), batch_size):
        enc = tokenizer(
            expanded[i : i + batch_size],
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        ).to(device)
        ids = policy.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            use_cache=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )
        new = ids[:, enc["input_ids"].shape[1] :]
        out += tokenizer.batch_decode(new, skip_special_tokens=True)
    return [s.strip() for s in out]


def new_policy(config: GPTNeoXConfig, seed: int) -> GPTNeoXForCausalLM:
    """A freshly initialised policy (initialisation seeded, independent of the global RNG)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return GPTNeoXForCausalLM(config).eval()


def reward_model_from_policy(path, seed: int) -> GPTNeoXForSequenceClassification:
    """A reward model initialised from the SFT policy saved at ``path`` (new scalar head),
    as in InstructGPT / the paper's TL;DR pipeline."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return GPTNeoXForSequenceClassification.from_pretrained(path, num_labels=1)


@contextlib.contextmanager
def quiet():
    """Silence transformers' progress bars and load reports (e.g. "score.weight MISSING" when the
    RM head is created from the SFT policy, which is intended) inside the block."""
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()
