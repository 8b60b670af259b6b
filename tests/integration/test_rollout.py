"""Rollouts on a real `slipway serve` over the loopback, with a real registry: a better
challenger promoted through every step; a worse one (10 points less accurate), a slower
one (5 ms, --debug-delay) and a failing one (5 %, --debug-fail) each rolled back before
the 25 % step; stickiness; shadow mode; a server restarted mid-rollout resuming it;
abort and promote by hand; bad input. Traffic is `slipway loadgen` (open-loop Poisson
arrivals of labeled examples, their feedback), or single requests where each user's
answers matter.

Run with /usr/bin/python3 -m pytest (python3-requests, python3-torch, python3-numpy)."""

import json
import os
import subprocess
import time

import pytest
import requests

from conftest import describe
from rollout_traffic import Loadgen, dataset, export_linear, prep_dataset, served, worse_weights
from serving import Server

# incumbent: W itself (about 97 % accurate on the set); better: the incumbent is 3
# points worse than W; bad: 10 points worse than the incumbent
MODELS = {
    # name: (incumbent's drop from W, challenger's drop from W)
    "good": (0.03, 0.0),
    "bad": (0.0, 0.10),
    "slow": (0.0, 0.0),
    "failing": (0.0, 0.0),
    "shadowed": (0.0, 0.10),
    "sticky": (0.0, 0.0),
    "manual": (0.0, 0.0),
    "abtest": (0.0, 0.0),
    "quiet": (0.0, 0.0),
    "slower": (0.0, 0.0),
    "slower_slo": (0.0, 0.0),
}
FAULTS = ["--debug-delay", "slow:2=5", "--debug-fail", "failing:2=0.05", "--debug-delay", "slower:2=10",
          "--debug-delay", "slower_slo:2=30"]


@pytest.fixture(scope="module")
def data(run, tmp_path_factory):
    """(W, x, y, the dataset dir loadgen replays)."""
    w, x, y = dataset()
    return w, x, y, prep_dataset(run, x, y, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def registry(run, data, tmp_path_factory):
    """A registry where every model of MODELS has version 1 (production) and 2."""
    w, x, y, _ = data
    d = tmp_path_factory.mktemp("rollout")
    home = d / "home"
    env = {**os.environ, "SLIPWAY_HOME": str(home)}
    cache = {}
    for name, drops in MODELS.items():
        for k, drop in enumerate(drops, 1):
            if drop not in cache:
                cache[drop] = export_linear(w if drop == 0 else worse_weights(w, x, y, drop), d / f"drop{drop}.onnx")
            r = run("registry", "register", "--onnx", cache[drop], "--name", name, env=env)
            assert r.returncode == 0, describe(r)
        r = run("registry", "alias", f"{name}:1", "production", "--why", "first", env=env)
        assert r.returncode == 0, describe(r)
    return d, env


@pytest.fixture(scope="module")
def server(slipway, registry):
    d, _ = registry
    s = Server(slipway, d, "--poll", "0.2", *FAULTS)
    yield s
    assert s.stop() == 0


def rollout(run, server, env, *args):
    return run("rollout", *args, "--server", server.url, env=env, timeout=120)


def status(server, model):
    r = requests.get(f"{server.url}/admin/rollouts/{model}", headers={"Authorization": f"Bearer {server.token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def decisions(rec, skip_snapshots=True):
    return [d for d in rec["decisions"] if not (skip_snapshots and d["action"] == "snapshot")]


def until(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def with_traffic(slipway, server, model, data, proc_or_pred, timeout=60, **kw):
    """Runs slipway loadgen until the `rollout start --wait` process ends (or pred is
    true); returns that and loadgen's report."""
    t = Loadgen(slipway, server.url, model, data[3], **kw)
    try:
        if isinstance(proc_or_pred, subprocess.Popen):
            out, err = proc_or_pred.communicate(timeout=timeout)
            result = (proc_or_pred.returncode, out, err)
        else:
            result = until(proc_or_pred, timeout, "the rollout")
    finally:
        report = t.stop()
    return result, report


def start_wait(slipway, server, env, ref, *flags):
    return subprocess.Popen([slipway, "rollout", "start", ref, "--server", server.url, "--wait", *flags], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---- a better challenger ---------------------------------------------------------------


def test_better_challenger_is_promoted_through_every_step(slipway, run, server, registry, data):
    _, env = registry
    p = start_wait(slipway, server, env, "good:2", "--steps", "10,50,100", "--min-requests-per-step", "60",
                   "--max-step-seconds", "60")
    (rc, out, err), report = with_traffic(slipway, server, "good", data, p)
    assert rc == 0, f"exit {rc}\n{out}\n{err}\n{server.logs()[-3000:]}"
    assert out.splitlines()[0].startswith("rollout "), out
    assert "promoted" in out.splitlines()[-1], out
    rec = status(server, "good")
    assert rec["state"] == "promoted" and rec["weight"] == 100, rec
    acts = [(d["action"], d["weight"]) for d in decisions(rec)]
    assert acts == [("start", 10), ("advance", 50), ("advance", 100), ("promote", 100)], acts
    for d in decisions(rec):
        assert d["reason"] and isinstance(d["evidence"], dict), d
    print(f"\npromoted after {report['requests']['answered']} requests ({served(report, 2)} served by the challenger)")
    # the alias moved, with who and why; requests now get version 2
    show = run("registry", "show", "good@production", "--json", env=env)
    assert show.returncode == 0, describe(show)
    v = json.loads(show.stdout)
    assert v["version"] == 2 and v["rollouts"][0]["state"] == "promoted", v
    hist = [h for h in v["alias_history"] if h["to"] == 2]
    assert hist and hist[-1]["who"] == "rollout", v["alias_history"]
    r = requests.post(f"{server.url}/v1/models/good:predict", json={"instances": [[0, 0, 0, 1]]}, timeout=10)
    assert r.headers["X-Model-Version"] == "2"
    # the incumbent stays loaded for a quick manual rollback (--keep-previous, default 10 min)
    assert requests.get(f"{server.url}/v1/models/good/versions/1", timeout=10).status_code == 200
    # registry show tells the story in words
    text = run("registry", "show", "good:2", env=env)
    assert text.returncode == 0 and "rollout" in text.stdout and "promote" in text.stdout, describe(text)
    st = rollout(run, server, env, "status", "good")
    assert st.returncode == 0 and "state promoted" in st.stdout and "advance" in st.stdout, describe(st)
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 'slipway_rollout_promotions_total{model="good"} 1' in metrics, metrics
    assert 'slipway_rollout_weight{model="good",challenger="2"} 100' in metrics
    assert 'slipway_rollout_evidence{model="good",challenger="2",metric="quality"}' in metrics
    lint = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=metrics, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


# ---- worse challengers: rolled back before the 25 % step -------------------------------


@pytest.mark.parametrize("model,why", [("bad", "quality"), ("slow", "latency"), ("failing", "error_rate")])
def test_worse_challenger_is_rolled_back_before_the_25_percent_step(slipway, run, server, registry, data, model, why):
    _, env = registry
    p = start_wait(slipway, server, env, f"{model}:2", "--steps", "10,25,50,100", "--min-requests-per-step", "400",
                   "--max-step-seconds", "120")
    (rc, out, err), report = with_traffic(slipway, server, model, data, p, timeout=90)
    assert rc == 3, f"exit {rc}\n{out}\n{err}\n{server.logs()[-3000:]}"
    rec = status(server, model)
    assert rec["state"] == "rolled_back" and rec["weight"] == 0, rec
    last = decisions(rec)[-1]
    assert last["action"] == "rollback" and last["step"] == 0, last
    assert why in last["reason"], last["reason"]
    n_ch = served(report, 2)
    print(f"\n{model}: rolled back at step 0 (10 %) after {report['requests']['answered']} requests, {n_ch} served by the "
          f"challenger: "
          f"{last['reason']}")
    # the alias stays, the challenger is marked, a counter counts it
    show = json.loads(run("registry", "show", f"{model}:2", "--json", env=env).stdout)
    assert show["state"] == "rolled_back", show
    assert json.loads(run("registry", "show", f"{model}@production", "--json", env=env).stdout)["version"] == 1
    assert any(e["entity"] == "rollout" and e["action"] == "rollback" for e in show["events"]), show["events"]
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert f'slipway_rollbacks_total{{model="{model}"}} 1' in metrics
    # no one gets the challenger any more
    r = requests.post(f"{server.url}/v1/models/{model}:predict", json={"instances": [[0, 0, 0, 1]]},
                      headers={"X-User-Id": "u1"}, timeout=10)
    assert r.headers["X-Model-Version"] == "1"


# ---- a challenger slower by design: the latency comparison off, the objective on --------------


@pytest.mark.parametrize("model,slo,rc,state", [("slower", 300, 0, "promoted"), ("slower_slo", 10, 3, "rolled_back")])
def test_no_latency_comparison_promotes_a_slower_challenger_within_its_slo(slipway, run, server, registry, data,
                                                                          model, slo, rc, state):
    """--no-compare-latency: a challenger 10 ms slower per request (which the latency test
    rolls back, test above) is promoted when its p99 stays within --slo-p99-ms 300; one
    30 ms slower against an objective of 10 ms is rolled back by the objective."""
    _, env = registry
    p = start_wait(slipway, server, env, f"{model}:2", "--steps", "20,100", "--min-requests-per-step", "60",
                   "--max-step-seconds", "60", "--no-compare-latency", "--slo-p99-ms", str(slo))
    (code, out, err), report = with_traffic(slipway, server, model, data, p, rps=100)
    assert code == rc, f"exit {code}\n{out}\n{err}\n{server.logs()[-3000:]}"
    rec = status(server, model)
    assert rec["state"] == state and rec["policy"]["compare_latency"] is False, rec
    assert rec["policy"]["slo"]["p99_ms"] == slo, rec["policy"]
    start, last = decisions(rec)[0], decisions(rec)[-1]
    assert "latency not compared" in start["reason"] and "p99 objective" in start["reason"], start
    # no latency test: errors, quality and the objective share alpha (boundary 300 each)
    assert set(last["evidence"]) == {"error_rate", "quality", "slo_p99"}, last["evidence"]
    assert last["evidence"]["slo_p99"]["boundary"] == pytest.approx(300)
    if state == "promoted":
        assert last["action"] == "promote" and served(report, 2) > 60, (last, report["versions"])
        assert json.loads(run("registry", "show", f"{model}@production", "--json", env=env).stdout)["version"] == 2
    else:
        assert last["action"] == "rollback" and "slo_p99: e-value" in last["reason"], last
        assert last["evidence"]["slo_p99"]["verdict"] == "worse"
    st = rollout(run, server, env, "status", model)
    assert st.returncode == 0 and "latency not compared" in st.stdout and "p99 objective on" in st.stdout, describe(st)
    print(f"\n{model}: {state} after {report['requests']['answered']} requests: {last['reason']}")


# ---- stickiness, shadow ----------------------------------------------------------------------


def admin_start(server, body, token="default"):
    token = server.token if token == "default" else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{server.url}/admin/rollouts", json=body, headers=headers, timeout=60)


def test_one_user_sees_one_version_within_a_step_and_abort(run, server, registry):
    _, env = registry
    r = admin_start(server, {"model": "sticky", "challenger": 2, "mode": "canary",
                             "policy": {"steps": [50, 100], "min_requests_per_step": 10**9, "max_step_seconds": 600}})
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "running" and r.json()["weight"] == 50
    seen = {}
    s = requests.Session()
    for rnd in range(4):
        for u in range(150):
            r = s.post(f"{server.url}/v1/models/sticky:predict", json={"instances": [[0.1, 0.2, 0.3, 0.4]]},
                       headers={"X-User-Id": f"user-{u}"}, timeout=10)
            assert r.status_code == 200, r.text
            seen.setdefault(u, set()).add(r.headers["X-Model-Version"])
    assert all(len(v) == 1 for v in seen.values()), {u: v for u, v in seen.items() if len(v) > 1}
    on_challenger = sum(1 for v in seen.values() if v == {"2"})
    assert 30 <= on_challenger <= 120, on_challenger  # about half of 150 at 50 %
    # a request that names a version is never rerouted
    for u in range(20):
        r = s.post(f"{server.url}/v1/models/sticky/versions/1:predict", json={"instances": [[0.1, 0.2, 0.3, 0.4]]},
                   headers={"X-User-Id": f"user-{u}"}, timeout=10)
        assert r.headers["X-Model-Version"] == "1"
    # abort by hand: back to the incumbent, the challenger's state untouched
    ab = rollout(run, server, env, "abort", "sticky")
    assert ab.returncode == 0, describe(ab)
    assert "state aborted" in ab.stdout, ab.stdout
    rec = status(server, "sticky")
    assert rec["state"] == "aborted" and rec["weight"] == 0 and decisions(rec)[-1]["action"] == "abort", rec
    assert json.loads(run("registry", "show", "sticky:2", "--json", env=env).stdout)["state"] != "rolled_back"
    for u in range(150):
        r = s.post(f"{server.url}/v1/models/sticky:predict", json={"instances": [[0.1, 0.2, 0.3, 0.4]]},
                   headers={"X-User-Id": f"user-{u}"}, timeout=10)
        assert r.headers["X-Model-Version"] == "1"


def test_ab_splits_only_the_population_its_header_selects(run, server, registry):
    _, env = registry
    st = rollout(run, server, env, "start", "abtest:2", "--mode", "ab", "--ab-header", "X-Group", "--ab-value", "beta",
                 "--steps", "50,100", "--min-requests-per-step", "1000000")
    assert st.returncode == 0, describe(st)
    s = requests.Session()
    seen = {}
    for rnd in range(3):
        for u in range(120):
            group = "beta" if u % 2 == 0 else "alpha"
            r = s.post(f"{server.url}/v1/models/abtest:predict", json={"instances": [[0.1, 0.2, 0.3, 0.4]]},
                       headers={"X-User-Id": f"u{u}", "X-Group": group}, timeout=10)
            assert r.status_code == 200, r.text
            seen.setdefault((group, u), set()).add(r.headers["X-Model-Version"])
    assert all(v == {"1"} for (g, _), v in seen.items() if g == "alpha"), seen
    beta = [v for (g, _), v in seen.items() if g == "beta"]
    assert all(len(v) == 1 for v in beta), beta
    assert 15 <= sum(1 for v in beta if v == {"2"}) <= 45, beta  # about half of 60 at 50 %
    rec = status(server, "abtest")
    assert rec["mode"] == "ab" and rec["policy"]["ab"] == {"header": "X-Group", "value": "beta"}, rec
    # only the experiment's requests are evidence
    ev = rec["live"]["evidence"]["error_rate"]
    assert ev["challenger"]["n"] + ev["incumbent"]["n"] == 180, ev
    assert rollout(run, server, env, "abort", "abtest").returncode == 0


def test_shadow_exposes_no_user_and_still_rolls_back_the_bad_one(slipway, server, registry, data):
    _, env = registry
    p = start_wait(slipway, server, env, "shadowed:2", "--mode", "shadow", "--steps", "50,100",
                   "--min-requests-per-step", "2000", "--max-step-seconds", "120")
    (rc, out, err), report = with_traffic(slipway, server, "shadowed", data, p, timeout=90)
    assert rc == 3, f"exit {rc}\n{out}\n{err}\n{server.logs()[-3000:]}"
    assert set(report["versions"]) == {"1"} and served(report, 1) > 0, report["versions"]
    rec = status(server, "shadowed")
    last = decisions(rec)[-1]
    assert rec["state"] == "rolled_back" and last["action"] == "rollback" and "quality" in last["reason"], rec
    print(f"\nshadow: rolled back after {report['requests']['answered']} requests, none answered by the challenger: "
          f"{last['reason']}")


def test_too_little_traffic_holds_and_says_so(run, server, registry):
    _, env = registry
    r = admin_start(server, {"model": "quiet", "challenger": 2, "mode": "canary",
                             "policy": {"steps": [10, 100], "min_requests_per_step": 50, "max_step_seconds": 1}})
    assert r.status_code == 201, r.text
    rec = until(lambda: (lambda x: x if x["state"] == "holding" else None)(status(server, "quiet")), 30, "a hold")
    hold = decisions(rec)[-1]
    assert hold["action"] == "hold" and hold["weight"] == 10 and hold["reason"], hold
    # still serving at its weight, and the record says why
    assert rec["live"]["routing"] and rec["live"]["weight"] == 10, rec["live"]
    st = rollout(run, server, env, "status", "quiet")
    assert st.returncode == 0 and "state holding" in st.stdout and "hold" in st.stdout, describe(st)
    assert rollout(run, server, env, "abort", "quiet").returncode == 0


# ---- by hand, and bad input -------------------------------------------------------------------


def test_manual_promote_a_second_rollout_and_bad_input(run, server, registry):
    _, env = registry
    ok = {"model": "manual", "challenger": 2, "mode": "canary",
          "policy": {"steps": [5, 100], "min_requests_per_step": 10**9}}
    assert admin_start(server, ok, token=None).status_code == 401
    assert admin_start(server, ok, token="x" * 32).status_code == 401
    r = admin_start(server, {**ok, "model": "nosuch"})
    assert r.status_code == 404 and "nosuch" in r.json()["error"], r.text
    r = admin_start(server, {**ok, "challenger": 99})
    assert r.status_code == 404 and "99" in r.json()["error"], r.text
    r = admin_start(server, {**ok, "policy": {"steps": [50, 10, 100]}})
    assert r.status_code == 400 and "steps" in r.json()["error"], r.text
    r = admin_start(server, {**ok, "policy": {"alpha": 2}})
    assert r.status_code == 400 and "alpha" in r.json()["error"], r.text
    r = admin_start(server, {**ok, "mode": "blue-green"})
    assert r.status_code == 400 and "mode" in r.json()["error"], r.text
    r = admin_start(server, {**ok, "challenger": 1})
    assert r.status_code == 409, r.text
    r = admin_start(server, {**ok, "mode": "ab"})
    assert r.status_code == 400 and "ab" in r.json()["error"], r.text
    r = requests.post(f"{server.url}/admin/rollouts/manual/promote", headers={"Authorization": f"Bearer {server.token}"})
    assert r.status_code == 409, r.text
    bad = rollout(run, server, env, "start", "manual:2", "--steps", "50,10,100")
    assert bad.returncode == 2 and "steps" in bad.stderr, describe(bad)
    bad = rollout(run, server, env, "start", "nosuch:2")
    assert bad.returncode == 1 and "404" in bad.stderr, describe(bad)
    bad = rollout(run, server, env, "start", "manual")
    assert bad.returncode == 2, describe(bad)
    bad = rollout(run, server, env, "start", "manual:2", "--mode", "ab")
    assert bad.returncode == 2 and "--ab-header" in bad.stderr, describe(bad)
    bad = run("rollout", env=env)
    assert bad.returncode == 2 and "subcommand" in bad.stderr, describe(bad)
    bad = rollout(run, server, env, "status", "manual", "--no-compare-latency")
    assert bad.returncode == 2 and "go with start" in bad.stderr, describe(bad)
    bad = rollout(run, server, env, "start", "manual:2", "--slo-p99-ms", "fast")
    assert bad.returncode == 2 and "--slo-p99-ms" in bad.stderr, describe(bad)
    r = admin_start(server, {**ok, "policy": {"compare_latency": "no"}})
    assert r.status_code == 400 and "compare_latency: expected true or false" in r.json()["error"], r.text
    bad = rollout(run, server, {**env, "SLIPWAY_HOME": str(registry[0] / "nohome")}, "status", "manual")
    assert bad.returncode == 1 and "admin token" in bad.stderr, describe(bad)
    bad = rollout(run, server, {**env, "SLIPWAY_ADMIN_TOKEN": "x" * 40}, "status", "manual")
    assert bad.returncode == 1 and "401" in bad.stderr, describe(bad)

    st = rollout(run, server, env, "start", "manual:2", "--steps", "5,100", "--min-requests-per-step", "1000000")
    assert st.returncode == 0 and st.stdout.startswith("rollout "), describe(st)
    r = admin_start(server, ok)
    assert r.status_code == 409 and "running" in r.json()["error"], r.text
    pr = rollout(run, server, env, "promote", "manual")
    assert pr.returncode == 0 and "state promoted" in pr.stdout, describe(pr)
    rec = status(server, "manual")
    assert decisions(rec)[-1]["action"] == "promote" and "by hand" in decisions(rec)[-1]["reason"], rec
    assert json.loads(run("registry", "show", "manual@production", "--json", env=env).stdout)["version"] == 2
    r = requests.post(f"{server.url}/v1/models/manual:predict", json={"instances": [[0, 0, 0, 1]]}, timeout=10)
    assert r.headers["X-Model-Version"] == "2"
    assert rollout(run, server, env, "abort", "manual").returncode == 1


def test_a_challenger_a_gate_rejected_is_refused(run, server, registry, data, tmp_path):
    d, env = registry
    ds = data[3]
    for _ in range(2):
        r = run("registry", "register", "--onnx", d / "drop0.0.onnx", "--name", "gated", env=env)
        assert r.returncode == 0, describe(r)
    assert run("registry", "alias", "gated:1", "production", "--why", "first", env=env).returncode == 0
    policy = tmp_path / "strict.yaml"
    policy.write_text("gate:\n  split: test\n  min: {accuracy: 0.9999}\n")
    r = run("registry", "promote", "gated:2", "--policy", policy, "--data", ds, env=env)
    assert r.returncode == 3, describe(r)
    until(lambda: requests.get(f"{server.url}/v1/models/gated", timeout=10).status_code == 200, 30,
          "the server to serve the new model")
    r = rollout(run, server, env, "start", "gated:2")
    assert r.returncode == 3 and "rejected by a promotion gate" in r.stderr, describe(r)


def test_rollouts_need_the_registry_catalog(slipway, registry, tmp_path):
    d, _ = registry
    s = Server(slipway, tmp_path, "--model-file", f"m={d / 'drop0.0.onnx'}", "--model-file", f"m={d / 'drop0.0.onnx'}")
    try:
        r = admin_start(s, {"model": "m", "challenger": 2, "mode": "canary"})
        assert r.status_code == 409 and "registry" in r.json()["error"], r.text
    finally:
        assert s.stop() == 0


# ---- a restart mid-rollout ---------------------------------------------------------------------


def counts(evidence):
    return {m: (e["challenger"]["n"], e["challenger"]["events"], e.get("incumbent", {}).get("n")) for m, e in evidence.items()}


def test_a_restarted_server_resumes_the_rollout(slipway, run, data, tmp_path):
    w = data[0]
    home = tmp_path / "home"
    env = {**os.environ, "SLIPWAY_HOME": str(home)}
    f = export_linear(w, tmp_path / "m.onnx")
    for _ in range(2):
        assert run("registry", "register", "--onnx", f, "--name", "resumed", env=env).returncode == 0
    assert run("registry", "alias", "resumed:1", "production", "--why", "first", env=env).returncode == 0
    s = Server(slipway, tmp_path, "--poll", "0.2")
    try:
        r = admin_start(s, {"model": "resumed", "challenger": 2, "mode": "canary",
                            "policy": {"steps": [10, 50, 100], "min_requests_per_step": 60, "max_step_seconds": 120}})
        assert r.status_code == 201, r.text
        _, report = with_traffic(slipway, s, "resumed", data, lambda: status(s, "resumed")["step"] >= 1, timeout=60)
        time.sleep(0.5)
        before = status(s, "resumed")
        assert before["state"] == "running", before
    finally:
        assert s.stop() == 0
    s = Server(slipway, tmp_path, "--poll", "0.2")
    try:
        after = status(s, "resumed")
        assert after["state"] == "running" and after["step"] == before["live"]["step"], after
        assert after["live"]["weight"] == before["live"]["weight"], (after["live"], before["live"])
        assert decisions(after)[-1]["action"] == "resume", decisions(after)[-1]
        assert counts(after["live"]["evidence"]) == counts(before["live"]["evidence"])
        # and it carries on to the end
        _, more = with_traffic(slipway, s, "resumed", data, lambda: status(s, "resumed")["state"] == "promoted", timeout=60,
                               seed=2)
        print(f"\nresumed at step {after['step']} after {report['requests']['answered']} requests; promoted after "
              f"{more['requests']['answered']} more")
    finally:
        assert s.stop() == 0
