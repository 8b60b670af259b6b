#!/usr/bin/env bash
# make bench-infer: inference latency at batch 1 and throughput at batch 256 of the
# Fashion-MNIST MLP and CNN, our engine (bench/infer_onnx) against ONNX Runtime
# (onnxruntime-node, bench/ort_infer.js) on the same model.onnx, in one run (a benchmark,
# never a test: it prints figures and passes no judgement). Per model, batch and thread
# count (1, 2), ours and ORT back to back, then a table.
#
#   bench/infer_vs_ort.sh [BUILD_DIR]      (default: build)
#
# The models: a short training run of examples/fashion-mnist/{mlp,cnn}.yaml (50 steps;
# the weights do not matter for speed) into $BENCH_OUT/infer-{mlp,cnn}, whose
# model.onnx both engines load. ORT's figures are timed inside node around
# `await session.run(...)`, so they include the JS call.
#
# Environment: FMNIST (the IDX directory, default /usr/share/datasets/fashion-mnist),
# BENCH_OUT (default bench/out; the prepped dataset is kept in $BENCH_OUT/fmnist and
# reused), ORT_DIR (default $BENCH_OUT/ort: onnxruntime-node@1.30.0 is installed there
# with npm --ignore-scripts unless present), ITERS_LAT / WARMUP_LAT (timed / untimed
# runs at batch 1, default 2000 / 200), ITERS_MLP / ITERS_CNN (timed runs at batch 256,
# default 300 / 40), WARMUP_TPUT (default 10), RETRAIN=1 (train the models again).
set -euo pipefail
export LC_ALL=C

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
[[ -d $build ]] || build="$top/$build"
build=$(cd "$build" && pwd)
slipway="$build/slipway"
infer="$build/bench/infer_onnx"
fmnist=${FMNIST:-/usr/share/datasets/fashion-mnist}
out=${BENCH_OUT:-$top/bench/out}
ort_version=1.30.0
iters_lat=${ITERS_LAT:-2000} warm_lat=${WARMUP_LAT:-200}
warm_tput=${WARMUP_TPUT:-10}
for f in "$slipway" "$infer"; do
  [[ -x $f ]] || { echo "infer_vs_ort.sh: $f not built (make build)" >&2; exit 1; }
done
command -v node >/dev/null || { echo "infer_vs_ort.sh: node not found" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
ort_dir=${ORT_DIR:-$out/ort}
data="$out/fmnist"
stamp=$(date +%Y%m%dT%H%M%S)
report="$out/infer_vs_ort-$stamp.txt"
jsonl="$out/infer_vs_ort-$stamp.jsonl"
exec > >(tee "$report")

# field JSON KEY: a number from a one-line compact JSON object.
field() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" <<<"$1"; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
# record MODEL LINE: keeps a measurement (tagged with its model) in the JSONL file.
record() { echo "{\"model\":\"$1\",${2#\{}" >>"$jsonl"; echo "$2"; }

# ---- set-up: data, models, ONNX Runtime (not timed) -----------------------------------
if [[ ! -f $data/manifest.json ]]; then
  echo "== preparing $data"
  "$slipway" prep --input "idx:$fmnist" --out "$data" --overwrite >/dev/null
fi
for model in mlp cnn; do
  run="$out/infer-$model"
  if [[ ${RETRAIN:-0} == 1 || ! -f $run/model.onnx ]]; then
    echo "== training $model briefly (50 steps) for $run/model.onnx"
    "$slipway" train --model "$top/examples/fashion-mnist/$model.yaml" --data "$data" --out "$run" \
      --steps 50 --force-new >/dev/null 2>"$out/infer-$model.train.log" ||
      { cat "$out/infer-$model.train.log" >&2; exit 1; }
  fi
done
pkg="$ort_dir/node_modules/onnxruntime-node/package.json"
if ! [[ -f $pkg ]] || ! grep -q "\"version\": \"$ort_version\"" "$pkg"; then
  echo "== installing onnxruntime-node@$ort_version into $ort_dir"
  mkdir -p "$ort_dir"
  npm install --ignore-scripts --no-audit --no-fund --prefix "$ort_dir" "onnxruntime-node@$ort_version" >/dev/null ||
    { echo "infer_vs_ort.sh: cannot install onnxruntime-node@$ort_version with npm" >&2; exit 1; }
fi
export NODE_PATH="$ort_dir/node_modules"

# ---- machine ---------------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
commit=$(git -C "$top" log -1 --format=%h 2>/dev/null || echo unknown)
dirty=$(git -C "$top" status --porcelain --untracked-files=no 2>/dev/null | wc -l)
echo "== machine"
echo "cpu:     ${cpu:-unknown} ($(nproc) cpus)"
echo "kernel:  $(uname -sr)"
echo "slipway: commit $commit$([[ $dirty -gt 0 ]] && echo " + $dirty modified files"), $build"
echo "ort:     onnxruntime-node $ort_version (node $(node --version)), $ort_dir"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, before)"
echo

# ---- measurements ------------------------------------------------------------------------
declare -A p50 p99 sps
for model in mlp cnn; do
  onnx="$out/infer-$model/model.onnx"
  if [[ $model == mlp ]]; then iters_tput=${ITERS_MLP:-300}; else iters_tput=${ITERS_CNN:-40}; fi
  for b in 1 256; do
    if [[ $b == 1 ]]; then iters=$iters_lat warm=$warm_lat; else iters=$iters_tput warm=$warm_tput; fi
    echo "== $model, batch $b: $warm warm-up runs, $iters timed"
    for t in 1 2; do
      # ours, then ORT, back to back; OpenBLAS's and OpenMP's own pools held to T too.
      line=$(record "$model" "$(OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t "$infer" "$onnx" --batch "$b" \
        --threads "$t" --iters "$iters" --warmup "$warm")")
      p50[ours,$model,$b,$t]=$(field "$line" p50_ms)
      p99[ours,$model,$b,$t]=$(field "$line" p99_ms)
      sps[ours,$model,$b,$t]=$(field "$line" samples_per_sec)
      echo "slipway threads $t: $line"
      line=$(record "$model" "$(OMP_NUM_THREADS=$t node "$top/bench/ort_infer.js" "$onnx" --batch "$b" \
        --threads "$t" --iters "$iters" --warmup "$warm")")
      p50[ort,$model,$b,$t]=$(field "$line" p50_ms)
      p99[ort,$model,$b,$t]=$(field "$line" p99_ms)
      sps[ort,$model,$b,$t]=$(field "$line" samples_per_sec)
      echo "ort     threads $t: $line"
    done
  done
  echo
done

# ---- table -------------------------------------------------------------------------------
us() { calc '%.1f' "$1 * 1000"; }
echo "== inference: latency at batch 1 (p50 / p99, µs) and throughput at batch 256 (samples/s)"
echo
echo "| model | threads | ours b1 p50 / p99 µs | ORT b1 p50 / p99 µs | latency ratio (ORT p50 / ours) | ours b256 samples/s | ORT b256 samples/s | throughput ratio (ours / ORT) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
declare -A best_lat best_tput
for model in mlp cnn; do
  for t in 1 2; do
    lat=$(calc '%.2f' "${p50[ort,$model,1,$t]} / ${p50[ours,$model,1,$t]}")
    tput=$(calc '%.2f' "${sps[ours,$model,256,$t]} / ${sps[ort,$model,256,$t]}")
    echo "| ${model^^} | $t | $(us "${p50[ours,$model,1,$t]}") / $(us "${p99[ours,$model,1,$t]}") |" \
      "$(us "${p50[ort,$model,1,$t]}") / $(us "${p99[ort,$model,1,$t]}") | $lat |" \
      "$(calc '%.0f' "${sps[ours,$model,256,$t]}") | $(calc '%.0f' "${sps[ort,$model,256,$t]}") | $tput |"
  done
  # best thread count on each side
  o1=${p50[ours,$model,1,1]} o2=${p50[ours,$model,1,2]} r1=${p50[ort,$model,1,1]} r2=${p50[ort,$model,1,2]}
  best_lat[$model]=$(calc '%.2f' "($r1 < $r2 ? $r1 : $r2) / ($o1 < $o2 ? $o1 : $o2)")
  o1=${sps[ours,$model,256,1]} o2=${sps[ours,$model,256,2]} r1=${sps[ort,$model,256,1]} r2=${sps[ort,$model,256,2]}
  best_tput[$model]=$(calc '%.2f' "($o1 > $o2 ? $o1 : $o2) / ($r1 > $r2 ? $r1 : $r2)")
  echo "{\"model\":\"$model\",\"latency_ratio_best\":${best_lat[$model]},\"throughput_ratio_best\":${best_tput[$model]}}" >>"$jsonl"
done
echo
for model in mlp cnn; do
  echo "${model^^} best vs best (each at its better thread count): latency ratio ${best_lat[$model]}," \
    "throughput ratio ${best_tput[$model]}"
done
echo
echo "ratios > 1: we are faster (latency: ORT's p50 / ours; throughput: ours / ORT's samples/s)."
echo "ORT's times are taken in node around await session.run() and include the JS call."
echo "Target (issue 4): >= 1.0 on both, for both models."
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (after)"
echo "figures in $report and $jsonl"
