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

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    GPTNeoXForSequenceClassification,
    PreTrainedTokenizerFast,
)

from rlhf_nb.sampling import pack

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
    ids, attn, resp = pack(tokenizer, prompts, responses)

    def batch_loss(idx):
        logits = model(input_ids=ids[idx], attention_mask=attn[idx]).logits[:, :-1]
        target, mask = ids[idx, 1:], resp[idx, 1:]
        return F.cross_entropy(logits[mask], target[mask])

    return _fit(
        model, len(prompts), batch_loss, steps=steps, batch_size=batch_size, lr=lr, seed=seed
    )


def train_reward_model(rm, tokenizer, prompts, chosen, rejected, *, steps, batch_size, lr, seed):
    """Bradley-Terry reward modelling: minimise ``-log sigmoid(r(x, y_w) - r(x, y_l))``.

    ``rm`` is a ``GPTNeoXForSequenceClassification`` with one label (it reads the last non-pad
    token, the EOS). Each step scores a minibatch of pairs, chosen and rejected in one batch.
    Returns the per-step loss (nats per pair).
    """
    n = len(prompts)
    ids, attn, _ = pack(tokenizer, prompts + prompts, chosen + rejected)

    def batch_loss(idx):
        both = torch.cat([idx, idx + n])
        r = rm(input_ids=ids[both], attention_mask=attn[both]).logits[:, 0]
        return -F.logsigmoid(r[: len(idx)] - r[len(idx) :]).mean()

    return _fit(rm, n, batch_loss, steps=steps, batch_size=batch_size, lr=lr, seed=seed)


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
