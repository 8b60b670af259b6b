"""`slipway pipeline run` (docs/PIPELINE.md): the three example pipelines at a reduced size,
the cache (an unchanged rerun skips every stage, a changed model file reruns train and what
follows, --force), failures that stop the pipeline and a rerun that continues from them,
the executions in the registry (SQLite and PostgreSQL), the rollout stage against a real
`slipway serve` with `slipway loadgen` traffic, bad files, and `make demo DEMO_QUICK=1`."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import requests

from conftest import REPO, describe, postgres_database
from rollout_traffic import Loadgen
from serving import Server

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


def test_rollout_stage_on_a_real_server(slipway, run, tmp_path, fashion_mnist):
    """The rollout stage against `slipway serve` (registry catalog) with `slipway loadgen
    --feedback` traffic: a challenger trained longer is promoted (exit 0, production
    moved by the rollout, the stage's execution recorded); one trained for 15 steps
    (~18 points less accurate) is rolled back on quality (exit 3, the reason shown)."""
    ex = copy_example(tmp_path, "fashion-mnist", "pipeline.quick.yaml", "mlp.yaml", "policy.quick.yaml")
    f = ex / "pipeline.quick.yaml"
    _, rep = pipe(run, tmp_path, f)  # fmnist-quick:1, production (no rollout stage yet)
    assert rep["stages"][3]["outputs"]["ref"] == "fmnist-quick:1" and rep["stages"][3]["outputs"]["alias"] == "production"
    env = dict(os.environ, SLIPWAY_HOME=str(tmp_path / "home"), SLIPWAY_LOG="warn")
    srv = Server(slipway, tmp_path, "--poll", "0.2")
    try:
        # the pipeline's stage only decides; traffic is the service's (here loadgen's users)
        f.write_text(f.read_text() + f"  rollout:\n    server: {srv.url}\n    poll: 0.2\n    steps: [50, 100]\n"
                     "    min_requests_per_step: 400\n    max_step_seconds: 60\n    timeout: 90\n")
        (ex / "lenient.yaml").write_text("metric: accuracy\ngate:\n  split: test\n  min: {accuracy: 0.3}\n")
        data = tmp_path / "work" / "data"

        def with_traffic(*args, ok):
            t = Loadgen(slipway, srv.url, "fmnist-quick", data, rps=300, users=300)
            try:
                return pipe(run, tmp_path, f, *args, ok=ok)
            finally:
                t.stop()

        r, rep = with_traffic("--set", "stages.train.steps=300", ok=(0,))
        assert states(rep) == {"prep": "cached", "train": "complete", "eval": "complete", "register": "complete",
                               "rollout": "complete"}, rep
        out = rep["stages"][4]["outputs"]
        assert out["ref"] == "fmnist-quick:2" and out["state"] == "promoted" and "promoted" in out["reason"], out
        show = json.loads(run("registry", "show", "fmnist-quick@production", "--json", env=env).stdout)
        assert show["version"] == 2 and show["alias_history"][-1]["who"] == "rollout", show["alias_history"]
        lin = json.loads(run("registry", "lineage", "fmnist-quick:2", "--json", env=env).stdout)
        ro = [e for e in lin["executions"] if e["stage"] == "rollout"]
        assert [e["state"] for e in ro] == ["complete"] and ro[0]["outputs"]["state"] == "promoted", ro
        rec = requests.get(f"{srv.url}/admin/rollouts/fmnist-quick", timeout=10,
                           headers={"Authorization": f"Bearer {srv.token}"}).json()
        assert [d["action"] for d in rec["decisions"] if d["action"] != "snapshot"] == ["start", "advance", "promote"]
        assert rec["policy"]["steps"] == [50, 100] and rec["policy"]["min_requests_per_step"] == 400, rec["policy"]

        # 15 steps of training: blessed by a lenient gate, rolled back live, production stays
        r, rep = with_traffic("--set", "stages.train.steps=15", "--set", "stages.register.policy=lenient.yaml", ok=(3,))
        assert states(rep)["register"] == "complete" and states(rep)["rollout"] == "refused", rep
        assert rep["failed_stage"] == "rollout" and "rolled back" in rep["error"] and "quality" in rep["error"], rep
        assert "stopped at rollout" in r.stderr and "quality: e-value" in r.stderr, r.stderr
        assert json.loads(run("registry", "show", "fmnist-quick@production", "--json", env=env).stdout)["version"] == 2
        v3 = json.loads(run("registry", "show", "fmnist-quick:3", "--json", env=env).stdout)
        assert v3["state"] == "rolled_back", v3
        lin = json.loads(run("registry", "lineage", "fmnist-quick:3", "--json", env=env).stdout)
        assert [e["state"] for e in lin["executions"] if e["stage"] == "rollout"] == ["failed"], lin["executions"]
    finally:
        assert srv.stop() == 0


def test_make_demo_quick(slipway, tmp_path, fashion_mnist):
    r = subprocess.run(["make", "-s", "-C", str(REPO), "demo", "DEMO_QUICK=1", f"SLIPWAY={slipway}",
                        f"DEMO_DIR={tmp_path / 'demo'}"], capture_output=True, text=True, timeout=240,
                       env=dict(os.environ, SLIPWAY_LOG="warn"))
    assert r.returncode == 0, describe(r)
    out = r.stdout
    for part in ["pipeline fmnist-baseline", "fmnist:1 production: gate passed", "SIGKILL during training",
                 "prep      cached", "resumed at step ", "fmnist:2 blessed", "register  cached", "rollout   ",
                 "== 5. summary", "accuracy   CNN", "latency compared: no", " start    step 0  50%", "/ui/"]:
        assert part in out, (part, out)
    # the CNN (slower per request than the MLP by design) is judged without the latency
    # comparison; its decision comes with the evidence and the number of requests (a
    # rollback is allowed: at 90 steps the CNN is about as accurate as the MLP)
    decision = next(line for line in out.splitlines() if line.startswith("decision   "))
    assert decision.startswith(("decision   promoted after ", "decision   rolled_back after ")), decision
    assert "quality        e-value" in out and "slo_p99        e-value" in out and "latency        e-value" not in out
    assert "traffic    slipway loadgen: " in out
    assert (tmp_path / "demo" / ".slipway" / "registry.db").is_file()
