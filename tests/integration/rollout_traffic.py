"""Helpers of the rollout tests: classifiers of known accuracy on a synthetic labeled set
(linear models with set weights, exported from PyTorch to ONNX: no training, so every
run has the same accuracies), and a paced client that posts labeled traffic and its
feedback to a server, as `slipway loadgen` would.

The set: 4 features, 3 classes; labels are argmax(W x) with a share of them redrawn at
random (the noise), so W itself is right on 1 - noise * 2/3 of them and a model W + s E
is worse by an amount set by s (found by bisection on the set itself)."""

import http.client
import json
import random
import threading
import time
from urllib.parse import urlparse

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


class Traffic:
    """Threads posting one labeled example at a time at a set pace (each thread keeps its
    own schedule of Poisson arrivals and sends late ones at once: open loop per thread),
    as users u0..u{users-1}, and posting the labels back as feedback in small batches.
    .answers: (user, version, status) of every answer; stop() ends it."""

    def __init__(self, url, model, x, y, rate=300, threads=4, users=400, feedback=True, headers=None, seed=1,
                 label_path=None):
        self.url, self.model, self.x, self.y = urlparse(url), model, x, y
        self.rate, self.threads, self.users, self.feedback = rate, threads, users, feedback
        self.headers = headers or {}
        self.answers = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.path = label_path or f"/v1/models/{model}:predict"
        self.workers = [threading.Thread(target=self._run, args=(seed * 1000 + i,), daemon=True) for i in range(threads)]
        for t in self.workers:
            t.start()

    def _conn(self):
        return http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=30)

    def _post(self, conn, path, body, headers):
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **headers})
        r = conn.getresponse()
        data = r.read()
        return r.status, r.getheader("X-Model-Version"), r.getheader("X-Request-Id"), data

    def _run(self, seed):
        rnd = random.Random(seed)
        conn = self._conn()
        pending = []
        next_t = time.monotonic()
        per_thread = self.rate / self.threads
        while not self.stopping.is_set():
            next_t += rnd.expovariate(per_thread)
            wait = next_t - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            i = rnd.randrange(len(self.y))
            user = f"u{rnd.randrange(self.users)}"
            try:
                code, version, rid, _ = self._post(conn, self.path, {"instances": [self.x[i].tolist()]},
                                                   {"X-User-Id": user, **self.headers})
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = self._conn()
                time.sleep(0.05)
                continue
            with self.lock:
                self.answers.append((user, version, code))
            if code == 200 and self.feedback:
                pending.append({"id": rid, "label": int(self.y[i])})
                if len(pending) >= 10:
                    self._send_feedback(conn, pending)
                    pending = []
        if pending:
            self._send_feedback(conn, pending)
        conn.close()

    def _send_feedback(self, conn, items):
        try:
            self._post(conn, f"/v1/models/{self.model}:feedback", {"feedback": items}, {})
        except (OSError, http.client.HTTPException):
            pass

    def stop(self):
        self.stopping.set()
        for t in self.workers:
            t.join(timeout=60)
        return self.answers

    def count(self):
        with self.lock:
            return len(self.answers)
