#!/usr/bin/env bash
# Epoch times of whole training runs on wgpu (the loop as users run it, dashboard metrics,
# validation and sampling included) for one or more trainer binaries, alternating: three
# epochs of configs/smoke.toml at 256 hidden units with gradient clipping, ROUNDS times
# (default 3), each binary's epoch lines printed as they come. Then each binary's launches per
# training step and each kernel's launches and time in one step (`trainer bench`). Runs on
# lavapipe as on a GPU.
#
#   scripts/wgpu-epochs.sh TRAINER [TRAINER ...]   e.g. a build of the commit before and this one
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 TRAINER [TRAINER ...] (trainer binaries)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
settings=(--config configs/smoke.toml --set model.hidden_dim=256 --set training.grad_clip_norm=5)
for round in $(seq "${ROUNDS:-3}"); do
    for bin in "$@"; do
        rm -rf "$work/run"
        epochs=$("$bin" --backend wgpu "${settings[@]}" --set training.epochs=3 \
            --run "$work/run" --no-tui 2>/dev/null | grep -o 'epoch [0-9]*/3 done in [0-9.]*s' | paste -sd' ')
        echo "round $round, $bin: $epochs"
    done
done
for bin in "$@"; do
    "$bin" bench --backend wgpu "${settings[@]}" --steps 3 --warmup 1 --sample-length 4 2>/dev/null \
        | tail -1 | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(sys.argv[1] + ":", r["train_step_launches"], "launches per training step")
for k in r["train_step_kernels"] or []:
    print("  %9.3f ms %4d x %s" % (k["ms"], k["launches"], k["kernel"]))' "$bin"
done
