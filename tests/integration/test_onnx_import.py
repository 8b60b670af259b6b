"""ONNX import: models built in PyTorch and exported with torch.onnx.export (opset 13,
dynamic batch) run in slipway (`slipway predict`) with PyTorch's outputs, and `slipway
eval` on an exported CNN gives the accuracy PyTorch computes on the same test split.

Run with /usr/bin/python3 -m pytest (python3-torch 1.13, python3-onnx).
"""

import json
import subprocess

import numpy as np
import pytest

import torch  # python3-torch, installed by scripts/install-deps: a missing one fails
nn = torch.nn

from conftest import describe  # noqa: E402
from tfexample import decode_example, read_tfrecord  # noqa: E402


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 5))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    """Raw 0..255 pixels in, its own /255; BatchNorm and Dropout; x.view(x.size(0), -1)
    exports as the Shape/Gather/Unsqueeze/Concat/Reshape pattern."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(8, 16, 3)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(16 * 12 * 12, 10)

    def forward(self, x):
        x = x.view(x.size(0), 1, 28, 28) / 255.0
        x = self.pool(torch.relu(self.bn(self.c1(x))))
        x = self.drop(torch.relu(self.c2(x)))
        return self.fc(x.view(x.size(0), -1))


class EmbedConcat(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.fc1 = nn.Linear(4 + 3, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, cat, num):
        h = torch.cat([self.emb(cat).squeeze(1), num], dim=1)
        return self.fc2(torch.relu(self.fc1(h)))


def export(model, args, names, path):
    model.eval()
    axes = {n: {0: "N"} for n in names}
    axes["out"] = {0: "N"}
    torch.onnx.export(model, args, str(path), opset_version=13, input_names=names, output_names=["out"],
                      dynamic_axes=axes)


def predict(run, model_path, instances, tmp_path):
    inp = tmp_path / "instances.json"
    inp.write_text(json.dumps({"instances": instances}))
    r = run("predict", "--model", model_path, "--input", inp)
    assert r.returncode == 0, describe(r)
    return json.loads(r.stdout)["predictions"]


def assert_close(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
    assert err <= 1e-5, f"relative error {err}"


def test_mlp(run, tmp_path):
    torch.manual_seed(1)
    m = MLP()
    x = torch.randn(9, 20)
    export(m, (x,), ["x"], tmp_path / "mlp.onnx")
    with torch.no_grad():
        want = m(x).numpy()
    got = predict(run, tmp_path / "mlp.onnx", x.tolist(), tmp_path)
    assert_close(got, want)


def test_cnn_with_batchnorm_and_dropout(run, tmp_path):
    torch.manual_seed(2)
    m = CNN()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(5, 784) * 255
    export(m, (x,), ["image"], tmp_path / "cnn.onnx")
    with torch.no_grad():
        want = m(x).numpy()
    got = predict(run, tmp_path / "cnn.onnx", x.tolist(), tmp_path)
    assert_close(got, want)


def test_embedding_and_concat(run, tmp_path):
    torch.manual_seed(3)
    m = EmbedConcat()
    cat = torch.randint(0, 7, (6, 1))
    num = torch.randn(6, 3)
    export(m, (cat, num), ["cat", "num"], tmp_path / "emb.onnx")
    with torch.no_grad():
        want = m(cat, num).numpy()
    instances = [{"cat": cat[i].tolist(), "num": num[i].tolist()} for i in range(6)]
    got = predict(run, tmp_path / "emb.onnx", instances, tmp_path)
    assert_close(got, want)


def test_predict_reports_bad_input(run, tmp_path):
    torch.manual_seed(1)
    export(MLP(), (torch.randn(2, 20),), ["x"], tmp_path / "mlp.onnx")
    bad = tmp_path / "bad.json"
    bad.write_text('{"instances": [[1, 2, 3]]}')
    r = run("predict", "--model", tmp_path / "mlp.onnx", "--input", bad)
    assert r.returncode == 1 and "needs 20 values" in r.stderr, describe(r)
    bad.write_text('{"instances": [')
    r = run("predict", "--model", tmp_path / "mlp.onnx", "--input", bad)
    assert r.returncode == 1 and "line" in r.stderr, describe(r)
    r = run("predict", "--model", tmp_path / "mlp.onnx")
    assert r.returncode == 2, describe(r)


def test_predict_reads_stdin(run, tmp_path):
    torch.manual_seed(1)
    m = MLP()
    x = torch.randn(3, 20)
    export(m, (x,), ["x"], tmp_path / "mlp.onnx")
    r = run("predict", "--model", tmp_path / "mlp.onnx", "--input", "-", input=json.dumps({"instances": x.tolist()}))
    assert r.returncode == 0, describe(r)
    with torch.no_grad():
        assert_close(json.loads(r.stdout)["predictions"], m(x).numpy())


def test_unsupported_op_names_op_and_node(run, tmp_path):
    class Weird(nn.Module):
        def forward(self, x):
            return torch.erf(x)

    export(Weird(), (torch.randn(2, 4),), ["x"], tmp_path / "weird.onnx")
    inp = tmp_path / "i.json"
    inp.write_text('{"instances": [[1, 2, 3, 4]]}')
    r = run("predict", "--model", tmp_path / "weird.onnx", "--input", inp)
    assert r.returncode != 0 and "Erf" in r.stderr and "unsupported operator" in r.stderr, describe(r)


def split_arrays(ds, split):
    manifest = json.loads((ds / "manifest.json").read_text())
    xs, ys = [], []
    for shard in manifest["splits"][split]["shards"]:
        for payload in read_tfrecord(ds / shard["file"]):
            ex = decode_example(payload)
            xs.append(np.frombuffer(ex["image"][0], dtype=np.uint8))
            ys.append(ex["label"][0])
    return np.stack(xs).astype(np.float32), np.array(ys, dtype=np.int64)


@pytest.fixture(scope="module")
def fmnist(run, fashion_mnist, tmp_path_factory):
    ds = tmp_path_factory.mktemp("onnx") / "fmnist"
    r = run("prep", "--input", f"idx:{fashion_mnist}", "--out", ds)
    assert r.returncode == 0, describe(r)
    return ds


def test_predict_with_a_run_dir(run, fmnist, tmp_path):
    (tmp_path / "m.yaml").write_text(
        "name: t\ninput: {feature: image, shape: [784]}\nlabel: label\n"
        "layers:\n  - {type: dense, units: 10}\nloss: softmax_cross_entropy\n"
        "optimizer: {type: adam, lr: 0.001}\nbatch_size: 64\nsteps: 20\nseed: 1\n")
    r = run("train", "--model", tmp_path / "m.yaml", "--data", fmnist, "--out", tmp_path / "run")
    assert r.returncode == 0, describe(r)
    xte, _ = split_arrays(fmnist, "test")
    preds = predict(run, tmp_path / "run", xte[:7].tolist(), tmp_path)
    p = np.asarray(preds)
    assert p.shape == (7, 10)
    assert np.allclose(p.sum(axis=1), 1, atol=1e-5) and (p >= 0).all()
    again = run("predict", "--model", tmp_path / "run", "--data", fmnist, "--input", tmp_path / "instances.json")
    assert again.returncode == 0, describe(again)
    assert json.loads(again.stdout)["predictions"] == preds


def test_eval_of_a_pytorch_cnn(run, fmnist, tmp_path):
    ds = fmnist
    xtr, ytr = split_arrays(ds, "train")
    xte, yte = split_arrays(ds, "test")
    torch.manual_seed(4)
    m = CNN()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m.train()
    for step in range(150):  # brief: far from converged, still well above chance
        idx = torch.randint(0, len(xtr), (64,))
        loss = nn.functional.cross_entropy(m(torch.from_numpy(xtr[idx.numpy()])), torch.from_numpy(ytr[idx.numpy()]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        pred = torch.cat([m(torch.from_numpy(xte[i:i + 1000])).argmax(1) for i in range(0, len(xte), 1000)]).numpy()
    want = float((pred == yte).mean())
    assert want > 0.5
    export(m, (torch.from_numpy(xte[:2]),), ["image"], tmp_path / "cnn.onnx")
    r = run("eval", "--model", tmp_path / "cnn.onnx", "--data", ds, "--json")
    assert r.returncode == 0, describe(r)
    res = json.loads(r.stdout)
    assert res["examples"] == len(yte)
    assert abs(res["metrics"]["accuracy"] - want) * len(yte) <= 1.0 + 1e-9, (res["metrics"], want)
    assert sum(sum(row) for row in res["confusion"]) == len(yte)
