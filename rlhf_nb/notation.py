"""One symbol, one meaning: the book's notation table (chapter 00), tied to the config fields.

Each :class:`Symbol` names the config fields that carry it; ``tests/test_project.py`` checks that
every field exists and that its documented unit contains :attr:`Symbol.unit`, so the table and the
configs cannot drift apart. α is always an entropy temperature and β a KL coefficient, except for
DPO's and SimPO's β, which keep the papers' letter and say which β they are.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Symbol:
    """One row of the notation table.

    Attributes:
        symbol: as printed in the book.
        meaning: what it is, in one line.
        unit: its unit (the configs' field docs contain this text).
        fields: ``"Class.field"`` names of the config fields that carry it.
        chapters: where it appears.
    """

    symbol: str
    meaning: str
    unit: str
    fields: tuple[str, ...]
    chapters: str


SYMBOLS = (
    Symbol(
        "α (sequence)",
        "entropy temperature of E r + α·H(π): the MaxEnt bonus, paid in the "
        "reward as -α·log π(y|x)",
        "reward units per nat",
        ("OnlineConfig.alpha",),
        "00, 01, 02, 03, 05, 06, 07, 08, 09",
    ),  # fmt: skip
    Symbol(
        "α (per token)",
        "entropy temperature of a loss term -α·(mean per-token entropy), TRL's entropy_coef",
        "loss units per nat/token",
        ("OnlineConfig.alpha", "GRPOCheckConfig.entropy_coef"),
        "05, 07",
    ),  # fmt: skip
    Symbol(
        "β (KL)",
        "KL coefficient of E r - β·KL(π‖π_ref), π_ref the SFT policy; paid in the reward "
        "as -β·Σ_t log(π/π_ref) (k1), which gives that objective's gradient exactly",
        "reward units per nat",
        ("OnlineConfig.beta",),
        "01, 03, 05, 07, 08, 09",
    ),  # fmt: skip
    Symbol(
        "β (KL, per token)",
        "KL coefficient of a per-token k3 loss term (GRPO's beta, the loop's kl_loss); its "
        "gradient is the state-frozen forward KL's, not β·∇KL(π‖π_ref)",
        "loss units per nat/token",
        ("OnlineConfig.beta", "GRPOCheckConfig.beta"),
        "03, 05",
    ),  # fmt: skip
    Symbol(
        "β (DPO)",
        "DPO's β: the implicit reward is β·log(π/π_SFT)",
        "reward units per nat",
        ("OfflineConfig.beta",),
        "02, 06",
    ),  # fmt: skip
    Symbol(
        "β (SimPO)",
        "SimPO's β: the implicit reward is β·(1/|y|)·log π(y|x); with summed "
        "log-probs it is the MaxEnt α (reward units per nat)",
        "reward units per nat/token",
        ("OfflineConfig.beta", "OnlineSimPOConfig.beta"),
        "02, 06",
    ),  # fmt: skip
    Symbol(
        "γ",
        "SimPO's target reward margin",
        "reward units",
        ("OfflineConfig.gamma", "OnlineSimPOConfig.gamma"),
        "02, 06",
    ),  # fmt: skip
    Symbol(
        "k",
        "samples per prompt, the RLOO group (GRPO's num_generations)",
        "samples per prompt",
        ("OnlineConfig.k", "GRPOCheckConfig.k"),
        "05",
    ),  # fmt: skip
)

CONFIGS = {  # class name -> module, for the fields above
    "OnlineConfig": "rlhf_nb.methods.online_config",
    "OfflineConfig": "rlhf_nb.methods.offline",
    "OnlineSimPOConfig": "rlhf_nb.methods.online_simpo",
    "GRPOCheckConfig": "rlhf_nb.methods.grpo",
}


def table():
    """The notation table as a ``pandas.DataFrame`` (one row per symbol)."""
    import pandas as pd

    return pd.DataFrame(
        [{"symbol": s.symbol, "meaning": s.meaning, "unit": s.unit,
          "config field": ", ".join(s.fields), "chapters": s.chapters} for s in SYMBOLS]
    ).set_index("symbol")  # fmt: skip


def field_doc(class_name: str, field: str) -> str:
    """The ``Attributes:`` entry of ``field`` in the config class's docstring (its inherited
    docstrings included), whitespace-normalised; ``KeyError`` when the field is not a field of
    the class or has no entry."""
    import dataclasses
    import importlib
    import re

    cls = getattr(importlib.import_module(CONFIGS[class_name]), class_name)
    if field not in {f.name for f in dataclasses.fields(cls)}:
        raise KeyError(f"{class_name} has no field {field!r}")
    for klass in cls.__mro__:
        doc = klass.__doc__ or ""
        m = re.search(rf"^\s*{field}: (.*?)(?=^\s*\w+: |\Z)", doc, flags=re.M | re.S)
        if m:
            return " ".join(m.group(1).split())
    raise KeyError(f"{class_name}.{field} has no documented entry")
