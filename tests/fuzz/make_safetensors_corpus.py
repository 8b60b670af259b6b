#!/usr/bin/python3
"""Writes the seed corpus of the safetensors fuzz target (tests/fuzz/corpus/safetensors/),
valid and invalid files alike.

Standard library only: files are assembled here from Hugging Face's published layout
(u64 little-endian header length, JSON header padded with spaces to a multiple of 8,
tensor data at offsets counted from the end of the header), so the corpus does not
depend on the code under test. Inputs that once crashed the target (crash-*) live in
the same folder and are left alone. Run: /usr/bin/python3 tests/fuzz/make_safetensors_corpus.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {"F32": 4, "I64": 8, "U8": 1}


def safetensors(tensors, metadata=None):
    """A file of tensors [(name, dtype, shape, data bytes)] laid out as Hugging Face does:
    larger elements first, then by name."""
    order = sorted(tensors, key=lambda t: (-SIZES.get(t[1], 1), t[0]))
    header, at, data = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in order:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(raw)]}
        at += len(raw)
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def raw(header_text, data=b""):
    """A file with the header given verbatim."""
    text = header_text.encode()
    return struct.pack("<Q", len(text)) + text + data


def corpus():
    f32 = struct.pack("<4f", 1.0, -2.5, 0.0, 3.25)
    i64 = struct.pack("<2q", -7, 1 << 40)
    u8 = bytes([0, 1, 254, 255, 7])
    model = safetensors(
        [("weight", "F32", [2, 2], f32), ("step", "I64", [], i64[:8]), ("labels", "U8", [5], u8),
         ("empty", "F32", [0, 3], b"")],
        metadata={"format": "pt", "note": "seed"})
    files = {
        "model": model,
        "empty_file": safetensors([]),
        # another writer's layout: header unpadded, an I64 at an odd offset
        "unpadded_misaligned": raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                   '"b":{"dtype":"I64","shape":[2],"data_offsets":[1,17]}}',
                                   b"\x09" + i64),
        # a byte short of the data: truncated
        "truncated": model[:-1],
        # b starts inside a
        "overlap": raw('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
                       '"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}', bytes(6)),
        # 8 bytes for two F32 said to be three
        "shape_mismatch": raw('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', bytes(8)),
        "bad_dtype": raw('{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}', bytes(4)),
        "huge_header_length": struct.pack("<Q", 1 << 62) + b"{}",
    }
    return files


def main():
    folder = os.path.join(HERE, "corpus", "safetensors")
    os.makedirs(folder, exist_ok=True)
    for name, data in sorted(corpus().items()):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    print(f"{folder}: {len(corpus())} files")


if __name__ == "__main__":
    main()
