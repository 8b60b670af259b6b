"""The command line of `slipway` and `slipway prep`: help, usage errors (exit 2),
failures (exit 1) with useful messages, output directories built atomically, --json,
and determinism of the split. Runs on a small IDX dataset made here, so it is fast."""

import hashlib
import json
import os
import resource
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import tfexample as tfx
from conftest import describe, write_idx

N_TRAIN = 1000
N_TEST = 200


@pytest.fixture(scope="module")
def small_idx(tmp_path_factory):
    """A directory of IDX files: 1000 train and 200 t10k random 28x28 images."""
    d = tmp_path_factory.mktemp("idx") / "src"
    d.mkdir()
    rs = np.random.RandomState(0)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        write_idx(d / f"{prefix}-images-idx3-ubyte", rs.randint(0, 256, size=(n, 28, 28)))
        write_idx(d / f"{prefix}-labels-idx1-ubyte", rs.randint(0, 10, size=(n,)))
    return d


def prep(run, src, out, *extra, **kwargs):
    return run("prep", "--input", f"idx:{src}", "--out", out, *extra, **kwargs)


def tmp_leftovers(parent):
    return sorted(p.name for p in Path(parent).iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def split_examples(ds):
    """split -> Counter of canonical examples, read with the independent reader."""
    manifest = json.loads((ds / "manifest.json").read_text())
    out = {}
    for split, entry in manifest["splits"].items():
        c = Counter()
        for sh in entry["shards"]:
            for payload in tfx.read_tfrecord(ds / sh["file"]):
                c[tfx.canonical(payload)] += 1
        out[split] = c
    return out


# ---- help and usage errors ---------------------------------------------------------


def test_help(run):
    p = run("--help")
    assert p.returncode == 0, describe(p)
    assert "prep" in p.stdout


def test_prep_help(run):
    p = run("prep", "--help")
    assert p.returncode == 0, describe(p)
    assert "--max-quarantine-fraction" in p.stdout


def test_unknown_command(run):
    p = run("no-such-command")
    assert p.returncode == 2, describe(p)
    assert "no-such-command" in p.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--out", "OUT"], id="no-input"),
        pytest.param(["--input", "nokind", "--out", "OUT"], id="input-without-kind"),
        pytest.param(["--input", "bogus:/tmp", "--out", "OUT"], id="unknown-kind"),
        pytest.param(["--input", "idx:SRC", "--out", "OUT", "--shards", "x"], id="shards-x"),
        pytest.param(["--input", "idx:SRC", "--out", "OUT", "--shards", "0"], id="shards-0"),
        pytest.param(["--input", "idx:SRC", "--out", "OUT", "--seed", "-1"], id="seed-negative"),
        pytest.param(["--input", "idx:SRC", "--out", "OUT", "--no-such-flag"], id="unknown-flag"),
        pytest.param(["--input", "idx:SRC"], id="no-out"),
    ],
)
def test_prep_usage_errors(run, small_idx, tmp_path, args):
    out = tmp_path / "out"
    args = [a.replace("OUT", str(out)).replace("SRC", str(small_idx)) for a in args]
    p = run("prep", *args)
    assert p.returncode == 2, describe(p)
    assert p.stderr.strip(), "a usage error says why"
    assert not out.exists()
    assert tmp_leftovers(tmp_path) == []


# ---- failures --------------------------------------------------------------------------


def test_missing_input(run, tmp_path):
    missing = tmp_path / "does-not-exist"
    out = tmp_path / "out"
    p = prep(run, missing, out)
    assert p.returncode == 1, describe(p)
    assert str(missing) in p.stderr
    assert not out.exists()
    assert tmp_leftovers(tmp_path) == []


def test_existing_output_needs_overwrite(run, small_idx, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old-file").write_text("old")
    p = prep(run, small_idx, out)
    assert p.returncode == 1, describe(p)
    assert "--overwrite" in p.stderr
    assert (out / "old-file").read_text() == "old", "a refused run leaves the directory alone"
    assert tmp_leftovers(tmp_path) == []

    p = prep(run, small_idx, out, "--overwrite")
    assert p.returncode == 0, describe(p)
    assert not (out / "old-file").exists()
    assert (out / "manifest.json").is_file()
    assert sum(v["examples"] for v in json.loads((out / "manifest.json").read_text())["splits"].values()) == N_TRAIN + N_TEST
    assert tmp_leftovers(tmp_path) == []


def test_failed_write_leaves_no_temporary_directory(run, small_idx, tmp_path):
    """A run that fails while writing shards (file size limit: write() gets EFBIG)
    exits 1 and leaves neither the output nor its temporary sibling behind."""

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, 32 * 1024))

    out = tmp_path / "out"
    p = prep(run, small_idx, out, preexec_fn=limit_file_size, restore_signals=False)
    assert p.returncode == 1, describe(p)
    assert p.stderr.strip()
    assert not out.exists()
    assert tmp_leftovers(tmp_path) == []


# ---- output ------------------------------------------------------------------------


def test_json_report(run, small_idx, tmp_path):
    out = tmp_path / "out"
    p = prep(run, small_idx, out, "--json")
    assert p.returncode == 0, describe(p)
    report = json.loads(p.stdout)
    for key in ("read", "accepted", "quarantined", "splits"):
        assert key in report, key
    assert report["read"] == N_TRAIN + N_TEST
    assert report["accepted"] == N_TRAIN + N_TEST
    assert report["quarantined"] == 0
    assert report["splits"]["test"] == N_TEST
    assert sum(report["splits"].values()) == N_TRAIN + N_TEST


def test_plain_report(run, small_idx, tmp_path):
    p = prep(run, small_idx, tmp_path / "out")
    assert p.returncode == 0, describe(p)
    assert f"read {N_TRAIN + N_TEST} records" in p.stdout


# ---- determinism ---------------------------------------------------------------------


def files_digest(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(d).iterdir())}


def test_same_seed_same_bytes(run, small_idx, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        p = prep(run, small_idx, out, "--seed", "7")
        assert p.returncode == 0, describe(p)
    da, db = files_digest(a), files_digest(b)
    assert set(da) == set(db)
    shards = [n for n in da if n.endswith(".tfrecord")]
    assert shards
    for name in shards + ["manifest.json"]:
        assert da[name] == db[name], f"{name} differs between two runs with the same seed"


def test_seed_changes_train_val_not_test(run, small_idx, tmp_path):
    a, b = tmp_path / "s1", tmp_path / "s2"
    assert prep(run, small_idx, a, "--seed", "1").returncode == 0
    assert prep(run, small_idx, b, "--seed", "2").returncode == 0
    ea, eb = split_examples(a), split_examples(b)
    assert ea["test"] == eb["test"]
    assert sum(ea["test"].values()) == N_TEST
    assert ea["train"] != eb["train"]
    assert ea["val"] != eb["val"]
    assert ea["train"] + ea["val"] == eb["train"] + eb["val"]
    assert sum((ea["train"] + ea["val"]).values()) == N_TRAIN
