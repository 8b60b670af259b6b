"""Helpers of the model server's tests: PyTorch models exported to ONNX, a running
`slipway serve` on a free loopback port (stopped by its PID), and norm-wise comparison."""

import os
import signal
import socket
import subprocess
import time

import numpy as np
import requests
import torch

nn = torch.nn


class Tiny(nn.Module):
    """4 features in, 3 classes out."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 5))

    def forward(self, x):
        return self.net(x)


class EmbedConcat(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.fc1 = nn.Linear(4 + 3, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, cat, num):
        h = torch.cat([self.emb(cat).squeeze(1), num], dim=1)
        return self.fc2(torch.relu(self.fc1(h)))


def export(model, args, names, path, outputs=("out",)):
    model.eval()
    axes = {n: {0: "N"} for n in list(names) + list(outputs)}
    torch.onnx.export(model, args, str(path), opset_version=13, input_names=list(names), output_names=list(outputs),
                      dynamic_axes=axes)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_close(got, want, tol=1e-5):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-6)
    assert err <= tol, f"relative error {err}"


class Server:
    """slipway serve with the given flags; .url, .token, .stop() (SIGTERM, waits)."""

    def __init__(self, binary, tmp_path, *args, token=None, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = tmp_path / "home"
        self.token = token
        e = dict(os.environ)
        e["SLIPWAY_HOME"] = str(self.home)
        e.setdefault("SLIPWAY_LOG", "info")
        if env:
            e.update(env)
        self.log = open(tmp_path / f"serve-{self.port}.log", "w+")
        self.proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{self.port}", *[str(a) for a in args]],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=e)
        self.wait_ready()
        if self.token is None and (self.home / "admin.token").is_file():
            self.token = (self.home / "admin.token").read_text().strip()

    def wait_ready(self, timeout=30):
        until = time.time() + timeout
        while time.time() < until:
            if self.proc.poll() is not None:
                raise AssertionError(f"slipway serve exited {self.proc.returncode}:\n{self.logs()}")
            try:
                if requests.get(self.url + "/v2/health/ready", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"slipway serve not ready after {timeout} s:\n{self.logs()}")

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def admin(self, path, body=None, token="default"):
        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(self.url + path, json=body, headers=headers, timeout=60)

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"slipway serve did not stop on SIGTERM:\n{self.logs()}")
        self.log.close()
        return self.proc.returncode
