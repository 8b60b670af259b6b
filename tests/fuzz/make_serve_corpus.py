#!/usr/bin/python3
"""Writes the seed corpus of the model server's body parsers
(tests/fuzz/corpus/serve_body/): the first byte picks the parser (0 predict, 1 classify,
2 infer, 3 infer with the binary extension and a two-byte header length, 4 feedback,
5 the bare JSON scan; +0x10 for the two-input model), the rest is the body. Valid and
invalid bodies alike; inputs that once crashed the target (crash-*) are left alone.
Run: /usr/bin/python3 tests/fuzz/make_serve_corpus.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "serve_body")

seeds = {
    "predict_rows": (0, '{"instances": [[1, 2, 3, 4], [0.5, -1e-3, 2.5E+3, -0]]}'),
    "predict_columns": (0, '{"inputs": [[1.25, 2, 3, 4]]}'),
    "predict_columns_named": (0, '{"inputs": {"x": [[1, 2, 3, 4]]}, "signature_name": "serving_default"}'),
    "predict_nan": (0, '{"instances": [[NaN, Infinity, -Infinity, 1]]}'),
    "predict_nested": (0, '{"instances": [[[1, 2], [3, 4]]]}'),
    "predict_ragged": (0, '{"instances": [[1, 2, 3], [4]]}'),
    "predict_mixed": (0, '{"instances": [[1, "a", 3, 4], [1, 2, NaN, 4]]}'),
    "predict_objects": (0, '{"instances": [{"x": [1, 2, 3, 4]}]}'),
    "predict_long_digits": (0, '{"instances": [[0.30000000000000004, 123456789012345678901234567890, 1e-400, 9007199254740993]]}'),
    "predict_bad_number": (0, '{"instances": [[01, 2, 3, 4]]}'),
    "predict_marker": (0, '{"instances": [[1, 2, 3, 4]], "note": "\\u00010"}'),
    "predict_deep": (0, '{"instances": ' + "[" * 10 + "1" + "]" * 10 + "}"),
    "predict_two": (0x10, '{"instances": [{"cat": [3], "num": [[1, 2, 3]]}, {"cat": 1, "num": [4, 5, 6]}]}'),
    "predict_two_columns": (0x10, '{"inputs": {"cat": [[1], [2]], "num": [[1, 2, 3], [4, 5, 6]]}}'),
    "predict_two_float_cat": (0x10, '{"inputs": {"cat": [[1.5]], "num": [[1, 2, 3]]}}'),
    "classify": (1, '{"examples": [{"x": [1, 2, 3, 4]}, {"x": [5, 6, 7, 8]}]}'),
    "classify_two": (0x11, '{"examples": [{"cat": [2], "num": [1, 2, 3]}]}'),
    "infer": (2, json.dumps({"id": "a", "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                                                    "data": [1, 2, 3, 4, 5, 6, 7, 8]}],
                             "outputs": [{"name": "out"}]})),
    "infer_nested_fp64": (2, json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                                                     "data": [[1, 2, 3, 4]]}], "parameters": {"binary_data_output": True}})),
    "infer_two": (0x12, json.dumps({"inputs": [{"name": "cat", "shape": [1, 1], "datatype": "INT64", "data": [3]},
                                               {"name": "num", "shape": [1, 1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
                                    "outputs": [{"name": "b", "parameters": {"binary_data": True}}]})),
    "infer_bad_shape": (2, '{"inputs": [{"name": "x", "shape": [1, -4], "datatype": "FP32", "data": [1]}]}'),
    "feedback": (4, '{"feedback": [{"id": "0a1b2c3d-000000000001", "label": 3}, {"id": "r2", "label": "cat"},'
                    ' {"id": "r3", "label": [1, 2, 0]}, {"id": "r4", "label": 0.25}]}'),
    "feedback_bad": (4, '{"feedback": [{"id": 5, "label": {}}]}'),
    "scan": (5, '[[1, 2], [3, 4], {"a": [NaN]}, "x\\"[1]", -Infinity, [[[]]], [1e5, -2.5e-5]]'),
}


def binary(header_obj, raw, which=3):
    head = json.dumps(header_obj).encode()
    return bytes([which]) + struct.pack("<H", len(head)) + head + raw


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, (which, text) in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(bytes([which]) + text.encode())
    raw = struct.pack("<8f", *range(8))
    with open(os.path.join(OUT, "infer_binary"), "wb") as f:
        f.write(binary({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                                    "parameters": {"binary_data_size": len(raw)}}]}, raw))
    with open(os.path.join(OUT, "infer_binary_short"), "wb") as f:
        f.write(binary({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                                    "parameters": {"binary_data_size": len(raw)}}]}, raw[:12]))
    cat = struct.pack("<q", 5)
    with open(os.path.join(OUT, "infer_binary_two"), "wb") as f:
        f.write(binary({"inputs": [{"name": "cat", "shape": [1, 1], "datatype": "INT64",
                                    "parameters": {"binary_data_size": 8}},
                                   {"name": "num", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}, cat, 0x13))


if __name__ == "__main__":
    main()
