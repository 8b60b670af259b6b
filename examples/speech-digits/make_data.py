#!/usr/bin/python3
"""Spoken digits "zero".."nine" from espeak-ng, across voices, speeds and pitches, resampled
to 16 kHz 16-bit mono with sox, with white noise mixed in by sox at a given SNR.

Every file is generated once into DIR/pool/DIGIT/VOICE_sSPEED_pPITCH.wav (a second run
with the same settings reuses it), then split by voice, so the test split holds voices
never heard in training:

  --folds K        DIR/fold-1 .. DIR/fold-K, each with train/ and test/ (K-fold over voices)
  --holdout V,...  DIR/train and DIR/test, the test holding these voices
  --holdout-count N  the same with N voices drawn by --seed

train/ and test/ are class folders of hard links into the pool, ready for
`slipway prep --input wav:DIR/train --test-input DIR/test`. DIR/split.json records the
voices of every split. Needs espeak-ng and sox; uses no Python package beyond the standard
library.
"""

import argparse
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# voices that spell an English word letter by letter instead of saying it (RECIPES.md)
SPELLING = {"ba", "be", "cv", "he", "hyw", "ja", "kok", "ky", "my", "nog", "shn"}


def all_voices():
    """espeak-ng's voices as their file names (unique, unlike the language codes), without
    the ones that spell letters."""
    out = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True, check=True).stdout
    voices = []
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[1] not in SPELLING:
            voices.append(cols[4])
    return sorted(set(voices))


def voice_tag(voice):
    return voice.replace("/", "-")


def rms_db(path):
    r = subprocess.run(["sox", path, "-n", "stats"], capture_output=True, text=True, check=True)
    m = re.search(r"RMS lev dB\s+(\S+)", r.stderr)
    if not m:
        raise RuntimeError(f"sox stats gave no RMS level for {path}")
    return float(m.group(1))


def noise_rms_db():
    """RMS level of sox's full-scale white noise, measured once."""
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "noise.wav")
        subprocess.run(["sox", "-R", "-n", "-r", "16000", "-b", "16", p, "synth", "2", "whitenoise"], check=True)
        return rms_db(p)


def make_one(job):
    voice, digit, speed, pitch, snr, noise_db, path = job
    if os.path.exists(path):
        return path
    tmp = path + ".tmp"
    raw = path + ".raw.wav"
    try:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", raw,
                        DIGITS[digit]], check=True, capture_output=True)
        clean = tmp + ".clean.wav" if snr is not None else tmp
        subprocess.run(["sox", raw, "-r", "16000", "-b", "16", "-c", "1", "-t", "wav", clean], check=True,
                       capture_output=True)
        if snr is not None:
            # noise gain so that RMS(signal) / RMS(noise) is the SNR; both RMS over the
            # whole file, espeak's short leading and trailing silence included
            gain = 10 ** ((rms_db(clean) - snr - noise_db) / 20)
            # -R: repeatable noise; the mix keeps the clean signal at unit gain
            subprocess.run(["sox", "-R", "-m", "-v", "1", clean, "-v", f"{gain:.6g}",
                            f"|sox -R {clean} -p synth whitenoise", "-b", "16", "-t", "wav", tmp],
                           check=True, capture_output=True)
            os.unlink(clean)
        os.replace(tmp, path)
    finally:
        for p in (raw, tmp, tmp + ".clean.wav"):
            if os.path.exists(p):
                os.unlink(p)
    return path


def link_tree(pool, dest, voices):
    """dest/DIGIT/ holds hard links to the pool files of these voices."""
    if os.path.exists(dest):
        shutil.rmtree(dest)
    tags = {voice_tag(v) for v in voices}
    n = 0
    for d in sorted(os.listdir(pool)):
        src_dir = os.path.join(pool, d)
        if not os.path.isdir(src_dir):
            continue
        os.makedirs(os.path.join(dest, d))
        for f in sorted(os.listdir(src_dir)):
            if f.endswith(".wav") and f.split("_")[0] in tags:
                try:
                    os.link(os.path.join(src_dir, f), os.path.join(dest, d, f))
                except OSError:
                    shutil.copyfile(os.path.join(src_dir, f), os.path.join(dest, d, f))
                n += 1
    return n


def ints(s):
    return [int(x) for x in s.split(",") if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--voices", type=int, default=0, help="use N voices drawn by --seed (0: all, 120)")
    ap.add_argument("--voice-list", default="", help="comma-separated voices (espeak-ng file names, e.g. gmw/en-US)")
    ap.add_argument("--speeds", default="130,160,190", help="words per minute (espeak-ng -s)")
    ap.add_argument("--pitches", default="30,50,70", help="pitches 0-99 (espeak-ng -p)")
    ap.add_argument("--snr", type=float, default=None, help="mix in white noise at this SNR in dB (default: clean)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the voice draw and the folds")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--folds", type=int, help="K-fold split over voices: DIR/fold-1..K/{train,test}")
    g.add_argument("--holdout", help="comma-separated voices for DIR/test; the rest go to DIR/train")
    g.add_argument("--holdout-count", type=int, help="hold out N voices drawn by --seed")
    a = ap.parse_args()

    for tool in ("espeak-ng", "sox"):
        if not shutil.which(tool):
            sys.exit(f"make_data: {tool} is not installed (scripts/install-deps installs it)")
    known = all_voices()
    if a.voice_list:
        voices = sorted(set(a.voice_list.split(",")))
        bad = [v for v in voices if v not in known]
        if bad:
            sys.exit(f"make_data: unknown or letter-spelling voices: {', '.join(bad)}")
    else:
        voices = known
        if a.voices:
            if a.voices > len(known):
                sys.exit(f"make_data: --voices {a.voices}: only {len(known)} voices")
            voices = sorted(random.Random(a.seed).sample(known, a.voices))
    speeds, pitches = ints(a.speeds), ints(a.pitches)

    rng = random.Random(a.seed + 1)
    if a.folds:
        if not 2 <= a.folds <= len(voices):
            sys.exit(f"make_data: --folds must be from 2 to the number of voices ({len(voices)})")
        order = voices[:]
        rng.shuffle(order)
        splits = {f"fold-{k + 1}": sorted(order[k::a.folds]) for k in range(a.folds)}
    else:
        if a.holdout:
            held = sorted(set(a.holdout.split(",")))
            bad = [v for v in held if v not in voices]
            if bad:
                sys.exit(f"make_data: held-out voices not among the voices used: {', '.join(bad)}")
        else:
            if not 1 <= a.holdout_count < len(voices):
                sys.exit(f"make_data: --holdout-count must be from 1 to {len(voices) - 1}")
            held = sorted(rng.sample(voices, a.holdout_count))
        splits = {"holdout": held}

    pool = os.path.join(a.out, "pool")
    params = {"voices": voices, "speeds": speeds, "pitches": pitches, "snr": a.snr, "rate": 16000}
    pfile = os.path.join(pool, "params.json")
    if os.path.exists(pfile):
        with open(pfile) as f:
            if json.load(f) != params:
                shutil.rmtree(pool)  # other settings: start over
    os.makedirs(pool, exist_ok=True)
    with open(pfile, "w") as f:
        json.dump(params, f, indent=1)
    noise_db = noise_rms_db() if a.snr is not None else None
    jobs = []
    for d in range(10):
        os.makedirs(os.path.join(pool, str(d)), exist_ok=True)
        for v in voices:
            for s in speeds:
                for p in pitches:
                    jobs.append((v, d, s, p, a.snr, noise_db,
                                 os.path.join(pool, str(d), f"{voice_tag(v)}_s{s}_p{p}.wav")))
    with multiprocessing.Pool(max(1, a.jobs)) as mp:
        for i, _ in enumerate(mp.imap_unordered(make_one, jobs, chunksize=8), 1):
            if i % 500 == 0 or i == len(jobs):
                print(f"make_data: {i}/{len(jobs)} files", file=sys.stderr)

    summary = {"params": params, "files": len(jobs), "splits": {}}
    for name, held in splits.items():
        base = a.out if name == "holdout" else os.path.join(a.out, name)
        train = [v for v in voices if v not in held]
        n_train = link_tree(pool, os.path.join(base, "train"), train)
        n_test = link_tree(pool, os.path.join(base, "test"), held)
        summary["splits"][name] = {"train_voices": train, "test_voices": held, "train_files": n_train,
                                   "test_files": n_test}
    with open(os.path.join(a.out, "split.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({k: {"train_files": v["train_files"], "test_files": v["test_files"],
                          "test_voices": len(v["test_voices"])} for k, v in summary["splits"].items()}))


if __name__ == "__main__":
    main()
