"""prep --test-input: a second input of the same kind becomes the test split (held-out
speakers, a held-out log), read against the schema the first input gave."""

import json

from conftest import describe
from tfexample import decode_example, read_tfrecord
from test_wav import write_tone


def rows(ds, split):
    manifest = json.loads((ds / "manifest.json").read_text())
    out = []
    for shard in manifest["splits"][split]["shards"]:
        out += [decode_example(p) for p in read_tfrecord(ds / shard["file"])]
    return out


def test_wav_test_input_labels_by_class_name(run, tmp_path):
    train, test = tmp_path / "train", tmp_path / "test"
    for cls, base in (("high", 2000), ("low", 300)):
        (train / cls).mkdir(parents=True)
        for i in range(6):
            write_tone(train / cls / f"{cls}-{i}.wav", base + 30 * i)
    # the test folder lacks "high" (so "low" is its first folder) and has a class the
    # training folders never had
    (test / "low").mkdir(parents=True)
    (test / "mid").mkdir()
    for i in range(4):
        write_tone(test / "low" / f"t-{i}.wav", 310 + 20 * i)
    write_tone(test / "mid" / "m.wav", 900)
    ds = tmp_path / "ds"
    r = run("prep", "--input", f"wav:{train}", "--test-input", test, "--out", ds, "--json",
            "--max-quarantine-fraction", "0.1")
    assert r.returncode == 0, describe(r)
    rep = json.loads(r.stdout)
    # default splits with a source test split: train=0.9,val=0.1 of the 12 training files
    assert rep["splits"] == {"train": 11, "val": 1, "test": 4} and rep["quarantined"] == 1
    q = [json.loads(l) for l in (ds / "quarantine.jsonl").read_text().splitlines()]
    assert [(e["reason"], e["source"].endswith("mid/m.wav")) for e in q] == [("bad_label", True)]
    assert [r["label"][0] for r in rows(ds, "test")] == [1, 1, 1, 1]
    assert sorted(r["label"][0] for r in rows(ds, "train") + rows(ds, "val")) == [0] * 6 + [1] * 6
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["settings"]["test_input"] == str(test)
    assert len(manifest["source"]["files"]) == 17


def test_csv_test_input(run, tmp_path):
    main, test = tmp_path / "main.csv", tmp_path / "test.csv"
    main.write_text("color,x,label\n" + "".join(f"{c},{i % 7},{i % 2}\n" for i, c in
                                                 zip(range(100), ["red", "blue"] * 50)))
    test.write_text("color,x,label\nred,1,0\nblue,2,1\ngreen,3,0\n")
    ds = tmp_path / "ds"
    r = run("prep", "--input", f"csv:{main}", "--test-input", test, "--split", "train=0.8,val=0.2",
            "--out", ds, "--json", "--max-quarantine-fraction", "0.05")
    assert r.returncode == 0, describe(r)
    rep = json.loads(r.stdout)
    # green is outside the domain the main input gave
    assert rep["splits"] == {"train": 80, "val": 20, "test": 2}
    assert rep["quarantined_by_reason"] == {"out_of_domain": 1}


def test_test_input_errors(run, tmp_path, fashion_mnist):
    main = tmp_path / "main.csv"
    main.write_text("x,label\n1,0\n2,1\n3,0\n4,1\n")
    out = tmp_path / "ds"
    r = run("prep", "--input", f"idx:{fashion_mnist}", "--test-input", main, "--out", out)
    assert r.returncode == 2 and "--test-input is for csv, jsonl and wav" in r.stderr, describe(r)
    r = run("prep", "--input", f"csv:{main}", "--test-input", tmp_path / "nope.csv", "--out", out)
    assert r.returncode == 1 and "nope.csv does not exist" in r.stderr, describe(r)
    r = run("prep", "--input", f"csv:{main}", "--test-input", main, "--split", "train=0.8,test=0.2", "--out", out)
    assert r.returncode == 2 and "--test-input gives the test split" in r.stderr, describe(r)
    other = tmp_path / "other.csv"
    other.write_text("y,label\n1,0\n")
    r = run("prep", "--input", f"csv:{main}", "--test-input", other, "--out", out)
    assert r.returncode == 1 and "'y' is not in the schema" in r.stderr, describe(r)
    empty = tmp_path / "empty.csv"
    empty.write_text("x,label\n")
    r = run("prep", "--input", f"csv:{main}", "--test-input", empty, "--out", out)
    assert r.returncode == 1 and "holds no records" in r.stderr, describe(r)
    assert not out.exists()
