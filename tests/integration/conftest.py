"""Shared fixtures of the integration tests: the slipway binary and a way to run it.

The binary is $SLIPWAY_BIN, or <repo>/build/slipway. Tests never skip for want of it:
a missing binary fails them with a message that says how to build it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# tfexample.py sits beside the tests; make it importable however pytest was started.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def slipway_path():
    env = os.environ.get("SLIPWAY_BIN")
    return Path(env) if env else REPO / "build" / "slipway"


@pytest.fixture(scope="session")
def slipway():
    path = slipway_path()
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"slipway binary not found at {path}: build it with "
            f"'cmake -S . -B build && cmake --build build --target slipway' or set SLIPWAY_BIN",
            pytrace=False,
        )
    return str(path)


def run_slipway(binary, *args, timeout=300, **kwargs):
    env = dict(os.environ)
    env.setdefault("SLIPWAY_LOG", "warn")
    kwargs.setdefault("env", env)
    return subprocess.run(
        [binary, *[str(a) for a in args]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        **kwargs,
    )


@pytest.fixture(scope="session")
def run(slipway):
    """run(*args, **subprocess_kwargs) -> CompletedProcess (text stdout and stderr)."""

    def _run(*args, **kwargs):
        return run_slipway(slipway, *args, **kwargs)

    return _run


@pytest.fixture(scope="session")
def fashion_mnist():
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"{FASHION_MNIST} is missing (Debian package dataset-fashion-mnist)", pytrace=False)
    return FASHION_MNIST


def describe(proc):
    """The whole of a finished run, for assertion messages."""
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


# ---- IDX files (MNIST's format), read and written independently of slipway ----------
# Header, big-endian: u16 zero, u8 element type (0x08 = unsigned byte), u8 number of
# dimensions D, D x u32 sizes; then the elements in C order.


def read_idx(path):
    """(dims, data bytes) of an IDX file of unsigned bytes, gzipped (.gz) or not."""
    import gzip
    import struct

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        buf = f.read()
    zero, etype, ndim = struct.unpack_from(">HBB", buf, 0)
    assert zero == 0 and etype == 0x08, f"{path}: not an IDX file of unsigned bytes"
    dims = struct.unpack_from(">" + "I" * ndim, buf, 4)
    data = buf[4 + 4 * ndim:]
    n = 1
    for d in dims:
        n *= d
    assert len(data) == n, f"{path}: header says {n} elements, file holds {len(data)}"
    return dims, data


def write_idx(path, array):
    """Writes a uint8 numpy array as an IDX file (plain, or gzipped when path ends in .gz)."""
    import gzip
    import struct

    import numpy as np

    a = np.ascontiguousarray(array, dtype=np.uint8)
    head = struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(">" + "I" * a.ndim, *a.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(head + a.tobytes())


def fashion_subset(fashion_mnist, raw, counts):
    """Writes the first counts[kind] images and labels of Fashion-MNIST's splits ("train",
    "t10k") as gzipped IDX files under raw (created), for `slipway prep --input idx:RAW`;
    returns {kind: (images N x 28 x 28, labels)} of the whole splits, uint8, for tests that
    also need examples beyond the subset."""
    import numpy as np

    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind, n in counts.items():
        dims, data = read_idx(fashion_mnist / f"{kind}-images-idx3-ubyte.gz")
        _, labels = read_idx(fashion_mnist / f"{kind}-labels-idx1-ubyte.gz")
        x = np.frombuffer(data, np.uint8).reshape(dims)
        y = np.frombuffer(labels, np.uint8)
        write_idx(raw / f"{kind}-images-idx3-ubyte.gz", x[:n])
        write_idx(raw / f"{kind}-labels-idx1-ubyte.gz", y[:n])
        out[kind] = (x, y)
    return out


# ---- PostgreSQL ------------------------------------------------------------------------
# A throwaway server on loopback for the whole session (tests/postgres.sh, RECIPES.md),
# stopped by its data dir at the end. A missing PostgreSQL fails the tests that need it.


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """The base URL postgres://postgres@127.0.0.1:PORT/slipway_test of a running server."""
    import tempfile

    script = REPO / "tests" / "postgres.sh"
    d = tempfile.mkdtemp(prefix="slipway-pg.")
    r = subprocess.run([str(script), "start", d], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    if r.returncode != 0:
        subprocess.run([str(script), "stop", d], timeout=60)
        pytest.fail(f"cannot start PostgreSQL with {script}:\n{r.stdout}\n{r.stderr}", pytrace=False)
    try:
        yield r.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(script), "stop", d], timeout=60)


def postgres_database(base_url, name):
    """Creates database NAME on the server of base_url and returns its URL."""
    port = base_url.rsplit(":", 1)[1].split("/")[0]
    r = subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "slipway_test", "-c",
                        f"CREATE DATABASE {name}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return base_url.rsplit("/", 1)[0] + "/" + name
