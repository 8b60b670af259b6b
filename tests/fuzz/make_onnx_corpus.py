#!/usr/bin/python3
"""Writes the seed corpus of fuzz_onnx (tests/fuzz/corpus/onnx/): small valid models of
the ops the importer knows, models it must refuse (unsupported op and attribute,
external data, a cycle, an index out of range, a huge declared size, a wrong type), and
truncated copies. Run with /usr/bin/python3 (python3-onnx); the output is deterministic."""

import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "onnx")
F, I64 = TensorProto.FLOAT, TensorProto.INT64


def model(nodes, inputs, outputs, inits=(), meta=None):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_onnx_corpus")
    m.ir_version = 7
    if meta:
        helper.set_model_props(m, meta)
    return m.SerializeToString()


def inp(name, dims, t=F):
    return helper.make_tensor_value_info(name, t, dims)


def out(name):
    return helper.make_tensor_value_info(name, F, None)


def w(name, shape, seed=0):
    return numpy_helper.from_array(np.random.RandomState(seed).randn(*shape).astype(np.float32), name)


def i64(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def cases():
    N = "N"
    yield "mlp", model([
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1),
        helper.make_node("Softmax", ["y"], ["p"], axis=-1)],
        [inp("x", [N, 4])], [out("p")],
        [w("W1", (8, 4)), w("b1", (8,)), w("W2", (3, 8), 1), w("b2", (3,), 2)], {"slipway.input_features": "x"})
    yield "cnn", model([
        helper.make_node("Conv", ["x", "Wc", "bc"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], epsilon=1e-5),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Dropout", ["mp"], ["d"]),
        helper.make_node("Flatten", ["d"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "Wf"], ["y"], transB=1)],
        [inp("x", [N, 1, 6, 6])], [out("y")],
        [w("Wc", (2, 1, 3, 3)), w("bc", (2,)), w("s", (2,)), w("b", (2,)), w("m", (2,)),
         numpy_helper.from_array(np.ones(2, np.float32), "v"), w("Wf", (3, 18))])
    yield "shape_pattern", model([
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax"], ["b1"]),
        helper.make_node("Concat", ["b1", "m1"], ["t"], axis=0),
        helper.make_node("Reshape", ["x", "t"], ["y"])],
        [inp("x", [N, 2, 3])], [out("y")],
        [numpy_helper.from_array(np.array(0, np.int64), "zero"), i64("ax", [0]), i64("m1", [-1])])
    yield "embedding_concat", model([
        helper.make_node("Gather", ["E", "cat"], ["e"]),
        helper.make_node("Squeeze", ["e", "ax"], ["e1"]),
        helper.make_node("Concat", ["e1", "num"], ["h"], axis=1),
        helper.make_node("Gemm", ["h", "W"], ["y"], transB=1)],
        [inp("cat", [N, 1], I64), inp("num", [N, 3])], [out("y")],
        [w("E", (5, 2)), i64("ax", [1]), w("W", (2, 5))])
    yield "misc_ops", model([
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(2.0, np.float32))),
        helper.make_node("Mul", ["x", "c"], ["a"]),
        helper.make_node("Identity", ["a"], ["b"]),
        helper.make_node("Clip", ["b", "lo", "hi"], ["cl"]),
        helper.make_node("Sum", ["cl", "b", "x"], ["s"]),
        helper.make_node("Pad", ["s", "pads"], ["p"], mode="constant"),
        helper.make_node("ReduceMean", ["p"], ["rm"], axes=[2, 3], keepdims=0),
        helper.make_node("Cast", ["rm"], ["y"], to=F)],
        [inp("x", [N, 2, 3, 3])], [out("y")],
        [numpy_helper.from_array(np.array(0.0, np.float32), "lo"), numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
         i64("pads", [0, 0, 1, 1, 0, 0, 1, 1])])
    yield "typed_fields", model([helper.make_node("MatMul", ["x", "W"], ["y"])], [inp("x", [N, 2])], [out("y")],
                                [helper.make_tensor("W", F, [2, 2], [1.0, 2.0, 3.0, 4.0])])
    # refused
    yield "bad_unsupported_op", model([helper.make_node("Erf", ["x"], ["y"], name="erf0")], [inp("x", [N, 2])], [out("y")])
    yield "bad_unsupported_attr", model([helper.make_node("Conv", ["x", "W"], ["y"], group=2)],
                                        [inp("x", [N, 2, 4, 4])], [out("y")], [w("W", (2, 1, 3, 3))])
    ext = helper.make_tensor("W", F, [2, 2], [1.0, 2.0, 3.0, 4.0])
    ext.ClearField("float_data")
    ext.data_location = TensorProto.EXTERNAL
    ext.external_data.add(key="location", value="weights.bin")
    yield "bad_external_data", model([helper.make_node("MatMul", ["x", "W"], ["y"])], [inp("x", [N, 2])], [out("y")], [ext])
    yield "bad_cycle", model([helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])],
                             [inp("x", [N, 2])], [out("b")])
    yield "bad_index", model([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i"], ["y"])],
                             [inp("x", [N, 2])], [out("y")], [numpy_helper.from_array(np.array(9, np.int64), "i")])
    huge = TensorProto(name="W", dims=[1 << 30, 1 << 30], data_type=F)
    yield "bad_huge", model([helper.make_node("MatMul", ["x", "W"], ["y"])], [inp("x", [N, 2])], [out("y")], [huge])
    yield "bad_huge_input", model([helper.make_node("Relu", ["x"], ["y"])], [inp("x", [N, 1 << 20, 1 << 20])], [out("y")])
    yield "bad_type", model([helper.make_node("Relu", ["x"], ["y"])], [inp("x", [N, 2], TensorProto.STRING)], [out("y")])
    yield "bad_shape_mismatch", model([helper.make_node("MatMul", ["x", "W"], ["y"])], [inp("x", [N, 3])], [out("y")],
                                      [w("W", (2, 2))])


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in cases():
        with open(os.path.join(OUT, name + ".onnx"), "wb") as f:
            f.write(data)
        if name in ("mlp", "cnn", "embedding_concat"):
            for cut in (len(data) // 3, len(data) // 2, len(data) - 1):
                with open(os.path.join(OUT, f"{name}.trunc{cut}.onnx"), "wb") as f:
                    f.write(data[:cut])
    return 0


if __name__ == "__main__":
    sys.exit(main())
