#!/usr/bin/env bash
# Soak test of exact resume (the long form of test_fault_tolerance.py's SIGKILL test):
# a reference run of the Fashion-MNIST CNN, then the same run SIGKILLed KILLS times at
# random moments (startup, mid-step, mid-checkpoint-write, validation) and resumed each
# time, then finished; the final params_sha256 must equal the reference's.
#
#   tests/soak/kill_resume.sh BUILD_DIR [KILLS]        (KILLS default 20)
#
# Environment: STEPS (600), EVERY (checkpoint every N steps, 4), THREADS (1), SEED (the
# $RANDOM seed for the kill times, 1), MIN_MS / MAX_MS (sleep before each kill, 200 /
# 1500 ms), FMNIST (the IDX directory), SOAK_OUT (work dir, default a fresh mktemp -d,
# removed on PASS). Prints one line per kill, then PASS or FAIL with the counts; exit 0
# on PASS, 1 on FAIL.
set -uo pipefail
export LC_ALL=C

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?usage: kill_resume.sh BUILD_DIR [KILLS]}
[[ -d $build ]] || build="$top/$build"
slipway="$(cd "$build" && pwd)/slipway"
[[ -x $slipway ]] || { echo "kill_resume.sh: $slipway not built" >&2; exit 2; }
kills_wanted=${2:-20}
steps=${STEPS:-600} every=${EVERY:-4} threads=${THREADS:-1}
min_ms=${MIN_MS:-200} max_ms=${MAX_MS:-1500}
RANDOM=${SEED:-1}
model="$top/examples/fashion-mnist/cnn.yaml"
work=${SOAK_OUT:-$(mktemp -d /tmp/slipway-soak.XXXXXX)}
mkdir -p "$work"
data="$work/fmnist"
export SLIPWAY_LOG=info

if [[ ! -f $data/manifest.json ]]; then
  "$slipway" prep --input "idx:${FMNIST:-/usr/share/datasets/fashion-mnist}" --out "$data" --overwrite >/dev/null ||
    { echo "kill_resume.sh: prep failed" >&2; exit 2; }
fi
args=(train --model "$model" --data "$data" --steps "$steps" --checkpoint-every-steps "$every" --threads "$threads"
  --log-every 50)
hash_of() { sed -n 's/.*"params_sha256": *"\([0-9a-f]*\)".*/\1/p' "$1/run.json"; }

echo "== reference: $steps steps, checkpoint every $every, $threads thread(s)"
t0=$(date +%s.%N)
"$slipway" "${args[@]}" --out "$work/ref" --force-new >"$work/ref.log" 2>&1 || { echo "FAIL: reference run"; exit 1; }
ref_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
ref=$(hash_of "$work/ref")
echo "reference params_sha256 $ref in ${ref_s}s"

echo "== $kills_wanted SIGKILLs at random moments (sleep $min_ms-$max_ms ms after each start), resume each time"
run="$work/run"
rm -rf "$run"
kills=0 starts=0 finished_early=0 resumes=0 over_keep=0
declare -A resumed_steps=()
while ((kills < kills_wanted)); do
  starts=$((starts + 1))
  "$slipway" "${args[@]}" --out "$run" >"$work/attempt-$starts.log" 2>&1 &
  pid=$!
  ms=$((min_ms + RANDOM % (max_ms - min_ms + 1)))
  sleep "$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')"
  if kill -KILL "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null
    kills=$((kills + 1))
    from=$(sed -n 's/.*resuming from .*(step \([0-9]*\)).*/\1/p' "$work/attempt-$starts.log")
    [[ -n $from ]] && resumes=$((resumes + 1)) && resumed_steps[$from]=1
    latest=$(cat "$run/checkpoints/latest" 2>/dev/null || echo none)
    n_ckpt=$(find "$run/checkpoints" -maxdepth 1 -name 'step-*' 2>/dev/null | wc -l)
    n_tmp=$(find "$run/checkpoints" -maxdepth 1 -name '.tmp-*' 2>/dev/null | wc -l)
    ((n_ckpt > 3)) && over_keep=$((over_keep + 1))
    printf 'kill %2d after %4d ms: resumed from step %-4s latest %s, %d checkpoint(s), %d tmp dir(s)\n' \
      "$kills" "$ms" "${from:-0}" "$latest" "$n_ckpt" "$n_tmp"
  else
    wait "$pid"
    rc=$?
    echo "attempt $starts ended by itself (exit $rc) before its kill at $ms ms"
    if ((rc == 0)); then finished_early=1; break; fi
    echo "FAIL: attempt $starts exited $rc"; sed 's/^/  /' "$work/attempt-$starts.log"; exit 1
  fi
done

echo "== final run to the end"
"$slipway" "${args[@]}" --out "$run" >"$work/final.log" 2>&1 || { echo "FAIL: final run"; cat "$work/final.log"; exit 1; }
got=$(hash_of "$run")
steps_done=$(sed -n 's/.*"steps_done": *\([0-9]*\).*/\1/p' "$run/run.json")
# checkpoints/.tmp-step-N-PID dirs of killed writers left at the end (reported, not judged)
n_final=$(find "$run/checkpoints" -maxdepth 1 -name 'step-*' | wc -l)
tmp_left=$(find "$run/checkpoints" -maxdepth 1 -name '.tmp-*' | wc -l)
tmp_kb=$( (find "$run/checkpoints" -maxdepth 1 -name '.tmp-*' -print0 | xargs -0r du -sk) | awk '{ s += $1 } END { print s + 0 }')
summary="kills $kills/$kills_wanted, starts $((starts + 1)), resumed from a checkpoint $resumes times ($((${#resumed_steps[@]})) distinct steps), finished before the kills ran out: $finished_early, steps_done $steps_done/$steps, stale .tmp dirs left $tmp_left (${tmp_kb} KiB), checkpoints at the end $n_final (--keep 3), kills that left keep+1 for a moment $over_keep (killed between the rename and the pruning; the next save prunes)"
if [[ $got == "$ref" && $steps_done == "$steps" && $n_final -le 3 ]]; then
  echo "PASS: params_sha256 $got equals the reference; $summary"
  [[ -z ${SOAK_OUT:-} ]] && rm -rf "$work"
  exit 0
fi
echo "FAIL: params_sha256 $got, reference $ref; $summary (logs in $work)"
exit 1
