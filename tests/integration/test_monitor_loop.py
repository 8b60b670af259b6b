"""The monitor loop end to end (issue 10's must-show): `slipway serve --eval-every 1s`
serving a Fashion-MNIST model from the registry, scraped by a real Prometheus (Debian's)
on the loopback, alerts POSTed to this test's own webhook receiver.

- Prometheus's HTTP API finds the monitor's quality series and the request counters.
- Test-split traffic raises no drift; a worse model slipped under the production alias
  by hand raises SlipwayQualityRegression with its labels, and moving the alias back
  sends "resolved" for the same alert; inverted images raise SlipwayDataDrift naming the
  image feature. Every alert is also in the registry's event log.
- The standalone `slipway monitor --once` judges the same versions the same way."""

import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

from conftest import describe, fashion_subset, run_slipway
from serving import Server, free_port

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
N_TRAIN, N_TEST, WINDOW = 3000, 500, 200

POLICY = f"""metric: accuracy
gate:
  split: test
  min: {{accuracy: 0.5}}
monitor:
  every: 1s
  max_drop: {{accuracy: 0.05}}
  drift: {{window: {WINDOW}}}
"""


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x / 255.0)


def torch_model(path, x, y, steps):
    torch.manual_seed(0)
    m = MLP()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(m(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    torch.onnx.export(m, torch.zeros(1, 784), str(path), opset_version=13, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})


class Receiver:
    """An Alertmanager-webhook receiver: keeps every POSTed body."""

    def __init__(self):
        self.bodies = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def alerts(self, name, status=None):
        with self.lock:
            return [(b["status"], a) for b in self.bodies for a in b["alerts"]
                    if a["labels"]["alertname"] == name and (status is None or a["status"] == status)]

    def wait(self, name, status, timeout, logs):
        until = time.time() + timeout
        while time.time() < until:
            got = self.alerts(name, status)
            if got:
                return got[-1][1]
            time.sleep(0.2)
        raise AssertionError(f"no {status} {name} in {timeout} s; received {self.bodies}\n--- server log\n{logs()[-4000:]}")


@pytest.fixture(scope="module")
def world(slipway, fashion_mnist, tmp_path_factory):
    base = tmp_path_factory.mktemp("monitor_loop")
    raw = base / "raw"
    arrays = fashion_subset(fashion_mnist, raw, {"train": N_TRAIN, "t10k": N_TEST})
    ds = base / "ds"
    r = run_slipway(slipway, "prep", "--input", f"idx:{raw}", "--out", ds)
    assert r.returncode == 0, describe(r)
    x, y = arrays["train"]
    good, worse = base / "good.onnx", base / "worse.onnx"
    torch_model(good, x[:N_TRAIN].reshape(N_TRAIN, -1).astype(np.float32), y[:N_TRAIN].astype(np.int64), 300)
    torch_model(worse, x[:N_TRAIN].reshape(N_TRAIN, -1).astype(np.float32), y[:N_TRAIN].astype(np.int64), 0)
    home = base / "home"
    env = {**os.environ, "SLIPWAY_HOME": str(home)}
    policy = base / "policy.yaml"
    policy.write_text(POLICY)
    for f in (good, worse):
        r = run_slipway(slipway, "registry", "register", "--onnx", f, "--name", "fm", "--dataset", ds, env=env)
        assert r.returncode == 0, describe(r)
    r = run_slipway(slipway, "registry", "promote", "fm:1", "--policy", policy, "--why", "first", env=env)
    assert r.returncode == 0, describe(r)
    receiver = Receiver()
    server = Server(slipway, base, "--eval-every", "1s", "--policy", policy, "--alert-webhook", receiver.url, "--poll",
                    "0.2", env={"SLIPWAY_LOG": "info"})
    # unseen test images (beyond what prep took) for the traffic
    tx, ty = arrays["t10k"]
    yield {"ds": ds, "home": home, "env": env, "policy": policy, "server": server, "receiver": receiver,
           "images": tx[N_TEST:N_TEST + WINDOW].reshape(WINDOW, -1), "labels": ty[N_TEST:N_TEST + WINDOW]}
    server.stop()
    receiver.httpd.shutdown()


def metrics(server):
    out = {}
    for line in requests.get(server.url + "/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def wait_metric(server, key, pred, timeout=30):
    until = time.time() + timeout
    while time.time() < until:
        m = metrics(server)
        if key in m and pred(m[key]):
            return m
        time.sleep(0.2)
    raise AssertionError(f"{key} not as expected in {timeout} s: {metrics(server).get(key)}\n{server.logs()[-3000:]}")


def send(server, images, labels=None, batch=20):
    """Predicts in batches; with labels, sends them back as feedback."""
    for i in range(0, len(images), batch):
        r = requests.post(server.url + "/v1/models/fm:predict", json={"instances": images[i:i + batch].tolist()}, timeout=30)
        assert r.status_code == 200, r.text
        if labels is not None:
            fb = [{"id": r.headers["X-Request-Id"], "label": [int(v) for v in labels[i:i + batch]]}]
            f = requests.post(server.url + "/v1/models/fm:feedback", json={"feedback": fb}, timeout=30)
            assert f.status_code == 200 and f.json()["joined"] == len(labels[i:i + batch]), f.text


def prom_api(port, path, **params):
    url = f"http://127.0.0.1:{port}{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def test_prometheus_scrapes_serve_and_clean_traffic_raises_nothing(world, tmp_path):
    server, receiver = world["server"], world["receiver"]
    send(server, world["images"], world["labels"])
    key = 'slipway_drift_window_records{model="fm"}'
    m = wait_metric(server, key, lambda v: v >= WINDOW)
    assert m['slipway_drift_detected{model="fm"}'] == 0, m
    assert m['slipway_drift_psi{model="fm",feature="image"}'] < 0.1, m
    acc = [v for k, v in m.items() if k.startswith('slipway_model_quality{model="fm",version="1",metric="accuracy"')]
    assert acc and acc[0] > 0.6, m
    assert m['slipway_live_accuracy_upper{model="fm",version="1"}'] > 0.6, m  # feedback joined
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                      f"rule_files: ['{RULES}']\n"
                      "scrape_configs:\n  - job_name: slipway\n"
                      f"    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n")
    log = open(tmp_path / "prometheus.log", "w")
    proc = subprocess.Popen(["/usr/bin/prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        until, found = time.time() + 30, {}
        while time.time() < until and len(found) < 3:
            for q in ('slipway_model_quality{model="fm",metric="accuracy"}', 'slipway_requests_total{model="fm",api="predict"}',
                      'slipway_drift_detected{model="fm"}'):
                try:
                    r = prom_api(port, "/api/v1/query", query=q)
                except OSError:
                    continue
                if r["status"] == "success" and r["data"]["result"]:
                    found[q] = r["data"]["result"]
            time.sleep(0.5)
        assert len(found) == 3, (found, (tmp_path / "prometheus.log").read_text()[-2000:])
        q = found['slipway_model_quality{model="fm",metric="accuracy"}']
        assert q[0]["metric"]["version"] == "1" and len(q[0]["metric"]["dataset"]) == 16 and float(q[0]["value"][1]) > 0.6, q
        assert float(found['slipway_requests_total{model="fm",api="predict"}'][0]["value"][1]) >= WINDOW / 20
        assert float(found['slipway_drift_detected{model="fm"}'][0]["value"][1]) == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        log.close()
    assert receiver.alerts("SlipwayDataDrift") == [] and receiver.alerts("SlipwayQualityRegression") == []


def test_worse_model_under_production_alerts_and_fix_resolves(world, run):
    server, receiver, env = world["server"], world["receiver"], world["env"]
    r = run("registry", "alias", "fm:2", "production", "--why", "test: slip a worse model in", env=env)
    assert r.returncode == 0, describe(r)
    fired = receiver.wait("SlipwayQualityRegression", "firing", 30, server.logs)
    labels = fired["labels"]
    assert {k: labels[k] for k in ("model", "version", "metric", "severity")} == \
        {"model": "fm", "version": "2", "metric": "accuracy", "severity": "page"}, fired
    assert fired["endsAt"] == "0001-01-01T00:00:00Z" and "worse than the baseline" in fired["annotations"]["description"]
    m = metrics(server)
    drop = [v for k, v in m.items() if k.startswith('slipway_model_quality_drop{model="fm",version="2",metric="accuracy"')]
    assert drop and drop[0] > 0.05, m
    r = run("registry", "alias", "fm:1", "production", "--why", "test: put it right", env=env)
    assert r.returncode == 0, describe(r)
    resolved = receiver.wait("SlipwayQualityRegression", "resolved", 30, server.logs)
    assert resolved["fingerprint"] == fired["fingerprint"] and resolved["startsAt"] == fired["startsAt"]
    assert resolved["endsAt"] != "0001-01-01T00:00:00Z"
    # one firing, one resolution: the condition persisting over many cycles is not re-sent
    assert len(receiver.alerts("SlipwayQualityRegression", "firing")) == 1
    r = run("registry", "events", "--json", env=env)
    assert r.returncode == 0, describe(r)
    acts = [(e["action"], e["version"]) for e in json.loads(r.stdout) if e["entity"] == "alert"]
    assert ("firing", 2) in acts and ("resolved", 2) in acts, acts


def test_shifted_traffic_raises_drift_alert(world):
    server, receiver = world["server"], world["receiver"]
    assert receiver.alerts("SlipwayDataDrift") == []
    send(server, 255 - world["images"])
    fired = receiver.wait("SlipwayDataDrift", "firing", 30, server.logs)
    assert fired["labels"]["model"] == "fm" and fired["labels"]["severity"] == "warning", fired
    assert fired["annotations"]["worst"] == "image" and "image (psi" in fired["annotations"]["description"], fired
    m = metrics(server)
    assert m['slipway_drift_detected{model="fm"}'] == 1 and m['slipway_drift_psi{model="fm",feature="image"}'] > 1, m
    # clean traffic again: the window fills with test images and the alert resolves
    send(server, world["images"])
    receiver.wait("SlipwayDataDrift", "resolved", 30, server.logs)


def test_standalone_monitor_once(world, run, tmp_path):
    env = world["env"]
    r = run("monitor", "--once", "--json", "--policy", world["policy"], "--server", world["server"].url, env=env)
    assert r.returncode == 0, describe(r)
    res = json.loads(r.stdout)
    assert [(x["model"], x["version"]) for x in res] == [("fm", 1)], res
    assert res[0]["drop"]["dropped"] is False and res[0]["baseline_version"] == 1
    # the registry's view alone, with the worse version under the alias: a regression, exit 3
    r = run("registry", "alias", "fm:2", "production", "--why", "test", env=env)
    assert r.returncode == 0, describe(r)
    try:
        r = run("monitor", "--once", "--policy", world["policy"], env=env)
        assert r.returncode == 3 and "fm:2: REGRESSION" in r.stdout, describe(r)
    finally:
        assert run("registry", "alias", "fm:1", "production", "--why", "test", env=env).returncode == 0
    r = run("monitor", "--once", "--policy", world["policy"], "--server", "http://127.0.0.1:1", env=env)
    assert r.returncode == 1 and "127.0.0.1:1" in r.stderr, describe(r)
    r = run("monitor", "--once", env=env)
    assert r.returncode == 2 and "--policy is required" in r.stderr, describe(r)
    r = run("serve", "--eval-data", world["ds"], env=env)
    assert r.returncode == 2 and "--eval-every" in r.stderr, describe(r)
    r = run("serve", "--eval-every", "soon", env=env)
    assert r.returncode == 2 and "'soon'" in r.stderr, describe(r)
