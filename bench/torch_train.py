"""Benchmark (never a test): PyTorch's training step for the Fashion-MNIST MLP and CNN of
examples/fashion-mnist (the same modules as tests/integration/test_torch_crosscheck.py),
batch 64, Adam, timed like bench/train_step: W untimed steps, then R rounds of N steps on
the first K batches of the train split in stored order (fed in turn, as train_step does),
the best round reported as one JSON line. bench/train_vs_torch.sh runs it.

    /usr/bin/python3 bench/torch_train.py --model mlp|cnn [--threads T] [--steps N]
        [--warmup W] [--rounds R] [--batches K] [--data DATASET_DIR] [--no-mkldnn]

Run it with OPENBLAS_NUM_THREADS=T as well: the Linear layers go to OpenBLAS, whose own
thread count torch.set_num_threads does not set.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from test_torch_crosscheck import CNN, MLP, first_batches  # noqa: E402

BATCH = 64


def flops_per_step(kind):
    """GEMM/Conv FLOPs of one training step, counted as bench/train_step.c counts them."""
    def dense(n, k, m):  # forward 2*N*K*M
        return 2 * n * k * m
    if kind == "mlp":
        layers = [dense(BATCH, 784, 256), dense(BATCH, 256, 128), dense(BATCH, 128, 10)]
        return 2 * layers[0] + 3 * sum(layers[1:])
    conv1 = 2 * (1 * 9) * 32 * 28 * 28 * BATCH
    conv2 = 2 * (32 * 9) * 64 * 14 * 14 * BATCH
    rest = dense(BATCH, 64 * 7 * 7, 128) + dense(BATCH, 128, 10)
    return 2 * conv1 + 3 * (conv2 + rest)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["mlp", "cnn"], required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batches", type=int, default=16)
    p.add_argument("--data", help="a prepped dataset: its first K batches (else random pixels)")
    p.add_argument("--no-mkldnn", action="store_true", help="torch's im2col + GEMM convolution, as ours")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.backends.mkldnn.enabled = not a.no_mkldnn
    torch.manual_seed(0)
    if a.data:
        x, y = first_batches(Path(a.data), BATCH * a.batches)
    else:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (BATCH * a.batches, 784)).astype(np.float32)
        y = rng.integers(0, 10, BATCH * a.batches).astype(np.int64)
    batches = [(torch.from_numpy(x[i * BATCH:(i + 1) * BATCH]), torch.from_numpy(y[i * BATCH:(i + 1) * BATCH]))
               for i in range(a.batches)]
    net = MLP() if a.model == "mlp" else CNN()
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=0.001)

    done = 0

    def step():
        nonlocal done
        xb, yb = batches[done % a.batches]
        done += 1
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    rounds = []
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            loss = step()
        rounds.append(time.perf_counter() - t0)
    rounds.sort()
    best_ms = rounds[0] / a.steps * 1e3
    flops = flops_per_step(a.model)
    print(json.dumps({
        "what": "torch_train", "model": a.model, "threads": a.threads, "mkldnn": not a.no_mkldnn,
        "torch": torch.__version__, "batch": BATCH, "steps": a.steps, "warmup": a.warmup, "rounds": a.rounds, "batches": a.batches,
        "samples_per_sec": round(BATCH / best_ms * 1e3, 1), "step_ms": round(best_ms, 4),
        "median_step_ms": round(rounds[len(rounds) // 2] / a.steps * 1e3, 4),
        "flops_per_step": flops, "gflops": round(flops / best_ms / 1e6, 2), "final_loss": float(loss),
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
