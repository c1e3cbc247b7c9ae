"""Live-kernel controls (ipywidgets) that redraw a figure from the same ``make_figure`` the
static site's plotly slider uses (see ``rlhf_nb.viz.plotting``).

On the static site widgets have no kernel behind them; every notebook that shows a widget also
shows the plotly-slider version of the same figure.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets
from IPython.display import display

from rlhf_nb.core import check_range

# Wide enough that one step of a log slider is a few pixels, not a jump: at JupyterLab's default
# ~125 px a small drag moved chapter 01's α from 1 to 44. Capped by the output area's width.
SLIDER_LAYOUT = dict(width="100%", max_width="640px")
SLIDER_STYLE = {"description_width": "60px"}


def log_slider(
    description: str, value: float, low: float, high: float, *, steps: int = 120
) -> widgets.FloatLogSlider:
    """A log-scale slider over ``[low, high]`` (both > 0), for temperatures and learning rates.

    ``steps`` positions over the range (default 120: ~5 px each at the full width), a readout
    with three significant digits, and the value sent when the handle is released.
    """
    check_range("low", low, 0.0, None, low_inclusive=False)
    check_range("high", high, low, None, low_inclusive=False)
    check_range("value", value, low, high)
    import math

    lo, hi = math.log10(low), math.log10(high)
    return widgets.FloatLogSlider(
        value=value,
        base=10,
        min=lo,
        max=hi,
        step=(hi - lo) / steps,
        description=description,
        continuous_update=False,
        readout_format=".3g",
        layout=widgets.Layout(**SLIDER_LAYOUT),
        style=SLIDER_STYLE,
    )


def linear_slider(
    description: str, value: float, low: float, high: float, step: float
) -> widgets.FloatSlider:
    """A linear slider over ``[low, high]`` in increments of ``step``, as wide as
    :func:`log_slider` and likewise sending its value when the handle is released."""
    check_range("high", high, low, None, low_inclusive=False)
    check_range("value", value, low, high)
    check_range("step", step, 0.0, high - low, low_inclusive=False)
    return widgets.FloatSlider(
        value=value,
        min=low,
        max=high,
        step=step,
        description=description,
        continuous_update=False,
        readout_format=".3g",
        layout=widgets.Layout(**SLIDER_LAYOUT),
        style=SLIDER_STYLE,
    )


def _bundle(obj) -> dict:
    """The display bundle of ``obj``: a plotly figure's under the current renderer, else
    ``text/plain`` from its repr plus ``text/html`` from ``_repr_html_`` (a DataFrame's table)."""
    bundle = obj._repr_mimebundle_() if hasattr(obj, "_repr_mimebundle_") else None
    if bundle:
        return bundle
    html = obj._repr_html_() if hasattr(obj, "_repr_html_") else None
    return {"text/plain": repr(obj)} | ({"text/html": html} if html else {})


def live_figure(make_figure: Callable[..., object], **controls: widgets.Widget) -> widgets.VBox:
    """Show ``make_figure(**values)`` and redraw it whenever a control changes.

    Args:
        make_figure: keyword arguments named like ``controls`` -> a plotly figure (or anything
            with an HTML repr, e.g. a ``pandas.DataFrame``, shown as a table).
        controls: name -> ipywidgets value widget (slider, dropdown...).

    Returns the box (already displayed), so tests can drive it: set ``box.children[i].value``.
    """
    out = widgets.Output()

    def redraw(_=None):
        # Set the Output's content directly rather than `with out: fig.show()`: capturing
        # display calls while a cell runs made nbclient (papermill) intermittently lose the
        # cell's execute reply and hang until its timeout. The bundle is built here because
        # IPython's formatter would call the figure's _ipython_display_, which shows it in the
        # running cell instead of inside the widget.
        fig = make_figure(**{k: w.value for k, w in controls.items()})
        out.outputs = ({"output_type": "display_data", "data": _bundle(fig), "metadata": {}},)

    for w in controls.values():
        w.observe(redraw, names="value")
    box = widgets.VBox([*controls.values(), out])
    display(box)
    redraw()
    return box
