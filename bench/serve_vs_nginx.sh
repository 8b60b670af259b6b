#!/usr/bin/env bash
# make bench-serve: slipway serve against nginx on the same machine, in one run (a
# benchmark, never a test: it prints figures and passes no judgement).
#
#   (a) :predict requests/s and p50/p99 at batch 1 with 32 connections (wrk, closed
#       loop) for a tiny model (4 features), the Fashion-MNIST MLP in JSON (784 raw
#       pixels a request) and in the v2 binary tensor extension; nginx answers the same
#       POST bodies with a fixed response of the same size from memory (`return 200`):
#       the HTTP ceiling of this machine. Besides requests/s, the CPU time each server
#       spends per request (user + system, from /proc), which a busy shared machine
#       moves much less.
#   (b) dynamic batching: the MLP in JSON at 64 connections, --max-batch 32 against 1.
#   (c) memory: resident set size after 1 and after 50 load/unload cycles of a version.
#
#   bench/serve_vs_nginx.sh [BUILD_DIR]      (default: build)
#
# Environment: FMNIST (IDX dir), BENCH_OUT (default bench/out; the prepped dataset and
# the briefly trained MLP of bench/infer_vs_ort.sh are reused from there), SECONDS_RUN
# (wrk duration per measurement, default 10), PORT_BASE (default 18700). Needs wrk and
# nginx (Debian packages; installed here with apt when missing) and python3-torch for
# the tiny model.
set -euo pipefail
export LC_ALL=C

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
[[ -d $build ]] || build="$top/$build"
build=$(cd "$build" && pwd)
slipway="$build/slipway"
fmnist=${FMNIST:-/usr/share/datasets/fashion-mnist}
out=${BENCH_OUT:-$top/bench/out}
dur=${SECONDS_RUN:-10}
port=${PORT_BASE:-18700}
[[ -x $slipway ]] || { echo "serve_vs_nginx.sh: $slipway not built (make build)" >&2; exit 1; }
for tool in wrk nginx; do
  if ! command -v $tool >/dev/null && ! [[ -x /usr/sbin/$tool ]]; then
    echo "== installing $tool" >&2
    SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get install -y -q --no-install-recommends $tool >/dev/null
  fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work="$out/serve"
mkdir -p "$work"
stamp=$(date +%Y%m%dT%H%M%S)
report="$out/serve_vs_nginx-$stamp.txt"
exec > >(tee "$report")

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# ---- set-up (not timed): models, bodies, nginx config ---------------------------------
data="$out/fmnist"
if [[ ! -f $data/manifest.json ]]; then
  echo "== preparing $data"
  "$slipway" prep --input "idx:$fmnist" --out "$data" --overwrite >/dev/null
fi
mlp="$out/infer-mlp/model.onnx"
if [[ ! -f $mlp ]]; then
  echo "== training the MLP briefly (50 steps) for $mlp"
  "$slipway" train --model "$top/examples/fashion-mnist/mlp.yaml" --data "$data" --out "$out/infer-mlp" \
    --steps 50 --force-new >/dev/null 2>"$work/train.log" || { cat "$work/train.log" >&2; exit 1; }
fi
/usr/bin/python3 - "$work" "$fmnist" <<'EOF'
import gzip, json, struct, sys
import torch
work, fmnist = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
tiny = torch.nn.Linear(4, 3)
tiny.eval()
torch.onnx.export(tiny, (torch.randn(1, 4),), f"{work}/tiny.onnx", opset_version=13, input_names=["x"],
                  output_names=["out"], dynamic_axes={"x": {0: "N"}, "out": {0: "N"}})
open(f"{work}/tiny.json", "w").write(json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}))
with gzip.open(f"{fmnist}/t10k-images-idx3-ubyte.gz") as f:
    f.read(16)
    px = list(f.read(784))
open(f"{work}/mlp.json", "w").write(json.dumps({"instances": [px]}))
head = json.dumps({"inputs": [{"name": "image", "shape": [1, 784], "datatype": "FP32",
                               "parameters": {"binary_data_size": 784 * 4}}],
                   "outputs": [{"name": "", "parameters": {"binary_data": True}}]})
open(f"{work}/mlp.head", "w").write(head)
EOF
# the MLP's input and output names, from the server itself
cat >"$work/body.lua" <<'EOF'
local f = io.open(os.getenv("BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = os.getenv("CTYPE") or "application/json"
local hl = os.getenv("HL")
if hl and hl ~= "" then wrk.headers["Inference-Header-Content-Length"] = hl end
EOF

start_server() { # PORT FLAGS... ; waits until ready
  local p=$1; shift
  SLIPWAY_HOME="$work/home" SLIPWAY_LOG=warn "$slipway" serve --listen "127.0.0.1:$p" "$@" >"$work/serve-$p.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$p/v2/health/ready" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "slipway serve did not start:" >&2; cat "$work/serve-$p.log" >&2; exit 1
}
stop_server() { kill -TERM "$server_pid"; wait "$server_pid" || true; }

# CPU seconds (user + system) of the processes in $cpu_pids: on a shared machine the CPU
# a request costs the server moves much less than requests/s do
cpu_pids=
cpu_now() { local t=0 p; for p in $cpu_pids; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }

# wrk_run URL BODY [HL] [CTYPE] [CONNS]: prints "rps p50_ms p99_ms non2xx cpu_us_per_request"
wrk_run() {
  local res c0 c1 n
  c0=$(cpu_now)
  res=$(BODY=$2 HL=${3:-} CTYPE=${4:-application/json} wrk -t2 -c"${5:-32}" -d"${dur}s" --latency -s "$work/body.lua" "$1")
  c1=$(cpu_now)
  n=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$res")
  local rps p50 p99 bad
  rps=$(sed -n 's/^Requests\/sec: *//p' <<<"$res")
  p50=$(awk '$1=="50%" {v=$2; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) sub("ms","",v); else if (v ~ /s$/) {sub("s","",v); v*=1000}; print v}' <<<"$res")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) sub("ms","",v); else if (v ~ /s$/) {sub("s","",v); v*=1000}; print v}' <<<"$res")
  bad=$(sed -n 's/^ *Non-2xx or 3xx responses: *//p' <<<"$res")
  echo "$rps $p50 $p99 ${bad:-0} $(awk "BEGIN{printf \"%.1f\", ($c1 - $c0) * 1e6 / $(getconf CLK_TCK) / $n}")"
}

# ---- machine ----------------------------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
commit=$(git -C "$top" log -1 --format=%h 2>/dev/null || echo unknown)
echo "== serve_vs_nginx $stamp, commit $commit, $(nproc) cores ($cpu)"
echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg) (a shared machine: figures move with it)"
echo "== $("$NGINX" -v 2>&1), $(wrk -v 2>&1 | head -1)"

# ---- response sizes, so nginx answers with as many bytes ----------------------------------
sp=$port
start_server $sp --model-file "tiny=$work/tiny.onnx" --model-file "mlp=$mlp"
in_name=$(curl -s "http://127.0.0.1:$sp/v2/models/mlp" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["inputs"][0]["name"])')
out_name=$(curl -s "http://127.0.0.1:$sp/v2/models/mlp" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["outputs"][0]["name"])')
/usr/bin/python3 - "$work" "$in_name" "$out_name" <<'EOF'
import json, struct, sys
work, in_name, out_name = sys.argv[1:4]
head = json.loads(open(f"{work}/mlp.head").read())
head["inputs"][0]["name"] = in_name
head["outputs"][0]["name"] = out_name
h = json.dumps(head).encode()
px = json.load(open(f"{work}/mlp.json"))["instances"][0]
open(f"{work}/mlp.bin", "wb").write(h + struct.pack("<784f", *px))
open(f"{work}/mlp.hl", "w").write(str(len(h)))
EOF
hl=$(cat "$work/mlp.hl")
size_tiny=$(curl -s -o /dev/null -w '%{size_download}' --data-binary @"$work/tiny.json" "http://127.0.0.1:$sp/v1/models/tiny:predict")
size_json=$(curl -s -o /dev/null -w '%{size_download}' --data-binary @"$work/mlp.json" "http://127.0.0.1:$sp/v1/models/mlp:predict")
size_bin=$(curl -s -o /dev/null -w '%{size_download}' -H "Inference-Header-Content-Length: $hl" --data-binary @"$work/mlp.bin" "http://127.0.0.1:$sp/v2/models/mlp/infer")
stop_server
echo "== response bodies: tiny $size_tiny B, MLP JSON $size_json B, MLP binary $size_bin B"

np=$((port + 1))
mkdir -p "$work/nginx"
fixed() { /usr/bin/python3 -c "import sys; n=int(sys.argv[1]); print(('{\"predictions\":[' + '0'*n)[:n-2] + ']}')" "$1"; }
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  client_max_body_size 16m;
  client_body_buffer_size 64k;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:$np;
    location = /tiny { default_type application/json; return 200 '$(fixed "$size_tiny")'; }
    location = /mlp-json { default_type application/json; return 200 '$(fixed "$size_json")'; }
    location = /mlp-bin { default_type application/octet-stream; return 200 '$(fixed "$size_bin")'; }
  }
}
EOF
"$NGINX" -c "$work/nginx/nginx.conf" -p "$work/nginx" &
ngx_pid=$!
pids+=("$ngx_pid")
sleep 1

# ---- (a) -------------------------------------------------------------------------------------
printf '\n(a) batch 1, 32 connections, %s s each (wrk -t2)\n' "$dur"
printf '%-12s %11s %7s %7s %7s %11s %7s %7s %7s %6s %6s\n' case slipway_rps p50_ms p99_ms cpu_us nginx_rps p50_ms \
  p99_ms cpu_us rps% cpu%
run_case() { # NAME SLIPWAY_URL NGINX_URL BODY HL CTYPE
  local s n
  cpu_pids=$server_pid
  wrk_run "$2" "$4" "$5" "$6" 32 >/dev/null # warm-up
  s=$(wrk_run "$2" "$4" "$5" "$6" 32)
  cpu_pids=$(pgrep -P "$ngx_pid" | tr '\n' ' ')
  n=$(wrk_run "$3" "$4" "$5" "$6" 32)
  read -r srps sp50 sp99 sbad scpu <<<"$s"
  read -r nrps np50 np99 nbad ncpu <<<"$n"
  printf '%-12s %11.0f %7.3f %7.3f %7.1f %11.0f %7.3f %7.3f %7.1f %5.0f%% %5.0f%%' "$1" "$srps" "$sp50" "$sp99" "$scpu" \
    "$nrps" "$np50" "$np99" "$ncpu" "$(awk "BEGIN{print 100*$srps/$nrps}")" "$(awk "BEGIN{print 100*$ncpu/$scpu}")"
  [[ $sbad == 0 ]] && echo || echo "  ($sbad non-2xx)"
}
start_server $sp --model-file "tiny=$work/tiny.onnx" --model-file "mlp=$mlp"
run_case tiny-json "http://127.0.0.1:$sp/v1/models/tiny:predict" "http://127.0.0.1:$np/tiny" "$work/tiny.json" "" application/json
run_case mlp-json "http://127.0.0.1:$sp/v1/models/mlp:predict" "http://127.0.0.1:$np/mlp-json" "$work/mlp.json" "" application/json
run_case mlp-binary "http://127.0.0.1:$sp/v2/models/mlp/infer" "http://127.0.0.1:$np/mlp-bin" "$work/mlp.bin" "$hl" application/octet-stream
stop_server
kill "$ngx_pid"; wait "$ngx_pid" 2>/dev/null || true

# ---- (b) ---------------------------------------------------------------------------------------
printf '\n(b) dynamic batching, MLP JSON, 64 connections, %s s each\n' "$dur"
printf '%-38s %10s %8s %8s %8s %10s\n' server rps p50_ms p99_ms cpu_us mean_batch
for flags in "--max-batch 1" "--max-batch 32" "--max-batch 32 --batch-timeout-us 200"; do
  # shellcheck disable=SC2086
  start_server $sp --model-file "mlp=$mlp" $flags
  cpu_pids=$server_pid
  wrk_run "http://127.0.0.1:$sp/v1/models/mlp:predict" "$work/mlp.json" "" application/json 64 >/dev/null
  r=$(wrk_run "http://127.0.0.1:$sp/v1/models/mlp:predict" "$work/mlp.json" "" application/json 64)
  read -r rps p50 p99 bad cpu <<<"$r"
  mean=$(curl -s "http://127.0.0.1:$sp/metrics" | awk '/^slipway_batch_size_sum/ {s=$2} /^slipway_batch_size_count/ {c=$2} END {printf "%.2f", s/c}')
  printf '%-38s %10.0f %8.3f %8.3f %8.1f %10s\n' "$flags" "$rps" "$p50" "$p99" "$cpu" "$mean"
  stop_server
done

# ---- (c) ---------------------------------------------------------------------------------------
printf '\n(c) memory over 50 load/unload cycles of the MLP (version 2 beside version 1)\n'
start_server $sp --model-file "mlp=$mlp" --model-file "mlp=$mlp" --label mlp@production=1
token=$(cat "$work/home/admin.token")
rss() { awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status"; }
admin() { curl -sf -X POST -H "Authorization: Bearer $token" -d "{\"version\": 2}" "http://127.0.0.1:$sp/admin/models/mlp/$1" >/dev/null; }
rss0=$(rss)
for i in $(seq 50); do
  admin load
  [[ $i == 1 ]] && mem_v2=$(curl -s "http://127.0.0.1:$sp/metrics" | awk '/^slipway_model_memory_bytes\{model="mlp",version="2"\}/ {print $2}')
  admin unload
  [[ $i == 1 ]] && rss1=$(rss)
  [[ $i == 10 ]] && rss10=$(rss)
done
rss50=$(rss)
stop_server
printf 'version memory (slipway_model_memory_bytes) %s B\n' "$mem_v2"
printf 'RSS: start %s KiB, after 1 cycle %s KiB, after 10 %s KiB, after 50 %s KiB (50 - 1: %+d KiB)\n' \
  "$rss0" "$rss1" "$rss10" "$rss50" "$((rss50 - rss1))"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== report: $report"
