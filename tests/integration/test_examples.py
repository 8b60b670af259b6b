"""The speech and recommendation examples end to end at a reduced size: their data
generators, `slipway prep` with the held-out input as the test split, the examples' own
model files, training and evaluation. The bars are lower than the full-size ones
(examples/*/run_full.sh) but far above chance."""

import json
import os
import subprocess

from conftest import REPO, describe
from tfexample import decode_example, read_tfrecord

EXAMPLES = REPO / "examples"


def generate(*args):
    r = subprocess.run(["/usr/bin/python3", *[str(a) for a in args]], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r


def split_rows(ds, split):
    manifest = json.loads((ds / "manifest.json").read_text())
    rows = []
    for shard in manifest["splits"][split]["shards"]:
        rows += [decode_example(p) for p in read_tfrecord(ds / shard["file"])]
    return rows


def test_speech_digits_held_out_voices(run, tmp_path):
    data = tmp_path / "speech"
    generate(EXAMPLES / "speech-digits" / "make_data.py", "--out", data, "--voices", "12", "--speeds", "130,180",
             "--pitches", "35,65", "--snr", "20", "--holdout-count", "3", "--jobs", "2", "--seed", "4")
    split = json.loads((data / "split.json").read_text())["splits"]["holdout"]
    held, heard = set(split["test_voices"]), set(split["train_voices"])
    assert len(held) == 3 and len(heard) == 9 and not held & heard
    tags = lambda d: {f.name.split("_")[0] for f in d.rglob("*.wav")}
    assert tags(data / "train") == {v.replace("/", "-") for v in heard}
    assert tags(data / "test") == {v.replace("/", "-") for v in held}
    assert split["test_files"] == 3 * 10 * 4 and split["train_files"] == 9 * 10 * 4

    ds = tmp_path / "ds"
    r = run("prep", "--input", f"wav:{data / 'train'}", "--test-input", data / "test", "--split",
            "train=0.9,val=0.1", "--out", ds, "--json")
    assert r.returncode == 0, describe(r)
    rep = json.loads(r.stdout)
    assert rep["quarantined"] == 0 and rep["splits"] == {"train": 324, "val": 36, "test": 120}
    # the test split is exactly the held-out voices' files: the same features as a
    # dataset made of the held-out folder alone, and none of them in train or val
    alone = tmp_path / "alone"
    r = run("prep", "--input", f"wav:{data / 'test'}", "--out", alone, "--split", "train=1")
    assert r.returncode == 0, describe(r)
    key = lambda row: (row["label"][0], tuple(round(v, 4) for v in row["mfcc"]))
    test_rows = sorted(map(key, split_rows(ds, "test")))
    assert test_rows == sorted(map(key, split_rows(alone, "train")))
    heard_rows = set(map(key, split_rows(ds, "train") + split_rows(ds, "val")))
    assert len(heard_rows) == 360 and not heard_rows & set(test_rows)

    r = run("train", "--model", EXAMPLES / "speech-digits" / "model.yaml", "--data", ds, "--out", tmp_path / "run")
    assert r.returncode == 0, describe(r)
    r = run("eval", "--model", tmp_path / "run", "--data", ds, "--split", "test", "--json")
    assert r.returncode == 0, describe(r)
    res = json.loads(r.stdout)
    # 9 voices heard, 3 never heard: chance is 0.1, the full size reaches ~0.97
    assert res["examples"] == 120 and res["metrics"]["accuracy"] >= 0.3, res["metrics"]


def test_recsys_auc_near_bayes(run, tmp_path):
    gen = tmp_path / "gen"
    r = generate(EXAMPLES / "recsys" / "make_clicks.py", "--out", gen, "--users", "60", "--items", "30",
                 "--rows", "40000", "--test-rows", "5000", "--seed", "2")
    truth = json.loads((gen / "truth.json").read_text())
    assert json.loads(r.stdout)["bayes_auc"] == truth["bayes_auc"]
    assert 0.65 < truth["bayes_auc"] < 0.9 and 0.15 < truth["click_rate"] < 0.5
    schema = json.loads((gen / "schema.json").read_text())
    domains = {f["name"]: f.get("values") for f in schema["features"]}
    assert len(domains["user"]) == 60 and len(domains["item"]) == 30  # beyond inference's 50

    ds = tmp_path / "ds"
    r = run("prep", "--input", f"csv:{gen / 'clicks.csv'}", "--test-input", gen / "test.csv", "--schema",
            gen / "schema.json", "--split", "train=0.9,val=0.1", "--out", ds, "--json")
    assert r.returncode == 0, describe(r)
    assert json.loads(r.stdout)["splits"] == {"train": 36000, "val": 4000, "test": 5000}
    r = run("train", "--model", EXAMPLES / "recsys" / "model.yaml", "--data", ds, "--out", tmp_path / "run")
    assert r.returncode == 0, describe(r)
    r = run("eval", "--model", tmp_path / "run", "--data", ds, "--split", "test", "--json")
    assert r.returncode == 0, describe(r)
    m = json.loads(r.stdout)["metrics"]
    # 40,000 rows leave ~670 per user: the full size (1,000,000 rows) comes within 0.01
    assert m["auc"] > 0.65 and truth["bayes_auc"] - m["auc"] < 0.05, (m, truth["bayes_auc"])
