#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and no Rust toolchain: checks the wgpu backend there (a short
# training run, then `eval` of the same weights on wgpu and on flex must agree to 1e-4 nats)
# and times, beside PyTorch with cuDNN in the same script (scripts/gpu_pytorch_speed.py): the
# cost of a kernel launch, one layer's recurrence alone (forward and backward; our per-step
# kernels and the earlier per-row ones), the training step of the default model size on
# tiny-shakespeare at batch 32 and 128 (and one step with each kernel timed alone: the kernels
# that take the most time, with their launches), and sampling of 1 and 32 streams; then the
# training step through a `trainer serve` of one wgpu device on the same machine against wgpu
# here (scripts/bench-remote.sh, one round).
#
# Prepared on the CPU machine (the stripped binary is over the device tool's carry limit, so it
# travels compressed):
#   cargo build --release -p trainer && mkdir -p gpu
#   strip -o gpu/trainer target/release/trainer && gzip -f gpu/trainer
# then, on the GPU machine, with `.gl` (the Vulkan loader's packages, as the device tool's notes
# say) and `gpu` carried (both are ignored by git, so the device tool's `carry` names them):
#   BIN=gpu/trainer.gz scripts/gpu-bench.sh
# TEXT picks the training text (default ../shared/datasets/tinyshakespeare.txt). The log goes to
# $OUT/gpu-bench.log when OUT is set. Needs PyTorch with CUDA for the side-by-side figures.
# BATCHES, WARMUP, STEPS, SAMPLE_LENGTH and CONFIG (ours; PyTorch's model is the default size)
# shrink it to check the script itself on lavapipe:
#   BATCHES=2 WARMUP=0 STEPS=1 SAMPLE_LENGTH=8 CONFIG=configs/smoke.toml TEXT=datasets/smoke.txt \
#     scripts/gpu-bench.sh
set -uo pipefail
cd "$(dirname "$0")/.."
exec > >(tee "${OUT:-/tmp}/gpu-bench.log") 2>&1
if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
bin=${BIN:-target/release/trainer}
if [[ $bin == *.gz ]]; then
  gunzip -c "$bin" >/tmp/trainer && chmod +x /tmp/trainer && bin=/tmp/trainer
fi
text=${TEXT:-../shared/datasets/tinyshakespeare.txt}
date -u +%FT%TZ
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

run=$(mktemp -d)/smoke
"$bin" --config configs/smoke.toml --backend wgpu --run "$run" --no-tui | grep -E "epoch 8/8 done|^saved"
for backend in wgpu flex; do
  "$bin" eval --run "$run" --text datasets/smoke.txt --backend "$backend" --json | tee "$run.$backend.json"
done
python3 - "$run.wgpu.json" "$run.flex.json" <<'PY'
import json, sys
wgpu, flex = (json.load(open(path))["loss"] for path in sys.argv[1:])
verdict = "agree" if abs(wgpu - flex) <= 1e-4 else "DISAGREE"
print(f"eval: wgpu {wgpu:.6f}, flex {flex:.6f} nats: {verdict} (within 1e-4: {abs(wgpu - flex):.2e})")
PY

steps=${STEPS:-20}
length=${SAMPLE_LENGTH:-500}
for batch in ${BATCHES:-32 128}; do
  for layout in per-step per-row; do
    CHAR_LSTM_GPU_RECURRENCE=$layout "$bin" bench --backend wgpu --config "${CONFIG:-configs/default.toml}" \
      --set "data.path=\"$text\"" --set training.batch_size="$batch" \
      --warmup "${WARMUP:-5}" --steps "$steps" --sample-length "$length" | tee "$run.bench.json"
    python3 - "$run.bench.json" <<'PY'
import json, sys
kernels = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["train_step_kernels"] or []
total, launches = sum(k["ms"] for k in kernels), sum(k["launches"] for k in kernels)
print(f"one training step, each kernel timed alone: {total:.2f} ms in {launches} launches; the longest:")
for k in kernels[:15]:
    timed = "" if k["device_timed"] else " (host-timed)"
    print(f"  {k['ms']:10.3f} ms {k['launches']:5d} x {k['kernel']}{timed}")
PY
  done
  python3 scripts/gpu_pytorch_speed.py "$text" --batch "$batch" --steps "$steps" --sample-length "$length"
done

BIN=$bin BACKEND=wgpu CONFIG="${CONFIG:-configs/default.toml}" STEPS="$steps" ROUNDS=1 scripts/bench-remote.sh
