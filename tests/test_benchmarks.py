"""The profiling benchmarks run (on the smoke testbed), so they cannot rot. Values, not times:
every named part of the step is reported, the shares are shares, the vmap path computes the
member's logits."""

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(BENCH / script), "--preset", "smoke", *args],
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_profile_step_names_every_part_and_the_shares_add_up():
    out = _run("profile_step.py", "--steps", "2")
    for part in ("rollout", "score", "log_probs", "regularised_loss", "update", "evaluate",
                 "rest (Python)", "trainer (forward, backward, Adam, TRL)"):  # fmt: skip
        assert f"| {part} |" in out, (part, out)
    online = out.split("online step")[1].split("rollout:")[0]
    shares = [int(s) for s in re.findall(r"\| (-?\d+)% \|", online)]
    assert len(shares) == 7 and abs(sum(shares) - 100) <= 4, shares  # rounding of 7 parts


def test_batched_seeds_compares_loop_vmap_and_the_ceiling():
    out = _run("batched_seeds.py", "--rows", "8", "--rounds", "1")
    err = float(re.search(r"max \|Δlogit\| ([0-9.e+-]+)", out).group(1))
    assert err < 1e-4, out  # vmap over stacked weights computes each member's own logits
    for name in ("| loop |", "| vmap |", "| ceiling (one model, all rows) |"):
        assert name in out, out
