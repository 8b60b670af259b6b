#!/usr/bin/env bash
# make bench-train: training throughput of the Fashion-MNIST MLP and CNN at batch 64
# against PyTorch on the same machine in the same run, and our GEMM/Conv FLOP rate as a
# fraction of OpenBLAS sgemm's (a benchmark, never a test: it prints figures and passes
# no judgement). In one run, back to back: sgemm peak at 1 and 2 threads, then per model
# bench/train_step at 1 and 2 threads and bench/torch_train.py at 1 and 2 threads (the
# CNN also with torch's mkldnn off), then a table.
#
#   bench/train_vs_torch.sh [BUILD_DIR]      (default: build)
#
# Environment: FMNIST (the IDX directory, default /usr/share/datasets/fashion-mnist),
# BENCH_OUT (default bench/out; the prepped dataset is kept in $BENCH_OUT/fmnist and
# reused), STEPS_MLP / STEPS_CNN (timed steps per round, default 300 / 50), WARMUP
# (default 20 / 5), ROUNDS (default 3; the best round counts), TORCH_PYTHON (default
# /usr/bin/python3, which has torch).
set -euo pipefail
export LC_ALL=C

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
[[ -d $build ]] || build="$top/$build"
build=$(cd "$build" && pwd)
slipway="$build/slipway"
train_step="$build/bench/train_step"
python=${TORCH_PYTHON:-/usr/bin/python3}
fmnist=${FMNIST:-/usr/share/datasets/fashion-mnist}
out=${BENCH_OUT:-$top/bench/out}
rounds=${ROUNDS:-3}
for f in "$slipway" "$train_step"; do
  [[ -x $f ]] || { echo "train_vs_torch.sh: $f not built (make build)" >&2; exit 1; }
done
"$python" -c 'import torch' 2>/dev/null || { echo "train_vs_torch.sh: $python has no torch" >&2; exit 1; }
mkdir -p "$out"
data="$out/fmnist"
stamp=$(date +%Y%m%dT%H%M%S)
report="$out/train_vs_torch-$stamp.txt"
jsonl="$out/train_vs_torch-$stamp.jsonl"
exec > >(tee "$report")

# field JSON KEY: a number from a one-line compact JSON object.
field() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" <<<"$1"; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
# record LINE: keeps a measurement in the JSONL file and returns it.
record() { echo "$1" >>"$jsonl"; echo "$1"; }

# ---- machine -------------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
commit=$(git -C "$top" log -1 --format=%h 2>/dev/null || echo unknown)
dirty=$(git -C "$top" status --porcelain --untracked-files=no 2>/dev/null | wc -l)
echo "== machine"
echo "cpu:     ${cpu:-unknown} ($(nproc) cpus)"
echo "kernel:  $(uname -sr)"
echo "slipway: commit $commit$([[ $dirty -gt 0 ]] && echo " + $dirty modified files"), $build"
echo "torch:   $("$python" -c 'import torch; print(torch.__version__)') ($python)"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, before)"
echo

# ---- data ----------------------------------------------------------------------------
if [[ ! -f $data/manifest.json ]]; then
  echo "== preparing $data"
  "$slipway" prep --input "idx:$fmnist" --out "$data" --overwrite >/dev/null
fi

# ---- measurements ----------------------------------------------------------------------
declare -A peak ours torch gf
echo "== sgemm (OpenBLAS), best GFLOP/s over 1024^3 and the MLP's shapes"
for t in 1 2; do
  line=$(record "$("$train_step" --sgemm-peak --threads "$t" --rounds "$rounds")")
  peak[$t]=$(field "$line" peak_gflops)
  echo "threads $t: ${peak[$t]} GFLOP/s   $line"
done
echo

# torch_run MODEL THREADS [ARGS]: PyTorch's step, OpenBLAS (its Linear layers) and
# OpenMP held to the same thread count as torch's own.
torch_run() {
  local model=$1 t=$2
  shift 2
  OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t "$python" "$top/bench/torch_train.py" --model "$model" \
    --threads "$t" --data "$data" --rounds "$rounds" "$@"
}

for model in mlp cnn; do
  if [[ $model == mlp ]]; then steps=${STEPS_MLP:-300} warm=${WARMUP:-20}; else steps=${STEPS_CNN:-50} warm=${WARMUP:-5}; fi
  yaml="$top/examples/fashion-mnist/$model.yaml"
  echo "== $model, batch 64: $warm warm-up steps, best of $rounds rounds of $steps steps"
  for t in 1 2; do
    line=$(record "$("$train_step" --model "$yaml" --data "$data" --threads "$t" --steps "$steps" \
      --warmup "$warm" --rounds "$rounds")")
    ours[$model,$t]=$(field "$line" samples_per_sec)
    gf[$model,$t]=$(field "$line" gflops)
    echo "slipway threads $t: ${ours[$model,$t]} samples/s   $line"
  done
  variants=("")
  [[ $model == cnn ]] && variants+=("--no-mkldnn")
  for v in "${variants[@]}"; do
    for t in 1 2; do
      # shellcheck disable=SC2086 # $v is one flag or nothing
      line=$(record "$(torch_run "$model" "$t" --steps "$steps" --warmup "$warm" $v)")
      torch[$model,$t$v]=$(field "$line" samples_per_sec)
      echo "torch${v:+ $v} threads $t: ${torch[$model,$t$v]} samples/s   $line"
    done
  done
  echo
done

# ---- table -----------------------------------------------------------------------------
# best KEY...: "value key" of the largest torch/ours entry among the keys
best_of_keys() {
  local -n arr=$1
  shift
  local k bk="" bv=0
  for k in "$@"; do
    if [[ -n ${arr[$k]:-} ]] && awk -v a="${arr[$k]}" -v b="$bv" 'BEGIN { exit !(a > b) }'; then bv=${arr[$k]} bk=$k; fi
  done
  echo "$bv $bk"
}
echo "== training samples/s at batch 64 (best round), ratio of bests, FLOP rate vs sgemm"
printf '%-5s %10s %10s %10s %10s %10s %10s %8s %9s %9s %10s\n' model "ours 1T" "ours 2T" "torch 1T" "torch 2T" \
  "torch 1T*" "torch 2T*" "ratio" "GFLOP/s" "sgemm" "% peak"
for model in mlp cnn; do
  read -r ob ok <<<"$(best_of_keys ours "$model,1" "$model,2")"
  read -r tb tk <<<"$(best_of_keys torch "$model,1" "$model,2" "$model,1--no-mkldnn" "$model,2--no-mkldnn")"
  ot=${ok#*,}
  printf '%-5s %10s %10s %10s %10s %10s %10s %8s %9s %9s %10s\n' "$model" "${ours[$model,1]}" "${ours[$model,2]}" \
    "${torch[$model,1]}" "${torch[$model,2]}" "${torch[$model,1--no-mkldnn]:--}" "${torch[$model,2--no-mkldnn]:--}" \
    "$(calc '%.2f' "$ob / $tb")" "${gf[$model,$ot]}" "${peak[$ot]}" "$(calc '%.1f' "100 * ${gf[$model,$ot]} / ${peak[$ot]}")"
  printf '{"what":"summary","model":"%s","ours_best":%s,"ours_threads":%s,"torch_best":%s,"torch_config":"%s","ratio":%s,"gflops":%s,"sgemm_peak":%s,"fraction_of_peak":%s}\n' \
    "$model" "$ob" "$ot" "$tb" "$tk" "$(calc '%.4f' "$ob / $tb")" "${gf[$model,$ot]}" "${peak[$ot]}" \
    "$(calc '%.4f' "${gf[$model,$ot]} / ${peak[$ot]}")" >>"$jsonl"
done
echo
echo "ratio: ours at its best thread count / torch at its best configuration; GFLOP/s and % peak:"
echo "ours at that thread count against the sgemm peak at the same count. * = torch's mkldnn off"
echo "(its im2col + GEMM convolution). Targets (issue 3): MLP ratio >= 1.5; CNN ratio >= 2 and >= 50 % of peak."
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (after)"
echo "figures in $report and $jsonl"
