"""slipway's datasets against an independent reading of the formats.

`slipway prep` on the real Fashion-MNIST (70,000 images): every shard is decoded by
tfexample.py (its own CRC32C, its own tf.train.Example classes built from the published
field numbers), hashed against the manifest, and compared example by example with the
IDX source parsed here. Then the other direction: slipway reads TFRecord files written
by tfexample.py, and reports damaged ones record by record in quarantine.jsonl.
"""

import hashlib
import json
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import tfexample as tfx
from conftest import describe, read_idx

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


# ---- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fm(run, fashion_mnist, tmp_path_factory):
    """slipway prep of Fashion-MNIST: (dataset dir, --json report)."""
    out = tmp_path_factory.mktemp("fm") / "dataset"
    p = run("prep", "--input", f"idx:{fashion_mnist}", "--out", out, "--json")
    assert p.returncode == 0, describe(p)
    return out, json.loads(p.stdout)


@pytest.fixture(scope="module")
def manifest(fm):
    return json.loads((fm[0] / "manifest.json").read_text())


@pytest.fixture(scope="module")
def shards(fm, manifest):
    """split -> list of (shard entry, list of (offset, payload)), every shard read here."""
    out = {}
    for split, entry in manifest["splits"].items():
        out[split] = [(sh, tfx.read_tfrecord(fm[0] / sh["file"], with_offsets=True)) for sh in entry["shards"]]
    return out


@pytest.fixture(scope="module")
def examples(shards):
    """split -> list of decoded examples (name -> list of values)."""
    return {split: [tfx.decode_example(p) for _, recs in lst for _, p in recs] for split, lst in shards.items()}


@pytest.fixture(scope="module")
def source(fashion_mnist):
    """'train'/'t10k' -> list of (image bytes, label) parsed from the IDX files here."""
    out = {}
    for prefix in ("train", "t10k"):
        idims, pix = read_idx(fashion_mnist / f"{prefix}-images-idx3-ubyte.gz")
        ldims, labs = read_idx(fashion_mnist / f"{prefix}-labels-idx1-ubyte.gz")
        assert idims[0] == ldims[0] and idims[1:] == (28, 28)
        size = idims[1] * idims[2]
        out[prefix] = [(pix[i * size:(i + 1) * size], labs[i]) for i in range(idims[0])]
    return out


def pairs_key(pairs):
    return Counter(hashlib.sha1(img).hexdigest() + f":{lab}" for img, lab in pairs)


def example_pairs(exs):
    return [(e["image"][0], e["label"][0]) for e in exs]


# ---- the independent codec itself ----------------------------------------------------


def test_crc32c_known_values():
    assert tfx.crc32c(b"") == 0
    assert tfx.crc32c(b"123456789") == 0xE3069283
    assert tfx.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720, B.4
    assert tfx.crc32c(b"\xff" * 32) == 0x62A8AB43
    assert tfx.crc32c(bytes(range(32))) == 0x46DD794E
    rows = np.frombuffer(bytes(range(32)) * 20, dtype=np.uint8).reshape(20, 32)
    assert (tfx.crc32c_many(rows) == 0x46DD794E).all()


def test_frame_roundtrip_and_checks():
    payloads = [b"", b"a", bytes(range(256)) * 3] + [bytes([i]) * 50 for i in range(20)]
    buf = b"".join(tfx.frame(p) for p in payloads)
    assert tfx.read_tfrecord(buf) == payloads
    with pytest.raises(tfx.TFRecordError) as e:
        tfx.read_tfrecord(buf[:-3])
    assert e.value.kind == "truncated"
    bad = bytearray(buf)
    bad[16 + 1 + 16 + 12 + 7] ^= 1  # inside the third payload
    with pytest.raises(tfx.TFRecordError) as e:
        tfx.read_tfrecord(bytes(bad))
    assert (e.value.kind, e.value.offset) == ("corrupt", 16 + 17)
    bad = bytearray(buf)
    bad[16 + 17 + 2] ^= 4  # inside the third frame's length
    with pytest.raises(tfx.TFRecordError) as e:
        tfx.read_tfrecord(bytes(bad))
    assert (e.value.kind, e.value.offset) == ("corrupt", 16 + 17)


def test_example_builder_roundtrip():
    ex = tfx.encode_example({"b": [b"x", b"yz"], "f": [1.5, -2.25], "i": [3, -4, 2**40], "e": ("float", [])})
    assert tfx.decode_example(ex) == {"b": [b"x", b"yz"], "f": [1.5, -2.25], "i": [3, -4, 2**40], "e": []}


# ---- slipway's Fashion-MNIST dataset, read independently ------------------------------


def test_report_and_manifest_counts(fm, manifest):
    _, report = fm
    counts = manifest["counts"]
    assert counts["read"] == 70000
    assert counts["quarantined"] == 0
    assert counts["accepted"] == 70000
    splits = {k: v["examples"] for k, v in manifest["splits"].items()}
    assert splits["test"] == 10000
    assert splits["train"] + splits["val"] == 60000
    assert sum(splits.values()) == 70000
    assert report["read"] == 70000 and report["quarantined"] == 0
    assert report["splits"] == splits
    assert manifest["schema"] == "schema.json" and manifest["stats"] == "stats.json"
    assert (fm[0] / "quarantine.jsonl").read_text() == ""


def test_every_shard_matches_manifest(fm, manifest, shards):
    names = set()
    for split, lst in shards.items():
        n_shards = len(lst)
        total = 0
        for i, (entry, recs) in enumerate(lst):
            path = fm[0] / entry["file"]
            assert entry["file"] == f"{split}-{i:05d}-of-{n_shards:05d}.tfrecord"
            data = path.read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
            assert len(data) == entry["bytes"], entry["file"]
            assert len(recs) == entry["examples"], entry["file"]
            total += len(recs)
            names.add(entry["file"])
        assert total == manifest["splits"][split]["examples"]
    on_disk = {p.name for p in fm[0].glob("*.tfrecord")}
    assert on_disk == names


def test_frames_rebuilt_here_are_byte_identical(fm, shards):
    """The scalar CRC path: frames built by tfexample.frame() equal the file's bytes."""
    for lst in shards.values():
        for entry, recs in lst:
            data = (fm[0] / entry["file"]).read_bytes()
            for off, payload in recs[:25] + recs[-5:]:
                f = tfx.frame(payload)
                assert data[off:off + len(f)] == f, (entry["file"], off)


def test_feature_names_and_types(shards):
    for split, lst in shards.items():
        for entry, recs in lst:
            for off, payload in recs:
                typed = tfx.example_to_typed(payload)
                assert set(typed) == {"image", "label"}, (entry["file"], off)
                kind, img = typed["image"]
                assert kind == "bytes" and len(img) == 1 and len(img[0]) == 784, (entry["file"], off)
                kind, lab = typed["label"]
                assert kind == "int64" and len(lab) == 1 and 0 <= lab[0] <= 9, (entry["file"], off)


def test_examples_equal_the_idx_source(examples, source):
    train_val = example_pairs(examples["train"]) + example_pairs(examples["val"])
    assert len(train_val) == 60000
    assert pairs_key(train_val) == pairs_key(source["train"])
    assert pairs_key(example_pairs(examples["test"])) == pairs_key(source["t10k"])


def test_serialization_is_pythons_deterministic_one(shards):
    n = 0
    for lst in shards.values():
        for entry, recs in lst:
            for off, payload in recs:
                msg = tfx.parse_example(payload)
                assert msg.SerializeToString(deterministic=True) == payload, (entry["file"], off)
                n += 1
            # and the bytes our own builder makes from the decoded values
            for off, payload in recs[:: max(1, len(recs) // 50)]:
                d = tfx.decode_example(payload)
                assert tfx.encode_example(d) == payload, (entry["file"], off)
    assert n == 70000


def test_schema(fm):
    schema = json.loads((fm[0] / "schema.json").read_text())
    feats = {f["name"]: f for f in schema["features"]}
    assert set(feats) == {"image", "label"}
    assert feats["image"]["encoding"] == "raw_uint8"
    assert feats["image"]["shape"] == [28, 28, 1]
    assert feats["image"]["type"] == "bytes"
    assert feats["label"]["class_names"] == FASHION_CLASSES
    assert schema.get("label") == "label"


def test_stats(fm, manifest, examples):
    stats = json.loads((fm[0] / "stats.json").read_text())
    for split, entry in manifest["splits"].items():
        feats = stats["splits"][split]["features"]
        for name in ("image", "label"):
            assert feats[name]["count"] == entry["examples"], (split, name)
            assert "mean" in feats[name] and "std" in feats[name], (split, name)
    pix = np.frombuffer(b"".join(e["image"][0] for e in examples["train"]), dtype=np.uint8)
    mean = float(pix.astype(np.float64).mean())
    std = float(pix.astype(np.float64).std())
    got = stats["splits"]["train"]["features"]["image"]
    assert abs(got["mean"] - mean) <= 1e-6 * abs(mean), (got["mean"], mean)
    assert abs(got["std"] - std) <= 1e-6 * abs(std), (got["std"], std)
    labels = np.array([e["label"][0] for e in examples["train"]], dtype=np.float64)
    got = stats["splits"]["train"]["features"]["label"]
    assert abs(got["mean"] - labels.mean()) <= 1e-6 * labels.mean()


# ---- slipway reads what the independent writer wrote ------------------------------


def written_examples():
    rng = random.Random(1)
    colors = [b"red", b"green", b"blue", b"black"]
    out = []
    for _ in range(200):
        out.append(
            {
                "x": ("float", [tfx.f32(rng.uniform(-10, 10)) for _ in range(3)]),
                "n": ("int64", [rng.randint(-1000, 1000)]),
                "color": ("bytes", [rng.choice(colors)]),
                "label": ("int64", [rng.randint(0, 1)]),
            }
        )
    return out


def test_slipway_reads_independent_tfrecord(run, tmp_path):
    exs = written_examples()
    payloads = [tfx.encode_example(e) for e in exs]
    src = tmp_path / "written.tfrecord"
    tfx.write_tfrecord(src, payloads)
    assert tfx.read_tfrecord(src) == payloads

    out = tmp_path / "ds2"
    p = run("prep", "--input", f"tfrecord:{src}", "--out", out, "--label", "label", "--json")
    assert p.returncode == 0, describe(p)
    report = json.loads(p.stdout)
    assert report["read"] == 200, report
    assert report["quarantined"] == 0, report
    manifest = json.loads((out / "manifest.json").read_text())
    got = []
    for split, entry in manifest["splits"].items():
        for sh in entry["shards"]:
            data = (out / sh["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == sh["sha256"]
            got += tfx.read_tfrecord(data)
    assert len(got) == 200
    assert Counter(tfx.canonical(g) for g in got) == Counter(tfx.canonical(p) for p in payloads)


# ---- damaged shards are quarantined record by record ----------------------------------


def damaged_copy(fm, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(fm[0], copy)
    shard = copy / "val-00000-of-00001.tfrecord"
    frames = tfx.frame_offsets(shard)
    return copy, shard, frames


def quarantine_lines(out):
    path = out / "quarantine.jsonl"
    assert path.is_file(), f"{path} missing"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_reported(p, out, shard, offset, reason):
    assert p.returncode == 0, describe(p)
    report = json.loads(p.stdout)
    assert report["quarantined"] >= 1, report
    lines = quarantine_lines(out)
    hits = [q for q in lines if shard.name in q.get("source", "") and q.get("offset") == offset]
    assert hits, f"no quarantine line for {shard.name} offset {offset}: {lines[:5]}"
    assert hits[0]["reason"] == reason, hits[0]
    return report


def test_truncated_shard_is_quarantined(run, fm, tmp_path):
    copy, shard, frames = damaged_copy(fm, tmp_path)
    k = 100
    off, length = frames[k]
    with open(shard, "r+b") as f:
        f.truncate(off + 12 + length // 2)
    out = tmp_path / "out"
    p = run("prep", "--input", f"tfrecord:{copy}", "--out", out, "--json")
    report = check_reported(p, out, shard, off, "truncated_record")
    # everything before the damaged frame is still there
    assert report["accepted"] == 54000 + 10000 + k, report


def test_bit_flip_is_quarantined(run, fm, tmp_path):
    copy, shard, frames = damaged_copy(fm, tmp_path)
    k = 100
    off, length = frames[k]
    with open(shard, "r+b") as f:
        f.seek(off + 12 + 500)
        b = f.read(1)
        f.seek(off + 12 + 500)
        f.write(bytes([b[0] ^ 0x10]))
    with pytest.raises(tfx.TFRecordError) as e:
        tfx.read_tfrecord(shard)
    assert (e.value.kind, e.value.offset) == ("corrupt", off)
    out = tmp_path / "out"
    p = run("prep", "--input", f"tfrecord:{copy}", "--out", out, "--json")
    report = check_reported(p, out, shard, off, "corrupt_record")
    # the frames after the damaged one are still read
    assert report["accepted"] == 69999, report
