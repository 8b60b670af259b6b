#!/usr/bin/env bash
# The speech example at full size: 120 espeak-ng voices x 10 digits x 3 speeds x 3
# pitches (10,800 files) with white noise at 20 dB SNR, split 5 ways by voice (24 voices
# held out each time); the small CNN is trained on the other 96 voices and tested on the
# held-out ones. Passes when the mean test accuracy over the 5 splits is >= 95%.
# usage: examples/speech-digits/run_full.sh [WORKDIR]   (SLIPWAY: the binary, default
# build/slipway; SNR, FOLDS, JOBS override the settings)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
slipway=${SLIPWAY:-$root/build/slipway}
work=${1:-$root/build/examples/speech-digits}
snr=${SNR:-20}
folds=${FOLDS:-5}
export SLIPWAY_LOG=${SLIPWAY_LOG:-warn}
mkdir -p "$work"
start=$(date +%s)
/usr/bin/python3 "$here/make_data.py" --out "$work/data" --snr "$snr" --folds "$folds" --jobs "${JOBS:-$(nproc)}"
results=()
for k in $(seq 1 "$folds"); do
  d="$work/data/fold-$k"
  "$slipway" prep --input "wav:$d/train" --test-input "$d/test" --split train=0.9,val=0.1 \
    --out "$work/ds-$k" --overwrite > /dev/null
  rm -rf "$work/run-$k"
  "$slipway" train --model "$here/model.yaml" --data "$work/ds-$k" --out "$work/run-$k" > /dev/null
  "$slipway" eval --model "$work/run-$k" --data "$work/ds-$k" --split test --json > "$work/eval-$k.json"
  results+=("$work/eval-$k.json")
  echo "fold $k: $(/usr/bin/python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); print(e["examples"], "test files, accuracy", e["metrics"]["accuracy"])' "$work/eval-$k.json")"
done
/usr/bin/python3 - "$(( $(date +%s) - start ))" "$snr" "${results[@]}" <<'PY'
import json, sys
secs, snr, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
acc = [json.load(open(f))["metrics"]["accuracy"] for f in files]
mean = sum(acc) / len(acc)
print(f"speech-digits: {len(acc)} held-out-voice splits at {snr} dB SNR, accuracy "
      + ", ".join(f"{a:.4f}" for a in acc)
      + f"; mean {mean:.4f} (target >= 0.95), min {min(acc):.4f}; {secs} s")
sys.exit(0 if mean >= 0.95 else 1)
PY
