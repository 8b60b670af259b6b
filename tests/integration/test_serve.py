"""slipway serve over real HTTP on the loopback: every endpoint of TensorFlow Serving's
REST API and of the v2 protocol, their errors, PyTorch-exported models giving PyTorch's
outputs, the admin token, feedback, 413, 429, SIGTERM drain and swaps under load.

Run with /usr/bin/python3 -m pytest (python3-requests, python3-torch)."""

import json
import math
import os
import stat
import struct
import threading
import time

import numpy as np
import pytest
import requests
import torch

from serving import MLP, EmbedConcat, Server, Tiny, assert_close, export


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(7)
    m = {"mlp": MLP(), "tiny1": Tiny(), "tiny2": Tiny(), "embed": EmbedConcat()}
    export(m["mlp"], (torch.randn(2, 20),), ["x"], d / "mlp.onnx")
    export(m["tiny1"], (torch.randn(2, 4),), ["x"], d / "tiny1.onnx")
    export(m["tiny2"], (torch.randn(2, 4),), ["x"], d / "tiny2.onnx")
    export(m["embed"], (torch.zeros(2, 1, dtype=torch.long), torch.randn(2, 3)), ["cat", "num"], d / "embed.onnx")
    for k in m:
        m[k].eval()
    return d, m


@pytest.fixture(scope="module")
def server(slipway, models, tmp_path_factory):
    d, _ = models
    s = Server(slipway, tmp_path_factory.mktemp("serve"), "--model-file", f"mlp={d / 'mlp.onnx'}",
               "--model-file", f"tiny={d / 'tiny1.onnx'}", "--model-file", f"tiny={d / 'tiny2.onnx'}",
               "--label", "tiny@production=1", "--label", "tiny@canary=2", "--model-file", f"embed={d / 'embed.onnx'}",
               "--max-body", "100000")
    yield s
    assert s.stop() == 0


def torch_out(model, *xs):
    with torch.no_grad():
        return model(*xs).numpy()


def post(server, path, body, **kw):
    return requests.post(server.url + path, data=json.dumps(body) if not isinstance(body, (bytes, str)) else body,
                         timeout=30, **kw)


def check_error(r, code):
    assert r.status_code == code, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    assert "/tmp" not in body["error"] and ".onnx" not in body["error"], body  # no paths
    assert r.headers["X-Request-Id"]
    return body["error"]


# ---- TF Serving REST ------------------------------------------------------------------

def test_predict_rows_and_columns_give_pytorch_outputs(server, models):
    _, m = models
    x = torch.randn(9, 20)
    want = torch_out(m["mlp"], x)
    r = post(server, "/v1/models/mlp:predict", {"instances": x.tolist()})
    assert r.status_code == 200, r.text
    assert r.headers["X-Model-Version"] == "1" and r.headers["X-Request-Id"]
    assert_close(r.json()["predictions"], want)
    r = post(server, "/v1/models/mlp/versions/1:predict", {"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    assert_close(r.json()["outputs"], want)
    r = post(server, "/v1/models/mlp:predict", {"inputs": {"x": x[:2].tolist()}})
    assert_close(r.json()["outputs"], want[:2])


def test_predict_values_are_exactly_what_predict_feeds(server, models, run, tmp_path):
    """The fast number path gives strtod's values: the server and `slipway predict` (jansson)
    answer with the same bits for awkward literals."""
    d, _ = models
    rows = [[1e-7, 0.30000000000000004, 123456789.123456789, -0.0], [1, -2, 3.4028235e38, 5e-324],
            [0.1, 2.5E+3, 1.4e-45, 12345678901234567890.5]]
    text = '{"instances": [' + ",".join("[" + ",".join(repr(v) if isinstance(v, float) else str(v) for v in row) + "]"
                                        for row in rows) + "]}"
    text = text.replace("2500.0", "2.5E+3")
    got = post(server, "/v1/models/tiny/versions/1:predict", text).json()["predictions"]
    inp = tmp_path / "in.json"
    inp.write_text(text)
    p = run("predict", "--model", d / "tiny1.onnx", "--input", inp)
    assert p.returncode == 0, p.stderr
    # both print nine significant digits at most, so as float32 they are the same bits
    want = json.loads(p.stdout)["predictions"]
    assert np.array_equal(np.asarray(got, dtype=np.float32), np.asarray(want, dtype=np.float32), equal_nan=True)


def test_nan_and_infinity_are_accepted(server, models):
    r = post(server, "/v1/models/tiny:predict", '{"instances": [[NaN, 1, 2, 3], [1, Infinity, -Infinity, 0]]}')
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 2 and all(v is None for v in preds[0])  # NaN in, NaN out: JSON null


def test_classify(server, models):
    _, m = models
    x = torch.randn(3, 4)
    r = post(server, "/v1/models/tiny:classify", {"examples": [{"x": row} for row in x.tolist()]})
    assert r.status_code == 200, r.text
    want = torch.softmax(torch.from_numpy(torch_out(m["tiny1"], x)), 1).numpy()
    res = r.json()["results"]
    assert [[c for c, _ in row] for row in res] == [["0", "1", "2"]] * 3
    assert_close([[p for _, p in row] for row in res], want)


def test_multi_input_model_rows_and_columns(server, models):
    _, m = models
    cat = torch.tensor([[1], [6], [0]])
    num = torch.randn(3, 3)
    want = torch_out(m["embed"], cat, num)
    inst = [{"cat": c, "num": n} for c, n in zip(cat.tolist(), num.tolist())]
    r = post(server, "/v1/models/embed:predict", {"instances": inst})
    assert r.status_code == 200, r.text
    assert_close(r.json()["predictions"], want)
    r = post(server, "/v1/models/embed:predict", {"inputs": {"cat": cat.tolist(), "num": num.tolist()}})
    assert_close(r.json()["outputs"], want)
    check_error(post(server, "/v1/models/embed:predict", {"instances": [{"cat": [1.5], "num": [1, 2, 3]}]}), 400)


def test_status_metadata_and_labels(server):
    r = requests.get(server.url + "/v1/models/tiny")
    assert r.status_code == 200
    # production is labelled 1, so the default policy serves 1 although 2 is the latest
    assert r.json() == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                  "status": {"error_code": "OK", "error_message": ""}}]}
    assert requests.get(server.url + "/v1/models/tiny/labels/production").json()["model_version_status"][0]["version"] == "1"
    assert requests.get(server.url + "/v1/models/tiny/versions/1").status_code == 200
    check_error(requests.get(server.url + "/v1/models/tiny/labels/canary"), 404)  # version 2 is not loaded
    check_error(requests.get(server.url + "/v1/models/tiny/labels/nosuch"), 404)
    meta = requests.get(server.url + "/v1/models/mlp/metadata").json()
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert meta["model_spec"] == {"name": "mlp", "signature_name": "", "version": "1"}
    assert sig["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["x"]["tensor_shape"]["dim"]] == ["-1", "20"]
    assert [d["size"] for d in sig["outputs"]["out"]["tensor_shape"]["dim"]] == ["-1", "5"]
    r = post(server, "/v1/models/tiny/labels/production:predict", {"instances": [[1, 2, 3, 4]]})
    assert r.status_code == 200 and r.headers["X-Model-Version"] == "1"


# ---- v2 -----------------------------------------------------------------------------------

def test_v2_health_server_and_model_metadata(server):
    assert requests.get(server.url + "/v2/health/live").json() == {"live": True}
    assert requests.get(server.url + "/v2/health/ready").json() == {"ready": True}
    meta = requests.get(server.url + "/v2").json()
    assert meta["name"] == "slipway" and "binary_tensor_data" in meta["extensions"]
    m = requests.get(server.url + "/v2/models/embed").json()
    assert m["name"] == "embed" and m["versions"] == ["1"] and m["platform"] == "onnx"
    assert m["inputs"] == [{"name": "cat", "datatype": "INT64", "shape": [-1, 1]},
                           {"name": "num", "datatype": "FP32", "shape": [-1, 3]}]
    assert m["outputs"] == [{"name": "out", "datatype": "FP32", "shape": [-1, 2]}]
    assert requests.get(server.url + "/v2/models/mlp/versions/1").json()["versions"] == ["1"]
    assert requests.get(server.url + "/v2/models/mlp/ready").json() == {"name": "mlp", "ready": True}
    assert requests.get(server.url + "/v2/models/tiny/versions/1/ready").json()["ready"] is True
    assert requests.get(server.url + "/v2/models/tiny/versions/2/ready").json()["ready"] is False
    check_error(requests.get(server.url + "/v2/models/nosuch/ready"), 404)


def test_v2_infer_json_and_binary(server, models):
    _, m = models
    x = torch.randn(5, 20)
    want = torch_out(m["mlp"], x)
    body = {"id": "req-1", "inputs": [{"name": "x", "shape": [5, 20], "datatype": "FP32", "data": x.flatten().tolist()}]}
    r = post(server, "/v2/models/mlp/infer", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_name"] == "mlp" and out["model_version"] == "1" and out["id"] == "req-1"
    assert out["outputs"][0]["name"] == "out" and out["outputs"][0]["shape"] == [5, 5]
    assert out["outputs"][0]["datatype"] == "FP32"
    assert_close(np.reshape(out["outputs"][0]["data"], (5, 5)), want)
    # nested data and FP64 are accepted too
    body["inputs"][0].update(datatype="FP64", data=x.tolist())
    assert_close(np.reshape(post(server, "/v2/models/mlp/versions/1/infer", body).json()["outputs"][0]["data"], (5, 5)), want)
    # binary in and out (Triton's binary tensor extension)
    raw = x.numpy().astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "x", "shape": [5, 20], "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": "out", "parameters": {"binary_data": True}}]}).encode()
    r = requests.post(server.url + "/v2/models/mlp/infer", data=header + raw,
                      headers={"Inference-Header-Content-Length": str(len(header)),
                               "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    hl = int(r.headers["Inference-Header-Content-Length"])
    head = json.loads(r.content[:hl])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 5 * 5 * 4 and "data" not in head["outputs"][0]
    assert_close(np.frombuffer(r.content[hl:], dtype="<f4").reshape(5, 5), want)
    # INT64 binary for the embedding input, JSON for the other
    cat, num = torch.tensor([[3], [4]]), torch.randn(2, 3)
    craw = cat.numpy().astype("<i8").tobytes()
    header = json.dumps({"inputs": [{"name": "cat", "shape": [2, 1], "datatype": "INT64",
                                     "parameters": {"binary_data_size": len(craw)}},
                                    {"name": "num", "shape": [2, 3], "datatype": "FP32", "data": num.flatten().tolist()}]}).encode()
    r = requests.post(server.url + "/v2/models/embed/infer", data=header + craw,
                      headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200, r.text
    assert_close(np.reshape(r.json()["outputs"][0]["data"], (2, 2)), torch_out(m["embed"], cat, num))


def test_v2_infer_errors(server):
    ok = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
    check_error(post(server, "/v2/models/tiny/infer", {"inputs": [dict(ok, name="y")]}), 400)
    check_error(post(server, "/v2/models/tiny/infer", {"inputs": [dict(ok, shape=[1, 5])]}), 400)
    check_error(post(server, "/v2/models/tiny/infer", {"inputs": [dict(ok, data=[1, 2, 3])]}), 400)
    check_error(post(server, "/v2/models/tiny/infer", {"inputs": [dict(ok, datatype="BYTES")]}), 400)
    check_error(post(server, "/v2/models/tiny/infer", {"inputs": [ok], "outputs": [{"name": "nope"}]}), 400)
    check_error(post(server, "/v2/models/embed/infer", {"inputs": [dict(ok, name="num", shape=[1, 3], data=[1, 2, 3])]}), 400)
    head = json.dumps({"inputs": [dict(ok, parameters={"binary_data_size": 16})]}).encode()
    cut = requests.post(server.url + "/v2/models/tiny/infer", data=head + b"\0" * 8,
                        headers={"Inference-Header-Content-Length": str(len(head))})
    check_error(cut, 400)
    check_error(requests.post(server.url + "/v2/models/tiny/infer", data=head,
                              headers={"Inference-Header-Content-Length": "99999"}), 400)
    check_error(post(server, "/v2/models/nosuch/infer", {"inputs": [ok]}), 404)
    check_error(post(server, "/v2/models/tiny/versions/9/infer", {"inputs": [ok]}), 404)


# ---- errors ----------------------------------------------------------------------------------

def test_errors(server):
    good = {"instances": [[1, 2, 3, 4]]}
    assert "not served" in check_error(post(server, "/v1/models/nosuch:predict", good), 404)
    check_error(post(server, "/v1/models/bad$name:predict", good), 400)
    check_error(post(server, "/v1/models/..:predict", good), 400)
    check_error(post(server, "/v1/models/tiny/versions/x:predict", good), 400)
    check_error(post(server, "/v1/models/tiny/versions/7:predict", good), 404)
    msg = check_error(post(server, "/v1/models/tiny:predict", '{"instances": [[1, 2,, 3]]}'), 400)
    assert "line 1 column" in msg
    assert "needs 4 values, got 3" in check_error(post(server, "/v1/models/tiny:predict", {"instances": [[1, 2, 3]]}), 400)
    check_error(post(server, "/v1/models/tiny:predict", {"instances": [[1, 2, 3, 4, 5]]}), 400)
    check_error(post(server, "/v1/models/tiny:predict", {"instances": [["a", 2, 3, 4]]}), 400)
    check_error(post(server, "/v1/models/tiny:predict", {"instances": []}), 400)
    check_error(post(server, "/v1/models/tiny:predict", {"neither": 1}), 400)
    check_error(post(server, "/v1/models/tiny:predict", {"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]}), 400)
    check_error(post(server, "/v1/models/tiny:predict", '{"instances": [[1, 2, 3, 1e999]]}'), 400)
    check_error(post(server, "/v1/models/tiny:regress", good), 404)
    check_error(requests.get(server.url + "/v1/models/tiny:predict"), 405)
    check_error(requests.post(server.url + "/v1/models/tiny"), 405)
    check_error(requests.get(server.url + "/nowhere"), 404)
    check_error(requests.get(server.url + "/v1/models/tiny/extra/path"), 404)
    # 413: declared too large, and sent chunked past the limit
    check_error(post(server, "/v1/models/tiny:predict", b"[" + b" " * 100001 + b"]"), 413)
    chunks = (b" " * 10000 for _ in range(20))
    check_error(requests.post(server.url + "/v1/models/tiny:predict", data=chunks), 413)
    # the server is fine afterwards
    assert post(server, "/v1/models/tiny:predict", good).status_code == 200


def test_request_id_is_echoed_or_made(server):
    r1 = post(server, "/v1/models/tiny:predict", {"instances": [[1, 2, 3, 4]]})
    r2 = post(server, "/v1/models/tiny:predict", {"instances": [[1, 2, 3, 4]]})
    assert r1.headers["X-Request-Id"] != r2.headers["X-Request-Id"]
    r = post(server, "/v1/models/tiny:predict", {"instances": [[1, 2, 3, 4]]}, headers={"X-Request-Id": "client-42"})
    assert r.headers["X-Request-Id"] == "client-42"
    r = requests.get(server.url + "/v2/health/live")
    assert r.headers["X-Request-Id"] and r.headers["X-Model-Version"] == "none"


# ---- feedback and metrics ----------------------------------------------------------------------

def test_feedback_joins_labels_and_gives_live_accuracy(server, models):
    _, m = models
    x = torch.randn(4, 20)
    pred = torch_out(m["mlp"], x).argmax(1)
    r = post(server, "/v1/models/mlp:predict", {"instances": x.tolist()}, headers={"X-Request-Id": "fb-batch"})
    assert r.status_code == 200
    # three rows right, one wrong
    labels = [int(p) for p in pred]
    labels[3] = (labels[3] + 1) % 5
    single = post(server, "/v1/models/mlp:predict", {"instances": x[:1].tolist()})
    body = {"feedback": [{"id": "fb-batch", "label": labels},
                         {"id": single.headers["X-Request-Id"], "label": int(pred[0])},
                         {"id": "never-issued", "label": 1}]}
    r = post(server, "/v1/models/mlp:feedback", body)
    assert r.status_code == 200, r.text
    assert r.json() == {"joined": 5, "unknown": 1, "expired": 0, "duplicate": 0, "invalid": 0}
    again = post(server, "/v1/models/mlp:feedback", {"feedback": [{"id": "fb-batch", "label": labels[:1]}]}).json()
    assert again["duplicate"] == 1 and again["joined"] == 0
    metrics = requests.get(server.url + "/metrics").text
    assert 'slipway_live_accuracy{model="mlp",version="1"} 0.8' in metrics
    assert 'slipway_feedback_joined_total{model="mlp",version="1"} 5' in metrics
    check_error(post(server, "/v1/models/mlp:feedback", {"feedback": [{"label": 1}]}), 400)
    check_error(post(server, "/v1/models/nosuch:feedback", {"feedback": []}), 404)


def test_metrics_exposition(server):
    post(server, "/v1/models/tiny:predict", {"instances": [[1, 2, 3, 4]]})
    text = requests.get(server.url + "/metrics").text
    for line in ("# TYPE slipway_requests_total counter", "# TYPE slipway_request_duration_seconds histogram",
                 "# TYPE slipway_queue_duration_seconds histogram", "# TYPE slipway_compute_duration_seconds histogram",
                 "# TYPE slipway_batch_size histogram", 'slipway_model_loaded{model="tiny",version="1",default="true"} 1',
                 "slipway_ready 1"):
        assert line in text, line
    n = [float(line.split()[-1]) for line in text.splitlines()
         if line.startswith('slipway_requests_total{model="tiny",version="1",api="predict",code="200"}')]
    assert n and n[0] >= 1
    mem = [float(line.split()[-1]) for line in text.splitlines() if line.startswith('slipway_model_memory_bytes{model="mlp"')]
    assert mem and mem[0] > 20 * 32 * 4  # at least the first layer's weights
    assert 'le="+Inf"' in text


# ---- admin ------------------------------------------------------------------------------------------

def test_admin_needs_the_token_and_loads_and_unloads(server):
    token_file = server.home / "admin.token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    for tok in (None, "wrong-token-of-some-length-000000"):
        r = server.admin("/admin/models/tiny/load", {"version": 2}, token=tok)
        check_error(r, 401)
        assert r.headers["WWW-Authenticate"] == "Bearer"
    check_error(server.admin("/admin/reload", token=None), 401)
    check_error(server.admin("/admin/rollouts", {}, token=None), 401)
    r = server.admin("/admin/models/tiny/load", {"version": 2})
    assert r.status_code == 200, r.text
    assert requests.get(server.url + "/v1/models/tiny/labels/canary").status_code == 200
    assert [v["version"] for v in requests.get(server.url + "/v1/models/tiny").json()["model_version_status"]] == ["1", "2"]
    # the production version stays the default while 2 is loaded beside it
    assert post(server, "/v1/models/tiny:predict", {"instances": [[1, 2, 3, 4]]}).headers["X-Model-Version"] == "1"
    check_error(server.admin("/admin/models/tiny/load", {"version": 9}), 404)
    check_error(server.admin("/admin/models/tiny/load", {"v": 1}), 400)
    assert server.admin("/admin/models/tiny/unload", {"version": 2}).status_code == 200
    check_error(server.admin("/admin/models/tiny/unload", {"version": 2}), 404)
    assert requests.get(server.url + "/v2/models/tiny/versions/2/ready").json()["ready"] is False
    assert server.admin("/admin/reload").json() == {"reloaded": True}


def test_admin_token_file(slipway, models, tmp_path):
    d, _ = models
    tf = tmp_path / "token"
    tf.write_text("a-token-from-a-file-0123456789\n")
    s = Server(slipway, tmp_path, "--model-file", f"tiny={d / 'tiny1.onnx'}", "--admin-token-file", tf,
               token="a-token-from-a-file-0123456789")
    try:
        assert not (s.home / "admin.token").exists()
        assert s.admin("/admin/reload").status_code == 200
        check_error(s.admin("/admin/reload", token="x" * 30), 401)
    finally:
        assert s.stop() == 0


def test_bad_command_lines(run, models, tmp_path):
    d, _ = models
    r = run("serve", "--model-file", f"bad/name={d / 'tiny1.onnx'}")
    assert r.returncode == 2 and "model name" in r.stderr
    r = run("serve", "--model-file", f"tiny={tmp_path / 'missing.onnx'}")
    assert r.returncode == 1 and "missing.onnx" in r.stderr
    r = run("serve", "--model-file", f"tiny={d / 'tiny1.onnx'}", "--registry", tmp_path / "registry.db")
    assert r.returncode == 2 and "do not mix" in r.stderr
    r = run("serve", "--label", "tiny@production=1")
    assert r.returncode == 2
    r = run("serve", "--model", "bad/name")
    assert r.returncode == 2
    r = run("serve", "--model-file", f"tiny={d / 'tiny1.onnx'}", "--max-batch", "0")
    assert r.returncode == 2
    r = run("serve", "--model-file", f"tiny={d / 'tiny1.onnx'}", "--listen", "nonsense")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr
    bad = tmp_path / "short"
    bad.write_text("short\n")
    r = run("serve", "--model-file", f"tiny={d / 'tiny1.onnx'}", "--admin-token-file", bad)
    assert r.returncode == 2 and "16 characters" in r.stderr


# ---- queue, drain, swaps ----------------------------------------------------------------------------

def test_full_queue_answers_429_at_once(slipway, models, tmp_path):
    d, _ = models
    # a batch waits 400 ms to fill; a queue of one is full while it waits
    s = Server(slipway, tmp_path, "--model-file", f"tiny={d / 'tiny1.onnx'}", "--max-batch", "8",
               "--batch-timeout-us", "400000", "--max-queue", "1")
    try:
        first = {}
        t = threading.Thread(target=lambda: first.update(r=post(s, "/v1/models/tiny:predict", {"instances": [[1, 2, 3, 4]]})))
        t.start()
        time.sleep(0.1)
        t0 = time.time()
        r = post(s, "/v1/models/tiny:predict", {"instances": [[1, 2, 3, 4]]})
        took = time.time() - t0
        check_error(r, 429)
        assert took < 0.25, took  # at once, not after the batch
        t.join()
        assert first["r"].status_code == 200
        assert 'code="429"' in requests.get(s.url + "/metrics").text
    finally:
        assert s.stop() == 0


def test_full_batch_does_not_wait_for_its_timeout(slipway, models, tmp_path):
    d, _ = models
    # a batch may wait 3 s to fill, but a full one runs at once: the compute thread is
    # woken by the job that fills it (and only by that one and the first)
    s = Server(slipway, tmp_path, "--model-file", f"tiny={d / 'tiny1.onnx'}", "--max-batch", "4",
               "--batch-timeout-us", "3000000")
    try:
        post(s, "/v1/models/tiny:predict", {"instances": [[1, 2, 3, 4]] * 4})  # a full batch alone
        results = []
        threads = [threading.Thread(target=lambda: results.append(post(s, "/v1/models/tiny:predict",
                                                                        {"instances": [[1, 2, 3, 4]]})))
                   for _ in range(4)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.time() - t0
        assert [r.status_code for r in results] == [200] * 4
        assert took < 2.0, took
    finally:
        assert s.stop() == 0


def test_sigterm_drains_requests_in_flight(slipway, models, tmp_path):
    d, _ = models
    s = Server(slipway, tmp_path, "--model-file", f"tiny={d / 'tiny1.onnx'}", "--max-batch", "8",
               "--batch-timeout-us", "500000")
    results = []
    threads = [threading.Thread(target=lambda: results.append(post(s, "/v1/models/tiny:predict", {"instances": [[1, 2, 3, 4]]})))
               for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.15)  # the requests wait in the batcher
    t0 = time.time()
    os.kill(s.proc.pid, 15)
    for t in threads:
        t.join()
    assert s.proc.wait(timeout=30) == 0, s.logs()
    assert [r.status_code for r in results] == [200] * 3
    assert time.time() - t0 < 10
    with pytest.raises(requests.ConnectionError):
        requests.get(s.url + "/v2/health/live", timeout=2)
    assert "drained" in s.logs()
    s.stop()


def swap_under_load(slipway, d, m, tmp_path, seconds, swaps, clients=4, mode="admin", run=None):
    """Clients predict without pause while versions 1 and 2 (different weights) take turns,
    by the admin API (load the other, unload the current) or, mode="alias", by moving the
    registry's production alias (the server follows within --poll). Every answer must be
    200, come from a version that was serving while the request was in flight, and be that
    version's output."""
    if mode == "alias":
        home = tmp_path / "home"
        env = {"SLIPWAY_HOME": str(home)}
        for k in ("tiny1", "tiny2"):
            r = run("registry", "register", "--onnx", d / f"{k}.onnx", "--name", "tiny", env={**os.environ, **env})
            assert r.returncode == 0, r.stderr
        r = run("registry", "alias", "tiny:1", "production", "--why", "start", env={**os.environ, **env})
        assert r.returncode == 0, r.stderr
        s = Server(slipway, tmp_path, "--poll", "0.2")
    else:
        s = Server(slipway, tmp_path, "--model-file", f"tiny={d / 'tiny1.onnx'}", "--model-file",
                   f"tiny={d / 'tiny2.onnx'}", "--label", "tiny@production=1")
    x = [[0.5, -1.0, 2.0, 0.25]]
    want = {"1": torch_out(m["tiny1"], torch.tensor(x)), "2": torch_out(m["tiny2"], torch.tensor(x))}
    live = {"1": [[0.0, None]], "2": []}  # when each version was serving, as far as we know
    stop = threading.Event()
    answers, failures = [], []

    def client():
        sess = requests.Session()
        while not stop.is_set():
            t0 = time.time()
            try:
                r = sess.post(s.url + "/v1/models/tiny:predict", data=json.dumps({"instances": x}), timeout=30)
            except requests.RequestException as e:
                failures.append(repr(e))
                continue
            answers.append((t0, time.time(), r.status_code, r.headers.get("X-Model-Version"), r.content))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        current = "1"
        gap = seconds / (swaps + 1)
        for _ in range(swaps):
            time.sleep(gap)
            other = "2" if current == "1" else "1"
            t_move = time.time()
            if mode == "alias":
                r = run("registry", "alias", f"tiny:{other}", "production", "--why", "swap",
                        env={**os.environ, "SLIPWAY_HOME": str(s.home)})
                assert r.returncode == 0, r.stderr
                live[other].append([t_move, None])
                # the old version serves until the server has followed (within --poll and a
                # load): allow it a generous 3 s
                live[current][-1][1] = time.time() + 3
            else:
                r = s.admin("/admin/models/tiny/load", {"version": int(other)})
                assert r.status_code == 200, r.text
                live[other].append([t_move, None])
                r = s.admin("/admin/models/tiny/unload", {"version": int(current)})
                assert r.status_code == 200, r.text
                live[current][-1][1] = time.time()
            current = other
        time.sleep(gap)
    finally:
        stop.set()
        for t in threads:
            t.join()
        code = s.stop()
    assert code == 0
    assert not failures, failures[:5]
    assert len(answers) > swaps * 10, len(answers)
    bad = [a for a in answers if a[2] != 200]
    assert not bad, bad[:5]
    seen = set()
    for t0, t1, _, ver, body in answers:
        assert ver in want, ver
        seen.add(ver)
        assert any(start <= t1 and (end is None or end >= t0) for start, end in live[ver]), (t0, t1, ver, live)
        assert_close(json.loads(body)["predictions"], want[ver])
    assert seen == {"1", "2"}
    if mode == "alias":
        # the server ended on the version the alias points at
        assert ver == current or any(a[3] == current for a in answers[-20:])
    return len(answers)


def test_swaps_under_load_fail_no_request(slipway, models, tmp_path):
    d, m = models
    swap_under_load(slipway, d, m, tmp_path, seconds=5, swaps=5)


def test_alias_moves_under_load_fail_no_request(slipway, run, models, tmp_path):
    d, m = models
    swap_under_load(slipway, d, m, tmp_path, seconds=5, swaps=5, mode="alias", run=run)


# ---- the registry as the catalog -------------------------------------------------------------------

def test_registry_policy_aliases_and_model_flag(slipway, run, models, tmp_path):
    d, m = models
    env = {**os.environ, "SLIPWAY_HOME": str(tmp_path / "home")}
    for k in ("tiny1", "tiny2"):
        assert run("registry", "register", "--onnx", d / f"{k}.onnx", "--name", "tiny", env=env).returncode == 0
    assert run("registry", "register", "--onnx", d / "mlp.onnx", "--name", "mlp", env=env).returncode == 0
    x = [[1.0, 2.0, 3.0, 4.0]]
    s = Server(slipway, tmp_path, "--poll", "0.1")
    try:
        # no production alias: the latest version
        r = post(s, "/v1/models/tiny:predict", {"instances": x})
        assert r.headers["X-Model-Version"] == "2"
        assert_close(r.json()["predictions"], torch_out(m["tiny2"], torch.tensor(x)))
        assert requests.get(s.url + "/v2/models/mlp").json()["versions"] == ["1"]
        # the production alias wins, and the server follows it without a restart
        assert run("registry", "alias", "tiny:1", "production", "--why", "t", env=env).returncode == 0
        until = time.time() + 10
        while time.time() < until and post(s, "/v1/models/tiny:predict", {"instances": x}).headers["X-Model-Version"] != "1":
            time.sleep(0.05)
        r = post(s, "/v1/models/tiny/labels/production:predict", {"instances": x})
        assert r.status_code == 200 and r.headers["X-Model-Version"] == "1"
        assert_close(r.json()["predictions"], torch_out(m["tiny1"], torch.tensor(x)))
        assert [v["version"] for v in requests.get(s.url + "/v1/models/tiny").json()["model_version_status"]] == ["1"]
        # a new registration is picked up too
        assert run("registry", "register", "--onnx", d / "embed.onnx", "--name", "embed", env=env).returncode == 0
        until = time.time() + 10
        while time.time() < until and requests.get(s.url + "/v2/models/embed").status_code != 200:
            time.sleep(0.05)
        assert requests.get(s.url + "/v2/models/embed").status_code == 200
    finally:
        assert s.stop() == 0
    # --model narrows: one model, at a version or an alias
    s = Server(slipway, tmp_path, "--model", "tiny:2")
    try:
        assert post(s, "/v1/models/tiny:predict", {"instances": x}).headers["X-Model-Version"] == "2"
        check_error(post(s, "/v1/models/mlp:predict", {"instances": [[0] * 20]}), 404)
    finally:
        assert s.stop() == 0
    s = Server(slipway, tmp_path, "--model", "tiny@production", "--model", "mlp")
    try:
        assert post(s, "/v1/models/tiny:predict", {"instances": x}).headers["X-Model-Version"] == "1"
        assert requests.get(s.url + "/v2/models/mlp/ready").json()["ready"] is True
    finally:
        assert s.stop() == 0
