"""The deployment files: deploy/slurm/train.sbatch run with bash as Slurm would run it
(SLURM_* set, a stand-in `scontrol` on PATH) is preempted with SIGTERM, exits 75 with a
checkpoint, and the requeued attempt resumes and finishes the requested steps;
deploy/k8s/train-job.yaml holds the settings docs/FAULT_TOLERANCE.md relies on (checked
as text: no YAML module is assumed)."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "deploy" / "slurm" / "train.sbatch"
K8S_JOB = REPO / "deploy" / "k8s" / "train-job.yaml"
CNN = REPO / "examples" / "fashion-mnist" / "cnn.yaml"
FASHION = Path("/usr/share/datasets/fashion-mnist")
STEPS = 120  # ~5-12 s in all at one thread; enough that a SIGTERM at 1 s lands mid-run


@pytest.fixture(scope="module")
def dataset(slipway, tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy") / "fmnist"
    r = subprocess.run([slipway, "prep", "--input", f"idx:{FASHION}", "--out", str(out)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def job_env(slipway, dataset, run, tmp_path, restart_count, **extra):
    # a stand-in scontrol that records its arguments
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "scontrol"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLIPWAY": slipway, "SLIPWAY_LOG": "info",
           "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "slipway-train", "SLURM_RESTART_COUNT": str(restart_count),
           "SLURM_CPUS_PER_TASK": "1", "MODEL": str(CNN), "DATA": str(dataset), "RUN": str(run),
           "STEPS": str(STEPS), "THREADS": "1", "CKPT_SECONDS": "2"}
    env.update(extra)
    return env


def preempt(env, after=1.0):
    """Starts the batch script, SIGTERMs the batch shell after `after` seconds (what
    --signal=B:TERM does), returns (exit status, stdout + stderr)."""
    p = subprocess.Popen(["bash", str(SBATCH)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    time.sleep(after)
    assert p.poll() is None, p.communicate()[0]
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    return p.returncode, out


def latest_state(run):
    ckpts = run / "checkpoints"
    return json.loads((ckpts / (ckpts / "latest").read_text().strip() / "state.json").read_text())


def test_sbatch_preempted_then_requeued_finishes(slipway, dataset, tmp_path):
    run = tmp_path / "run"
    # attempt 1 (exec mode): slipway is the batch shell; SIGTERM -> checkpoint, exit 75
    rc, out = preempt(job_env(slipway, dataset, run, tmp_path, 0))
    assert rc == 75, out
    assert "job 4242 attempt 1" in out and "resume" in out
    first = latest_state(run)["step"]
    assert 0 < first < STEPS, out
    # attempt 2 (REQUEUE_ON_75=1): the shell passes SIGTERM on, then requeues the job
    rc, out = preempt(job_env(slipway, dataset, run, tmp_path, 1, REQUEUE_ON_75="1"))
    assert rc == 75, out
    assert "attempt 2" in out and "requeueing job 4242" in out
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    second = latest_state(run)["step"]
    assert first < second < STEPS, out
    # attempt 3: runs to the end
    r = subprocess.run(["bash", str(SBATCH)], cwd=REPO, env=job_env(slipway, dataset, run, tmp_path, 2),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    done = json.loads((run / "run.json").read_text())
    assert done["steps_done"] == STEPS and done["resumed_at_step"] == second
    assert latest_state(run)["step"] == STEPS


def test_sbatch_directives():
    text = SBATCH.read_text()
    for line in ("#SBATCH --requeue", "#SBATCH --signal=B:TERM@120", "#SBATCH --open-mode=append"):
        assert line in text.splitlines()
    assert 'exec "$SLIPWAY"' in text and "--force-new" not in text.replace("Never add --force-new", "")
    r = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_k8s_job_settings():
    lines = [l.split("#")[0].rstrip() for l in K8S_JOB.read_text().splitlines()]
    text = "\n".join(l for l in lines if l.strip())
    assert "\t" not in text
    for needle in ("apiVersion: batch/v1", "kind: Job", "restartPolicy: Never", "podReplacementPolicy: Failed",
                   "backoffLimit:", "terminationGracePeriodSeconds: 120", "claimName: slipway-data",
                   "values: [75]", "type: DisruptionTarget", "- slipway", "- train", "$(RUN)"):
        assert needle in text, needle
    # podFailurePolicy is refused by the API server with restartPolicy: OnFailure
    assert "OnFailure" not in text
