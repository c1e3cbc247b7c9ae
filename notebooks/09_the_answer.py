# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version,-jupytext.text_representation.format_version
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · The answer: the data or the labeller?
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rlhf-nb/rlhf-nb/blob/main/notebooks/09_the_answer.ipynb)
#
# The book's question {cite:p}`cagatan2025failure`: **why does reference-free, MaxEnt RLHF fail
# online while SimPO — MaxEnt RL in disguise — works offline?** (In disguise exactly at γ = 0, and
# only with a shortness bonus β/|y| beside the length-normalised temperature, chapter 02, section 6.)
# Chapter 06 compared offline SimPO (fixed pairs labelled by
# the noisy *gold* Bradley–Terry model) with online SimPO (pairs sampled from the current
# policy, labelled by the *proxy* reward model). Two things changed at once: where the pairs come
# from and who labels them. This chapter crosses the two factors — a 2×2 for SimPO and for DPO,
# at several seeds — and reads the result on the frontier plane of chapter 07, gold against KL
# to the SFT policy, so that a cell that moves farther is not mistaken for a cell that does worse.
# Sentences that describe results are printed from the numbers; the checkpoints assert them.

# %% tags=["parameters"]
SMOKE = False  # CI-sized run: the smoke testbed and a few steps
SEED = 0  # seeds Python, NumPy, torch, the testbed and the first run seed
DEVICE = "auto"  # "auto" (CUDA if present), "cpu" or "cuda"
WORKERS = "auto"  # parallel training processes, "auto" for one per core of this machine
N_SEEDS = 3  # run seeds per cell, from SEED up; at least 2, SMOKE uses 2
KL_BUDGETS = [0.25, 0.5, 1.0]  # nats: compare the cells' gold where each first reaches these KLs
LIVE_STEPS = 30  # steps of the live run started by the widget button

# %% [markdown]
# The next cell only does something in Colab: it installs this book's package.

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab only; Colab keeps its own torch
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "rlhf-nb @ git+https://github.com/rlhf-nb/rlhf-nb"], check=True)

# %%
import time

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import rlhf_nb
from rlhf_nb import stats, testbed
from rlhf_nb.chapters import ch05, ch07, ch09, claims
from rlhf_nb.methods.offline import relabel
from rlhf_nb.runs import SeedRuns
from rlhf_nb.theory import exact, frontier, lengthnorm, sequences
from rlhf_nb.viz import frontier_plots, live

ctx = rlhf_nb.setup(seed=SEED, device=DEVICE, smoke=SMOKE)
p = ch09.Params.from_globals(globals())  # checks every parameter before any work starts
PRESET, run_seeds = p.preset, p.run_seeds
pd.set_option("display.width", 160)
print(f"device={ctx.device} seed={ctx.seed} smoke={ctx.smoke} preset={PRESET} seeds={run_seeds}")

# %% [markdown]
# ## 1. The 2×2, for SimPO and for DPO
#
# |  | labels from the gold Bradley–Terry model | labels from the proxy RM |
# |---|---|---|
# | **fixed offline pairs** | chapter 06's offline run | the same pairs, relabelled by the proxy |
# | **pairs sampled from the current policy** | online, each fresh pair labelled by a gold BT draw | chapter 06's online run |
#
# Every cell keeps chapter 06's β, γ, learning rate, steps and batch (`rlhf_nb.chapters.ch09`);
# the corner cells are chapter 06's own cached runs. The offline data were drawn from the SFT
# policy and labelled by the same noisy gold model the online gold cell uses, so "gold labels"
# means the same labeller in both rows.

# %%
tb = testbed.build(PRESET, seed=SEED, cache_dir=ctx.cache_dir)
c09 = ch09.configs(p, tb)  # cells from chapter 06's configs, heads from chapter 05's
grid, explain_cfgs = c09["cells"], c09["explain"]
data = tb.preference_data.select_columns(["prompt", "chosen", "rejected"])
flipped = relabel(tb, data).info.description
print(f"{len(data)} fixed pairs; relabelled by the proxy RM: {flipped}")
t0 = time.perf_counter()  # section 2b's variants and chapter 05's heads train in the same pool
got = ch09.get(p, tb, configs_=c09, cache_dir=ctx.cache_dir)
loaded, explained, h05 = got["cells"], got["explain"], got["heads"]
variants = list(dict.fromkeys(name for name, _ in explain_cfgs))
print(f"{len(grid)} cells and {len(explain_cfgs)} variants x {len(run_seeds)} seeds ready in "
      f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
table = ch09.cell_table(loaded)
summary = table.groupby(["method", "source", "labeller"]).agg(
    gold_gain=("gold_gain", "mean"),
    gold_gain_sd=("gold_gain", "std"),
    kl_final=("kl_final", "mean"),
    kl_final_sd=("kl_final", "std"),
    length_final=("length_final", "mean"),
    eos_final=("eos_final", "mean"),
    n=("seed", "size"),
)
summary.round(3)

# %% [markdown]
# Each cell's path on the frontier plane, gold gain over the SFT policy against $d=\sqrt{\mathrm{KL}}$
# (every seed; chapter 07's tools):

# %%
points = ch07.frontier_points(
    {f"{m} · {src} · {lab} labels": rs for (m, src, lab), rs in loaded.items()}
)
frontier_plots.empirical_frontier_figure(points).show()

# %% [markdown]
# One cell at a time: the slider picks a cell and draws its seeds' paths in black over the two
# cells of chapter 06 (offline gold-labelled SimPO, online proxy-labelled SimPO). In JupyterLab
# or Colab the controls below it train a short live run of any cell at any seed (`LIVE_STEPS`
# steps) over that cell's cached runs; this static page shows the slider figure only.

# %%
ref_names = {"SimPO · offline · gold labels", "SimPO · online · proxy labels"}
frontier_plots.path_slider_figure(
    points[points.method.isin(ref_names) & (points.seed == SEED)],
    points,
    param="cell",
    title="Each cell's paths (black) over chapter 06's two SimPO cells",
).show()
display(live.cell_widget(tb, grid, loaded, steps=LIVE_STEPS, seed=SEED))

# %% [markdown]
# ## 2. Which factor carries the failure?
#
# Each factor's effect with the other held fixed, with a 95 % bootstrap interval over seeds
# (`ch09.effects`): the *source* effect compares online with offline pairs under the same
# labeller; the *labeller* effect compares proxy with gold labels on the same kind of pairs. First
# on the KL the runs end at, then on the gold gain.

# %%
eff_kl = ch09.effects(table, "kl_final")
eff_gold = ch09.effects(table, "gold_gain")
display(eff_kl.round(3), eff_gold.round(3))

# %% [markdown]
# And at matched distance: each run's gold where its KL to SFT first reaches each budget in
# `KL_BUDGETS` (NaN where a run never got that far: a cell that stays close to SFT *cannot*
# over-optimise, which is part of the answer).

# %%
budget_rows = []
for (m, src, lab), rs in loaded.items():
    for r in rs:
        g = ch09.gold_at_kl(r, KL_BUDGETS)
        budget_rows += [{"method": m, "source": src, "labeller": lab, "seed": r.config.seed,
                         "kl budget": b, "gold": v - r.history["gold"].iloc[0]}
                        for b, v in zip(KL_BUDGETS, g)]  # fmt: skip
at_budget = pd.DataFrame(budget_rows)
matched = at_budget.pivot_table(index=["method", "source", "labeller"], columns="kl budget",
                                values="gold", aggfunc=["mean", "count"])  # fmt: skip
matched.round(3)

# %% [markdown]
# ### 2b. The paper's explanation, tested: the target margin γ and the length normalisation
#
# The paper attributes offline SimPO's stability to "implicit data constraints and target
# margins". Chapter 06 swept γ and the length normalisation *offline* only. Here the same
# settings run *online* (self-sampled pairs, proxy labels — the failing cell) at every seed:
# γ = 0 and γ = 4 beside the default γ = 1, and summed log-probs (the constant-α MaxEnt loss,
# β rescaled by the data's mean length as in chapter 06) beside averaged ones. If the margin or
# the normalisation carried the stability, changing them online should change the failure.
# (Length is the usual suspect: R-DPO adds an explicit length term to DPO's logit to keep DPO
# from lengthening its answers {cite:p}`park2024disentangling`. And γ is not part of SimPO's
# exact objective — with γ > 0 the loss is no likelihood, chapter 02 — while IPO derives a
# target margin from a stated objective {cite:p}`azar2023general`.)

# %%
ex_table = ch09.cell_table({("SimPO", src, name): rs for (name, src), rs in explained.items()})
ex_summary = (
    ex_table.groupby(["labeller", "source"], sort=False)
    .agg(
        gold_gain=("gold_gain", "mean"),
        gold_gain_sd=("gold_gain", "std"),
        kl_final=("kl_final", "mean"),
        kl_final_sd=("kl_final", "std"),
        n=("seed", "size"),
    )
    .rename_axis(["variant", "pairs"])
)
ex_summary.round(3)

# %%
online_kl = {name: ex_table[(ex_table.labeller == name) & (ex_table.source == "online")].kl_final
             for name in variants}  # fmt: skip
offline_kl = {name: ex_table[(ex_table.labeller == name) & (ex_table.source == "offline")].kl_final
              for name in variants}  # fmt: skip
for n in variants:
    print(f"{n}: final KL online {online_kl[n].mean():.2f} (seeds {online_kl[n].min():.2f}-"
          f"{online_kl[n].max():.2f}) vs offline {offline_kl[n].mean():.2f} (seeds "
          f"{offline_kl[n].min():.2f}-{offline_kl[n].max():.2f}) nats")  # fmt: skip

# %% [markdown]
# ## 3. Theory that predicts the runs
#
# Two exact statements (float64, `rlhf_nb.theory`), each placed next to what the runs did.
#
# **The KL anchor bounds the drift.** For the KL-regularised optimum
# $\pi_\beta\propto\pi_\text{ref}e^{r/\beta}$,
# $\mathrm{KL}(\pi_\beta\|\pi_\text{ref}) \le (\mathbb{E}_{\pi_\beta}r - \mathbb{E}_\text{ref}r)/\beta
# \le (\max r - \mathbb{E}_\text{ref} r)/\beta$ (`frontier.kl_family_kl_bound`, proved in its
# docstring). For a run, which is not the optimum, the middle term is measurable: the proxy gain
# divided by β. For any policy,
# $\mathrm{KL}(\pi\|\pi_\text{ref}) \le (\mathbb{E}_\pi r - \mathbb{E}_\text{ref} r)/\beta$
# is the same inequality as $\mathbb E_\pi r - \beta\,\mathrm{KL}(\pi\|\pi_\text{ref}) \ge
# \mathbb E_\text{ref} r$. It holds exactly when the run has not lost ground on its own objective
# since the SFT policy, so checked on a run it is a **certificate** of that, not a prediction of
# the drift (`frontier.kl_family_kl_bound`'s docstring). Nor does it bound how much of the proxy's
# gain is real: with a heavy-tailed proxy error a small KL can buy a large proxy gain and no gold
# {cite:p}`kwa2024catastrophic` (chapter 07, section 1c). The MaxEnt family has no such bound
# towards $\pi_\text{SFT}$.

# %%
problem = frontier.misspecified_problem()
exact_rows = []
for beta in (0.05, 0.2, 1.0):
    pi = exact.kl_policy(problem.proxy, problem.ref, beta)
    exact_rows.append({"β": beta, "KL(π_β‖ref)": exact.kl_divergence(pi, problem.ref),
                       "(E_π r − E_ref r)/β": (pi @ problem.proxy - problem.ref @ problem.proxy) / beta,
                       "(max r − E_ref r)/β": frontier.kl_family_kl_bound(problem.proxy, problem.ref, beta)})  # fmt: skip
display(pd.DataFrame(exact_rows).round(3))
bound_rows = []
for key in ("kl_weak", "kl_strong"):
    g = h05[key]
    for seed, s in g.summaries().iterrows():  # the book's one summary rule
        gain = s.proxy_final - s.proxy_start  # reward units
        bound_rows.append({"run": g.config.label(), "seed": seed,
                           "final KL (k1, nats)": s.kl_k1_final,
                           "proxy gain / β (nats)": gain / g.config.beta,
                           "objective gain (reward units)": gain - g.config.beta * s.kl_k1_final})  # fmt: skip
bounds = pd.DataFrame(bound_rows)
held = bounds["objective gain (reward units)"] >= 0
display(Markdown(
    f"The certificate holds for {int(held.sum())} of the {len(bounds)} anchored runs: "
    + ("every one ended with its own objective E r − β·KL above the SFT policy's, so each "
       "one's final KL is at most its proxy gain / β."
       if held.all() else
       "the others (" + ", ".join(f"{r.run} seed {r.seed}: {r['objective gain (reward units)']:+.2f}"
                                  for _, r in bounds[~held].iterrows())
       + ") ended with their own objective *below* the SFT policy's — the noisy proxy gain "
       "did not pay for the KL they drifted — so for them the inequality does not hold and "
       "certifies nothing. A sampled optimiser need not improve its objective; the bound is a "
       "property of the optimum, and of a run only once the run has gained.")
))  # fmt: skip
bounds.round(2)

# %% [markdown]
# **The MaxEnt optimum's far end is uniform, and at a length cap uniform means "never stop".**
# As α → ∞, $\pi_\alpha\propto e^{r/\alpha}$ tends to the uniform distribution over responses,
# whatever the reward (chapter 07 drew where that end sits on the frontier plane). With a
# vocabulary of $V$ tokens and a cap of $L$, there are $(V-1)^{L}$ responses that hit the cap
# without EOS and only $\sum_{n<L}(V-1)^{n}$ that stop earlier, so the uniform policy almost
# never emits EOS (`sequences.truncated_share`, closed form). A sequence-level bonus pays for
# every extra token its sampled surprisal α·(−log π(y_t|y_<t)), on average α·H_tok (at most
# α·log V), which pushes towards exactly that end; length is also the direction RLHF is known to
# drift in with learned reward models {cite:p}`singhal2023long`. A length cost or a token
# average does not remove the end at V ≫ L: their α → ∞ limits still put most of the mass at the
# cap (`sequences.large_alpha_no_eos_share`, next cell).

# %%
V, L = tb.sft_policy.config.vocab_size, tb.max_new_tokens
share = sequences.truncated_share(V, L)
law = sequences.uniform_length_law(V, L)
me = h05["maxent"]
me_len, me_eos = me.final("length"), me.final("eos_rate")
me_runaway = ch05.runaway(me, L)  # chapter 05's seed-by-seed reading of the runs' end
print(f"testbed: V = {V}, cap L = {L} tokens. Uniform over responses: no-EOS share {share:.4f}, "
      f"mean length {law @ np.arange(1, L + 1):.2f}.\n"
      f"{me.config.label()} after {me.config.steps} steps: length {me_len}, EOS rate {me_eos}.\n"
      f"{me_runaway.sentence()}")  # fmt: skip
limit_shares = {b: sequences.large_alpha_no_eos_share(V, L, b) for b in sequences.LIMIT_BONUSES}
print("no-EOS share of the α → ∞ optimum: "
      + ", ".join(f"{b} bonus {s:.3f}" for b, s in limit_shares.items()))  # fmt: skip

# %% [markdown]
# ## 4. The paper's claims against the book's evidence
#
# Each row is assessed by a stated rule that must hold at every seed (`rlhf_nb.chapters.claims`,
# one function per claim, its threshold in its docstring), from the cached runs of chapters
# 02–07 and this chapter's 2×2. Two rows are not the paper's claims but the book's test of its
# explanation: chapter 07 §5 trains the policy on the gold reward itself. The last row reruns
# chapter 05's central contrast on testbeds of three model sizes (chapter 05 §2c).

# %%
sft_drop = h05["rloo"].summaries()
rho = ch05.entropy_correlations([h05[k].runs[0] for k in ("rloo", "maxent", "rloo_slow")])
simpo_cells = SeedRuns(grid[("SimPO", "offline", "gold")], loaded[("SimPO", "offline", "gold")],
                       tuple(run_seeds))  # fmt: skip
toy = sequences.SequenceSpace(3, 4)  # chapter 02's exact space: responses of 1-4 tokens
simpo_check = lengthnorm.simpo_maxent_check(  # at the SimPO run's β and γ
    np.random.default_rng(SEED).standard_normal(toy.size), toy.lengths,
    simpo_cells.config.beta, gamma=simpo_cells.config.gamma,
)  # fmt: skip
p05 = p.shared(ch05.Params)  # chapter 05's scale ladder (section 2c), trained there
ladder = ch05.get_ladder(p05, cache_dir=ctx.cache_dir, verbose=False)
ladder_sizes = ch05.ladder_testbeds(p05, cache_dir=ctx.cache_dir)["policy_params"].to_dict()
truth = claims.maxent_fails_on_truth(
    got["sources"][("gold", "entropy")], got["sources"][("gold", "none")], h05["maxent"], cap=L
)
assessed = [
    claims.maxent_overoptimises(h05["maxent"]),
    claims.kl_unstable(h05["maxent"], h05["kl_strong"], cap=L,
                       cap_exponent=ch05.cap_exponents(got["caps"])["maxent"]),
    claims.even_at_low_lr(h05["rloo"], h05["rloo_slow"]),
    claims.entropy_tracks_hacking(rho[("entropy_term", "gold_drop")],
                                  sft_drop["entropy_start"] - sft_drop["entropy_final"]),
    claims.kl_anchor_stable(h05["kl_strong"], h05["kl_weak"]),
    claims.simpo_offline_stable(simpo_cells),
    claims.simpo_is_maxent(simpo_check),
    truth,
    claims.kl_on_truth(got["sources"][("gold", "kl")], got["sources"][("gold", "none")]),
    claims.across_scales(ch05.ladder_contrasts(ladder), ladder_sizes),
]  # fmt: skip
claims_table = claims.table(assessed)
with pd.option_context("display.max_colwidth", 200):
    display(claims_table)

# %% tags=["results"]
# the claims table for the README and the site's Results page (generated by make book)
display(Markdown("Chapter 09, the paper's claims against the book's evidence:\n\n"
                 + claims_table.to_markdown(index=False)))  # fmt: skip

# %% [markdown]
# ## 5. The answer
#
# Read from the 2×2 above (the sentences are printed from the effects and their bootstrap
# intervals; "carries" means the factor's effect is harmful, beyond seed noise, at both levels
# of the other factor):

# %%
carry_kl = ch09.carriers(eff_kl, harmful=1)
carry_gold = ch09.carriers(eff_gold, harmful=-1)
for method in ("SimPO", "DPO"):
    lines = [f"{method}:"]
    for name, eff, unit in (("final KL to SFT", eff_kl, "nats"), ("gold gain", eff_gold, "")):
        for row in eff[eff.method == method].itertuples():
            verdict = "beyond seed noise" if row.differs else "within seed noise"
            lines.append(f"  {name}: {row.factor} at {row.at}: {row.mean:+.2f} {unit} "
                         f"[{row.lo:+.2f}, {row.hi:+.2f}], {verdict}")  # fmt: skip
    kl_c, gold_c = carry_kl[method], carry_gold[method]
    lines.append(f"  => drift from SFT is carried by: {', '.join(kl_c) or 'neither factor alone'}; "
                 f"lost gold by: {', '.join(gold_c) or 'neither factor alone'}")  # fmt: skip
    print("\n".join(lines))

# %%
# the parts that change with the testbed seed, printed from this SEED's runs
cell_kl = summary["kl_final"]
off_p, on_p = cell_kl[("DPO", "offline", "proxy")], cell_kl[("DPO", "online", "proxy")]
print(f"DPO, proxy labels: final KL {off_p:.2f} nats with fixed pairs, {on_p:.2f} with "
      f"self-sampled ones: here the {'self-sampled' if on_p > off_p else 'fixed'} pairs drift "
      f"more (the book asserts no order for DPO: it differs between testbed seeds)")  # fmt: skip
g0 = online_kl["γ = 0"].mean()
ratio_sum = online_kl["summed log-probs"].mean() / g0
ratio_g4 = online_kl["γ = 4"].mean() / g0
print(f"SimPO online, proxy labels: γ = 4 drifts {ratio_g4:.2f}x as far as γ = 0 (so here the "
      f"larger margin {'did not reduce' if ratio_g4 >= 0.8 else 'reduced'} the drift; the book "
      f"claims neither: the direction changed between testbed seeds); summed "
      f"log-probs {ratio_sum:.1f}x as far as averaged ones at the same γ = 0")  # fmt: skip

# %%
# online MaxEnt RL, tested the same way: the reward source × regulariser design of chapter 07 §5
s_gold = got["sources"][("gold", "entropy")].summaries()
s_proxy = got["sources"][("proxy", "entropy")].summaries()
gain_gold, gain_proxy = (
    stats.Stat.of(x["gold_final"] - x["gold_start"]) for x in (s_gold, s_proxy)
)
len_gold, len_proxy = stats.Stat.of(s_gold["length_final"]), stats.Stat.of(s_proxy["length_final"])
fails_on_truth = truth.status == "confirmed"  # the claims table's rule, not a second copy
display(Markdown(
    f"**Online MaxEnt RL, the same question.** The headline MaxEnt run "
    f"(α = {h05['maxent'].config.alpha:g}) trained on the gold reward itself ends at gold gain "
    f"{gain_gold.fmt()} and length {len_gold.fmt(1)} tokens; on the proxy, gain "
    f"{gain_proxy.fmt()} and length {len_proxy.fmt(1)} of the {L}-token cap. "
    + ("It fails on the truth too: the objective, not the labeller, breaks it."
       if fails_on_truth else
       "On the truth it does not fail, so here too the labeller carries the failure: the entropy "
       "bonus, with no anchor, is what lets the policy go where the proxy is wrong (long, "
       "unfinished summaries the proxy never saw), and the true reward charges for going there.")
))  # fmt: skip

# %% [markdown]
# **The answer, at toy scale.** Online sampling is not what breaks reference-free preference
# optimisation: with gold labels, pairs sampled from the current policy gave at least as much
# gold as the fixed pairs, for SimPO and for DPO. The labeller is: the proxy reward model lowers
# gold on fresh pairs by a wide margin and on fixed pairs by less, if at all (whether that smaller cost is
# beyond seed noise is printed above). What online sampling does is *amplify* a bad labeller: for
# SimPO, only the cell that has both — self-sampled pairs labelled by the proxy — runs far from
# the SFT policy and loses gold, and it runs much farther than DPO's cell with both (DPO's
# β·log(π/π_SFT) anchors it). With that anchor no DPO cell runs far, and which of DPO's two
# proxy-labelled cells drifts more — fixed or self-sampled pairs — changed between the testbed
# seeds the book was run at (SEED 0, 1, 2), so no order is claimed for DPO (this SEED's is
# printed above). Of the paper's two explanations, the target margin γ does not prevent the
# online drift — every γ tried drifts more than twice as far as any offline run; whether a larger
# margin at least *shrinks* it changed with the testbed (γ = 4 drifted at least 0.8x as far as
# γ = 0 at SEED 0 and 1, a quarter as far at SEED 2; this SEED's ratio is printed above) — and
# the length normalisation
# mitigates without preventing: online, the summed loss — the constant-α MaxEnt loss — drifts
# farther than the averaged one at the same γ = 0 (by the factor printed above, which varies
# several-fold with the testbed), yet the averaged one still drifts far beyond any offline run.
# The fixed data's job is to keep a bad labeller from being queried where the policy has
# wandered. The checkpoints below assert each of these sentences at every run seed.
#
# What this does and does not say. The 2×2 separates *who labels* from *where the pairs come
# from* for the two preference losses at one β, one γ and one learning rate on the tiny testbed;
# the labels of the proxy cells come from a reward model trained on the very pairs the offline
# cells use. The online MaxEnt RL runs of chapter 05 differ from online SimPO in a third way — a
# scalar reward with an entropy bonus rather than pairwise preferences; of the cells here, the
# online summed-log-prob one (the preference form of the same constant-α MaxEnt objective)
# drifts farther than its length-averaged twin at every seed (asserted), and usually farthest of
# all (printed: at some seeds an online proxy-labelled SimPO seed drifts as far). Nor do the stable offline cells say that fixed
# pairs always suffice: with larger models direct alignment over-optimises offline too
# {cite:p}`rafailov2024scaling`.
#
# **Open at toy scale**, and what chapter 08's GPU path can test: whether the same factor carries
# the failure with Pythia policies and a learned TL;DR reward model, at the paper's learning rates
# (1e-6, 1e-7); and whether the remedies of chapter 07 keep their order there.
#
# ## Glossary
#
# | term | meaning here | introduced in |
# |---|---|---|
# | α | entropy temperature of MaxEnt RL, E[r] + α·H(π); reward units per nat | [chapter 01](01_maxent_optimal_policy.ipynb) |
# | β | KL coefficient of KL-RL (and DPO's β); SimPO's β scales an average log-prob | [chapter 01](01_maxent_optimal_policy.ipynb), [02](02_simpo_as_maxent.ipynb) |
# | γ | SimPO's target reward margin | [chapter 02](02_simpo_as_maxent.ipynb) |
# | k1, k2, k3 | estimators of KL(π‖π_ref) from samples of π: k1 = log(π/π_ref), k2 = ½(log ratio)², k3 = ρ − 1 − log ρ with ρ = π_ref/π | [chapter 03](03_estimators_and_length.ipynb) |
# | gold, proxy | the task's true reward, and the learned reward model optimised online | [chapter 04](04_testbed.ipynb) |
# | win rate | fraction of held-out prompts where the policy's summary beats the reference under the gold reward | [chapter 04](04_testbed.ipynb) |
# | RLOO | REINFORCE with a leave-one-out baseline over k samples per prompt, the online update | [chapter 05](05_online_maxent_vs_kl.ipynb) |
# | MaxEnt RL | maximise E[r] + α·H(π): no reference policy | [chapter 01](01_maxent_optimal_policy.ipynb) |
# | KL-RL | maximise E[r] − β·KL(π‖π_SFT) | [chapter 01](01_maxent_optimal_policy.ipynb) |
# | SimPO | −log σ(β·avg log π(y_w) − β·avg log π(y_l) − γ), reference-free | [chapter 02](02_simpo_as_maxent.ipynb) |
# | d | √KL(π‖π_SFT), the frontier's x-axis, in √nats | [chapter 07](07_overoptimization.ipynb) |
# | labeller | who decides which response of a pair wins: the gold Bradley–Terry model or the proxy RM | this chapter |
# | online / offline | pairs sampled from the current policy / a fixed data set drawn once from π_SFT | [chapter 06](06_offline_simpo_vs_dpo.ipynb) |

# %% [markdown]
# ## Checkpoints

# %%
# exact: the KL bound holds for the optimum, and the uniform end never stops at this cap
er = pd.DataFrame(exact_rows)
assert (er["KL(π_β‖ref)"] <= er["(E_π r − E_ref r)/β"] + 1e-12).all()
assert (er["(E_π r − E_ref r)/β"] <= er["(max r − E_ref r)/β"] + 1e-12).all()
assert abs(law.sum() - 1) < 1e-12 and share > 0.9, share
# SimPO (γ = 0) is J'-BT exactly on unequal lengths; the temperature alone and one α are not
# (observed 0.86-1.01 and 0.48-0.65 nats at SEED 0-9; chapter 02 asserts > 0.3 and > 0.1)
assert simpo_check.jprime_gap < 1e-9, simpo_check
assert simpo_check.no_bonus_gap > 0.3 and simpo_check.constant_alpha_gap > 0.1, simpo_check
# at V ≫ L neither a length cost nor a token average removes the cap from the α → ∞ end
# (0.988, 0.883, 0.826 at V = 84, L = 16)
assert limit_shares["sequence"] > limit_shares["token_averaged"] > limit_shares["length"] > 0.5
assert set(claims_table.status) <= set(claims.STATUSES)
assert all(len(v) == len(run_seeds) for v in loaded.values())

# %%
# measured, at every seed (margins: the observed spread is in the tables above)
if not SMOKE:
    kl_of = {c: table[(table.method == c[0]) & (table.source == c[1]) & (table.labeller == c[2])]
             .set_index("seed") for c in loaded}  # fmt: skip
    worst = kl_of[("SimPO", "online", "proxy")]
    others = [kl_of[c] for c in loaded if c[0] == "SimPO" and c != ("SimPO", "online", "proxy")]
    assert worst.kl_final.min() > 2 * max(o.kl_final.max() for o in others)  # observed 3.1x-5.8x
    assert worst.gold_gain.max() < min(o.gold_gain.min() for o in others) - 0.5  # gap 0.97-4.0
    dpo_worst = kl_of[("DPO", "online", "proxy")]
    assert (dpo_worst.kl_final < worst.kl_final).all()  # the reference anchor limits the drift
    # Thresholds set from SEED 0, 1 and 2 (3 testbeds x 3 run seeds; values in the comments).
    for m in ("SimPO", "DPO"):  # online pairs with gold labels are not worse than fixed ones
        row = eff_gold[(eff_gold.method == m) & (eff_gold["at"] == "gold labels")].iloc[0]
        assert row.lo > -0.1, row  # observed lower ends +0.007..+0.15
        lab = eff_gold[(eff_gold.method == m) & eff_gold.factor.str.startswith("labeller")]
        # proxy labels lower gold on fresh pairs (asserted next); on fixed pairs the sign is not
        # asserted: SimPO's was −0.015 at SEED 0 on the first machine and +0.10 [−0.02, +0.20]
        # (within seed noise) at SEED 0 on the 2026-12-02 one — the prose says "by less, if at all"
        print(
            f"{m}, labeller effect on fixed pairs: {lab[lab['at'] == 'offline pairs'].iloc[0]['mean']:+.3f}"
        )
        on = lab[lab["at"] == "online pairs"].iloc[0]
        assert on.hi < 0, on  # on fresh pairs beyond seed noise (upper ends -0.34..-4.7)
    means = summary.loc["SimPO"]  # DPO: no order claimed, it changed between testbed seeds
    assert means.kl_final.idxmax() == ("online", "proxy")  # SimPO's cell with both drifts most
    assert means.gold_gain.idxmin() == ("online", "proxy")  # and loses the most gold
    for name, v in online_kl.items():  # no variant removes the online drift (observed >= 2.5x)
        off = ex_table[(ex_table.labeller == name) & (ex_table.source == "offline")].kl_final
        assert v.min() > 2 * off.max(), (name, v.tolist(), off.tolist())
    # an observation, not a checkpoint: "a larger margin does not reduce the drift" (γ = 4 / γ = 0
    # at least 0.8 in means; 1.17-1.45 on the first machines) failed at hold-out SEED 2 on the
    # 2026-12-03 machine: 0.27 (γ = 4 8.6 nats, γ = 0 31.8, γ = 1 9.7). What holds at every seed
    # is the loop above: no γ removes the online drift. The ratio is printed in the cell of 2b.
    # summed log-probs drift farther than averaged ones at the same γ = 0 (observed 1.2x-6x
    # seed by seed; at SEED 0 on the 2026-12-03 machine only 1.07x: 23.0 against 21.4 nats)
    assert online_kl["summed log-probs"].min() > online_kl["γ = 0"].max()
    # an observation, not a checkpoint: "farther than any cell of the 2x2" (every summed seed
    # above every 2x2 seed, observed 1.2x-4.9x on the first machines) failed at SEED 0 on the
    # 2026-12-03 machine: summed 23.0-27.9 nats, the online proxy-labelled SimPO cell 11.8-28.1
    print(f"observation: summed log-probs' least final KL {online_kl['summed log-probs'].min():.1f}"
          f" nats, the 2x2's largest {table.kl_final.max():.1f} (farther than every 2x2 seed: "
          f"{bool(online_kl['summed log-probs'].min() > table.kl_final.max())})")  # fmt: skip
    # the KL certificate (every anchored run kept its own objective above the SFT policy's) is
    # printed above, not asserted: it held at SEED 0, and at SEED 1 on the 2026-12-02 machine
    # two β = 0.2 runs ended 0.19-0.20 reward units below (a hold-out failure, issue 26)
    # the α → ∞ end, no EOS at the cap: "every seed at >= 0.9 L with EOS < 0.1" held at testbeds
    # 0-2 and failed at hold-out testbed 3 (one MaxEnt seed had not left the SFT length by step
    # 200), so it is printed above seed by seed and "most seeds collapse" asserted (chapter 05)
    assert me_runaway.most_collapsed, me_runaway.table

# %% [markdown]
# ## Exercises
#
# Each exercise uses the package; its worked solution is the collapsed cell below it (click to
# show it on the site). The solutions run with the chapter, so they cannot rot.
#
# **1. The interaction.** From `table` (one row per cell and seed), compute for SimPO and DPO the
# interaction of the 2×2 on the final KL: (online·proxy − online·gold) − (offline·proxy −
# offline·gold), seed by seed. A value far from 0 means the labeller's harm depends on where
# the pairs come from. Check it against `ch09.effects`.

# %% tags=["hide-input"]
# Solution 1: the interaction is the labeller effect at online pairs minus the one at offline pairs.
pivot = table.pivot_table(index=["method", "seed"], columns=["source", "labeller"],
                          values="kl_final")  # fmt: skip
inter = ((pivot[("online", "proxy")] - pivot[("online", "gold")])
         - (pivot[("offline", "proxy")] - pivot[("offline", "gold")]))  # fmt: skip
print(inter.groupby("method").agg(["mean", "min", "max"]).round(2).to_string())
lab = eff_kl[eff_kl["factor"].str.startswith("labeller")].set_index(["method", "at"])["mean"]
for m in inter.index.get_level_values("method").unique():
    expected_inter = lab[(m, "online pairs")] - lab[(m, "offline pairs")]
    assert abs(inter[m].mean() - expected_inter) < 1e-9, (m, inter[m].mean(), expected_inter)

# %% [markdown]
# **2. Gold at a KL budget you choose.** With `ch09.gold_at_kl`, read each SimPO cell's gold
# where its runs first reach 0.75 nats of KL to SFT (a budget between the chapter's). Which cells
# never spend that much, and what does that say about comparing them at matched KL?

# %% tags=["hide-input"]
# Solution 2: cells whose KL stays below the budget have no value there (NaN): at matched KL only
# the cells that move can be compared; the ones that stay put are "stable" by not moving.
rows_b = []
for (method, source, labeller), rs in loaded.items():
    if method != "SimPO":
        continue
    for r in rs:
        g = ch09.gold_at_kl(r, [0.75])
        rows_b.append({"cell": f"{source}·{labeller}", "seed": r.config.seed,
                       "gold at 0.75 nats": float(np.asarray(g).ravel()[0])})  # fmt: skip
budget = pd.DataFrame(rows_b).groupby("cell")["gold at 0.75 nats"].agg(["mean", "count"])
print(budget.round(3).to_string())
assert len(budget) == 4
