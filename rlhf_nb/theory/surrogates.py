"""What the online loop's detached surrogates ascend, summed exactly on a sequence space
(chapters 03, 05, 07).

The RLOO loop (:mod:`rlhf_nb.methods.rloo`) never differentiates an objective. It samples
y ~ π, holds the samples (and anything marked detached) fixed, and differentiates a surrogate.
Its expected gradient is a sum over the :class:`~rlhf_nb.theory.sequences.SequenceSpace`, so
here every surrogate's expected gradient is computed *exactly* (float64 autograd, sampling
weights π(y) detached) and set against the gradients of the objectives it is said to optimise:

* a **shaped reward** R(y), detached, reaches θ only through REINFORCE: E_π[R ∇log π(y)]
  (:func:`score_function_gradient`). With R = r − c(y)·log π(y) this is ∇E_π[r − c log π] only
  when E_π[c ∇log π] = 0, i.e. when c is one constant. The ``entropy_norm`` bonus has
  c(y) = α/|y|, and then (:func:`entropy_norm_gradients`)

      E_π[(r − (α/|y|) log π) ∇log π] = ∇ E_π[r + (α/|y|)(1 − log π)] =: ∇J′,

  because ∇E_π[f] = E_π[f ∇log π] + E_π[∇f] and ∇f = −(α/|y|)∇log π. J′ is SimPO's exact
  objective (chapter 02): the remedy optimises SimPO's objective online, a length-normalised
  entropy bonus plus a shortness bonus α/|y|, not E_π[r − (α/|y|) log π].
* a **per-token KL term in the loss**, differentiated with the visited states held fixed
  (GRPO's k3, the loop's ``kl_loss``), gives a *state-frozen* gradient
  (:func:`kl_placement_gradients`): k2 gives Σ_s ρ(s) ∇KL(π(·|s) ‖ ref(·|s)) with the reach
  probabilities ρ held fixed, k3 the same for the forward KL(ref(·|s) ‖ π(·|s)), k1 zero.
  The sequence KL's gradient has a second term, Σ_s ∇ρ(s)·KL_s (moving mass between states),
  which no per-token loss term sees. Only k1 summed over the sequence and paid in the reward
  (the loop's ``kl``) gives ∇KL(π‖ref) exactly (Tang & Munos 2025 make the same two points).

Logits tables are float64 torch tensors of shape (P, V) (:attr:`SequenceSpace.shape`);
gradients have the same shape. Rewards are (S,) arrays in reward units.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhf_nb.core import check_choice, check_int, check_range
from rlhf_nb.theory import estimators

PLACEMENTS = ("reward", "loss")
TARGETS = ("sequence", "state_frozen", "state_frozen_forward", "sequence_forward")


def _logits(space, logits) -> torch.Tensor:
    """A fresh float64 (P, V) tensor of ``logits`` (array or tensor), checked by the space."""
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().cpu().numpy()
    return torch.tensor(space.check_logits(logits), dtype=torch.float64)


def _step_log_probs(space, theta: torch.Tensor) -> torch.Tensor:
    """log π(y_t | y_<t) at every step of every sequence, (S, L), 0 where masked."""
    lp = torch.log_softmax(theta, dim=1)[space.step_prefix, space.step_token]
    return torch.where(torch.as_tensor(space.mask), lp, torch.zeros((), dtype=lp.dtype))


def sequence_log_probs(space, theta: torch.Tensor) -> torch.Tensor:
    """log π(y) = Σ_t log π(y_t|y_<t), (S,), differentiable in ``theta`` (P, V)."""
    return _step_log_probs(space, theta).sum(dim=1)


def _grad(space, logits, surrogate) -> torch.Tensor:
    theta = _logits(space, logits).requires_grad_(True)
    (g,) = torch.autograd.grad(surrogate(theta), theta)
    return g


def objective_gradient(space, logits, per_sequence) -> torch.Tensor:
    """∇_θ E_π[f(y)] with nothing detached: the gradient of an objective, exactly.

    ``per_sequence(log_pi, lengths)`` returns f(y), (S,), from the differentiable log π(y) (S,)
    and the lengths |y| (S,) (tokens, EOS included). Returns (P, V)."""
    lengths = torch.as_tensor(space.lengths, dtype=torch.float64)

    def surrogate(theta):
        lp = sequence_log_probs(space, theta)
        return (lp.exp() * per_sequence(lp, lengths)).sum()

    return _grad(space, logits, surrogate)


def score_function_gradient(space, logits, shaped) -> torch.Tensor:
    """E_π[R(y) ∇_θ log π(y)]: the expected REINFORCE gradient of a detached shaped reward.

    ``shaped(log_pi, lengths)`` returns R(y), (S,); it is detached before use, as the loop's
    shaped reward is (a baseline such as RLOO's changes the variance, not this expectation).
    Returns (P, V)."""
    lengths = torch.as_tensor(space.lengths, dtype=torch.float64)

    def surrogate(theta):
        lp = sequence_log_probs(space, theta)
        reward = shaped(lp.detach(), lengths).detach()
        return (lp.exp().detach() * reward * lp).sum()

    return _grad(space, logits, surrogate)


def entropy_norm_gradients(space, logits, r, alpha: float) -> dict[str, torch.Tensor]:
    """The ``entropy_norm`` remedy's expected update against the two objectives it could mean.

    * ``"loop"``: E_π[(r − (α/|y|) log π) ∇log π], what the loop ascends (module docstring);
    * ``"documented"``: ∇E_π[r − (α/|y|) log π], the objective its name suggests;
    * ``"j_prime"``: ∇E_π[r + (α/|y|)(1 − log π)], SimPO's objective J′ (chapter 02).

    ``"loop"`` equals ``"j_prime"`` to rounding, not ``"documented"`` unless all lengths are
    equal. Args: r, rewards (S,); alpha >= 0 (reward units per nat/token). Returns (P, V) each.
    """
    check_range("alpha", alpha, 0.0, None)
    r = torch.as_tensor(np.asarray(r, dtype=np.float64))
    if r.shape != (space.size,):
        raise ValueError(f"r must have shape ({space.size},), got {tuple(r.shape)}")
    return {
        "loop": score_function_gradient(space, logits, lambda lp, n: r - alpha / n * lp),
        "documented": objective_gradient(space, logits, lambda lp, n: r - alpha / n * lp),
        "j_prime": objective_gradient(space, logits, lambda lp, n: r + alpha / n * (1 - lp)),
    }


def kl_placement_gradient(space, logits, ref_logits, estimator: str, placement: str):
    """Expected gradient of a per-token KL estimator k(y_t) placed in the reward or the loss.

    * ``"reward"``: Σ_t k_t, detached, paid as a reward: E_π[(Σ_t k_t) ∇log π(y)] (the loop's
      ``kl`` with k1);
    * ``"loss"``: Σ_t k_t differentiated with the visited states held fixed (the loop's
      ``kl_loss`` with k3, up to its token-mean scale 1/E|y|): E_π[Σ_t ∇k_t].

    k_t compares log π(y_t|y_<t) with log ref(y_t|y_<t) (:mod:`~rlhf_nb.theory.estimators`).
    Returns (P, V)."""
    check_choice("estimator", estimator, estimators.ESTIMATORS)
    check_choice("placement", placement, PLACEMENTS)
    k = {"k1": estimators.k1, "k2": estimators.k2, "k3": estimators.k3}[estimator]
    ref_steps = _step_log_probs(space, _logits(space, ref_logits))
    mask = torch.as_tensor(space.mask)

    def surrogate(theta):
        steps = _step_log_probs(space, theta)
        per_seq = torch.where(mask, k(steps, ref_steps), torch.zeros((), dtype=steps.dtype))
        per_seq = per_seq.sum(dim=1)
        lp = steps.sum(dim=1)
        w = lp.exp().detach()
        return (w * per_seq.detach() * lp).sum() if placement == "reward" else (w * per_seq).sum()

    return _grad(space, logits, surrogate)


def kl_target_gradient(space, logits, ref_logits, target: str) -> torch.Tensor:
    """The gradients a KL placement may be compared with, computed over prefixes (P, V):

    * ``"sequence"``: ∇KL(π‖ref) over whole sequences;
    * ``"state_frozen"``: Σ_s ρ(s) ∇KL(π(·|s)‖ref(·|s)), ρ = reach probabilities, held fixed;
    * ``"state_frozen_forward"``: Σ_s ρ(s) ∇KL(ref(·|s)‖π(·|s)), ρ (under π) held fixed;
    * ``"sequence_forward"``: ∇KL(ref‖π) over whole sequences (= Σ_s ρ_ref(s) ∇KL(ref_s‖π_s)).

    The per-prefix routes do not enumerate sequences' steps, so they check
    :func:`kl_placement_gradient` independently."""
    check_choice("target", target, TARGETS)
    ref = _logits(space, ref_logits)
    ref_tok = torch.log_softmax(ref, dim=1)
    visits = torch.as_tensor(space.visits)

    def surrogate(theta):
        tok = torch.log_softmax(theta, dim=1)
        if target == "sequence":
            lp, lq = sequence_log_probs(space, theta), sequence_log_probs(space, ref)
            return (lp.exp() * (lp - lq)).sum()
        if target == "sequence_forward":
            lp, lq = sequence_log_probs(space, theta), sequence_log_probs(space, ref)
            return (lq.exp() * (lq - lp)).sum()
        rho = sequence_log_probs(space, theta).exp().detach() @ visits
        if target == "state_frozen":
            per_state = (tok.exp() * (tok - ref_tok)).sum(dim=1)
        else:
            per_state = (ref_tok.exp() * (ref_tok - tok)).sum(dim=1)
        return (rho * per_state).sum()

    return _grad(space, logits, surrogate)


def relative_error(g: torch.Tensor, target: torch.Tensor) -> float:
    """|g − target| / |target| (Frobenius norms), a float."""
    return float((g - target).norm() / target.norm())


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two gradients (flattened), a float; NaN when one is zero to rounding (its
    norm below 1e-12 of the other's)."""
    na, nb = float(a.norm()), float(b.norm())
    if min(na, nb) <= 1e-12 * max(na, nb):
        return float("nan")
    return float((a * b).sum()) / (na * nb)


def kl_placements_table(space, logits, ref_logits):
    """Every (estimator, placement) of :func:`kl_placement_gradient` against every target of
    :func:`kl_target_gradient`, as a ``pandas`` DataFrame indexed by (estimator, placement):
    ``rel_error_<target>`` = |g − g_target| / |g_target| and ``cosine_sequence``, the cosine
    with ∇KL(π‖ref) over sequences (NaN for a zero gradient)."""
    import pandas as pd

    targets = {t: kl_target_gradient(space, logits, ref_logits, t) for t in TARGETS}
    rows = []
    for est in estimators.ESTIMATORS:
        for place in PLACEMENTS:
            g = kl_placement_gradient(space, logits, ref_logits, est, place)
            row = {"estimator": est, "placement": place}
            for t, gt in targets.items():
                row[f"rel_error_{t}"] = relative_error(g, gt)
            row["cosine_sequence"] = cosine(g, targets["sequence"])
            rows.append(row)
    return pd.DataFrame(rows).set_index(["estimator", "placement"])


def placement_cosines(space, *, n_pairs: int, scale: float, rng):
    """How far the per-token loss placements are from ∇KL(π‖ref), over random pairs.

    Each pair draws ref logits N(0, 1) and π logits = ref logits + ``scale``·N(0, 1) (shape
    (P, V)); ``scale`` sets how far π is from ref. Returns a DataFrame, one row per pair:
    ``kl`` = KL(π‖ref) (nats per sequence) and the cosines with ∇KL(π‖ref) of k2 and k3 in the
    loss (``cos_k2_loss``, ``cos_k3_loss``) and of the state-frozen gradient (``cos_frozen``,
    equal to ``cos_k2_loss``: :func:`kl_placement_gradient`)."""
    import pandas as pd

    check_int("n_pairs", n_pairs, 1)
    check_range("scale", scale, 0.0, None, low_inclusive=False)
    rows = []
    for _ in range(n_pairs):
        ref = space.random_logits(rng, 1.0)
        pi = ref + space.random_logits(rng, scale)
        seq = kl_target_gradient(space, pi, ref, "sequence")
        rows.append({
            "kl": space.kl(pi, ref),
            "cos_k2_loss": cosine(kl_placement_gradient(space, pi, ref, "k2", "loss"), seq),
            "cos_k3_loss": cosine(kl_placement_gradient(space, pi, ref, "k3", "loss"), seq),
            "cos_frozen": cosine(kl_target_gradient(space, pi, ref, "state_frozen"), seq),
        })  # fmt: skip
    return pd.DataFrame(rows)
