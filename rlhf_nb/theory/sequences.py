"""An enumerable space of token sequences with an autoregressive policy (notebooks 02-03).

Vocabulary: tokens ``0..V-1`` with token 0 = EOS. A response is generated token by token until it
emits EOS or reaches ``max_len`` tokens (then it is truncated). So the space holds, for each
length n = 1..L, the (V-1)^(n-1) responses "n-1 content tokens + EOS", plus the (V-1)^L
truncated responses of L content tokens. The length |y| counts every generated token, EOS
included, so the token-uniform policy (all logits 0) gives U(y) = V^(-|y|) exactly.

A policy is a logits table of shape (P, V): one row per *prefix* (a state from which a token is
still drawn: a tuple of content tokens of length 0..L-1). Everything is enumerated in float64:
sequence log-probabilities, entropy, expected length, KL, and the conversion of *any*
distribution over sequences back to per-prefix logits (an autoregressive policy can represent
every distribution on the tree, so sequence-level optima are exact policies).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import log_softmax, logsumexp

from rlhf_nb.core import check_range, check_type
from rlhf_nb.theory.exact import as_probs

EOS = 0


class SequenceSpace:
    """All sequences over a vocabulary of ``vocab_size`` tokens (EOS = 0) up to ``max_len`` tokens.

    Attributes:
        sequences: list of S token tuples; ``lengths``: (S,) int, tokens incl. EOS.
        prefixes: list of P content-token tuples (the states); ``prefixes[0] == ()``.
        step_prefix, step_token: (S, L) int; the prefix index and the token drawn at step t.
        mask: (S, L) bool; True for the steps a sequence actually takes (t < |y|).
    """

    def __init__(self, vocab_size: int, max_len: int):
        check_type("vocab_size", vocab_size, int)
        check_range("vocab_size", vocab_size, 2, 12)
        check_type("max_len", max_len, int)
        check_range("max_len", max_len, 1, 8)
        if (vocab_size - 1) ** max_len > 50_000:
            raise ValueError(
                f"(vocab_size-1)**max_len must be <= 50000, got {vocab_size}, {max_len}"
            )
        self.vocab_size, self.max_len = vocab_size, max_len
        content = range(1, vocab_size)
        self.prefixes = [p for n in range(max_len) for p in itertools.product(content, repeat=n)]
        index = {p: i for i, p in enumerate(self.prefixes)}
        self.sequences = [p + (EOS,) for p in self.prefixes]
        self.sequences += [
            p + (t,) for p in self.prefixes if len(p) == max_len - 1 for t in content
        ]
        self.lengths = np.array([len(y) for y in self.sequences])
        S, L = len(self.sequences), max_len
        self.step_prefix = np.zeros((S, L), dtype=np.int64)
        self.step_token = np.zeros((S, L), dtype=np.int64)
        self.mask = np.zeros((S, L), dtype=bool)
        for s, y in enumerate(self.sequences):
            for t, tok in enumerate(y):
                self.step_prefix[s, t], self.step_token[s, t] = index[y[:t]], tok
                self.mask[s, t] = True
        # visits[s, p] = 1 when sequence s passes through prefix p (draws a token there)
        self.visits = np.zeros((S, len(self.prefixes)))
        np.add.at(self.visits, (np.nonzero(self.mask)[0], self.step_prefix[self.mask]), 1.0)

    @property
    def size(self) -> int:
        """S, the number of sequences."""
        return len(self.sequences)

    @property
    def shape(self) -> tuple[int, int]:
        """(P, V), the shape of a logits table."""
        return len(self.prefixes), self.vocab_size

    def __repr__(self) -> str:
        return f"SequenceSpace(V={self.vocab_size}, L={self.max_len}: S={self.size} sequences)"

    def check_logits(self, logits, name: str = "logits") -> np.ndarray:
        """``logits`` as a float64 (P, V) array (entries may be -inf, rows not all -inf)."""
        logits = np.asarray(logits, dtype=np.float64)
        if logits.shape != self.shape:
            raise ValueError(
                f"{name} must have shape {self.shape} (prefixes, vocab), got {logits.shape}"
            )
        if (
            np.any(np.isnan(logits))
            or np.any(logits == np.inf)
            or np.any(np.all(logits == -np.inf, 1))
        ):
            raise ValueError(f"{name} must be finite or -inf, with no all -inf row")
        return logits

    def uniform_logits(self) -> np.ndarray:
        """Logits of the token-uniform policy U(y) = V^(-|y|) (notebook 03): all zeros, (P, V)."""
        return np.zeros(self.shape)

    def random_logits(self, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
        """Gaussian logits N(0, scale^2) of shape (P, V): a random autoregressive policy."""
        return scale * rng.standard_normal(self.shape)

    def token_log_probs(self, logits) -> np.ndarray:
        """log pi(token | prefix), shape (P, V), nats per token."""
        return log_softmax(self.check_logits(logits), axis=1)

    def log_probs(self, logits) -> np.ndarray:
        """log pi(y) = sum_t log pi(y_t | y_<t), shape (S,), nats per sequence."""
        lp = self.token_log_probs(logits)[self.step_prefix, self.step_token]
        return np.where(self.mask, lp, 0.0).sum(axis=1)

    def probs(self, logits) -> np.ndarray:
        """pi(y), shape (S,), summing to 1."""
        return np.exp(self.log_probs(logits))

    def entropy(self, logits) -> float:
        """Sequence-level entropy H(pi) = -sum_y pi(y) log pi(y), nats/sequence (notebook 03)."""
        lp = self.log_probs(logits)
        p = np.exp(lp)
        return float(-np.sum(np.where(p > 0, p * lp, 0.0)))

    def reach_probs(self, logits) -> np.ndarray:
        """rho(prefix) = P(generation passes through the prefix), shape (P,); rho(()) = 1."""
        return self.probs(logits) @ self.visits

    def token_entropy(self, logits) -> float:
        """Chain rule: H(pi) = sum_prefix rho(prefix) H(pi(.|prefix)), nats (notebook 03).

        Computed over prefixes, not sequences: an independent route to :meth:`entropy`.
        """
        lp = self.token_log_probs(logits)
        h = -np.sum(np.where(lp > -np.inf, np.exp(lp) * lp, 0.0), axis=1)
        return float(self.reach_probs(logits) @ h)

    def expected_length(self, logits) -> float:
        """E_pi |y| in tokens (EOS included) (notebook 03)."""
        return float(self.probs(logits) @ self.lengths)

    def kl(self, logits_p, logits_q) -> float:
        """KL(p || q) between two autoregressive policies, nats per sequence, by enumeration."""
        lp, lq = self.log_probs(logits_p), self.log_probs(logits_q)
        p = np.exp(lp)
        nz = p > 0
        return float(np.sum(p[nz] * (lp[nz] - lq[nz])))

    def step_logits(self, logits) -> np.ndarray:
        """The logits seen at each step of each sequence, shape (S, L, V); 0 where masked."""
        out = self.check_logits(logits)[self.step_prefix]
        return np.where(self.mask[..., None], out, 0.0)

    def logits_from_probs(self, p) -> np.ndarray:
        """Per-prefix logits of the autoregressive policy whose sequence distribution is ``p``.

        logits[prefix, t] = log(mass of sequences continuing prefix with t); rows of prefixes
        with no mass are set uniform. ``probs(logits_from_probs(p)) == p`` (exact optima of
        sequence-level objectives become policies this way). p: shape (S,).
        """
        p = as_probs("p", p, size=self.size)
        mass = np.zeros(self.shape)
        np.add.at(
            mass,
            (self.step_prefix[self.mask], self.step_token[self.mask]),
            p[self.mask.nonzero()[0]],
        )
        with np.errstate(divide="ignore"):
            logits = np.log(mass)
        logits[np.all(mass == 0, axis=1)] = 0.0
        return logits

    def log_partition(self, r, alpha: float) -> float:
        """log Z = log sum_y exp(r(y)/alpha) over the space, nats (notebook 02). r: shape (S,)."""
        check_range("alpha", alpha, 0.0, None, low_inclusive=False)
        r = np.asarray(r, dtype=np.float64)
        if r.shape != (self.size,):
            raise ValueError(f"r must have shape ({self.size},), got {r.shape}")
        return float(logsumexp(r / alpha))

    def sample(self, logits, n: int, rng: np.random.Generator) -> np.ndarray:
        """n sequence indices drawn from pi, shape (n,) (exact sampling by enumeration)."""
        check_type("n", n, int)
        check_range("n", n, 1, None)
        return rng.choice(self.size, size=n, p=self.probs(logits))


def uniform_length_law(vocab_size: int, max_len: int) -> np.ndarray:
    """P(|y| = n), n = 1…L, under the uniform distribution over every response of the space of
    :class:`SequenceSpace` — the MaxEnt optimum π_α ∝ exp(r/α) as α → ∞ for any bounded r.

    Closed form, no enumeration (so it works at a real vocabulary and length cap): there are
    (V−1)^(n−1) responses of n tokens ending in EOS for n = 1…L, plus (V−1)^L truncated ones of L
    tokens (no EOS). Index n−1 holds length n; the last entry includes the truncated responses,
    and their share alone is ``truncated_share(V, L)``. Computed in log space (V = 50k, L = 64
    is fine). Returns shape (L,), float64, summing to 1.
    """
    check_type("vocab_size", vocab_size, int)
    check_range("vocab_size", vocab_size, 2, None)
    check_type("max_len", max_len, int)
    check_range("max_len", max_len, 1, None)
    log_c = np.log(vocab_size - 1)
    logs = np.array([(n - 1) * log_c for n in range(1, max_len + 1)])  # n-token, ending in EOS
    logs[-1] = np.logaddexp(logs[-1], max_len * log_c)  # + the truncated ones at length L
    return np.exp(logs - logsumexp(logs))


def truncated_share(vocab_size: int, max_len: int) -> float:
    """The fraction of all responses that reach the cap without EOS: (V−1)^L / Σ_n counts —
    the no-EOS rate of the α → ∞ MaxEnt optimum (:func:`uniform_length_law`)."""
    check_type("vocab_size", vocab_size, int)
    check_range("vocab_size", vocab_size, 2, None)
    check_type("max_len", max_len, int)
    check_range("max_len", max_len, 1, None)
    log_c = np.log(vocab_size - 1)
    logs = np.array([(n - 1) * log_c for n in range(1, max_len + 1)] + [max_len * log_c])
    return float(np.exp(logs[-1] - logsumexp(logs)))


LIMIT_BONUSES = ("sequence", "length", "token_averaged")


def large_alpha_no_eos_share(vocab_size: int, max_len: int, bonus: str) -> float:
    """The no-EOS share of the α → ∞ optimum under three entropy bonuses (chapter 03), for any
    bounded reward: where each bonus pulls when it dominates. Closed forms, no enumeration:

    * ``"sequence"``: E r + α·H(π) → the uniform law over responses, :func:`truncated_share`;
    * ``"length"``: E r + α·H(π) − α·log V·E|y| = E r − α·KL(π‖U_tok) + const → the
      token-uniform U_tok(y) = V^(−|y|): no EOS in L draws, ((V−1)/V)^L;
    * ``"token_averaged"``: E r − α·E[log π(y)/|y|] → π(y) = exp(−1 − λ|y|), λ fixed by
      normalisation (the stationarity condition of chapter 02's length-normalised optimum with
      r/α → 0): the share (V−1)^L·exp(−1 − λL).

    At V ≫ L all three sit near the cap: neither the length cost nor the token average removes
    the attractor in this limit, they only lower it (0.99, 0.83 and 0.88 at V = 84, L = 16).
    """
    from scipy.optimize import brentq

    check_type("vocab_size", vocab_size, int)
    check_range("vocab_size", vocab_size, 2, None)
    check_type("max_len", max_len, int)
    check_range("max_len", max_len, 1, None)
    if bonus not in LIMIT_BONUSES:
        raise ValueError(f"bonus must be one of {LIMIT_BONUSES}, got {bonus!r}")
    if bonus == "sequence":
        return truncated_share(vocab_size, max_len)
    if bonus == "length":
        return float(((vocab_size - 1) / vocab_size) ** max_len)
    log_c = np.log(vocab_size - 1)
    n = np.arange(1, max_len + 1)
    log_counts = np.r_[(n - 1) * log_c, max_len * log_c]  # n tokens ending in EOS, then no-EOS
    lengths = np.r_[n, max_len]

    def log_mass(lam: float) -> float:  # falls strictly in lam
        return float(logsumexp(log_counts - 1.0 - lam * lengths))

    lo, hi = -1.0, max_len * log_c + 1.0
    while log_mass(lo) < 0:
        lo *= 2.0
    lam = brentq(log_mass, lo, hi, xtol=1e-14)
    return float(np.exp(log_counts[-1] - 1.0 - lam * max_len))


def runaway_temperature(token_cost: float, vocab_size: int) -> float:
    """α* = c / log(V − 1): the temperature at which a sequence-level entropy bonus starts to buy
    length against a reward that charges c per token (chapter 03, §4; reward units per nat).

    Among responses that share a prefix, there are V − 1 times as many with one more content
    token, each paying c more, so under π ∝ exp(r/α) each extra token multiplies the mass of a
    length by (V − 1)·exp(−c/α): below α* the length law decays, at α* it is flat (up to the
    cap, which holds V times more again: truncated responses need no EOS), above α* it grows
    towards the cap. A prediction for a run with bonus α: length runs away iff α·log(V − 1)
    exceeds the reward's per-token charge c. A reward that pays for length (c <= 0) gives 0:
    every bonus runs away.
    """
    check_range("token_cost", token_cost, None, None)
    check_type("vocab_size", vocab_size, int)
    check_range("vocab_size", vocab_size, 3, None)
    return float(max(token_cost, 0.0) / np.log(vocab_size - 1))
