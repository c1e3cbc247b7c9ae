"""The toy task's gold reward, term by term on hand-made summaries, and its summarisers."""

import random

import pytest

from rlhf_nb.testbed.task import FILLERS, SEPARATOR, TOPICS, Task, document_topics, gold_components

# topics in order of first appearance: apple, river, castle (apple repeated)
DOC = "the apple was in a river so the apple and the castle TL;DR:"
W = 3.0 * 0.3 / (1 - 0.7**3)  # coverage of the first topic: 3 (1 - 0.7) / (1 - 0.7^3)


def g(response, **kw):
    return gold_components(DOC, response, **kw)


def test_document_topics_in_first_appearance_order():
    assert document_topics(DOC) == ["apple", "river", "castle"]


def test_oracle_gets_full_coverage_and_order_and_nothing_else():
    c = g("apple river castle")
    assert c["coverage"] == pytest.approx(3.0)
    assert c["order"] == pytest.approx(0.5)
    assert all(c[k] == 0 for k in ("filler", "repetition", "hallucination", "truncation", "length"))
    assert c["total"] == pytest.approx(3.5)


def test_coverage_has_diminishing_returns():
    cov = [g(" ".join(["apple", "river", "castle"][:k]) or "the")["coverage"] for k in range(4)]
    assert cov[0] == 0 and cov[1] == pytest.approx(W)
    assert cov[2] == pytest.approx(W * (1 + 0.7)) and cov[3] == pytest.approx(3.0)


def test_order_counts_adjacent_pairs_in_document_order():
    assert g("castle river apple")["order"] == 0.0
    assert g("apple castle river")["order"] == pytest.approx(0.25)  # 1 of n-1 = 2 pairs
    assert g("river castle")["order"] == pytest.approx(0.25)
    assert g("apple")["order"] == 0.0


def test_filler_penalty_counts_every_non_topic_word_including_unknown_ones():
    assert g("apple the river castle")["filler"] == pytest.approx(-0.3)
    assert g("apple banana river castle")["filler"] == pytest.approx(-0.3)
    assert g("apple river castle the the")["filler"] == pytest.approx(-0.6)


def test_repetition_penalty_counts_extra_copies():
    assert g("apple apple river castle")["repetition"] == pytest.approx(-0.5)
    c = g("apple " * 8)
    assert c["repetition"] == pytest.approx(-0.5 * 7) and c["coverage"] == pytest.approx(W)


def test_hallucination_penalty_counts_distinct_absent_topics():
    assert g("apple river castle piano")["hallucination"] == pytest.approx(-0.5)
    c = g("apple river castle piano piano tiger")
    assert c["hallucination"] == pytest.approx(-1.0) and c["repetition"] == pytest.approx(-0.5)
    assert c["coverage"] == pytest.approx(3.0)  # hallucinations do not cost coverage


def test_truncation_penalty_when_the_budget_is_used_up():
    assert g(" ".join(["apple", "river", "castle"] + ["the"] * 12))["truncation"] == 0.0  # 15 words
    assert g(" ".join(["apple", "river", "castle"] + ["the"] * 13))["truncation"] == -1.0  # 16
    assert g("apple river castle", max_words=3)["truncation"] == -1.0


@pytest.mark.parametrize("bias,sign", [("short", -1), ("neutral", 0), ("long", 1)])
def test_length_term_follows_length_bias(bias, sign):
    c = g("apple river castle the", length_bias=bias)
    assert c["length"] == pytest.approx(sign * 0.15 * 4)


def test_bad_length_bias_is_rejected():
    with pytest.raises(ValueError, match="length_bias"):
        g("apple", length_bias="medium")
    with pytest.raises(ValueError, match="length_bias"):
        Task(length_bias="longer")


def test_documents_are_well_formed_distinct_and_respect_exclude():
    task = Task()
    docs = task.documents(200, random.Random(0))
    assert len(set(docs)) == 200
    for d in docs:
        words = d.split()
        assert words[-1] == SEPARATOR and 16 <= len(words) - 1 <= 20
        assert set(words[:-1]) <= set(TOPICS) | set(FILLERS)
        assert 3 <= len(document_topics(d)) <= 5
    more = task.documents(50, random.Random(0), exclude=set(docs[:10]))
    assert not set(more) & set(docs[:10])


def test_reference_is_deterministic_short_and_mostly_on_topic():
    task = Task()
    docs = task.documents(300, random.Random(1))
    refs = [task.reference(d, seed=0) for d in docs]
    assert refs == [task.reference(d, seed=0) for d in docs]
    assert refs != [task.reference(d, seed=1) for d in docs]
    assert all(1 <= len(r.split()) < task.max_words for r in refs)
    gold = [task.gold_components(d, r)["total"] for d, r in zip(docs, refs)]
    oracle = [task.gold_components(d, task.oracle(d))["total"] for d in docs]
    assert all(o == pytest.approx(3.5) for o in oracle)
    assert 1.5 < sum(gold) / len(gold) < 3.3  # noisy: below the oracle, well above nothing
