#!/usr/bin/env bash
# Checkpoint overhead (issue 5; a benchmark, never a test: it prints figures and passes
# no judgement). In one run, back to back on the same machine:
#
# 1. the Fashion-MNIST CNN trained for STEPS steps with periodic checkpoints every
#    INTERVAL seconds (--keep large, so every checkpoint stays and can be counted) and
#    without (--checkpoint-every-steps huge: only the final checkpoint, which both runs
#    write), ROUNDS times in the order with/without, without/with, ...; the overhead is
#    the difference of run.json's "seconds" (the training loop, final validation and
#    final checkpoint included), per extra checkpoint and as a fraction of the time;
# 2. bench/checkpoint_io: the stall one checkpoint costs training (the in-memory
#    snapshot copy; the disk write runs on the writer thread), the write itself and the
#    restore, with the trainer's own code;
# 3. the same bytes written with `dd ... conv=fsync` and read with `cat`, warm and after
#    dropping the page cache (root only; the output says whether it worked).
#
# The default interval is 60 s; a run long enough for several 60 s checkpoints per round
# would take many minutes, so the script measures at INTERVAL (10 s) and extrapolates to
# 60 s: overhead(60 s) = cost per checkpoint / 60 s, with the cost taken both from the
# run difference (noisy: two ~1 min runs differ by more than one checkpoint costs) and
# from checkpoint_io's stall (what training itself waits for).
#
#   bench/checkpoint_overhead.sh [BUILD_DIR]       (default: build)
#
# Environment: STEPS (1000), INTERVAL (10), THREADS (1), ROUNDS (2), FMNIST, BENCH_OUT
# (bench/out; the prepped dataset is kept in $BENCH_OUT/fmnist and reused).
set -euo pipefail
export LC_ALL=C

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
[[ -d $build ]] || build="$top/$build"
build=$(cd "$build" && pwd)
slipway="$build/slipway"
ckio="$build/bench/checkpoint_io"
for f in "$slipway" "$ckio"; do
  [[ -x $f ]] || { echo "checkpoint_overhead.sh: $f not built (cmake --build build)" >&2; exit 1; }
done
steps=${STEPS:-1000} interval=${INTERVAL:-10} threads=${THREADS:-1} rounds=${ROUNDS:-2}
out=${BENCH_OUT:-$top/bench/out}
mkdir -p "$out"
data="$out/fmnist"
model="$top/examples/fashion-mnist/cnn.yaml"
stamp=$(date +%Y%m%dT%H%M%S)
work="$out/checkpoint-$stamp"
report="$out/checkpoint_overhead-$stamp.txt"
jsonl="$out/checkpoint_overhead-$stamp.jsonl"
mkdir -p "$work"
exec > >(tee "$report")

calc() { awk "BEGIN { printf \"$1\", $2 }"; }
field() { sed -n "s/.*\"$2\": *\([-0-9.eE+]*\).*/\1/p" <<<"$1" | head -1; }
now() { date +%s.%N; }

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
commit=$(git -C "$top" log -1 --format=%h 2>/dev/null || echo unknown)
dirty=$(git -C "$top" status --porcelain --untracked-files=no 2>/dev/null | wc -l)
echo "== machine"
echo "cpu:     ${cpu:-unknown} ($(nproc) cpus)"
echo "kernel:  $(uname -sr); $(df -T "$work" | awk 'NR == 2 { print $2 " on " $1 }') for $work"
echo "slipway: commit $commit$([[ $dirty -gt 0 ]] && echo " + $dirty modified files"), $build"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, before)"
echo

if [[ ! -f $data/manifest.json ]]; then
  echo "== preparing $data"
  "$slipway" prep --input "idx:${FMNIST:-/usr/share/datasets/fashion-mnist}" --out "$data" --overwrite >/dev/null
fi

# ---- 1. training with and without periodic checkpoints --------------------------------
# train NAME FLAGS...: one run; prints "seconds checkpoints"
train() {
  local name=$1
  shift
  local dir="$work/$name"
  rm -rf "$dir"
  "$slipway" train --model "$model" --data "$data" --out "$dir" --steps "$steps" --threads "$threads" \
    --log-every 100 --json "$@" >"$dir.json" 2>"$dir.log"
  local s n
  s=$(field "$(tr -d '\n' <"$dir/run.json")" seconds)
  n=$(find "$dir/checkpoints" -maxdepth 1 -name 'step-*' | wc -l)
  echo "{\"what\":\"train\",\"run\":\"$name\",\"steps\":$steps,\"threads\":$threads,\"seconds\":$s,\"checkpoints\":$n}" >>"$jsonl"
  echo "$s $n"
}
echo "== CNN, $steps steps at $threads thread(s): every ${interval}s vs only the final checkpoint, $rounds round(s)"
sum_with=0 sum_without=0 n_with=0 n_without=0
for ((r = 1; r <= rounds; r++)); do
  order=(with without)
  ((r % 2 == 0)) && order=(without with)
  for kind in "${order[@]}"; do
    if [[ $kind == with ]]; then
      read -r s n <<<"$(train "with-$r" --checkpoint-every-seconds "$interval" --keep 1000)"
      sum_with=$(calc '%.4f' "$sum_with + $s") n_with=$((n_with + n))
    else
      read -r s n <<<"$(train "without-$r" --checkpoint-every-steps 1000000000)"
      sum_without=$(calc '%.4f' "$sum_without + $s") n_without=$((n_without + n))
    fi
    printf 'round %d %-8s %8.2f s  %2d checkpoints\n' "$r" "$kind" "$s" "$n"
  done
done
t_with=$(calc '%.4f' "$sum_with / $rounds") t_without=$(calc '%.4f' "$sum_without / $rounds")
extra=$(calc '%.4f' "($n_with - $n_without) / $rounds")
diff=$(calc '%.4f' "$t_with - $t_without")
per_ckpt=$(calc '%.4f' "$diff / $extra")
echo "mean: with $t_with s, without $t_without s; difference $diff s ($(calc '%.2f' "100 * $diff / $t_without") %)" \
  "for $extra extra checkpoints = $(calc '%.1f' "1000 * $per_ckpt") ms each"
echo

# ---- 2. one checkpoint through the trainer's checkpointer ------------------------------
echo "== bench/checkpoint_io: snapshot stall, write and restore of one checkpoint (best of 5)"
io=$(SLIPWAY_LOG=warn "$ckio" --model "$model" --data "$data" --dir "$work/io" --rounds 5 --drop-caches)
echo "$io" >>"$jsonl"
echo "$io"
bytes=$(field "$io" bytes)
stall_ms=$(field "$io" stall_best_ms)
stall_med_ms=$(field "$io" stall_median_ms)
write_s=$(field "$io" write_best_s)
restore_s=$(field "$io" restore_best_s)
cold_s=$(field "$io" restore_cold_s)
dropped=$(sed -n 's/.*"drop_caches":\(true\|false\).*/\1/p' <<<"$io")
mb=$(calc '%.3f' "$bytes / 1e6")
echo

# ---- 3. plain sequential writes and reads of the same size -----------------------------
echo "== dd (write + fsync) and cat (read) of $mb MB, best of 5"
f="$work/plain.bin"
dd_best=1e9 cat_best=1e9
for i in 1 2 3 4 5; do
  rm -f "$f"
  t0=$(now)
  dd if=/dev/zero of="$f" bs="$bytes" count=1 conv=fsync status=none
  t=$(calc '%.6f' "$(now) - $t0")
  dd_best=$(calc '%.6f' "($t < $dd_best) ? $t : $dd_best")
  t0=$(now)
  cat "$f" >/dev/null
  t=$(calc '%.6f' "$(now) - $t0")
  cat_best=$(calc '%.6f' "($t < $cat_best) ? $t : $cat_best")
done
cat_cold=-1
if sync && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
  t0=$(now)
  cat "$f" >/dev/null
  cat_cold=$(calc '%.6f' "$(now) - $t0")
  cold_note="page cache dropped"
else
  cold_note="could not drop the page cache (not root?): no cold figures"
fi
echo "{\"what\":\"plain_io\",\"bytes\":$bytes,\"dd_fsync_best_s\":$dd_best,\"cat_warm_best_s\":$cat_best,\"cat_cold_s\":$cat_cold}" >>"$jsonl"
echo "dd: $dd_best s, cat warm: $cat_best s, cat cold: $cat_cold s ($cold_note)"
echo

# ---- table ------------------------------------------------------------------------------
mbps() { calc '%.0f' "$mb / $1"; }
echo "== checkpoint of the CNN: $mb MB (params, Adam m and v)"
printf '%-34s %10s %10s\n' "" "seconds" "MB/s"
printf '%-34s %10s %10s\n' "checkpoint write (writer thread)" "$write_s" "$(mbps "$write_s")"
printf '%-34s %10s %10s\n' "dd bs=$bytes conv=fsync" "$dd_best" "$(mbps "$dd_best")"
printf '%-34s %10s %10s\n' "checkpoint restore, warm" "$restore_s" "$(mbps "$restore_s")"
printf '%-34s %10s %10s\n' "cat, warm" "$cat_best" "$(mbps "$cat_best")"
if [[ $dropped == true ]]; then
  printf '%-34s %10s %10s\n' "checkpoint restore, cache dropped" "$cold_s" "$(mbps "$cold_s")"
fi
if [[ $cat_cold != -1 ]]; then
  printf '%-34s %10s %10s\n' "cat, cache dropped" "$cat_cold" "$(mbps "$cat_cold")"
fi
echo
echo "== overhead"
echo "measured at every ${interval}s: $(calc '%.2f' "100 * $diff / $t_without") % ($diff s over $t_without s, $extra extra checkpoints)"
echo "extrapolated to the default 60 s: from the run difference $(calc '%.3f' "100 * $per_ckpt / 60") %" \
  "($(calc '%.1f' "1000 * $per_ckpt") ms per checkpoint / 60 s);" \
  "from the stall $(calc '%.4f' "100 * $stall_ms / 1000 / 60") % (best $stall_ms ms, median $stall_med_ms ms / 60 s)"
echo "target (issue 5): under 2 % at the default interval"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (after)"
echo "figures in $report and $jsonl; runs in $work"
