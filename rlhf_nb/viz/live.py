"""The live-run widgets of chapters 05, 06, 07 and 09: controls and a button that trains a short
run in the kernel, no cache (``on_step`` redraws the figure after every logged row).

:func:`online_widget` (chapter 05) and :func:`anchor_widget` (chapter 07) call
:func:`rlhf_nb.methods.online.train` and :func:`offline_widget` (chapter 06)
:func:`rlhf_nb.methods.offline.train` directly, each on a config of its own method;
:func:`cell_widget` (chapter 09), whose cells hold configs of several methods, goes through the
run contract, :func:`rlhf_nb.runs.contract.train`, which picks the method by the config's type.

Nothing trains until the button is pressed, so rendering a widget (papermill, the site build)
is instant; on the static site there is no kernel and the slider figures carry the cached runs.
"""

from __future__ import annotations

from rlhf_nb.core import check_int
from rlhf_nb.methods.online_config import OnlineConfig
from rlhf_nb.viz import run_plots, widgets


class RunControls:
    """The button, progress bar and status line every live-run widget shares.

    A widget callback runs in the kernel without an execute request, so JupyterLab's kernel
    indicator may not show it as busy; the controls say it themselves instead: the button is
    disabled and reads "training…", the bar counts steps, and the status line names the config
    while it trains, then the outcome (status, final gold and KL, wall time) or the error.
    """

    def __init__(self, steps: int):
        import ipywidgets as w

        check_int("steps", steps, 1)
        self.steps = steps
        self.label = f"train {steps} steps"
        self.button = w.Button(description=self.label, button_style="primary",
                               layout=w.Layout(width="150px"))  # fmt: skip
        self.bar = w.IntProgress(value=0, min=0, max=steps, layout=w.Layout(width="200px"))
        self.status = w.Label("not trained yet: set the controls and press the button")
        self.box = w.HBox([self.button, self.bar, self.status])

    def run(self, describe: str, train_fn, update) -> None:
        """Train with ``train_fn(on_step)`` (returns a ``Run``), ``update(history)`` redrawing."""
        import time

        self.button.disabled, self.button.description = True, "training…"
        self.bar.value, self.bar.bar_style = 0, "info"
        self.status.value = f"training {describe} …"
        t0 = time.perf_counter()

        def on_step(history):
            update(history)
            step = min(self.steps, int(history["step"].iloc[-1]))
            self.bar.value = step
            self.status.value = f"training {describe}: step {step}/{self.steps} …"

        try:
            run = train_fn(on_step)
            update(run.history)
        except Exception as err:
            self.bar.bar_style = "danger"
            self.status.value = f"{describe}: failed: {type(err).__name__}: {err}"
            raise
        else:
            self.bar.value, self.bar.bar_style = self.steps, "success"
            self.status.value = (
                f"{describe}: {run.status} after {time.perf_counter() - t0:.1f} s, "
                f"gold {run.final('gold'):.2f}, KL {run.final('kl_k1'):.2f}"
            )
        finally:
            self.button.disabled, self.button.description = False, self.label


def _train_on_click(controls: RunControls, testbed, update, make_config) -> None:
    """Wire the controls' button to train ``make_config()`` on ``testbed`` (an online run, no
    cache) with ``update`` redrawing the figure after every row."""
    from rlhf_nb.methods.online import train

    def on_click(_):
        cfg = make_config()
        describe = f"{cfg.label(lr_format='.3g')}, {cfg.steps} steps"  # the slider's lr, 3 digits
        controls.run(describe,
                     lambda on_step: train(testbed, cfg, on_step=on_step, progress=False),
                     update)  # fmt: skip

    controls.button.on_click(on_click)


def online_widget(testbed, runs, *, steps: int = 40, alpha: float = 0.05, lr: float = 3e-4):
    """α and learning-rate sliders and a button that trains a short live run (sequence-level
    entropy bonus, no KL) and overlays its gold and KL on ``runs`` (the cached sweep).

    Nothing trains until the button is pressed, so rendering the widget (papermill) is instant.
    Returns the ``VBox`` (displayed by the caller) and the figure.
    """
    import ipywidgets as w

    a_box = widgets.linear_slider("α", alpha, 0.0, 0.3, 0.01)
    lr_box = widgets.log_slider("lr", lr, 1e-5, 1e-3)
    controls = RunControls(steps)
    fig, update = run_plots.live_history(
        ("gold", "kl_k1"),
        title="live run (black) over the cached sweep",
        background=runs,
        height=380,
    )

    _train_on_click(controls, testbed, update, lambda: OnlineConfig(
        regularizer="entropy", alpha=a_box.value, lr=lr_box.value, steps=steps))  # fmt: skip
    return w.VBox([a_box, lr_box, controls.box, fig]), fig


def anchor_widget(
    testbed, runs, *, steps: int = 40, alpha: float = 0.05, ref_mix: float = 0.5,
    beta: float = 0.2, lr: float = 3e-4,
):  # fmt: skip
    """Chapter 07's knob between the two worlds: an α slider (sequence-level entropy bonus) and a
    λ slider (the per-token KL anchor λ·π_SFT + (1−λ)/V, weight ``beta``), and a button that
    trains a short live run with both and overlays its gold, KL and length on ``runs``.

    λ = 1 with α = 0 is KL-regularised RLHF; λ = 0 anchors every token to 1/V, which is MaxEnt at
    α = β plus a length cost β·log V per token (the per-token uniform V^−|y|, not MaxEnt's uniform
    law over responses). Returns the ``VBox`` and the figure; nothing trains until the click.
    """
    import ipywidgets as w

    a_box = widgets.linear_slider("α", alpha, 0.0, 0.3, 0.01)
    lam_box = widgets.linear_slider("λ", ref_mix, 0.0, 1.0, 0.05)
    controls = RunControls(steps)
    fig, update = run_plots.live_history(
        ("gold", "kl_k1", "length"), title="live run (black) over the cached remedies",
        background=runs, height=380,
    )  # fmt: skip

    _train_on_click(controls, testbed, update, lambda: OnlineConfig(
        regularizer="entropy+kl" if a_box.value > 0 else "kl", alpha=a_box.value, beta=beta,
        ref_mix=lam_box.value, lr=lr, steps=steps))  # fmt: skip
    return w.VBox([a_box, lam_box, controls.box, fig]), fig


def cell_widget(testbed, cells: dict, runs: dict, *, steps: int = 30, seed: int = 0):
    """Chapter 09's 2×2: dropdowns for the method, the pair source and the labeller, a seed box,
    and a button that trains a short live run of that cell (its config with ``steps`` steps and
    a light evaluation) over the cached runs of the same cell (every seed).

    ``cells`` maps ``(method, source, labeller)`` to a config (``rlhf_nb.chapters.ch09.cells``),
    ``runs`` the same keys to cached runs. Nothing trains until the click.
    """
    import dataclasses

    import ipywidgets as w

    from rlhf_nb.runs import contract

    check_int("steps", steps, 1, 10_000)
    methods = sorted({k[0] for k in cells})
    m_box = w.Dropdown(options=methods, value=methods[0], description="method")
    s_box = w.Dropdown(options=["offline", "online"], value="online", description="pairs")
    l_box = w.Dropdown(options=["gold", "proxy"], value="proxy", description="labels")
    seed_box = w.BoundedIntText(value=seed, min=0, max=10_000, description="seed")
    controls = RunControls(steps)
    out = w.VBox()

    def on_click(_):
        key = (m_box.value, s_box.value, l_box.value)
        cfg = dataclasses.replace(cells[key], steps=steps, seed=seed_box.value,
                                  eval_interval=max(1, steps // 5), n_eval_prompts=64,
                                  n_heldout_pairs=64)  # fmt: skip
        fig, update = run_plots.live_history(
            ("gold", "kl_k1"), title=f"live run (black) over the cached runs of {key}",
            background=runs.get(key, []), height=360,
        )  # fmt: skip
        out.children = [fig]
        describe = f"{' / '.join(key)}, seed {seed_box.value}, {steps} steps"
        controls.run(
            describe, lambda on_step: contract.train(testbed, cfg, on_step=on_step), update
        )

    controls.button.on_click(on_click)
    return w.VBox([w.HBox([m_box, s_box, l_box]), w.HBox([seed_box, controls.box]), out])


def offline_widget(
    testbed,
    *,
    steps: int = 60,
    beta: float = 2.0,
    gamma: float = 1.0,
    lr: float = 3e-4,
    seed: int = 0,
    device: str = "cpu",
):
    """Method, β, γ and learning-rate controls and a button that trains a short live run of
    ``steps`` steps from ``testbed``'s SFT policy (:func:`train`, 64 held-out prompts, 128
    held-out pairs, ten evaluations) and redraws its gold reward, KL and margin as it goes.

    Nothing trains until the button is pressed, so rendering the widget (papermill) is instant;
    the button is disabled while a run trains. The other arguments are the controls' initial
    values (β on a log slider over [0.01, 20], γ over [0, 5], lr on a log slider over
    [1e-5, 1e-2]) and the run's ``seed`` and ``device``. Returns the ``VBox`` (displayed by the
    caller) and the figure.
    """
    import ipywidgets as w

    from rlhf_nb.methods.offline import OfflineConfig, train

    check_int("steps", steps, 1)
    method_w = w.Dropdown(options=["simpo", "dpo"], value="simpo", description="method")
    beta_w = widgets.log_slider("β", beta, 0.01, 20.0)
    gamma_w = widgets.linear_slider("γ", gamma, 0.0, 5.0, 0.1)
    lr_w = widgets.log_slider("lr", lr, 1e-5, 1e-2)
    controls = RunControls(steps)
    fig, update = run_plots.live_history(("gold", "kl_k1", "margin"), title="live run")

    def on_click(_):
        cfg = OfflineConfig(
            method=method_w.value, beta=beta_w.value, gamma=gamma_w.value, lr=lr_w.value,
            steps=steps, eval_interval=max(1, steps // 10), n_eval_prompts=64,
            n_heldout_pairs=128, seed=seed, device=device,
        )  # fmt: skip
        controls.run(cfg.label(), lambda on_step: train(testbed, cfg, on_step=on_step), update)

    controls.button.on_click(on_click)
    return w.VBox([method_w, beta_w, gamma_w, lr_w, controls.box, fig]), fig
