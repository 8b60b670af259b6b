"""slipway train and slipway eval, briefly, on real Fashion-MNIST: the run dir holds what
it should, the same seed gives bit-identical weights, eval prints DESIGN.md's JSON (with
slices), a tampered weights file is refused, and TensorBoard's file decodes with an
independent reader. The full-length accuracy checks are in tests/long."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tensorboard_events import event_files, read_scalars

REPO = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")
MLP = REPO / "examples" / "fashion-mnist" / "mlp.yaml"


def run(*args, timeout=600):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          env={**os.environ, "SLIPWAY_LOG": "warn"}, timeout=timeout)


@pytest.fixture(scope="module")
def dataset(slipway, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "fmnist"
    r = run(slipway, "prep", "--input", f"idx:{FASHION}", "--out", out)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def mlp_run(slipway, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mlp"
    r = run(slipway, "train", "--model", MLP, "--data", dataset, "--out", out, "--steps", 400, "--log-every", 100,
            "--json")
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout)


def test_run_dir(mlp_run, dataset):
    out, summary = mlp_run
    for name in ("run.json", "model.yaml", "model.safetensors", "metrics.jsonl"):
        assert (out / name).is_file(), name
    run_json = json.loads((out / "run.json").read_text())
    manifest_sha = __import__("hashlib").sha256((dataset / "manifest.json").read_bytes()).hexdigest()
    assert run_json["dataset"]["manifest_sha256"] == manifest_sha
    assert run_json["steps_done"] == 400 and len(run_json["params_sha256"]) == 64
    assert run_json["code_version"].startswith("slipway ")
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    train = [l for l in lines if l["split"] == "train"]
    assert [l["step"] for l in train] == [100, 200, 300, 400]
    assert train[-1]["loss"] < train[0]["loss"]
    assert all(l["samples_per_sec"] > 0 and l["lr"] == pytest.approx(0.001) for l in train)
    val = [l for l in lines if l["split"] == "val"]
    assert val and val[-1]["accuracy"] > 0.75  # 400 steps of an MLP: well past chance
    # TensorBoard's file, read by an independent decoder
    files = event_files(out)
    assert len(files) == 1
    scalars = read_scalars(files[0])
    assert [s for s, _ in scalars["train/loss"]] == [100, 200, 300, 400]
    assert scalars["train/loss"][-1][1] == pytest.approx(train[-1]["loss"], rel=1e-6)
    assert "val/accuracy" in scalars


def test_same_seed_same_bits(slipway, dataset, tmp_path, mlp_run):
    _, first = mlp_run
    r = run(slipway, "train", "--model", MLP, "--data", dataset, "--out", tmp_path / "again", "--steps", 400,
            "--log-every", 100, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["params_sha256"] == first["params_sha256"]
    r = run(slipway, "train", "--model", MLP, "--data", dataset, "--out", tmp_path / "other", "--steps", 20,
            "--seed", 2, "--json")
    assert json.loads(r.stdout)["params_sha256"] != first["params_sha256"]


def test_eval_json(slipway, dataset, mlp_run):
    out, _ = mlp_run
    r = run(slipway, "eval", "--model", out, "--data", dataset, "--json", "--slice", "label")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["split"] == "test" and res["examples"] == 10000 and res["model"] == str(out)
    assert len(res["dataset"]) == 64
    m = res["metrics"]
    assert set(m) == {"accuracy", "log_loss"} and 0.75 < m["accuracy"] <= 1 and m["log_loss"] > 0
    assert len(res["per_class"]) == 10 and res["per_class"][0]["class"] == "T-shirt/top"
    assert sum(c["support"] for c in res["per_class"]) == 10000
    conf = res["confusion"]
    assert len(conf) == 10 and sum(map(sum, conf)) == 10000
    assert sum(conf[i][i] for i in range(10)) / 10000 == pytest.approx(m["accuracy"])
    for c, pc in enumerate(res["per_class"]):
        assert pc["support"] == sum(conf[c])
        assert pc["recall"] == pytest.approx(conf[c][c] / sum(conf[c]))
    # slicing by the label: each slice's accuracy is that class's recall
    slices = res["slices"]
    assert len(slices) == 10
    assert slices["label=Trouser"]["examples"] == 1000
    assert slices["label=Trouser"]["metrics"]["accuracy"] == pytest.approx(res["per_class"][1]["recall"])


def test_eval_slices_same_for_run_and_onnx(slipway, dataset, mlp_run):
    """The run dir and its model.onnx go through one accumulation: the same slices, and
    the same refusal of a slice feature the dataset lacks."""
    out, _ = mlp_run
    res = {}
    for ref in (out, out / "model.onnx"):
        r = run(slipway, "eval", "--model", ref, "--data", dataset, "--json", "--slice", "label")
        assert r.returncode == 0, r.stderr
        res[ref] = json.loads(r.stdout)
        bad = run(slipway, "eval", "--model", ref, "--data", dataset, "--slice", "colour")
        assert bad.returncode != 0 and "--slice colour" in bad.stderr, bad.stderr
    a, b = res[out]["slices"], res[out / "model.onnx"]["slices"]
    assert set(a) == set(b) and len(a) == 10
    for key in a:
        assert a[key]["examples"] == b[key]["examples"]
        assert a[key]["metrics"]["accuracy"] == pytest.approx(b[key]["metrics"]["accuracy"], abs=1e-3)


def test_eval_refuses_tampered_weights_and_bad_refs(slipway, dataset, mlp_run, tmp_path):
    out, _ = mlp_run
    bad = tmp_path / "tampered"
    subprocess.run(["cp", "-r", str(out), str(bad)], check=True)
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-4] ^= 0x01
    (bad / "model.safetensors").write_bytes(bytes(data))
    r = run(slipway, "eval", "--model", bad, "--data", dataset)
    assert r.returncode == 1 and "params_sha256" in r.stderr or "hash" in r.stderr
    r = run(slipway, "eval", "--model", tmp_path / "nope", "--data", dataset)
    assert r.returncode == 1 and "not a run dir" in r.stderr
    r = run(slipway, "eval", "--model", out, "--data", dataset, "--split", "nope")
    assert r.returncode == 1 and "no split 'nope'" in r.stderr


def test_bad_model_files(slipway, dataset, tmp_path):
    cases = {
        "layers: []\ninput: {feature: image}\n": "layers must be a non-empty list",
        "input: {feature: image}\nlayers: [{type: dense, units: 10}]\nloss: hinge\n": "loss must be",
        "input: {feature: image}\nlayers: [{type: warp}]\n": "unknown type 'warp'",
        "input: {feature: pixels}\nlayers: [{type: dense, units: 10}]\n": "no feature 'pixels'",
        "input: {feature: image, shape: [783]}\nlayers: [{type: dense, units: 10}]\n": "783",
        "input: {feature: image}\nlayers: [{type: dense, units: 7}]\n": "10 classes",
        "input: {feature: image}\nlayers: [{type: dense, units: 10}]\noptimizer: {lr: -1}\n": "lr > 0",
    }
    for i, (text, msg) in enumerate(cases.items()):
        f = tmp_path / f"m{i}.yaml"
        f.write_text(text)
        r = run(slipway, "train", "--model", f, "--data", dataset, "--out", tmp_path / f"r{i}", "--steps", 1)
        assert r.returncode in (1, 2) and msg in r.stderr, (text, r.stderr)
        assert not (tmp_path / f"r{i}" / "run.json").exists()
    r = run(slipway, "train", "--model", MLP, "--data", dataset)
    assert r.returncode == 2
