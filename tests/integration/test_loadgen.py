"""`slipway loadgen` against a real `slipway serve` on the loopback (a small Fashion-MNIST
MLP served as two versions) and against a scripted Python server: the achieved rate, every
request accounted for, per-version counts equal to the server's /metrics across a version
swap in mid-run, feedback joined and the server's live accuracy equal to the report's,
the accuracy of one replay of the split equal to `slipway eval`'s (v1 and v2, batched),
the X-User-Id header spread over the users, timeouts, drops at --max-in-flight, a server
going away mid-run, and the exit codes of bad flags, an unreachable server and an
unknown model.

Run with /usr/bin/python3 -m pytest (python3-requests, python3-numpy)."""

import json
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import REPO, describe, fashion_subset
from serving import Server, free_port

MLP = REPO / "examples" / "fashion-mnist" / "mlp.yaml"
N_TRAIN, N_TEST = 1000, 300


@pytest.fixture(scope="module")
def trained(run, fashion_mnist, tmp_path_factory):
    """A small prepared dataset and the ONNX file of an MLP trained 40 steps on it."""
    base = tmp_path_factory.mktemp("loadgen")
    raw = base / "raw"
    fashion_subset(fashion_mnist, raw, {"train": N_TRAIN, "t10k": N_TEST})
    ds = base / "ds"
    p = run("prep", "--input", f"idx:{raw}", "--out", ds)
    assert p.returncode == 0, describe(p)
    p = run("train", "--model", MLP, "--data", ds, "--out", base / "run", "--steps", 40, "--threads", 1)
    assert p.returncode == 0, describe(p)
    onnx = base / "run" / "model.onnx"
    assert onnx.is_file()
    return {"ds": ds, "onnx": onnx, "base": base}


def loadgen(run, server_url, ds, *args, timeout=120):
    p = run("loadgen", "--server", server_url, "--data", ds, "--json", *args, timeout=timeout)
    assert p.returncode == 0, describe(p)
    return json.loads(p.stdout)


def accounted(rep):
    """Every arrival is sent or dropped; every request sent ended one way or another."""
    r = rep["requests"]
    assert r["scheduled"] == r["sent"] + r["dropped"], r
    ended = r["answered"] + sum(r["http_errors"].values()) + r["timeouts"] + r["connection_errors"] + r["other_errors"]
    assert r["sent"] == ended, r
    with_version = sum(v["requests"] for v in rep["versions"].values())
    assert with_version == r["answered"] + sum(r["http_errors"].values()), rep["versions"]
    lat = rep["latency_ms"]
    assert lat["scheduled"]["count"] == lat["service"]["count"] == with_version
    if with_version:
        # a request's latency from its scheduled time is never below its service time, so
        # neither is any order statistic of the one below the other's
        for q in ("p50", "p90", "p99", "p999", "max"):
            assert lat["scheduled"][q] >= lat["service"][q] - 1e-9, lat
        assert lat["service"]["p50"] <= lat["service"]["p99"] <= lat["service"]["max"]


def metric(text, name, **labels):
    """The value of one sample of a Prometheus exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + "{" + want + "}"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ---- against slipway serve -----------------------------------------------------------------


def test_rate_versions_feedback_and_metrics(slipway, run, trained, tmp_path):
    """4 s at 150 requests/s with feedback, the served version swapped from 2 to 1 after
    1.5 s: the report agrees with the server's own counters."""
    s = Server(slipway, tmp_path, "--model-file", f"fm={trained['onnx']}", "--model-file", f"fm={trained['onnx']}")
    try:
        rate, duration = 150, 4.0
        t0 = time.monotonic()
        proc = subprocess.Popen([slipway, "loadgen", "--server", s.url, "--model", "fm", "--data", str(trained["ds"]),
                                 "--rps", str(rate), "--duration", str(duration), "--feedback", "--feedback-delay-ms",
                                 "50", "--seed", "3", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert s.admin("/admin/models/fm/load", {"version": 1}).status_code == 200
        assert s.admin("/admin/models/fm/unload", {"version": 2}).status_code == 200
        swapped_at = time.monotonic() - t0
        out, err = proc.communicate(timeout=120)
        took = time.monotonic() - t0
        assert proc.returncode == 0, err
        rep = json.loads(out)
        accounted(rep)
        req = rep["requests"]
        # open loop: the arrivals span the whole duration, however fast the server is
        assert took >= duration * 0.95, took
        # a seeded Poisson count: within 5 standard deviations of rate * duration
        assert abs(req["scheduled"] - rate * duration) < 5 * (rate * duration) ** 0.5, req
        assert req["dropped"] == 0 and req["answered"] == req["sent"], req  # swaps lose nothing
        assert abs(rep["achieved_rps"] - rate) < 0.25 * rate, rep["achieved_rps"]
        # both served a share (unless a crowded machine held the swap back to the very end)
        assert set(rep["versions"]) == ({"1", "2"} if swapped_at < duration - 0.5 else {"2"} | set(rep["versions"]))
        # the server counted the same requests per version
        m = requests.get(s.url + "/metrics").text
        for v, st in rep["versions"].items():
            assert metric(m, "slipway_requests_total", model="fm", version=v, api="predict", code="200") == st["requests"]
        # every answered request's label was posted and joined to the version that answered
        fb = rep["feedback"]
        assert fb["posted"] == req["answered"] == fb["joined"], fb
        assert fb["unknown"] == fb["expired"] == fb["duplicate"] == fb["invalid"] == fb["failed"] == 0, fb
        assert fb["posts"] < fb["posted"], fb  # batched
        for v, st in rep["versions"].items():
            assert metric(m, "slipway_feedback_joined_total", model="fm", version=v) == st["examples"] == st["answered"]
            live = metric(m, "slipway_live_accuracy", model="fm", version=v)
            assert abs(live - st["accuracy"]) < 1e-8, (v, live, st)
        total = sum(st["correct"] for st in rep["versions"].values()) / sum(st["examples"] for st in rep["versions"].values())
        assert abs(rep["accuracy"] - total) < 1e-9  # ten significant digits
    finally:
        assert s.stop() == 0


def test_one_replay_of_the_split_gives_evals_accuracy(slipway, run, trained, tmp_path):
    p = run("eval", "--model", trained["onnx"], "--data", trained["ds"], "--json")
    assert p.returncode == 0, describe(p)
    want = json.loads(p.stdout)
    assert want["examples"] == N_TEST
    s = Server(slipway, tmp_path, "--model-file", f"fm={trained['onnx']}")
    try:
        for extra in ([], ["--protocol", "v2", "--batch", "7"]):
            rep = loadgen(run, s.url, trained["ds"], "--model", "fm", "--rps", "400", "--once", *extra)
            accounted(rep)
            batch = 7 if extra else 1
            assert rep["requests"]["sent"] == -(-N_TEST // batch) == rep["requests"]["answered"], rep["requests"]
            v = rep["versions"]["1"]
            assert v["examples"] == N_TEST
            assert v["correct"] == round(want["metrics"]["accuracy"] * N_TEST), (v, want["metrics"])
            assert abs(rep["accuracy"] - want["metrics"]["accuracy"]) < 1e-9
        # a version by number; the text report
        p = run("loadgen", "--server", s.url, "--model", "fm", "--version", "1", "--data", trained["ds"], "--rps", "200",
                "--requests", "20")
        assert p.returncode == 0, describe(p)
        assert re.search(r"requests\s+scheduled 20\s+sent 20\s+answered 20\s+dropped 0", p.stdout), p.stdout
        assert "version 1" in p.stdout and "latency ms" in p.stdout
        # a model the server does not serve: exit 1, saying so
        p = run("loadgen", "--server", s.url, "--model", "nosuch", "--data", trained["ds"], "--rps", "10", "--duration", "1")
        assert p.returncode == 1, describe(p)
        assert "does not serve model 'nosuch'" in p.stderr, p.stderr
        p = run("loadgen", "--server", s.url, "--model", "fm", "--version", "9", "--data", trained["ds"], "--rps", "10",
                "--duration", "1")
        assert p.returncode == 1, describe(p)
        # a split the dataset lacks
        p = run("loadgen", "--server", s.url, "--model", "fm", "--data", trained["ds"], "--split", "nope", "--rps", "10",
                "--duration", "1")
        assert p.returncode == 1 and "no split 'nope'" in p.stderr, describe(p)
    finally:
        assert s.stop() == 0


# ---- against a scripted server ---------------------------------------------------------------


class Scripted:
    """A small HTTP server speaking enough of slipway serve's API for the load generator,
    recording each request's X-User-Id; `slow` seconds of delay for every other predict,
    `inputs` values per example in its signature."""

    def __init__(self, slow=0.0, inputs=784):
        self.users, self.extra, self.count, self.feedback, self.lock = [], [], 0, 0, threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self, code, body, version="1"):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Model-Version", version)
                self.send_header("X-Request-Id", f"r{time.monotonic_ns()}")
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/v1/models/fake/metadata":
                    dims = [{"size": "-1"}, {"size": str(inputs)}]
                    sig = {"inputs": {"image": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": dims}}},
                           "outputs": {"scores": {"dtype": "DT_FLOAT"}}}
                    self.answer(200, {"metadata": {"signature_def": {"signature_def": {"serving_default": sig}}}})
                else:
                    self.answer(404, {"error": "no such model"}, "none")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/v1/models/fake:feedback":
                    with outer.lock:
                        outer.feedback += len(body["feedback"])
                    self.answer(200, {"joined": len(body["feedback"]), "unknown": 0, "expired": 0, "duplicate": 0,
                                      "invalid": 0}, "none")
                    return
                with outer.lock:
                    outer.users.append(self.headers.get("X-User-Id"))
                    outer.extra.append(self.headers.get("X-Test"))
                    outer.count += 1
                    n = outer.count
                if slow and n % 2 == 0:
                    time.sleep(slow)
                # class 0 for every instance; a 503 for every 10th request
                if n % 10 == 0:
                    self.answer(503, {"error": "busy"})
                else:
                    self.answer(200, {"predictions": [[1.0, 0.0] for _ in body["instances"]]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_users_header_and_http_errors(run, trained):
    fake = Scripted()
    try:
        rep = loadgen(run, fake.url, trained["ds"], "--model", "fake", "--rps", "100", "--requests", "150", "--users", "5",
                      "--header", "X-Test: yes")
    finally:
        fake.stop()
    accounted(rep)
    assert rep["requests"]["sent"] == 150 and rep["users"] == 5
    assert len(fake.users) == 150 and fake.extra == ["yes"] * 150
    assert all(u is not None and re.fullmatch(r"user-[0-4]", u) for u in fake.users), set(fake.users)
    counts = {u: fake.users.count(u) for u in set(fake.users)}
    assert len(counts) == 5 and min(counts.values()) >= 10, counts  # 30 expected per user
    assert rep["requests"]["http_errors"] == {"503": 15}, rep["requests"]
    assert rep["requests"]["answered"] == 135
    # the scripted server always says class 0: the accuracy is the share of label 0
    assert 0 <= rep["accuracy"] <= 1 and rep["versions"]["1"]["examples"] == 135


def test_timeouts_and_drops(run, trained):
    fake = Scripted(slow=1.0)
    try:
        rep = loadgen(run, fake.url, trained["ds"], "--model", "fake", "--rps", "40", "--requests", "40", "--timeout-ms",
                      "300", "--max-in-flight", "4")
    finally:
        fake.stop()
    accounted(rep)
    req = rep["requests"]
    # every other request the server answers takes a second: those time out; while four
    # wait, new arrivals are dropped rather than delayed
    assert req["timeouts"] > 0 and req["dropped"] > 0 and req["answered"] > 0, req
    assert req["connection_errors"] == 0, req
    assert rep["latency_ms"]["service"]["max"] < 1000, rep["latency_ms"]


def test_server_going_away(run, trained):
    fake = Scripted()
    threading.Timer(1.0, fake.stop).start()
    rep = loadgen(run, fake.url, trained["ds"], "--model", "fake", "--rps", "80", "--duration", "2.5", "--timeout-ms",
                  "2000", "--feedback")
    accounted(rep)
    req = rep["requests"]
    assert req["answered"] > 0 and req["connection_errors"] > 0, req
    fb = rep["feedback"]
    # labels of requests answered before it went were posted; those after fail, counted
    assert fb["posted"] == req["answered"] and fb["joined"] + fb["failed"] == fb["posted"], fb
    assert fb["joined"] == fake.feedback > 0, fb


def test_model_that_does_not_fit_the_dataset(run, trained):
    fake = Scripted(inputs=5)
    try:
        p = run("loadgen", "--server", fake.url, "--model", "fake", "--data", trained["ds"], "--rps", "10", "--duration", "1")
    finally:
        fake.stop()
    assert p.returncode == 1, describe(p)
    assert "takes 5 values per example" in p.stderr, p.stderr


# ---- exit codes -------------------------------------------------------------------------------


def test_unreachable_server(run, trained):
    url = f"http://127.0.0.1:{free_port()}"
    p = run("loadgen", "--server", url, "--model", "m", "--data", trained["ds"], "--rps", "10", "--duration", "1")
    assert p.returncode == 1, describe(p)
    assert "cannot reach the server" in p.stderr and url in p.stderr, p.stderr


@pytest.mark.parametrize("args, message", [
    ([], "--model, --data and --rps are required"),
    (["--model", "m", "--data", "d", "--rps", "10"], "one of --duration, --requests or --once"),
    (["--model", "m", "--data", "d", "--rps", "0", "--duration", "1"], "--rps: '0'"),
    (["--model", "m", "--data", "d", "--rps", "x", "--duration", "1"], "--rps: 'x'"),
    (["--model", "m", "--data", "d", "--rps", "1", "--duration", "-2"], "--duration: '-2'"),
    (["--model", "m", "--data", "d", "--rps", "1", "--once", "--requests", "3"], "exclude each other"),
    (["--model", "m", "--data", "d", "--rps", "1", "--once", "--protocol", "v3"], "--protocol: 'v3'"),
    (["--model", "m", "--data", "d", "--rps", "1", "--once", "--header", "nocolon"], "--header: 'nocolon'"),
    (["--model", "../m", "--data", "d", "--rps", "1", "--once"], "not a model name"),
    (["--model", "m", "--data", "d", "--rps", "1", "--once", "--server", "ftp://x"], "not an http"),
    (["--model", "m", "--data", "d", "--rps", "1", "--once", "--users", "0"], "--users: '0'"),
    (["--model", "m", "--data", "d", "--rps", "1", "--once", "--bogus"], "unknown or incomplete flag '--bogus'"),
    (["--model", "m", "--data", "d", "--rps", "1", "--once", "extra"], "unexpected argument 'extra'"),
])
def test_usage_errors(run, args, message):
    p = run("loadgen", *args)
    assert p.returncode == 2, describe(p)
    assert message in p.stderr, p.stderr
    assert p.stdout == ""
