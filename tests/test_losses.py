"""Preference losses (rlhf_nb.theory.losses) against TRL on the same log-probabilities, and against
the exact Plackett-Luce / Bradley-Terry formulas.

How TRL is called, and why this is honest:

* DPO. In TRL 1.16 the sigmoid DPO loss is written inline in ``DPOTrainer._compute_loss``, after a
  model forward pass; there is no loss function to call. So we build a *real* DPOTrainer (a tiny
  GPT-NeoX from a config, a word-level tokenizer built in memory, a 4-pair dataset; CPU, no
  download), perturb the policy away from its reference copy so the log-ratios are not zero, and
  let TRL compute its loss on one collated batch. We compute the per-token log-probs of the same
  batch ourselves (plain forward, log-softmax, gather; the completion mask from the batch), feed
  them to ``rlhf_nb.theory.losses.dpo_loss`` and compare.
* SimPO. ``trl.experimental.cpo.CPOTrainer.cpo_loss`` is a pure function of the two average
  log-prob tensors that reads six attributes of ``self``. We call TRL's unbound method with a
  stand-in object that carries exactly those attributes, taken from a real ``CPOConfig`` with
  ``loss_type="simpo"`` (so defaults such as ``label_smoothing`` and the AlphaPO ``alpha`` are
  TRL's own). TRL's static ``get_batch_logps(average_log_prob=True)`` checks the averaging.
"""

import copy
import itertools
import math
import os
import types
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf_nb.theory import exact, losses

FAST = settings(max_examples=40, deadline=None)
seeds = st.integers(0, 2**31 - 1)
betas = st.floats(0.01, 10.0)


def logps(seed, *shape, scale=20.0):
    g = torch.Generator().manual_seed(seed)
    return -scale * torch.rand(*shape, generator=g, dtype=torch.float64)


# ---- DPO: a real TRL DPOTrainer --------------------------------------------------------------


@pytest.fixture(scope="module")
def dpo_trainer(tmp_path_factory):
    os.environ["HF_HUB_OFFLINE"] = "1"
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast
    from trl import DPOConfig, DPOTrainer

    vocab = {"<pad>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate("abcdef")}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<pad>")
    config = GPTNeoXConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32, eos_token_id=1, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(config)
    data = Dataset.from_dict(
        {
            "prompt": ["a b", "c", "d e f", "a"],
            "chosen": [" c d", " a", " b b c", " f e d c"],
            "rejected": [" e", " f f f", " a", " b"],
        }
    )
    with warnings.catch_warnings():  # transformers 5 renames that TRL's defaults trigger
        warnings.simplefilter("ignore")
        args = DPOConfig(
            output_dir=str(tmp_path_factory.mktemp("dpo")), use_cpu=True, bf16=False,
            report_to="none", per_device_train_batch_size=4, beta=0.1, seed=0,
        )  # fmt: skip
        trainer = DPOTrainer(
            model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=data,
            processing_class=tok,
        )  # fmt: skip
    with torch.no_grad():  # move the policy away from its reference: non-zero log-ratios
        for p in trainer.model.parameters():
            p.add_(0.7 * torch.randn_like(p))
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer, batch


def our_sequence_logps(model, batch):
    """Summed completion log-probs, computed without TRL: (chosen, rejected), each (B,)."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    token_logps = torch.log_softmax(logits[:, :-1].double(), -1)
    token_logps = token_logps.gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    seq = losses.sequence_logps(token_logps, batch["completion_mask"][:, 1:])
    return seq.chunk(2)


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_dpo_loss_equals_trl_dpo_trainer(dpo_trainer, beta):
    trainer, batch = dpo_trainer
    trainer.beta = beta  # the attribute TRL's loss reads (set from DPOConfig.beta)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trl_loss = trainer.compute_loss(trainer.model, batch)
    chosen, rejected = our_sequence_logps(trainer.model, batch)
    ref_chosen, ref_rejected = our_sequence_logps(trainer.ref_model, batch)
    ours = losses.dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta).mean()
    assert abs((chosen - ref_chosen) - (rejected - ref_rejected)).max() > 0.1  # non-trivial
    # TRL computes its log-probs in float32 (its fused LM head), so float32 rounding bounds this
    assert abs(ours.item() - trl_loss.item()) < 1e-5 * max(1.0, trl_loss.item())


@FAST
@given(seed=seeds, beta=betas, b=st.integers(1, 8))
def test_maxent_bt_loss_is_dpo_with_uniform_reference(seed, beta, b):
    lw, ll = logps(seed, b), logps(seed + 1, b)
    lengths_w = torch.randint(1, 9, (b,), generator=torch.Generator().manual_seed(seed))
    lengths_l = torch.randint(1, 9, (b,), generator=torch.Generator().manual_seed(seed + 2))
    # a uniform reference over all sequences of the space: the same ref log-prob for both
    flat = torch.full((b,), -math.log(1000.0), dtype=torch.float64)
    torch.testing.assert_close(
        losses.maxent_bt_loss(lw, ll, beta),
        losses.dpo_loss(lw, ll, flat, flat, beta),
        rtol=0,
        atol=1e-12,
    )
    # the *token*-uniform reference V^-|y| is not flat: it adds log V (|y_w| - |y_l|) to the logit
    ref_w, ref_l = -lengths_w.double() * math.log(5), -lengths_l.double() * math.log(5)
    shift = (lengths_w - lengths_l).double() * math.log(5)
    torch.testing.assert_close(
        losses.dpo_loss(lw, ll, ref_w, ref_l, beta),
        losses.maxent_bt_loss(lw + shift, ll, beta),
        rtol=0,
        atol=1e-9,
    )


@FAST
@given(seed=seeds, beta=betas, b=st.integers(1, 8))
def test_simpo_on_summed_logps_without_margin_is_maxent_bt(seed, beta, b):
    lw, ll = logps(seed, b), logps(seed + 1, b)  # summed log-probs, nats per sequence
    torch.testing.assert_close(
        losses.simpo_loss(lw, ll, beta, gamma=0.0),
        losses.maxent_bt_loss(lw, ll, beta),
        rtol=0,
        atol=1e-12,
    )


# ---- SimPO: TRL's CPOTrainer.cpo_loss --------------------------------------------------------


def trl_cpo_loss(beta, gamma, chosen_avg, rejected_avg):
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = CPOConfig(output_dir="unused", loss_type="simpo", beta=beta, simpo_gamma=gamma,
                        report_to="none", use_cpu=True)  # fmt: skip
    stand_in = types.SimpleNamespace(
        beta=cfg.beta, simpo_gamma=cfg.simpo_gamma, loss_type=cfg.loss_type,
        label_smoothing=cfg.label_smoothing, alpha=cfg.alpha,
        accelerator=types.SimpleNamespace(device=torch.device("cpu")),
    )  # fmt: skip
    per_pair, _, _ = CPOTrainer.cpo_loss(stand_in, chosen_avg, rejected_avg)
    return per_pair


@settings(max_examples=15, deadline=None)
@given(seed=seeds, beta=betas, gamma=st.floats(0.0, 5.0), b=st.integers(1, 8))
def test_simpo_loss_equals_trl_cpo_simpo(seed, beta, gamma, b):
    cw, cl = logps(seed, b, scale=3.0), logps(seed + 1, b, scale=3.0)
    torch.testing.assert_close(
        losses.simpo_loss(cw, cl, beta, gamma), trl_cpo_loss(beta, gamma, cw, cl), rtol=0, atol=1e-9
    )


def test_average_logps_equal_trl_get_batch_logps():
    from trl.experimental.cpo import CPOTrainer

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (3, 7), generator=g)
    labels[0, :3], labels[1, :5], labels[2, :1] = -100, -100, -100  # prompt tokens
    mask = labels[:, 1:] != -100
    token_logps = torch.log_softmax(logits[:, :-1], -1)
    token_logps = token_logps.gather(-1, labels[:, 1:].clamp(min=0)[..., None]).squeeze(-1)
    for average in (False, True):
        trl = CPOTrainer.get_batch_logps(logits, labels.clone(), average_log_prob=average)
        ours = losses.sequence_logps(token_logps, mask, average=average)
        torch.testing.assert_close(ours, trl, rtol=0, atol=1e-12)


# ---- Plackett-Luce ---------------------------------------------------------------------------


@FAST
@given(seed=seeds, alpha=betas, k=st.integers(2, 5), b=st.integers(1, 4))
def test_pl_loss_matches_exact_plackett_luce(seed, alpha, k, b):
    x = logps(seed, b, k, scale=5.0)
    loss = losses.pl_loss(x, alpha)
    for i in range(b):
        expected = -exact.pl_log_prob(alpha * x[i].numpy(), np.arange(k))
        assert abs(loss[i].item() - expected) < 1e-9 * max(1.0, abs(expected))
    if k == 2:  # two responses: Plackett-Luce is Bradley-Terry
        torch.testing.assert_close(
            loss, losses.maxent_bt_loss(x[:, 0], x[:, 1], alpha), rtol=0, atol=1e-12
        )


def test_pl_probabilities_sum_to_one_over_rankings():
    x = logps(0, 1, 4, scale=3.0)[0]
    rankings = torch.tensor(list(itertools.permutations(range(4))))
    total = torch.exp(-losses.pl_loss(x[rankings], 0.8)).sum()
    assert abs(total.item() - 1.0) < 1e-12


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: losses.dpo_loss(*[torch.zeros(2)] * 4, beta=0.0), "beta"),
        (lambda: losses.simpo_loss(torch.zeros(2), torch.zeros(2), 1.0, gamma=-1.0), "gamma"),
        (lambda: losses.maxent_bt_loss(torch.zeros(2), torch.zeros(3), 1.0), "log-prob"),
        (lambda: losses.pl_loss(torch.zeros(2), 1.0), "ranked_logps"),
    ],
)
def test_bad_inputs_name_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()
