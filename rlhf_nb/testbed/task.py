"""The toy summarisation task behind the offline testbed (notebook 04, "The task").

A *document* (the prompt) is ~18 readable English words: 3-5 distinct *topic* words (nouns, some
repeated) mixed with *filler* words, followed by the separator ``TL;DR:``. A good *summary* (the
response) lists the document's topic words once each, in order of first appearance, and stops.

Everything here is pure Python on strings, so readers can type their own summaries:

* :func:`gold_components` is the "true" reward (the stand-in for human judgement), broken into
  the named terms the notebook plots, and their sum (``"total"``).
* :meth:`Task.reference` is a noisy human-like summariser (the SFT data and the win-rate
  baseline); :meth:`Task.oracle` writes the ideal summary.

Text conventions: a prompt is ``"<document words> TL;DR:"`` and a response is the summary words
separated by single spaces, without the end-of-sequence token (TRL trainers decode completions
with ``skip_special_tokens=True``, so the gold reward must not depend on seeing EOS). A response
that used the whole generation budget (``max_words`` words) is treated as cut off mid-summary
(the "missing EOS" penalty).
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from rlhf_nb.core import check_choice, check_range

# fmt: off
TOPICS = (
    "apple", "river", "castle", "doctor", "garden", "engine", "forest", "harbor", "island",
    "market", "mountain", "ocean", "piano", "rocket", "school", "storm", "tiger", "village",
    "window", "bridge", "camera", "desert", "farmer", "guitar", "hammer", "kitchen", "ladder",
    "lemon", "library", "mirror", "orange", "pencil", "planet", "rabbit", "robot", "soldier",
    "teacher", "train", "violin", "wizard",
)
FILLERS = (
    "the", "a", "of", "and", "to", "in", "is", "was", "it", "that", "with", "for", "on", "as",
    "at", "by", "this", "from", "they", "we", "very", "then", "so", "but", "or", "some", "many",
    "more", "just", "also", "only", "about", "into", "over", "after", "before", "while", "there",
    "here", "well",
)
# fmt: on
SEPARATOR = "TL;DR:"
LENGTH_BIASES = ("short", "neutral", "long")
COMPONENTS = ("coverage", "order", "filler", "repetition", "hallucination", "truncation", "length")
_TOPIC_SET = frozenset(TOPICS)


@dataclass(frozen=True)
class GoldWeights:
    """Weights of the gold reward's terms (:func:`gold_components`); the defaults are the book's.

    Attributes:
        coverage: reward for covering *all* document topics (the oracle's coverage term).
        coverage_decay: diminishing returns: the i-th covered topic is worth ``decay**(i-1)``
            times the first (0 < decay < 1).
        order: bonus for listing all topics in document order (scaled by the fraction of
            adjacent topic pairs in the right order).
        filler: penalty per filler (non-topic, incl. unknown) word.
        repetition: penalty per repeated word (words minus distinct words).
        hallucination: penalty per distinct topic word absent from the document.
        truncation: penalty when the summary used the whole budget (no EOS: cut off).
        length: per-word weight of the length preference; its sign comes from ``length_bias``.
    """

    coverage: float = 3.0
    coverage_decay: float = 0.7
    order: float = 0.5
    filler: float = 0.3
    repetition: float = 0.5
    hallucination: float = 0.5
    truncation: float = 1.0
    length: float = 0.15


def document_topics(prompt: str) -> list[str]:
    """The distinct topic words of a prompt, in order of first appearance."""
    seen: list[str] = []
    for w in prompt.split():
        if w in _TOPIC_SET and w not in seen:
            seen.append(w)
    return seen


def gold_components(
    prompt: str,
    response: str,
    *,
    length_bias: str = "neutral",
    max_words: int = 16,
    weights: GoldWeights = GoldWeights(),
) -> dict[str, float]:
    """The gold reward of one (prompt, response) pair, term by term (notebook 04, "Gold reward").

    With ``T`` the document's ``n`` topics, ``w_1..w_L`` the response words and ``c`` the number of
    distinct topics of ``T`` the response mentions:

    * coverage = ``weights.coverage * (1 - d**c) / (1 - d**n)`` with ``d = coverage_decay``;
    * order = ``weights.order * (#adjacent covered topics in document order) / (n - 1)``;
    * filler = ``-weights.filler * #{w_i not a topic word}``;
    * repetition = ``-weights.repetition * (L - #distinct words)``;
    * hallucination = ``-weights.hallucination * #{distinct topic words not in T}``;
    * truncation = ``-weights.truncation`` if ``L >= max_words`` (cut off, no EOS) else 0;
    * length = ``s * weights.length * L`` with ``s`` = -1 / 0 / +1 for short / neutral / long.

    Returns a dict with those seven keys plus ``"total"`` (their sum), in reward units.
    """
    check_choice("length_bias", length_bias, LENGTH_BIASES)
    topics = document_topics(prompt)
    words = response.split()
    n, length = len(topics), len(words)
    mentioned = [w for w in dict.fromkeys(words) if w in _TOPIC_SET]  # distinct, first-seen order
    covered = [w for w in mentioned if w in topics]
    d = weights.coverage_decay
    coverage = weights.coverage * (1 - d ** len(covered)) / (1 - d**n) if n else 0.0
    ranks = [topics.index(w) for w in covered]
    in_order = sum(a < b for a, b in zip(ranks, ranks[1:]))
    order = weights.order * in_order / (n - 1) if n > 1 else 0.0
    sign = {"short": -1.0, "neutral": 0.0, "long": 1.0}[length_bias]
    parts = {
        "coverage": coverage,
        "order": order,
        "filler": -weights.filler * sum(w not in _TOPIC_SET for w in words),
        "repetition": -weights.repetition * (length - len(set(words))),
        "hallucination": -weights.hallucination * (len(mentioned) - len(covered)),
        "truncation": -weights.truncation * float(length >= max_words),
        "length": sign * weights.length * length,
    }
    parts = {k: v + 0.0 for k, v in parts.items()}  # + 0.0 turns -0.0 into 0.0 for display
    parts["total"] = sum(parts.values())
    return parts


@dataclass(frozen=True)
class Task:
    """Documents, summarisers and the gold reward of the toy task (fields are the knobs).

    Attributes:
        doc_words: (min, max) number of words of a document, separator excluded.
        topics_per_doc: (min, max) number of distinct topic words in a document.
        extra_mentions: (min, max) number of repeated topic mentions in a document.
        max_words: the generation budget in words (= tokens); a summary this long is "cut off".
        length_bias: gold preference for length, one of ``LENGTH_BIASES``.
        ref_drop: reference summariser: probability of leaving out each topic.
        ref_filler: ... probability of a filler word after each kept topic.
        ref_swap: ... probability of swapping two adjacent topics.
        ref_hallucinate: ... probability of adding a topic that is not in the document.
        ref_repeat: ... probability of repeating one topic.
        weights: the gold reward's weights.
    """

    doc_words: tuple[int, int] = (16, 20)
    topics_per_doc: tuple[int, int] = (3, 5)
    extra_mentions: tuple[int, int] = (1, 3)
    max_words: int = 16
    length_bias: str = "neutral"
    ref_drop: float = 0.25
    ref_filler: float = 0.2
    ref_swap: float = 0.15
    ref_hallucinate: float = 0.15
    ref_repeat: float = 0.1
    weights: GoldWeights = GoldWeights()

    def __post_init__(self) -> None:
        check_choice("length_bias", self.length_bias, LENGTH_BIASES)
        check_range("max_words", self.max_words, 2, 64)
        for name in ("ref_drop", "ref_filler", "ref_swap", "ref_hallucinate", "ref_repeat"):
            check_range(name, getattr(self, name), 0.0, 1.0)

    @property
    def vocabulary(self) -> list[str]:
        """Every non-special word: the separator, the topics, the fillers."""
        return [SEPARATOR, *TOPICS, *FILLERS]

    def document(self, rng: random.Random) -> str:
        """One random prompt: topic words (first mentions in order, extra repeats) in filler."""
        topics = rng.sample(TOPICS, rng.randint(*self.topics_per_doc))
        mentions = list(topics)
        for _ in range(rng.randint(*self.extra_mentions)):  # repeat a topic after its first mention
            t = rng.choice(topics)
            mentions.insert(rng.randint(mentions.index(t) + 1, len(mentions)), t)
        n_words = max(rng.randint(*self.doc_words), len(mentions))
        slots = sorted(rng.sample(range(n_words), len(mentions)))
        words = [rng.choice(FILLERS) for _ in range(n_words)]
        for slot, t in zip(slots, mentions):
            words[slot] = t
        return " ".join([*words, SEPARATOR])

    def documents(self, n: int, rng: random.Random, exclude: set[str] = frozenset()) -> list[str]:
        """``n`` distinct prompts not in ``exclude``."""
        out: dict[str, None] = {}
        while len(out) < n:
            doc = self.document(rng)
            if doc not in exclude:
                out[doc] = None
        return list(out)

    def oracle(self, prompt: str) -> str:
        """The ideal summary: the document's topics once each, in order."""
        return " ".join(document_topics(prompt))

    def reference(self, prompt: str, seed: int = 0) -> str:
        """A noisy human-like summary, a pure function of (prompt, seed).

        Starting from the oracle: drop topics, swap a pair, repeat one, hallucinate one, add
        filler, each with the probabilities in the fields. Never empty, never over budget.
        """
        rng = random.Random(zlib.crc32(prompt.encode()) ^ (seed * 2654435761 % 2**32))
        topics = document_topics(prompt)
        words = [t for t in topics if rng.random() >= self.ref_drop] or topics[:1]
        if len(words) > 1 and rng.random() < self.ref_swap:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        if rng.random() < self.ref_repeat:
            words.insert(rng.randint(1, len(words)), rng.choice(words))
        if rng.random() < self.ref_hallucinate:
            words.insert(
                rng.randint(0, len(words)), rng.choice([t for t in TOPICS if t not in topics])
            )
        out: list[str] = []
        for w in words:
            out.append(w)
            if rng.random() < self.ref_filler:
                out.append(rng.choice(FILLERS))
        return " ".join(out[: self.max_words - 1])

    def gold_components(self, prompt: str, response: str) -> dict[str, float]:
        """:func:`gold_components` with this task's ``length_bias``, ``max_words`` and weights."""
        return gold_components(
            prompt,
            response,
            length_bias=self.length_bias,
            max_words=self.max_words,
            weights=self.weights,
        )

    def gold_rewards(self, prompts: list[str], responses: list[str]) -> list[float]:
        """The gold reward (``"total"``) of each (prompt, response) pair."""
        return [self.gold_components(p, r)["total"] for p, r in zip(prompts, responses)]
