"""Shared test set-up: offline, one torch thread, a private cache, smoke-executed notebooks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOKE_DIR = ROOT / "build" / "smoke"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RLHF_NB_CACHE", str(ROOT / ".cache"))
# Property tests: with CI set, hypothesis loads its built-in "ci" profile itself (derandomized,
# no example database), so a red CI is reproducible; locally each run explores new examples.

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard dependency
    pass


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def smoke_dir() -> Path:
    """Where ``test_notebooks.py`` writes smoke-executed notebooks (the site test reads them)."""
    SMOKE_DIR.mkdir(parents=True, exist_ok=True)
    return SMOKE_DIR


def need_browser() -> None:
    """Skip the calling test, with a visible reason, when Chromium is missing; fail instead
    under RLHF_NB_REQUIRE_BROWSER=1 (set by .ci/run), where the browser checks are required."""
    from browser import sitecheck

    reason = sitecheck.browser_available()
    if reason:
        if os.environ.get("RLHF_NB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser check required but Chromium is {reason}")
        pytest.skip(f"BROWSER CHECKS SKIPPED — Chromium {reason}")
