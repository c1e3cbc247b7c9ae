"""The online RLOO loop (rlhf_nb.methods.online): validation, equations, reproducibility,
reliability."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from rlhf_nb import sampling, testbed
from rlhf_nb.methods import online, online_dp
from rlhf_nb.methods.online_config import OnlineConfig
from rlhf_nb.methods.rloo import rloo_advantages, shaped_reward
from rlhf_nb.runs.record import COLUMNS
from rlhf_nb.stats import summary_table

SMALL = dict(steps=4, prompts_per_step=4, k=2, eval_interval=2, n_eval_prompts=8)


@pytest.fixture(scope="module")
def tb():
    return testbed.build("smoke")


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Histories equal in every column but wall time."""
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(regularizer="entropy", alpha=-0.1), "alpha must be in"),
        (dict(regularizer="kl", beta=-1.0), "beta must be in"),
        (dict(lr=0.0), "lr must be in"),
        (dict(k=1), "k must be in"),
        (dict(steps=0), "steps must be in"),
        (dict(regularizer="entropy+magic"), "regularizer must be one of"),
        (dict(alpha=0.1), "alpha=0.1 has no effect"),
        (dict(lr=float("nan")), "lr must be in"),
        (dict(regularizer="entropy", alpha=float("inf")), "alpha must be a finite number"),
        (dict(regularizer="kl", beta=float("inf")), "beta must be a finite number"),
        (dict(lr=float("inf")), "lr must be a finite number"),
    ],
)
def test_invalid_config_fails_before_any_work(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OnlineConfig(**kwargs)


def test_steps_must_be_int():
    with pytest.raises(TypeError, match="steps must be int"):
        OnlineConfig(steps=2.5)


def test_wrong_argument_types_and_empty_batches_fail_with_a_clear_error(tb):
    with pytest.raises(TypeError, match="config must be OnlineConfig"):
        online.train(tb, {"regularizer": "none", "steps": 2})
    with pytest.raises(TypeError, match="config must be OnlineConfig"):
        online_dp.train(tb, {"regularizer": "none", "steps": 2})
    with pytest.raises(ValueError, match="keeps no checkpoints; the resumable one is"):
        online.train(tb, OnlineConfig(checkpoint_interval=2))  # the teaching loop keeps none
    with pytest.raises(TypeError, match="responses must be a list of str, got int at index 1"):
        tb.gold_reward(["a", "b"], ["x", 3])
    with pytest.raises(TypeError, match="prompts must be a list of str, not a single str"):
        tb.proxy_reward("a", ["x"])
    with pytest.raises(ValueError, match="prompts and responses are empty"):
        tb.gold_reward([], [])
    with pytest.raises(ValueError, match="prompts is empty"):
        sampling.rollout(tb.sft_policy, tb.tokenizer, [], 2, 4)
    with pytest.raises(ValueError, match="prompts is empty"):
        tb.sample(tb.sft_policy, [])
    assert OnlineConfig(grad_clip=float("inf")).grad_clip == float("inf")  # inf: no clipping


def test_label_and_combination():
    cfg = OnlineConfig(regularizer="entropy+kl", alpha=0.05, beta=0.1, lr=1e-4)
    assert cfg.regularizers == ("entropy", "kl")
    assert cfg.label() == "α=0.05 (seq), β=0.1 (kl), lr=1e-04"


def test_rloo_advantages_sum_to_zero_and_match_the_definition():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(5 * 4, generator=g, dtype=torch.float64)
    a = rloo_advantages(r, 4)
    assert torch.allclose(a.view(5, 4).sum(1), torch.zeros(5, dtype=torch.float64), atol=1e-12)
    rv = r.view(5, 4)
    for p in range(5):
        for i in range(4):
            others = [rv[p, j] for j in range(4) if j != i]
            assert math.isclose(a[4 * p + i].item(), (rv[p, i] - sum(others) / 3).item())


def test_shaped_reward_hand_checked():
    r = torch.tensor([1.0, -2.0, 0.5])
    seq_logp = torch.tensor([-3.0, -10.0, -0.5])  # log π(y|x)
    k1_seq = torch.tensor([0.2, 4.0, -0.1])  # Σ_t log π/π_ref
    # entropy: r - α log π(y|x), α = 0.1
    want = torch.tensor([1.0 + 0.3, -2.0 + 1.0, 0.5 + 0.05])
    assert torch.allclose(shaped_reward(r, seq_logp, k1_seq, alpha=0.1, beta=0.0), want)
    # kl: r - β Σ_t log π/π_ref, β = 0.5
    want = torch.tensor([1.0 - 0.1, -2.0 - 2.0, 0.5 + 0.05])
    assert torch.allclose(shaped_reward(r, seq_logp, k1_seq, alpha=0.0, beta=0.5), want)


def test_token_logprobs_match_the_sampler(tb):
    """log π(y_t|·) recomputed by a forward pass equals the scores ``generate`` sampled from
    (checks the left-padding position ids), and the policy equals SFT at step 0, so k1 = 0."""
    torch.manual_seed(0)
    policy = tb.load_sft_policy()
    prompts = tb.eval_prompts[:6]
    enc = tb.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = policy.generate(
        **enc, max_new_tokens=8, do_sample=True, top_k=0, top_p=1.0, output_logits=True,
        return_dict_in_generate=True, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    batch = sampling.rollout(policy, tb.tokenizer, prompts, 1, 8)
    assert torch.equal(batch["ids"], out.sequences)
    logp, _ = sampling.token_logprobs(policy, batch)
    n = enc["input_ids"].shape[1]
    gen = torch.stack(out.logits, 1).log_softmax(-1)
    gen = gen.gather(-1, out.sequences[:, n:, None]).squeeze(-1)
    mask = batch["response_mask"][:, n - 1 :].bool()
    assert torch.allclose(logp[:, n - 1 :][mask], gen[mask], atol=1e-4)
    ref_logp, _ = sampling.token_logprobs(tb.sft_policy, batch)
    assert torch.allclose(((logp - ref_logp) * batch["response_mask"]).sum(-1), torch.zeros(6))


def _policies(tb):
    """The SFT policy (short, well-formed samples) and a random one (samples pad/unk mid-response
    and often no EOS within the budget): the shared-prompt paths must be exact on both."""
    from rlhf_nb.testbed.models import new_policy

    return [tb.load_sft_policy(), new_policy(tb.sft_policy.config, seed=3)]


def test_rollout_shares_the_prompt_without_changing_samples(tb):
    """Prefilling each prompt once and repeating its cache k times gives the very samples that
    ``generate`` draws from k copies of the prompt under the same seed."""
    prompts = tb.eval_prompts[:5]  # different lengths, so left padding is exercised
    for policy in _policies(tb):
        enc = tb.tokenizer([p for p in prompts for _ in range(3)], return_tensors="pt",
                           padding=True, add_special_tokens=False)  # fmt: skip
        torch.manual_seed(1)
        plain = policy.generate(**enc, max_new_tokens=8, do_sample=True, top_k=0, top_p=1.0,
                                pad_token_id=0, eos_token_id=1)  # fmt: skip
        torch.manual_seed(1)
        batch = sampling.rollout(policy, tb.tokenizer, prompts, 3, 8)
        assert torch.equal(batch["ids"], plain)
        assert torch.equal(batch["prompt_ids"].repeat_interleave(3, 0), enc["input_ids"])


def test_shared_prompt_logprobs_and_gradient_equal_one_full_forward(tb):
    """``token_logprobs`` (prompt once, k responses on its cache) equals a plain forward pass over
    the full left-padded sequences: log-probs, entropies and the policy gradient."""
    prompts = tb.eval_prompts[:5]
    for policy in _policies(tb):
        torch.manual_seed(2)
        batch = sampling.rollout(policy, tb.tokenizer, prompts, 3, 8)
        m = batch["response_mask"]
        policy.train()
        want_logp, want_ent = (x * m for x in sampling.token_logprobs_full(policy, batch))
        policy.zero_grad()
        (want_logp.sum() + want_ent.sum()).backward()
        want_grad = [q.grad.clone() for q in policy.parameters()]
        logp, ent = sampling.token_logprobs(policy, batch)
        assert logp.shape == ent.shape == m.shape
        assert torch.allclose(logp * m, want_logp, atol=1e-5)
        assert torch.allclose(ent * m, want_ent, atol=1e-5)
        policy.zero_grad()
        ((logp * m).sum() + (ent * m).sum()).backward()
        for q, g in zip(policy.parameters(), want_grad):
            assert (q.grad - g).abs().max() <= 1e-4 * g.abs().max()  # relative to the largest


def test_proxy_reward_from_ids_equals_scoring_the_decoded_text(tb):
    """The loop scores rollouts from token ids (``Testbed.proxy_reward_rollout``); the RM must see
    what ``proxy_reward`` sees for the decoded text, including pad/unk tokens sampled mid-response
    (dropped by decoding) and responses cut off without an EOS."""
    prompts = tb.eval_prompts[:6]
    saw_special = saw_cut = False
    for policy in _policies(tb):
        torch.manual_seed(4)
        batch = sampling.rollout(policy, tb.tokenizer, prompts, 4, 10)
        resp = batch["ids"][:, batch["prompt_ids"].shape[1] :]
        saw_special |= bool(torch.isin(resp[batch["response_mask"][:, -resp.shape[1] :] > 0],
                                       torch.tensor([0, 2])).any())  # fmt: skip
        saw_cut |= not bool(batch["eos"].all())
        xs = [p for p in prompts for _ in range(4)]
        want = tb.proxy_reward(xs, batch["texts"])
        assert torch.allclose(tb.proxy_reward_rollout(batch), want, atol=1e-5)
    assert saw_special and saw_cut  # the random policy exercised both cases


def test_history_columns_and_equations_of_the_loop(tb):
    cfg = OnlineConfig(regularizer="entropy", alpha=0.2, **SMALL)
    run = online.train(tb, cfg, progress=False)
    h = run.history
    assert run.status == "finished"
    assert list(h["step"]) == list(range(cfg.steps + 1))
    assert h["kl_k1"].iloc[0] == pytest.approx(0.0, abs=1e-5)  # step 0: policy == SFT
    assert h["kl_k3"].iloc[0] == pytest.approx(0.0, abs=1e-5)
    # the shaped reward is r - α log π(y|x): its batch mean is proxy + α entropy_seq
    assert h["reward_shaped"].to_numpy() == pytest.approx(
        (h["proxy"] + cfg.alpha * h["entropy_seq"]).to_numpy(), rel=1e-5, abs=1e-5
    )
    assert h["win_rate"].notna().tolist() == [True, False, True, False, True]
    assert (h["entropy_token"] > 0).all() and run.policy is not None
    # samples every sample_interval steps and at the end, the first sample of up to 4 prompts
    steps = range(cfg.steps + 1)
    assert set(run.samples) == {s for s in steps if s % cfg.sample_interval == 0} | {cfg.steps}
    assert set(run.samples) == {0, cfg.steps}  # SMALL runs fewer steps than sample_interval
    assert all(len(v) == min(4, cfg.prompts_per_step) for v in run.samples.values())


def test_kl_shaping_in_the_loop(tb):
    cfg = OnlineConfig(regularizer="kl", beta=0.5, **SMALL)
    h = online.train(tb, cfg, progress=False).history
    assert h["reward_shaped"].to_numpy() == pytest.approx(
        (h["proxy"] - cfg.beta * h["kl_k1"]).to_numpy(), rel=1e-5, abs=1e-5
    )


def test_gold_reward_runs_optimise_the_gold_and_log_the_proxy(tb):
    """``reward="gold"``: the shaped reward is the gold reward (no regulariser), the ``proxy``
    column is the proxy RM's score of the same samples, and the config is its own run."""
    cfg = OnlineConfig(reward="gold", **SMALL)
    h = online.train(tb, cfg, progress=False).history
    assert h["reward_shaped"].to_numpy() == pytest.approx(h["gold"].to_numpy(), abs=1e-5)
    assert not np.allclose(h["proxy"], h["gold"])  # the RM's view, logged beside it
    proxy_run = online.train(tb, OnlineConfig(**SMALL), progress=False).history
    assert proxy_run["proxy"].iloc[0] == pytest.approx(h["proxy"].iloc[0], abs=1e-5)  # step 0
    assert "[gold reward]" in cfg.label() and "[gold" not in OnlineConfig().label()
    with pytest.raises(ValueError, match="reward must be one of"):
        OnlineConfig(reward="oracle")
    with pytest.raises(ValueError, match="ensemble=3 aggregates proxy RMs"):
        OnlineConfig(reward="gold", ensemble=3)
    with pytest.raises(ValueError, match="pass reward_fn only with reward='proxy'"):
        online.train(tb, cfg, reward_fn=tb.gold_reward, progress=False)


def test_same_seed_same_history(tb):
    cfg = OnlineConfig(regularizer="entropy+kl_loss", alpha=0.05, beta=0.1, **SMALL)
    a = online.train(tb, cfg, progress=False)
    b = online.train(tb, cfg, progress=False)
    _same(a.history, b.history)
    c = online.train(tb, OnlineConfig(regularizer="entropy+kl_loss", alpha=0.05, beta=0.1,
                                      **{**SMALL, "seed": 1}), progress=False)  # fmt: skip
    assert not a.history["proxy"].equals(c.history["proxy"])


def test_checkpoint_and_resume_reproduce_the_uninterrupted_run(tb, tmp_path):
    """``online_dp.train`` (the runner's loop, here with one process) with checkpoints is the
    teaching loop bit for bit, and an interrupted run resumed from its checkpoint ends where the
    uninterrupted one does."""
    cfg = OnlineConfig(regularizer="entropy_token", alpha=0.05, target_entropy=3.0,
                       checkpoint_interval=2, **{**SMALL, "steps": 6})  # fmt: skip
    full = online_dp.train(tb, cfg, progress=False, checkpoint_dir=tmp_path / "a")
    teaching = online.train(tb, replace(cfg, checkpoint_interval=0), progress=False)
    _same(full.history, teaching.history)
    assert full.history["alpha_tok"].nunique() == 7  # α adapts: a resumed run must restore it
    for p, q in zip(full.policy.parameters(), teaching.policy.parameters()):
        assert torch.equal(p, q)

    def stop_at_4(history):
        if history["step"].iloc[-1] == 4:
            raise KeyboardInterrupt

    cut = online_dp.train(tb, cfg, progress=False, checkpoint_dir=tmp_path / "b",
                          on_step=stop_at_4)  # fmt: skip
    assert cut.status == "interrupted" and list(cut.history["step"]) == [0, 1, 2, 3, 4]
    _same(cut.history, full.history.iloc[:5])  # the interrupted run kept its history
    resumed = online_dp.train(tb, cfg, resume=True, progress=False, checkpoint_dir=tmp_path / "b")
    assert resumed.status == "finished"
    _same(resumed.history, full.history)
    for p, q in zip(resumed.policy.parameters(), full.policy.parameters()):
        assert torch.equal(p, q)
    state = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert "cuda_rng" in state and state["cuda_rng"] is None  # CPU run: no CUDA generator state


def test_non_finite_reward_ends_the_run_as_diverged(tb):
    calls = []

    def reward(prompts, responses):
        calls.append(1)
        r = tb.proxy_reward(prompts, responses)
        return r * float("nan") if len(calls) == 3 else r

    run = online.train(tb, OnlineConfig(**SMALL), progress=False, reward_fn=reward)
    assert run.status == "diverged" and "step 2" in run.message
    assert list(run.history["step"]) == [0, 1, 2] and run.history["gold"].notna().all()


def test_huge_learning_rate_ends_as_diverged_not_a_crash(tb):
    cfg = OnlineConfig(**{**SMALL, "steps": 3}, lr=1e6, grad_clip=float("inf"))
    run = online.train(tb, cfg, progress=False)
    assert run.status == "diverged" and "step 1" in run.message  # NaN weights after step 0
    assert list(run.history["step"]) == [0]


def test_sweep_in_processes_matches_in_process_training_and_caches(tb, tmp_path):
    from rlhf_nb.runs import contract, get_runs

    cfgs = [OnlineConfig(**{**SMALL, "steps": 2}, lr=lr) for lr in (1e-4, 2e-4)]
    runs = get_runs(cfgs, preset="smoke", workers=2, refresh=True, verbose=False)
    assert [r.config for r in runs] == cfgs and all(r.status == "finished" for r in runs)
    _same(runs[1].history, online.train(tb, cfgs[1], progress=False).history)
    again = contract.run(tb, cfgs[0])  # loads, does not retrain
    pd.testing.assert_frame_equal(again.history, runs[0].history)


def _fake_run(label_alpha: float, gold: list[float], status: str = "finished"):
    from rlhf_nb.runs.record import Run

    n = len(gold)
    h = pd.DataFrame({c: [float("nan")] * n for c in COLUMNS})
    h["step"], h["gold"], h["proxy"], h["kl_k1"] = range(n), gold, range(n), range(n)
    h.loc[n - 1, "win_rate"] = 0.25
    return Run(OnlineConfig(regularizer="entropy", alpha=label_alpha), h, status)


def test_run_plots_legends_frames_and_summary():
    from rlhf_nb.viz import run_plots

    a, b = _fake_run(0.0, [1.0, 3.0, 0.0, 0.0]), _fake_run(0.1, [1.0, 1.0, 1.0, 1.0], "diverged")
    assert run_plots.run_label(a) == "α=0 (seq), lr=3e-04 (win 25%)"
    assert run_plots.run_label(b).endswith("†")
    fig = run_plots.sweep_figure({1e-3: [a, b], 1e-4: [b, a]}, "gold", param="lr")
    assert len(fig.frames) == 2 and all(len(f.data) == 2 for f in fig.frames)
    assert fig.layout.yaxis.range[0] < 0.0 and fig.layout.yaxis.range[1] > 3.0
    with pytest.raises(ValueError, match="same number of runs"):
        run_plots.sweep_figure({1: [a], 2: [a, b]}, "gold")
    t = summary_table([a], window=1)  # the rows as logged
    assert (t.gold_peak.iloc[0], t.peak_step.iloc[0], t.gold_final.iloc[0]) == (3.0, 1, 0.0)
    t3 = summary_table([a], window=3)  # trailing mean over 3 steps: [1, 2, 4/3, 1]
    # the peak reads full windows only (steps 2 and 3 here), so 2 (a 2-row window) is not it
    assert t3.gold_peak.iloc[0] == pytest.approx(4 / 3) and t3.gold_final.iloc[0] == 1.0
    assert len(run_plots.panels_figure([a, b], ("gold", "kl_k1")).data) == 4


def test_live_history_draws_the_background_faded_and_updates_only_the_live_run():
    from rlhf_nb.viz import run_plots

    a, b = _fake_run(0.0, [1.0, 3.0, 0.0, 0.0]), _fake_run(0.1, [1.0, 1.0, 1.0, 1.0])
    fig, update = run_plots.live_history(("gold", "kl_k1"), background=[a, b], height=380)
    back, live = fig.data[:4], fig.data[4:]
    assert [t.opacity for t in back] == [0.35] * 4 and [t.y[-1] for t in back[:2]] == [0.0, 1.0]
    assert [t.name for t in live] == ["live run"] * 2 and fig.layout.height == 380
    update(a.history.iloc[:2])
    assert [list(t.y) for t in live] == [[1.0, 3.0], [0.0, 1.0]]
    assert [t.y[-1] for t in back[:2]] == [0.0, 1.0]
    plain, update = run_plots.live_history(("gold",))  # no background: one bare trace per panel
    update(b.history)
    assert len(plain.data) == 1 and list(plain.data[0].y) == [1.0] * 4


def test_progress_bar_follows_tqdm_disable(tb, monkeypatch, capsys):
    """The book's build and the process pool set TQDM_DISABLE=1: no bar may reach stderr."""
    cfg = OnlineConfig(**{**SMALL, "steps": 2})
    monkeypatch.setenv("TQDM_DISABLE", "1")
    online.train(tb, cfg)
    assert "it/s" not in capsys.readouterr().err
    monkeypatch.delenv("TQDM_DISABLE")
    online.train(tb, cfg)
    assert "it/s" in capsys.readouterr().err  # a live kernel or terminal still gets its bar
