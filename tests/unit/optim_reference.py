#!/usr/bin/python3
"""Reference numbers for tests/unit/test_optim.c, computed with PyTorch (torch.optim,
torch.optim.lr_scheduler, torch.nn.utils.clip_grad_norm_) on float32 tensors.

Run:  /usr/bin/python3 tests/unit/optim_reference.py          (the C constants)
      /usr/bin/python3 tests/unit/optim_reference.py --dump N STEPS
                       (raw trajectories, to compare an implementation bit by bit)
and paste the printed arrays into test_optim.c. The parameters and gradients are
generated there by the same LCG; every value is a multiple of 2^-24 in [-1, 1), so
exact in float32. The hyper-parameters are given to torch as the float32 values the
C API receives (0.9 -> 0.89999997615814208984375), so both sides start from the same
numbers."""
import math
import sys

import torch

N = 7
STEPS = 20


def f32(x):
    """x rounded to float32, as a Python float."""
    return torch.tensor(x, dtype=torch.float32).item()


class Lcg:
    """state = state * 1664525 + 1013904223 (mod 2^32); value in [-0.5, 0.5)."""

    def __init__(self, seed):
        self.state = seed

    def next(self):
        self.state = (self.state * 1664525 + 1013904223) & 0xFFFFFFFF
        return (self.state >> 8) / 16777216.0 - 0.5


# name, optimizer class, keyword arguments (C: sw_optim_config with the same values)
CASES = [
    ("sgd", torch.optim.SGD, dict(lr=f32(0.1))),
    ("sgd_momentum", torch.optim.SGD, dict(lr=f32(0.05), momentum=f32(0.9))),
    ("sgd_nesterov_wd", torch.optim.SGD,
     dict(lr=f32(0.05), momentum=f32(0.9), nesterov=True, weight_decay=f32(0.01))),
    ("adam", torch.optim.Adam, dict(lr=f32(0.01), betas=(f32(0.9), f32(0.999)), eps=f32(1e-8))),
    ("adam_wd", torch.optim.Adam,
     dict(lr=f32(0.01), betas=(f32(0.9), f32(0.999)), eps=f32(1e-8), weight_decay=f32(0.1))),
    ("adamw", torch.optim.AdamW,
     dict(lr=f32(0.01), betas=(f32(0.9), f32(0.999)), eps=f32(1e-8), weight_decay=f32(0.1))),
]


def run(cls, kwargs, n, steps, seed=12345):
    """Parameters 2u, gradient at every step u (fresh draws, parameters first).
    Returns the parameters after each step and the final optimizer state."""
    rng = Lcg(seed)
    p = torch.tensor([2.0 * rng.next() for _ in range(n)], dtype=torch.float32,
                     requires_grad=True)
    opt = cls([p], **kwargs)
    trajectory = []
    for _ in range(steps):
        p.grad = torch.tensor([rng.next() for _ in range(n)], dtype=torch.float32)
        opt.step()
        trajectory.append(p.detach().clone())
    return trajectory, opt.state[p]


def c_array(name, values):
    body = ", ".join("%.9e" % v for v in values)
    return "static const float %s[%d] = {%s};" % (name, len(values), body)


def optimizers():
    print("/* optimizers: %d parameters, %d steps */" % (N, STEPS))
    for name, cls, kwargs in CASES:
        trajectory, state = run(cls, kwargs, N, STEPS)
        print(c_array("REF_%s_PARAM" % name.upper(), trajectory[-1].tolist()))
        if "momentum_buffer" in state and state["momentum_buffer"] is not None:
            print(c_array("REF_%s_M" % name.upper(), state["momentum_buffer"].tolist()))
        if "exp_avg" in state:
            print(c_array("REF_%s_M" % name.upper(), state["exp_avg"].tolist()))
            print(c_array("REF_%s_V" % name.upper(), state["exp_avg_sq"].tolist()))


def lr_trace(make, base_lr, steps):
    """lr of steps 0..steps-1 under scheduler make(optimizer)."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def schedules():
    # warm-up W=5 then the decay from the end of the warm-up: LambdaLR for the warm-up
    # steps, then StepLR / CosineAnnealingLR started afresh (their step 0 = step W).
    base, W = f32(0.1), 5
    warm = lr_trace(lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: (s + 1) / W),
                    base, W)
    step = lr_trace(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=f32(0.5)),
                    base, 40)
    T, min_lr = 30, f32(0.001)
    cos = lr_trace(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=T,
                                                                      eta_min=min_lr),
                   base, T + 1)
    print("/* schedules: base_lr 0.1, warm-up 5 (LambdaLR), then StepLR(7, 0.5) for 40 steps"
          " or CosineAnnealingLR(T_max 30, eta_min 0.001) for 31 */")
    print(c_array("REF_WARMUP_LR", warm))
    print(c_array("REF_STEP_LR", step))
    print(c_array("REF_COSINE_LR", cos))


def clipping():
    # three tensors of 5, 1 and 9 gradients (3u each), clipped to 1.0, then to 100.
    rng = Lcg(777)
    sizes = [5, 1, 9]
    grads = [torch.tensor([3.0 * rng.next() for _ in range(k)], dtype=torch.float32)
             for k in sizes]
    ps = []
    for g in grads:
        p = torch.zeros(len(g), requires_grad=True)
        p.grad = g.clone()
        ps.append(p)
    total = torch.nn.utils.clip_grad_norm_(ps, max_norm=1.0, norm_type=2.0)
    exact = math.sqrt(sum(float(x) ** 2 for g in grads for x in g.tolist()))
    print("/* clipping: sizes 5, 1, 9 from Lcg(777) * 3, max_norm 1.0; torch's norm %.9e,"
          " float64 norm %.17g */" % (total.item(), exact))
    print("static const double REF_CLIP_NORM = %.17g;" % exact)
    print(c_array("REF_CLIP_GRADS", [x for p in ps for x in p.grad.tolist()]))


def dump(n, steps):
    """Every case's parameters after every step, one line per step, %.9e."""
    for name, cls, kwargs in CASES:
        trajectory, _ = run(cls, kwargs, n, steps)
        for t, p in enumerate(trajectory):
            print(name, t + 1, " ".join("%.9e" % x for x in p.tolist()))


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--dump":
        dump(int(sys.argv[2]), int(sys.argv[3]))
        return
    torch.set_printoptions(precision=10)
    print("/* Generated by /usr/bin/python3 tests/unit/optim_reference.py (torch %s) */"
          % torch.__version__)
    optimizers()
    schedules()
    clipping()


if __name__ == "__main__":
    main()
