#!/usr/bin/python3
"""Reference MFCCs for tests/unit/test_wav_mfcc.c, computed in float64 with numpy,
independently of src/data/mfcc.c but following the same documented pipeline.

Run:  /usr/bin/python3 tests/unit/mfcc_reference.py
and paste the printed arrays into test_wav_mfcc.c (the signals are generated there
by the same formula, from the same LCG, rounded to float32 as here)."""
import math

import numpy as np


def signal(rate, n, seed, quiet, tone, silence):
    """quiet samples of faint noise, tone samples of two sines plus noise, then
    silence zeros; rounded to float32 like the C test's buffer."""
    state = seed
    x = np.zeros(quiet + tone + silence, dtype=np.float64)
    for i in range(quiet + tone):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        noise = (state >> 8) / 16777216.0 - 0.5
        if i < quiet:
            x[i] = 0.002 * noise
        else:
            t = (i - quiet) / rate
            x[i] = (0.4 * math.sin(2 * math.pi * 440 * t)
                    + 0.2 * math.sin(2 * math.pi * 1800 * t + 0.5) + 0.05 * noise)
    assert len(x) == n
    return x.astype(np.float32).astype(np.float64)


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mfcc(x, rate, frames, coeffs, bands, frame_ms, hop_ms, trim_db):
    flen = int(math.floor(frame_ms * rate / 1000.0 + 0.5))  # round half up, not Python's
    hop = int(math.floor(hop_ms * rate / 1000.0 + 0.5))     # banker's round()
    nfft = 1 << (flen - 1).bit_length()
    y = np.append(x[0], x[1:] - 0.97 * x[:-1])
    nf = 1 + (len(y) - flen) // hop
    idx = np.arange(flen)[None, :] + hop * np.arange(nf)[:, None]
    fr = y[idx] * np.hamming(flen)[None, :]
    energy = (fr ** 2).sum(axis=1)
    keep = np.arange(nf)
    if trim_db > 0:
        thr = energy.max() * 10 ** (-trim_db / 10)
        loud = np.nonzero(energy >= thr)[0]
        keep = np.arange(loud[0], loud[-1] + 1)
        # The C code computes energies in float32-ish precision: make sure no frame
        # sits so near the threshold that rounding could flip it.
        margin = np.min(np.abs(energy / thr - 1))
        assert margin > 1e-3, margin
    fr = fr[keep[:frames]]
    power = np.abs(np.fft.rfft(fr, nfft, axis=1)) ** 2 / nfft
    pts = mel_to_hz(np.linspace(hz_to_mel(20.0), hz_to_mel(rate / 2.0), bands + 2))
    freqs = np.arange(nfft // 2 + 1) * rate / nfft
    lo, c, hi = pts[:-2, None], pts[1:-1, None], pts[2:, None]
    fb = np.maximum(0.0, np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)))
    logmel = np.log(power @ fb.T + 1e-10)
    n = np.arange(bands)
    k = np.arange(coeffs)[:, None]
    dct = np.cos(np.pi * k * (2 * n + 1) / (2 * bands)) * np.sqrt(2.0 / bands)
    dct[0] *= np.sqrt(0.5)
    out = np.zeros((frames, coeffs))
    out[: len(fr)] = logmel @ dct.T
    return out, len(fr)


def c_float(v):
    s = f"{v:.7g}"
    if not any(ch in s for ch in ".en"):
        s += ".0"
    return s + "f"


def emit(name, out, comment):
    print(f"/* {comment} */")
    print(f"static const float {name}[{out.shape[0]}][{out.shape[1]}] = {{")
    for row in out:
        print("    {" + ", ".join(c_float(v) for v in row) + "},")
    print("};")


def main():
    # Case A: 16 kHz, 0.2 s of tone, no trimming, cut to 10 of its 18 frames.
    x = signal(16000, 3200, 12345, 0, 3200, 0)
    a, kept = mfcc(x, 16000, 10, 13, 26, 25.0, 10.0, 0.0)
    emit("ref_a", a, f"16 kHz, seed 12345, 3200 tone samples; frames 10 coeffs 13 bands 26, "
         f"trim off; {kept} frames computed")
    # Case B: 22050 Hz (10 ms hops: 220.5 samples, rounded up to 221), faint noise, tone, silence;
    # trimmed at 20 dB and padded to 28 frames.
    x = signal(22050, 2205 + 5513 + 2205, 777, 2205, 5513, 2205)
    b, kept = mfcc(x, 22050, 28, 12, 20, 25.0, 10.0, 20.0)
    emit("ref_b", b, f"22050 Hz, seed 777, 2205 quiet + 5513 tone + 2205 zero samples; "
         f"frames 28 coeffs 12 bands 20, trim 20 dB; {kept} frames kept, rest padding")


if __name__ == "__main__":
    main()
