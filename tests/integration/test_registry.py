"""`slipway registry` on both backends (SQLite and a real PostgreSQL on loopback): every
command with --json, the lineage round trip, gates refusing a worse model and promoting a
better one, 8 processes registering, evaluating and promoting at once, kill -9 during
register, a tampered artifact, and a PyTorch model exported with torch.onnx.export
registered with --onnx and promoted through the same gates.

Small on purpose: Fashion-MNIST cut to 6,000 training and 1,000 test images, the MLP
trained 50 steps (about 77% accuracy) and 300 steps (about 83%).
Run with /usr/bin/python3 -m pytest (python3-torch, PostgreSQL 15)."""

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import torch  # python3-torch, installed by scripts/install-deps: a missing one fails

from conftest import REPO, describe, fashion_subset, postgres_database, run_slipway

MLP = REPO / "examples" / "fashion-mnist" / "mlp.yaml"
N_TRAIN, N_TEST = 6000, 1000

GATE = """metric: accuracy
gate:
  split: test
  min: {accuracy: 0.80}
  max_drop: {accuracy: 0.0}
"""


# ---- data and runs, once per session -----------------------------------------------------


@pytest.fixture(scope="module")
def small(slipway, fashion_mnist, tmp_path_factory):
    """A small prepared dataset, its raw arrays, and runs of 50 and 300 steps."""
    base = tmp_path_factory.mktemp("registry")
    raw = base / "raw"
    counts = {"train": N_TRAIN, "t10k": N_TEST}
    arrays = {kind: (x[:counts[kind]].reshape(counts[kind], -1).astype(np.float32), y[:counts[kind]].astype(np.int64))
              for kind, (x, y) in fashion_subset(fashion_mnist, raw, counts).items()}
    ds = base / "ds"
    r = run_slipway(slipway, "prep", "--input", f"idx:{raw}", "--out", ds)
    assert r.returncode == 0, describe(r)
    runs = {}
    for steps in (50, 300):
        d = base / f"run{steps}"
        r = run_slipway(slipway, "train", "--model", MLP, "--data", ds, "--out", d, "--steps", steps, "--threads", 1)
        assert r.returncode == 0, describe(r)
        runs[steps] = d
    policy = base / "policy.yaml"
    policy.write_text(GATE)
    return {"ds": ds, "runs": runs, "arrays": arrays, "policy": policy, "base": base}


class Store:
    """One fresh registry: a SQLite file or a new PostgreSQL database, and its artifacts."""

    def __init__(self, kind, url, home):
        self.kind, self.url, self.home = kind, url, Path(home)

    @property
    def flags(self):
        return ["--registry", self.url, "--home", self.home]

    def sql(self, query):
        """Rows of a query, read straight from the store (not through slipway)."""
        if self.kind == "sqlite":
            con = sqlite3.connect(self.url)
            try:
                return [tuple(None if v is None else str(v) for v in row) for row in con.execute(query)]
            finally:
                con.close()
        r = subprocess.run(["psql", "-At", "-F", "\t", "-d", self.url, "-c", query], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return [tuple(None if v == "" else v for v in line.split("\t")) for line in r.stdout.splitlines() if line]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return Store("sqlite", str(tmp_path / "registry.db"), tmp_path / "home")
    base = request.getfixturevalue("postgres_server")
    return Store("postgres", postgres_database(base, "t" + uuid.uuid4().hex[:12]), tmp_path / "home")


def reg(run, store, *args, **kw):
    return run("registry", *args, *store.flags, **kw)


def reg_json(run, store, *args):
    r = reg(run, store, *args, "--json")
    assert r.returncode == 0, describe(r)
    return json.loads(r.stdout)


# ---- the tests ---------------------------------------------------------------------------


def test_lineage_round_trip(run, small, store):
    """prep -> train -> register -> lineage gives back the exact manifest SHA-256, run config
    and code version; lineage --dataset finds the version."""
    rd = small["runs"][300]
    run_json = json.loads((rd / "run.json").read_text())
    import hashlib

    manifest_sha = hashlib.sha256((small["ds"] / "manifest.json").read_bytes()).hexdigest()
    assert run_json["dataset"]["manifest_sha256"] == manifest_sha
    v = reg_json(run, store, "register", "--run", rd, "--name", "fm", "--who", "alice")
    assert v["ref"] == "fm:1" and v["version"] == 1 and v["state"] == "registered" and v["created_by"] == "alice"
    onnx_sha = hashlib.sha256((rd / "model.onnx").read_bytes()).hexdigest()
    assert v["artifact"]["sha256"] == onnx_sha
    art = Path(v["artifact"]["path"])
    assert art == store.home / "artifacts" / "sha256" / onnx_sha[:2] / onnx_sha
    assert art.read_bytes() == (rd / "model.onnx").read_bytes()

    lin = reg_json(run, store, "lineage", "fm:1")
    assert lin["dataset"]["manifest_sha256"] == manifest_sha
    assert Path(lin["dataset"]["path"]) == small["ds"].resolve()
    assert lin["run"]["config"] == run_json["model"]
    assert lin["run"]["config_sha256"] == run_json["config_sha256"]
    assert lin["run"]["hyperparameters"] == run_json["hyperparameters"]
    assert lin["run"]["code_version"] == run_json["code_version"]
    assert lin["run"]["host"] == run_json["host"]
    assert lin["run"]["params_sha256"] == run_json["params_sha256"]
    assert lin["run"]["checkpoint"].endswith("checkpoints/step-00000300")
    assert Path(lin["run"]["checkpoint"]).is_dir()
    text = reg(run, store, "lineage", "fm:1")
    assert text.returncode == 0 and manifest_sha in text.stdout and run_json["code_version"] in text.stdout

    down = reg_json(run, store, "lineage", "--dataset", manifest_sha)
    assert [x["ref"] for x in down["versions"]] == ["fm:1"]
    assert Path(down["versions"][0]["run_path"]) == rd.resolve()
    r = reg(run, store, "lineage", "--dataset", "0" * 64)
    assert r.returncode == 1 and "no dataset" in r.stderr

    # list and show, text and JSON
    lst = reg_json(run, store, "list")
    assert [(x["name"], x["version"], x["state"]) for x in lst] == [("fm", 1, "registered")]
    r = reg(run, store, "list")
    assert r.returncode == 0 and "fm:1" in r.stdout
    show = reg_json(run, store, "show", "fm:1")
    assert show["dataset"]["manifest_sha256"] == manifest_sha
    assert [e["action"] for e in show["events"]] == ["register"]
    assert show["events"][0]["who"] == "alice"
    r = reg(run, store, "show", "fm:1")
    assert r.returncode == 0 and "registered" in r.stdout and onnx_sha in r.stdout


def test_gate_refuses_worse_and_promotes_better(run, small, store):
    runs, pol = small["runs"], small["policy"]
    assert reg_json(run, store, "register", "--run", runs[50], "--name", "fm")["version"] == 1
    assert reg_json(run, store, "register", "--run", runs[300], "--name", "fm")["version"] == 2
    assert reg_json(run, store, "register", "--run", runs[50], "--name", "fm")["version"] == 3

    # no baseline yet: value thresholds only; 50 steps is below min accuracy 0.80
    r = reg(run, store, "promote", "fm:1", "--policy", pol, "--why", "first try")
    assert r.returncode == 3, describe(r)
    assert "refused fm:1" in r.stdout and "accuracy 0.7" in r.stdout and "< min 0.8" in r.stdout
    # the better one passes and becomes production
    r = reg(run, store, "promote", "fm:2", "--policy", pol, "--why", "300 steps", "--json")
    assert r.returncode == 0, describe(r)
    res = json.loads(r.stdout)
    assert res["passed"] and res["state"] == "production" and res["baseline"] is None
    assert res["candidate_eval"]["metrics"]["accuracy"] > 0.8
    # against a baseline now: the worse one fails both the value and the change threshold
    r = reg(run, store, "promote", "fm:3", "--policy", pol, "--json")
    assert r.returncode == 3, describe(r)
    res = json.loads(r.stdout)
    assert not res["passed"] and res["baseline"] == "fm:2" and res["state"] == "rejected"
    failed = res["decision"]["failed"]
    assert any("min" in f for f in failed) and any("max_drop" in f or "drop" in f for f in failed), failed
    assert res["baseline_eval"]["metrics"]["accuracy"] == pytest.approx(res["candidate_eval"]["metrics"]["accuracy"] + 0.064, abs=0.03)
    # a gate with change thresholds only refuses it too; one with no threshold refuses blindly
    only_drop = small["base"] / f"drop-{store.kind}.yaml"
    only_drop.write_text("gate:\n  max_drop: {accuracy: 0.01}\n")
    r = reg(run, store, "promote", "fm:3", "--policy", only_drop)
    assert r.returncode == 3 and "drop" in r.stdout, describe(r)
    empty = small["base"] / f"empty-{store.kind}.yaml"
    empty.write_text("metric: accuracy\n")
    r = reg(run, store, "promote", "fm:3", "--policy", empty)
    assert r.returncode == 3 and "blindly" in r.stdout, describe(r)
    bad = small["base"] / f"bad-{store.kind}.yaml"
    bad.write_text("gate:\n  min: {acuracy: 0.8}\n")
    r = reg(run, store, "promote", "fm:3", "--policy", bad)
    assert r.returncode in (1, 2) and "acuracy" in r.stderr, describe(r)

    # both evaluations and the decision are recorded; the alias did not move
    show2 = reg_json(run, store, "show", "fm:2")
    show3 = reg_json(run, store, "show", "fm@production")
    assert show3["ref"] == "fm:2" and show2["state"] == "production"
    contexts = [e["context"] for e in show2["evaluations"] if e["slice"] is None]
    assert contexts.count("promote:baseline") == 3 and contexts.count("promote:candidate") == 1
    cand = reg_json(run, store, "show", "fm:3")
    assert cand["state"] == "rejected"
    refusals = [e for e in cand["events"] if e["action"] == "refuse"]
    assert len(refusals) == 3 and refusals[0]["detail"]["baseline"] == 2
    assert refusals[0]["detail"]["decision"]["failed"] == failed
    hist = show2["alias_history"]
    assert [(h["alias"], h["from"], h["to"], h["why"]) for h in hist] == [("production", None, 2, "300 steps")]

    # by hand: back to 1 with a reason, the history says who and why; states follow
    r = reg(run, store, "alias", "fm:1", "production", "--who", "oncall")
    assert r.returncode == 2 and "--why" in r.stderr
    moved = reg_json(run, store, "alias", "fm:1", "production", "--why", "incident 42", "--who", "oncall")
    assert moved == {"name": "fm", "alias": "production", "version": 1, "previous": 2}
    show1 = reg_json(run, store, "show", "fm:1")
    assert show1["state"] == "production" and show1["aliases"] == ["production"]
    h = show1["alias_history"][-1]
    assert (h["from"], h["to"], h["who"], h["why"]) == (2, 1, "oncall", "incident 42")
    assert reg_json(run, store, "show", "fm:2")["state"] == "archived"
    r = reg(run, store, "alias", "fm:1", "staging", "--why", "x")
    assert r.returncode == 0 and "fm@staging -> 1" in r.stdout

    # eval and predict resolve registry refs
    r = run("eval", "--model", "fm@production", "--data", small["ds"], "--json", *store.flags)
    assert r.returncode == 0, describe(r)
    ev = json.loads(r.stdout)
    assert ev["version"] == "fm:1" and ev["examples"] == N_TEST
    x, _ = small["arrays"]["t10k"]
    inp = small["base"] / f"inst-{store.kind}.json"
    inp.write_text(json.dumps({"instances": x[:3].tolist()}))
    r = run("predict", "--model", "fm:2", "--input", inp, *store.flags)
    assert r.returncode == 0, describe(r)
    preds = json.loads(r.stdout)["predictions"]
    assert len(preds) == 3 and all(abs(sum(p) - 1) < 1e-4 for p in preds)
    r = run("eval", "--model", "fm:9", "--data", small["ds"], *store.flags)
    assert r.returncode == 1 and "no version 9" in r.stderr

    # the event log holds every step, in order, and the counter is its last id
    events = reg_json(run, store, "events")
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    actions = [e["action"] for e in events]
    assert actions.count("register") == 3 and actions.count("promote") == 1 and actions.count("refuse") == 4
    assert actions.count("move") == 3
    tail = reg_json(run, store, "events", "--after", events[-2]["id"])
    assert tail == events[-1:]


def test_tampered_artifact_refused(run, small, store):
    v = reg_json(run, store, "register", "--run", small["runs"][50], "--name", "fm")
    art = Path(v["artifact"]["path"])
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0xFF
    art.write_bytes(bytes(data))
    sha = v["artifact"]["sha256"]
    for args in (("eval", "--model", "fm:1", "--data", small["ds"]), ("predict", "--model", "fm:1", "--input", "-")):
        r = run(*args, *store.flags, input='{"instances": [[0]]}')
        assert r.returncode == 1, describe(r)
        assert "corrupt" in r.stderr and f"expected sha256 {sha}" in r.stderr and "found" in r.stderr, r.stderr
    r = reg(run, store, "verify")
    assert r.returncode == 1 and "corrupt" in r.stdout and "fm:1" in r.stdout
    r = reg(run, store, "verify", "--json")
    rep = json.loads(r.stdout)
    assert rep["checked"] == 1 and rep["ok"] == 0 and rep["problems"][0]["versions"] == ["fm:1"]
    r = reg(run, store, "promote", "fm:1", "--policy", small["policy"])
    assert r.returncode == 1 and "corrupt" in r.stderr
    art.unlink()
    rep = json.loads(reg(run, store, "verify", "--json").stdout)
    assert rep["problems"][0]["problem"] == "missing"
    # registering the same run again restores the artifact
    reg_json(run, store, "register", "--run", small["runs"][50], "--name", "fm")
    r = reg(run, store, "verify")
    assert r.returncode == 0 and "2 ok" not in r.stdout and "1 ok" in r.stdout, r.stdout


WORKER = r"""
import json, subprocess, sys
binary, run_dir, policy, data, *flags = sys.argv[1:]
def go(*args):
    return subprocess.run([binary, *args, *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
r = go("registry", "register", "--run", run_dir, "--name", "cc", "--json")
if r.returncode:
    print(json.dumps({"stage": "register", "rc": r.returncode, "err": r.stderr})); sys.exit(0)
v = json.loads(r.stdout)["version"]
e = go("eval", "--model", f"cc:{v}", "--data", data, "--json")
p = go("registry", "promote", f"cc:{v}", "--policy", policy, "--json", "--why", f"worker {run_dir}")
out = {"version": v, "run": run_dir, "eval_rc": e.returncode, "rc": p.returncode, "err": p.stderr}
if p.stdout:
    out["result"] = json.loads(p.stdout)
print(json.dumps(out))
"""


def test_concurrent_processes(slipway, small, store, tmp_path):
    """8 processes at once on a fresh store (so the schema migration races too): each
    registers (50 or 300 steps), evaluates and promotes. No version lost or doubled,
    the alias history chains, the event log is complete."""
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = dict(os.environ, SLIPWAY_LOG="warn")
    procs = []
    for i in range(8):
        rd = small["runs"][300 if i % 2 else 50]
        procs.append(subprocess.Popen([sys.executable, str(worker), slipway, str(rd), str(small["policy"]),
                                       str(small["ds"]), *map(str, store.flags)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    for o in outs:
        assert "version" in o, o
        assert o["eval_rc"] == 0, o
        assert o["rc"] in (0, 3), o
        assert o["rc"] == (0 if o["result"]["passed"] else 3), o
        if o["run"].endswith("run50"):
            assert o["rc"] == 3, o  # below min accuracy whatever the baseline
    versions = sorted(o["version"] for o in outs)
    assert versions == list(range(1, 9)), versions
    rows = store.sql("SELECT v.version FROM versions v JOIN models m ON m.id = v.model_id WHERE m.name = 'cc' ORDER BY v.version")
    assert [int(r[0]) for r in rows] == list(range(1, 9))

    # the alias history chains: each move starts where the previous one ended, and the
    # alias points where the last one ended; every move has its event
    hist = store.sql("SELECT from_version, to_version FROM alias_history WHERE alias = 'production' ORDER BY id")
    promoted = [o for o in outs if o["rc"] == 0]
    assert len(promoted) >= 1
    assert len(hist) == len(promoted), (hist, promoted)
    prev = None
    for frm, to in hist:
        assert (None if frm is None else int(frm)) == prev, hist
        prev = int(to)
    current = store.sql("SELECT a.version FROM aliases a WHERE a.alias = 'production'")
    assert [int(c[0]) for c in current] == [prev]
    by_version = {o["version"]: o for o in outs}
    assert by_version[prev]["run"].endswith("run300")
    for o in promoted:  # a promotion was judged against the version the alias held then
        base = o["result"]["baseline"]
        assert base is None or int(base.split(":")[1]) in [int(t) for _, t in hist]

    events = store.sql("SELECT action, version, detail FROM events WHERE model = 'cc' ORDER BY id")
    acts = [e[0] for e in events]
    assert acts.count("register") == 8
    assert acts.count("promote") == len(promoted)
    assert acts.count("refuse") == 8 - len(promoted)
    assert acts.count("move") == len(hist)
    ids = [int(r[0]) for r in store.sql("SELECT id FROM events ORDER BY id")]
    assert len(ids) == len(set(ids))
    # every promotion's two evaluations (candidate, and baseline when there was one) are there
    n_eval = store.sql("SELECT COUNT(*) FROM evaluations WHERE context = 'promote:candidate'")
    assert int(n_eval[0][0]) == 8
    states = dict((int(v), s) for v, s in store.sql(
        "SELECT v.version, v.state FROM versions v JOIN models m ON m.id = v.model_id WHERE m.name = 'cc'"))
    assert states[prev] == "production"
    assert sum(1 for s in states.values() if s == "production") == 1
    assert all(states[o["version"]] == "rejected" for o in outs if o["run"].endswith("run50"))


def test_processes_opening_a_fresh_store_together(slipway, tmp_path):
    """Switching a new registry file to WAL needs it to itself, and SQLite answers "database
    is locked" at once (no busy handler) when another process holds it that moment: the
    open retries. 8 processes open a fresh store at once, 40 times over; before the retry
    about one try in 15 had one of them fail."""
    env = dict(os.environ, SLIPWAY_LOG="warn")
    for attempt in range(40):
        home = tmp_path / f"home{attempt}"
        procs = [subprocess.Popen([slipway, "registry", "list", "--json"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=dict(env, SLIPWAY_HOME=str(home)))
                 for _ in range(8)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, f"attempt {attempt}: {err}"
            assert json.loads(out) == []


def test_kill_during_register(run, slipway, small, store):
    """kill -9 at the last moment before the commit: no half-registered version; a retry
    succeeds and the artifact written before the kill is reused."""
    env = dict(os.environ, SLIPWAY_LOG="warn", SLIPWAY_TEST_PAUSE="register-before-commit")
    p = subprocess.Popen([slipway, "registry", "register", "--run", str(small["runs"][300]), "--name", "fm",
                          *map(str, store.flags)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen, deadline, buf = False, time.time() + 60, ""
    while time.time() < deadline and not seen:
        ready, _, _ = select.select([p.stderr], [], [], 1)
        if ready:
            line = p.stderr.readline()
            buf += line
            seen = "paused at register-before-commit" in line
            if not line:
                break
    assert seen, f"the test hook was not reached:\n{buf}"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    assert reg_json(run, store, "list") == []
    assert store.sql("SELECT COUNT(*) FROM versions") == [("0",)]
    assert store.sql("SELECT COUNT(*) FROM events") == [("0",)]
    assert store.sql("SELECT COUNT(*) FROM runs") == [("0",)]
    arts = list((store.home / "artifacts" / "sha256").glob("*/*"))
    assert len(arts) == 1  # the artifact came first, atomically
    v = reg_json(run, store, "register", "--run", small["runs"][300], "--name", "fm")
    assert v["version"] == 1 and Path(v["artifact"]["path"]) == arts[0]
    assert [e["action"] for e in reg_json(run, store, "events")] == ["register"]
    r = reg(run, store, "verify")
    assert r.returncode == 0, describe(r)


class TorchMLP(torch.nn.Module):
    """Raw 0..255 pixels in, its own scaling."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x.view(x.size(0), -1) / 255.0)


def torch_model(path, arrays, steps):
    torch.manual_seed(0)
    m = TorchMLP()
    x, y = arrays["train"]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(m(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    xs, ys = arrays["t10k"]
    with torch.no_grad():
        acc = float((m(torch.from_numpy(xs)).argmax(1).numpy() == ys).mean())
    torch.onnx.export(m, torch.zeros(1, 784), str(path), opset_version=13, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    return acc


def test_pytorch_model_through_the_gates(run, small, store, tmp_path):
    good, worse = tmp_path / "good.onnx", tmp_path / "worse.onnx"
    acc_good = torch_model(good, small["arrays"], 400)
    acc_worse = torch_model(worse, small["arrays"], 0)  # untrained
    assert acc_good > 0.8 > acc_worse
    v = reg_json(run, store, "register", "--onnx", good, "--name", "torchfm", "--dataset", small["ds"], "--source",
                 "PyTorch torch.onnx.export", "--code-version", f"torch {torch.__version__}", "--description", "64 hidden")
    assert v["run"] is None and v["dataset"]["manifest_sha256"] and v["code_version"] == f"torch {torch.__version__}"
    lin = reg_json(run, store, "lineage", "torchfm:1")
    assert lin["run"] is None and lin["source"] == "PyTorch torch.onnx.export"
    assert lin["dataset"]["manifest_sha256"] == json.loads((small["runs"][50] / "run.json").read_text())["dataset"]["manifest_sha256"]
    # promote uses the recorded dataset (no --data); its accuracy is PyTorch's
    r = reg(run, store, "promote", "torchfm:1", "--policy", small["policy"], "--json")
    assert r.returncode == 0, describe(r)
    res = json.loads(r.stdout)
    assert res["candidate_eval"]["metrics"]["accuracy"] == pytest.approx(acc_good, abs=1.5 / N_TEST)
    reg_json(run, store, "register", "--onnx", worse, "--name", "torchfm", "--dataset", small["ds"], "--source", "untrained")
    r = reg(run, store, "promote", "torchfm:2", "--policy", small["policy"], "--data", small["ds"])
    assert r.returncode == 3 and "refused torchfm:2" in r.stdout, describe(r)
    lst = reg_json(run, store, "list", "torchfm")
    assert [(x["version"], x["state"], x["aliases"]) for x in lst] == [(1, "production", ["production"]), (2, "rejected", [])]
    # no dataset recorded and none given: promote says so
    reg_json(run, store, "register", "--onnx", good, "--name", "nodata")
    r = reg(run, store, "promote", "nodata:1", "--policy", small["policy"])
    assert r.returncode == 2 and "--data" in r.stderr, describe(r)


def test_bad_input(run, small, store, tmp_path):
    r = run("registry", "frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr
    r = run("registry")
    assert r.returncode == 2
    assert run("registry", "--help").returncode == 0
    r = reg(run, store, "register", "--name", "fm")
    assert r.returncode == 2 and "--run" in r.stderr
    r = reg(run, store, "register", "--run", small["runs"][50], "--onnx", tmp_path / "x.onnx", "--name", "fm")
    assert r.returncode == 2
    r = reg(run, store, "register", "--run", small["runs"][50], "--name", "bad name")
    assert r.returncode == 2 and "not a model name" in r.stderr
    r = reg(run, store, "list", "--policy", "x")
    assert r.returncode == 2 and "does not apply" in r.stderr
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not an onnx model at all")
    r = reg(run, store, "register", "--onnx", junk, "--name", "fm")
    assert r.returncode == 1 and "not registered" in r.stderr, describe(r)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "run.json").write_text('{"format": "slipway-run", "status": "running"}')
    r = reg(run, store, "register", "--run", unfinished, "--name", "fm")
    assert r.returncode == 1 and "not a finished run" in r.stderr
    r = reg(run, store, "register", "--run", tmp_path / "nope", "--name", "fm")
    assert r.returncode == 1 and "no such directory" in r.stderr
    other_ds = tmp_path / "otherds"
    r = run("prep", "--input", f"csv:{REPO / 'tests' / 'data' / 'tabular' / 'rows.csv'}", "--out", other_ds)
    assert r.returncode == 0, describe(r)
    r = reg(run, store, "register", "--run", small["runs"][50], "--name", "fm", "--dataset", other_ds)
    assert r.returncode == 2 and "trained on" in r.stderr, describe(r)
    assert reg_json(run, store, "list") == []  # nothing above left a version
    for ref in ("fm", "fm:0", "fm:x", "f m:1"):
        r = reg(run, store, "show", ref)
        assert r.returncode == 1 and ref.split(":")[0] in r.stderr, describe(r)
    r = reg(run, store, "show", "fm:1")
    assert r.returncode == 1 and "no model named 'fm'" in r.stderr
    r = reg(run, store, "alias", "fm@x", "production", "--why", "w")
    assert r.returncode == 2
    r = reg(run, store, "promote", "fm:1")
    assert r.returncode == 2 and "--policy" in r.stderr
    r = run("registry", "list", "--registry", "postgres://nobody@127.0.0.1:1/none")
    assert r.returncode == 1 and "cannot connect" in r.stderr


def test_default_locations(slipway, small, tmp_path, postgres_server):
    """No flags: ./.slipway/registry.db and ./.slipway/artifacts; $SLIPWAY_HOME moves both;
    $SLIPWAY_REGISTRY picks the store (here PostgreSQL) while artifacts stay in the home."""
    env = dict(os.environ, SLIPWAY_LOG="warn")
    env.pop("SLIPWAY_HOME", None)
    env.pop("SLIPWAY_REGISTRY", None)
    r = run_slipway(slipway, "registry", "register", "--run", small["runs"][50], "--name", "fm", cwd=tmp_path, env=env)
    assert r.returncode == 0, describe(r)
    assert (tmp_path / ".slipway" / "registry.db").is_file()
    assert len(list((tmp_path / ".slipway" / "artifacts" / "sha256").glob("*/*"))) == 1
    home = tmp_path / "elsewhere"
    env["SLIPWAY_HOME"] = str(home)
    r = run_slipway(slipway, "registry", "list", "--json", cwd=tmp_path, env=env)
    assert r.returncode == 0 and json.loads(r.stdout) == [] and (home / "registry.db").is_file()
    env["SLIPWAY_REGISTRY"] = postgres_database(postgres_server, "t" + uuid.uuid4().hex[:12])
    r = run_slipway(slipway, "registry", "register", "--run", small["runs"][50], "--name", "pg", "--json", cwd=tmp_path, env=env)
    assert r.returncode == 0, describe(r)
    assert Path(json.loads(r.stdout)["artifact"]["path"]).parent.parent.parent == home / "artifacts"
    r = run_slipway(slipway, "eval", "--model", "pg@x", "--data", small["ds"], cwd=tmp_path, env=env)
    assert r.returncode == 1 and "no alias 'x'" in r.stderr
    r = run_slipway(slipway, "registry", "list", "--json", cwd=tmp_path, env=env)
    assert [v["name"] for v in json.loads(r.stdout)] == ["pg"]


def test_slice_thresholds(run, small, store):
    """Per-slice value thresholds: the evaluation is sliced by the features the gate names,
    a weak slice refuses a model that passes overall, and the slices are recorded."""
    reg_json(run, store, "register", "--run", small["runs"][300], "--name", "fm")
    strict = small["base"] / f"slices-{store.kind}.yaml"
    strict.write_text("gate:\n  min: {accuracy: 0.8}\n  slices:\n    label=6: {min: {accuracy: 0.9}}\n")
    r = reg(run, store, "promote", "fm:1", "--policy", strict, "--json")
    assert r.returncode == 3, describe(r)
    res = json.loads(r.stdout)
    assert res["candidate_eval"]["metrics"]["accuracy"] > 0.8
    assert res["candidate_eval"]["slices"]["label=6"]["metrics"]["accuracy"] < 0.9
    assert len(res["decision"]["failed"]) == 1 and "label=6" in res["decision"]["failed"][0], res["decision"]
    fine = small["base"] / f"slices-ok-{store.kind}.yaml"
    fine.write_text("gate:\n  min: {accuracy: 0.8}\n  slices:\n    label=1: {min: {accuracy: 0.85}}\n")
    r = reg(run, store, "promote", "fm:1", "--policy", fine)
    assert r.returncode == 0, describe(r)
    evs = reg_json(run, store, "show", "fm:1")["evaluations"]
    assert {e["slice"] for e in evs} >= {None, "label=1", "label=6"}
    assert len([e for e in evs if e["slice"] is None]) == 2
