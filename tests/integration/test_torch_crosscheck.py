"""PyTorch cross-check: the MLP and the CNN of examples/fashion-mnist, started from the
same weights (written by PyTorch as safetensors, read through the model file's
init_from) on the same batches (shuffle off: the split's stored order), give the same
loss as torch for 50 steps, within 1e-4 relative."""

import copy
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tfexample import decode_example, read_tfrecord

REPO = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")
STEPS = 50
BATCH = 64


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          env={**os.environ, "SLIPWAY_LOG": "warn"}, timeout=600)


@pytest.fixture(scope="module")
def dataset(slipway, tmp_path_factory):
    out = tmp_path_factory.mktemp("xc") / "fmnist"
    r = run(slipway, "prep", "--input", f"idx:{FASHION}", "--out", out)
    assert r.returncode == 0, r.stderr
    return out


def first_batches(ds, n):
    """The first n examples of the train split in stored order (what shuffle: false reads)."""
    manifest = json.loads((ds / "manifest.json").read_text())
    xs, ys = [], []
    for shard in manifest["splits"]["train"]["shards"]:
        for payload in read_tfrecord(ds / shard["file"]):
            ex = decode_example(payload)
            xs.append(np.frombuffer(ex["image"][0], dtype=np.uint8))
            ys.append(ex["label"][0])
            if len(xs) == n:
                return np.stack(xs).astype(np.float32), np.array(ys, dtype=np.int64)
    raise AssertionError("not enough examples")


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name].detach().numpy().astype("<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense1 = torch.nn.Linear(784, 256)
        self.dense2 = torch.nn.Linear(256, 128)
        self.dense3 = torch.nn.Linear(128, 10)

    def forward(self, x):
        x = x.reshape(-1, 784) * torch.tensor(1 / 255, dtype=torch.float32)
        return self.dense3(torch.relu(self.dense2(torch.relu(self.dense1(x)))))


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv2d1 = torch.nn.Conv2d(1, 32, 3, padding=1)
        self.conv2d3 = torch.nn.Conv2d(32, 64, 3, padding=1)
        self.dense6 = torch.nn.Linear(64 * 7 * 7, 128)
        self.dense7 = torch.nn.Linear(128, 10)

    def forward(self, x):
        x = x.reshape(-1, 1, 28, 28) * torch.tensor(1 / 255, dtype=torch.float32)
        x = torch.max_pool2d(torch.relu(self.conv2d1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2d3(x)), 2)
        x = torch.flatten(x, 1)
        return self.dense7(torch.relu(self.dense6(x)))


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_same_losses_as_pytorch(slipway, dataset, tmp_path, kind):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False  # its im2col + GEMM convolution, as ours
    net = MLP() if kind == "mlp" else CNN()
    write_safetensors(tmp_path / "init.safetensors", dict(net.state_dict()))
    spec = (REPO / "examples" / "fashion-mnist" / f"{kind}.yaml").read_text()
    spec += f"\nshuffle: false\ninit_from: init.safetensors\n"
    (tmp_path / "model.yaml").write_text(spec)
    r = run(slipway, "train", "--model", tmp_path / "model.yaml", "--data", dataset, "--out", tmp_path / "run",
            "--steps", STEPS, "--log-every", 1, "--threads", 1)
    assert r.returncode == 0, r.stderr
    ours = [json.loads(l)["loss"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
            if json.loads(l)["split"] == "train"]
    assert len(ours) == STEPS

    x, y = first_batches(dataset, STEPS * BATCH)
    exact = copy.deepcopy(net).double()  # the same training in float64: the exact losses

    def train(model, dtype):
        opt = torch.optim.Adam(model.parameters(), lr=0.001)
        losses = []
        for step in range(STEPS):
            xb = torch.from_numpy(x[step * BATCH:(step + 1) * BATCH]).to(dtype)
            yb = torch.from_numpy(y[step * BATCH:(step + 1) * BATCH])
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return np.array(losses)

    theirs = train(net, torch.float32)
    ours = np.array(ours)

    def rel(n, a=ours, b=theirs):
        return np.max(np.abs(a[:n] - b[:n])) / max(np.max(np.abs(b[:n])), 1e-6)

    per_step = " ".join(f"{v:.1e}" for v in np.abs(ours - theirs) / np.abs(theirs))
    if kind == "mlp":
        assert rel(STEPS) <= 1e-4, per_step
    else:
        # Float32 training of the CNN is chaotic: a rounding difference grows about
        # e-fold every 3-4 steps, so after 50 steps PyTorch's own float32 losses are
        # ~3e-3 away from the same training done in float64 (docs/TRAINING.md). Ours
        # agree with PyTorch's to 1e-4 for 30 steps, and over all 50 stay at least as
        # close to the float64 losses as PyTorch's float32 ones do (2x margin).
        assert rel(10) <= 1e-5, per_step
        assert rel(30) <= 1e-4, per_step
        exact_losses = train(exact, torch.float64)
        for n in (10, 30, STEPS):
            ours_err, torch_err = rel(n, ours, exact_losses), rel(n, theirs, exact_losses)
            assert ours_err <= max(2 * torch_err, 1e-5), (n, ours_err, torch_err, per_step)
    assert theirs[-1] < theirs[0]  # it learned something
