"""``python -m rlhf_nb.runs --rekey [--cache DIR]``: move a version-3 run cache to version-4 keys
(:func:`rlhf_nb.runs.cache.rekey`)."""

import argparse
from pathlib import Path

from rlhf_nb.runs.cache import rekey

ap = argparse.ArgumentParser(prog="python -m rlhf_nb.runs", description=rekey.__doc__)
ap.add_argument("--rekey", action="store_true", help="move a version-3 cache to version 4")
ap.add_argument("--cache", type=Path, default=None, help="cache folder (default $RLHF_NB_CACHE)")
args = ap.parse_args()
if not args.rekey:
    ap.error("nothing to do: pass --rekey")
rekey(args.cache)
