"""The hold-out tool: every checkpoint of a chapter reported in one execution
(``rlhf_nb._site.checks``), so a chapter tried at a new testbed seed shows all its failures."""

import textwrap

import pytest

from rlhf_nb._site import build, checks

CHAPTER = textwrap.dedent(
    """
    # %% tags=["parameters"]
    SEED = 0  # the parameter the tool replaces
    SMOKE = False

    # %%
    from rlhf_nb import stats

    values = [SEED + 1.0, SEED + 2.0, SEED + 3.0]
    assert SEED == 3, SEED  # fails at the default, holds at SEED 3
    for v in values:
        assert v < 5.5, v  # fails for one of the three at SEED 3
    stats.holds("every value above 10", values, ">", 10.0)
    stats.holds("every value above 0", values, ">", 0.0, min_margin=0.5)
    after = "the chapter went on past its failures"
    """
)


def test_every_checkpoint_is_reported_and_the_parameters_apply(tmp_path):
    src = tmp_path / "99_fake.py"
    src.write_text(CHAPTER)
    got = checks.run(src, {"SEED": 3})
    by_line = {}
    for c in got:
        by_line.setdefault(c.line, []).append(c.error is None)
    assert list(by_line.values()) == [[True], [True, True, False], [False], [True]]
    text = checks.report(got)
    assert "4 checkpoint statements executed, 2 failed" in text
    assert "×3, 1 failed" in text and "every value above 10" in text
    assert "AssertionError" not in text and "6.0" in text  # the messages, not tracebacks


def test_unknown_parameter_is_named(tmp_path):
    src = tmp_path / "99_fake.py"
    src.write_text(CHAPTER)
    with pytest.raises(ValueError, match="no parameter \\['SEEDS'\\]"):
        checks.program(src, {"SEEDS": 3})


def test_a_crash_outside_a_checkpoint_is_reported(tmp_path):
    src = tmp_path / "99_fake.py"
    src.write_text(CHAPTER + "\nraise RuntimeError('boom')\n")
    got = checks.run(src, {"SEED": 3})
    assert got[-1].error == "crash" and checks.main([str(src), "-p", "SEED=3"]) == 1


def test_parameters_parse_as_literals_or_strings():
    assert build.parse_params(["SEED=3", "PRESET=tiny", "CAPS=[8, 16]"]) == {
        "SEED": 3, "PRESET": "tiny", "CAPS": [8, 16]}  # fmt: skip
    with pytest.raises(ValueError, match="NAME=VALUE"):
        build.parse_params(["SEED"])
