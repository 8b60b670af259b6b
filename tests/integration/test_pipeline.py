"""`slipway pipeline run` (docs/PIPELINE.md): the three example pipelines at a reduced size,
the cache (an unchanged rerun skips every stage, a changed model file reruns train and what
follows, --force), failures that stop the pipeline and a rerun that continues from them,
the executions in the registry (SQLite and PostgreSQL), the rollout stage against a stand-in
for the server's admin API, bad files, and `make demo DEMO_QUICK=1`."""
import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import REPO, describe, postgres_database

EXAMPLES = REPO / "examples"
STAGES = ["prep", "train", "eval", "register"]


def pipe(run, tmp_path, file, *args, home=None, ok=(0,)):
    """Runs the pipeline with --json; returns (CompletedProcess, report or None)."""
    env = dict(os.environ, SLIPWAY_HOME=str(home or tmp_path / "home"), SLIPWAY_LOG="warn")
    r = run("pipeline", "run", file, "--workdir", tmp_path / "work", "--json", *args, env=env)
    assert r.returncode in ok, describe(r)
    return r, (json.loads(r.stdout) if r.stdout.strip() else None)


def states(rep):
    return {s["stage"]: s["state"] for s in rep["stages"]}


def copy_example(tmp_path, name, *files):
    d = tmp_path / "ex"
    d.mkdir(exist_ok=True)
    for f in files:
        shutil.copy(EXAMPLES / name / f, d / f)
    return d


def test_fashion_mnist_cache_model_change_and_force(run, tmp_path, fashion_mnist):
    ex = copy_example(tmp_path, "fashion-mnist", "pipeline.quick.yaml", "mlp.yaml", "policy.quick.yaml")
    f = ex / "pipeline.quick.yaml"
    _, rep = pipe(run, tmp_path, f)
    assert rep["status"] == "complete" and states(rep) == dict.fromkeys(STAGES, "complete"), rep
    by = {s["stage"]: s for s in rep["stages"]}
    assert by["register"]["outputs"]["ref"] == "fmnist-quick:1" and by["register"]["outputs"]["promoted"]
    assert by["eval"]["outputs"]["metrics"]["accuracy"] > 0.7
    assert (tmp_path / "work" / "runs" / "mlp" / "model.onnx").is_file()

    # unchanged: every stage cached, with the same keys and outputs
    _, again = pipe(run, tmp_path, f)
    assert states(again) == dict.fromkeys(STAGES, "cached"), again
    for a, b in zip(rep["stages"], again["stages"]):
        assert a["cache_key"] == b["cache_key"] and a["outputs"] == b["outputs"]

    # the model file changed: train and what follows rerun, prep does not
    mlp = ex / "mlp.yaml"
    mlp.write_text(mlp.read_text().replace("units: 128", "units: 96"))
    _, changed = pipe(run, tmp_path, f)
    assert states(changed) == {"prep": "cached", "train": "complete", "eval": "complete", "register": "complete"}, changed
    ref2 = changed["stages"][3]["outputs"]["ref"]
    assert ref2 == "fmnist-quick:2"

    # --force prep reruns it; its output (the manifest) is the same, so the rest is cached
    _, forced = pipe(run, tmp_path, f, "--force", "prep")
    assert states(forced) == {"prep": "complete", "train": "cached", "eval": "cached", "register": "cached"}, forced

    # the executions are in the registry, shown by lineage, and in the event log
    env = dict(os.environ, SLIPWAY_HOME=str(tmp_path / "home"))
    r = run("registry", "lineage", ref2, "--json", env=env)
    assert r.returncode == 0, describe(r)
    ex_rows = json.loads(r.stdout)["executions"]
    made = {(e["stage"], e["state"]) for e in ex_rows}
    assert {("prep", "complete"), ("train", "complete"), ("eval", "complete"), ("register", "complete"),
            ("prep", "cached")} <= made, ex_rows
    assert all(e["pipeline"] == "fmnist-quick" and len(e["cache_key"]) == 64 for e in ex_rows)
    reg = next(e for e in ex_rows if e["stage"] == "register")
    assert reg["outputs"]["ref"] == ref2 and reg["inputs"]["params_sha256"] == changed["stages"][1]["outputs"]["params_sha256"]
    # the first version's train execution is not in the second's lineage
    assert rep["stages"][1]["execution"] not in {e["id"] for e in ex_rows}
    r = run("registry", "lineage", ref2, env=env)
    assert "execution" in r.stdout and "fmnist-quick/train" in r.stdout, r.stdout
    r = run("registry", "events", "--json", env=env)
    acts = [(e["entity"], e["action"]) for e in json.loads(r.stdout)]
    assert ("execution", "start") in acts and ("execution", "complete") in acts and ("execution", "cached") in acts


def test_gate_refusal_stops_and_the_rerun_continues(run, tmp_path, fashion_mnist):
    ex = copy_example(tmp_path, "fashion-mnist", "pipeline.quick.yaml", "mlp.yaml", "policy.quick.yaml")
    strict = ex / "strict.yaml"
    strict.write_text("metric: accuracy\ngate:\n  split: test\n  min: {accuracy: 0.99}\n")
    r, rep = pipe(run, tmp_path, ex / "pipeline.quick.yaml", "--set", "stages.register.policy=strict.yaml", ok=(3,))
    assert states(rep) == {"prep": "complete", "train": "complete", "eval": "complete", "register": "refused"}, rep
    assert rep["failed_stage"] == "register" and "accuracy" in rep["error"] and "0.99" in rep["error"], rep
    assert "stopped at register" in r.stderr and "gate refused" in r.stderr, r.stderr
    # the bar lowered: the completed stages are cached, register runs again on the same version
    _, rep = pipe(run, tmp_path, ex / "pipeline.quick.yaml")
    assert states(rep) == {"prep": "cached", "train": "cached", "eval": "cached", "register": "complete"}, rep
    assert rep["stages"][3]["outputs"]["ref"] == "fmnist-quick:1" and rep["stages"][3]["outputs"]["state"] == "production"
    r = run("registry", "lineage", "fmnist-quick:1", "--json", env=dict(os.environ, SLIPWAY_HOME=str(tmp_path / "home")))
    regs = [e for e in json.loads(r.stdout)["executions"] if e["stage"] == "register"]
    assert [e["state"] for e in regs] == ["failed", "complete"] and "0.99" in regs[0]["error"], regs


def test_missing_input_and_bad_model_stop_with_their_reason(run, tmp_path, fashion_mnist):
    ex = copy_example(tmp_path, "fashion-mnist", "pipeline.quick.yaml", "mlp.yaml", "policy.quick.yaml")
    f = ex / "pipeline.quick.yaml"
    r, rep = pipe(run, tmp_path, f, "--set", "stages.prep.input=idx:/nonexistent/fmnist", ok=(1,))
    assert rep["failed_stage"] == "prep" and "/nonexistent/fmnist" in rep["error"], rep
    assert states(rep) == {"prep": "failed", "train": "not run", "eval": "not run", "register": "not run"}
    # a model file that does not load: train fails, prep is done and cached next time
    (ex / "mlp.yaml").write_text("name: broken\nlayers: 3\n")
    r, rep = pipe(run, tmp_path, f, ok=(1,))
    assert states(rep)["prep"] == "complete" and states(rep)["train"] == "failed", rep
    assert "mlp.yaml" in rep["error"], rep
    shutil.copy(EXAMPLES / "fashion-mnist" / "mlp.yaml", ex / "mlp.yaml")
    _, rep = pipe(run, tmp_path, f)
    assert states(rep) == {"prep": "cached", "train": "complete", "eval": "complete", "register": "complete"}, rep


def test_bad_pipeline_files_name_the_key(run, tmp_path):
    ex = copy_example(tmp_path, "fashion-mnist", "mlp.yaml")
    cases = {
        "name: p\nstages:\n  prep: {input: 'idx:x', out: d}\n  trian: {model: mlp.yaml, out: r}\n": "stages.trian: unknown stage",
        "name: p\nstages:\n  prep: {input: 'idx:x', out: d, shard: 3}\n": "stages.prep.shard: unknown key",
        "name: p\nstages:\n  prep: {input: 'idx:x', out: d}\n  train: {model: mlp.yaml, out: r, epochs: two}\n":
            "stages.train.epochs: expected an integer",
        "name: p\nstages:\n  train: {model: mlp.yaml, out: r}\n": "stages.train.data: required",
        "name: p\nstages:\n  prep: {out: d}\n": "stages.prep.input: required",
        "name: p\nstages:\n  prep: {input: 'idx:x', out: d}\n  eval: {split: test}\n": "stages.eval: needs a train stage",
        "name: 'bad name'\nstages:\n  prep: {input: 'idx:x', out: d}\n": "name: 'bad name' is not a name",
        "name: p\nstages: [prep]\n": "stages: expected a mapping",
        "name: p\nstage: {}\n": "stage: unknown key",
    }
    for i, (text, msg) in enumerate(cases.items()):
        f = ex / f"bad{i}.yaml"
        f.write_text(text)
        r, rep = pipe(run, tmp_path, f, ok=(2,))
        assert msg in r.stderr and f"bad{i}.yaml" in r.stderr, (text, r.stderr)
        assert rep is None
    r, _ = pipe(run, tmp_path, ex / "bad0.yaml", "--set", "stages", ok=(2,))
    assert "KEY.PATH=VALUE" in r.stderr
    f = ex / "ok.yaml"
    f.write_text("name: p\nstages:\n  prep: {input: 'idx:/nonexistent', out: d}\n")
    r, _ = pipe(run, tmp_path, f, "--force", "train", ok=(2,))
    assert "--force train" in r.stderr
    r, _ = pipe(run, tmp_path, f, "--set", "stages.prep.shards=-1", ok=(2,))
    assert "stages.prep.shards: expected an integer >= 0" in r.stderr
    r = run("pipeline", "run", "--bogus", f)
    assert r.returncode == 2 and "--bogus" in r.stderr
    # nothing was written for a bad file: no registry, no workdir
    assert not (tmp_path / "home").exists() and not (tmp_path / "work").exists()


def test_speech_and_recsys_examples(run, tmp_path):
    data = tmp_path / "work" / "data"
    r = subprocess.run(["/usr/bin/python3", EXAMPLES / "speech-digits" / "make_data.py", "--out", data, "--voices", "4",
                        "--speeds", "160", "--pitches", "50", "--holdout-count", "1", "--snr", "20", "--jobs", "2",
                        "--seed", "4"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    _, rep = pipe(run, tmp_path, EXAMPLES / "speech-digits" / "pipeline.quick.yaml")
    assert states(rep) == dict.fromkeys(STAGES, "complete"), rep
    ev = rep["stages"][2]["outputs"]
    assert ev["examples"] == 10 and 0 <= ev["metrics"]["accuracy"] <= 1  # the held-out voice's 10 digits
    assert rep["stages"][3]["outputs"]["ref"] == "speech-digits-quick:1"

    gen = tmp_path / "work" / "gen"
    r = subprocess.run(["/usr/bin/python3", EXAMPLES / "recsys" / "make_clicks.py", "--out", gen, "--users", "60",
                        "--items", "30", "--rows", "6000", "--test-rows", "1000", "--seed", "2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    _, rep = pipe(run, tmp_path, EXAMPLES / "recsys" / "pipeline.quick.yaml")
    assert states(rep) == dict.fromkeys(STAGES, "complete"), rep
    ev = rep["stages"][2]["outputs"]
    assert ev["examples"] == 1000 and 0.5 < ev["metrics"]["auc"] <= 1, ev
    _, rep = pipe(run, tmp_path, EXAMPLES / "recsys" / "pipeline.quick.yaml")
    assert states(rep) == dict.fromkeys(STAGES, "cached"), rep


def test_executions_on_postgres(run, tmp_path, fashion_mnist, postgres_server):
    url = postgres_database(postgres_server, "pipeline_exec")
    f = EXAMPLES / "fashion-mnist" / "pipeline.quick.yaml"
    _, rep = pipe(run, tmp_path, f, "--registry", url, "--set", "stages.train.steps=60",
                  "--set", "stages.register.policy=policy.yaml", ok=(3,))
    assert states(rep) == {"prep": "complete", "train": "complete", "eval": "complete", "register": "refused"}, rep
    _, rep = pipe(run, tmp_path, f, "--registry", url, "--set", "stages.train.steps=60")
    assert states(rep) == {"prep": "cached", "train": "cached", "eval": "cached", "register": "complete"}, rep
    r = run("registry", "lineage", "fmnist-quick:1", "--json", "--registry", url,
            env=dict(os.environ, SLIPWAY_HOME=str(tmp_path / "home")))
    assert r.returncode == 0, describe(r)
    got = [(e["stage"], e["state"]) for e in json.loads(r.stdout)["executions"]]
    assert got == [("prep", "complete"), ("train", "complete"), ("eval", "complete"), ("register", "failed"),
                   ("prep", "cached"), ("train", "cached"), ("eval", "cached"), ("register", "complete")], got


class FakeAdmin(BaseHTTPRequestHandler):
    """The admin API's rollout routes as DESIGN.md fixes them, deciding what `outcome` says
    after two looks. A stand-in for `slipway serve` until the rollout controller lands."""

    outcome = "promoted"
    token = "t0ken"
    seen = []
    looks = 0

    def log_message(self, *a):
        pass

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self, state):
        reason = "quality: e-value 140 crossed 1/alpha = 100" if state == "rolled_back" else "the last step passed"
        action = {"running": "start", "promoted": "promote", "rolled_back": "rollback"}[state]
        return {"id": 7, "model": self.seen[0]["model"], "incumbent": 1, "challenger": self.seen[0]["challenger"],
                "mode": self.seen[0]["mode"], "state": state, "weight": 100 if state == "promoted" else 0, "step": 0,
                "policy": self.seen[0]["policy"], "decisions": [{"action": action, "reason": reason}]}

    def do_POST(self):
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            return self.answer(401, {"error": "bad token"})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeAdmin.seen.append(body)
        self.answer(201, self.record("running"))

    def do_GET(self):
        FakeAdmin.looks += 1
        self.answer(200, self.record("running" if FakeAdmin.looks < 2 else FakeAdmin.outcome))


def test_rollout_stage_against_the_admin_api(run, tmp_path, fashion_mnist):
    ex = copy_example(tmp_path, "fashion-mnist", "pipeline.quick.yaml", "mlp.yaml", "policy.quick.yaml")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeAdmin)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        f = ex / "pipeline.quick.yaml"
        f.write_text(f.read_text() + f"  rollout:\n    server: http://127.0.0.1:{srv.server_port}\n    poll: 0.05\n"
                     "    steps: [10, 50, 100]\n    min_requests_per_step: 20\n")
        (tmp_path / "home").mkdir()
        (tmp_path / "home" / "admin.token").write_text("t0ken\n")
        FakeAdmin.outcome = "rolled_back"
        r, rep = pipe(run, tmp_path, f, ok=(3,))
        assert states(rep)["rollout"] == "refused" and "rolled back" in rep["error"] and "e-value 140" in rep["error"], rep
        body = FakeAdmin.seen[-1]
        assert body["model"] == "fmnist-quick" and body["challenger"] == 1 and body["mode"] == "canary"
        assert body["policy"]["steps"] == [10, 50, 100] and body["policy"]["min_requests_per_step"] == 20
        # with a rollout after it, the gate blesses (alias candidate) and leaves production alone
        reg = rep["stages"][3]["outputs"]
        assert reg["alias"] == "candidate" and reg["state"] == "blessed", reg
        FakeAdmin.outcome, FakeAdmin.looks = "promoted", 0
        _, rep = pipe(run, tmp_path, f)
        assert states(rep) == {**dict.fromkeys(STAGES, "cached"), "rollout": "complete"}, rep
        assert rep["stages"][4]["outputs"]["state"] == "promoted"
    finally:
        srv.shutdown()


def test_make_demo_quick(slipway, tmp_path, fashion_mnist):
    r = subprocess.run(["make", "-s", "-C", str(REPO), "demo", "DEMO_QUICK=1", f"SLIPWAY={slipway}",
                        f"DEMO_DIR={tmp_path / 'demo'}"], capture_output=True, text=True, timeout=240,
                       env=dict(os.environ, SLIPWAY_LOG="warn"))
    assert r.returncode == 0, describe(r)
    out = r.stdout
    for part in ["pipeline fmnist-baseline", "fmnist:1 production: gate passed", "SIGKILL during training",
                 "prep      cached", "resumed at step ", "fmnist:2 blessed", "== 4. summary", "accuracy   CNN"]:
        assert part in out, (part, out)
    assert (tmp_path / "demo" / ".slipway" / "registry.db").is_file()
