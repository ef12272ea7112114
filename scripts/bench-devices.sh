#!/usr/bin/env bash
# Data-parallel training on the CPU: `trainer bench` of the default model on tiny-shakespeare
# with one device at batch 32 and with two (`--devices 2`, two worker threads) at batch 16
# each, the same 32 windows per step, alternating for ROUNDS rounds (default 3); prints each
# round's step times and the medians.
#
#   scripts/bench-devices.sh            (BIN, TEXT, ROUNDS, STEPS as in bench-vs-pytorch.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release/trainer}
text=${TEXT:-../shared/datasets/tinyshakespeare.txt}
[ -x "$bin" ] || cargo build --release -p trainer >&2
bench() {
  "$bin" bench --config configs/default.toml --set "data.path=\"$text\"" \
    --steps "${STEPS:-10}" --warmup 3 --sample-length 200 "$@" |
    python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["train_step_ms_median"], r["simd"])'
}
one=() two=()
for round in $(seq "${ROUNDS:-3}"); do
  read -r ms simd < <(bench --devices 1 --set training.batch_size=32) && one+=("$ms")
  read -r ms simd < <(bench --devices 2 --set training.batch_size=16) && two+=("$ms")
  echo "round $round: one device ${one[-1]} ms, two devices ${two[-1]} ms per step of 32 windows ($simd)"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median: one device $(median "${one[@]}") ms, two devices $(median "${two[@]}") ms ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $simd)"
