"""The remedies of chapter 07 as regularisers of the online loop (rlhf_nb.methods.rloo and
OnlineConfig's options): each term checked by hand, then a short run of each on the smoke
testbed, and the cache keys of the runs that use none of them unchanged."""

from __future__ import annotations

import math

import pytest
import torch

from rlhf_nb import testbed
from rlhf_nb.methods import online, rloo
from rlhf_nb.methods.online_config import OnlineConfig
from rlhf_nb.runs.cache import config_key

SMALL = dict(steps=4, prompts_per_step=4, k=2, eval_interval=2, n_eval_prompts=8)


def test_remedy_terms_by_hand():
    seq_logp = torch.tensor([-6.0, -2.0])  # log π(y|x) of two samples
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])  # |y| = 3 and 1
    t = rloo.remedy_terms(seq_logp, mask, {"alpha_norm": 0.5, "length": 0.0})
    assert t.tolist() == pytest.approx([0.5 * -6.0 / 3, 0.5 * -2.0 / 1])  # pays +(α/|y|)·(-log π)
    t = rloo.remedy_terms(seq_logp, mask, {"alpha_norm": 0.0, "length": 0.1})
    assert t.tolist() == pytest.approx([0.3, 0.1])


def test_mixed_reference_by_hand():
    ref = torch.log(torch.tensor([[0.5, 0.25]]))
    assert torch.equal(rloo.mixed_reference(ref, 1.0, 4), ref)
    assert rloo.mixed_reference(ref, 0.0, 4)[0].tolist() == pytest.approx([math.log(0.25)] * 2)
    mixed = rloo.mixed_reference(ref, 0.5, 4)[0]
    assert mixed.tolist() == pytest.approx([math.log(0.5 * 0.5 + 0.5 * 0.25),
                                            math.log(0.5 * 0.25 + 0.5 * 0.25)])  # fmt: skip


def test_adaptive_alpha_by_hand():
    assert rloo.adapt_alpha(0.1, entropy=1.0, target=1.5, rate=0.2) == pytest.approx(0.2)
    assert rloo.adapt_alpha(0.1, entropy=2.0, target=1.5, rate=0.2) == pytest.approx(0.0)
    assert rloo.adapt_alpha(0.05, entropy=3.0, target=1.5, rate=0.2) == 0.0  # never negative


def test_rloo_loss_with_remedies_subtracts_them_from_the_shaped_reward():
    torch.manual_seed(0)
    logp = -torch.rand(4, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0]] * 2 + [[1.0, 1.0, 1.0]] * 2)
    r = torch.tensor([1.0, 0.0, 0.5, 0.2])
    base = {"alpha_seq": 0.0, "alpha_tok": 0.0, "beta_rew": 0.0, "beta_loss": 0.0}
    _, plain = rloo.rloo_loss(r, logp, torch.zeros(4, 3), logp, mask, 2, base)
    _, long_ = rloo.rloo_loss(r, logp, torch.zeros(4, 3), logp, mask, 2, {**base, "length": 0.1})
    assert long_["reward_shaped"] == pytest.approx(plain["reward_shaped"] - 0.1 * 2.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(regularizer="entropy", ref_mix=0.5), "ref_mix=0.5 has no effect"),
        (dict(regularizer="kl", beta=0.1, ref_mix=1.5), "ref_mix must be in"),
        (dict(regularizer="length"), "'length' and length_coef > 0 go together"),
        (dict(length_coef=0.1), "'length' and length_coef > 0 go together"),
        (dict(regularizer="entropy", alpha=0.1, target_entropy=1.0), "add it"),
        (dict(regularizer="entropy_token", target_entropy=-1.0), "target_entropy must be in"),
    ],
)
def test_remedy_options_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OnlineConfig(**kwargs)


def test_every_option_enters_the_cache_key():
    """Cache version 4: every field is in the key, so a remedy's option (or its default) can
    never alias another run; version 3's key of the same config is what ``rekey`` recognises."""
    import dataclasses

    from rlhf_nb.runs import cache

    cfg = OnlineConfig(regularizer="entropy", alpha=0.05)
    v3_fields = dataclasses.asdict(cfg)
    del v3_fields["reward"]  # added later (its default "proxy" is what version 3 trained)
    assert cache._v3_key("OnlineConfig", v3_fields, "tiny-seed0-v3") == (
        "1b83d5c60ee1c8df"  # the version-3 key pinned before the options existed (eadffd8)
    )
    assert config_key(cfg, "tiny-seed0-v3") != "1b83d5c60ee1c8df"
    base = OnlineConfig(regularizer="kl", beta=0.05)
    for option in (
        dict(ref_mix=0.5),
        dict(ensemble=3),
        dict(ensemble_penalty=2.0),
        dict(reward="gold"),
    ):
        assert config_key(dataclasses.replace(base, **option), "x") != config_key(base, "x")
    length = OnlineConfig(regularizer="length", length_coef=0.1)
    assert config_key(length, "x") != config_key(dataclasses.replace(length, length_coef=0.2), "x")


@pytest.fixture(scope="module")
def tb():
    return testbed.build("smoke")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(regularizer="entropy_norm", alpha=0.5),
        dict(regularizer="entropy+kl", alpha=0.05, beta=0.1),
        dict(regularizer="kl", beta=0.1, ref_mix=0.5),
        dict(regularizer="kl_loss", beta=0.1, ref_mix=0.0),
        dict(regularizer="length", length_coef=0.05),
    ],
)
def test_each_remedy_trains(tb, kwargs):
    run = online.train(tb, OnlineConfig(**kwargs, **SMALL), progress=False)
    assert run.status == "finished" and run.history["loss"].iloc[:-1].notna().all()


def test_adaptive_entropy_logs_its_coefficient_and_moves_it_towards_the_target(tb):
    cfg = OnlineConfig(regularizer="entropy_token", alpha=0.01, target_entropy=5.0,
                       entropy_rate=0.1, **SMALL)  # fmt: skip
    h = online.train(tb, cfg, progress=False).history
    assert h["alpha_tok"].iloc[0] == 0.01
    assert (h["entropy_token"] < 5.0).all() and (h["alpha_tok"].diff().iloc[1:] > 0).all()


def test_ensemble_aggregate_by_hand():
    from rlhf_nb.methods.ensemble import aggregate

    scores = torch.tensor([[1.0, 2.0], [3.0, 2.0]])  # 2 members x 2 samples
    assert aggregate(scores).tolist() == pytest.approx([1.0, 2.0])  # mean 2, std 1 and 0
    assert aggregate(scores, penalty=0.5).tolist() == pytest.approx([1.5, 2.0])
    assert aggregate(scores, "min").tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="mode must be one of"):
        aggregate(scores, "median")


def test_proxy_ensemble_members_differ_and_are_cached(tb, tmp_path):
    from rlhf_nb.methods.ensemble import proxy_ensemble

    members = proxy_ensemble(tb, 3, cache_dir=tmp_path)
    assert len(members) == 3 and members[0] is tb.proxy_rm
    prompts = tb.eval_prompts[:8]
    texts = tb.sample(tb.sft_policy, prompts, seed=0)
    from rlhf_nb.sampling import reward_scores

    scores = torch.stack([reward_scores(m, tb.tokenizer, prompts, texts) for m in members])
    assert not torch.allclose(scores[0], scores[1]) and not torch.allclose(scores[1], scores[2])
    again = proxy_ensemble(tb, 3, cache_dir=tmp_path)  # loaded, not retrained
    rescored = reward_scores(again[2], tb.tokenizer, prompts, texts)
    assert torch.equal(rescored, scores[2])


def test_online_run_with_an_ensemble_reward(tb, monkeypatch, tmp_path):
    monkeypatch.setenv("RLHF_NB_CACHE", str(tmp_path))
    cfg = OnlineConfig(ensemble=2, ensemble_mode="min", **SMALL)
    assert cfg.label() == "2 RMs (min), lr=3e-04"
    run = online.train(tb, cfg, progress=False)
    assert run.status == "finished"
    assert config_key(cfg, "x") != config_key(OnlineConfig(**SMALL), "x")


def test_mixed_anchor_penalises_against_the_mixture_but_logs_kl_to_sft():
    torch.manual_seed(1)
    logp, ref = -torch.rand(4, 3), -torch.rand(4, 3)
    mask, r = torch.ones(4, 3), torch.zeros(4)
    anchor = rloo.mixed_reference(ref, 0.5, 8)
    coef = {"alpha_seq": 0.0, "alpha_tok": 0.0, "beta_rew": 0.1, "beta_loss": 0.0}
    _, t = rloo.rloo_loss(r, logp, torch.zeros(4, 3), ref, mask, 2, coef, anchor)
    assert t["kl_k1"] == pytest.approx(((logp - ref) * mask).sum(-1).mean().item())  # vs SFT
    k1_anchor = ((logp - anchor) * mask).sum(-1)
    assert t["reward_shaped"] == pytest.approx((-0.1 * k1_anchor).mean().item())  # vs mixture


def test_length_penalty_shows_in_the_logged_shaped_reward(tb):
    """History check of the `length` remedy: mean shaped reward = mean proxy − c·mean length."""
    h = online.train(tb, OnlineConfig(regularizer="length", length_coef=0.05, **SMALL)).history
    want = h["proxy"] - 0.05 * h["length"]
    assert (h["reward_shaped"] - want).abs().max() < 1e-5
