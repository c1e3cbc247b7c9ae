"""Chapter 05 (online MaxEnt vs KL): its parameters, its runs, and the central contrast its
checkpoints (and CI) assert.

:class:`Params` is the notebook's parameters cell. :func:`configs` turns it into the chapter's
runs — the α/β grid (:func:`grid`), the five headline settings run at several seeds
(:func:`headline`) and the TRL cross-check — and :func:`get` trains or loads all of them in one
process pool (:func:`rlhf_nb.runs.get_runs`). Chapters 06, 07 and 09 get chapter 05's runs from
:func:`configs` too, so they analyse the same runs. :func:`central_contrast` checks the paper's
contrast seed by seed; :func:`get_ladder` reruns it on testbeds of growing model size (section
2c, :func:`ladder_table`); :func:`entropy_correlations` is section 4's measurement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from rlhf_nb import stats
from rlhf_nb.chapters.params import ChapterParams, check_floats
from rlhf_nb.core import check_int, check_range, check_type
from rlhf_nb.methods.grpo import GRPOCheckConfig
from rlhf_nb.methods.online_config import OnlineConfig
from rlhf_nb.stats import WINDOW, Stat, markdown_table

LR_HI, LR_LO = 3e-4, 1e-4  # "aggressive" and "conservative" for the tiny policy
STEPS_HI, STEPS_LO = 200, 600  # the conservative rate needs a 3x longer run to collapse
ALPHAS = (0.0, 0.02, 0.05, 0.2)  # sequence-level entropy bonus, 0 = no regulariser at all
# the conservative rate runs 3x longer, so it gets the two α the chapter's claims need: plain
# RLOO (α = 0) and the headline MaxEnt α ("even at low learning rates")
ALPHAS_LO = (0.0, 0.05)
BETAS = (0.05, 0.2)  # KL-regularised baselines (k1 in the reward)
TOKEN_ALPHA = 0.05  # the per-token entropy loss term (TRL's entropy_coef) at the higher rate
MAXENT_ALPHA = 0.05  # the headline MaxEnt run: a sequence-level entropy bonus, no anchor
SMOKE_RUN = dict(steps=8, prompts_per_step=8, eval_interval=4, n_eval_prompts=16)
# generation budgets (max new tokens) of the length-cap sweep; the testbed's own budget (16 for
# the tiny preset) is the headline runs themselves. At most 40: a prompt of up to 21 tokens, the
# response and the RM's EOS must fit the models' 64 positions.
CAPS = (8, 16, 32)
CAP_SETTINGS = ("maxent", "kl_strong")  # the headline settings the cap sweep reruns
# the scale ladder (section 2c): testbed presets of growing width (rlhf_nb.testbed.PRESETS) up to
# the chapter's own; "small" (4x tiny's parameters) is one more rung where time allows (its step
# costs ~8-10x tiny's on 2 cores). SMOKE runs the smoke preset and its twice-as-wide rung instead
SCALES = ("micro", "mini", "tiny")
SMOKE_SCALES = ("smoke", "smoke-wide")
LADDER_SETTINGS = ("rloo", "maxent", "kl_strong")  # the central contrast, rerun at every size


@dataclass(frozen=True)
class Params(ChapterParams):
    """Chapter 05's parameters cell (notebook names in capitals; :class:`ChapterParams` has
    SMOKE, SEED, DEVICE, WORKERS, N_SEEDS). SMOKE keeps the first and last value of each list,
    with 8-step runs.

    Attributes:
        alphas: ALPHAS — entropy temperatures α at LR_HI; must contain 0 (plain RLOO).
        alphas_lo: ALPHAS_LO — α at LR_LO (longer runs); must contain 0.
        betas: BETAS — KL coefficients β > 0 of the anchored baseline, at LR_HI.
        maxent_alpha: MAXENT_ALPHA — the headline MaxEnt α, one of ALPHAS (> 0).
        lr_hi, lr_lo: LR_HI, LR_LO — the "aggressive" and the "conservative" learning rate.
        steps_hi, steps_lo: STEPS_HI, STEPS_LO — run lengths at LR_HI and LR_LO.
        caps: CAPS — generation budgets in tokens (each in [2, 40]) at which the headline MaxEnt
            α and the strongest β rerun at every run seed (:func:`cap_configs`; SMOKE keeps the
            smallest and the largest).
        scales: SCALES — the scale ladder: testbed presets (names in
            ``rlhf_nb.testbed.PRESETS``, at least two, the same generation budget as the
            chapter's testbed) on which α = 0, the headline MaxEnt α and the strongest β rerun
            at every run seed (:func:`get_ladder`; SMOKE runs :data:`SMOKE_SCALES`).
    """

    alphas: tuple[float, ...] = ALPHAS
    alphas_lo: tuple[float, ...] = ALPHAS_LO
    betas: tuple[float, ...] = BETAS
    maxent_alpha: float = MAXENT_ALPHA
    lr_hi: float = LR_HI
    lr_lo: float = LR_LO
    steps_hi: int = STEPS_HI
    steps_lo: int = STEPS_LO
    caps: tuple[int, ...] = CAPS
    scales: tuple[str, ...] = SCALES

    def __post_init__(self):
        super().__post_init__()
        headline(grid(self), self.maxent_alpha, smoke=self.smoke)  # validates every field
        check_type("CAPS", self.caps, (list, tuple))
        if not self.caps:
            raise ValueError("CAPS must be a non-empty list of token budgets, got []")
        for c in self.caps:
            check_int("CAPS", c, 2, 40)
        check_scales(self.scales)


def check_scales(scales) -> tuple[str, ...]:
    """SCALES: at least two distinct preset names of ``rlhf_nb.testbed.PRESETS``, all with the
    tiny preset's generation budget (the same task at every size); ``ValueError`` naming them."""
    from rlhf_nb.testbed import PRESETS

    check_type("SCALES", scales, (list, tuple))
    if len(scales) < 2 or len(set(scales)) != len(scales):
        raise ValueError(f"SCALES must be at least two distinct preset names, got {scales!r}")
    for name in scales:
        if name not in PRESETS:
            raise ValueError(f"SCALES: {name!r} is not a preset; valid: {sorted(PRESETS)}")
        if PRESETS[name].max_new_tokens != PRESETS["tiny"].max_new_tokens:
            raise ValueError(f"SCALES: {name!r} has another generation budget than 'tiny'")
    return tuple(scales)


def configs(p: Params) -> dict:
    """Every run of chapter 05: ``{"grid": grid(p), "headline": headline(...) (run at
    ``p.run_seeds``), "grpo": [the two TRL cross-check runs of section 5]}``."""
    groups = grid(p)
    grpo_steps, grpo_prompts = (4, 4) if p.smoke else (p.steps_hi, 32)
    grpo = [GRPOCheckConfig(beta=b, entropy_coef=e, lr=p.lr_hi, steps=grpo_steps,
                            prompts_per_step=grpo_prompts, seed=p.seed)
            for b, e in ((0.0, 0.05), (0.05, 0.0))]  # fmt: skip
    heads = headline(groups, p.maxent_alpha, smoke=p.smoke)
    return {"grid": groups, "headline": heads, "grpo": grpo,
            "caps": cap_configs(heads, p.caps, budget(p), smoke=p.smoke)}  # fmt: skip


def budget(p: Params) -> int:
    """The generation budget of the chapter's testbed preset (``max_new_tokens``, 16)."""
    from rlhf_nb.testbed import PRESETS

    return PRESETS[p.preset].max_new_tokens


def cap_configs(heads: dict, caps, own: int, *, smoke: bool = False) -> dict[int, dict]:
    """The length-cap sweep: ``{cap: {setting: config}}`` for the settings of
    :data:`CAP_SETTINGS`, each the headline config with ``max_new_tokens=cap``; at the
    testbed's ``own`` budget it is the headline config itself (one run, not two). SMOKE keeps the
    smallest and largest cap."""
    caps = sorted({min(caps), max(caps)} if smoke else set(caps))
    return {c: {k: heads[k] if c == own else replace(heads[k], max_new_tokens=c)
                for k in CAP_SETTINGS} for c in caps}  # fmt: skip


def get(p: Params, *, cache_dir=None, verbose: bool = True) -> dict:
    """Chapter 05's runs in one process pool (cached ones load): ``{"grid": {group: [Run]},
    "seeded": {headline key: SeedRuns}, "grpo": [Run], "caps": {cap: {setting: SeedRuns}}}``."""
    from rlhf_nb.runs import SeedRuns, get_runs, with_seeds

    c = configs(p)
    seeds = p.run_seeds
    caps = {f"{k}@{cap}": cfg for cap, group in c["caps"].items() for k, cfg in group.items()}
    out = get_runs({"grid": c["grid"], "grpo": c["grpo"],
                    "seeded": {k: with_seeds(v, seeds) for k, v in c["headline"].items()},
                    "caps": {k: with_seeds(v, seeds) for k, v in caps.items()}},
                   **p.pool(cache_dir), verbose=verbose)  # fmt: skip
    out["seeded"] = {k: SeedRuns(c["headline"][k], out["seeded"][k], tuple(seeds))
                     for k in c["headline"]}  # fmt: skip
    out["caps"] = {
        cap: {k: SeedRuns(cfg, out["caps"][f"{k}@{cap}"], tuple(seeds)) for k, cfg in g.items()}
        for cap, g in c["caps"].items()
    }
    return out


def grid(
    p: Params | None = None,
    *,
    alphas: Sequence[float] = ALPHAS,
    alphas_lo: Sequence[float] = ALPHAS_LO,
    betas: Sequence[float] = BETAS,
    lr_hi: float = LR_HI,
    lr_lo: float = LR_LO,
    steps_hi: int = STEPS_HI,
    steps_lo: int = STEPS_LO,
    token_alpha: float = TOKEN_ALPHA,
    seed: int = 0,
    smoke: bool = False,
) -> dict[str, list[OnlineConfig]]:
    """Chapter 05's runs: ``{"alpha_hi": [α sweep at lr_hi], "alpha_lo": [α sweep at lr_lo],
    "kl": [β sweep at lr_hi], "token": [per-token entropy term at lr_hi]}``, one seed each.

    Every list and rate is checked first (``ValueError`` naming the parameter): α ≥ 0 and 0 in
    both α lists (plain RLOO, the baseline every claim compares with), β > 0, rates in (0, 1),
    run lengths ≥ 1. SMOKE: runs of 8 steps x 8 prompts (:data:`SMOKE_RUN`) and at most two
    values per list (its first and last), so the notebook runs in seconds. With ``p`` (a
    :class:`Params`) every other argument comes from it.
    """
    if p is not None:
        alphas, alphas_lo, betas = p.alphas, p.alphas_lo, p.betas
        lr_hi, lr_lo, steps_hi, steps_lo = p.lr_hi, p.lr_lo, p.steps_hi, p.steps_lo
        seed, smoke = p.seed, p.smoke
    alphas, alphas_lo = (
        check_floats("ALPHAS", alphas, 0.0),
        check_floats("ALPHAS_LO", alphas_lo, 0.0),
    )
    betas = check_floats("BETAS", betas, 0.0, positive=True)
    for name, values in (("ALPHAS", alphas), ("ALPHAS_LO", alphas_lo)):
        if 0.0 not in values:
            raise ValueError(f"{name} must contain 0.0 (plain RLOO, the baseline), got {values}")
    for name, lr in (("LR_HI", lr_hi), ("LR_LO", lr_lo)):
        check_range(name, lr, 0.0, 1.0, low_inclusive=False)
    check_int("STEPS_HI", steps_hi, 1)
    check_int("STEPS_LO", steps_lo, 1)
    check_range("TOKEN_ALPHA", token_alpha, 0.0, None, low_inclusive=False)
    if smoke:
        alphas, alphas_lo, betas = (sorted({v[0], v[-1]}) for v in (alphas, alphas_lo, betas))
        hi = lo = dict(SMOKE_RUN, seed=seed)
    else:
        hi, lo = dict(steps=steps_hi, seed=seed), dict(steps=steps_lo, seed=seed)
    return {
        "alpha_hi": [OnlineConfig(regularizer="entropy", alpha=a, lr=lr_hi, **hi) for a in alphas],
        "alpha_lo": [
            OnlineConfig(regularizer="entropy", alpha=a, lr=lr_lo, **lo) for a in alphas_lo
        ],
        "kl": [OnlineConfig(regularizer="kl", beta=b, lr=lr_hi, **hi) for b in betas],
        "token": [OnlineConfig(regularizer="entropy_token", alpha=token_alpha, lr=lr_hi, **hi)],
    }


def headline(
    groups: dict[str, list[OnlineConfig]], maxent_alpha: float = MAXENT_ALPHA, smoke: bool = False
) -> dict[str, OnlineConfig]:
    """The five settings chapter 05 runs at several seeds (:func:`get`),
    each a run of :func:`grid` (so its first seed is the grid's own run, trained once):

    ``"rloo"`` α = 0 (plain RLOO on the proxy) and ``"maxent"`` α = ``maxent_alpha`` at the
    higher rate; ``"kl_weak"`` / ``"kl_strong"`` the smallest and largest β; ``"rloo_slow"``
    α = 0 at the lower rate. ``maxent_alpha`` must be one of the grid's α > 0 (``ValueError``
    otherwise); in SMOKE, whose grid keeps only the first and last α, the largest α stands in.
    """
    hi, lo, kl = groups["alpha_hi"], groups["alpha_lo"], groups["kl"]
    check_range("MAXENT_ALPHA", maxent_alpha, 0.0, None, low_inclusive=False)
    maxent = [c for c in hi if c.alpha == maxent_alpha]
    if not maxent and not smoke:
        raise ValueError(
            f"MAXENT_ALPHA must be one of ALPHAS {[c.alpha for c in hi]}, got {maxent_alpha}"
        )
    maxent = maxent or [max(hi, key=lambda c: c.alpha)]
    if maxent[0].alpha == 0:
        raise ValueError(f"ALPHAS needs an α > 0 for the MaxEnt side, got {[c.alpha for c in hi]}")
    kl = sorted(kl, key=lambda c: c.beta)
    return {
        "rloo": next(c for c in hi if c.alpha == 0),
        "maxent": maxent[0],
        "kl_weak": kl[0],
        "kl_strong": kl[-1],
        "rloo_slow": next(c for c in lo if c.alpha == 0),
    }


def central_contrast(
    maxent,
    anchored,
    *,
    window: int = WINDOW,
    min_fall: float = 2.0,
    min_kl_ratio: float = 5.0,
    max_anchored_fall: float = 0.75,
    min_gold_gap: float = 3.0,
) -> list[str]:
    """The seed-robust facts of chapter 05's central contrast, checked seed by seed; returns the
    statements that fail (an empty list: every one held for every seed).

    ``maxent`` and ``anchored`` are :class:`rlhf_nb.runs.seeds.SeedRuns` of an unanchored MaxEnt
    setting and a KL-anchored one, seeds paired by position. For every seed:

    1. the MaxEnt run's gold ends more than ``min_fall`` below its peak (it over-optimises);
    2. its final KL to SFT is more than ``min_kl_ratio`` times the anchored run's;
    3. the anchored run's gold ends less than ``max_anchored_fall`` below its peak (near its best);
    4. the anchored run's final gold is more than ``min_gold_gap`` above the MaxEnt run's.

    Gold peak and final come from the book's one summary rule (:mod:`rlhf_nb.stats`).
    Asserted by ``tests/test_science.py`` (CI), which also shows that the check fails once the
    anchor is removed (β = 0); chapter 05 prints it seed by seed (every statement held at every
    seed of testbeds 0-2; at hold-out testbed 3 one seed, whose MaxEnt run had not run to the
    cap by its last step, failed three of them: :func:`runaway`).
    """
    if maxent.n != anchored.n:
        raise ValueError(f"need the same seeds for both settings, got {maxent.n} and {anchored.n}")
    m, a = maxent.summaries(window=window), anchored.summaries(window=window)
    failed = []
    for (seed, mr), (_, ar) in zip(m.iterrows(), a.iterrows()):
        facts = {
            f"MaxEnt gold falls > {min_fall:g} from its peak ({mr.gold_fall:.2f})":
                mr.gold_fall > min_fall,
            f"MaxEnt KL > {min_kl_ratio:g}x the anchored KL "
            f"({mr.kl_k1_final:.2f} vs {ar.kl_k1_final:.2f})":
                mr.kl_k1_final > min_kl_ratio * ar.kl_k1_final,
            f"anchored gold ends < {max_anchored_fall:g} below its peak ({ar.gold_fall:.2f})":
                ar.gold_fall < max_anchored_fall,
            f"anchored final gold > MaxEnt final gold + {min_gold_gap:g} "
            f"({ar.gold_final:.2f} vs {mr.gold_final:.2f})":
                ar.gold_final > mr.gold_final + min_gold_gap,
        }  # fmt: skip
        failed += [f"seed {seed}: {k}" for k, ok in facts.items() if not ok]
    return failed


RAN_LENGTH = 1.5  # tokens: a run "ran to the cap" when its final length is above cap − this
RAN_EOS = 0.2  # ... and its final EOS rate below this
COLLAPSE_DROP = 3.0  # gold units: a run that ran to the cap "collapsed" when its final gold is
# this far below its own SFT start (the first checkpoint's statement, set on testbeds 0-2)


@dataclass(frozen=True)
class Runaway:
    """How an unanchored setting's runs ended, seed by seed (:func:`runaway`).

    ``table`` (index ``seed``): ``escape_step`` (the first step whose smoothed length reached
    halfway from the run's start length to the cap; NaN: not within the run), ``length_final``
    (tokens), ``eos_final``, ``gold_start``, ``gold_final`` (reward units), ``kl_k1_final``
    (nats), ``ran`` (ran to the cap: final length > cap − :data:`RAN_LENGTH` and EOS <
    :data:`RAN_EOS`) and ``collapsed`` (ran, and final gold more than ``drop`` below its start).
    """

    label: str
    cap: int
    steps: int
    drop: float
    table: pd.DataFrame

    @property
    def n(self) -> int:
        return len(self.table)

    @property
    def n_collapsed(self) -> int:
        return int(self.table["collapsed"].sum())

    @property
    def most_collapsed(self) -> bool:
        """More than half of the seeds collapsed within the run (the chapters' checkpoint)."""
        return 2 * self.n_collapsed > self.n

    def sentence(self) -> str:
        """What the runs did, from the numbers: how many seeds ran to the cap and collapsed within
        the run, when they left the SFT length, and how each other seed ended."""
        t = self.table
        done = t[t.collapsed]
        out = (f"{self.label}: within its {self.steps} steps the responses ran to the "
               f"{self.cap}-token cap (final length > {self.cap - RAN_LENGTH:g}, EOS < "
               f"{RAN_EOS:g}) and gold ended more than {self.drop:g} below its SFT start at "
               f"{len(done)} of {self.n} seeds")  # fmt: skip
        if len(done):
            out += (
                " (left the SFT length at step "
                + ", ".join(f"{s:.0f}" for s in done.escape_step)
                + ")"
            )
        rest = []
        for seed, r in t[~t.collapsed].iterrows():
            how = ("ran to the cap without that fall" if r.ran
                   else "had not run to the cap by its last step")  # fmt: skip
            left = (f", left the SFT length at step {r.escape_step:.0f}"
                    if np.isfinite(r.escape_step) else "")  # fmt: skip
            rest.append(f"seed {seed} {how} (final length {r.length_final:.1f}, EOS "
                        f"{r.eos_final:.2f}, gold {r.gold_final:+.2f} from {r.gold_start:+.2f}, "
                        f"KL {r.kl_k1_final:.1f} nats{left})")  # fmt: skip
        return out + ("; " + "; ".join(rest) if rest else "") + "."


def escape_step(run, cap: int, *, window: int = WINDOW) -> float:
    """The step at which ``run``'s responses leave the SFT length for the cap: the first logged
    step whose smoothed length (the summary rule's window) reaches halfway from its start length
    to ``cap`` tokens; NaN when it never does within the run."""
    length = stats.smoothed(run.history, "length", window=window)
    if length.empty:
        return float("nan")
    half = (length.iloc[0] + cap) / 2
    hit = length.index[length.to_numpy() >= half]
    return float(hit[0]) if len(hit) else float("nan")


def runaway(seed_runs, cap: int, *, drop: float = COLLAPSE_DROP, window: int = WINDOW) -> Runaway:
    """Seed by seed, whether an unanchored setting (``seed_runs``, a
    :class:`rlhf_nb.runs.seeds.SeedRuns`) ran to the ``cap`` and collapsed within its run
    (:class:`Runaway`). The length runaway is a transition whose onset step moves with the seed:
    a run that has not left the SFT length by its last step has not (yet) collapsed."""
    check_int("cap", cap, 1)
    check_range("drop", drop, 0.0, None)
    s = seed_runs.summaries(window=window)
    t = pd.DataFrame({
        "escape_step": [escape_step(r, cap, window=window) for r in seed_runs.runs],
        **{c: s[c].to_numpy() for c in ("length_final", "eos_final", "gold_start", "gold_final",
                                         "kl_k1_final")},
    }, index=s.index)  # fmt: skip
    t["ran"] = (t.length_final > cap - RAN_LENGTH) & (t.eos_final < RAN_EOS)
    t["collapsed"] = t.ran & (t.gold_final < t.gold_start - drop)
    steps = max(int(r.history["step"].max()) for r in seed_runs.runs)
    return Runaway(seed_runs.label, cap, steps, drop, t)


CAP_COLUMNS = ("kl_k1_final", "length_final", "eos_final", "gold_final", "gold_peak")


def cap_table(caps: dict[int, dict]) -> pd.DataFrame:
    """The cap sweep by the book's summary rule: one row per (setting, cap) with a
    :class:`~rlhf_nb.stats.Stat` over seeds of each of :data:`CAP_COLUMNS`, of
    ``length_share`` (final length / cap) and of ``kl_per_token`` (final KL / final length,
    nats per response token). ``caps`` is :func:`get`'s ``"caps"``."""
    rows = {}
    for cap, group in caps.items():
        for k, runs in group.items():
            s = runs.summaries()
            row = {c: Stat.of(s[c]) for c in CAP_COLUMNS}
            row["length_share"] = Stat.of(s["length_final"] / cap)
            row["kl_per_token"] = Stat.of(s["kl_k1_final"] / s["length_final"])
            rows[(k, cap)] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["setting", "cap"])


def cap_exponents(caps: dict[int, dict], column: str = "kl_k1_final") -> dict[str, object]:
    """How ``column`` (a :func:`~rlhf_nb.stats.summary_table` column) scales with the cap, seed
    by seed: the least-squares slope b of log(value) on log(cap) over the caps (value ∝ cap^b;
    b ≈ 1 doubles with the cap, b ≈ 0 ignores it). Returns ``{setting: Stat of b over seeds}``;
    needs at least two caps and positive values."""
    ordered = sorted(caps)
    if len(ordered) < 2:
        raise ValueError(f"need at least two caps to fit an exponent, got {ordered}")
    x = np.log(ordered)
    out = {}
    for k in caps[ordered[0]]:
        v = np.array([caps[c][k].summaries()[column].to_numpy() for c in ordered])  # [cap, seed]
        if (v <= 0).any():
            raise ValueError(f"{k} {column}: log needs positive values, got {v.tolist()}")
        out[k] = Stat.of(np.polyfit(x, np.log(v), 1)[0])
    return out


def ladder_presets(p: Params) -> tuple[str, ...]:
    """The testbed presets of the scale ladder: ``p.scales``, or :data:`SMOKE_SCALES` in SMOKE."""
    return SMOKE_SCALES if p.smoke else p.scales


def ladder_configs(p: Params) -> dict[str, OnlineConfig]:
    """The settings the ladder reruns at every size (:data:`LADDER_SETTINGS`): the headline
    configs themselves, so on the chapter's own testbed they are the headline runs."""
    heads = headline(grid(p), p.maxent_alpha, smoke=p.smoke)
    return {k: heads[k] for k in LADDER_SETTINGS}


def get_ladder(p: Params, *, cache_dir=None, verbose: bool = True) -> dict[str, dict]:
    """The scale ladder's runs, ``{preset: {setting: SeedRuns}}``, one process pool per rung
    (:func:`rlhf_nb.runs.get_runs`; each rung's testbed is built or loaded at ``p.seed``)."""
    from rlhf_nb.runs import SeedRuns, get_runs, with_seeds

    cfgs = ladder_configs(p)
    out = {}
    for name in ladder_presets(p):
        if verbose:
            print(f"scale ladder, testbed {name!r}:", flush=True)
        runs = get_runs({k: with_seeds(c, p.run_seeds) for k, c in cfgs.items()},
                        preset=name, testbed_seed=p.seed, workers=p.workers,
                        cache_dir=cache_dir, verbose=verbose)  # fmt: skip
        out[name] = {k: SeedRuns(cfgs[k], runs[k], tuple(p.run_seeds)) for k in cfgs}
    return out


def ladder_testbeds(p: Params, *, cache_dir=None) -> pd.DataFrame:
    """One row per ladder preset: its width and depth, the parameters of the SFT policy and of
    the proxy RM (counted from the built models), and the build figures that validate a preset
    (RM held-out accuracy against the labels and against gold, proxy–gold Pearson r on held-out
    pairs, the SFT policy's gold and win rate). Builds (or loads) each testbed at ``p.seed``."""
    from rlhf_nb import testbed

    rows = {}
    for name in ladder_presets(p):
        tb = testbed.build(name, seed=p.seed, cache_dir=cache_dir)
        rows[name] = {
            "hidden_size": tb.preset.hidden_size,
            "num_layers": tb.preset.num_layers,
            "policy_params": sum(x.numel() for x in tb.sft_policy.parameters()),
            "rm_params": sum(x.numel() for x in tb.proxy_rm.parameters()),
            **{k: tb.stats[k] for k in ("rm_heldout_accuracy", "rm_heldout_gold_accuracy",
                                        "proxy_gold_pearson", "gold_sft", "sft_win_rate")},
        }  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("preset")


LADDER_COLUMNS = ("gold_final", "gold_peak", "gold_fall", "kl_k1_final", "length_final",
                  "eos_final")  # fmt: skip


def ladder_table(ladder: dict[str, dict], sizes: dict[str, int]) -> pd.DataFrame:
    """The ladder by the book's summary rule: one row per (setting, parameters) — ``sizes``
    maps each preset to its policy's parameter count (:func:`ladder_testbeds`) — with a
    :class:`~rlhf_nb.stats.Stat` over seeds of each of :data:`LADDER_COLUMNS` and of
    ``proxy_gain`` (final minus start proxy)."""
    rows = {}
    for name, group in ladder.items():
        for k, runs in group.items():
            s = runs.summaries()
            row = {c: Stat.of(s[c]) for c in LADDER_COLUMNS}
            row["proxy_gain"] = Stat.of(s["proxy_final"] - s["proxy_start"])
            rows[(k, sizes[name])] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["setting", "parameters"])


def ladder_contrasts(ladder: dict[str, dict]) -> dict[str, dict]:
    """Per rung: ``failed`` — the statements of :func:`central_contrast` (MaxEnt against the
    strongest β, at the chapter's thresholds, which were set on the tiny preset) that fail,
    ``kl_ratio`` — the final KL of the MaxEnt run over the anchored run's, seed by seed, and
    ``gold_gap`` — the anchored run's final gold minus the MaxEnt run's, seed by seed (each a
    :class:`~rlhf_nb.stats.Stat`)."""
    out = {}
    for name, g in ladder.items():
        m, a = g["maxent"].summaries(), g["kl_strong"].summaries()
        out[name] = {
            "failed": central_contrast(g["maxent"], g["kl_strong"]),
            "kl_ratio": Stat.of(m["kl_k1_final"].to_numpy() / a["kl_k1_final"].to_numpy()),
            "gold_gap": Stat.of(a["gold_final"].to_numpy() - m["gold_final"].to_numpy()),
        }
    return out


MATCHED_SETTINGS = ("rloo", "maxent", "kl_weak", "kl_strong")  # section 2a's settings


def matched_reading(seeded: dict, *, a: str = "maxent", b: str = "kl_strong") -> tuple[str, str]:
    """Section 2a, the headline settings at equal KL to SFT: ``(table, sentence)`` in markdown.

    ``table`` holds each of :data:`MATCHED_SETTINGS` (``seeded``: ``{key: SeedRuns}``) at the
    budgets every one of their runs reaches (:func:`rlhf_nb.stats.shared_budgets`): the gold gain
    where a run's KL first reaches the budget (:func:`rlhf_nb.stats.matched_kl`). ``sentence``
    gives setting ``a`` minus setting ``b`` at each budget (bootstrap CI over seeds, and whether
    it is beyond seed noise) and the same difference at the end of the runs, at their final KLs.
    """
    for k in (a, b):
        if k not in MATCHED_SETTINGS:
            raise ValueError(f"a and b must be in {MATCHED_SETTINGS}, got {k!r}")
    settings = {seeded[k].label: seeded[k] for k in MATCHED_SETTINGS}
    budgets = stats.shared_budgets(settings)
    matched = stats.matched_kl(settings, budgets)
    table = stats.markdown_table(
        {f"{k}, KL {x:g}": {"gain": row.gain} for (k, x), row in matched.iterrows()},
        {"gain": "gold gain at the budget"},
    )
    diffs = stats.matched_difference(matched, seeded[a].label, seeded[b].label)
    fa, fb = seeded[a].summaries(), seeded[b].summaries()
    final = stats.differ(fa["gold_final"].to_numpy(), fb["gold_final"].to_numpy())
    sentence = (
        f"At equal KL to SFT, {seeded[a].label} minus {seeded[b].label}, gold gain: "
        + "; ".join(f"at {x:g} nats {d.mean:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}]"
                    + (" (beyond seed noise)" if d.differs else " (within seed noise)")
                    for x, d in diffs.items())
        + f". At the end of the runs the same difference is {final.mean:+.2f} gold, at final KLs "
        f"of {fa['kl_k1_final'].mean():.1f} and {fb['kl_k1_final'].mean():.1f} nats."
    )  # fmt: skip
    return table, sentence


# headers of the sweep tables' columns (cap_table, ladder_table), in the order they are shown
SWEEP_NAMES = {"kl_k1_final": "final KL (nats)", "length_final": "final length",
               "length_share": "length / cap", "kl_per_token": "KL per token",
               "eos_final": "EOS rate", "gold_final": "gold final", "gold_peak": "gold peak",
               "gold_fall": "fall from peak", "proxy_gain": "proxy gain"}  # fmt: skip


def setting_names(headline: dict, keys) -> dict[str, str]:
    """Short names of headline settings for tables and legends: the label up to its first comma
    (e.g. ``"α=0.05 (seq)"``)."""
    return {k: headline[k].label().split(",")[0] for k in keys}


def sweep_view(table: pd.DataFrame, headline: dict, *, x_label) -> tuple[str, dict[str, str]]:
    """A sweep table indexed (setting, x) — :func:`cap_table` or :func:`ladder_table` — as the
    chapter shows it: ``(markdown, names)``, the markdown table of every column (headers from
    :data:`SWEEP_NAMES`, rows named ``"<setting>, <x_label(x)>"``) and the legend names of its
    settings and columns for :func:`rlhf_nb.viz.run_plots.summary_figure` (the chapters do not
    draw: the notebook passes them on)."""
    short = setting_names(headline, table.index.unique(0))
    columns = {c: h for c, h in SWEEP_NAMES.items() if c in table.columns}
    md = markdown_table({f"{short[k]}, {x_label(v)}": row for (k, v), row in table.iterrows()},
                        columns)  # fmt: skip
    return md, {**columns, **short}


def entropy_correlations(runs) -> dict[tuple[str, str], float]:
    """Spearman ρ over the pooled steps of ``runs`` (e.g. one seed's unanchored runs) between
    the entropy measures and the damage: ``entropy_term`` = α·(−log π(y|x)) (what the MaxEnt
    reward pays; 0 for α = 0) and ``entropy_seq`` = −log π(y|x) (the raw sequence entropy
    estimate), each against ``kl_k1`` and ``gold_drop`` (running gold peak minus gold).
    Returns ``{(x, y): ρ}`` for the four pairs."""
    from scipy.stats import spearmanr

    pooled = pd.concat([r.history.assign(run=r.label, alpha=r.config.alpha) for r in runs])
    pooled["gold_drop"] = pooled.groupby("run")["gold"].transform(lambda g: g.cummax() - g)
    pooled["entropy_term"] = pooled["alpha"] * pooled["entropy_seq"]
    return {
        (x, y): float(spearmanr(pooled[x], pooled[y]).statistic)
        for x in ("entropy_term", "entropy_seq")
        for y in ("kl_k1", "gold_drop")
    }
