#!/usr/bin/env bash
# Training and sampling throughput of the default model size on wgpu, with each layer's
# recurrence as GPU kernels (`--lstm fused`: per step, then the earlier per-row layout) and as
# composed ops (`--lstm composed`), one after the other; then the same bench on flex, to
# compare sampling (a model on a GPU samples on the CPU decoder, from its weights read back).
# Runs on any Vulkan device, lavapipe (Mesa's CPU Vulkan) included.
#
#   scripts/wgpu-recurrence-bench.sh [BATCH] [STEPS]    (defaults: 32, 20)
#
# BIN picks the trainer binary (default target/release/trainer, built first when absent) and
# TEXT the training text (default ../shared/datasets/tinyshakespeare.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
batch=${1:-32}
steps=${2:-20}
bin=${BIN:-target/release/trainer}
text=${TEXT:-../shared/datasets/tinyshakespeare.txt}
[ -x "$bin" ] || cargo build --release -p trainer >&2
for variant in fused:per-step fused:per-row composed:per-step; do
  CHAR_LSTM_GPU_RECURRENCE=${variant#*:} "$bin" bench --backend wgpu --lstm "${variant%%:*}" \
    --config configs/default.toml \
    --set "data.path=\"$text\"" --set training.batch_size="$batch" \
    --warmup "${WARMUP:-10}" --steps "$steps" --sample-length "${SAMPLE_LENGTH:-50}"
done
"$bin" bench --config configs/default.toml \
  --set "data.path=\"$text\"" --set training.batch_size="$batch" \
  --warmup "${WARMUP:-10}" --steps "$steps" --sample-length "${SAMPLE_LENGTH:-50}"
