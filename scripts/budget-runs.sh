#!/usr/bin/env bash
# Validation loss after MINUTES of wall time on TEXT, for each contender, one after the other
# on this machine; each is measured with `trainer eval --mode stream` on the last 10% of the
# text (PyTorch's own evaluation of the same 10% for `pytorch`):
#
#   budget     `trainer --budget MINUTESm`: sizes chosen from the text and measured speed
#   hidden=H   the same with `model.hidden_dim=H` given (the budget fits the epochs to it);
#              hidden=H:E gives the epochs too
#   tuned=E    configs/tinyshakespeare.toml (2 x 512, dropout 0.3, AdamW, cosine) for E epochs,
#              stopped at MINUTES
#   tutorial   configs/default.toml's settings (the PyTorch tutorial's: windows of 50, no
#              dropout, Adam 1e-3) for MINUTES
#   pytorch    ../shared/bench/pytorch_reference.py's quality mode for MINUTES (the tutorial's
#              settings in PyTorch)
#   pytorch-dropout  the same with dropout 0.5 between the layers, windows of 100 and Adam 2e-3
#              (char-rnn's advice for a text of this size), evaluated on its last weights
#
# Each run's log (ours) or whole result (PyTorch's JSON: steps, training curve) is kept as
# runs/budget-runs/<text>-<minutes>m[-seed<SEED>]/<contender>.log or .json.
#
#   scripts/budget-runs.sh TEXT MINUTES CONTENDER...      (BIN: the trainer binary to use;
#                                                          SEED: every contender's seed)
#   scripts/budget-runs.sh ../shared/datasets/tinyshakespeare.txt 10 budget tuned=4 tutorial pytorch
#   scripts/code-text.sh > runs/texts/burn-nn.txt   (the other text of the README's table)
set -euo pipefail
cd "$(dirname "$0")/.."
text=$1
minutes=$2
shift 2
bin=${BIN:-target/release/trainer}
[ -x "$bin" ] || cargo build --release -p trainer >&2
runs=runs/budget-runs/$(basename "$text" .txt)-${minutes}m${SEED:+-seed$SEED}
mkdir -p "$runs"
valid="$runs/valid.txt"
python3 -c "import sys; t = open(sys.argv[1], encoding='utf-8').read(); open(sys.argv[2], 'w', encoding='utf-8').write(t[int(len(t) * 0.9):])" "$text" "$valid"
echo "$(basename "$text"), $minutes minutes ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $("$bin" bench --steps 1 --warmup 0 --sample-length 10 | python3 -c 'import json, sys; print(json.load(sys.stdin)["simd"])'))"
for contender in "$@"; do
  run="$runs/$contender"
  data=(--set "data.path=\"$text\"" ${SEED:+--set training.seed=$SEED})
  limit=(--set "training.time_limit=\"${minutes}m\"")
  case $contender in
    budget) args=(--budget "${minutes}m" "${data[@]}") ;;
    hidden=*)
      size=${contender#hidden=}
      args=(--budget "${minutes}m" "${data[@]}" --set "model.hidden_dim=${size%%:*}")
      [[ $size == *:* ]] && args+=(--set "training.epochs=${size#*:}") ;;
    tuned=*) args=(--config configs/tinyshakespeare.toml "${data[@]}" "${limit[@]}" --set "training.epochs=${contender#tuned=}") ;;
    tutorial) args=(--config configs/default.toml "${data[@]}" "${limit[@]}" --set data.valid_fraction=0.1 --set training.epochs=1000) ;;
    pytorch|pytorch-dropout)
      options=()
      [ "$contender" = pytorch-dropout ] && options=(--dropout 0.5 --seq 100 --lr 2e-3)
      start=$(date +%s)
      loss=$(python3 ../shared/bench/pytorch_reference.py quality "$text" --seconds $((minutes * 60)) ${SEED:+--seed $SEED} "${options[@]}" | tee "$run.json" | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["valid_loss_stream"], 4))')
      echo "$contender: $(( $(date +%s) - start )) s, validation loss $loss nats/char (stream)"
      continue ;;
    *) echo "unknown contender $contender" >&2; exit 2 ;;
  esac
  start=$(date +%s)
  "$bin" --run "$run" --force --no-tui "${args[@]}" > "$run.log"
  seconds=$(( $(date +%s) - start ))
  grep '^training.budget' "$run.log" || true
  model=$(python3 -c 'import sys, tomllib; c = tomllib.load(open(sys.argv[1], "rb")); m, t = c["model"], c["training"]; print("%d x %d, %d epochs planned" % (m["num_layers"], m["hidden_dim"], t["epochs"]))' "$run/config.toml")
  epochs=$(($(wc -l < "$run/metrics.csv") - 1))
  loss=$("$bin" eval --run "$run" --text "$valid" --mode stream --json | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["loss"], 4))')
  echo "$contender: $model, $epochs run, $seconds s, validation loss $loss nats/char (stream)"
done
