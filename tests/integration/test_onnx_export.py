"""The ONNX artifact: a short `slipway train` writes RUN/model.onnx that onnx.checker
accepts (full check), `slipway export` writes the same bytes, and ONNX Runtime
(npm onnxruntime-node, installed once into a cache dir) agrees with our engine: its
accuracy on the whole test split equals `slipway eval`'s to within one example, and for
the MLP its probabilities equal a numpy forward pass over model.safetensors to 1e-5
(norm-wise: max|a-b| / max(max|b|, 1e-6)) on 500 test examples.

ONNX Runtime comes from the npm registry (RECIPES.md); when it cannot be installed the
test fails saying so, it does not skip. $SW_ORT_DIR overrides the cache dir."""

import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import REPO, run_slipway
from tfexample import decode_example, read_tfrecord

FASHION = Path("/usr/share/datasets/fashion-mnist")
EXAMPLES = REPO / "examples" / "fashion-mnist"
ORT_VERSION = "1.30.0"
STEPS = 100

ORT_SCRIPT = r"""
const ort = require('onnxruntime-node');
const fs = require('fs');
(async () => {
  const [model, inputFile, n, width, outFile] = process.argv.slice(2);
  const shape = [Number(n)].concat(JSON.parse(width));
  const buf = fs.readFileSync(inputFile);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  const session = await ort.InferenceSession.create(model);
  const feeds = {};
  feeds[session.inputNames[0]] = new ort.Tensor('float32', x, shape);
  const out = await session.run(feeds);
  const y = out[session.outputNames[0]];
  fs.writeFileSync(outFile, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
  console.log(JSON.stringify({inputs: session.inputNames, outputs: session.outputNames, dims: y.dims}));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""


def ort_dir():
    env = os.environ.get("SW_ORT_DIR")
    return Path(env) if env else REPO / "build" / "ort"


@pytest.fixture(scope="module")
def ort():
    d = ort_dir()
    pkg = d / "node_modules" / "onnxruntime-node" / "package.json"
    if not (pkg.is_file() and json.loads(pkg.read_text()).get("version") == ORT_VERSION):
        d.mkdir(parents=True, exist_ok=True)
        try:
            r = subprocess.run(
                ["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", str(d),
                 f"onnxruntime-node@{ORT_VERSION}"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            pytest.fail(f"cannot install onnxruntime-node@{ORT_VERSION} with npm into {d}: {e}", pytrace=False)
        if r.returncode != 0 or not pkg.is_file():
            pytest.fail(f"cannot install onnxruntime-node@{ORT_VERSION} with npm into {d} (is the npm registry "
                        f"reachable?):\n{r.stdout}\n{r.stderr}", pytrace=False)
    script = d / "run_onnx.js"
    script.write_text(ORT_SCRIPT)
    return d


def ort_run(ort, model, x, width, tmp):
    inp, out = tmp / "x.bin", tmp / "y.bin"
    inp.write_bytes(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    env = dict(os.environ, NODE_PATH=str(ort / "node_modules"))
    r = subprocess.run(["node", str(ort / "run_onnx.js"), str(model), str(inp), str(len(x)), json.dumps(width),
                        str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600, env=env)
    assert r.returncode == 0, f"onnxruntime-node failed on {model}:\n{r.stdout}\n{r.stderr}"
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["outputs"] == ["probabilities"] and info["inputs"] == ["image"], info
    return np.frombuffer(out.read_bytes(), dtype=np.float32).reshape(len(x), -1)


@pytest.fixture(scope="module")
def dataset(slipway, tmp_path_factory):
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"{FASHION} is missing (Debian package dataset-fashion-mnist)", pytrace=False)
    out = tmp_path_factory.mktemp("onnx") / "fmnist"
    r = run_slipway(slipway, "prep", "--input", f"idx:{FASHION}", "--out", out)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def test_split(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    xs, ys = [], []
    for shard in manifest["splits"]["test"]["shards"]:
        for payload in read_tfrecord(dataset / shard["file"]):
            ex = decode_example(payload)
            xs.append(np.frombuffer(ex["image"][0], dtype=np.uint8))
            ys.append(ex["label"][0])
    return np.stack(xs).astype(np.float32), np.array(ys, dtype=np.int64)


@pytest.fixture(scope="module")
def runs(slipway, dataset, tmp_path_factory):
    base = tmp_path_factory.mktemp("onnx-runs")
    out = {}
    for kind in ("mlp", "cnn"):
        d = base / kind
        r = run_slipway(slipway, "train", "--model", EXAMPLES / f"{kind}.yaml", "--data", dataset, "--out", d,
                        "--steps", STEPS, timeout=600)
        assert r.returncode == 0, r.stderr
        out[kind] = d
    return out


def read_safetensors(path):
    buf = Path(path).read_bytes()
    (n,) = struct.unpack_from("<Q", buf, 0)
    header = json.loads(buf[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32"
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(buf[8 + n + b:8 + n + e], dtype=np.float32).reshape(t["shape"])
    return out


def norm_diff(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-6))


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_checker_and_metadata(runs, dataset, kind):
    path = runs[kind] / "model.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 13 and model.producer_name == "slipway"
    meta = {p.key: p.value for p in model.metadata_props}
    assert [p.key for p in model.metadata_props] == ["slipway.class_names", "slipway.input_features", "slipway.run",
                                                     "slipway.model"]
    run = json.loads((runs[kind] / "run.json").read_text())
    assert meta["slipway.run"] == run["params_sha256"]
    assert meta["slipway.model"] == f"fmnist-{kind}"
    assert json.loads(meta["slipway.input_features"]) == ["image"]
    classes = json.loads(meta["slipway.class_names"])
    assert len(classes) == 10 and classes[0] == "T-shirt/top"
    (inp,) = model.graph.input
    assert inp.type.tensor_type.shape.dim[0].dim_param == "N"
    (out,) = model.graph.output
    assert out.name == "probabilities" and out.type.tensor_type.shape.dim[0].dim_param == "N"
    ops = [n.op_type for n in model.graph.node]
    assert ops[0] == "Mul" and ops[-1] == "Softmax"  # the 1/255 scale first, no loss
    assert "SoftmaxCrossEntropyLoss" not in ops and all(i.name != "label" for i in model.graph.input)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_export_command_gives_the_same_bytes(slipway, runs, dataset, tmp_path, kind):
    out = tmp_path / "again.onnx"
    r = run_slipway(slipway, "export", "--model", runs[kind], "--out", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (runs[kind] / "model.onnx").read_bytes()
    r = run_slipway(slipway, "export", "--model", runs[kind], "--data", dataset, "--out", tmp_path / "b.onnx")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b.onnx").read_bytes() == out.read_bytes()
    r = run_slipway(slipway, "export", "--model", tmp_path / "nope", "--out", tmp_path / "c.onnx")
    assert r.returncode != 0 and "nope" in r.stderr and not (tmp_path / "c.onnx").exists()
    r = run_slipway(slipway, "export", "--model", runs[kind])
    assert r.returncode == 2


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_onnxruntime_accuracy_matches_eval(slipway, ort, runs, dataset, test_split, tmp_path, kind):
    x, y = test_split
    width = [784] if kind == "mlp" else [1, 28, 28]
    probs = ort_run(ort, runs[kind] / "model.onnx", x, width, tmp_path)
    assert probs.shape == (len(x), 10)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    r = run_slipway(slipway, "eval", "--model", runs[kind], "--data", dataset, "--json")
    assert r.returncode == 0, r.stderr
    ours = json.loads(r.stdout)
    assert ours["examples"] == len(x)
    ort_correct = int(np.sum(np.argmax(probs, axis=1) == y))
    our_correct = round(ours["metrics"]["accuracy"] * len(x))
    assert abs(ort_correct - our_correct) <= 1, (ort_correct, our_correct)


def test_onnxruntime_probabilities_match_numpy_mlp(ort, runs, test_split, tmp_path):
    x, _ = test_split
    x = x[:500]
    probs = ort_run(ort, runs["mlp"] / "model.onnx", x, [784], tmp_path)
    w = read_safetensors(runs["mlp"] / "model.safetensors")
    h = x.astype(np.float64) * np.float64(np.float32(1 / 255))
    for i, name in enumerate(("dense1", "dense2", "dense3")):
        h = h @ w[f"{name}.weight"].astype(np.float64).T + w[f"{name}.bias"].astype(np.float64)
        if i < 2:
            h = np.maximum(h, 0)
    h = h - h.max(axis=1, keepdims=True)
    ref = np.exp(h) / np.exp(h).sum(axis=1, keepdims=True)
    d = norm_diff(probs.astype(np.float64), ref)
    assert d <= 1e-5, d


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_onnxruntime_outputs_match_our_engine(slipway, ort, runs, dataset, test_split, tmp_path, kind):
    """The issue's check: ONNX Runtime on our model.onnx against our engine on the run,
    within 1e-5 norm-wise, on the first 1,000 test examples."""
    x, _ = test_split
    x = x[:1000]
    width = [784] if kind == "mlp" else [1, 28, 28]
    theirs = ort_run(ort, runs[kind] / "model.onnx", x, width, tmp_path)
    inp = tmp_path / "instances.json"
    inp.write_text(json.dumps({"instances": x.astype(int).tolist()}))
    r = run_slipway(slipway, "predict", "--model", runs[kind], "--data", dataset, "--input", inp, timeout=600)
    assert r.returncode == 0, r.stderr
    ours = np.array(json.loads(r.stdout)["predictions"], dtype=np.float64)
    assert ours.shape == theirs.shape
    d = norm_diff(theirs.astype(np.float64), ours)
    assert d <= 1e-5, d
