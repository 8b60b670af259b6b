"""Distributed training to the accuracy target (make test-long): the Fashion-MNIST MLP
(examples/fashion-mnist/mlp.yaml, 10 epochs at global batch 64, with a cosine learning
rate decay) reaches >= 88% test accuracy with 4 ranks in sync, in sync with a backup
worker while one rank is slowed by 20 ms a step, and in async with one worker slowed the
same way. Plain sync with the straggler computes the very same bits as without it (it
only waits), which a short run shows. Figures go to docs/DISTRIBUTED.md with the command.

The decay: at the stock constant lr, async's stale gradients (staleness 1-2 with 3
workers) cost about a point (87.0-87.7% measured) while sync made 88.1%."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")
SLIPWAY = os.environ.get("SLIPWAY_BIN", str(REPO / "build" / "slipway"))
MLP = REPO / "examples" / "fashion-mnist" / "mlp.yaml"
ENV = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
SLOW = ["--debug-slow-rank", "3", "--debug-slow-ms", "20"]


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=3600, env=ENV)


def mpirun(np_, *args):
    return run("mpirun", "--oversubscribe", "--bind-to", "none", "-np", np_, SLIPWAY, *args)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "mlp-cosine.yaml"
    path.write_text(MLP.read_text() + "schedule: {type: cosine}\n")
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("long") / "fmnist"
    r = run(SLIPWAY, "prep", "--input", f"idx:{FASHION}", "--out", out)
    assert r.returncode == 0, r.stderr
    return out


def step_time(out):
    """Rank 0's mean step time over the run, from its per-rank lines."""
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    mine = [m for m in lines if m.get("split") == "rank" and m["rank"] == 0]
    return sum(m["step_time"] * m["gradients"] for m in mine) / sum(m["gradients"] for m in mine)


@pytest.mark.parametrize("name,extra", [("sync", []),
                                        ("backup", ["--backup-workers", "1", *SLOW]),
                                        ("async", ["--dist", "async", *SLOW])])
def test_dist_accuracy(dataset, model, tmp_path, name, extra):
    out = tmp_path / name
    t0 = time.monotonic()
    r = mpirun(4, "train", "--model", model, "--data", dataset, "--out", out, "--log-every", "200", *extra)
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    r = run(SLIPWAY, "eval", "--model", out, "--data", dataset, "--json")
    assert r.returncode == 0, r.stderr
    acc = json.loads(r.stdout)["metrics"]["accuracy"]
    doc = json.loads((out / "run.json").read_text())
    dist = doc["dist"]
    print(f"{name}: test accuracy {acc:.4f} in {seconds:.0f}s, params {doc['params_sha256'][:12]}, "
          f"mean step {step_time(out) * 1000:.1f} ms, "
          f"kept {dist['kept_per_rank']}, dropped {dist['dropped_per_rank']}"
          + (f", staleness {dist['staleness_histogram']}" if "staleness_histogram" in dist else ""), file=sys.stderr)
    assert acc >= 0.88


def test_sync_straggler_changes_no_bits(dataset, tmp_path):
    hashes = []
    for extra in ([], SLOW):
        out = tmp_path / f"s{len(hashes)}"
        r = mpirun(4, "train", "--model", MLP, "--data", dataset, "--out", out, "--steps", "100", *extra)
        assert r.returncode == 0, r.stderr
        hashes.append(json.loads((out / "run.json").read_text())["params_sha256"])
    assert hashes[0] == hashes[1]
