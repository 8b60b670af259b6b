"""Tests of the hand-written TensorBoard event decoder (tensorboard_events.py) against
google.protobuf: Event files are written with message classes built at run time from
TensorFlow's published field numbers (as tfexample.py builds Example), framed with
tfexample.frame, and decoded by hand. The trainer's tests read slipway's event files
with the same decoder, so what is checked here is what they rely on.
"""

import math
import random
import struct

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

import tensorboard_events as tb
from tfexample import frame

# ---------------------------------------------------------------------------------------
# Event, Summary and friends, with more of TensorFlow's fields than slipway writes, so
# the decoder meets fields it must skip.

_F = descriptor_pb2.FieldDescriptorProto


def _field(msg, name, number, ftype, label=_F.LABEL_OPTIONAL, type_name=None, oneof=None):
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof
    return f


def _build_classes():
    fdp = descriptor_pb2.FileDescriptorProto()
    fdp.name = "slipway_tests_independent/tb_event.proto"
    fdp.package = "tensorboard_test"
    fdp.syntax = "proto3"

    m = fdp.message_type.add(name="PluginData")  # SummaryMetadata.PluginData
    _field(m, "plugin_name", 1, _F.TYPE_STRING)
    _field(m, "content", 2, _F.TYPE_BYTES)
    m = fdp.message_type.add(name="SummaryMetadata")
    _field(m, "plugin_data", 1, _F.TYPE_MESSAGE, type_name=".tensorboard_test.PluginData")
    _field(m, "display_name", 2, _F.TYPE_STRING)
    _field(m, "summary_description", 3, _F.TYPE_STRING)
    m = fdp.message_type.add(name="TensorProto")  # the part a scalar tensor uses
    _field(m, "dtype", 1, _F.TYPE_INT32)
    _field(m, "float_val", 5, _F.TYPE_FLOAT, _F.LABEL_REPEATED)

    m = fdp.message_type.add(name="Value")  # Summary.Value
    m.oneof_decl.add(name="value")
    _field(m, "node_name", 7, _F.TYPE_STRING)
    _field(m, "tag", 1, _F.TYPE_STRING)
    _field(m, "metadata", 9, _F.TYPE_MESSAGE, type_name=".tensorboard_test.SummaryMetadata")
    _field(m, "simple_value", 2, _F.TYPE_FLOAT, oneof=0)
    _field(m, "obsolete_old_style_histogram", 3, _F.TYPE_BYTES, oneof=0)
    _field(m, "tensor", 8, _F.TYPE_MESSAGE, type_name=".tensorboard_test.TensorProto", oneof=0)
    m = fdp.message_type.add(name="Summary")
    _field(m, "value", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, type_name=".tensorboard_test.Value")

    m = fdp.message_type.add(name="LogMessage")
    _field(m, "level", 1, _F.TYPE_INT32)
    _field(m, "message", 2, _F.TYPE_STRING)

    m = fdp.message_type.add(name="Event")
    m.oneof_decl.add(name="what")
    _field(m, "wall_time", 1, _F.TYPE_DOUBLE)
    _field(m, "step", 2, _F.TYPE_INT64)
    _field(m, "file_version", 3, _F.TYPE_STRING, oneof=0)
    _field(m, "graph_def", 4, _F.TYPE_BYTES, oneof=0)
    _field(m, "summary", 5, _F.TYPE_MESSAGE, type_name=".tensorboard_test.Summary", oneof=0)
    _field(m, "log_message", 6, _F.TYPE_MESSAGE, type_name=".tensorboard_test.LogMessage", oneof=0)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    factory = message_factory.MessageFactory(pool)
    return {n: factory.GetPrototype(pool.FindMessageTypeByName("tensorboard_test." + n))
            for n in ["Event", "Summary", "Value", "LogMessage"]}


_C = _build_classes()
Event = _C["Event"]


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def version_event(wall_time):
    return Event(wall_time=wall_time, file_version="brain.Event:2")


def scalar_event(wall_time, step, *values):
    ev = Event(wall_time=wall_time, step=step)
    for tag, v in values:
        ev.summary.value.add(tag=tag, simple_value=v)
    return ev


def write_events(path, events):
    with open(path, "wb") as f:
        for ev in events:
            f.write(frame(ev.SerializeToString()))


def same_float(a, b):
    return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)


def expected(ev):
    """What decode_event must return for a protobuf Event, from the protobuf side."""
    out = {"wall_time": ev.wall_time, "step": ev.step, "values": []}
    which = ev.WhichOneof("what")
    if which == "file_version":
        out["file_version"] = ev.file_version
    elif which == "summary":
        for v in ev.summary.value:
            simple = v.simple_value if v.WhichOneof("value") == "simple_value" else None
            out["values"].append((v.tag, simple))
    return out


def assert_same_event(got, want):
    assert set(got) == set(want)
    assert same_float(got["wall_time"], want["wall_time"])
    assert got["step"] == want["step"]
    assert got.get("file_version") == want.get("file_version")
    assert len(got["values"]) == len(want["values"])
    for (gt, gv), (wt, wv) in zip(got["values"], want["values"]):
        assert gt == wt
        assert (gv is None) == (wv is None)
        if gv is not None:
            assert same_float(gv, wv), (gt, gv, wv)


# ---------------------------------------------------------------------------------------


def test_known_bytes():
    """One Event spelled out byte by byte from the published field numbers: the
    decoder and the protobuf classes both read it as wall_time 1.5, step 3, a = 2."""
    data = bytes.fromhex(
        "09" "000000000000f83f"  # 1 wall_time, I64: 1.5
        "10" "03"  # 2 step, VARINT: 3
        "2a" "0a"  # 5 summary, LEN 10
        "0a" "08"  # Summary 1 value, LEN 8
        "0a" "01" "61"  # Value 1 tag, LEN 1: "a"
        "15" "00000040"  # Value 2 simple_value, I32: 2.0
    )
    assert tb.decode_event(data) == {"wall_time": 1.5, "step": 3, "values": [("a", 2.0)]}
    ev = Event.FromString(data)
    assert (ev.wall_time, ev.step) == (1.5, 3)
    assert ev.summary.value[0].tag == "a" and ev.summary.value[0].simple_value == 2.0
    assert ev.SerializeToString() == data


def test_file_as_slipway_writes_it(tmp_path):
    """A version record, then one scalar per event: the shape of slipway's files."""
    path = tmp_path / "events.out.tfevents.1700000000.host"
    events = [version_event(1700000000.25)]
    rows = [(0, "loss", 2.3), (0, "acc", 0.1), (10, "loss", 1.2), (10, "acc", 0.5),
            (20, "loss", float("nan")), (-5, "neg step", float("-inf")),
            (2**63 - 1, "max step", 3.4028234663852886e38), (-(2**63), "min step", -0.0),
            (30, "unicode/ü λ", 1e-30)]
    for i, (step, tag, v) in enumerate(rows):
        events.append(scalar_event(1700000001.0 + i * 0.125, step, (tag, v)))
    write_events(path, events)

    got = tb.read_events(path)
    assert len(got) == len(events)
    assert got[0] == {"wall_time": 1700000000.25, "step": 0, "values": [], "file_version": "brain.Event:2"}
    for g, ev in zip(got, events):
        assert_same_event(g, expected(ev))

    scalars = tb.read_scalars(path)
    assert list(scalars) == ["loss", "acc", "neg step", "max step", "min step", "unicode/ü λ"]
    assert scalars["loss"][:2] == [(0, f32(2.3)), (10, f32(1.2))]
    assert scalars["loss"][2][0] == 20 and math.isnan(scalars["loss"][2][1])
    assert scalars["acc"] == [(0, f32(0.1)), (10, 0.5)]
    assert scalars["neg step"] == [(-5, float("-inf"))]
    assert scalars["max step"] == [(2**63 - 1, f32(3.4028234663852886e38))]
    assert scalars["min step"][0][0] == -(2**63)
    assert math.copysign(1.0, scalars["min step"][0][1]) == -1.0
    assert scalars["unicode/ü λ"] == [(30, f32(1e-30))]
    assert tb.event_files(tmp_path) == [str(path)]


def test_random_events_match_protobuf():
    """Hundreds of random Events, with fields the decoder must skip, several values per
    Summary and values that are not simple_value: every one decodes as protobuf reads it."""
    rng = random.Random(1234)
    buf = bytearray()
    want = []
    for i in range(400):
        ev = Event(wall_time=rng.choice([0.0, rng.uniform(0, 2e9), -1.0, 1e-300]),
                   step=rng.choice([0, 1, rng.randrange(-(2**63), 2**63), 2**31, -1]))
        kind = rng.randrange(5)
        if kind == 0:
            ev.file_version = rng.choice(["brain.Event:2", "brain.Event:1", ""])
        elif kind == 1:
            ev.graph_def = bytes(rng.randrange(256) for _ in range(rng.randrange(50)))
        elif kind == 2:
            ev.log_message.level = rng.randrange(50)
            ev.log_message.message = "checkpoint saved"
        else:
            for j in range(rng.randrange(4)):
                v = ev.summary.value.add(tag=f"tag{rng.randrange(6)}/" + "x" * rng.randrange(200))
                if rng.random() < 0.3:
                    v.node_name = "node"
                    v.metadata.plugin_data.plugin_name = "scalars"
                    v.metadata.plugin_data.content = b"\x00\x01"
                    v.metadata.display_name = "shown"
                r = rng.random()
                if r < 0.6:
                    v.simple_value = f32(rng.uniform(-1e6, 1e6))
                elif r < 0.7:
                    v.simple_value = 0.0  # set, though proto3 writes the zero
                elif r < 0.85:
                    v.tensor.dtype = 1
                    v.tensor.float_val.append(1.5)
                else:
                    v.obsolete_old_style_histogram = b"h"
        data = ev.SerializeToString()
        buf += frame(data)
        want.append(expected(Event.FromString(data)))
    got = tb.read_events(bytes(buf))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_same_event(g, w)


def test_repeated_fields_merge_as_protobuf_does():
    """Two summary fields in one Event merge (values concatenate); the last scalar of
    a field wins; file_version after summary replaces it (a oneof)."""
    a = scalar_event(1.0, 1, ("a", 1.0)).SerializeToString()
    b = scalar_event(2.0, 2, ("b", 2.0)).SerializeToString()
    v = version_event(3.0).SerializeToString()
    for data in [a + b, a + v, v + a, a + v + b]:
        assert_same_event(tb.decode_event(data), expected(Event.FromString(data)))
    assert tb.decode_event(a + b)["values"] == [("a", 1.0), ("b", 2.0)]


def test_frame_errors(tmp_path):
    data = frame(scalar_event(5.0, 7, ("loss", 0.5)).SerializeToString())
    good = frame(version_event(4.0).SerializeToString()) + data
    assert len(tb.read_events(good)) == 2
    first = len(good) - len(data)

    with pytest.raises(tb.TFRecordError) as e:  # payload byte flipped
        bad = bytearray(good)
        bad[first + 14] ^= 0x01
        tb.read_records(bytes(bad))
    assert e.value.kind == "corrupt" and e.value.offset == first

    with pytest.raises(tb.TFRecordError) as e:  # length byte flipped
        bad = bytearray(good)
        bad[first] ^= 0x40
        tb.read_records(bytes(bad))
    assert e.value.kind == "corrupt" and e.value.offset == first

    for cut in [1, 4, 12, len(data) - 1]:  # the file ends inside the second frame
        with pytest.raises(tb.TFRecordError) as e:
            tb.read_records(good[:len(good) - cut])
        assert e.value.kind == "truncated" and e.value.offset == first

    path = tmp_path / "events.out.tfevents.1.h"
    path.write_bytes(good[:-1])
    with pytest.raises(tb.TFRecordError):
        tb.read_scalars(path)
    assert tb.read_events(b"") == []


@pytest.mark.parametrize("data, why", [
    (b"\x10", "truncated varint"),  # step with no value
    (b"\x10" + b"\xff" * 10 + b"\x01", "longer than 10"),
    (b"\x09\x00\x00", "truncated 64-bit"),
    (b"\x2a\x05\x0a\x03", "runs past the end"),  # summary longer than the event
    (b"\x2a\x04\x0a\x05\x0a\x01", "runs past the end"),  # value longer than the summary
    (b"\x2a\x05\x0a\x03\x15\x00\x00", "truncated 32-bit"),  # simple_value cut short
    (b"\x0b", "wire type 3"),  # a group
    (b"\x0e", "wire type 6"),
    (b"\x1a\x01\xff", "not UTF-8"),  # file_version
])
def test_malformed_events(data, why):
    with pytest.raises(tb.EventFormatError, match=why):
        tb.decode_event(data)
    # google.protobuf refuses these too (proto3 strings must be UTF-8)
    with pytest.raises(Exception):
        Event.FromString(data)


@pytest.mark.parametrize("data, why", [
    (b"\x00\x00", "field number 0"),
    (b"\x08\x01", "Event.wall_time"),  # wall_time as a varint
    (b"\x15\x00\x00\x00\x00", "Event.step"),  # step as a fixed32
    (b"\x2a\x05\x0a\x03\x12\x01\x61", "Summary.Value.simple_value"),  # simple_value as LEN
])
def test_stricter_than_protobuf(data, why):
    """A known field with the wrong wire type is an error here, on purpose: protobuf
    parsers keep it as an unknown field, so TensorBoard would silently read a default
    (step 0, no value), and a writer's bug would go unseen."""
    with pytest.raises(tb.EventFormatError, match=why):
        tb.decode_event(data)


def test_malformed_event_in_file_names_record():
    buf = frame(version_event(1.0).SerializeToString()) + frame(b"\x2a\x05\x0a")
    with pytest.raises(tb.EventFormatError, match="record 1"):
        tb.read_events(buf)


def test_unknown_fields_skipped():
    """Fields of numbers TensorFlow may add later are skipped in Event, Summary and Value."""
    data = (scalar_event(1.0, 2, ("a", 3.0)).SerializeToString()
            + b"\xf8\x07\x05"  # field 127, VARINT
            + b"\xa2\x06\x02hi")  # field 100, LEN
    assert tb.decode_event(data) == {"wall_time": 1.0, "step": 2, "values": [("a", 3.0)]}
    value = b"\x0a\x01a" + b"\xa5\x01\x00\x00\x00\x00" + b"\x15\x00\x00\x40\x40"  # field 20, I32
    summary = b"\x0a" + bytes([len(value)]) + value + b"\x11" + b"\x00" * 8  # Summary field 2, I64
    event = b"\x2a" + bytes([len(summary)]) + summary
    assert tb.decode_event(event)["values"] == [("a", 3.0)]
    assert Event.FromString(event).summary.value[0].simple_value == 3.0
