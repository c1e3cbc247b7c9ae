"""Run many online configs in parallel processes, each cached on disk (notebook 05's sweep).

A run is cached under ``<cache>/runs/online/<config_key(config, testbed folder)>``
(:func:`rlhf_nb.runs.run_path`) by :func:`rlhf_nb.runs.cached_training`, so the book re-renders
without re-training and a reader can re-run any single curve with :func:`cached_train`. Workers
are separate processes (``spawn``), each pinned to one torch thread: on a 2-core machine two
single-thread workers beat one two-thread process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rlhf_nb.online_config import OnlineConfig
from rlhf_nb.runs import Run, cached_training

KIND = "online"


def cached_train(testbed, config: OnlineConfig, *, cache_dir=None, refresh: bool = False) -> Run:
    """:func:`rlhf_nb.online.train`, cached (finished or diverged runs only; no weights)."""
    from rlhf_nb.online import train

    return cached_training(
        KIND,
        testbed,
        config,
        lambda: train(testbed, config, progress=False),
        cache_dir=cache_dir,
        refresh=refresh,
    )


def run_sweep(
    configs: Sequence[OnlineConfig],
    *,
    preset: str = "tiny",
    testbed_seed: int = 0,
    workers: int = 2,
    cache_dir: str | Path | None = None,
    refresh: bool = False,
    verbose: bool = True,
) -> list[Run]:
    """Train every config not cached yet, ``workers`` at a time in spawned processes, then load
    and return all runs in the order given (without policies): :func:`rlhf_nb.seeds.train_all`,
    the one process pool of the book, for online configs.

    Args:
        configs: the runs of the sweep.
        preset, testbed_seed: which testbed (``rlhf_nb.testbed.build``); built once, cached.
        workers: parallel processes (1 runs in this process, e.g. for debugging).
        refresh: retrain even when cached.
    """
    from rlhf_nb.seeds import train_all

    return train_all(
        configs, preset=preset, testbed_seed=testbed_seed, workers=workers,
        cache_dir=cache_dir, refresh=refresh, verbose=verbose,
    )  # fmt: skip


# The book's sweep (notebook 05): learning rates, entropy coefficients and KL coefficients.
LRS = (3e-4, 1e-4)  # "aggressive" and "conservative" for the tiny policy
ALPHAS = (0.0, 0.02, 0.05, 0.2)  # sequence-level entropy bonus, 0 = no regulariser at all
# the conservative rate runs 3x longer, so it gets the two α the chapter's claims need: plain
# RLOO (α = 0) and the headline MaxEnt α ("even at low learning rates")
ALPHAS_LO = (0.0, 0.05)
BETAS = (0.05, 0.2)  # KL-regularised baselines (k1 in the reward)
STEPS = {3e-4: 200, 1e-4: 600}  # the conservative rate needs a 3x longer run to collapse


def book_configs(smoke: bool = False, seed: int = 0) -> dict[str, list[OnlineConfig]]:
    """The runs of notebook 05: ``{"alpha@<lr>": [α sweep], "kl": [β sweep], "token": [...]}``
    (:data:`ALPHAS` at the higher rate, :data:`ALPHAS_LO` at the lower one).

    SMOKE: 8 steps of 8 prompts x 4, two α, one β, so the notebook runs in seconds.
    """
    if smoke:
        small = dict(steps=8, prompts_per_step=8, eval_interval=4, n_eval_prompts=16, seed=seed)
        lrs, alphas, betas, steps = LRS, (0.0, 0.2), (0.05,), {lr: 8 for lr in LRS}
        alphas_lo = alphas
    else:
        small, lrs, alphas, betas, steps = dict(seed=seed), LRS, ALPHAS, BETAS, STEPS
        alphas_lo = ALPHAS_LO
    out = {
        f"alpha@{lr:g}": [
            OnlineConfig(regularizer="entropy", alpha=a, lr=lr, **{**small, "steps": steps[lr]})
            for a in (alphas if lr == lrs[0] else alphas_lo)
        ]
        for lr in lrs
    }
    hi = lrs[0]
    out["kl"] = [
        OnlineConfig(regularizer="kl", beta=b, lr=hi, **{**small, "steps": steps[hi]})
        for b in betas
    ]
    out["token"] = [
        OnlineConfig(
            regularizer="entropy_token", alpha=0.05, lr=hi, **{**small, "steps": steps[hi]}
        )
    ]
    return out


MAXENT_ALPHA = 0.05  # the headline MaxEnt run: a sequence-level entropy bonus, no anchor


def headline_configs(smoke: bool = False, seed: int = 0) -> dict[str, OnlineConfig]:
    """The settings chapter 05 runs at several seeds (``rlhf_nb.seeds.run_seeds``), each one of
    :func:`book_configs` (so their first seed is the sweep's own run, trained once):

    ``"rloo"`` α = 0 (plain RLOO on the proxy) and ``"maxent"`` α = :data:`MAXENT_ALPHA` at the
    higher rate; ``"kl_weak"`` / ``"kl_strong"`` the smallest and largest β; ``"rloo_slow"``
    α = 0 at the lower rate. SMOKE: the smoke sweep's α > 0 and its one β (weak = strong).
    """
    groups = book_configs(smoke=smoke, seed=seed)
    hi, lo = groups[f"alpha@{LRS[0]:g}"], groups[f"alpha@{LRS[1]:g}"]
    maxent = next(c for c in hi if c.alpha == (hi[-1].alpha if smoke else MAXENT_ALPHA))
    return {
        "rloo": hi[0],
        "maxent": maxent,
        "kl_weak": groups["kl"][0],
        "kl_strong": groups["kl"][-1],
        "rloo_slow": lo[0],
    }


def central_contrast(
    maxent,
    anchored,
    *,
    smooth: int = 3,
    min_fall: float = 2.0,
    min_kl_ratio: float = 5.0,
    max_anchored_fall: float = 0.75,
    min_gold_gap: float = 3.0,
) -> list[str]:
    """The seed-robust facts of chapter 05's central contrast, checked seed by seed; returns the
    statements that fail (an empty list: every one held for every seed).

    ``maxent`` and ``anchored`` are :class:`rlhf_nb.seeds.SeedRuns` of an unanchored MaxEnt
    setting and a KL-anchored one, seeds paired by position. For every seed:

    1. the MaxEnt run's gold ends more than ``min_fall`` below its peak (it over-optimises);
    2. its final KL to SFT is more than ``min_kl_ratio`` times the anchored run's;
    3. the anchored run's gold ends less than ``max_anchored_fall`` below its peak (near its best);
    4. the anchored run's final gold is more than ``min_gold_gap`` above the MaxEnt run's.

    Gold peak and final come from :func:`rlhf_nb.run_plots.summary_table` with ``smooth``.
    Used by chapter 05's checkpoints and by ``tests/test_science.py`` (CI), which also shows that
    the check fails once the anchor is removed (β = 0).
    """
    if maxent.n != anchored.n:
        raise ValueError(f"need the same seeds for both settings, got {maxent.n} and {anchored.n}")
    m, a = maxent.summaries(smooth=smooth), anchored.summaries(smooth=smooth)
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


def live_widget(testbed, runs, *, steps: int = 40, alpha: float = 0.05, lr: float = 3e-4):
    """α and learning-rate sliders and a button that trains a short live run (sequence-level
    entropy bonus, no KL) and overlays its gold and KL on ``runs`` (the cached sweep).

    Nothing trains until the button is pressed, so rendering the widget (papermill) is instant.
    Returns the ``VBox`` (displayed by the caller) and the figure.
    """
    import ipywidgets as w

    from rlhf_nb import run_plots, widgets
    from rlhf_nb.online import train

    a_box = w.FloatSlider(value=alpha, min=0.0, max=0.3, step=0.01, description="α")
    lr_box = widgets.log_slider("lr", lr, 1e-5, 1e-3)
    button = w.Button(description=f"train {steps} steps")
    fig, update = run_plots.live_history(
        ("gold", "kl_k1"),
        title="live run (black) over the cached sweep",
        background=runs,
        height=380,
    )

    def on_click(_):
        button.disabled = True
        try:
            cfg = OnlineConfig(
                regularizer="entropy", alpha=a_box.value, lr=lr_box.value, steps=steps
            )
            run = train(testbed, cfg, callback=update, progress=False)
            update(run.history)
        finally:
            button.disabled = False

    button.on_click(on_click)
    return w.VBox([w.HBox([a_box, lr_box, button]), fig]), fig
