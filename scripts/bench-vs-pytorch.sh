#!/usr/bin/env bash
# Training and sampling throughput of the default model size (embedding 256, 2 x 512, batch 32,
# seq_len 50): ours (`trainer bench`) and the PyTorch reference back to back on this machine,
# then the ratios and both processes' peak resident memory; ROUNDS times (default 3),
# alternating, then the median of each ratio over the rounds.
#
#   [SIMD=avx512|avx2|portable] [TEXT=file] [ROUNDS=n] [TRAINER=binary] [NN_LSTM=0] \
#     scripts/bench-vs-pytorch.sh [extra `trainer bench` flags, e.g. --backend wgpu]
#
# SIMD forces our CPU kernels' path and PyTorch's onto the same instruction set
# (scripts/same-isa.sh); unset, each takes the best the CPU has.
# TEXT defaults to tiny-shakespeare; `scripts/synthetic-cjk.py` writes a text with a large
# vocabulary. TRAINER runs that binary instead of building this checkout's. NN_LSTM=0 leaves
# out the `burn::nn::Lstm` baseline (slow with a large vocabulary).
# Needs ../shared (tiny-shakespeare, the PyTorch reference) and `pip install torch numpy`.
set -euo pipefail
cd "$(dirname "$0")/.."
text=${TEXT:-../shared/datasets/tinyshakespeare.txt}
steps=${STEPS:-20}
trainer=${TRAINER:-target/release/trainer}
source scripts/same-isa.sh
[ -n "${TRAINER:-}" ] || cargo build --release -p trainer >&2
echo "text: $text; CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
    "($(grep -o -m1 avx512f /proc/cpuinfo || echo 'no avx512f'))"
python3 -c "import os, torch; print('PyTorch', torch.__version__, 'CPU capability:', torch.backends.cpu.get_cpu_capability(), '(ATEN_CPU_CAPABILITY=' + os.environ.get('ATEN_CPU_CAPABILITY', 'unset') + ', ONEDNN_MAX_CPU_ISA=' + os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset') + ')')"
python3 - "$trainer" "$text" "$steps" "${ROUNDS:-3}" "${NN_LSTM:-1}" "$@" <<'PY'
import json, resource, statistics, subprocess, sys
trainer, text, steps, rounds, nn_lstm, extra = (sys.argv[1], sys.argv[2], sys.argv[3],
                                                int(sys.argv[4]), sys.argv[5] == "1", sys.argv[6:])

def run(cmd):
    """Runs cmd; its JSON line and its peak RSS in bytes (Linux reports KiB), where it set a new
    high for this script's children (so only the first round's)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return json.loads(out.strip().splitlines()[-1]), (peak if peak > before else None)

ratios = {"training x PyTorch": [], "sampling x PyTorch": [],
          "32 streams x single-stream PyTorch": []}
if nn_lstm:
    ratios["training x burn::nn::Lstm"] = []
for n in range(1, rounds + 1):
    ours, ours_rss = run([trainer, "bench", "--config", "configs/default.toml",
                          "--set", f"data.path={json.dumps(text)}", "--set", "data.valid_fraction=0.1",
                          "--steps", steps, *(["--with-nn-lstm"] if nn_lstm else []), *extra])
    torch, torch_rss = run(["python3", "../shared/bench/pytorch_reference.py", "speed", text,
                            "--steps", steps])
    print(f"round {n} of {rounds}: ours on the {ours.get('simd', 'avx512 or gemm')} path")
    print("ours:   ", json.dumps(ours))
    print("pytorch:", json.dumps(torch))
    values = {"training x PyTorch": ours["train_chars_per_s"] / torch["train_chars_per_s"],
              "sampling x PyTorch": ours["sample_chars_per_s"] / torch["sample_chars_per_s"],
              "32 streams x single-stream PyTorch":
                  ours["sample32_chars_per_s"] / torch["sample_chars_per_s"]}
    if nn_lstm:
        values["training x burn::nn::Lstm"] = (ours["train_chars_per_s"]
                                                / ours["nn_lstm_train_chars_per_s"])
    for name, value in values.items():
        ratios[name].append(value)
    print(f"training: {ours['train_step_ms_median']:.1f} vs {torch['train_step_ms_median']:.1f} ms "
          f"per step, {ours['train_chars_per_s']:.0f} vs {torch['train_chars_per_s']:.0f} chars/s = "
          f"{values['training x PyTorch']:.2f}x PyTorch")
    if nn_lstm:
        print(f"  {values['training x burn::nn::Lstm']:.2f}x burn::nn::Lstm "
              f"({ours['nn_lstm_train_chars_per_s']:.0f} chars/s)")
    print(f"sampling, 1 stream: {ours['sample_chars_per_s']:.0f} vs "
          f"{torch['sample_chars_per_s']:.0f} chars/s = {values['sampling x PyTorch']:.1f}x PyTorch")
    print(f"sampling, 32 streams: {ours['sample32_chars_per_s']:.0f} chars/s = "
          f"{values['32 streams x single-stream PyTorch']:.1f}x single-stream PyTorch")
    if ours_rss and torch_rss:
        print(f"peak RSS after training steps: ours {ours['peak_rss_bytes'] / 2**20:.0f} MiB; "
              f"whole processes: ours {ours_rss / 1024:.0f} MiB, PyTorch {torch_rss / 1024:.0f} MiB")
print(f"median of {rounds} rounds (ours and PyTorch alternate, so load that drifts meets both):")
for name, values in ratios.items():
    print(f"  {name}: {statistics.median(values):.2f} (from {min(values):.2f} to {max(values):.2f})")
PY
