"""The plotting layer: slider figures carry every frame; widgets redraw from the same function."""

from __future__ import annotations

import base64

import ipywidgets
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

import rlhf_nb
from rlhf_nb.theory import exact
from rlhf_nb.viz import plotting, widgets


def bars(alpha):
    return [go.Bar(x=list("abc"), y=exact.maxent_policy([1.0, 0.0, -1.0], alpha))]


def test_slider_figure_has_one_frame_per_value_and_matching_steps():
    values = [0.1, 1.0, 10.0]
    fig = plotting.slider_figure("α", values, bars, yrange=(0, 1), active=1)
    assert [f.name for f in fig.frames] == ["0.1", "1", "10"]
    assert [s.label for s in fig.layout.sliders[0].steps] == ["0.1", "1", "10"]
    # The initial data is the active frame's data.
    np.testing.assert_allclose(fig.data[0].y, exact.maxent_policy([1.0, 0.0, -1.0], 1.0))
    assert fig.layout.sliders[0].active == 1


def test_slider_figure_rejects_bad_input():
    with pytest.raises(ValueError, match="values must hold at least one"):
        plotting.slider_figure("α", [], bars)
    with pytest.raises(ValueError, match="active must be in"):
        plotting.slider_figure("α", [1.0], bars, active=3)
    with pytest.raises(ValueError, match="different numbers of traces"):
        plotting.slider_figure("n", [1, 2], lambda n: bars(1.0) * n)


def test_live_figure_redraws_on_change():
    rlhf_nb.setup()  # the notebook renderer, as in every chapter
    seen = []

    def make(alpha):
        seen.append(alpha)
        return plotting.static_figure(bars(alpha))

    slider = widgets.log_slider("α", 1.0, 0.1, 10.0)
    box = widgets.live_figure(make, alpha=slider)
    assert seen == [1.0]
    box.children[0].value = 2.0
    assert seen[-1] == pytest.approx(2.0)
    (shown,) = box.children[-1].outputs  # the Output holds exactly the latest figure
    (trace,) = shown["data"]["application/vnd.plotly.v1+json"]["data"]
    np.testing.assert_array_equal(_array(trace["y"]), bars(2.0)[0].y)


def _array(y) -> np.ndarray:
    """A plotly JSON array: a list, or plotly 6's base64 typed array ``{dtype, bdata}``."""
    if isinstance(y, dict):
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"])
    return np.asarray(y)


def test_live_figure_shows_a_dataframe_as_an_html_table():
    text = ipywidgets.Text(value="a b")
    box = widgets.live_figure(lambda words: pd.DataFrame({"word": words.split()}), words=text)
    text.value = "c d e"
    (shown,) = box.children[-1].outputs
    html = shown["data"]["text/html"]
    assert "<table" in html and "<td>e</td>" in html and "<td>a</td>" not in html
    assert "word" in shown["data"]["text/plain"]


def test_log_slider_validates_its_range():
    with pytest.raises(ValueError, match="value must be in"):
        widgets.log_slider("α", 50.0, 0.1, 10.0)
    with pytest.raises(ValueError, match="low must be in"):
        widgets.log_slider("α", 1.0, 0.0, 10.0)


def test_sliders_are_wide_with_fine_steps():
    log = widgets.log_slider("α", 1.0, 0.02, 50.0)
    lin = widgets.linear_slider("λ", 0.5, 0.0, 1.0, 0.05)
    for s in (log, lin):
        assert s.layout.width == "100%" and s.layout.max_width == "640px"
        assert not s.continuous_update
    assert round((log.max - log.min) / log.step) == 120  # ~5 px a step at 640 px
    with pytest.raises(ValueError, match="step must be in"):
        widgets.linear_slider("λ", 0.5, 0.0, 1.0, 2.0)


def test_plotly_renderer_per_place(monkeypatch):
    import json

    import plotly.io as pio

    from rlhf_nb import core

    monkeypatch.setenv(core.FIGURES_ENV, "html")
    assert core.plotly_renderer() == core.PLOTLY_RENDERER
    monkeypatch.setenv(core.FIGURES_ENV, "live")
    assert core.plotly_renderer() == core.LIVE_RENDERER
    monkeypatch.setenv(core.FIGURES_ENV, "pdf")
    with pytest.raises(ValueError, match="RLHF_NB_FIGURES must be one of"):
        core.plotly_renderer()
    monkeypatch.delenv(core.FIGURES_ENV)
    monkeypatch.setattr(core, "_in_kernel", lambda: True)
    assert core.plotly_renderer() == core.LIVE_RENDERER  # JupyterLab, VS Code
    # In a live kernel a widget redraw sends the figure's JSON only, never plotly.js.
    monkeypatch.setattr(pio.renderers, "default", core.LIVE_RENDERER)
    fig = go.Figure(go.Scatter(x=list(range(50)), y=list(range(50))))
    bundle = widgets._bundle(fig)
    assert set(bundle) == {"application/vnd.plotly.v1+json"}
    assert len(json.dumps(bundle)) < 50_000


def test_run_controls_report_progress_and_errors():
    from rlhf_nb.runs.record import Run
    from rlhf_nb.viz import live

    c = live.RunControls(4)
    drawn = []
    history = pd.DataFrame({"step": [0, 2, 4], "gold": [0.0, 0.5, 1.0], "kl_k1": [0.0, 0.1, 0.2]})

    def train(on_step):
        on_step(history.iloc[:2])
        assert c.button.disabled and c.bar.value == 2 and c.status.value == "training x: step 2/4 …"
        return Run(config=None, history=history, status="finished")

    c.run("x", train, drawn.append)
    assert not c.button.disabled and c.bar.bar_style == "success" and c.bar.value == 4
    assert (
        "finished after" in c.status.value and "gold 0.50, KL 0.10" in c.status.value
    )  # the summary rule
    assert len(drawn) == 2

    def broken(on_step):
        raise RuntimeError("no testbed")

    with pytest.raises(RuntimeError):
        c.run("y", broken, drawn.append)
    assert c.bar.bar_style == "danger" and "failed: RuntimeError: no testbed" in c.status.value
    assert not c.button.disabled and c.button.description == "train 4 steps"
