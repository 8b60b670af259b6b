"""An independent reader of TensorBoard event files, for checking what slipway writes.

Nothing here comes from slipway, nor from a .proto file: the TFRecord frames are walked
here with the CRC32C of tfexample.py (itself written from the definition), and the
protobuf wire format is decoded by hand from TensorFlow's published field numbers
(tensorflow/core/util/event.proto, tensorflow/core/framework/summary.proto):

    Event                              Summary             Summary.Value
      1 wall_time     double (I64)       1 value  Value      1 tag           string
      2 step          int64  (VARINT)      (repeated)        2 simple_value  float (I32)
      3 file_version  string (LEN)                           (other fields skipped)
      5 summary       Summary (LEN)
      (graph_def, log_message, ... skipped)

Wire format: each field is a varint key (number << 3 | wire type) then its value:
VARINT (0) a base-128 varint, I64 (1) 8 bytes little-endian, LEN (2) a varint length
and that many bytes, I32 (5) 4 bytes little-endian. Groups (3, 4) and types 6, 7 are
not valid here. Unknown fields of a valid wire type are skipped, as protobuf does.
"""

import os
import struct

from tfexample import TFRecordError, masked_crc32c

__all__ = [
    "EventFormatError",
    "TFRecordError",
    "decode_event",
    "event_files",
    "read_events",
    "read_records",
    "read_scalars",
]

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


class EventFormatError(ValueError):
    """A record that is not a well-formed Event (bad varint, length past the end,
    invalid wire type, or a known field with the wrong wire type)."""


# ---------------------------------------------------------------------------------------
# TFRecord frames: u64 length | u32 masked crc32c(length) | data | u32 masked crc32c(data)


def read_records(path_or_bytes):
    """Payloads (bytes) of every frame, both CRCs checked. Raises TFRecordError (kind
    'truncated' or 'corrupt', with the frame's offset) at the first bad frame."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        buf = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            buf = f.read()
    out = []
    off = 0
    size = len(buf)
    while off < size:
        if size - off < 12:
            raise TFRecordError("truncated", off, f"file ends inside the frame header ({size - off} of 12 bytes)")
        head = buf[off:off + 8]
        (length,) = struct.unpack("<Q", head)
        (head_crc,) = struct.unpack_from("<I", buf, off + 8)
        if head_crc != masked_crc32c(head):
            raise TFRecordError("corrupt", off, "length CRC mismatch")
        if length > size - off - 16:
            raise TFRecordError("truncated", off, f"file ends inside a frame of {length} bytes")
        data = buf[off + 12:off + 12 + length]
        (data_crc,) = struct.unpack_from("<I", buf, off + 12 + length)
        if data_crc != masked_crc32c(data):
            raise TFRecordError("corrupt", off, "data CRC mismatch")
        out.append(data)
        off += 16 + length
    return out


# ---------------------------------------------------------------------------------------
# protobuf wire format


def _varint(buf, pos, end):
    """(value, new pos) of the base-128 varint at pos; at most 10 bytes (64 bits)."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise EventFormatError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift >= 70:
            raise EventFormatError("varint longer than 10 bytes")
    return result & 0xFFFFFFFFFFFFFFFF, pos


def _fields(buf, start=0, end=None):
    """Yields (field number, wire type, value) over one message: an int for VARINT, the
    raw 8 or 4 bytes for I64/I32, a (start, end) span of buf for LEN."""
    pos = start
    end = len(buf) if end is None else end
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise EventFormatError("field number 0")
        if wire == VARINT:
            value, pos = _varint(buf, pos, end)
        elif wire == I64:
            if end - pos < 8:
                raise EventFormatError(f"field {number}: truncated 64-bit value")
            value = bytes(buf[pos:pos + 8])
            pos += 8
        elif wire == I32:
            if end - pos < 4:
                raise EventFormatError(f"field {number}: truncated 32-bit value")
            value = bytes(buf[pos:pos + 4])
            pos += 4
        elif wire == LEN:
            length, pos = _varint(buf, pos, end)
            if length > end - pos:
                raise EventFormatError(f"field {number}: length {length} runs past the end ({end - pos} left)")
            value = (pos, pos + length)
            pos += length
        else:
            raise EventFormatError(f"field {number}: wire type {wire} is not valid here")
        yield number, wire, value


def _expect(number, wire, want, what):
    if wire != want:
        raise EventFormatError(f"{what} (field {number}) has wire type {wire}, expected {want}")


def _int64(u):
    """A varint's 64 bits as a signed int64 (two's complement, as protobuf's int64)."""
    return u - (1 << 64) if u & (1 << 63) else u


def _string(buf, span, what):
    try:
        return bytes(buf[span[0]:span[1]]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise EventFormatError(f"{what} is not UTF-8: {e}") from None


def _summary_value(buf, span):
    """(tag, simple_value or None) of one Summary.Value."""
    tag = ""
    value = None
    for number, wire, v in _fields(buf, *span):
        if number == 1:
            _expect(number, wire, LEN, "Summary.Value.tag")
            tag = _string(buf, v, "Summary.Value.tag")
        elif number == 2:
            _expect(number, wire, I32, "Summary.Value.simple_value")
            (value,) = struct.unpack("<f", v)
        elif 3 <= number <= 6 or number == 8:
            # the other members of the value oneof (histogram, image, audio, tensor):
            # setting one clears simple_value
            value = None
    return tag, value


def decode_event(data):
    """One serialized Event -> {'wall_time': float, 'step': int, 'values': [(tag, value)]}
    plus 'file_version': str when the event holds one. value is None for a Summary.Value
    that holds something other than a simple_value. Raises EventFormatError."""
    buf = memoryview(bytes(data))
    event = {"wall_time": 0.0, "step": 0, "values": []}
    for number, wire, v in _fields(buf):
        if number == 1:
            _expect(number, wire, I64, "Event.wall_time")
            (event["wall_time"],) = struct.unpack("<d", v)
        elif number == 2:
            _expect(number, wire, VARINT, "Event.step")
            event["step"] = _int64(v)
        elif number == 3:
            _expect(number, wire, LEN, "Event.file_version")
            event["file_version"] = _string(buf, v, "Event.file_version")
            event["values"] = []  # 'what' is a oneof: the last member set wins
        elif number == 5:
            _expect(number, wire, LEN, "Event.summary")
            event.pop("file_version", None)
            for n2, w2, v2 in _fields(buf, *v):  # a repeated message field merges
                if n2 == 1:
                    _expect(n2, w2, LEN, "Summary.value")
                    event["values"].append(_summary_value(buf, v2))
        elif 4 <= number <= 10:
            # graph_def, log_message, session_log, tagged_run_metadata, meta_graph_def,
            # source_metadata: other members of the 'what' oneof
            event.pop("file_version", None)
            event["values"] = []
    return event


# ---------------------------------------------------------------------------------------
# files


def read_events(path_or_bytes):
    """Every Event of an event file (path or bytes), in order, as decode_event returns
    them. Raises TFRecordError for a bad frame, EventFormatError (naming the record)
    for a bad Event."""
    events = []
    for i, data in enumerate(read_records(path_or_bytes)):
        try:
            events.append(decode_event(data))
        except EventFormatError as e:
            raise EventFormatError(f"record {i}: {e}") from None
    return events


def read_scalars(path):
    """dict tag -> list of (step, value) of an event file, in the file's order. Values
    that are not simple_value scalars are left out."""
    out = {}
    for event in read_events(path):
        for tag, value in event["values"]:
            if value is not None:
                out.setdefault(tag, []).append((event["step"], value))
    return out


def event_files(logdir):
    """The event files directly in logdir (names holding 'tfevents', as TensorBoard
    looks for them), sorted by name: by start time, then host."""
    return sorted(
        os.path.join(logdir, name)
        for name in os.listdir(logdir)
        if "tfevents" in name and os.path.isfile(os.path.join(logdir, name))
    )
