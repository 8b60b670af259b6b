#!/usr/bin/env bash
# make bench: data-pipeline throughput on Fashion-MNIST (a benchmark, never a test; it
# prints figures and passes no judgement). In one run: (a) `slipway prep` time, (b) the
# shards read from the page cache by `cat` and by bench/read_shards in each mode, back to
# back on the same files, (c) a table with the ratio of each mode to cat.
#
#   bench/prep_read.sh [BUILD_DIR]      (default: build)
#
# Environment: FMNIST (the IDX directory, default /usr/share/datasets/fashion-mnist),
# BENCH_OUT (default bench/out), REPEAT (timed runs of cat and read_shards, default 5),
# BENCH_KEEP=1 keeps the prepped dataset in $BENCH_OUT/fashion-mnist, HYPERFINE=none
# times prep with the shell loop even where hyperfine (Debian package) is installed.
# cat and read_shards are always timed by the same shell loop, so their ratio does not
# depend on which tools are installed.
set -euo pipefail
export LC_ALL=C

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
[[ -d $build ]] || build="$top/$build"
build=$(cd "$build" && pwd)
slipway="$build/slipway"
read_shards="$build/bench/read_shards"
fmnist=${FMNIST:-/usr/share/datasets/fashion-mnist}
out=${BENCH_OUT:-$top/bench/out}
repeat=${REPEAT:-5}
for f in "$slipway" "$read_shards"; do
  [[ -x $f ]] || { echo "prep_read.sh: $f not built (make build)" >&2; exit 1; }
done
mkdir -p "$out"
data="$out/fashion-mnist"
stamp=$(date +%Y%m%dT%H%M%S)
report="$out/prep_read-$stamp.txt"
jsonl="$out/prep_read-$stamp.jsonl"
[[ ${BENCH_KEEP:-0} == 1 ]] || trap 'rm -rf "$data"' EXIT
# Everything printed goes to stdout and the report file.
exec > >(tee "$report")

# Seconds since an arbitrary origin; bash's own clock when it has one (no fork to read
# it, so the fork of `date` does not land inside the interval being measured).
now() {
  if [[ -n ${EPOCHREALTIME:-} ]]; then echo "$EPOCHREALTIME"; else date +%s.%N; fi
}
# best_of N CMD...: runs CMD N times, stdout to /dev/null, prints the shortest wall time.
best_of() {
  local n=$1 best="" t0 t1
  shift
  for ((i = 0; i < n; i++)); do
    t0=$(now)
    "$@" >/dev/null
    t1=$(now)
    best=$(awk -v a="$t0" -v b="$t1" -v m="$best" 'BEGIN { d = b - a; print (m == "" || d < m) ? d : m }')
  done
  echo "$best"
}
# field JSON KEY: a number from a one-line JSON object.
field() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" <<<"$1"; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# ---- machine -------------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
crc_hw=$(field "$("$read_shards" --info | sed 's/true/1/; s/false/0/')" crc32c_hw)
fs=$(df -T "$out" | awk 'NR == 2 { print $2 }')
echo "== machine"
echo "cpu:     ${cpu:-unknown} ($(nproc) cpus)"
echo "kernel:  $(uname -sr)"
echo "crc32c:  $([[ $crc_hw == 1 ]] && echo 'SSE4.2 crc32 instruction' || echo 'portable slicing-by-8')"
echo "storage: $fs ($out)"
echo "slipway: $("$slipway" --version 2>/dev/null || echo "$build")"
echo

# ---- (a) prep ------------------------------------------------------------------------
prep=("$slipway" prep --input "idx:$fmnist" --out "$data" --overwrite)
echo "== (a) slipway prep on Fashion-MNIST, best of 3"
"${prep[@]}" >/dev/null # warm-up: the .gz files into the page cache
if [[ ${HYPERFINE:-} != none ]] && command -v hyperfine >/dev/null; then
  timer="hyperfine"
  hyperfine --runs 3 --warmup 0 --style none --export-json "$out/prep-$stamp.json" \
    "$(printf '%q ' "${prep[@]}")" >/dev/null
  prep_s=$(tr -d ' \n' <"$out/prep-$stamp.json" | sed -n 's/.*"min":\([-0-9.eE+]*\).*/\1/p')
else
  timer="shell loop"
  prep_s=$(best_of 3 "${prep[@]}")
fi
examples=$(tr -d ' \n' <"$data/manifest.json" | sed -n 's/.*"counts":{"read":\([0-9]*\).*/\1/p')
gz_bytes=$(cat "$fmnist"/*.gz | wc -c)
raw_bytes=$((examples * 785)) # 28x28 pixels and a label byte per example
prep_line=$(printf '{"what":"prep","timer":"%s","best_s":%s,"examples":%s,"gz_bytes":%s,"raw_bytes":%s}' \
  "$timer" "$prep_s" "$examples" "$gz_bytes" "$raw_bytes")
echo "$prep_line" >>"$jsonl"
echo "timer:   $timer"
echo "time:    $(calc '%.3f' "$prep_s") s for $examples examples"
echo "rate:    $(calc '%.0f' "$examples / $prep_s") examples/s"
echo "input:   $(calc '%.1f' "$gz_bytes / 1e6 / $prep_s") MB/s of .gz ($(calc '%.1f' "$gz_bytes / 1e6") MB)," \
  "$(calc '%.1f' "$raw_bytes / 1e6 / $prep_s") MB/s raw ($(calc '%.1f' "$raw_bytes / 1e6") MB)"
echo

# ---- (b) reading the shards ----------------------------------------------------------
shards=("$data"/*.tfrecord)
shard_bytes=$(cat "${shards[@]}" | wc -c)
echo "== (b) reading ${#shards[@]} shards ($(calc '%.1f' "$shard_bytes / 1e6") MB) from the page cache, best of $repeat"
cat "${shards[@]}" >/dev/null
cat "${shards[@]}" >/dev/null
cat_s=$(best_of "$repeat" cat "${shards[@]}")
cat_mbs=$(calc '%.1f' "$shard_bytes / 1e6 / $cat_s")
printf '{"what":"cat","best_s":%s,"bytes":%s,"mb_s":%s}\n' "$cat_s" "$shard_bytes" "$cat_mbs" >>"$jsonl"
declare -A in_mbs wall_mbs records
for mode in frames examples batches; do
  line=$("$read_shards" --mode "$mode" --repeat "$repeat" "$data")
  echo "$line" >>"$jsonl"
  in_mbs[$mode]=$(field "$line" mb_s)
  records[$mode]=$(field "$line" records)
  # The same program timed from outside like cat: one pass per process, so process
  # start, dataset open and the first page faults count as they do for cat.
  wall_s=$(best_of "$repeat" "$read_shards" --mode "$mode" --repeat 1 "$data")
  wall_mbs[$mode]=$(calc '%.1f' "$shard_bytes / 1e6 / $wall_s")
  printf '{"what":"read_shards-process","mode":"%s","best_s":%s,"mb_s":%s}\n' "$mode" "$wall_s" \
    "${wall_mbs[$mode]}" >>"$jsonl"
done

# ---- (c) table -----------------------------------------------------------------------
echo
echo "== (c) shard reading, MB/s (10^6 bytes/s) and ratio to cat"
printf '%-22s %10s %8s %14s %8s\n' "reader" "MB/s" "x cat" "MB/s (proc)" "x cat"
printf '%-22s %10s %8s %14s %8s\n' "cat" "$cat_mbs" "1.00" "$cat_mbs" "1.00"
for mode in frames examples batches; do
  printf '%-22s %10s %8s %14s %8s\n' "read_shards $mode" "$(calc '%.1f' "${in_mbs[$mode]}")" \
    "$(calc '%.2f' "${in_mbs[$mode]} / $cat_mbs")" "${wall_mbs[$mode]}" \
    "$(calc '%.2f' "${wall_mbs[$mode]} / $cat_mbs")"
done
echo
echo "MB/s: timed inside read_shards (best of $repeat passes in one process);"
echo "MB/s (proc): read_shards --repeat 1 timed from outside, exactly as cat is (best of $repeat)."
echo "records: ${records[frames]} per pass; figures in $report and $jsonl"
