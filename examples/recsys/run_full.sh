#!/usr/bin/env bash
# The recommendation example at full size: 1,000,000 click rows (1000 users, 300 items,
# latent dimension 4) and 50,000 held-out rows; the trained embedding model's test AUC
# must come within 0.02 of the generator's Bayes-optimal AUC.
# usage: examples/recsys/run_full.sh [WORKDIR]   (SLIPWAY: the binary, default build/slipway)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
slipway=${SLIPWAY:-$root/build/slipway}
work=${1:-$root/build/examples/recsys}
mkdir -p "$work"
export SLIPWAY_LOG=${SLIPWAY_LOG:-warn}
start=$(date +%s)
/usr/bin/python3 "$here/make_clicks.py" --out "$work/gen"
"$slipway" prep --input "csv:$work/gen/clicks.csv" --test-input "$work/gen/test.csv" \
  --schema "$work/gen/schema.json" --split train=0.9,val=0.1 --out "$work/ds" --overwrite
rm -rf "$work/run"
"$slipway" train --model "$here/model.yaml" --data "$work/ds" --out "$work/run"
"$slipway" eval --model "$work/run" --data "$work/ds" --split test --json > "$work/eval.json"
/usr/bin/python3 - "$work/eval.json" "$work/gen/truth.json" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
ev, truth, secs = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3])
auc, bayes = ev["metrics"]["auc"], truth["bayes_auc"]
print(f"recsys: {ev['examples']} test rows, model AUC {auc:.4f}, Bayes-optimal AUC {bayes:.4f}, "
      f"gap {bayes - auc:.4f} (target <= 0.02); log-loss {ev['metrics']['log_loss']:.4f} "
      f"(Bayes {truth['bayes_log_loss']:.4f}); {secs} s")
sys.exit(0 if bayes - auc <= 0.02 else 1)
PY
