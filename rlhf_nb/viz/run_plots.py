"""Plots of :class:`rlhf_nb.runs.record.Run` histories, shared by the online (05) and offline (06)
chapters.

Every function takes a list of runs (online or offline, anything with the shared history
``COLUMNS``) and draws one column against ``step``. Legends carry each run's label and its final
win rate against the references, as in the paper's figures. The slider version
(:func:`sweep_figure`) precomputes one frame per sweep value so it works on the static site.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rlhf_nb.viz import plotting

COLORS = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
)  # fmt: skip
TITLES = {
    "gold": "gold reward",
    "proxy": "proxy reward (RM logit)",
    "kl_k1": "KL to SFT, k1 (nats/seq)",
    "kl_k3": "KL to SFT, k3 (nats/seq)",
    "entropy_token": "entropy (nats/token)",
    "entropy_seq": "−log π(y|x) (nats/seq)",
    "length": "response length (tokens)",
    "eos_rate": "EOS rate",
    "win_rate": "win rate vs reference",
    "seconds": "seconds per step",
}


def run_label(run, *, win_rate: bool = True) -> str:
    """``run.label`` plus ``(win 63%)``: its last measured win rate; ``†`` marks a diverged run."""
    label = run.label
    if win_rate and "win_rate" in run.history:
        w = run.final("win_rate")
        if not math.isnan(w):
            label += f" (win {100 * w:.0f}%)"
    if run.status == "diverged":
        label += " †"
    return label


def history_traces(
    runs: Sequence,
    y: str,
    *,
    x: str = "step",
    labels: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    dash: str | None = None,
    win_rate: bool = True,
    showlegend: bool = True,
    legendgroup: bool = True,
) -> list[go.Scatter]:
    """One line trace per run: ``history[y]`` against ``history[x]`` (NaN rows dropped).

    Args:
        runs: runs whose histories hold columns ``x`` and ``y``.
        labels: legend names (default :func:`run_label`).
        colors: one colour per run (default the book's cycle :data:`COLORS`).
        dash: plotly dash style for all traces (``"dot"``, ``"dash"``...).
        legendgroup: group traces by label, so toggling a run in one panel toggles it everywhere.
    """
    traces = []
    for i, run in enumerate(runs):
        h = run.history
        if y not in h or x not in h:
            raise KeyError(f"run {run.label!r} has no column {y!r} or {x!r}; has {list(h)}")
        h = h[[x, y]].dropna()
        name = labels[i] if labels is not None else run_label(run, win_rate=win_rate)
        color = (colors or COLORS)[i % len(colors or COLORS)]
        traces.append(
            go.Scatter(
                x=h[x].tolist(),
                y=h[y].tolist(),
                mode="lines",
                name=name,
                line=dict(color=color, dash=dash),
                legendgroup=name if legendgroup else None,
                showlegend=showlegend,
            )
        )
    return traces


def panels_figure(
    runs: Sequence,
    ys: Sequence[str] = ("proxy", "gold", "kl_k1"),
    *,
    x: str = "step",
    title: str = "",
    labels: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    win_rate: bool = True,
    height: int = 380,
) -> go.Figure:
    """Side-by-side panels, one per column in ``ys``, same runs and colours in each (one legend)."""
    fig = make_subplots(rows=1, cols=len(ys), subplot_titles=[TITLES.get(c, c) for c in ys])
    for j, col in enumerate(ys):
        for t in history_traces(
            runs, col, x=x, labels=labels, colors=colors, win_rate=win_rate, showlegend=j == 0
        ):
            fig.add_trace(t, row=1, col=j + 1)
        fig.update_xaxes(title_text=x, row=1, col=j + 1)
    fig.update_layout(template=plotting.TEMPLATE, title=title, height=height)
    return fig


def sweep_figure(
    sweep: Mapping[object, Sequence],
    y: str = "gold",
    *,
    param: str = "lr",
    x: str = "step",
    title: str = "",
    yaxis_title: str | None = None,
    yrange: tuple[float, float] | None = None,
    active: int = 0,
    colors: Sequence[str] | None = None,
    win_rate: bool = True,
    height: int = 420,
) -> go.Figure:
    """A plotly-slider figure over a sweep: one frame per key of ``sweep`` (e.g. a learning rate),
    each drawing that key's runs. Every value must hold the same number of runs (plotly swaps
    traces frame by frame). ``yrange`` defaults to the range of ``y`` over all frames."""
    keys = list(sweep)
    counts = {len(sweep[k]) for k in keys}
    if len(counts) > 1:
        raise ValueError(f"every sweep value must hold the same number of runs, got {counts}")
    if yrange is None:
        vals = pd.concat([r.history[y] for k in keys for r in sweep[k]]).dropna()
        pad = 0.05 * float(vals.max() - vals.min() or 1.0)
        yrange = (float(vals.min()) - pad, float(vals.max()) + pad)

    def make_traces(key):
        return history_traces(sweep[key], y, x=x, colors=colors, win_rate=win_rate)

    return plotting.slider_figure(
        param,
        keys,
        make_traces,
        title=title,
        xaxis_title=x,
        yaxis_title=yaxis_title or TITLES.get(y, y),
        yrange=yrange,
        active=active,
        height=height,
    )


def live_history(
    columns: Sequence[str] = ("proxy", "gold", "kl_k1"),
    *,
    title: str = "live run",
    background: Sequence = (),
    height: int = 320,
) -> tuple[go.FigureWidget, Callable[[pd.DataFrame], None]]:
    """A plotly ``FigureWidget`` with one panel per column and an ``update(history)`` callback that
    redraws it (pass it as a training callback in a live kernel).

    ``background``: runs (e.g. a cached sweep) drawn faded in every panel, with their legend; the
    live run is then drawn bold in black over them and named "live run" in the legend.
    """
    fig = go.FigureWidget(
        make_subplots(rows=1, cols=len(columns), subplot_titles=[TITLES.get(c, c) for c in columns])
    )
    for j, col in enumerate(columns):
        for t in history_traces(background, col, showlegend=j == 0) if background else ():
            t.opacity = 0.35
            fig.add_trace(t, row=1, col=j + 1)
    live = []
    for j, _ in enumerate(columns):
        if background:
            style = dict(mode="lines+markers", name="live run", showlegend=j == 0,
                         line=dict(color="black", width=3))  # fmt: skip
        else:
            style = dict(mode="lines", showlegend=False)
        fig.add_scatter(x=[], y=[], **style, row=1, col=j + 1)
        live.append(fig.data[-1])
    fig.update_layout(template=plotting.TEMPLATE, title=title, height=height)

    def update(history: pd.DataFrame) -> None:
        with fig.batch_update():
            for trace, col in zip(live, columns):
                h = history[["step", col]].dropna()
                trace.x, trace.y = h["step"].tolist(), h[col].tolist()

    return fig, update


def band_traces(
    groups: Sequence,
    y: str,
    *,
    x: str = "step",
    colors: Sequence[str] | None = None,
    showlegend: bool = True,
    seeds: bool = False,
) -> list[go.Scatter]:
    """For each :class:`rlhf_nb.runs.seeds.SeedRuns`: its per-step mean over seeds (a line) and the
    95 % band of that mean (a filled polygon, same colour, faint); ``seeds=True`` adds each seed's
    own curve, thin. Legends name the setting and the number of seeds."""
    traces = []
    for i, g in enumerate(groups):
        color = (colors or COLORS)[i % len(colors or COLORS)]
        b = g.band(y, x=x)
        xs = b.index.tolist()
        name = g.label
        fill = _rgba(color, 0.18)
        traces.append(
            go.Scatter(
                x=xs + xs[::-1], y=b["hi"].tolist() + b["lo"].tolist()[::-1], fill="toself",
                fillcolor=fill, line=dict(width=0), hoverinfo="skip", legendgroup=name,
                showlegend=False, name=f"{name} (95% band)",
            )
        )  # fmt: skip
        if seeds:
            for s, run in zip(g.seeds, g.runs):
                h = run.history[[x, y]].dropna()
                traces.append(
                    go.Scatter(
                        x=h[x].tolist(), y=h[y].tolist(), mode="lines", name=f"{name}, seed {s}",
                        line=dict(color=color, width=0.7), opacity=0.5, legendgroup=name,
                        showlegend=False,
                    )
                )  # fmt: skip
        traces.append(
            go.Scatter(x=xs, y=b["mean"].tolist(), mode="lines", name=name,
                       line=dict(color=color, width=2.5), legendgroup=name,
                       showlegend=showlegend)
        )  # fmt: skip
    return traces


def band_figure(
    groups: Sequence,
    ys: str | Sequence[str] = "gold",
    *,
    x: str = "step",
    title: str = "",
    colors: Sequence[str] | None = None,
    seeds: bool = False,
    height: int = 400,
) -> go.Figure:
    """One panel per column in ``ys``: every setting's mean over seeds with its 95 % band
    (:func:`band_traces`), one shared legend."""
    ys = [ys] if isinstance(ys, str) else list(ys)
    fig = make_subplots(rows=1, cols=len(ys), subplot_titles=[TITLES.get(c, c) for c in ys])
    for j, col in enumerate(ys):
        for t in band_traces(groups, col, x=x, colors=colors, showlegend=j == 0, seeds=seeds):
            fig.add_trace(t, row=1, col=j + 1)
        fig.update_xaxes(title_text=x, row=1, col=j + 1)
    fig.update_layout(template=plotting.TEMPLATE, title=title, height=height)
    return fig


def summary_figure(
    table: pd.DataFrame,
    ys: Sequence[str],
    *,
    x: str,
    names: Mapping[str, str] | None = None,
    title: str = "",
    log_x: bool = True,
    height: int = 380,
) -> go.Figure:
    """One panel per column of ``ys`` of a table of :class:`rlhf_nb.stats.Stat` cells indexed by
    (setting, ``x``) — e.g. :func:`rlhf_nb.chapters.ch05.cap_table` — against ``x``: per setting
    the mean over seeds (line), its 95 % band (error bars) and each seed (dots). ``names`` maps
    column and setting keys to what the titles and the legend show."""
    names = dict(names or {})
    fig = make_subplots(rows=1, cols=len(ys), subplot_titles=[names.get(c, c) for c in ys])
    settings = list(dict.fromkeys(table.index.get_level_values(0)))
    for j, col in enumerate(ys):
        for i, k in enumerate(settings):
            color = COLORS[i % len(COLORS)]
            part = table.xs(k, level=0)[col]
            xs, st = part.index.tolist(), part.tolist()
            mean = [s.mean for s in st]
            fig.add_trace(go.Scatter(
                x=xs, y=mean, mode="lines+markers", name=names.get(k, k), legendgroup=k,
                line=dict(color=color, width=2.5), showlegend=j == 0,
                error_y=dict(type="data", symmetric=False, color=color,
                             array=[s.hi - m for s, m in zip(st, mean)],
                             arrayminus=[m - s.lo for s, m in zip(st, mean)]),
            ), row=1, col=j + 1)  # fmt: skip
            dots_x = [v for v, s in zip(xs, st) for _ in s.values]
            dots_y = [y for s in st for y in s.values]
            fig.add_trace(go.Scatter(
                x=dots_x, y=dots_y, mode="markers", name=f"{names.get(k, k)}, seeds",
                legendgroup=k, showlegend=False, marker=dict(color=color, size=5, opacity=0.5),
            ), row=1, col=j + 1)  # fmt: skip
        ticks = sorted(set(table.index.get_level_values(1)))
        fig.update_xaxes(title_text=x, type="log" if log_x else "linear", tickvals=ticks,
                         row=1, col=j + 1)  # fmt: skip
    fig.update_layout(template=plotting.TEMPLATE, title=title, height=height)
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"
