#!/usr/bin/python3
"""Writes the seed corpora of the TFRecord, Example and CSV fuzz targets
(tests/fuzz/corpus/{tfrecord,example,csv}/), valid and invalid inputs alike.

Standard library only: protobuf bytes are assembled by hand from the wire format and
TFRecord frames are checksummed with the bitwise CRC32C below, so the corpus does not
depend on the code under test. Inputs that once crashed a target (crash-*) live in the
same folders and are left alone. Run: /usr/bin/python3 tests/fuzz/make_corpus.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def crc32c(data, crc=0):
    """CRC32C (Castagnoli, reflected 0x82F63B78), one bit at a time."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data):
    """One TFRecord frame: u64 length, masked CRC of it, data, masked CRC of data."""
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", masked(crc32c(header))) + data +
            struct.pack("<I", masked(crc32c(data))))


# ---- protobuf wire format ----------------------------------------------------

def varint(v):
    v &= (1 << 64) - 1  # negative int64 values take ten bytes
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def ld(field, payload):
    """A length-delimited field (wire type 2)."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def bytes_list(values):
    return ld(1, b"".join(ld(1, v) for v in values))  # Feature.bytes_list = 1


def float_list(values):
    return ld(2, ld(1, b"".join(struct.pack("<f", v) for v in values)))  # packed


def float_list_bits(bits):
    return ld(2, ld(1, b"".join(struct.pack("<I", b) for b in bits)))


def int64_list(values):
    return ld(3, ld(1, b"".join(varint(v) for v in values)))  # packed


def int64_list_unpacked(values):
    return ld(3, b"".join(varint(1 << 3 | 0) + varint(v) for v in values))


def entry(key, feature):
    return ld(1, ld(1, key) + ld(2, feature))  # Features.feature map entry


def example(*entries):
    return ld(1, b"".join(entries))  # Example.features = 1


# ---- the corpora ---------------------------------------------------------------

def example_corpus():
    simple = example(entry(b"a", int64_list([1, 2, 300])))
    rich = example(
        entry(b"image", bytes_list([bytes(range(16)), b"", b"a\x00b"])),
        entry(b"label", int64_list([-(1 << 63), (1 << 63) - 1, -1])),
        entry(b"x", float_list([0.0, -0.0, 1.5, float("inf")])),
        entry(b"nan", float_list_bits([0x7FC12345, 0x00000001])),
        entry(b"empty", bytes_list([])),
        entry(b"kindless", b""),
    )
    return {
        "int64_packed": simple,
        "int64_unpacked": example(entry(b"b", int64_list_unpacked([1, 2, 7]))),
        "rich": rich,
        "empty_example": b"",
        "empty_features": ld(1, b""),
        "duplicate_key": example(entry(b"a", int64_list([1])), entry(b"a", int64_list([2]))),
        "empty_key": example(entry(b"", float_list([1.0]))),
        "truncated": rich[:-3],
        "bad_wire_type": bytes([0x0B, 0x0A, 0x00]),
        "garbage": bytes([0xFF] * 12),
    }


def tfrecord_corpus(examples):
    one = frame(examples["int64_packed"])
    three = frame(examples["rich"]) + frame(b"") + frame(examples["int64_unpacked"])
    bad_data = bytearray(one)
    bad_data[14] ^= 0x01
    bad_header = bytearray(one)
    bad_header[9] ^= 0x80
    huge = struct.pack("<Q", (1 << 64) - 1)
    huge += struct.pack("<I", masked(crc32c(huge))) + b"\x00" * 8
    return {
        "empty": b"",
        "one_record": one,
        "three_records": three,
        "not_an_example": frame(b"hello") + frame(examples["garbage"]),
        "truncated_header": one + one[:7],
        "truncated_data": one + one[:-2],
        "bad_data_crc": bytes(bad_data),
        "bad_header_crc": bytes(bad_header),
        "huge_length": huge,
    }


def csv_corpus():
    return {
        "simple.csv": b"x,y,label\n1.5,2,cat\n-3,4e2,dog\n",
        "quoted.csv": b'a,"b,c","say ""hi"""\n"multi\nline",2,""\n',
        "crlf_bom.csv": b"\xef\xbb\xbfa,b\r\n1,2\r\n\r\n3,4",
        "blank_trailing.csv": b"\n\na,b,\n,,\nlast",
        "tabs.tsv": b'a\tb\tc\n1\t"2\t3"\t4\n',
        "nul_bytes.csv": b"a\x00b,c\n\"d\x00\",e\n",
        "malformed.csv": b'ok,1\nc,"unterminated\nbad"q,2\n"x"y,3\nfine,4\n',
        "unterminated_eof.csv": b'a,b\n"never closed,\nstill,open',
    }


def write(folder, files):
    path = os.path.join(HERE, "corpus", folder)
    os.makedirs(path, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
    print("%s: %d files" % (path, len(files)))


def main():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC32C check value
    examples = example_corpus()
    write("example", examples)
    write("tfrecord", tfrecord_corpus(examples))
    write("csv", csv_corpus())


if __name__ == "__main__":
    main()
