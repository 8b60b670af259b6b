"""Zero downtime at full size (make test-long): under continuous load for 30 s, 20
version swaps by the admin API (load the other version, unload the current one) and,
separately, 20 moves of the registry's production alias fail no request, and every answer
comes from a version that was serving while it was in flight, with that version's
outputs. `make test` runs the same checks at 5 s and 5 swaps (tests/integration)."""

import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from serving import Tiny, export  # noqa: E402
from test_serve import swap_under_load  # noqa: E402

SLIPWAY = os.environ.get("SLIPWAY_BIN", str(REPO / "build" / "slipway"))


def models(tmp_path):
    torch.manual_seed(11)
    m = {"tiny1": Tiny(), "tiny2": Tiny()}
    for k, model in m.items():
        export(model, (torch.randn(2, 4),), ["x"], tmp_path / f"{k}.onnx")
        model.eval()
    return m


def run(*args, env=None):
    return subprocess.run([SLIPWAY, *[str(a) for a in args]], capture_output=True, text=True, env=env, timeout=300)


def test_thirty_seconds_twenty_swaps(tmp_path):
    m = models(tmp_path)
    (tmp_path / "admin").mkdir()
    n = swap_under_load(SLIPWAY, tmp_path, m, tmp_path / "admin", seconds=30, swaps=20, clients=8)
    print(f"admin swaps: {n} requests, 20 swaps, 0 failed")


def test_thirty_seconds_twenty_alias_moves(tmp_path):
    m = models(tmp_path)
    (tmp_path / "alias").mkdir()
    n = swap_under_load(SLIPWAY, tmp_path, m, tmp_path / "alias", seconds=30, swaps=20, clients=8, mode="alias", run=run)
    print(f"alias moves: {n} requests, 20 moves, 0 failed")
