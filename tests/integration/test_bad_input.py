"""Bad input loses nothing: every bad row of the CSV and JSONL fixtures lands in
quarantine.jsonl with the right reason code and its line, every good row reaches the
shards, and read = accepted + quarantined. Fixtures: tests/data/make_fixtures.py."""

import base64
import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tfexample import decode_example, read_tfrecord

DATA = Path(__file__).resolve().parents[1] / "data" / "tabular"
EXPECTED = json.loads((DATA / "expected.json").read_text())


def prep(slipway, *args):
    return subprocess.run([slipway, "prep", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "SLIPWAY_LOG": "warn"}, timeout=120)


def quarantine(out):
    return [json.loads(l) for l in (out / "quarantine.jsonl").read_text().splitlines()]


def all_examples(out):
    manifest = json.loads((out / "manifest.json").read_text())
    rows = []
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            for payload in read_tfrecord(out / shard["file"]):
                rows.append(decode_example(payload))
    return manifest, rows


@pytest.mark.parametrize("name,kind", [("rows.csv", "csv"), ("rows.jsonl", "jsonl")])
def test_every_bad_row_quarantined_with_its_reason(slipway, tmp_path, name, kind):
    out = tmp_path / "ds"
    r = prep(slipway, "--input", f"{kind}:{DATA / name}", "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    got = sorted((q["line"], q["reason"]) for q in quarantine(out))
    want = sorted((e["line"], e["reason"]) for e in EXPECTED[name])
    assert got == want
    lines = (DATA / name).read_bytes().split(b"\n")
    for q in quarantine(out):
        assert q["source"].endswith(name) and q["detail"]
        # the raw record is kept: as text, or base64 when it is not UTF-8
        raw = q["raw"].encode() if "raw" in q else base64.b64decode(q["raw_base64"])
        assert raw == lines[q["line"] - 1].rstrip(b"\r") or q["reason"] == "malformed"
    manifest, rows = all_examples(out)
    counts = manifest["counts"]
    assert counts["read"] == counts["accepted"] + counts["quarantined"]
    assert counts["quarantined"] == len(want) == report["quarantined"]
    assert counts["accepted"] == EXPECTED["good_rows"] == len(rows)
    assert counts["quarantined_by_reason"] == dict(Counter(r for _, r in want))
    # every good row arrives, once: ids 0..N-1
    assert sorted(row["id"][0] for row in rows) == list(range(EXPECTED["good_rows"]))
    assert sum(split["examples"] for split in manifest["splits"].values()) == len(rows)


def test_csv_values_arrive_raw_and_intact(slipway, tmp_path):
    out = tmp_path / "ds"
    assert prep(slipway, "--input", f"csv:{DATA / 'rows.csv'}", "--out", out).returncode == 0
    _, rows = all_examples(out)
    by_id = {row["id"][0]: row for row in rows}
    # the quoted field with a comma, a doubled quote and a line break (row id 5)
    assert by_id[5]["city"] == [b'Quito, "old" town\nnorth']
    schema = json.loads((out / "schema.json").read_text())
    feats = {f["name"]: f for f in schema["features"]}
    assert feats["id"]["type"] == "int" and feats["age"]["type"] == "float"
    assert feats["color"]["values"] == ["blue", "green", "red"]
    assert "values" not in feats["city"]  # free text has no domain
    assert schema["label"] == "label" and feats["label"]["class_names"] == ["no", "yes"]
    manifest = json.loads((out / "manifest.json").read_text())
    t = manifest["transform"]["features"]
    stats = json.loads((out / "stats.json").read_text())["splits"]["train"]["features"]
    assert t["age"]["kind"] == "standardize"
    assert t["age"]["mean"] == pytest.approx(stats["age"]["mean"])
    assert t["color"] == {"kind": "vocabulary", "values": ["blue", "green", "red"], "unknown": -1}
    # shards keep raw values: ages are years, not z-scores
    assert max(abs(row["age"][0]) for row in rows) > 10


def test_schema_file_catches_range_label_unknown(slipway, tmp_path):
    out = tmp_path / "ds"
    r = prep(slipway, "--input", f"jsonl:{DATA / 'schema_rows.jsonl'}", "--schema", DATA / "schema.json",
             "--out", out, "--max-quarantine-fraction", "0.1")
    assert r.returncode == 0, r.stderr
    got = sorted((q["line"], q["reason"]) for q in quarantine(out))
    assert got == sorted((e["line"], e["reason"]) for e in EXPECTED["schema_rows.jsonl"])
    _, rows = all_examples(out)
    assert len(rows) == 60
    assert {row["label"][0] for row in rows} == {0, 1}  # class names became indices


def test_too_much_quarantine_refuses_with_exit_3_and_writes_nothing(slipway, tmp_path):
    out = tmp_path / "ds"
    r = prep(slipway, "--input", f"csv:{DATA / 'rows.csv'}", "--out", out, "--max-quarantine-fraction", "0.01")
    assert r.returncode == 3
    assert "max-quarantine-fraction" in r.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir()]  # no temporary directory left behind either


def test_kinds_of_bad_rows(slipway):
    kinds = {e["reason"] for name in ("rows.csv", "rows.jsonl", "schema_rows.jsonl") for e in EXPECTED[name]}
    assert len(kinds) >= 10, kinds


def test_header_and_schema_problems_fail_clearly(slipway, tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("a,b,a\n1,2,3\n")
    r = prep(slipway, "--input", f"csv:{dup}", "--out", tmp_path / "o1")
    assert r.returncode == 1 and "appears twice" in r.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    r = prep(slipway, "--input", f"csv:{empty}", "--out", tmp_path / "o2")
    assert r.returncode == 1 and "empty" in r.stderr
    extra = tmp_path / "extra.csv"
    extra.write_text("id,age,color,city,label,zip\n1,2,red,x,no,3\n")
    r = prep(slipway, "--input", f"csv:{extra}", "--schema", DATA / "schema.json", "--out", tmp_path / "o3")
    assert r.returncode == 1 and "'zip' is not in the schema" in r.stderr
    bad_schema = tmp_path / "schema.json"
    bad_schema.write_text('{"features": [{"name": "x", "type": "complex"}]}')
    r = prep(slipway, "--input", f"csv:{extra}", "--schema", bad_schema, "--out", tmp_path / "o4")
    assert r.returncode == 1 and "type must be int, float or bytes" in r.stderr
    assert not any(p.name.startswith("o") for p in tmp_path.iterdir())


def test_inferred_schema_records_ranges_and_revalidates_its_own_dataset(slipway, tmp_path):
    out = tmp_path / "ds"
    assert prep(slipway, "--input", f"csv:{DATA / 'rows.csv'}", "--out", out).returncode == 0
    feats = {f["name"]: f for f in json.loads((out / "schema.json").read_text())["features"]}
    _, rows = all_examples(out)
    ages = [row["age"][0] for row in rows]
    assert feats["age"]["min"] == min(ages) and feats["age"]["max"] == max(ages)
    # the dataset passes its own schema, float32 values at the edges included
    again = tmp_path / "again"
    r = prep(slipway, "--input", f"tfrecord:{out}", "--out", again, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["quarantined"] == 0 and report["accepted"] == EXPECTED["good_rows"]
    # new data outside the range seen in training is out_of_range under that schema
    new = tmp_path / "new.csv"
    new.write_text("id,age,income,color,city,label\n1,200.5,50000,red,Oslo,yes\n2,40,50000,red,Oslo,no\n")
    r = prep(slipway, "--input", f"csv:{new}", "--schema", out / "schema.json", "--out", tmp_path / "n",
             "--max-quarantine-fraction", "0.5")
    assert r.returncode == 0, r.stderr
    assert [q["reason"] for q in quarantine(tmp_path / "n")] == ["out_of_range"]
