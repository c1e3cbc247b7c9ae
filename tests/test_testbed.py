"""The offline testbed: API, determinism, cache, tokenizer and model round-trips, presets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from transformers import GPTNeoXForCausalLM, GPTNeoXForSequenceClassification

from rlhf_nb import testbed
from rlhf_nb.testbed.models import make_tokenizer
from rlhf_nb.testbed.presets import CODE_VERSION, PRESETS, Preset, cache_key, resolve_preset
from rlhf_nb.testbed.task import COMPONENTS, Task

# A build small enough to make twice per test (seconds): the code path of a real build, tiny sizes.
MICRO = dict(
    n_sft_docs=64, n_pref_prompts=48, n_eval_prompts=8, hidden_size=16, num_layers=1,
    num_heads=2, sft_steps=20, rm_steps=10, sft_batch_size=8, rm_batch_size=8,
)  # fmt: skip


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> testbed.Testbed:
    """The smoke testbed, built once for the session."""
    return testbed.build("smoke", seed=0, cache_dir=tmp_path_factory.mktemp("cache"))


def _state(tb: testbed.Testbed) -> dict[str, torch.Tensor]:
    sd = {f"sft.{k}": v for k, v in tb.sft_policy.state_dict().items()}
    return sd | {f"rm.{k}": v for k, v in tb.proxy_rm.state_dict().items()}


# --- API --------------------------------------------------------------------------------------


def test_api_shapes_and_types(smoke):
    prompts = smoke.eval_prompts[:5]
    oracle = smoke.oracles(prompts)
    for reward in (smoke.gold_reward, smoke.proxy_reward):
        r = reward(prompts, oracle)
        assert r.shape == (5,) and r.dtype == torch.float32
    assert smoke.gold_reward(prompts, oracle).tolist() == pytest.approx([3.5] * 5)
    assert smoke.preference_data.column_names == ["prompt", "chosen", "rejected"]
    assert len(smoke.preference_data) == smoke.stats["n_train_pairs"] > 1000
    assert isinstance(smoke.eval_prompts, list) and len(smoke.eval_prompts) == 64
    assert len(smoke.eval_references) == 64 and smoke.max_new_tokens == 16
    df = smoke.gold_components(prompts, oracle)
    assert list(df.columns)[-1] == "total" and df["total"].tolist() == pytest.approx([3.5] * 5)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        smoke.gold_reward(prompts[:2], oracle[:1])
    with pytest.raises(TypeError, match="must be a list of str, not a single str"):
        smoke.proxy_reward(prompts[0], oracle[0])


def test_sample_keeps_prompt_order_n_per_prompt_and_is_seedable(smoke):
    prompts = smoke.eval_prompts[:3]
    greedy = smoke.sample(smoke.sft_policy, prompts, n=2, temperature=0.0)
    assert len(greedy) == 6 and greedy[0::2] == greedy[1::2]
    # left padding: a prompt alone gives the same greedy summary as inside a padded batch
    alone = [smoke.sample(smoke.sft_policy, [p], temperature=0.0)[0] for p in prompts]
    assert greedy[0::2] == alone
    a = smoke.sample(smoke.sft_policy, smoke.eval_prompts, n=2, seed=3)
    assert a == smoke.sample(smoke.sft_policy, smoke.eval_prompts, n=2, seed=3)
    assert a != smoke.sample(smoke.sft_policy, smoke.eval_prompts, n=2, seed=4)
    assert all(len(s.split()) <= smoke.max_new_tokens for s in a)


def test_win_rate_counts_ties_as_half(smoke):
    p = smoke.eval_prompts
    assert smoke.win_rate(p, smoke.references(p)) == 0.5
    assert smoke.win_rate(p, smoke.oracles(p)) > 0.9
    assert smoke.win_rate(p, ["the"] * len(p)) == 0.0


# --- the figures the book relies on -------------------------------------------------------------


def test_reward_model_beats_chance_on_heldout_pairs(smoke):
    held = smoke.preference_heldout
    chosen = smoke.proxy_reward(held["prompt"], held["chosen"])
    rejected = smoke.proxy_reward(held["prompt"], held["rejected"])
    accuracy = (chosen > rejected).float().mean().item()
    assert accuracy == pytest.approx(smoke.stats["rm_heldout_accuracy"])
    assert accuracy > 0.53 and len(held) > 200


def test_proxy_has_a_repetition_blind_spot(smoke):
    """Somewhere the proxy prefers one topic repeated to the oracle summary, at negative gold."""
    prompts = smoke.eval_prompts
    oracle = smoke.oracles(prompts)
    for k in (4, 8, 16):
        reps = [" ".join([o.split()[0]] * k) for o in oracle]
        assert (smoke.gold_reward(prompts, reps) < 0).all()
        if (smoke.proxy_reward(prompts, reps) > smoke.proxy_reward(prompts, oracle)).any():
            return
    pytest.fail("the proxy never preferred a repetition to the oracle")


def test_scores_table_lists_components_gold_and_proxy(smoke):
    p = smoke.eval_prompts[:2]
    df = smoke.scores(p, ["apple", "the the"])
    assert list(df.columns) == ["response", *COMPONENTS, "gold", "proxy"]
    assert df["gold"].tolist() == pytest.approx(smoke.gold_reward(p, ["apple", "the the"]).tolist())


def test_sft_is_worse_than_references_which_are_worse_than_the_oracle(smoke):
    s = smoke.stats
    assert s["gold_sft"] < s["gold_reference"] < s["gold_oracle"] == pytest.approx(3.5)
    assert s["sft_win_rate"] < 0.5


# --- determinism and cache ----------------------------------------------------------------------


def test_same_preset_and_seed_give_identical_artefacts(tmp_path):
    a = testbed.build("smoke", seed=1, cache_dir=tmp_path / "a", **MICRO)
    b = testbed.build("smoke", seed=1, cache_dir=tmp_path / "b", **MICRO)
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.preference_data.to_dict() == b.preference_data.to_dict()
    assert a.eval_prompts == b.eval_prompts and a.stats == b.stats
    c = testbed.build("smoke", seed=2, cache_dir=tmp_path / "a", **MICRO)
    assert c.eval_prompts != a.eval_prompts


def test_cache_is_reused_and_corruption_or_partial_builds_are_rebuilt(tmp_path):
    first = testbed.build("smoke", seed=0, cache_dir=tmp_path, **MICRO)
    stamp = (first.path / "meta.json").stat().st_mtime_ns
    snapshot = {k: v.clone() for k, v in _state(first).items()}  # weights may be memory-mapped
    second = testbed.build("smoke", seed=0, cache_dir=tmp_path, **MICRO)
    assert second.path == first.path and (first.path / "meta.json").stat().st_mtime_ns == stamp
    weights = next((first.path / "rm").glob("*.safetensors"))
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match="checksum mismatch"):
        rebuilt = testbed.build("smoke", seed=0, cache_dir=tmp_path, **MICRO)
    assert all(torch.equal(v, _state(rebuilt)[k]) for k, v in snapshot.items())
    (rebuilt.path / "COMPLETE.json").unlink()  # a build interrupted before its marker
    with pytest.warns(UserWarning, match="partial build"):
        testbed.build("smoke", seed=0, cache_dir=tmp_path, **MICRO)
    (rebuilt.path / "COMPLETE.json").write_text("{not json")
    with pytest.warns(UserWarning, match="rebuilding"):
        testbed.build("smoke", seed=0, cache_dir=tmp_path, **MICRO)
    assert [p.name for p in (tmp_path / "testbed").iterdir()] == [first.path.name]  # no temp dirs


def test_cache_key_names_preset_seed_version_and_overrides(tmp_path):
    assert cache_key(PRESETS["tiny"], 3) == f"tiny-seed3-v{CODE_VERSION}"
    long = cache_key(resolve_preset("tiny", length_bias="long"), 3)
    assert long.startswith("tiny-seed3-v") and long != cache_key(PRESETS["tiny"], 3)


# --- tokenizer and save/load round trips --------------------------------------------------------


def test_tokenizer_round_trip_and_unknown_words(smoke, tmp_path):
    tok = smoke.tokenizer
    for text in smoke.eval_prompts[:5] + smoke.oracles(smoke.eval_prompts[:5]):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(text.split()) and tok.unk_token_id not in ids
        assert tok.decode(ids) == text
    assert tok("apple banana", add_special_tokens=False)["input_ids"][1] == tok.unk_token_id
    tok.save_pretrained(tmp_path)
    again = type(tok).from_pretrained(tmp_path)
    assert again.get_vocab() == tok.get_vocab() == make_tokenizer(Task().vocabulary).get_vocab()
    assert again(smoke.eval_prompts[:3])["input_ids"] == tok(smoke.eval_prompts[:3])["input_ids"]
    assert (again.pad_token, again.eos_token, again.padding_side) == ("<pad>", "<eos>", "left")


def test_models_save_and_load_round_trip(smoke, tmp_path):
    enc = smoke.tokenizer(smoke.eval_prompts[:4], return_tensors="pt", padding=True)
    smoke.sft_policy.save_pretrained(tmp_path / "p")
    policy = GPTNeoXForCausalLM.from_pretrained(tmp_path / "p")
    assert torch.equal(policy(**enc).logits, smoke.sft_policy(**enc).logits)
    fresh = smoke.load_sft_policy()
    assert fresh is not smoke.sft_policy and torch.equal(fresh(**enc).logits, policy(**enc).logits)
    rm = GPTNeoXForSequenceClassification.from_pretrained(smoke.rm_path)
    assert torch.equal(rm(**enc).logits, smoke.proxy_rm(**enc).logits)
    assert smoke.proxy_rm.num_parameters() < 1_000_000


# --- presets ------------------------------------------------------------------------------------


def test_presets_are_valid_and_smoke_is_smaller():
    assert set(PRESETS) == {"tiny", "micro", "mini", "small", "smoke", "smoke-wide"}
    tiny, smoke = PRESETS["tiny"], PRESETS["smoke"]
    for f in ("n_sft_docs", "n_pref_prompts", "sft_steps", "hidden_size"):
        assert getattr(smoke, f) <= getattr(tiny, f)
    # the ladder rungs change only the width: the smoke ladder's too
    for rung in ("micro", "mini", "small"):
        assert dataclasses.replace(PRESETS[rung], name="tiny", hidden_size=96) == tiny
    wide = dataclasses.replace(PRESETS["smoke-wide"], name="smoke", hidden_size=smoke.hidden_size)
    assert wide == smoke and PRESETS["smoke-wide"].hidden_size == 2 * smoke.hidden_size
    for name in PRESETS:
        assert PRESETS[name].name == name


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(preset="huge"), ValueError, r"preset must be one of \('tiny', 'micro', 'mini',"),
        (dict(preset="tiny", hidden=3), ValueError, r"unknown preset field 'hidden'.*hidden_size"),
        (dict(preset="tiny", hidden_size=-1), ValueError, r"hidden_size must be in \[8, inf\)"),
        (dict(preset="tiny", hidden_size=30), ValueError, "divisible by num_heads"),
        (dict(preset="tiny", length_bias="medium"), ValueError, r"length_bias must be one of"),
        (dict(preset="tiny", heldout_fraction=1.5), ValueError, r"heldout_fraction must be in"),
        (dict(preset="tiny", sft_steps=10.5), TypeError, "sft_steps must be int"),
        (dict(preset="tiny", seed=-1), ValueError, "seed must be in"),
        (dict(preset=3), TypeError, "preset must be str or Preset"),
    ],
)
def test_bad_presets_and_fields_are_rejected_before_any_work(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        testbed.build(cache_dir=tmp_path, **kwargs)
    assert not any(Path(tmp_path).iterdir())


def test_preset_dataclass_validates_on_creation():
    with pytest.raises(ValueError, match="label_beta"):
        Preset(label_beta=0.0)
    with pytest.raises(ValueError, match=r"max_new_tokens must be in \[2, 40\]"):
        dataclasses.replace(PRESETS["smoke"], max_new_tokens=41)


def test_reload_loads_the_cache_instead_of_rebuilding(smoke):
    """No wall time is asserted here (a loaded machine is slow); ``benchmarks/testbed_build.py``
    measures build and reload times. What a test can assert: the reload did not rebuild."""
    again = testbed.build("smoke", seed=0, cache_dir=smoke.path.parent.parent)
    assert again.stats == smoke.stats
    # loaded, not rebuilt: same folder, and the wall time recorded by the one build
    assert again.path == smoke.path and again.build_seconds == smoke.build_seconds


def test_build_seeds_loads_cached_builds_in_order_and_rejects_bad_seeds(smoke):
    from rlhf_nb.chapters import ch04 as report

    cache = smoke.path.parent.parent  # cache_dir/testbed/<key>
    (tb,) = report.build_seeds("smoke", [0], workers=2, cache_dir=cache)
    assert tb.path == smoke.path and tb.build_seconds == smoke.build_seconds  # loaded, not rebuilt
    for bad, match in [([], "non-empty"), ([1, 1], "distinct")]:
        with pytest.raises(ValueError, match=match):
            report.build_seeds("smoke", bad, cache_dir=cache)
    with pytest.raises(ValueError, match="workers"):
        report.build_seeds("smoke", [0], workers=0, cache_dir=cache)
