"""The paper's claims, each assessed from the book's cached runs (chapter 09's table).

Every function takes runs (``rlhf_nb.runs.seeds.SeedRuns``; :func:`simpo_is_maxent`, the one
exact claim, takes an exact check instead) and returns a :class:`Claim`: the claim as the paper
states it, where the book tests it, the evidence as a sentence built from the numbers, the
number of seeds, and a status from :data:`STATUSES` decided by a stated rule that must hold at
*every* seed (the book's seed rule). The thresholds are written in each function
and sit far outside the seed spread measured in chapters 05–07; a claim the runs do not support
gets "not reproduced at toy scale", never silence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rlhf_nb.stats import Stat

STATUSES = ("confirmed", "confirmed with caveats", "not reproduced at toy scale", "contested")


@dataclass(frozen=True)
class Claim:
    """One row of the claims table. ``status`` is one of :data:`STATUSES`."""

    claim: str
    where: str
    evidence: str
    seeds: int
    status: str

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def table(claims: list[Claim]) -> pd.DataFrame:
    """The claims as a DataFrame, one row each, in the order given."""
    return pd.DataFrame([c.__dict__ for c in claims])


def _rng(values, digits: int = 2) -> str:
    v = np.asarray(values, dtype=float)
    f = f"{{:.{digits}f}}"
    return f"{f.format(v.mean())} (seeds {f.format(v.min())} to {f.format(v.max())})"


def maxent_overoptimises(maxent, *, min_fall: float = 1.0) -> Claim:
    """MaxEnt RL online over-optimises: gold peaks, then falls. Rule: the gold falls more than
    ``min_fall`` below its smoothed peak at every seed."""
    s = maxent.summaries()
    ok = bool((s["gold_fall"] > min_fall).all())
    return Claim(
        "Online MaxEnt RLHF over-optimises (gold peaks, then collapses)", "ch. 05, 07",
        f"{maxent.config.label()}: gold falls {_rng(s['gold_fall'])} from its peak "
        f"(at step {_rng(s['peak_step'], 0)})", maxent.n,
        "confirmed" if ok else "not reproduced at toy scale",
    )  # fmt: skip


def kl_unstable(maxent, anchored, *, cap: int, min_ratio: float = 5.0,
                cap_exponent: Stat | None = None) -> Claim:  # fmt: skip
    """MaxEnt's KL to SFT grows without bound, unlike a KL-anchored run. Rule: final KL above
    ``min_ratio`` × the anchored run's at every seed; a caveat when the runs end at the length
    cap (mean final length ≥ 0.95·cap), where the KL cannot keep growing. With
    ``cap_exponent`` (b of final KL ∝ cap^b over chapter 05's cap sweep, one value per seed,
    :func:`rlhf_nb.chapters.ch05.cap_exponents`) the evidence says whether the plateau moves
    with the budget: b > 0.5 at every seed means the KL grows as far as the cap lets it."""
    km, ka = maxent.final("kl_k1"), anchored.final("kl_k1")
    ok = all(m > min_ratio * a for m, a in zip(km.values, ka.values))
    length = maxent.final("length")
    capped = length.mean >= 0.95 * cap
    ev = (f"final KL {_rng(km.values)} nats vs {_rng(ka.values)} for {anchored.config.label()}; "
          f"final length {length.mean:.1f} of a {cap}-token cap")  # fmt: skip
    if capped:
        ev += ": the KL stops growing because the responses stop growing"
    if cap_exponent is not None:
        grows = cap_exponent.min > 0.5
        reading = (
            ": the plateau is the budget, the KL grows with whatever room it is given"
            if grows
            else ": the plateau does not move with the budget at every seed"
        )
        ev += (f"; over the cap sweep its final KL scales as cap^b, b = "
               f"{_rng(cap_exponent.values)}{reading}")  # fmt: skip
    status = ("confirmed with caveats" if capped else "confirmed") if ok else "contested"
    return Claim("KL to the reference is unstable (keeps growing) under MaxEnt", "ch. 05",
                 ev, maxent.n, status)  # fmt: skip


def maxent_fails_on_truth(gold_maxent, gold_none, proxy_maxent, *, cap: int) -> Claim:
    """The book's test of whether MaxEnt's online failure needs a misspecified reward (chapter
    07, §5): the headline MaxEnt run trained on the gold reward itself. Rule: "confirmed" that
    it fails without Goodhart when, at every seed, its final gold ends below the SFT start and
    its length at ≥ 0.9·cap with EOS rate < 0.1 (the entropy attractor); "contested" when at
    every seed it instead ends above its start; else "not reproduced at toy scale"."""
    s, n = gold_maxent.summaries(), gold_none.summaries()
    gain = s["gold_final"] - s["gold_start"]
    collapse = bool(((s["length_final"] >= 0.9 * cap) & (s["eos_final"] < 0.1)).all())
    loses = bool((gain < 0).all())
    pg = proxy_maxent.summaries()
    ev = (f"on the gold reward, {gold_maxent.config.label()}: gold gain {_rng(gain)}, final "
          f"length {_rng(s['length_final'], 1)} of a {cap}-token cap, EOS {_rng(s['eos_final'])}; "
          f"on the proxy: gain {_rng(pg['gold_final'] - pg['gold_start'])}; plain RLOO on the "
          f"gold reward: gain {_rng(n['gold_final'] - n['gold_start'])}")  # fmt: skip
    status = ("confirmed" if loses and collapse else
              "contested" if bool((gain > 0).all()) else "not reproduced at toy scale")  # fmt: skip
    return Claim("MaxEnt's failure needs no misspecified reward (the objective, not Goodhart)",
                 "ch. 07 §5", ev, gold_maxent.n, status)  # fmt: skip


def across_scales(contrasts: dict, sizes: dict) -> Claim:
    """The paper's pattern "across multiple Pythia scales", on the book's scale ladder (chapter
    05, §2c). ``contrasts``: :func:`rlhf_nb.chapters.ch05.ladder_contrasts` (per preset, the
    failed statements of the central contrast at the chapter's thresholds, and the MaxEnt /
    anchored final-KL ratio); ``sizes``: preset -> policy parameters. Rule: "confirmed" when the
    central contrast holds at every seed of every rung; "not reproduced at toy scale" when it
    fails at some rung (the evidence names where)."""
    parts, failed = [], []
    for name, con in contrasts.items():
        r = con["kl_ratio"]
        parts.append(f"{sizes[name] / 1e6:.2f}M: KL ratio ×{r.mean:.1f} (seeds {r.min:.1f} to "
                     f"{r.max:.1f})")  # fmt: skip
        failed += [f"{name} {f}" for f in con["failed"]]
    ev = ("central contrast (MaxEnt vs the strongest β) at " + "; ".join(parts) + ". "
          + ("Every statement held at every rung and seed." if not failed
             else f"Failed: {'; '.join(failed)}."))  # fmt: skip
    n = min(con["kl_ratio"].n for con in contrasts.values())
    return Claim("The pattern holds across model scales (the paper: several Pythia sizes)",
                 "ch. 05 §2c", ev, n,
                 "confirmed" if not failed else "not reproduced at toy scale")  # fmt: skip


def kl_on_truth(gold_kl, gold_none) -> Claim:
    """Current practice's premise: with a verifiable reward the KL anchor costs reward (TRL's
    GRPO ``beta=0``). Rule, on the gold reward: "confirmed" when the 95 % bootstrap CI of final
    gold, KL-anchored minus unregularised, lies below 0; "contested" when it lies above 0; else
    "not reproduced at toy scale" (within seed noise)."""
    from rlhf_nb.stats import differ

    d = differ(gold_kl.final("gold"), gold_none.final("gold"))
    status = "confirmed" if d.hi < 0 else "contested" if d.lo > 0 else "not reproduced at toy scale"
    return Claim("With a verifiable reward, a KL anchor costs reward", "ch. 07 §5",
                 f"on the gold reward, final gold of {gold_kl.config.label()} minus no "
                 f"regulariser: {d}", min(gold_kl.n, gold_none.n), status)  # fmt: skip


def even_at_low_lr(fast, slow, *, min_fall: float = 1.0) -> Claim:
    """A lower learning rate delays the collapse but does not prevent it. Rule: at the lower
    rate the gold still falls more than ``min_fall`` at every seed, and peaks later than at the
    higher rate at every seed."""
    f, s = fast.summaries(), slow.summaries()
    falls = bool((s["gold_fall"] > min_fall).all())
    later = bool((s["peak_step"].to_numpy() > f["peak_step"].to_numpy()).all())
    ev = (
        f"{slow.config.label()}: gold falls {_rng(s['gold_fall'])}, peak at step "
        f"{_rng(s['peak_step'], 0)} vs {_rng(f['peak_step'], 0)} at lr={fast.config.lr:g}"
    )
    if slow.config.regularizers != ("entropy",) or slow.config.alpha == 0:
        ev += " (plain RLOO, α = 0: the multi-seed low-rate runs have no entropy bonus)"
    status = "confirmed with caveats" if falls and later else "not reproduced at toy scale"
    if falls and later and slow.config.alpha > 0:
        status = "confirmed"
    return Claim("The failure persists at low learning rates", "ch. 05", ev, slow.n, status)


def entropy_tracks_hacking(rho_bonus: float, entropy_drop_no_bonus, *, min_rho=0.5) -> Claim:
    """Entropy correlates with reward hacking. Rule: Spearman ρ between the entropy term the
    MaxEnt reward pays and the gold drop exceeds ``min_rho``; a caveat when, without a bonus
    (α = 0), the per-token entropy *falls* at every seed while the run hacks the proxy. With a
    weak correlation, that counter-example makes the claim "contested"."""
    drop = np.asarray(entropy_drop_no_bonus, dtype=float)
    falls = bool((drop > 0).all())
    ev = (f"ρ(α·(−log π), gold drop) = {rho_bonus:.2f} over the MaxEnt runs' steps; with α = 0 the "
          f"per-token entropy falls by {_rng(drop)} nats/token while gold collapses")  # fmt: skip
    if rho_bonus <= min_rho:  # weak correlation; hacking with *falling* entropy contradicts it
        status = "contested" if falls else "not reproduced at toy scale"
    else:
        status = "confirmed with caveats" if falls else "confirmed"
    return Claim("Entropy correlates with reward hacking", "ch. 05, 07", ev, len(drop), status)


def kl_anchor_stable(strong, weak, *, max_fall: float = 0.75) -> Claim:
    """KL-regularised RLHF is stable. Rule: the strong anchor's gold ends within ``max_fall`` of
    its peak at every seed; a caveat when the weak anchor's KL is still rising at the end
    (positive slope over the last quarter) at every seed."""
    s, w = strong.summaries(), weak.summaries()
    ok = bool((s["gold_fall"] < max_fall).all())
    rising = [r.slope("kl_k1") for r in weak.runs]
    still = all(x > 0 for x in rising)
    ev = (f"{strong.config.label()}: gold ends {_rng(s['gold_fall'])} below its peak; "
          f"{weak.config.label()}: falls {_rng(w['gold_fall'])}, KL slope at the end "
          f"{_rng(rising)} nats per 100 steps")  # fmt: skip
    status = ("confirmed with caveats" if still else "confirmed") if ok else "contested"
    return Claim("KL-constrained online RLHF is stable", "ch. 05, 07", ev, strong.n, status)


def simpo_offline_stable(simpo, *, max_kl: float = 3.0) -> Claim:
    """SimPO is stable offline. Rule: the final KL stays below ``max_kl`` nats at every seed; a
    caveat when the gold gain's 95 % band includes 0 (stable, but not shown to improve)."""
    kl = simpo.final("kl_k1")
    s = simpo.summaries()
    g = Stat.of(s["gold_final"] - s["gold_start"])
    ok = bool(max(kl.values) < max_kl)
    ev = f"{simpo.config.label()}: final KL {_rng(kl.values)} nats; gold gain {g}"
    improves = g.lo > 0
    status = ("confirmed" if improves else "confirmed with caveats") if ok else "contested"
    return Claim("SimPO is stable offline", "ch. 06, 09", ev, simpo.n, status)


def simpo_is_maxent(check) -> Claim:
    """SimPO is MaxEnt RL with a length-normalised temperature. ``check``: a
    :class:`rlhf_nb.theory.lengthnorm.SimpoMaxentCheck` on an exact space with responses of
    different lengths (chapter 02, sections 6-8). Rule: "confirmed with caveats" when SimPO's loss
    (γ = 0) is the Bradley–Terry likelihood of J′(π) = E_π[r + (β/|y|)(1 − log π)] to float64
    (``jprime_gap < 1e-9``) while neither the temperature alone nor one constant α reproduces it
    (both gaps > 1e-6): exact, but only with the shortness bonus β/|y| the paper's derivation
    drops, and with γ underived. "contested" otherwise. Exact (no seeds): ``seeds`` is 0."""
    exact = check.jprime_gap < 1e-9
    needs_bonus = check.no_bonus_gap > 1e-6 and check.constant_alpha_gap > 1e-6
    ev = (f"SimPO (γ = 0) is the BT likelihood of E_π[r + (β/|y|)(1 − log π)] on {check.pairs} "
          f"unequal-length pairs (largest loss gap {check.jprime_gap:.1e}, float64); without the "
          f"shortness bonus β/|y| it is off by up to {check.no_bonus_gap:.2f} nats, with one "
          f"constant α by {check.constant_alpha_gap:.2f}")  # fmt: skip
    if check.margin_mass < 1.0 - 1e-12:  # γ > 0 (at γ = 0 it is 1 to rounding)
        ev += (f"; the margin γ is not derived: the two orders of a pair sum to at most "
               f"{check.margin_mass:.3f} < 1")  # fmt: skip
    status = "confirmed with caveats" if exact and needs_bonus else "contested"
    return Claim("SimPO is MaxEnt RL with a length-normalised temperature", "ch. 02", ev, 0,
                 status)  # fmt: skip
