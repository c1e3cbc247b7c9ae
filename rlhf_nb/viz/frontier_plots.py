"""Figures of chapter 07's frontier plane: gold against d = √KL(π‖π_SFT).

:func:`exact_plane_figure` draws the exact families (``rlhf_nb.theory.frontier.family_frontiers``)
as curves with a slider that moves a marker along each by its temperature, so the site keeps the
interaction; :func:`empirical_frontier_figure` draws measured runs (``rlhf_nb.chapters.ch07``)
with Gao fits, gold and proxy side by side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rlhf_nb.theory.frontier import gao_curve
from rlhf_nb.viz import plotting
from rlhf_nb.viz.run_plots import COLORS, _rgba

FAMILY_NAMES = {
    "kl": "KL family π_β ∝ π_SFT·exp(r/β)",
    "maxent": "MaxEnt family π_α ∝ exp(r/α)",
    "combined": "entropy + KL, α = β = t",
    "best_of_n": "best-of-n from π_SFT",
}


def _coef_label(c: float) -> str:
    return "∞" if math.isinf(c) else f"{c:.3g}"


def exact_plane_figure(df: pd.DataFrame, *, y: str = "gold", height: int = 460) -> go.Figure:
    """The families of ``df`` (``family_frontiers``) as curves on the (d, ``y``) plane; a slider
    over the temperature moves one marker along each temperature family (β, α or t; from ∞, the
    family's regularised end, towards 0), and best-of-n is drawn with markers at every n."""
    temps = df[df.family != "best_of_n"]
    coefs = list(dict.fromkeys(temps["coef"]))
    fams = [f for f in FAMILY_NAMES if f in set(df.family)]

    def traces(c):
        out = []
        for i, fam in enumerate(fams):
            g = df[df.family == fam]
            color = COLORS[i % len(COLORS)]
            mode = "lines+markers" if fam == "best_of_n" else "lines"
            out.append(go.Scatter(x=g["d"], y=g[y], mode=mode, name=FAMILY_NAMES[fam],
                                  line=dict(color=color), marker=dict(size=4),
                                  legendgroup=fam))  # fmt: skip
            if fam != "best_of_n":
                p = g[g["coef"] == c]
                out.append(go.Scatter(x=p["d"], y=p[y], mode="markers", showlegend=False,
                                      marker=dict(color=color, size=13, line=dict(width=1)),
                                      legendgroup=fam, hoverinfo="x+y"))  # fmt: skip
        return out

    fig = plotting.slider_figure(
        "temperature (β, α or t)", coefs, traces,
        title=f"Exact frontiers under a proxy that over-rewards length ({y} against d)",
        xaxis_title="d = √KL(π‖π_SFT)  (√nats)", yaxis_title=f"E_π[{y}]", height=height,
    )  # fmt: skip
    for step, c in zip(fig.layout.sliders[0].steps, coefs):
        step.label = _coef_label(c)
    return fig


def empirical_frontier_figure(
    points: pd.DataFrame,
    fits: pd.DataFrame | None = None,
    *,
    colors: Mapping[str, str] | None = None,
    height: int = 460,
) -> go.Figure:
    """Measured frontiers: gold gain (left) and proxy (right) against d, one colour per method,
    one thin line per seed (a run's path; best-of-n one line over n); ``fits`` (from
    ``overopt.gao_table``) adds each method's fitted Gao curve, dashed, over its measured d."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "gold gain over the SFT policy", "proxy reward (what was optimised)"))  # fmt: skip
    methods = list(dict.fromkeys(points["method"]))
    colors = dict(colors or {m: COLORS[i % len(COLORS)] for i, m in enumerate(methods)})
    for m in methods:
        p = points[points["method"] == m]
        for j, (seed, s) in enumerate(p.groupby("seed", sort=False)):
            for col, ycol in ((1, "gain"), (2, "proxy")):
                fig.add_trace(go.Scatter(
                    x=s["d"], y=s[ycol], mode="lines+markers" if m == "best-of-n" else "lines",
                    name=m, legendgroup=m, showlegend=(j == 0 and col == 1),
                    line=dict(color=colors[m], width=1.6), marker=dict(size=4),
                    hovertext=f"{m}, seed {seed}",
                ), row=1, col=col)  # fmt: skip
        if fits is not None and m in fits.index and np.isfinite(fits.loc[m, "a"]):
            f = fits.loc[m]
            d = np.linspace(0.0, float(p["d"].max()), 120)
            fig.add_trace(go.Scatter(
                x=d, y=gao_curve(d, f["a"], f["b"], f["form"]), mode="lines",
                name=f"{m}: Gao {f['form']} fit", legendgroup=m, showlegend=False,
                line=dict(color=_rgba(colors[m], 0.9), width=3, dash="dash"),
            ), row=1, col=1)  # fmt: skip
    for col in (1, 2):
        fig.update_xaxes(title_text="d = √KL(π‖π_SFT)  (√nats)", row=1, col=col)
    fig.update_layout(
        template=plotting.TEMPLATE,
        height=height,
        title="Every method on one plane: gold and proxy against distance from SFT",
    )
    return fig


def path_slider_figure(
    background: pd.DataFrame,
    remedies: pd.DataFrame,
    *,
    param: str = "remedy",
    title: str = "Each remedy's path (black) over the headline settings",
    height: int = 440,
) -> go.Figure:
    """A slider (labelled ``param``) over the methods of ``remedies`` (``overopt.frontier_points``
    rows): each frame draws that method's paths (every seed) in black over the ``background``
    methods' paths, on the (d, gold gain) plane; works on the static site."""
    bg_methods = list(dict.fromkeys(background["method"]))
    names = list(dict.fromkeys(remedies["method"]))
    n_lines = max(len(list(remedies[remedies.method == m].groupby("seed"))) for m in names)

    def traces(name):
        out = []
        for i, m in enumerate(bg_methods):
            b = background[background.method == m]
            out.append(go.Scatter(x=b["d"], y=b["gain"], mode="lines", name=m,
                                  line=dict(color=COLORS[i % len(COLORS)], width=1.5),
                                  opacity=0.6))  # fmt: skip
        seeds = list(remedies[remedies.method == name].groupby("seed"))
        for j in range(n_lines):  # the same number of traces in every frame
            s = seeds[j][1] if j < len(seeds) else remedies.iloc[:0]
            out.append(go.Scatter(x=s["d"], y=s["gain"], mode="lines", name=f"{param}: {name}",
                                  line=dict(color="black", width=3),
                                  showlegend=j == 0))  # fmt: skip
        return out

    y = pd.concat([background["gain"], remedies["gain"]])
    return plotting.slider_figure(
        param, names, traces, title=title,
        xaxis_title="d = √KL(π‖π_SFT)  (√nats)", yaxis_title="gold gain over SFT",
        yrange=(float(y.min()) - 0.2, float(y.max()) + 0.2), height=height,
    )  # fmt: skip
