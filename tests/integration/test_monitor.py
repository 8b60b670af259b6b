"""slipway monitor drift end to end: instances against a prepared dataset's training
statistics. Fashion-MNIST test images (as a one-input model's bare instances) raise no
drift; the same images inverted, or brightened, do (exit 3, the image named). A tabular
dataset: held-out rows raise none; scaled numbers and a shifted category mix do, naming
the features. Bad input: precise messages and exit codes, never a crash."""

import json

import numpy as np
import pytest

from conftest import describe, fashion_subset, run_slipway

N_TRAIN, N_TEST = 6000, 2000


@pytest.fixture(scope="module")
def fmnist(slipway, fashion_mnist, tmp_path_factory):
    base = tmp_path_factory.mktemp("monitor")
    raw = base / "raw"
    # held-out images for the traffic come from beyond what prep sees
    images = {kind: x for kind, (x, _) in fashion_subset(fashion_mnist, raw, {"train": N_TRAIN, "t10k": N_TEST}).items()}
    ds = base / "ds"
    r = run_slipway(slipway, "prep", "--input", f"idx:{raw}", "--out", ds)
    assert r.returncode == 0, describe(r)
    return {"ds": ds, "base": base, "unseen": images["t10k"][N_TEST:N_TEST + 1000]}


def instances_file(path, images):
    path.write_text(json.dumps({"instances": [im.tolist() for im in images]}))
    return path


def drift_json(run, *args):
    r = run("monitor", "drift", *map(str, args), "--json")
    assert r.returncode in (0, 3), describe(r)
    return r.returncode, json.loads(r.stdout)


def test_fashion_mnist_test_images_raise_no_drift(run, fmnist):
    f = instances_file(fmnist["base"] / "clean.json", fmnist["unseen"])
    rc, rep = drift_json(run, "--data", fmnist["ds"], "--input", f)
    assert rc == 0 and rep["drift"] is False, rep
    img = rep["features"]["image"]
    assert img["kind"] == "image" and img["records"] == 1000 and img["values"] == 1000 * 784
    assert img["psi"] < 0.02 and img["js"] < 0.05 and img["ks_p_bonferroni"] > 0.05, img
    assert "label" not in rep["features"]  # the label is not an input
    r = run("monitor", "drift", "--data", fmnist["ds"], "--input", f)
    assert r.returncode == 0 and r.stdout.startswith("no drift: 0 of 1 features"), describe(r)


@pytest.mark.parametrize("shift", ["inverted", "brightened"])
def test_fashion_mnist_shifted_images_drift(run, fmnist, shift):
    x = fmnist["unseen"].astype(np.int64)
    x = 255 - x if shift == "inverted" else np.minimum(255, x * 13 // 10)
    f = instances_file(fmnist["base"] / f"{shift}.json", x.astype(np.uint8))
    rc, rep = drift_json(run, "--data", fmnist["ds"], "--input", f)
    assert rc == 3 and rep["drift"] is True and rep["worst"] == ["image"], rep
    img = rep["features"]["image"]
    assert img["drift"] and img["psi"] >= 0.1 and img["ks_p_bonferroni"] < 0.05, img
    r = run("monitor", "drift", "--data", fmnist["ds"], "--input", f)
    assert r.returncode == 3 and r.stdout.startswith("DRIFT: 1 of 1 features"), describe(r)


def test_window_keeps_the_latest_instances(run, fmnist, tmp_path):
    """500 inverted images then 1000 clean ones: a window of 1000 sees only clean ones."""
    x = fmnist["unseen"]
    lines = [json.dumps((255 - im.astype(np.int64)).tolist()) for im in x[:500]]
    lines += [json.dumps(im.tolist()) for im in x]
    f = tmp_path / "traffic.jsonl"
    f.write_text("\n".join(lines) + "\n")
    rc, rep = drift_json(run, "--data", fmnist["ds"], "--input", f, "--window", 1000)
    assert rc == 0 and rep["records"] == 1000 and rep["window"] == 1000, rep
    rc, rep = drift_json(run, "--data", fmnist["ds"], "--input", f, "--window", 1500)
    assert rc == 3, rep


@pytest.fixture(scope="module")
def tabular(slipway, tmp_path_factory):
    base = tmp_path_factory.mktemp("monitor_tab")
    rng = np.random.default_rng(7)
    n = 5000
    age = rng.normal(40, 10, n).clip(18, 90).round(1)
    income = rng.lognormal(10.8, 0.3, n).round(2)
    color = rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2])
    label = np.where(age + income / 5000 + rng.normal(0, 5, n) > 50, "yes", "no")
    rows = ["age,income,color,label"] + [f"{a},{i},{c},{l}" for a, i, c, l in zip(age, income, color, label)]
    csv = base / "rows.csv"
    csv.write_text("\n".join(rows[:4001]) + "\n")  # 4000 rows for prep, 1000 held out
    ds = base / "ds"
    r = run_slipway(slipway, "prep", "--input", f"csv:{csv}", "--out", ds)
    assert r.returncode == 0, describe(r)
    held = [{"age": float(a), "income": float(i), "color": str(c)} for a, i, c in zip(age[4000:], income[4000:], color[4000:])]
    return {"ds": ds, "held": held, "base": base}


def write_jsonl(path, instances):
    path.write_text("".join(json.dumps(i) + "\n" for i in instances))
    return path


def test_tabular_held_out_rows_raise_no_drift(run, tabular):
    f = write_jsonl(tabular["base"] / "held.jsonl", tabular["held"])
    rc, rep = drift_json(run, "--data", tabular["ds"], "--input", f)
    assert rc == 0 and rep["drifting"] == 0, rep
    assert set(rep["features"]) == {"age", "income", "color"}
    assert rep["features"]["color"]["kind"] == "categorical" and "ks_p" not in rep["features"]["color"]


def test_tabular_scaled_features_drift(run, tabular, tmp_path):
    scaled = [dict(i, age=i["age"] + 12, income=i["income"] * 1.5) for i in tabular["held"]]
    rc, rep = drift_json(run, "--data", tabular["ds"], "--input", write_jsonl(tmp_path / "scaled.jsonl", scaled))
    assert rc == 3 and rep["drifting"] == 2 and set(rep["worst"]) == {"age", "income"}, rep
    assert rep["features"]["color"]["drift"] is False
    # a new category mix alone is one feature of three: under the default share of 0.5...
    recolored = [dict(i, color="purple" if k % 2 else i["color"]) for k, i in enumerate(tabular["held"])]
    f = write_jsonl(tmp_path / "recolored.jsonl", recolored)
    rc, rep = drift_json(run, "--data", tabular["ds"], "--input", f)
    assert rc == 0 and rep["drifting"] == 1 and rep["worst"] == ["color"], rep
    # ...and over it with the policy's share at 0.3
    policy = tmp_path / "policy.yaml"
    policy.write_text("metric: accuracy\nmonitor:\n  drift: {psi: 0.1, js: 0.1, window: 2000, share: 0.3}\n")
    rc, rep = drift_json(run, "--data", tabular["ds"], "--input", f, "--policy", policy)
    assert rc == 3 and rep["threshold_share"] == 0.3, rep


def test_bad_input(run, tabular, tmp_path):
    ds = tabular["ds"]
    r = run("monitor", "drift", "--data", ds)
    assert r.returncode == 2 and "--data and --input are required" in r.stderr
    r = run("monitor", "drift", "--data", ds, "--input", "x", "--window", "0")
    assert r.returncode == 2 and "--window" in r.stderr
    r = run("monitor", "frobnicate")
    assert r.returncode == 2 and "unknown subcommand 'frobnicate'" in r.stderr
    r = run("monitor", "drift", "--data", tmp_path / "nope", "--input", "x")
    assert r.returncode == 1 and "stats.json" in r.stderr, describe(r)
    f = tmp_path / "bad.jsonl"
    f.write_text('{"age": 30, "income": 1, "color": "red"}\n{"age": "old"}\n')
    r = run("monitor", "drift", "--data", ds, "--input", f)
    assert r.returncode == 2 and "line 2: feature 'age'" in r.stderr, describe(r)
    f.write_text('{"age": 30}\n{oops\n')
    r = run("monitor", "drift", "--data", ds, "--input", f)
    assert r.returncode == 1 and "line 2: not JSON" in r.stderr, describe(r)
    f.write_text('[1, 2, 3]\n')  # bare values, but three features are checked
    r = run("monitor", "drift", "--data", ds, "--input", f)
    assert r.returncode == 2 and "when 3 features are checked" in r.stderr, describe(r)
    f.write_text("\n\n")
    r = run("monitor", "drift", "--data", ds, "--input", f)
    assert r.returncode == 2 and "no instances" in r.stderr, describe(r)
    p = tmp_path / "p.yaml"
    p.write_text("monitor:\n  drift: {psi: -1}\n")
    r = run("monitor", "drift", "--data", ds, "--input", f, "--policy", p)
    assert r.returncode == 2 and "monitor.drift.psi" in r.stderr, describe(r)
