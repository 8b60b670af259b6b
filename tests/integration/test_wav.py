"""WAV input: class-named folders of 16-bit PCM files become MFCC features
[frames, coefficients] and class labels; files that are not usable 16-bit PCM, are cut
short or hold only silence are quarantined with their reason."""

import json
import math
import os
import struct
import subprocess
import wave

from tfexample import decode_example, read_tfrecord


def write_tone(path, freq, rate=16000, seconds=0.6, sampwidth=2, amplitude=0.5, lead_silence=0.1):
    n = int(rate * seconds)
    lead = int(rate * lead_silence)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(sampwidth)
        w.setframerate(rate)
        frames = bytearray()
        for i in range(lead + n + lead):
            v = amplitude * math.sin(2 * math.pi * freq * i / rate) if lead <= i < lead + n else 0.0
            if sampwidth == 2:
                frames += struct.pack("<h", int(v * 32767))
            else:
                frames += struct.pack("<B", int(128 + v * 127))
        w.writeframes(bytes(frames))


def make_corpus(root):
    for cls, base in (("high", 2000), ("low", 300)):
        d = root / cls
        d.mkdir(parents=True)
        for i in range(10):
            write_tone(d / f"{cls}-{i}.wav", base + 25 * i, rate=16000 if i % 2 else 22050)
    write_tone(root / "low" / "eight-bit.wav", 400, sampwidth=1)
    good = (root / "high" / "high-0.wav").read_bytes()
    (root / "high" / "cut.wav").write_bytes(good[: len(good) // 2])
    (root / "high" / "not-audio.wav").write_bytes(b"this is not a wav file at all")
    write_tone(root / "low" / "silent.wav", 300, amplitude=0.0)
    (root / "low" / "notes.txt").write_text("not a wav: ignored")
    return {"eight-bit.wav": "unsupported_format", "cut.wav": "malformed",
            "not-audio.wav": "malformed", "silent.wav": "too_short"}


def test_wav_to_mfcc(slipway, tmp_path):
    root = tmp_path / "audio"
    bad = make_corpus(root)
    out = tmp_path / "ds"
    r = subprocess.run([slipway, "prep", "--input", f"wav:{root}", "--out", str(out), "--json",
                        "--max-quarantine-fraction", "0.2", "--split", "train=0.5,val=0.25,test=0.25"],
                       capture_output=True, text=True, env={**os.environ, "SLIPWAY_LOG": "warn"})
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["read"] == 24 and report["accepted"] == 20 and report["quarantined"] == 4
    q = [json.loads(l) for l in (out / "quarantine.jsonl").read_text().splitlines()]
    assert {os.path.basename(e["source"]): e["reason"] for e in q} == bad
    assert all(e["detail"] and "raw_base64" in e for e in q)

    schema = json.loads((out / "schema.json").read_text())
    feats = {f["name"]: f for f in schema["features"]}
    assert feats["mfcc"]["type"] == "float" and feats["mfcc"]["shape"] == [100, 13]
    assert feats["label"]["class_names"] == ["high", "low"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["transform"]["features"]["mfcc"]["kind"] == "standardize"
    rows = []
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            rows += [decode_example(p) for p in read_tfrecord(out / shard["file"])]
    assert len(rows) == 20
    for row in rows:
        m = row["mfcc"]
        assert len(m) == 1300 and all(math.isfinite(v) for v in m)
        # a 0.6 s tone trimmed of its silence fills ~58 frames; the rest is zero padding
        frames = [m[i * 13:(i + 1) * 13] for i in range(100)]
        used = sum(1 for f in frames if any(v != 0.0 for v in f))
        assert 50 <= used <= 62, used
    # the two classes differ where a tone's pitch shows: the mean of c1 over used frames
    by_class = {0: [], 1: []}
    for row in rows:
        by_class[row["label"][0]].append(sum(row["mfcc"][1:13 * 50:13]) / 50)
    assert max(by_class[0]) < min(by_class[1]) or min(by_class[0]) > max(by_class[1])
