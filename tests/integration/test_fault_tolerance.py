"""Fault-tolerant training: a run killed with SIGKILL at random moments and resumed
each time ends with the same params_sha256 as the same run uninterrupted; a damaged
newest checkpoint is skipped with a warning; SIGTERM checkpoints and exits 75, and the
next run finishes the exact number of steps; the supervisor (--max-restarts) survives
three kills of its child; another config is refused unless --force-new."""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")
CNN = REPO / "examples" / "fashion-mnist" / "cnn.yaml"
STEPS = 60
ARGS = ["--steps", str(STEPS), "--checkpoint-every-steps", "4", "--threads", "1", "--log-every", "10"]


def run(*args, timeout=600):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          env={**os.environ, "SLIPWAY_LOG": "info"}, timeout=timeout)


def start(*args):
    return subprocess.Popen([str(a) for a in args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SLIPWAY_LOG": "info"})


@pytest.fixture(scope="module")
def dataset(slipway, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "fmnist"
    r = run(slipway, "prep", "--input", f"idx:{FASHION}", "--out", out)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def reference(slipway, dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "ref"
    t0 = time.monotonic()
    r = run(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, *ARGS)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "run.json").read_text())["params_sha256"], time.monotonic() - t0


def final_hash(out):
    return json.loads((out / "run.json").read_text())["params_sha256"]


def test_sigkill_at_random_moments_then_resume_is_exact(slipway, dataset, reference, tmp_path):
    ref_hash, seconds = reference
    out = tmp_path / "run"
    rng = random.Random(7)
    kills = 0
    for _ in range(3):
        p = start(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, *ARGS)
        time.sleep(rng.uniform(0.3, 0.8) * seconds / 2)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
    assert kills >= 2
    r = run(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, *ARGS)
    assert r.returncode == 0, r.stderr
    assert final_hash(out) == ref_hash
    assert json.loads((out / "run.json").read_text())["steps_done"] == STEPS
    # never more than --keep checkpoints, and no temporary directory left behind
    names = os.listdir(out / "checkpoints")
    assert len([n for n in names if n.startswith("step-")]) <= 3
    assert not [n for n in names if n.startswith(".tmp")] or kills  # a kill mid-write may leave one: ignored


def test_damaged_newest_checkpoint_is_skipped(slipway, dataset, reference, tmp_path):
    ref_hash, seconds = reference
    out = tmp_path / "run"
    p = start(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, *ARGS, "--keep", "4")
    time.sleep(seconds / 2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    ckpts = sorted(n for n in os.listdir(out / "checkpoints") if n.startswith("step-"))
    assert len(ckpts) >= 2, ckpts
    newest = out / "checkpoints" / ckpts[-1]
    data = bytearray((newest / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x40
    (newest / "model.safetensors").write_bytes(bytes(data))
    if len(ckpts) >= 3:  # one more truncated, and one more with its state deleted
        second = out / "checkpoints" / ckpts[-2]
        blob = (second / "model.safetensors").read_bytes()
        (second / "model.safetensors").write_bytes(blob[: len(blob) // 3])
        (out / "checkpoints" / ckpts[-3] / "state.json").unlink()
    r = run(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, *ARGS, "--keep", "4")
    assert r.returncode == 0, r.stderr
    assert ckpts[-1] in r.stderr and "unusable" in r.stderr
    if len(ckpts) >= 4:  # the previous good one is the one it resumed from
        assert f"resuming from {out / 'checkpoints' / ckpts[-4]}" in r.stderr
    assert final_hash(out) == ref_hash


def test_sigterm_checkpoints_and_exits_75(slipway, dataset, reference, tmp_path):
    ref_hash, seconds = reference
    out = tmp_path / "run"
    p = start(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, *ARGS)
    time.sleep(seconds / 3)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 75, err
    assert "resume" in err
    state = json.loads((out / "checkpoints" / (out / "checkpoints" / "latest").read_text() / "state.json").read_text())
    assert 0 < state["step"] < STEPS
    r = run(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, *ARGS)
    assert r.returncode == 0, r.stderr
    done = json.loads((out / "run.json").read_text())
    assert done["steps_done"] == STEPS and done["resumed_at_step"] == state["step"]
    assert final_hash(out) == ref_hash
    steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(l)["split"] == "train"]
    assert steps[-1] == STEPS


def test_supervisor_survives_three_kills(slipway, dataset, reference, tmp_path):
    ref_hash, seconds = reference
    out = tmp_path / "run"
    p = start(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, "--max-restarts", "5", *ARGS)
    killed = 0
    deadline = time.monotonic() + 300
    while killed < 3 and p.poll() is None and time.monotonic() < deadline:
        time.sleep(seconds / 4)
        kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        if kids:
            os.kill(int(kids[0]), signal.SIGKILL)
            killed += 1
    _, err = p.communicate(timeout=600)
    assert killed == 3, err
    assert p.returncode == 0, err
    assert "killed by signal 9" in err and "restart 3 of 5" in err
    assert final_hash(out) == ref_hash


def test_other_config_refused_unless_force_new(slipway, dataset, reference, tmp_path):
    out = tmp_path / "run"
    r = run(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, *ARGS[:2], "--steps", "3",
            "--threads", "1")
    assert r.returncode == 0, r.stderr
    r = run(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, "--steps", "5", "--threads", "1")
    assert r.returncode == 3 and "--force-new" in r.stderr
    r = run(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, "--steps", "5", "--threads", "1",
            "--force-new")
    assert r.returncode == 0, r.stderr
    # the same config again: already finished, nothing to redo
    r = run(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, "--steps", "5", "--threads", "1")
    assert r.returncode == 0 and "step 5" in r.stderr


def test_young_interval_and_second_signal(slipway, dataset, reference, tmp_path):
    ref_hash, seconds = reference
    out = tmp_path / "auto"
    r = run(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, "--steps", str(STEPS), "--threads", "1",
            "--checkpoint-every-steps", "auto", "--mtbf", "3600")
    assert r.returncode == 0, r.stderr
    assert "Young's interval" in r.stderr
    assert final_hash(out) == ref_hash  # checkpointing never changes the numbers
    # a second signal does not wait for the checkpoint
    p = start(slipway, "train", "--model", CNN, "--data", dataset, "--out", tmp_path / "twice", *ARGS)
    time.sleep(seconds / 3)
    p.send_signal(signal.SIGINT)
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=60)
    assert p.returncode in (75, 128 + signal.SIGINT)


def test_supervisor_stops_on_sigterm_while_waiting_to_restart(slipway, dataset, reference, tmp_path):
    _, seconds = reference
    out = tmp_path / "run"
    p = start(slipway, "train", "--model", CNN, "--data", dataset, "--out", out, "--max-restarts", "5", *ARGS)
    kid = None
    deadline = time.monotonic() + 60
    while not kid and time.monotonic() < deadline:
        time.sleep(0.2)
        kid = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    time.sleep(seconds / 4)
    os.kill(int(kid[0]), signal.SIGKILL)
    time.sleep(0.1)  # inside the supervisor's back-off
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 75, err
    assert "restart 1 of 5" in err
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["status"] == "running"  # stopped, resumable: not finished behind our back
