"""slipway's safetensors against an independent writer and reader of the format.

Hugging Face's `safetensors` package is not installed here, so this file builds and
reads the format itself, with struct and json, from the published layout: a u64
little-endian header length, a JSON header padded with spaces to a multiple of 8, then
the tensor data at offsets counted from the end of the header, larger elements first
and then by name (Hugging Face's own writer's order). The C side is the unit-test
binary (build/tests/test_safetensors, or $SW_TEST_SAFETENSORS_BIN): its
test_interop_files writes the "known" tensors to $SW_SAFETENSORS_OUT and checks that
$SW_SAFETENSORS_IN holds them. The same tensors are spelled out in test_safetensors.c.
"""

import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

DTYPES = {"F32": np.dtype("<f4"), "I64": np.dtype("<i8"), "U8": np.dtype("u1")}

# The known tensors of test_safetensors.c.
KNOWN = {
    "weight": (np.arange(6, dtype="<f4").reshape(2, 3) - 2.5) / 2,
    "bias": np.array([0.25, -1.0, 3.0], dtype="<f4"),
    "step": np.array(1234567890123, dtype="<i8"),  # rank 0
    "labels": np.array([0, 1, 2, 254, 255], dtype="u1"),
    "empty": np.zeros((0, 4), dtype="<f4"),
}
KNOWN_METADATA = {"format": "pt", "note": "slipway"}


def dtype_name(a):
    return {("f", 4): "F32", ("i", 8): "I64", ("u", 1): "U8"}[(a.dtype.kind, a.dtype.itemsize)]


def encode(tensors, metadata=None, header_order="name", metadata_last=False):
    """The bytes of a safetensors file. Data: larger elements first, then by name.
    header_order "name" sorts the header's keys (slipway's choice); "data" lists them
    in data order, as Hugging Face's writer does."""
    layout = sorted(tensors, key=lambda n: (-tensors[n].dtype.itemsize, n))
    offsets, at, data = {}, 0, b""
    for name in layout:
        raw = np.ascontiguousarray(tensors[name]).tobytes()
        offsets[name] = [at, at + len(raw)]
        at += len(raw)
        data += raw
    entries = [(n, {"dtype": dtype_name(tensors[n]), "shape": list(tensors[n].shape),
                    "data_offsets": offsets[n]})
               for n in (sorted(tensors) if header_order == "name" else layout)]
    header = {}
    if metadata and not metadata_last:
        header["__metadata__"] = dict(sorted(metadata.items()))
    header.update(entries)
    if metadata and metadata_last:
        header["__metadata__"] = dict(metadata)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def decode(buf):
    """(tensors, metadata) of a safetensors file, checked as strictly as the spec says."""
    (n,) = struct.unpack_from("<Q", buf, 0)
    assert n % 8 == 0, "the header is padded to a multiple of 8"
    text = buf[8:8 + n]
    assert text[:1] == b"{"
    header = json.loads(text.decode("utf-8"))
    data = buf[8 + n:]
    metadata = header.pop("__metadata__", None)
    tensors, spans = {}, []
    for name, e in header.items():
        assert set(e) == {"dtype", "shape", "data_offsets"}, e
        dt = DTYPES[e["dtype"]]
        begin, end = e["data_offsets"]
        count = int(np.prod(e["shape"], dtype=np.int64))
        assert end - begin == count * dt.itemsize, name
        assert begin % dt.itemsize == 0, f"{name} is aligned to its element size"
        tensors[name] = np.frombuffer(data[begin:end], dtype=dt).reshape(e["shape"])
        spans.append((begin, end))
    at = 0
    for begin, end in sorted(spans):
        assert begin == at, "no holes, no overlaps"
        at = end
    assert at == len(data), "the tensors cover the data section exactly"
    return tensors, metadata


@pytest.fixture(scope="module")
def unit_binary():
    env = os.environ.get("SW_TEST_SAFETENSORS_BIN")
    path = Path(env) if env else REPO / "build" / "tests" / "test_safetensors"
    if not path.is_file():
        pytest.fail(f"{path} not found: build it with 'cmake -S . -B build && cmake --build build "
                    f"--target test_safetensors' or set SW_TEST_SAFETENSORS_BIN", pytrace=False)
    return path


def run_c(binary, **env):
    full = dict(os.environ, SLIPWAY_LOG="warn", **{k: str(v) for k, v in env.items()})
    p = subprocess.run([str(binary)], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout
    return p


def test_c_writes_the_bytes_the_format_demands(unit_binary, tmp_path):
    out = tmp_path / "from_c.safetensors"
    run_c(unit_binary, SW_SAFETENSORS_OUT=out)
    got = out.read_bytes()
    assert got == encode(KNOWN, KNOWN_METADATA)
    tensors, metadata = decode(got)
    assert metadata == KNOWN_METADATA
    assert sorted(tensors) == sorted(KNOWN)
    for name, want in KNOWN.items():
        assert tensors[name].shape == want.shape, name
        assert tensors[name].dtype == want.dtype, name
        assert np.array_equal(tensors[name], want), name


@pytest.mark.parametrize("header_order,metadata_last", [("name", False), ("data", False), ("data", True)])
def test_c_reads_files_written_here(unit_binary, tmp_path, header_order, metadata_last):
    path = tmp_path / "from_python.safetensors"
    path.write_bytes(encode(KNOWN, KNOWN_METADATA, header_order=header_order, metadata_last=metadata_last))
    run_c(unit_binary, SW_SAFETENSORS_IN=path)


def test_c_refuses_a_damaged_file(unit_binary, tmp_path):
    """The hook really checks: a file with one value changed fails the C side."""
    bad = dict(KNOWN, bias=np.array([0.25, -1.0, 3.5], dtype="<f4"))
    path = tmp_path / "changed.safetensors"
    path.write_bytes(encode(bad, KNOWN_METADATA))
    full = dict(os.environ, SLIPWAY_LOG="warn", SW_SAFETENSORS_IN=str(path))
    p = subprocess.run([str(unit_binary)], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    assert p.returncode != 0, p.stdout
    assert "test_interop_files" in p.stdout
