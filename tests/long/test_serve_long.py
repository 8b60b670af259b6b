"""Zero downtime at full size (make test-long): under continuous load for 30 s, 20
version swaps (load the other version, unload the current one) fail no request, and every
answer comes from a version that was loaded while it was in flight, with that version's
outputs. `make test` runs the same check at 5 s and 5 swaps (tests/integration)."""

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from serving import Tiny, export  # noqa: E402
from test_serve import swap_under_load  # noqa: E402

SLIPWAY = os.environ.get("SLIPWAY_BIN", str(REPO / "build" / "slipway"))


def test_thirty_seconds_twenty_swaps(tmp_path):
    torch.manual_seed(11)
    m = {"tiny1": Tiny(), "tiny2": Tiny()}
    for k, model in m.items():
        export(model, (torch.randn(2, 4),), ["x"], tmp_path / f"{k}.onnx")
        model.eval()
    n = swap_under_load(SLIPWAY, tmp_path, m, tmp_path, seconds=30, swaps=20, clients=8)
    print(f"{n} requests, 20 swaps, 0 failed")
