#!/usr/bin/env bash
# Trains configs/tinyshakespeare.toml (stream mode, 2 x 512, variational dropout 0.3, AdamW with
# weight decay 0.2, cosine schedule over 10 epochs) on ../shared's copy of tiny-shakespeare, then
# measures the validation loss (last 10% of the text) with `trainer eval` in both modes and
# prints a 500-character sample.
#
#   scripts/tinyshakespeare-quality.sh [--set KEY=VALUE]...
#
# The settings override the config's, e.g. `--set model.dropout=0.5 --set training.epochs=20`.
set -euo pipefail
cd "$(dirname "$0")/.."
text=../shared/datasets/tinyshakespeare.txt
run=runs/tinyshakespeare
cargo build --release -p trainer >&2
sets=(--set "data.path=\"$text\"" "$@")
valid=$(mktemp --suffix=.txt)
trap 'rm -f "$valid"' EXIT
python3 -c "import sys; t = open(sys.argv[1], encoding='utf-8').read(); open(sys.argv[2], 'w', encoding='utf-8').write(t[int(len(t) * 0.9):])" "$text" "$valid"
start=$(date +%s)
target/release/trainer --config configs/tinyshakespeare.toml --run "$run" --force --no-tui "${sets[@]}" \
  | grep -E "^(epoch [0-9]+/[0-9]+ done|training.time_limit|best epoch)"
echo "wall time: $(( $(date +%s) - start )) s"
target/release/trainer eval --run "$run" --text "$valid" --mode stream
target/release/trainer eval --run "$run" --text "$valid" --mode windows
target/release/trainer generate --run "$run" --length 500 --seed 7
