#!/usr/bin/env bash
# Distributed training over MPI (issue 6; a benchmark, never a test: it prints figures
# and passes no judgement). On the Fashion-MNIST MLP (examples/fashion-mnist/mlp.yaml,
# global batch 64, one engine thread per rank), back to back on this machine:
#
# 1. scaling: sync training for STEPS steps at 1, 2 and 4 ranks: samples/s (run.json,
#    the whole loop) and, from rank 0's per-rank lines in metrics.jsonl, the mean step
#    time split into compute (forward + backward), wait (the step's flags allreduce:
#    waiting for the slowest rank) and allreduce (the gradient buckets); the
#    communication share is (wait + allreduce) / step;
# 2. stragglers: 4 ranks, rank 3 slowed by SLOW_MS per step (--debug-slow-*), in plain
#    sync and with one backup worker, each with and without the straggler: rank 0's
#    mean step time and the gradients each rank had dropped;
# 3. async: 4 ranks (rank 0 the parameter server), with and without the straggler:
#    updates/s, the staleness histogram, the workers' mean compute and wait per gradient;
# 4. async with the CNN (examples/fashion-mnist/cnn.yaml, CNN_STEPS updates): workers
#    that compute ~50x longer per batch, so the server is idle between gradients.
#
# Every rank shares the 2 cores of this machine (mpirun --oversubscribe), with whatever
# else runs: these are figures of communication cost and mechanism, not of speed-up.
# Each configuration runs ROUNDS times, interleaved; the figures are the medians.
#
#   bench/dist_scaling.sh [BUILD_DIR]       (default: build)
#
# Environment: STEPS (400), SLOW_MS (20), ROUNDS (3), CNN_STEPS (90), FMNIST, BENCH_OUT (bench/out; the prepped
# dataset is kept in $BENCH_OUT/fmnist and reused), ONLY (a pattern: run only the
# configurations whose name matches it, e.g. ONLY=async; the CNN part runs when it matches "cnn").
set -euo pipefail
export LC_ALL=C OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
[[ -d $build ]] || build="$top/$build"
build=$(cd "$build" && pwd)
slipway="$build/slipway"
[[ -x $slipway ]] || { echo "dist_scaling.sh: $slipway not built (cmake --build build)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "dist_scaling.sh: mpirun not found (apt install openmpi-bin)" >&2; exit 1; }
steps=${STEPS:-400} slow=${SLOW_MS:-20} rounds=${ROUNDS:-3}
out=${BENCH_OUT:-$top/bench/out}
mkdir -p "$out"
data="$out/fmnist"
model="$top/examples/fashion-mnist/mlp.yaml"
stamp=$(date +%Y%m%dT%H%M%S)
work="$out/dist-$stamp"
report="$out/dist_scaling-$stamp.txt"
mkdir -p "$work"
exec > >(tee "$report")

if [[ ! -f $data/manifest.json ]]; then
  "$slipway" prep --input "idx:${FMNIST:-/usr/share/datasets/fashion-mnist}" --out "$data" >/dev/null
fi
echo "slipway distributed training, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo '?'), $(mpirun --version | head -1)"
echo "MLP 784-256-128-10, global batch 64, $steps steps per run, 1 engine thread per rank"

train() { # NAME NP ARGS...
  local name=$1 np=$2
  shift 2
  mpirun --oversubscribe --bind-to none -np "$np" "$slipway" train --model "$model" --data "$data" \
    --out "$work/$name" --steps "$steps" --log-every 50 --checkpoint-every-steps 1000000 "$@" >/dev/null 2>"$work/$name.err"
}
cnn_steps=${CNN_STEPS:-90}

summary() { # NAME: one line of figures (medians over the rounds) from run.json and the per-rank lines
  /usr/bin/python3 - "$work" "$1" "$rounds" <<'EOF'
import json, statistics, sys
from pathlib import Path
work, name, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
runs, figs = [], []
for i in range(rounds):
    d = work / f"{name}-r{i}"
    run = json.loads((d / "run.json").read_text())
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    runs.append((run, [m for m in lines if m.get("split") == "rank"]))
def med(f):
    return statistics.median(f(run, ranks) for run, ranks in runs)
def mean_of(ranks, r, k):
    ms = [m for m in ranks if m["rank"] == r]
    n = sum(m["gradients"] for m in ms)
    return sum(m[k] * m["gradients"] for m in ms) / n if n else 0.0
def mean(r, k):
    return med(lambda run, ranks: mean_of(ranks, r, k))
run = runs[len(runs) // 2][0]
d = Path(name)
dist = run.get("dist", {})
nr = dist.get("ranks", 1)
step, comp, wait, ar = (mean(0, k) * 1000 for k in ("step_time", "compute_time", "wait_time", "allreduce_time"))
s = f"{d.name:14s} {med(lambda run, ranks: run['samples_per_sec']):7.0f} samples/s"
if nr > 1:
    s += f"  step {step:6.2f} ms = compute {comp:5.2f} + wait {wait:5.2f} + allreduce {ar:5.2f}"
    if dist.get("mode") == "sync" and not dist.get("backup_workers"):
        s += f"  (communication {100 * (wait + ar) / step:4.1f}%)"
    s += f"  kept {dist.get('kept_per_rank')} dropped {dist.get('dropped_per_rank')} (round {len(runs) // 2 + 1})"
    if "staleness_histogram" in dist:
        h = dist["staleness_histogram"]
        w = [(mean(r, 'compute_time') * 1000, mean(r, 'wait_time') * 1000) for r in range(1, nr)]
        s += f"  staleness {h}  workers' compute/wait per gradient " + " ".join(f"{c:.2f}/{x:.2f}" for c, x in w) + " ms"
        s += f"  updates/s {med(lambda run, ranks: run['steps_done'] / run['seconds']):.0f}"
print(s)
EOF
}

configs=(
  "sync-np1 1" "sync-np2 2" "sync-np4 4"
  "sync-fast 4" "sync-slow 4 --debug-slow-rank 3 --debug-slow-ms $slow"
  "backup-fast 4 --backup-workers 1" "backup-slow 4 --backup-workers 1 --debug-slow-rank 3 --debug-slow-ms $slow"
  "async-np2 2 --dist async"
  "async-fast 4 --dist async" "async-slow 4 --dist async --debug-slow-rank 3 --debug-slow-ms $slow"
)
only=${ONLY:-}
picked() { [[ -z $only || $1 == *$only* ]]; }
for ((i = 0; i < rounds; i++)); do
  for c in "${configs[@]}"; do
    read -r -a a <<<"$c"
    picked "${a[0]}" || continue
    train "${a[0]}-r$i" "${a[@]:1}"
  done
done
show() { for n in "$@"; do picked "$n" && summary "$n"; done; return 0; }
echo
echo "== 1. sync scaling"
show sync-np1 sync-np2 sync-np4
echo
echo "== 2. stragglers (4 ranks; rank 3 sleeps $slow ms per step)"
show sync-fast sync-slow backup-fast backup-slow
echo
echo "== 3. async (2 ranks: a parameter server and 1 worker; 4 ranks: and 3 workers)"
show async-np2 async-fast async-slow
echo
echo "== 4. async with the CNN (4 ranks, $cnn_steps updates)"
if picked cnn-async; then
  for ((i = 0; i < rounds; i++)); do
    model="$top/examples/fashion-mnist/cnn.yaml" steps=$cnn_steps train "cnn-async-r$i" 4 --dist async
  done
  summary cnn-async
fi
echo
echo "report: $report; runs in $work"
