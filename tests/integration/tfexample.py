"""An independent implementation of TFRecord framing and tf.train.Example.

Nothing here comes from slipway: the CRC32C is written from its definition
(Castagnoli polynomial 0x82F63B78, reflected, init and final xor 0xFFFFFFFF), the
TFRecord masking from TensorFlow's published format, and the Example message classes
are built at run time from the published field numbers of tensorflow/core/example/
feature.proto and example.proto. So when slipway and this module agree, they agree
with TensorFlow's format, not merely with each other.

TFRecord frame, little-endian:
    u64 length L | u32 masked_crc32c(length bytes) | L bytes data | u32 masked_crc32c(data)
"""

import struct

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

# ---------------------------------------------------------------------------------------
# CRC32C

_POLY = 0x82F63B78  # Castagnoli, reflected
_MASK_DELTA = 0xA282EAD8


def _make_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _make_table()
_CRC_TABLE_NP = np.array(CRC_TABLE, dtype=np.uint32)


def crc32c(data, crc=0):
    """CRC32C of data (bytes-like), byte at a time through the table."""
    t = CRC_TABLE
    crc ^= 0xFFFFFFFF
    for b in bytes(data):
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_many(rows):
    """CRC32C of every row of a 2-D uint8 array (all rows the same length).

    The same table-driven recurrence as crc32c(), run over all rows at once with numpy
    (one step per byte column), so that tens of thousands of records check in well
    under a second. Returns a uint32 array.
    """
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    m, n = rows.shape
    cols = np.ascontiguousarray(rows.T)  # one contiguous column per byte position
    crc = np.full(m, 0xFFFFFFFF, dtype=np.uint32)
    t = _CRC_TABLE_NP
    eight = np.uint32(8)
    for j in range(n):
        crc = t[(crc ^ cols[j]) & 0xFF] ^ (crc >> eight)
    return crc ^ np.uint32(0xFFFFFFFF)


def mask(crc):
    """TFRecord's masked CRC: rotate right by 15 and add a constant, mod 2^32."""
    crc &= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _mask_np(crc):
    crc = crc.astype(np.uint64)
    rot = ((crc >> np.uint64(15)) | (crc << np.uint64(17))) & np.uint64(0xFFFFFFFF)
    return ((rot + np.uint64(_MASK_DELTA)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def masked_crc32c(data):
    return mask(crc32c(data))


# ---------------------------------------------------------------------------------------
# TFRecord


class TFRecordError(Exception):
    """A bad frame. kind is 'truncated' or 'corrupt'; offset is the frame's byte offset."""

    def __init__(self, kind, offset, message):
        super().__init__(f"offset {offset}: {message}")
        self.kind = kind
        self.offset = offset


def frame(data):
    """One TFRecord frame holding data."""
    data = bytes(data)
    head = struct.pack("<Q", len(data))
    return head + struct.pack("<I", masked_crc32c(head)) + data + struct.pack("<I", masked_crc32c(data))


def write_tfrecord(path, payloads):
    with open(path, "wb") as f:
        for p in payloads:
            f.write(frame(p))


def _scan(buf):
    """Walks the frames of buf. Returns (frames, error): frames is a list of
    (offset, length) whose header CRC checked out; error the first header problem
    (TFRecordError) or None at a clean end. Payload CRCs are not checked here."""
    frames = []
    off = 0
    size = len(buf)
    while off < size:
        if size - off < 12:
            return frames, TFRecordError("truncated", off, f"file ends inside the frame header ({size - off} of 12 bytes)")
        head = bytes(buf[off:off + 8])
        (length,) = struct.unpack("<Q", head)
        (hcrc,) = struct.unpack_from("<I", buf, off + 8)
        if hcrc != masked_crc32c(head):
            return frames, TFRecordError("corrupt", off, "length CRC mismatch")
        if length > size - off - 16:
            return frames, TFRecordError("truncated", off, f"file ends inside a frame of {length} bytes")
        frames.append((off, length))
        off += 16 + length
    return frames, None


def _payload_crcs_ok(buf, frames):
    """Checks the payload CRC of every frame; returns a list of booleans."""
    ok = [True] * len(frames)
    arr = np.frombuffer(buf, dtype=np.uint8)
    by_len = {}
    for i, (off, length) in enumerate(frames):
        by_len.setdefault(length, []).append(i)
    for length, idx in by_len.items():
        offs = np.array([frames[i][0] for i in idx], dtype=np.int64)
        stored = np.array([struct.unpack_from("<I", buf, frames[i][0] + 12 + length)[0] for i in idx],
                          dtype=np.uint32)
        if len(idx) >= 16 and length > 0:
            rows = arr[(offs + 12)[:, None] + np.arange(length, dtype=np.int64)[None, :]]
            got = _mask_np(crc32c_many(rows))
        else:
            got = np.array([masked_crc32c(buf[o + 12:o + 12 + length]) for o in offs.tolist()],
                           dtype=np.uint32)
        for k, i in enumerate(idx):
            ok[i] = bool(got[k] == stored[k])
    return ok


def read_tfrecord(path_or_bytes, with_offsets=False):
    """Reads every record of a TFRecord file (path) or buffer (bytes), checking both
    CRCs of every frame. Raises TFRecordError at the first bad frame (kind 'corrupt' on
    a CRC mismatch, 'truncated' when the data ends inside a frame). Returns a list of
    payloads (bytes), or of (offset, payload) with with_offsets."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        buf = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            buf = f.read()
    frames, err = _scan(buf)
    ok = _payload_crcs_ok(buf, frames)
    for (off, length), good in zip(frames, ok):
        if not good:
            raise TFRecordError("corrupt", off, "data CRC mismatch")
    if err is not None:
        raise err
    out = []
    for off, length in frames:
        data = buf[off + 12:off + 12 + length]
        out.append((off, data) if with_offsets else data)
    return out


def frame_offsets(path):
    """Byte offsets and lengths of the frames of a good file."""
    with open(path, "rb") as f:
        buf = f.read()
    frames, err = _scan(buf)
    if err is not None:
        raise err
    return frames


# ---------------------------------------------------------------------------------------
# tf.train.Example, from the published field numbers

_F = descriptor_pb2.FieldDescriptorProto


def _field(msg, name, number, ftype, label=_F.LABEL_OPTIONAL, type_name=None, packed=False, oneof=None):
    f = msg.field.add()
    f.name = name
    f.number = number
    f.type = ftype
    f.label = label
    if type_name:
        f.type_name = type_name
    if packed:
        f.options.packed = True
    if oneof is not None:
        f.oneof_index = oneof
    return f


def _build_classes():
    fdp = descriptor_pb2.FileDescriptorProto()
    fdp.name = "slipway_tests_independent/tf_example.proto"
    fdp.package = "tensorflow"
    fdp.syntax = "proto3"

    m = fdp.message_type.add(name="BytesList")
    _field(m, "value", 1, _F.TYPE_BYTES, _F.LABEL_REPEATED)
    m = fdp.message_type.add(name="FloatList")
    _field(m, "value", 1, _F.TYPE_FLOAT, _F.LABEL_REPEATED, packed=True)
    m = fdp.message_type.add(name="Int64List")
    _field(m, "value", 1, _F.TYPE_INT64, _F.LABEL_REPEATED, packed=True)

    m = fdp.message_type.add(name="Feature")
    m.oneof_decl.add(name="kind")
    _field(m, "bytes_list", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.BytesList", oneof=0)
    _field(m, "float_list", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.FloatList", oneof=0)
    _field(m, "int64_list", 3, _F.TYPE_MESSAGE, type_name=".tensorflow.Int64List", oneof=0)

    m = fdp.message_type.add(name="Features")
    entry = m.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    _field(m, "feature", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, type_name=".tensorflow.Features.FeatureEntry")

    m = fdp.message_type.add(name="Example")
    _field(m, "features", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.Features")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    factory = message_factory.MessageFactory(pool)
    names = ["BytesList", "FloatList", "Int64List", "Feature", "Features", "Example"]
    return {n: factory.GetPrototype(pool.FindMessageTypeByName("tensorflow." + n)) for n in names}


_CLASSES = _build_classes()
BytesList = _CLASSES["BytesList"]
FloatList = _CLASSES["FloatList"]
Int64List = _CLASSES["Int64List"]
Feature = _CLASSES["Feature"]
Features = _CLASSES["Features"]
Example = _CLASSES["Example"]

KIND_FIELDS = {"bytes": "bytes_list", "float": "float_list", "int64": "int64_list"}
_FIELD_KINDS = {v: k for k, v in KIND_FIELDS.items()}


def parse_example(data):
    ex = Example()
    ex.ParseFromString(bytes(data))
    return ex


def example_to_typed(ex):
    """name -> (kind, list of values); kind is 'bytes', 'float', 'int64' or None (unset)."""
    if isinstance(ex, (bytes, bytearray, memoryview)):
        ex = parse_example(ex)
    out = {}
    for name, feat in ex.features.feature.items():
        which = feat.WhichOneof("kind")
        if which is None:
            out[name] = (None, [])
        else:
            out[name] = (_FIELD_KINDS[which], list(getattr(feat, which).value))
    return out


def decode_example(data):
    """A serialized Example (or a parsed one) -> dict name -> list of values."""
    return {k: v for k, (_, v) in example_to_typed(data).items()}


def _kind_of(values):
    if all(isinstance(v, (bytes, bytearray)) for v in values):
        return "bytes"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float"
    raise TypeError(f"cannot tell the kind of {values!r}")


def build_example(features):
    """dict name -> value(s) -> Example. A value is a list (or one scalar) of bytes,
    ints (int64) or floats; (kind, values) forces the kind ('bytes', 'float', 'int64')."""
    ex = Example()
    for name, spec in features.items():
        if isinstance(spec, tuple) and len(spec) == 2 and spec[0] in KIND_FIELDS:
            kind, values = spec
        else:
            values = spec
            if not isinstance(values, (list, np.ndarray)):
                values = [values]
            kind = _kind_of(list(values))
        values = list(values)
        if kind == "bytes":
            values = [bytes(v) for v in values]
        elif kind == "float":
            values = [float(v) for v in values]
        else:
            values = [int(v) for v in values]
        getattr(ex.features.feature[name], KIND_FIELDS[kind]).value.extend(values)
    return ex


def encode_example(features):
    return build_example(features).SerializeToString(deterministic=True)


def f32(x):
    """x rounded to float32, as a Python float."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def canonical(data):
    """A hashable form of an Example for multiset comparisons (floats as float32)."""
    typed = example_to_typed(data)
    items = []
    for name in sorted(typed):
        kind, vals = typed[name]
        if kind == "float":
            vals = [f32(v) for v in vals]
        items.append((name, kind, tuple(vals)))
    return tuple(items)
