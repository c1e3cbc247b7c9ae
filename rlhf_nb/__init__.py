"""rlhf-nb: the helper package behind the executable book on Maximum-Entropy RLHF.

Notebooks narrate, call, plot and assert; the reusable logic lives here. Every notebook starts
with :func:`setup`, which makes a run reproducible, offline and quiet (see ``rlhf_nb.config``).
"""

from rlhf_nb.config import (
    Context,
    check_choice,
    check_int,
    check_ints,
    check_range,
    check_type,
    setup,
)

__all__ = [
    "Context",
    "setup",
    "check_choice",
    "check_int",
    "check_ints",
    "check_range",
    "check_type",
]
__version__ = "0.1.0"
