#!/usr/bin/python3
"""Writes the seed corpus of fuzz_wav (tests/fuzz/corpus/wav/): small valid files and
a few that must be refused. Deterministic; rerun to regenerate, and commit the output.

    /usr/bin/python3 tests/fuzz/make_wav_corpus.py"""
import math
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "wav")
GUID_TAIL = bytes([0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38,
                   0x9B, 0x71])


def chunk(cid, body):
    pad = b"\0" if len(body) % 2 else b""
    return cid + struct.pack("<I", len(body)) + body + pad


def fmt(tag, channels, rate, bits, extensible_subtag=None):
    align = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    if extensible_subtag is not None:
        body += struct.pack("<HHIH", 22, bits, 0x3 if channels == 2 else 0x4,
                            extensible_subtag) + GUID_TAIL
    return chunk(b"fmt ", body)


def riff(*chunks):
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tone(n, rate, hz, channels=1):
    out = []
    for i in range(n):
        v = int(round(12000 * math.sin(2 * math.pi * hz * i / rate)))
        out.extend([v, -v // 2][:channels])
    return struct.pack("<%dh" % len(out), *out)


def main():
    os.makedirs(OUT, exist_ok=True)
    files = {
        # 40 ms of 1 kHz at 8 kHz: decodes and yields MFCC frames.
        "mono16_8k.wav": riff(fmt(1, 1, 8000, 16), chunk(b"data", tone(320, 8000, 1000))),
        # Stereo with an odd-sized LIST chunk (pad byte) before the data.
        "stereo16_list.wav": riff(fmt(1, 2, 16000, 16),
                                  chunk(b"LIST", b"INFOISFT\x05\0\0\0slip\0"),
                                  chunk(b"data", tone(64, 16000, 440, channels=2))),
        # WAVE_FORMAT_EXTENSIBLE wrapping PCM.
        "extensible16.wav": riff(fmt(0xFFFE, 1, 16000, 16, extensible_subtag=1),
                                 chunk(b"data", tone(48, 16000, 2000))),
        # Refused: the data chunk declares more bytes than the file holds.
        "truncated_data.wav": riff(fmt(1, 1, 16000, 16), chunk(b"data", tone(100, 16000, 500)))[:-60],
        # Refused: 8-bit PCM.
        "pcm8.wav": riff(fmt(1, 1, 8000, 8), chunk(b"data", bytes(range(0, 256, 8)))),
    }
    for name, data in sorted(files.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
