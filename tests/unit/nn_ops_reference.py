"""Reference numbers for tests/unit/test_nn_ops.c, from PyTorch (float32, CPU).

Run with the interpreter that has torch (/usr/bin/python3 on the dev image):
    /usr/bin/python3 tests/unit/nn_ops_reference.py
and paste the printed C arrays into the test. Inputs are fixed here (a small linear
congruential sequence), printed too, so the C side feeds exactly the same floats.
"""
import torch

torch.set_default_dtype(torch.float32)


def values(n, seed, lo, hi):
    """n floats in [lo, hi) from a fixed LCG: no dependence on torch's generator."""
    out, s = [], seed
    for _ in range(n):
        s = (s * 1103515245 + 12345) % (1 << 31)
        out.append(lo + (hi - lo) * s / float(1 << 31))
    return torch.tensor(out, dtype=torch.float32)


def c_float(v):
    s = f"{v:.9g}"
    return (s if any(ch in s for ch in ".en") else s + ".0") + "f"


def c_array(name, t):
    flat = [c_float(v) for v in t.detach().reshape(-1).tolist()]
    lines = []
    for i in range(0, len(flat), 6):
        lines.append("    " + ", ".join(flat[i:i + 6]) + ",")
    print(f"static const float {name}[{len(flat)}] = {{")
    print("\n".join(lines))
    print("};")


# Gelu (exact erf form) over [-5, 5)
x = values(16, 1, -5.0, 5.0)
c_array("gelu_x", x)
c_array("gelu_y", torch.nn.functional.gelu(x))

# LogSoftmax over the last axis, with large logits (stability)
x = values(15, 2, -50.0, 150.0).reshape(3, 5)
c_array("log_softmax_x", x)
c_array("log_softmax_y", torch.log_softmax(x, dim=-1))

# LayerNorm over the last axis of [2, 3, 4], eps 1e-5, with a mean far from 0
x = values(24, 3, 8.0, 12.0).reshape(2, 3, 4)
w = values(4, 4, 0.5, 1.5)
b = values(4, 5, -0.5, 0.5)
c_array("layer_norm_x", x)
c_array("layer_norm_scale", w)
c_array("layer_norm_b", b)
# in float64 from the same float32 inputs, rounded once: PyTorch's float32 result is
# itself 2.5e-6 off here (the mean near 10 costs the centred values digits)
y = torch.nn.functional.layer_norm(x.double(), (4,), w.double(), b.double(), eps=1e-5)
c_array("layer_norm_y", y.float())

# BatchNorm on [3, 2, 2, 2]; ONNX momentum 0.9 is PyTorch's 0.1
x = values(24, 6, -2.0, 3.0).reshape(3, 2, 2, 2)
w = values(2, 7, 0.5, 1.5)
b = values(2, 8, -0.5, 0.5)
rm = values(2, 9, -0.2, 0.2)
rv = values(2, 10, 0.5, 1.5)
c_array("batch_norm_x", x)
c_array("batch_norm_scale", w)
c_array("batch_norm_b", b)
c_array("batch_norm_running_mean", rm)
c_array("batch_norm_running_var", rv)
rm_t, rv_t = rm.clone(), rv.clone()
y = torch.nn.functional.batch_norm(x, rm_t, rv_t, w, b, training=True, momentum=0.1, eps=1e-5)
c_array("batch_norm_train_y", y)
c_array("batch_norm_train_running_mean", rm_t)
c_array("batch_norm_train_running_var", rv_t)
y = torch.nn.functional.batch_norm(x, rm.clone(), rv.clone(), w, b, training=False, eps=1e-5)
c_array("batch_norm_eval_y", y)
