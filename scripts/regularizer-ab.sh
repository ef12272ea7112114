#!/usr/bin/env bash
# One regularizer against none, same seed, same epochs: trains configs/tinyshakespeare.toml on
# ../shared's tiny-shakespeare for EPOCHS epochs (default 8, about 10 minutes on a 2-core CPU;
# the cosine schedule spans them) once as the config has it and once per setting given, then
# prints each run's wall time and `trainer eval --mode stream` loss on the last 10%, after its
# epochs' own validation losses ("check", and the weight average's with training.ema_decay).
#
#   scripts/regularizer-ab.sh model.embedding_dropout=0.1 [KEY=VALUE ...]   (EPOCHS, BIN)
#   BASELINE=no scripts/regularizer-ab.sh training.ema_decay=0.999          (the settings alone)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release/trainer}
text=../shared/datasets/tinyshakespeare.txt
[ -x "$bin" ] || cargo build --release -p trainer >&2
valid=$(mktemp --suffix=.txt)
runs=$(mktemp -d)
trap 'rm -rf "$valid" "$runs"' EXIT
python3 -c "import sys; t = open(sys.argv[1], encoding='utf-8').read(); open(sys.argv[2], 'w', encoding='utf-8').write(t[int(len(t) * 0.9):])" "$text" "$valid"
baseline=("")
[ "${BASELINE:-yes}" = no ] && baseline=()
for setting in "${baseline[@]}" "$@"; do
  sets=(--set "data.path=\"$text\"" --set "training.epochs=${EPOCHS:-8}" --set 'training.time_limit=""')
  [ -n "$setting" ] && sets+=(--set "$setting")
  start=$(date +%s)
  "$bin" --config configs/tinyshakespeare.toml --run "$runs/run" --force --no-tui "${sets[@]}" > "$runs/log"
  seconds=$(( $(date +%s) - start ))
  grep -E '^epoch [0-9]+(/[0-9]+ done|: the weight average)' "$runs/log" |
    sed -E 's/^epoch ([0-9]+)\/[0-9]+ done.* valid loss ([0-9.]+).*/  epoch \1: check \2/; s/^epoch ([0-9]+): the weight average.s validation loss/  epoch \1: average check/'
  loss=$("$bin" eval --run "$runs/run" --text "$valid" --mode stream --json | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["loss"], 4))')
  echo "${setting:-(the config as it is)}: ${EPOCHS:-8} epochs in $seconds s, validation loss $loss nats/char (stream)"
done
echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $("$bin" bench --steps 1 --warmup 0 --sample-length 10 | python3 -c 'import json, sys; print(json.load(sys.stdin)["simd"])'))"
