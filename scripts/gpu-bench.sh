#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: checks the wgpu backend on it (a short training run, then
# `eval` of the same weights on wgpu and on flex must agree) and times training of the default
# model size on tiny-shakespeare at batch 32 and at batch 128, ours on wgpu (Vulkan) with the
# recurrence kernel and with composed ops (scripts/wgpu-recurrence-bench.sh), and PyTorch with
# cuDNN, one after the other.
#
#   BIN=target/release/trainer TEXT=../shared/datasets/tinyshakespeare.txt scripts/gpu-bench.sh
#
# Needs a Vulkan loader (libvulkan1) and PyTorch with CUDA. To time Burn's kernel fusion and
# autotuning, pass a binary built with `cargo build --release -p trainer --features
# fusion,autotune` as BIN.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release/trainer}
text=${TEXT:-../shared/datasets/tinyshakespeare.txt}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

run=$(mktemp -d)/smoke
"$bin" --config configs/smoke.toml --backend wgpu --run "$run" --no-tui | grep -E "epoch 8/8 done|^saved"
for backend in wgpu flex; do
  echo "eval on $backend: $("$bin" eval --run "$run" --text datasets/smoke.txt --backend "$backend" --json)"
done

for batch in 32 128; do
  BIN=$bin TEXT=$text scripts/wgpu-recurrence-bench.sh "$batch" 20
  python3 scripts/gpu_pytorch_speed.py "$text" --batch $batch
done
