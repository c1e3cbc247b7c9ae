"""Sampling and scoring: the one place where a policy meets tokens (every method uses it).

:func:`generate` (text in, text out); :func:`rollout` (k samples per prompt with token ids, EOS
and masks); :func:`token_logprobs` / :func:`token_logprobs_full` (log π(y_t|·) and per-token
entropy of sampled tokens); :func:`sequence_logps` (log π(response + EOS | prompt) of given
texts, summed and averaged); :func:`reward_scores` / :func:`reward_scores_tokens` (a reward model
on texts or on sampled ids); :func:`prompt_cache`, the KV-cache sharing that makes the k samples
of a prompt cost one prompt pass — an exact rewrite of a full forward pass, not an approximation
(tests compare samples, log-probs, gradients and RM scores both ways). Imports torch and
:mod:`rlhf_nb.theory` only; :mod:`rlhf_nb.testbed` and :mod:`rlhf_nb.methods` build on it.
"""

from __future__ import annotations

import inspect

import torch

from rlhf_nb.theory import losses


def check_texts(name: str, texts) -> list[str]:
    """``texts`` as a list of str, or ``TypeError`` naming ``name`` (a single str, a non-str
    item at its index)."""
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a list of str, not a single str")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name} must be a list of str, got {type(t).__name__} at index {i}")
    return texts


def check_prompts(prompts) -> list[str]:
    """:func:`check_texts` for a batch to sample from, which must not be empty."""
    prompts = check_texts("prompts", prompts)
    if not prompts:
        raise ValueError("prompts is empty: need at least one prompt to sample from")
    return prompts


def pack(tokenizer, prompts: list[str], responses: list[str]):
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


def reward_scores(rm, tokenizer, prompts, responses, batch_size: int = 512) -> torch.Tensor:
    """The reward model's score of each ``prompt response <eos>`` (read at the EOS), ``[N]``."""
    out, device = [], next(rm.parameters()).device
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            ids, attn, _ = pack(
                tokenizer, prompts[i : i + batch_size], responses[i : i + batch_size]
            )
            logits = rm(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
            out.append(logits[:, 0].float().cpu())
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
    """The forward keyword of a KV cache: ``cache`` (transformers 5) or ``past_key_values``.
    A ``peft`` model is asked about the model it wraps."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


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
    expanded = [p for p in check_prompts(prompts) for _ in range(n)]
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


@torch.no_grad()
def rollout(policy, tokenizer, prompts: list[str], k: int, max_new_tokens: int) -> dict:
    """Sample ``k`` responses per prompt (prompt-major) with ``generate`` and a KV cache.

    The prompt (all but its last token) is prefilled once per prompt and its cache repeated k
    times (:func:`prompt_cache`), so ``generate`` only decodes; the samples are identical to
    generating from k copies of each prompt with the same seed (tested).

    Returns ``ids`` [B, T] (left-padded prompt, then response, then pad), ``attention_mask`` [B, T]
    (1 on prompt and response tokens up to and including the first EOS), ``response_mask``
    [B, T-1] (aligned with ``ids[:, 1:]``: 1 where the token is a response token), ``texts``
    (decoded without EOS), ``eos`` [B] bool, ``length`` [B] (response tokens incl. EOS), and the
    shared prompts: ``prompt_ids``/``prompt_mask`` [P, Lp] and ``k``.
    """
    prompts = check_prompts(prompts)
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left",
                    add_special_tokens=False)  # fmt: skip
    device = next(policy.parameters()).device
    pid, pmask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    policy.eval()
    shared = {}
    if pid.shape[1] > 1:  # prefill all but the last prompt token; generate feeds that one
        _, cache = prompt_cache(policy, pid[:, :-1], pmask[:, :-1], k)
        shared[cache_kwarg(policy)] = cache
    full_pmask = pmask.repeat_interleave(k, 0)
    ids = policy.generate(
        input_ids=pid.repeat_interleave(k, 0),
        attention_mask=full_pmask,
        **shared,
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    n_prompt = pid.shape[1]
    new = ids[:, n_prompt:]
    is_eos = new == tokenizer.eos_token_id
    # a token is part of the response if no EOS came strictly before it
    before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    resp = before == 0
    attn = torch.cat([full_pmask, resp.long()], dim=1)
    response_mask = torch.cat([torch.zeros_like(full_pmask), resp.long()], dim=1)
    texts = tokenizer.batch_decode(new.masked_fill(~resp, tokenizer.pad_token_id),
                                   skip_special_tokens=True)  # fmt: skip
    return {
        "ids": ids,
        "attention_mask": attn,
        "response_mask": response_mask[:, 1:].float(),
        "texts": [t.strip() for t in texts],
        "eos": is_eos.any(dim=1),
        "length": resp.sum(dim=1).float(),
        "prompt_ids": pid,
        "prompt_mask": pmask,
        "k": k,
    }


def token_logprobs(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(y_t | x, y_<t) of each sampled token and the per-token entropy H(π(·|x, y_<t)).

    Both [B, T-1], aligned with ``batch["response_mask"]`` (zero before the first response
    position; mask before summing). Computed the way the sampler ran: each prompt once
    (:func:`prompt_cache`), then the k responses on top of its cache; equal to one forward pass
    over ``batch["ids"]``, gradient included (tested), at ~half the tokens.
    """
    pid, pmask, k = batch["prompt_ids"], batch["prompt_mask"], batch["k"]
    n_prompt = pid.shape[1]
    out, cache = prompt_cache(model, pid, pmask, k)
    attn, response = batch["attention_mask"], batch["ids"][:, n_prompt:]
    rest = model(
        input_ids=response,
        attention_mask=attn,
        position_ids=positions(attn)[:, n_prompt:],
        use_cache=True,
        **{cache_kwarg(model): cache},
    )
    # logits that predict response token t: the last prompt position, then response positions
    logits = torch.cat([out.logits[:, -1:].repeat_interleave(k, 0), rest.logits[:, :-1]], dim=1)
    logp, entropy = _logp_entropy(logits, response)
    pad = (n_prompt - 1, 0)  # back to the [B, T-1] layout of response_mask
    return torch.nn.functional.pad(logp, pad), torch.nn.functional.pad(entropy, pad)


def token_logprobs_full(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """What :func:`token_logprobs` computes, the plain way: one forward pass over the full
    left-padded sequences ``batch["ids"]``, every prompt once per sample. Slower; kept as the
    reference the shared-prompt path is checked against (tests, notebook 05)."""
    attn = batch["attention_mask"]
    logits = model(input_ids=batch["ids"], attention_mask=attn, position_ids=positions(attn)).logits
    return _logp_entropy(logits[:, :-1], batch["ids"][:, 1:])


def _logp_entropy(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(token) under ``logits`` [B, T, V] (float32 log-softmax) and the entropy of each
    position's distribution, both [B, T]."""
    logp_all = torch.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, tokens[..., None]).squeeze(-1)
    return logp, -(logp_all.exp() * logp_all).sum(-1)


def sequence_logps(model, tokenizer, prompts, responses, batch_size: int = 256, grad=False):
    """Summed and averaged log pi(response + EOS | prompt), each ``[N]`` (nats per sequence,
    nats per token), tokenised as the trainers do (``prompt`` + ``" " + response`` + EOS).
    Without ``grad`` it runs under ``torch.no_grad()``."""
    total, avg = [], []
    with torch.set_grad_enabled(grad):
        for i in range(0, len(prompts), batch_size):
            chunk = slice(i, i + batch_size)
            ids, attn, resp = pack(tokenizer, prompts[chunk], responses[chunk])
            ids, attn, resp = ids.to(model.device), attn.to(model.device), resp.to(model.device)
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
            token = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            total.append(losses.sequence_logps(token, resp[:, 1:]))
            avg.append(losses.sequence_logps(token, resp[:, 1:], average=True))
    return torch.cat(total), torch.cat(avg)
