"""Rollouts at full size (make test-long): a challenger 2 points less accurate caught given
enough labeled traffic (how much is printed), and 20 live A/A rollouts (the incumbent's own
model as the challenger) whose observed false-rollback rate is printed (docs/ROLLOUT.md
quotes it). `make test` runs the 10-point, 5 ms and 5 % cases (tests/integration)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from rollout_traffic import Loadgen, dataset, export_linear, prep_dataset, worse_weights  # noqa: E402
from serving import Server  # noqa: E402

SLIPWAY = os.environ.get("SLIPWAY_BIN", str(REPO / "build" / "slipway"))


def run(*args, env=None):
    r = subprocess.run([SLIPWAY, *[str(a) for a in args]], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def run_any(*args, **kw):
    return subprocess.run([SLIPWAY, *[str(a) for a in args]], capture_output=True, text=True, timeout=300)


def start(server, model, challenger, policy):
    r = requests.post(f"{server.url}/admin/rollouts", json={"model": model, "challenger": challenger, "mode": "canary",
                                                            "policy": policy},
                      headers={"Authorization": f"Bearer {server.token}"}, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def record(server, model):
    r = requests.get(f"{server.url}/admin/rollouts/{model}", headers={"Authorization": f"Bearer {server.token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def until_done(server, model, timeout):
    end = time.time() + timeout
    while time.time() < end:
        rec = record(server, model)
        if rec["state"] in ("promoted", "rolled_back", "aborted"):
            return rec
        time.sleep(0.2)
    raise AssertionError(f"rollout of {model} not decided after {timeout} s: {record(server, model)}")


def test_two_points_worse_is_caught_given_enough_labels(tmp_path):
    w, x, y = dataset()
    data = prep_dataset(run_any, x, y, tmp_path / "data")
    env = {**os.environ, "SLIPWAY_HOME": str(tmp_path / "home")}
    run("registry", "register", "--onnx", export_linear(w, tmp_path / "inc.onnx"), "--name", "m", env=env)
    run("registry", "register", "--onnx", export_linear(worse_weights(w, x, y, 0.02), tmp_path / "ch.onnx"), "--name", "m",
        env=env)
    run("registry", "alias", "m:1", "production", "--why", "first", env=env)
    s = Server(SLIPWAY, tmp_path, "--poll", "0.2")
    try:
        start(s, "m", 2, {"steps": [25, 50, 100], "min_requests_per_step": 10**6, "max_step_seconds": 3600})
        t = Loadgen(SLIPWAY, s.url, "m", data, rps=600)
        try:
            rec = until_done(s, "m", 600)
        finally:
            report = t.stop()
        assert rec["state"] == "rolled_back", rec
        last = [d for d in rec["decisions"] if d["action"] != "snapshot"][-1]
        q = last["evidence"]["quality"]
        print(f"\n2 points worse: rolled back after {report['requests']['answered']} requests "
              f"({q['challenger']['n']} challenger labels, {q['incumbent']['n']} incumbent labels): {last['reason']}")
    finally:
        assert s.stop() == 0


def test_twenty_live_aa_rollouts(tmp_path):
    w, x, y = dataset()
    data = prep_dataset(run_any, x, y, tmp_path / "data")
    env = {**os.environ, "SLIPWAY_HOME": str(tmp_path / "home")}
    f = export_linear(w, tmp_path / "m.onnx")
    n = 20
    for _ in range(n + 1):
        run("registry", "register", "--onnx", f, "--name", "aa", env=env)
    run("registry", "alias", "aa:1", "production", "--why", "first", env=env)
    s = Server(SLIPWAY, tmp_path, "--poll", "0.2")
    rollbacks, requests_total, reasons = 0, 0, []
    try:
        for k in range(n):
            start(s, "aa", k + 2, {"steps": [10, 50, 100], "min_requests_per_step": 200, "max_step_seconds": 120})
            t = Loadgen(SLIPWAY, s.url, "aa", data, rps=600, seed=k + 1)
            try:
                rec = until_done(s, "aa", 300)
            finally:
                requests_total += t.stop()["requests"]["answered"]
            if rec["state"] == "rolled_back":
                rollbacks += 1
                reasons.append([d for d in rec["decisions"] if d["action"] == "rollback"][-1]["reason"])
                # the alias stays; the next challenger is judged against the same incumbent
    finally:
        assert s.stop() == 0
    print(f"\nlive A/A: {rollbacks} of {n} rollouts rolled back (false-rollback rate {rollbacks / n:.2f}, alpha 0.01) "
          f"over {requests_total} requests" + "".join(f"\n  {r}" for r in reasons))
    # alpha is 0.01: two or more false rollbacks in 20 has probability < 2 %
    assert rollbacks <= 1, reasons
