"""Statistics of runs, in one place: the summary rule, seed bands, differences, checkpoints.

Every table, sentence and checkpoint of the book that says "start", "peak" or "final" reads it
from :func:`summarize`, so the same runs give the same numbers everywhere (chapters 05, 06, 07,
09 and the README's results block). Lowest layer beside :mod:`rlhf_nb.core`: it needs only
numpy, pandas and scipy, and reads a run through its ``history`` (and ``label``, ``status``).

**The summary rule** (:func:`summarize`). One logged row of an online run is one batch of
samples, so a single row is noisy, and the maximum of noise is biased upward. Every summary
therefore reads a column through one smoothing window of :data:`WINDOW` optimiser steps:

* ``smoothed`` value at a row logged at step s = mean of the column's rows logged at steps
  in (s − WINDOW, s] (a trailing mean in *steps*, not rows: a run that logs every step averages
  WINDOW rows, an offline run that evaluates every 25 steps uses each evaluation as logged);
* **start** = the first logged row as logged (step 0: the SFT policy, before any update);
* **peak** = the largest smoothed value over *full* windows — rows logged at least WINDOW − 1
  steps after the first one, so that neither the single step-0 batch nor a half-empty early
  window can be the peak (all rows when the run is shorter than a window) — and
  **peak_step** = the step of the row where that window ends;
* **final** = the smoothed value at the last logged row (the mean over the run's last
  WINDOW steps).

**Seeds.** :class:`Stat` is one quantity at several seeds (mean, sd, Student-t 95 % band of the
mean, min, max); :func:`differ` a bootstrap CI of a difference of two settings' means;
:func:`margin` and :func:`holds` the checkpoint over seeds; :func:`markdown_table` the
``results`` tables ``make book`` copies into the README. Used by chapters 04–09.

**Matched KL** (:func:`at_kl`, :func:`matched_kl`). Two settings compared on final gold may
differ only in how far they moved: the matched reading takes each run's gold where its
(smoothed) KL to SFT first reaches a budget, so settings are compared at equal distance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

WINDOW = 10  # optimiser steps: the one smoothing window of every start/peak/final in the book


def smoothed(history: pd.DataFrame, column: str, *, window: int = WINDOW) -> pd.Series:
    """``column`` of ``history`` as a trailing mean over ``window`` optimiser steps, indexed by
    ``step`` (rows where the column is NaN are dropped first; the module docstring's rule).

    Args:
        history: a run's history (``step`` plus ``column``).
        column: e.g. ``"gold"`` (reward units) or ``"kl_k1"`` (nats/sequence).
        window: steps (>= 1); 1 gives the rows as logged.
    """
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    if column not in history:
        return pd.Series(dtype=float, name=column, index=pd.Index([], name="step"))
    h = history[["step", column]].dropna()
    step = h["step"].to_numpy(dtype=float)
    value = h[column].to_numpy(dtype=float)
    lo = np.searchsorted(step, step - window, side="right")  # first row inside the window
    # a mean per window (not a running sum): a row that is alone in its window is returned
    # exactly as logged, so an offline run's "final" is its last evaluation, to the digit
    out = np.array([value[a : i + 1].mean() for i, a in enumerate(lo)], dtype=float)
    return pd.Series(out, index=pd.Index(h["step"].to_numpy(), name="step"), name=column)


@dataclass(frozen=True)
class Summary:
    """Start, peak (and its step) and final of one history column (:func:`summarize`)."""

    start: float
    peak: float
    peak_step: int
    final: float


def summarize(history: pd.DataFrame, column: str, *, window: int = WINDOW) -> Summary:
    """The book's one summary rule (module docstring) applied to ``column`` of ``history``;
    NaN everywhere (and ``peak_step`` −1) when the column was never logged."""
    s = smoothed(history, column, window=window)
    if s.empty:
        return Summary(math.nan, math.nan, -1, math.nan)
    first = history[["step", column]].dropna()[column].iloc[0]
    steps = s.index.to_numpy(dtype=float)
    full = steps >= steps[0] + window - 1  # windows that lie wholly inside the run
    if not full.any():
        full[:] = True
    i = int(np.flatnonzero(full)[np.argmax(s.to_numpy()[full])])
    return Summary(float(first), float(s.iloc[i]), int(s.index[i]), float(s.iloc[-1]))


SUMMARY_COLUMNS = {  # history column -> what summary_table reports of it
    "gold": ("start", "peak", "final"),
    "proxy": ("start", "final"),
    "kl_k1": ("final",),
    "length": ("final",),
    "eos_rate": ("final",),
    "win_rate": ("final",),
    "entropy_token": ("start", "final"),
}
_NAMES = {"eos_rate": "eos", "win_rate": "win", "entropy_token": "entropy"}


def summary_table(runs: Sequence, *, window: int = WINDOW, index=None) -> pd.DataFrame:
    """One row per run (index: its label, or ``index``): ``status``, ``steps``, then by
    :func:`summarize` the columns of :data:`SUMMARY_COLUMNS` — ``gold_start``, ``gold_peak``,
    ``peak_step``, ``gold_final``, ``gold_fall`` (peak − final), ``proxy_start``,
    ``proxy_final``, ``kl_k1_final`` (nats), ``length_final`` (tokens), ``eos_final``,
    ``win_final``, ``entropy_start``, ``entropy_final`` (nats/token); NaN where a run does not
    log a column."""
    rows = []
    for run in runs:
        h = run.history
        row = {"run": run.label, "status": run.status,
               "steps": int(h["step"].max()) if len(h) else 0}  # fmt: skip
        for col, parts in SUMMARY_COLUMNS.items():
            s = summarize(h, col, window=window)
            name = _NAMES.get(col, col)
            for part in parts:
                row[f"{name}_{part}"] = getattr(s, part)
            if col == "gold":
                row["peak_step"] = s.peak_step
                row["gold_fall"] = s.peak - s.final
        rows.append(row)
    table = pd.DataFrame(rows).set_index("run")
    if index is not None:
        table.index = index
    return table


def final(run, column: str, *, window: int = WINDOW) -> float:
    """The final value of ``column`` of one run by the summary rule (:func:`summarize`)."""
    return summarize(run.history, column, window=window).final


LEVEL = 0.95  # every band and interval of the book is a 95 % one


@dataclass(frozen=True)
class Stat:
    """A quantity measured at several seeds: mean, sample SD, ``level`` band of the mean
    (Student t), min, max and the number of seeds. ``str`` gives ``mean ± half-band (n=3)``."""

    mean: float
    sd: float
    lo: float
    hi: float
    min: float
    max: float
    n: int
    values: tuple[float, ...]

    @classmethod
    def of(cls, values, *, level: float = LEVEL) -> Stat:
        v = np.asarray(list(values), dtype=float)
        if v.size == 0 or not np.isfinite(v).all():
            raise ValueError(f"need finite values at one or more seeds, got {v.tolist()}")
        sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
        half = float(_t(level, v.size)) * sd / math.sqrt(v.size)
        m = float(v.mean())
        return cls(m, sd, m - half, m + half, float(v.min()), float(v.max()), int(v.size),
                   tuple(float(x) for x in v))  # fmt: skip

    def __str__(self) -> str:
        return self.fmt()

    def fmt(self, digits: int = 2) -> str:
        """``mean ± half-width of the 95 % band (n seeds, range min–max)``."""
        f = f"{{:.{digits}f}}"
        half = (self.hi - self.lo) / 2
        return (f"{f.format(self.mean)} ± {f.format(half)} (n={self.n}, "
                f"range {f.format(self.min)} to {f.format(self.max)})")  # fmt: skip


def _t(level: float, n) -> np.ndarray | float:
    """The two-sided Student-t quantile for ``n`` values (0 where n < 2: no band)."""
    n = np.asarray(n, dtype=float)
    q = stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1))
    return np.where(n > 1, q, 0.0)


@dataclass(frozen=True)
class Difference:
    """Mean of ``a`` minus mean of ``b`` with a bootstrap ``level`` CI; ``differs`` when the CI
    excludes zero (the two settings differ beyond seed noise)."""

    mean: float
    lo: float
    hi: float
    n_a: int
    n_b: int

    @property
    def differs(self) -> bool:
        return self.lo > 0 or self.hi < 0

    def __str__(self) -> str:
        verdict = "differ beyond seed noise" if self.differs else "within seed noise"
        return (f"{self.mean:+.2f} [{self.lo:+.2f}, {self.hi:+.2f}] "
                f"(95% bootstrap CI, {self.n_a} vs {self.n_b} seeds: {verdict})")  # fmt: skip


def differ(a, b, *, n_boot: int = 10_000, level: float = LEVEL, seed: int = 0) -> Difference:
    """Bootstrap CI of mean(a) − mean(b), seeds resampled with replacement within each setting.

    Args:
        a, b: one value per seed of each setting (a :class:`Stat`, a list or an array).
        n_boot: bootstrap resamples; ``seed`` seeds them (the verdict is reproducible).

    With 2-3 seeds per setting the percentile bootstrap is coarse (its CI spans the observed
    extremes); it is meant for differences much larger than the seed spread, which is what the
    book's claims are.
    """
    a = np.asarray(a.values if isinstance(a, Stat) else list(a), dtype=float)
    b = np.asarray(b.values if isinstance(b, Stat) else list(b), dtype=float)
    if a.size < 1 or b.size < 1 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"a and b need finite values at one or more seeds, got {a}, {b}")
    rng = np.random.default_rng(seed)
    boot = rng.choice(a, (n_boot, a.size)).mean(1) - rng.choice(b, (n_boot, b.size)).mean(1)
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return Difference(float(a.mean() - b.mean()), float(lo), float(hi), a.size, b.size)


def margin(values, threshold: float) -> float:
    """How far ``threshold`` sits from the seed values, in seed SDs: |mean − threshold| / sd
    (``inf`` when every seed gave the same value). A checkpoint writes it next to its
    assertion; the book asks for ≥ 3."""
    s = values if isinstance(values, Stat) else Stat.of(values)
    gap = abs(s.mean - threshold)
    return math.inf if s.sd == 0 else gap / s.sd


MIN_MARGIN = 2.0  # seed SDs between a checkpoint's threshold and the seed mean (at least)


def holds(
    name: str,
    values,
    side: str,
    threshold: float,
    *,
    min_margin: float = MIN_MARGIN,
    log: bool = False,
) -> str:
    """A checkpoint over seeds: every seed's value is on ``side`` (``">"`` or ``"<"``) of
    ``threshold``, and the threshold sits at least ``min_margin`` seed SDs from the seed mean
    (:func:`margin`), so that another seed or machine is unlikely to land on the other side
    (for a normal spread, 2 SDs leave ~2.5 % on the wrong side, 3 SDs ~0.1 %).

    ``log=True`` judges the margin on log|value| vs log|threshold|: for ratios and for sizes of a
    drop, quantities of one sign whose spread is multiplicative (one seed falling 6 reward units
    where the others fall 2.5 widens a linear SD, though it only makes the claim safer). The
    values and the threshold must share a sign (all > 0, or all < 0 as for a gold change below
    −0.3).

    Prints and returns one line with the mean, the range and the margin; raises
    ``AssertionError`` naming the statement when either condition fails.
    """
    if side not in (">", "<"):
        raise ValueError(f"side must be '>' or '<', got {side!r}")
    stat = values if isinstance(values, Stat) else Stat.of(values)
    v = np.asarray(stat.values)
    ok = bool((v > threshold).all() if side == ">" else (v < threshold).all())
    if log:
        sign = 1.0 if threshold > 0 else -1.0
        if threshold == 0 or (sign * v <= 0).any():
            raise ValueError(f"{name}: log=True needs values and a threshold of one sign (all > 0 "
                             f"or all < 0), got {v.tolist()} and {threshold}")  # fmt: skip
        m = margin(Stat.of(np.log(sign * v)), math.log(sign * threshold))
    else:
        m = margin(stat, threshold)
    line = (f"{name}: {side} {threshold:+.2f} for {'all' if ok else 'NOT all'} {stat.n} seeds "
            f"(mean {stat.mean:+.2f}, range {stat.min:+.2f} to {stat.max:+.2f}; "
            f"margin {m:.1f} seed SDs{' of the log' if log else ''})")  # fmt: skip
    print(line)
    if not ok:
        raise AssertionError(f"{line}: a seed is on the wrong side")
    if m < min_margin:
        raise AssertionError(f"{line}: threshold inside the seed spread (< {min_margin:g} SDs)")
    return line


def markdown_table(rows: dict[str, dict[str, Stat]], columns: dict[str, str], digits: int = 2):
    """A markdown table of seed statistics: one row per ``rows`` key, one column per
    ``columns`` item (``{stat name: header}``), each cell ``mean (min to max)``, and the number
    of seeds. What the chapters show in their cells tagged ``results`` (``make book`` copies
    them into the README and the site, :mod:`rlhf_nb._site.results`)."""
    head = ["setting", *columns.values(), "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        cells = [f"{row[c].mean:.{digits}f} ({row[c].min:.{digits}f} to "
                 f"{row[c].max:.{digits}f})" for c in columns]  # fmt: skip
        n = {row[c].n for c in columns}
        lines.append("| " + " | ".join([name, *cells, "/".join(map(str, sorted(n)))]) + " |")
    return "\n".join(lines)


def at_kl(
    run, budgets: Sequence[float], column: str = "gold", *, window: int = WINDOW
) -> np.ndarray:
    """``column`` of ``run`` where its KL to SFT (``kl_k1``, nats) first reaches each budget,
    linearly interpolated between the two logged rows around the crossing; NaN where the run
    never got that far. Both columns are read through the summary rule's window first
    (:func:`smoothed`). Float array ``[len(budgets)]``."""
    kl = smoothed(run.history, "kl_k1", window=window)
    val = smoothed(run.history, column, window=window).reindex(kl.index)
    kl, val = kl.to_numpy(), val.to_numpy()
    out = []
    for b in budgets:
        above = np.nonzero(kl >= b)[0]
        if above.size == 0:
            out.append(np.nan)
            continue
        i = int(above[0])
        if i == 0:
            out.append(float(val[0]))
            continue
        w = (b - kl[i - 1]) / (kl[i] - kl[i - 1])
        out.append(float(val[i - 1] + w * (val[i] - val[i - 1])))
    return np.array(out)


def shared_budgets(settings, fractions: Sequence[float] = (0.25, 0.5, 1.0)) -> list[float]:
    """KL budgets every run of ``settings`` (``{name: SeedRuns}``) reaches: ``fractions`` of
    the smallest, over runs, of the largest smoothed KL a run attains (nats, rounded *down* to 3
    significant digits, so the run that sets the reach still reaches its budget). Raises
    ``ValueError`` when some run never leaves the SFT policy (KL <= 0)."""
    reach = min(float(smoothed(r.history, "kl_k1").max()) for g in settings.values()
                for r in g.runs)  # fmt: skip
    if not reach > 0:
        raise ValueError(f"a run never moves from the SFT policy (largest KL {reach}): no budget")
    return [_floor_sig(f * reach) for f in fractions]


def matched_difference(matched: pd.DataFrame, a: str, b: str) -> dict:
    """Per budget of a :func:`matched_kl` table, setting ``a``'s gain minus setting ``b``'s as a
    bootstrap :func:`differ` over their seeds: ``{budget: Diff}``."""
    budgets = matched.index.unique("kl budget")
    return {k: differ(matched.loc[(a, k), "gain"], matched.loc[(b, k), "gain"]) for k in budgets}


def _floor_sig(x: float, digits: int = 3) -> float:
    """``x > 0`` rounded down to ``digits`` significant digits (1.8385 -> 1.83)."""
    q = 10.0 ** (math.floor(math.log10(x)) - digits + 1)
    return float(f"{math.floor(x / q * (1 + 1e-12)) * q:.{digits}g}")


def matched_kl(settings, budgets: Sequence[float], column: str = "gold") -> pd.DataFrame:
    """The matched-KL table: one row per (setting, budget) of ``settings`` (``{name:
    SeedRuns}``) with ``gain`` — a :class:`Stat` over the seeds that reached the budget of
    ``column`` there minus at step 0 — and ``reached``, how many of the setting's seeds did."""
    rows = {}
    for name, g in settings.items():
        vals = np.array([at_kl(r, budgets, column) - r.history[column].iloc[0] for r in g.runs])
        for j, b in enumerate(budgets):
            ok = vals[:, j][np.isfinite(vals[:, j])]
            rows[(name, b)] = {"gain": Stat.of(ok) if ok.size else None, "reached": int(ok.size)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["setting", "kl budget"])
