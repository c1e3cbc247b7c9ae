"""rlhf_nb.setup(): validation with clear messages, one thread, offline, renderer, device."""

from __future__ import annotations

import math
import os

import plotly.io as pio
import pytest
import torch

import rlhf_nb
from rlhf_nb.core import check_range


def test_setup_defaults(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    ctx = rlhf_nb.setup(seed=3)
    assert ctx.seed == 3 and ctx.device in ("cpu", "cuda") and ctx.smoke is False
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert pio.renderers.default == "plotly_mimetype+notebook"
    if ctx.device == "cpu":
        assert torch.get_num_threads() == 1


def test_setup_seeds_reproducibly():
    rlhf_nb.setup(seed=7)
    a = torch.rand(3)
    rlhf_nb.setup(seed=7)
    assert torch.equal(a, torch.rand(3))


def test_network_opt_in_leaves_env_alone(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    rlhf_nb.setup(network=True)
    assert "HF_HUB_OFFLINE" not in os.environ


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"seed": -1}, ValueError, "SEED must be in [0, 4294967295]"),
        ({"seed": 1.5}, TypeError, "SEED must be int"),
        ({"seed": True}, TypeError, "SEED must be int"),
        ({"smoke": 1}, TypeError, "SMOKE must be bool"),
        ({"device": "tpu"}, ValueError, "DEVICE must be one of ('auto', 'cpu', 'cuda')"),
        ({"threads": 0}, ValueError, "threads must be in [1, inf)"),
    ],
)
def test_bad_parameters_are_named(kwargs, exc, message):
    with pytest.raises(exc) as err:
        rlhf_nb.setup(**kwargs)
    assert message in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_requested_without_gpu_is_refused():
    with pytest.raises(ValueError, match="DEVICE='cuda'"):
        rlhf_nb.setup(device="cuda")


def test_check_range_intervals():
    check_range("alpha", 0.5, 0.0, None, low_inclusive=False)
    with pytest.raises(ValueError, match=r"alpha must be in \(0.0, inf\), got 0.0"):
        check_range("alpha", 0.0, 0.0, None, low_inclusive=False)
    with pytest.raises(ValueError, match="got nan"):
        check_range("alpha", math.nan, 0.0, 1.0)
