"""The book's one plotting layer (plotly).

Two needs shape it. In a live kernel a reader drags an ipywidgets slider (``rlhf_nb.viz.widgets``);
on the static site there is no kernel, so every interactive figure also exists as a
*plotly-native* slider: all frames are computed up front and the slider switches between them in
the browser. ``slider_figure`` builds the latter from one function ``make_traces(value)``; the
widget calls the same function, so both views draw identical traces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import plotly.graph_objects as go

TEMPLATE = "plotly_white"


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def slider_figure(
    param: str,
    values: Sequence,
    make_traces: Callable[[object], list],
    *,
    title: str = "",
    xaxis_title: str = "",
    yaxis_title: str = "",
    yrange: tuple[float, float] | None = None,
    active: int = 0,
    height: int = 420,
) -> go.Figure:
    """A figure with one frame per value of ``param`` and a plotly slider to move between them.

    Args:
        param: the slider's label, e.g. ``"α"``.
        values: the parameter values, one frame each (>= 1).
        make_traces: ``value -> list of plotly traces``; every frame must return the same number
            of traces (plotly swaps trace data frame by frame).
        yrange: fixed y-axis range so frames are comparable (recommended).
        active: index of the frame shown first.
    """
    values = list(values)
    if not values:
        raise ValueError("values must hold at least one parameter value, got an empty sequence")
    if not 0 <= active < len(values):
        raise ValueError(f"active must be in [0, {len(values) - 1}], got {active}")
    frames = [go.Frame(data=make_traces(v), name=_fmt(v)) for v in values]
    n = {len(f.data) for f in frames}
    if len(n) != 1:
        raise ValueError(f"make_traces returned different numbers of traces across frames: {n}")
    fig = go.Figure(data=frames[active].data, frames=frames)
    steps = [
        dict(
            label=f.name,
            method="animate",
            args=[[f.name], dict(mode="immediate", frame=dict(duration=0, redraw=True))],
        )
        for f in frames
    ]
    fig.update_layout(
        template=TEMPLATE,
        title=title,
        xaxis_title=xaxis_title,
        yaxis_title=yaxis_title,
        height=height,
        sliders=[dict(active=active, currentvalue=dict(prefix=f"{param} = "), steps=steps)],
        margin=dict(t=60, b=40),
    )
    if yrange is not None:
        fig.update_yaxes(range=list(yrange))
    return fig


def static_figure(
    traces: list, *, title: str = "", xaxis_title: str = "", yaxis_title: str = "", **layout
) -> go.Figure:
    """A plain figure in the book's template (one call so every chapter looks the same)."""
    fig = go.Figure(data=traces)
    fig.update_layout(
        template=TEMPLATE, title=title, xaxis_title=xaxis_title, yaxis_title=yaxis_title, **layout
    )
    return fig
