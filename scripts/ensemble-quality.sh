#!/usr/bin/env bash
# An ensemble on tiny-shakespeare: trains one member per seed, one after the other, each
# configs/tinyshakespeare.toml with the 640-unit settings over 8 epochs (2 x 640, dropout 0.4,
# weight decay 0.4) into runs/ensemble/seed-N, then prints each member's training time and
# `trainer eval --mode stream` on the last 10% of the text, the ensemble's (`eval` with every
# member's `--run`, stream and windows), and 500 characters sampled from the ensemble.
#
#   scripts/ensemble-quality.sh SEED [SEED]...     e.g. scripts/ensemble-quality.sh 2 3
#
# TRAIN=0 evaluates members trained before instead of training them.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 SEED [SEED]... (one member per seed)" >&2; exit 2; }
text=../shared/datasets/tinyshakespeare.txt
[ -f "$text" ] || { echo "$0: no text at $text" >&2; exit 2; }
cargo build --release -p trainer >&2
valid=$(mktemp --suffix=.txt)
trap 'rm -f "$valid"' EXIT
python3 -c "import sys; t = open(sys.argv[1], encoding='utf-8').read(); open(sys.argv[2], 'w', encoding='utf-8').write(t[int(len(t) * 0.9):])" "$text" "$valid"
runs=()
total=0
for seed in "$@"; do
    run=runs/ensemble/seed-$seed
    runs+=(--run "$run")
    if [ "${TRAIN:-1}" != 0 ]; then
        start=$(date +%s)
        target/release/trainer --config configs/tinyshakespeare.toml --run "$run" --force --no-tui \
            --set "data.path=\"$text\"" --set model.hidden_dim=640 --set model.dropout=0.4 \
            --set training.weight_decay=0.4 --set training.epochs=8 --set training.seed="$seed" \
            | grep -E "^(epoch [0-9]+/[0-9]+ done|training.time_limit|best epoch)"
        seconds=$(( $(date +%s) - start ))
        total=$(( total + seconds ))
        echo "seed $seed: trained in $seconds s"
    fi
    target/release/trainer eval --run "$run" --text "$valid" --mode stream
done
[ "${TRAIN:-1}" = 0 ] || echo "members trained in $total s"
target/release/trainer eval "${runs[@]}" --text "$valid" --mode stream
target/release/trainer eval "${runs[@]}" --text "$valid" --mode windows
target/release/trainer generate "${runs[@]}" --length 500 --seed 7
