"""Helpers of the rollout tests: classifiers of known accuracy on a synthetic labeled set
(linear models with set weights, exported from PyTorch to ONNX: no training, so every
run has the same accuracies), the set as a dataset dir, and `slipway loadgen` posting it
as labeled traffic with its feedback.

The set: 4 features, 3 classes; labels are argmax(W x) with a share of them redrawn at
random (the noise), so W itself is right on 1 - noise * 2/3 of them and a model W + s E
is worse by an amount set by s (found by bisection on the set itself)."""

import json
import os
import signal
import subprocess

import numpy as np
import torch

from serving import Tiny, export

N_EXAMPLES = 4000


def dataset(seed=11, noise=0.045):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(3, 4))
    x = rng.normal(size=(N_EXAMPLES, 4)).astype(np.float32)
    y = np.argmax(x @ w.T, axis=1)
    flip = rng.random(N_EXAMPLES) < noise
    y[flip] = rng.integers(0, 3, size=int(flip.sum()))
    return w, x, y


def accuracy(w, x, y):
    return float(np.mean(np.argmax(x @ w.T, axis=1) == y))


def worse_weights(w, x, y, drop, seed=5):
    """W + s E with the accuracy of W less drop (within 0.3 points)."""
    e = np.random.default_rng(seed).normal(size=w.shape)
    target = accuracy(w, x, y) - drop
    lo, hi = 0.0, 8.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if accuracy(w + mid * e, x, y) > target:
            lo = mid
        else:
            hi = mid
    out = w + hi * e
    assert abs(accuracy(out, x, y) - target) < 0.003, (accuracy(out, x, y), target)
    return out


def export_linear(w, path):
    m = Tiny()
    with torch.no_grad():
        m.fc.weight.copy_(torch.tensor(w, dtype=torch.float32))
        m.fc.bias.zero_()
    return export(m, (torch.randn(2, 4),), ["x"], path)


def prep_dataset(run, x, y, out):
    """The set as a `slipway prep` dataset dir (its test split: every example, in order) for
    `slipway loadgen`: one feature x of 4 floats, the label an int."""
    out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps({"x": [float(v) for v in x[i]], "label": int(y[i])}) + "\n" for i in range(len(y)))
    (out / "all.jsonl").write_text(lines)
    (out / "few.jsonl").write_text("".join(lines.splitlines(keepends=True)[:200]))
    r = run("prep", "--input", f"jsonl:{out / 'few.jsonl'}", "--test-input", out / "all.jsonl", "--split", "train=1",
            "--max-z", "0", "--shards", "1", "--out", out / "ds")
    assert r.returncode == 0, f"prep: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return out / "ds"


class Loadgen:
    """`slipway loadgen` against a server: Poisson arrivals at rps, users u..., every label
    posted back as feedback, until stop() (SIGTERM: it reports what ran). stop() returns
    its JSON report (requests and accuracy per X-Model-Version)."""

    def __init__(self, slipway, url, model, data, rps=300, users=400, seed=1, headers=(), duration=600):
        args = [slipway, "loadgen", "--server", url, "--model", model, "--data", str(data), "--rps", str(rps),
                "--duration", str(duration), "--feedback", "--users", str(users), "--seed", str(seed), "--json"]
        for h in headers:
            args += ["--header", h]
        env = dict(os.environ)
        env.setdefault("SLIPWAY_LOG", "warn")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, f"loadgen: exit {self.proc.returncode}\n{out}\n{err}"
        return json.loads(out)


def served(report, version):
    """Answers of version in a loadgen report."""
    return report["versions"].get(str(version), {}).get("answered", 0)
